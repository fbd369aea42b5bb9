//! The file model without a kernel: a model-based test of random call sequences against an
//! in-memory reference, and the commit/seal rules.

use super::*;
use crate::crypto::Secret;
use crate::repo::{InitOptions, OpenOptions};
use crate::store::memory::MemoryStore;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

fn secret() -> Secret {
    Secret::raw_key_from_hex(&"24".repeat(32)).unwrap()
}

fn vault(store: &Arc<MemoryStore>) -> &'static Vault {
    Box::leak(Box::new(Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap()))
}

fn new_store() -> Arc<MemoryStore> {
    let m = Arc::new(MemoryStore::new());
    Vault::init(m.clone(), &secret(), &InitOptions { chunk_avg: 1024, pack_target: 1 << 20, ..Default::default() })
        .unwrap();
    m
}

/// Compares without printing megabytes on failure.
fn same(a: Option<&Vec<u8>>, b: Option<&Vec<u8>>, what: &str) {
    if a != b {
        let (la, lb) = (a.map(|v| v.len()), b.map(|v| v.len()));
        let first = match (a, b) {
            (Some(a), Some(b)) => a.iter().zip(b.iter()).position(|(x, y)| x != y),
            _ => None,
        };
        panic!("{what}: contents differ (lengths {la:?} vs {lb:?}, first difference at {first:?})");
    }
}

/// Writes `len` bytes of a deterministic stream in 64 KiB writes; returns what was written.
fn write_stream(fs: &mut VaultFs, fh: u64, len: usize, seed: u64) -> Vec<u8> {
    let mut model = Vec::with_capacity(len);
    let mut x = seed | 1;
    while model.len() < len {
        let block: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs.write(fh, model.len() as u64, &block).unwrap();
        model.extend_from_slice(&block);
    }
    model
}

fn read_all(fs: &mut VaultFs, ino: Ino) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size as usize;
    fs.read(ino, 0, size + 10).unwrap()
}

/// Reads a committed file back through a freshly opened vault (what a restart sees).
fn committed(store: &Arc<MemoryStore>, path: &str) -> Option<Vec<u8>> {
    let v = Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap();
    let info = v.resolve("current").ok()?;
    let node = v.lookup(info.snap.root, &crate::repo::trees::split_path(path).unwrap()).ok()?;
    let mut out = Vec::new();
    v.file_reader(&node).unwrap().copy_to(&mut out).unwrap();
    Some(out)
}

#[test]
fn model_based_random_operations() {
    for seed in 0..6u64 {
        let store = new_store();
        let mut fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let dir = fs.mkdir(ROOT, b"sub", 0o755, 0, 0).unwrap().ino;
        let names: Vec<(Ino, Vec<u8>, String)> = (0..4)
            .map(|i| {
                let parent = if i % 2 == 0 { ROOT } else { dir };
                let name = format!("f{i}").into_bytes();
                let path = if parent == ROOT { format!("f{i}") } else { format!("sub/f{i}") };
                (parent, name, path)
            })
            .collect();
        // Reference: path -> content (present once created).
        let mut model: HashMap<String, Vec<u8>> = HashMap::new();
        let mut open: HashMap<String, (Ino, u64)> = HashMap::new();
        for step in 0..400 {
            let (parent, name, path) = names[rng.gen_range(0..names.len())].clone();
            match rng.gen_range(0..10) {
                0..=2 => {
                    // write at a random offset (sometimes past the end)
                    let (ino, fh) = match open.get(&path) {
                        Some(x) => *x,
                        None => {
                            let (ino, fh) = if model.contains_key(&path) {
                                let ino = fs.lookup(parent, &name).unwrap().ino;
                                (ino, fs.open(ino, true, false, 0).unwrap())
                            } else {
                                let (a, fh) = fs.create(parent, &name, 0o644, 0, 0, 0).unwrap();
                                model.insert(path.clone(), Vec::new());
                                (a.ino, fh)
                            };
                            open.insert(path.clone(), (ino, fh));
                            (ino, fh)
                        }
                    };
                    let cur = model.get_mut(&path).unwrap();
                    let off = rng.gen_range(0..cur.len() as u64 + 5000);
                    let len = if rng.gen_bool(0.2) { rng.gen_range(20_000..120_000) } else { rng.gen_range(1..3000) };
                    let data: Vec<u8> =
                        (0..len).map(|i| ((i as u64 * 31 + step) % 251) as u8 ^ rng.gen::<u8>() & 3).collect();
                    fs.write(fh, off, &data).unwrap();
                    let end = off as usize + data.len();
                    if cur.len() < end {
                        cur.resize(end, 0);
                    }
                    cur[off as usize..end].copy_from_slice(&data);
                    let _ = ino;
                }
                3 => {
                    // truncate
                    if let Some(cur) = model.get_mut(&path) {
                        let ino = fs.lookup(parent, &name).unwrap().ino;
                        let size = rng.gen_range(0..cur.len() as u64 + 4000);
                        fs.setattr(ino, &SetAttr { size: Some(size), ..Default::default() }).unwrap();
                        cur.resize(size as usize, 0);
                    }
                }
                4 | 5 => {
                    // read a random range and compare
                    if let Some(cur) = model.get(&path) {
                        let ino = fs.lookup(parent, &name).unwrap().ino;
                        assert_eq!(fs.getattr(ino).unwrap().size, cur.len() as u64, "seed {seed} step {step} size");
                        let off = rng.gen_range(0..cur.len() as u64 + 10);
                        let len = rng.gen_range(0..50_000);
                        let got = fs.read(ino, off, len).unwrap();
                        let s = (off as usize).min(cur.len());
                        let e = (s + len).min(cur.len());
                        same(
                            Some(&got),
                            Some(&cur[s..e].to_vec()),
                            &format!("seed {seed} step {step} read {off}+{len}"),
                        );
                    }
                }
                6 => {
                    if let Some((_, fh)) = open.get(&path) {
                        fs.fsync(*fh).unwrap();
                    }
                }
                7 | 8 => {
                    // close: the content is committed
                    if let Some((_, fh)) = open.remove(&path) {
                        fs.flush(fh, 0).unwrap();
                        fs.release(fh).unwrap();
                        same(
                            committed(&store, &path).as_ref(),
                            model.get(&path),
                            &format!("seed {seed} step {step} {path}"),
                        );
                    }
                }
                _ => {
                    if model.contains_key(&path) && !open.contains_key(&path) && rng.gen_bool(0.3) {
                        fs.unlink(parent, &name).unwrap();
                        model.remove(&path);
                    }
                }
            }
        }
        for (path, (_, fh)) in open.drain() {
            fs.flush(fh, 0).unwrap();
            fs.release(fh).unwrap();
            same(committed(&store, &path).as_ref(), model.get(&path), &path);
        }
        fs.shutdown().unwrap();
        for (path, content) in &model {
            same(committed(&store, path).as_ref(), Some(content), &format!("seed {seed} {path} after unmount"));
        }
        let v = Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap();
        assert!(crate::commands::check::check(&v, true).unwrap().ok());
    }
}

#[test]
fn large_sequential_write_then_rewrite_of_the_header() {
    // pg_dump -Fc writes the whole dump, then seeks back and rewrites its table of contents.
    let store = new_store();
    let mut fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let (a, fh) = fs.create(ROOT, b"app.pgdump", 0o600, 0, 0, 0).unwrap();
    let mut model = write_stream(&mut fs, fh, 20 << 20, 1);
    fs.write(fh, 100, b"TABLE OF CONTENTS, REWRITTEN").unwrap();
    model[100..128].copy_from_slice(b"TABLE OF CONTENTS, REWRITTEN");
    assert_eq!(fs.read(a.ino, 90, 50).unwrap(), &model[90..140]);
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(read_all(&mut fs, a.ino), model);
    assert_eq!(committed(&store, "app.pgdump").unwrap(), model);
}

#[test]
fn sealed_periods_are_read_only_and_reserved_names_refused() {
    let store = new_store();
    let v = vault(&store);
    // A sealed past period.
    {
        let mut w = v.begin_write("test", std::time::Duration::ZERO).unwrap();
        let (root, _) = w
            .set_path(
                None,
                &[b"old".to_vec()],
                crate::format::tree::Node {
                    name: vec![],
                    kind: NodeKind::File { state: FileState::Complete, content: Default::default() },
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    mtime_ns: 0,
                    size: 0,
                },
            )
            .unwrap();
        let info = w.commit("2000-01-01", None, root, 1, 0).unwrap();
        w.seal(&info).unwrap();
    }
    let mut fs = VaultFs::new(v, true, 0, 0).unwrap();
    let old = fs.lookup(ROOT, b"2000-01-01").unwrap().ino;
    assert_eq!(fs.readlink(LATEST).unwrap(), b"2000-01-01");
    let f = fs.lookup(old, b"old").unwrap().ino;
    assert_eq!(fs.create(old, b"x", 0o644, 0, 0, 0).unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(fs.unlink(old, b"old").unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(fs.open(f, true, false, 0).unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(
        fs.setattr(f, &SetAttr { mode: Some(0o600), ..Default::default() }).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(fs.mkdir(ROOT, b"latest", 0o755, 0, 0).unwrap_err().kind(), ErrorKind::NotPermitted);
    assert_eq!(fs.mkdir(ROOT, b"today", 0o755, 0, 0).unwrap_err().kind(), ErrorKind::NotPermitted);
    assert!(fs.create(ROOT, b"today", 0o644, 0, 0, 0).is_ok());
    // The current period's dated directory shows the root's files.
    let cur = fs.current_period().to_string();
    let dated = fs.lookup(ROOT, cur.as_bytes()).unwrap().ino;
    assert_eq!(fs.lookup(dated, b"today").unwrap().ino, fs.lookup(ROOT, b"today").unwrap().ino);
    let names: Vec<Vec<u8>> = fs.readdir(ROOT).unwrap().into_iter().map(|e| e.name).collect();
    assert!(
        names.contains(&b"2000-01-01".to_vec())
            && names.contains(&b"latest".to_vec())
            && names.contains(&b"today".to_vec())
    );
}

#[test]
fn fsynced_open_file_is_incomplete_after_a_crash() {
    let store = new_store();
    {
        let mut fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
        let (_, fh) = fs.create(ROOT, b"today", 0o644, 0, 0, 0).unwrap();
        fs.write(fh, 0, b"half of a dump").unwrap();
        fs.fsync(fh).unwrap();
        // The daemon dies here: no close, no unmount.
        std::mem::forget(fs);
    }
    let v = vault(&store);
    let info = v.resolve("current").unwrap();
    let node = v.lookup(info.snap.root, &[b"today".to_vec()]).unwrap();
    assert!(matches!(node.kind, NodeKind::File { state: FileState::Incomplete, .. }));
    // A new mount shows it only under a marked name.
    drop(info);
    let mut fs = VaultFs::new(v, true, 0, 0).unwrap();
    assert!(fs.lookup(ROOT, b"today").is_err());
    let ino = fs.lookup(ROOT, b"today.incomplete").unwrap().ino;
    assert_eq!(read_all(&mut fs, ino), b"half of a dump");
}

#[test]
fn a_forked_copy_closing_does_not_complete_the_file() {
    let store = new_store();
    let v = vault(&store);
    let mut fs = VaultFs::new(v, true, 0, 0).unwrap();
    let (_, fh) = fs.create(ROOT, b"today", 0o644, 0, 0, 100).unwrap();
    fs.write(fh, 0, b"first half").unwrap();
    // A child process (pid 200) closes its inherited copy of the descriptor.
    fs.flush(fh, 200).unwrap();
    let state = |v: &Vault| {
        let info = v.resolve("current").unwrap();
        match v.lookup(info.snap.root, &[b"today".to_vec()]).unwrap().kind {
            NodeKind::File { state, .. } => state,
            _ => panic!("not a file"),
        }
    };
    let fresh = || Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap();
    assert_eq!(state(&fresh()), FileState::Incomplete);
    fs.write(fh, 10, b", second half").unwrap();
    // The writer itself closes: complete.
    fs.flush(fh, 100).unwrap();
    assert_eq!(state(&fresh()), FileState::Complete);
    fs.release(fh).unwrap();
    assert_eq!(committed(&store, "today").unwrap(), b"first half, second half");
}

#[test]
fn long_files_page_their_chunk_table_out_and_back() {
    // 40 MiB at 1 KiB chunks: ~40k chunks, so the table pages out while writing; rewrites,
    // reads and truncation inside the stored pages bring them back.
    let store = new_store();
    let mut fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let (a, fh) = fs.create(ROOT, b"big.dump", 0o600, 0, 0, 7).unwrap();
    let mut model = write_stream(&mut fs, fh, 40 << 20, 7);
    let check = |fs: &mut VaultFs, model: &[u8], off: usize, len: usize| {
        let e = (off + len).min(model.len());
        same(
            Some(&fs.read(a.ino, off as u64, len).unwrap()),
            Some(&model[off..e].to_vec()),
            &format!("read {off}+{len}"),
        );
    };
    for off in [0usize, 100, 16 << 20, 20 << 20, (40 << 20) - 5000] {
        check(&mut fs, &model, off, 300_000);
    }
    fs.write(fh, 100, b"rewritten inside the first page").unwrap();
    model[100..131].copy_from_slice(b"rewritten inside the first page");
    check(&mut fs, &model, 0, 1000);
    fs.fsync(fh).unwrap();
    check(&mut fs, &model, 50, 100_000);
    fs.setattr(a.ino, &SetAttr { size: Some(20 << 20), ..Default::default() }).unwrap();
    model.truncate(20 << 20);
    fs.write(fh, model.len() as u64, b"appended after the truncation").unwrap();
    model.extend_from_slice(b"appended after the truncation");
    check(&mut fs, &model, (20 << 20) - 100, 1000);
    fs.flush(fh, 7).unwrap();
    fs.release(fh).unwrap();
    same(committed(&store, "big.dump").as_ref(), Some(&model), "after close");
    // Reopened for appending: the stored pages are reused.
    let fh = fs.open(a.ino, true, false, 7).unwrap();
    fs.write(fh, model.len() as u64, b"!").unwrap();
    model.push(b'!');
    fs.flush(fh, 7).unwrap();
    fs.release(fh).unwrap();
    same(committed(&store, "big.dump").as_ref(), Some(&model), "after append");
    let v = Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap();
    assert!(crate::commands::check::check(&v, true).unwrap().ok());
}

#[test]
fn read_only_mount_shows_open_periods_and_refuses_changes() {
    let store = new_store();
    {
        let v = vault(&store);
        let o = crate::commands::put::PutOptions {
            path: "today".into(),
            mode: 0o644,
            mtime_ns: None,
            lock_wait: std::time::Duration::ZERO,
        };
        crate::commands::put::put(v, &o, &mut &b"open period content"[..]).unwrap();
    }
    let v = vault(&store);
    let mut fs = VaultFs::new(v, false, 0, 0).unwrap();
    let cur = v.clock().current();
    let dated = fs.lookup(ROOT, cur.as_bytes()).unwrap().ino;
    let f = fs.lookup(dated, b"today").unwrap().ino;
    assert_eq!(read_all(&mut fs, f), b"open period content");
    assert_eq!(fs.create(ROOT, b"x", 0o644, 0, 0, 0).unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(fs.open(f, true, false, 0).unwrap_err().kind(), ErrorKind::ReadOnly);
}
