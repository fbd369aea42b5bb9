//! The file model without a kernel: a model-based test of random call sequences against an
//! in-memory reference (with what a restart after a power loss would find checked after every
//! close), the commit and seal rules, journal damage, full disks at every write step, and
//! concurrent writers and readers.

use super::*;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use vault::crypto::Secret;
use vault::repo::{InitOptions, OpenOptions};
use vault::store::fault::FaultStore;
use vault::store::memory::MemoryStore;
use vault::store::{ObjKind, Store};

fn secret() -> Secret {
    Secret::raw_key_from_hex(&"24".repeat(32)).unwrap()
}

fn vault_on(store: Arc<dyn Store>) -> &'static Vault {
    Box::leak(Box::new(Vault::open(store, &secret(), &OpenOptions::default()).unwrap()))
}

fn vault(store: &Arc<MemoryStore>) -> &'static Vault {
    vault_on(store.clone())
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

fn stream(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `len` bytes of a deterministic stream in 64 KiB writes; returns what was written.
fn write_stream(fs: &VaultFs, fh: Fh, len: usize, seed: u64) -> Vec<u8> {
    let data = stream(len, seed);
    for (i, block) in data.chunks(65536).enumerate() {
        fs.write(fh, (i * 65536) as u64, block).unwrap();
    }
    data
}

fn read_all(fs: &VaultFs, ino: Ino) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size as usize;
    fs.read(ino, 0, size + 10).unwrap()
}

/// The vault a restart after a power loss right now would find, journals replayed.
fn restarted(store: &MemoryStore) -> Vault {
    let copy: Arc<dyn Store> = Arc::new(store.durable_copy());
    let v = Vault::open(copy, &secret(), &OpenOptions::default()).unwrap();
    let w = v.begin_write("test replay", Duration::ZERO).unwrap();
    if let Some(r) = w.replayed() {
        assert!(r.problems.is_empty(), "replay found problems: {:?}", r.problems);
    }
    drop(w);
    v
}

fn file_at(v: &Vault, path: &str) -> Option<(Vec<u8>, FileState)> {
    let info = v.resolve("current").ok()?;
    let node = v.lookup(info.snap.root, &vault::repo::trees::split_path(path).unwrap()).ok()?;
    let NodeKind::File { state, .. } = node.kind else { return None };
    let mut out = Vec::new();
    v.file_reader(&node).unwrap().copy_to(&mut out).unwrap();
    Some((out, state))
}

/// A file's content as a restart after a power loss right now would find it.
fn committed(store: &MemoryStore, path: &str) -> Option<Vec<u8>> {
    file_at(&restarted(store), path).map(|x| x.0)
}

fn check_clean(v: &Vault) {
    let r = vault::commands::check::check(v, true).unwrap();
    assert!(r.ok(), "check found damage");
}

#[test]
fn model_based_random_operations() {
    for seed in 0..6u64 {
        let store = new_store();
        let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
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
        // Reference: path -> content (present once created), and what is durable.
        let mut model: HashMap<String, Vec<u8>> = HashMap::new();
        let mut durable: HashMap<String, Vec<u8>> = HashMap::new();
        let mut open: HashMap<String, (Ino, Fh)> = HashMap::new();
        for step in 0..400u64 {
            let (parent, name, path) = names[rng.gen_range(0..names.len())].clone();
            match rng.gen_range(0..12) {
                0..=2 => {
                    // write at a random offset (sometimes past the end)
                    let fh = match open.get(&path) {
                        Some(x) => x.1,
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
                            fh
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
                }
                3 => {
                    // truncate by path: committed at once when nobody has it open for writing
                    if let Some(cur) = model.get_mut(&path) {
                        let ino = fs.lookup(parent, &name).unwrap().ino;
                        let size = rng.gen_range(0..cur.len() as u64 + 4000);
                        fs.setattr(ino, &SetAttr { size: Some(size), ..Default::default() }).unwrap();
                        cur.resize(size as usize, 0);
                        if !open.contains_key(&path) {
                            durable.insert(path.clone(), cur.clone());
                        }
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
                        durable.insert(path.clone(), model[&path].clone());
                    }
                }
                7 | 8 => {
                    // close: the content is durable when close returns
                    if let Some((_, fh)) = open.remove(&path) {
                        fs.flush(fh, 0).unwrap();
                        fs.release(fh).unwrap();
                        durable.insert(path.clone(), model[&path].clone());
                        same(
                            committed(&store, &path).as_ref(),
                            model.get(&path),
                            &format!("seed {seed} step {step} {path}"),
                        );
                    }
                }
                9 => {
                    // the background work: checkpoint and release when idle
                    let msgs = fs.maintain(true);
                    assert!(msgs.is_empty(), "seed {seed} step {step}: maintenance: {msgs:?}");
                }
                _ => {
                    if model.contains_key(&path) && !open.contains_key(&path) && rng.gen_bool(0.3) {
                        fs.unlink(parent, &name).unwrap();
                        model.remove(&path);
                        durable.remove(&path);
                    }
                }
            }
        }
        // A power loss now: what was closed or fsynced is there.
        fs.sync_dirs().unwrap();
        let v = restarted(&store);
        for (path, content) in &durable {
            same(file_at(&v, path).map(|x| x.0).as_ref(), Some(content), &format!("seed {seed} {path} after a crash"));
        }
        check_clean(&v);
        for (path, (_, fh)) in open.drain() {
            fs.flush(fh, 0).unwrap();
            fs.release(fh).unwrap();
            same(committed(&store, &path).as_ref(), model.get(&path), &path);
        }
        fs.shutdown().unwrap();
        assert!(store.list(ObjKind::Snapshot).unwrap().len() == 1, "one revision after unmount");
        assert!(store.journals().unwrap().list().unwrap().is_empty(), "no journal after unmount");
        let v = Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap();
        for (path, content) in &model {
            same(file_at(&v, path).map(|x| x.0).as_ref(), Some(content), &format!("seed {seed} {path} after unmount"));
        }
        check_clean(&v);
    }
}

#[test]
fn large_sequential_write_then_rewrite_of_the_header() {
    // pg_dump -Fc writes the whole dump, then seeks back and rewrites its table of contents.
    let store = new_store();
    let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let (a, fh) = fs.create(ROOT, b"app.pgdump", 0o600, 0, 0, 0).unwrap();
    let mut model = write_stream(&fs, fh, 20 << 20, 1);
    fs.write(fh, 100, b"TABLE OF CONTENTS, REWRITTEN").unwrap();
    model[100..128].copy_from_slice(b"TABLE OF CONTENTS, REWRITTEN");
    assert_eq!(fs.read(a.ino, 90, 50).unwrap(), &model[90..140]);
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(read_all(&fs, a.ino), model);
    assert_eq!(committed(&store, "app.pgdump").unwrap(), model);
}

#[test]
fn sealed_periods_are_read_only_and_reserved_names_refused() {
    let store = new_store();
    let v = vault(&store);
    // A sealed past period.
    {
        let mut w = v.begin_write("test", Duration::ZERO).unwrap();
        let (root, _) = w
            .set_path(
                None,
                &[b"old".to_vec()],
                Node::new(
                    vec![],
                    NodeKind::File { state: FileState::Complete, content: Default::default() },
                    0o100644,
                    0,
                    0,
                    Time::default(),
                    0,
                ),
            )
            .unwrap();
        let info = w.commit("2000-01-01", None, root, 1, 0).unwrap();
        w.seal(&info).unwrap();
    }
    let fs = VaultFs::new(v, true, 0, 0).unwrap();
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
    let cur = fs.current_period();
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
    let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let (_, fh) = fs.create(ROOT, b"today", 0o644, 0, 0, 0).unwrap();
    fs.write(fh, 0, b"half of a dump").unwrap();
    fs.fsync(fh).unwrap();
    fs.write(fh, 14, b" and more, never synced").unwrap();
    // The machine loses power here: no close, no unmount.
    let copy = Arc::new(store.durable_copy());
    std::mem::forget(fs);
    let v = vault(&copy);
    let fs = VaultFs::new(v, true, 0, 0).unwrap();
    let info = v.resolve("current").unwrap();
    let node = v.lookup(info.snap.root, &[b"today.incomplete".to_vec()]).unwrap();
    assert!(matches!(node.kind, NodeKind::File { state: FileState::Incomplete, .. }));
    // The mount shows it only under a marked name.
    assert!(fs.lookup(ROOT, b"today").is_err());
    let ino = fs.lookup(ROOT, b"today.incomplete").unwrap().ino;
    assert_eq!(read_all(&fs, ino), b"half of a dump");
}

#[test]
fn a_forked_copy_closing_does_not_complete_the_file() {
    let store = new_store();
    let v = vault(&store);
    let fs = VaultFs::new(v, true, 0, 0).unwrap();
    let (_, fh) = fs.create(ROOT, b"today", 0o644, 0, 0, 100).unwrap();
    fs.write(fh, 0, b"first half").unwrap();
    // A child process (pid 200) closes its inherited copy of the descriptor.
    fs.flush(fh, 200).unwrap();
    let state = || file_at(&restarted(&store), "today").unwrap().1;
    assert_eq!(state(), FileState::Incomplete);
    fs.write(fh, 10, b", second half").unwrap();
    // The writer itself closes: complete.
    fs.flush(fh, 100).unwrap();
    assert_eq!(state(), FileState::Complete);
    fs.release(fh).unwrap();
    assert_eq!(committed(&store, "today").unwrap(), b"first half, second half");
}

#[test]
fn a_copy_closed_elsewhere_after_the_writers_close_keeps_the_file_complete() {
    // The writer (pid 100) starts a program while the file is open: the child (pid 200)
    // holds a copy and closes it when the program starts, after the writer's own close.
    let store = new_store();
    let v = vault(&store);
    let fs = VaultFs::new(v, true, 0, 0).unwrap();
    let (_, fh) = fs.create(ROOT, b"today", 0o644, 0, 0, 100).unwrap();
    fs.write(fh, 0, b"the whole dump").unwrap();
    fs.flush(fh, 100).unwrap();
    fs.flush(fh, 200).unwrap();
    // The machine stops before the last release: the writer's close stands.
    let copy = Arc::new(store.durable_copy());
    std::mem::forget(fs);
    let v = vault(&copy);
    let fs = VaultFs::new(v, true, 0, 0).unwrap();
    let ino = fs.lookup(ROOT, b"today").unwrap().ino;
    assert_eq!(read_all(&fs, ino), b"the whole dump");
    assert!(fs.lookup(ROOT, b"today.incomplete").is_err());
}

#[test]
fn a_file_opened_after_the_idle_check_keeps_the_writer_lock() {
    // maintain() looks for files open for writing, then gives the writer lock back: a file
    // created between the two must keep the lock (it is journaled only at its close).
    let store = new_store();
    let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let live = fs.live.as_ref().unwrap();
    let (_, fh) = fs.create(ROOT, b"today", 0o644, 0, 0, 100).unwrap();
    assert!(fs.holds_lock());
    assert!(!fs.release_when_idle(live).unwrap(), "the lock was given back with a file open for writing");
    assert!(fs.holds_lock());
    fs.write(fh, 0, b"a dump that started just after the idle check").unwrap();
    fs.flush(fh, 100).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(committed(&store, "today").unwrap(), b"a dump that started just after the idle check");
    assert!(fs.release_when_idle(live).unwrap());
    assert!(!fs.holds_lock());
    let ino = fs.lookup(ROOT, b"today").unwrap().ino;
    assert_eq!(read_all(&fs, ino), b"a dump that started just after the idle check");
}

#[test]
fn long_files_page_their_chunk_table_out_and_back() {
    // 40 MiB at 1 KiB chunks: ~40k chunks, so the table pages out while writing; rewrites,
    // reads and truncation inside the stored pages bring them back.
    let store = new_store();
    let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let (a, fh) = fs.create(ROOT, b"big.dump", 0o600, 0, 0, 7).unwrap();
    let mut model = write_stream(&fs, fh, 40 << 20, 7);
    let check = |fs: &VaultFs, model: &[u8], off: usize, len: usize| {
        let e = (off + len).min(model.len());
        same(
            Some(&fs.read(a.ino, off as u64, len).unwrap()),
            Some(&model[off..e].to_vec()),
            &format!("read {off}+{len}"),
        );
    };
    for off in [0usize, 100, 16 << 20, 20 << 20, (40 << 20) - 5000] {
        check(&fs, &model, off, 300_000);
    }
    fs.write(fh, 100, b"rewritten inside the first page").unwrap();
    model[100..131].copy_from_slice(b"rewritten inside the first page");
    check(&fs, &model, 0, 1000);
    fs.fsync(fh).unwrap();
    check(&fs, &model, 50, 100_000);
    fs.setattr(a.ino, &SetAttr { size: Some(20 << 20), ..Default::default() }).unwrap();
    model.truncate(20 << 20);
    fs.write(fh, model.len() as u64, b"appended after the truncation").unwrap();
    model.extend_from_slice(b"appended after the truncation");
    check(&fs, &model, (20 << 20) - 100, 1000);
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
    fs.shutdown().unwrap();
    check_clean(&Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap());
}

#[test]
fn read_only_mount_shows_open_periods_and_refuses_changes() {
    let store = new_store();
    {
        let v = vault(&store);
        let o = vault::commands::put::PutOptions {
            path: "today".into(),
            mode: 0o644,
            mtime_ns: None,
            lock_wait: Duration::ZERO,
        };
        vault::commands::put::put(v, &o, &mut &b"open period content"[..]).unwrap();
    }
    let v = vault(&store);
    let fs = VaultFs::new(v, false, 0, 0).unwrap();
    let cur = v.clock().current();
    let dated = fs.lookup(ROOT, cur.as_bytes()).unwrap().ino;
    let f = fs.lookup(dated, b"today").unwrap().ino;
    assert_eq!(read_all(&fs, f), b"open period content");
    assert_eq!(fs.create(ROOT, b"x", 0o644, 0, 0, 0).unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(fs.open(f, true, false, 0).unwrap_err().kind(), ErrorKind::ReadOnly);
}

/// Creates `n` small files in `dirs` directories; returns (path, content).
fn small_tree(fs: &VaultFs, n: usize, dirs: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dinos: Vec<Ino> =
        (0..dirs).map(|d| fs.mkdir(ROOT, format!("d{d:02}").as_bytes(), 0o755, 0, 0).unwrap().ino).collect();
    let mut out = Vec::new();
    for i in 0..n {
        let d = i % dirs;
        let name = format!("file{i:05}");
        let data = stream(rng.gen_range(1..8192), seed * 100_000 + i as u64);
        let (_, fh) = fs.create(dinos[d], name.as_bytes(), 0o644, 0, 0, 1).unwrap();
        fs.write(fh, 0, &data).unwrap();
        fs.flush(fh, 1).unwrap();
        fs.release(fh).unwrap();
        out.push((format!("d{d:02}/{name}"), data));
    }
    out
}

#[test]
fn many_small_files_share_packs_and_one_revision() {
    let store = new_store();
    let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let files = small_tree(&fs, 2000, 20, 3);
    // Before any checkpoint: only a journal; a power loss now keeps every closed file.
    assert!(store.list(ObjKind::Snapshot).unwrap().is_empty());
    let v = restarted(&store);
    for (p, d) in files.iter().step_by(97) {
        same(file_at(&v, p).map(|x| x.0).as_ref(), Some(d), p);
    }
    fs.maintain(true);
    assert!(!fs.holds_lock());
    let packs = store.list(ObjKind::Pack).unwrap().len();
    let index = store.list(ObjKind::Index).unwrap().len();
    let snaps = store.list(ObjKind::Snapshot).unwrap().len();
    // 2000 files of 4 KiB on average at a 1 MiB pack target: about 8 full packs.
    assert!(packs <= 16 && index <= 2 && snaps == 1, "{packs} packs, {index} index files, {snaps} revisions");
    let v = Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap();
    for (p, d) in &files {
        same(file_at(&v, p).map(|x| x.0).as_ref(), Some(d), p);
    }
    let info = v.resolve("current").unwrap();
    assert_eq!(info.snap.files, 2000);
    assert_eq!(info.snap.logical_bytes, files.iter().map(|f| f.1.len() as u64).sum::<u64>());
    check_clean(&v);
}

#[test]
fn directory_changes_survive_a_crash() {
    let store = new_store();
    let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let files = small_tree(&fs, 30, 3, 5);
    fs.maintain(true);
    // After a checkpoint: renames, removals, a symlink and attribute changes, then a crash.
    let d0 = fs.lookup(ROOT, b"d00").unwrap().ino;
    let d1 = fs.lookup(ROOT, b"d01").unwrap().ino;
    fs.rename(ROOT, b"d02", ROOT, b"moved", false).unwrap();
    fs.rename(d0, b"file00000", d1, b"renamed", false).unwrap();
    fs.unlink(d0, b"file00003").unwrap();
    fs.symlink(ROOT, b"link", b"d00/file00006", 0, 0).unwrap();
    let f = fs.lookup(d0, b"file00006").unwrap().ino;
    let odd = Time { sec: -(1 << 40), nsec: 123_456_789 };
    let y2106 = Time { sec: 1 << 32, nsec: 1 };
    fs.setattr(f, &SetAttr { mode: Some(0o4750), atime: Some(odd), mtime: Some(y2106), ..Default::default() }).unwrap();
    fs.commit_all().unwrap();
    let v = restarted(&store);
    let content = |p: &str| files.iter().find(|f| f.0 == p).unwrap().1.clone();
    assert_eq!(file_at(&v, "d01/renamed").unwrap().0, content("d00/file00000"));
    assert!(file_at(&v, "d00/file00000").is_none());
    assert!(file_at(&v, "d00/file00003").is_none());
    assert_eq!(file_at(&v, "moved/file00002").unwrap().0, content("d02/file00002"));
    let info = v.resolve("current").unwrap();
    let link = v.lookup(info.snap.root, &[b"link".to_vec()]).unwrap();
    assert!(matches!(link.kind, NodeKind::Symlink { ref target } if target == b"d00/file00006"));
    let n = v.lookup(info.snap.root, &[b"d00".to_vec(), b"file00006".to_vec()]).unwrap();
    assert_eq!((n.mode & 0o7777, n.atime, n.mtime), (0o4750, odd, y2106));
    assert_eq!(info.snap.files, 29);
    check_clean(&v);
}

/// Runs a job of closes, directory changes and checkpoints on a mount over `fault`. Returns
/// the files whose close returned success, and whether any step failed.
fn faulty_job(fs: &VaultFs, seed: u64) -> (Vec<(String, Vec<u8>)>, bool) {
    let mut ok = Vec::new();
    let mut failed = false;
    let d = fs.mkdir(ROOT, b"dir", 0o755, 0, 0).map(|a| a.ino);
    failed |= d.is_err();
    for i in 0..12u64 {
        let name = format!("f{i}");
        // Every fourth file is big enough to fill packs of its own.
        let len = if i % 4 == 3 { 3 << 20 } else { 3000 + i as usize * 1000 };
        let data = stream(len, seed * 1000 + i);
        let parent = match (&d, i % 2) {
            (Ok(d), 1) => *d,
            _ => ROOT,
        };
        let path = if parent == ROOT { name.clone() } else { format!("dir/{name}") };
        let Ok((_, fh)) = fs.create(parent, name.as_bytes(), 0o644, 0, 0, 1) else {
            failed = true;
            continue;
        };
        let mut good = true;
        for (k, block) in data.chunks(256 << 10).enumerate() {
            if fs.write(fh, (k * (256 << 10)) as u64, block).is_err() {
                good = false;
                break;
            }
        }
        let closed = fs.flush(fh, 1).is_ok();
        let released = fs.release(fh).is_ok();
        if good && closed && released {
            ok.push((path, data));
        } else {
            failed = true;
        }
        if i == 5 {
            // A rename is durable once the directory is synced (fsyncdir).
            let renamed = fs.rename(ROOT, b"f0", ROOT, b"f0-renamed", false).is_ok();
            let synced = renamed && fs.sync_dirs().is_ok();
            if synced {
                if let Some(e) = ok.iter_mut().find(|e| e.0 == "f0") {
                    e.0 = "f0-renamed".into();
                }
            } else {
                // Under one name or the other after a crash: not checked.
                ok.retain(|e| e.0 != "f0");
                failed = true;
            }
        }
        if i % 5 == 4 && !fs.maintain(true).is_empty() {
            failed = true;
        }
    }
    (ok, failed)
}

#[test]
fn full_disk_at_every_write_step_loses_nothing_that_was_closed() {
    // The issue this guards against: a full disk during a commit destroyed the period. Fail
    // the n-th write step (pack, index file, revision, journal create/append/sync) for every
    // n of a job; each time, every file whose close returned is readable in the mount, after
    // a crash, and after space is freed; nothing is damaged.
    let mut n = 0u64;
    loop {
        let mem = new_store();
        let fault = Arc::new(FaultStore::fail_after(mem.clone(), n, ErrorKind::NoSpace));
        let v = vault_on(fault.clone());
        let fs = match VaultFs::new(v, true, 0, 0) {
            Ok(fs) => fs,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NoSpace, "step {n}: {e}");
                n += 1;
                continue;
            }
        };
        let (ok, failed) = faulty_job(&fs, n);
        // Closed files read back in the running mount.
        for (p, d) in &ok {
            let comps: Vec<&str> = p.split('/').collect();
            let mut ino = ROOT;
            for c in comps {
                ino = fs.lookup(ino, c.as_bytes()).unwrap_or_else(|e| panic!("step {n}: {p}: {e}")).ino;
            }
            same(Some(&read_all(&fs, ino)), Some(d), &format!("step {n}: {p} in the mount"));
        }
        // A power loss now: every closed file is there, and the vault checks clean.
        let v2 = restarted(&mem);
        for (p, d) in &ok {
            same(file_at(&v2, p).map(|x| x.0).as_ref(), Some(d), &format!("step {n}: {p} after a crash"));
        }
        check_clean(&v2);
        // Space freed: the same mount goes on and unmounts cleanly.
        fault.allow(u64::MAX);
        let (_, fh) = fs.create(ROOT, b"after", 0o644, 0, 0, 1).unwrap();
        fs.write(fh, 0, b"written once space was freed").unwrap();
        fs.flush(fh, 1).unwrap();
        fs.release(fh).unwrap();
        fs.shutdown().unwrap_or_else(|e| panic!("step {n}: unmount: {e}"));
        let v3 = Vault::open(mem.clone(), &secret(), &OpenOptions::default()).unwrap();
        for (p, d) in &ok {
            same(file_at(&v3, p).map(|x| x.0).as_ref(), Some(d), &format!("step {n}: {p} after unmount"));
        }
        assert_eq!(file_at(&v3, "after").unwrap().0, b"written once space was freed");
        check_clean(&v3);
        if !failed {
            // The job ran through: every write step has been failed once.
            break;
        }
        n += 1;
    }
    assert!(n > 20, "only {n} write steps");
}

#[test]
fn damaged_journals_are_reported_and_what_came_before_is_kept() {
    // Three ways a journal can be damaged: a torn tail, a flipped byte in the middle, a
    // missing pack it names.
    for case in 0..3 {
        let store = new_store();
        let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
        let first = small_tree(&fs, 5, 1, 7);
        let copy = store.durable_copy();
        let names = copy.journals().unwrap().list().unwrap();
        assert_eq!(names.len(), 1);
        let name = names[0].clone();
        let len_before = copy.journals().unwrap().read(&name).unwrap().len();
        // More closes after the first five (one big file that fills packs).
        let (_, fh) = fs.create(ROOT, b"later", 0o644, 0, 0, 1).unwrap();
        // Past 8 MiB not yet journaled, a close writes pack files (named by pack records).
        let big = write_stream(&fs, fh, 12 << 20, 9);
        fs.flush(fh, 1).unwrap();
        fs.release(fh).unwrap();
        let copy = Arc::new(store.durable_copy());
        std::mem::forget(fs);
        match case {
            0 => copy.mutate_journal(&name, |j| j.truncate(j.len() - 7)),
            1 => copy.mutate_journal(&name, |j| j[len_before + 40] ^= 0x20),
            _ => {
                let packs = copy.list(ObjKind::Pack).unwrap();
                assert!(!packs.is_empty());
                for (p, _) in packs {
                    copy.delete(ObjKind::Pack, &p).unwrap();
                }
            }
        }
        let v = vault(&copy);
        let w = v.begin_write("test replay", Duration::ZERO).unwrap();
        let report = w.replayed().cloned().unwrap();
        drop(w);
        for (p, d) in &first {
            same(file_at(v, p).map(|x| x.0).as_ref(), Some(d), &format!("case {case}: {p}"));
        }
        match case {
            0 => {
                // The torn record was never synced: nothing to report, the rest is there.
                assert!(report.problems.is_empty(), "{:?}", report.problems);
                assert!(file_at(v, "later").is_none() || file_at(v, "later").unwrap().0 == big);
            }
            1 => {
                assert!(report.problems.iter().any(|p| p.contains(&name[..8])), "{:?}", report.problems);
                assert!(file_at(v, "later").is_none());
                assert!(copy.journals().unwrap().list().unwrap().iter().any(|n| n.ends_with(".damaged")));
            }
            _ => {
                assert!(
                    report.problems.iter().any(|p| p.contains("later") || p.contains("missing")),
                    "{:?}",
                    report.problems
                );
                assert!(file_at(v, "later").is_none());
            }
        }
        check_clean(v);
        // Nothing is replayed twice.
        let w = v.begin_write("again", Duration::ZERO).unwrap();
        assert!(w.replayed().is_none());
    }
}

#[test]
fn concurrent_writers_and_a_reader_of_a_sealed_snapshot() {
    let store = new_store();
    let v = vault(&store);
    {
        let o = vault::commands::put::PutOptions {
            path: "old".into(),
            mode: 0o644,
            mtime_ns: None,
            lock_wait: Duration::ZERO,
        };
        vault::commands::put::put(v, &o, &mut &stream(4 << 20, 11)[..]).unwrap();
        let mut w = v.begin_write("test", Duration::ZERO).unwrap();
        let cur = v.resolve("current").unwrap();
        // Move it into a past period, sealed.
        let info = w.commit("2001-01-01", None, cur.snap.root, 1, 4 << 20).unwrap();
        w.seal(&info).unwrap();
        w.forget(&cur).unwrap();
    }
    let fs = Arc::new(VaultFs::new(v, true, 0, 0).unwrap());
    let old = fs.lookup(ROOT, b"2001-01-01").unwrap().ino;
    let old_file = fs.lookup(old, b"old").unwrap().ino;
    let expect_old = stream(4 << 20, 11);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (fs, stop, expect) = (fs.clone(), stop.clone(), expect_old.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let fh = fs.open(old_file, false, false, 9).unwrap();
                let got = fs.read_fh(fh, ((n % 4) << 20) as u64, 1 << 20).unwrap();
                assert_eq!(got, &expect[(n % 4) << 20..((n % 4) + 1) << 20]);
                fs.release(fh).unwrap();
                n += 1;
            }
            n
        })
    };
    let writers: Vec<_> = (0..2u64)
        .map(|k| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let name = format!("dump{k}");
                let (a, fh) = fs.create(ROOT, name.as_bytes(), 0o644, 0, 0, 10 + k as u32).unwrap();
                let data = write_stream(&fs, fh, 24 << 20, 20 + k);
                fs.flush(fh, 10 + k as u32).unwrap();
                fs.release(fh).unwrap();
                (a.ino, data)
            })
        })
        .collect();
    let written: Vec<(Ino, Vec<u8>)> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    for (ino, data) in &written {
        same(Some(&read_all(&fs, *ino)), Some(data), "written concurrently");
    }
    fs.shutdown().unwrap();
    let v = Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap();
    for (k, (_, data)) in written.iter().enumerate() {
        same(file_at(&v, &format!("dump{k}")).map(|x| x.0).as_ref(), Some(data), "after unmount");
    }
    check_clean(&v);
}

#[test]
fn every_node_type_hard_links_and_exact_times_survive_a_crash() {
    let store = new_store();
    let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let d = fs.mkdir(ROOT, b"d", 0o2775, 0, 7).unwrap().ino;
    let fifo = fs.mknod(d, b"fifo", 0o010644, 0, 1, 2).unwrap();
    assert_eq!((fifo.kind, fifo.gid), (Kind::Fifo, 7), "a set-group-id directory passes its group on");
    let sock = fs.mknod(d, b"sock", 0o140600, 0, 0, 0).unwrap();
    let chr = fs.mknod(d, b"tty", 0o020620, 0x0403, 0, 5).unwrap();
    let blk = fs.mknod(d, b"disk", 0o060660, 0x0801, 0, 6).unwrap();
    assert_eq!(
        (sock.kind, chr.kind, chr.rdev, blk.kind, blk.rdev),
        (Kind::Socket, Kind::CharDevice, 0x0403, Kind::BlockDevice, 0x0801)
    );
    // A file with two more names, one in another directory; written after linking.
    let (a, fh) = fs.create(ROOT, b"file", 0o640, 0, 0, 1).unwrap();
    fs.write(fh, 0, b"first version").unwrap();
    fs.flush(fh, 1).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(fs.link(a.ino, d, b"hard").unwrap().nlink, 2);
    assert_eq!(fs.link(a.ino, ROOT, b"hard2").unwrap().nlink, 3);
    assert_eq!(fs.lookup(d, b"hard").unwrap().ino, a.ino);
    let fh = fs.open(a.ino, true, true, 1).unwrap();
    fs.write(fh, 0, b"second version, through every name").unwrap();
    fs.flush(fh, 1).unwrap();
    fs.release(fh).unwrap();
    fs.unlink(ROOT, b"hard2").unwrap();
    assert_eq!(fs.getattr(a.ino).unwrap().nlink, 2);
    // Errors POSIX asks for.
    let long = vec![b'x'; 256];
    assert_eq!(fs.mkdir(ROOT, &long, 0o755, 0, 0).unwrap_err().kind(), ErrorKind::NameTooLong);
    assert_eq!(fs.lookup(ROOT, &long).unwrap_err().kind(), ErrorKind::NameTooLong);
    assert_eq!(fs.link(d, ROOT, b"dirlink").unwrap_err().kind(), ErrorKind::NotPermitted);
    assert_eq!(fs.symlink(ROOT, b"l", &[b'a'; 4096], 0, 0).unwrap_err().kind(), ErrorKind::NameTooLong);
    // Exact times over a wide range.
    let old = Time { sec: -(1 << 36), nsec: 999_999_999 };
    let future = Time { sec: 1 << 34, nsec: 1 };
    fs.setattr(fifo.ino, &SetAttr { atime: Some(old), mtime: Some(future), ..Default::default() }).unwrap();
    let got = fs.getattr(fifo.ino).unwrap();
    assert_eq!((got.atime, got.mtime), (old, future));
    assert!(got.ctime > Time { sec: 1_700_000_000, nsec: 0 }, "ctime is the time of the change");
    // A power loss now: everything above is there.
    fs.sync_dirs().unwrap();
    let v = restarted(&store);
    let info = v.resolve("current").unwrap();
    let at =
        |p: &[&str]| v.lookup(info.snap.root, &p.iter().map(|c| c.as_bytes().to_vec()).collect::<Vec<_>>()).unwrap();
    assert!(matches!(at(&["d", "fifo"]).kind, NodeKind::Fifo));
    assert_eq!((at(&["d", "fifo"]).atime, at(&["d", "fifo"]).mtime), (old, future));
    assert!(matches!(at(&["d", "sock"]).kind, NodeKind::Socket));
    assert!(matches!(at(&["d", "tty"]).kind, NodeKind::CharDevice { rdev: 0x0403 }));
    assert!(matches!(at(&["d", "disk"]).kind, NodeKind::BlockDevice { rdev: 0x0801 }));
    let (f1, f2) = (at(&["file"]), at(&["d", "hard"]));
    assert!(f1.link != 0 && f1.link == f2.link, "both names carry one link id");
    assert!(v.lookup(info.snap.root, &[b"hard2".to_vec()]).is_err());
    for p in ["file", "d/hard"] {
        assert_eq!(file_at(&v, p).unwrap().0, b"second version, through every name");
    }
    // A new mount shows the names as one inode with two links.
    fs.shutdown().unwrap();
    let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
    let i1 = fs.lookup(ROOT, b"file").unwrap();
    let d = fs.lookup(ROOT, b"d").unwrap();
    assert_eq!(d.perm & 0o7777, 0o2775);
    let i2 = fs.lookup(d.ino, b"hard").unwrap();
    assert_eq!((i1.ino, i1.nlink), (i2.ino, 2));
    check_clean(&Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap());
}

/// A gzip file of dump-like records, `n` of them (about 40 compressed bytes each).
fn gzipped_records(n: usize, seed: u64) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let noise = stream(n * 8, seed);
    for i in 0..n {
        let r = u64::from_le_bytes(noise[i * 8..i * 8 + 8].try_into().unwrap());
        writeln!(e, "{{\"_id\":{i},\"key\":\"{r:016x}\",\"n\":{}}}", r % 1000).unwrap();
    }
    e.finish().unwrap()
}

/// The records of [`gzipped_records`] compressed by GNU gzip -6, whose every window the
/// expansion recreates (preflate does not follow miniz's choices as far).
fn gnu_gzipped_records(n: usize, seed: u64) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gzipped_records(n, seed)[..]).read_to_end(&mut plain).unwrap();
    let mut child = std::process::Command::new("gzip")
        .args(["-6", "-nc"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip (scripts/install-deps.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&plain).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Writes `data` in 64 KiB writes from offset `at`.
fn write_all_at(fs: &VaultFs, fh: Fh, at: u64, data: &[u8]) {
    for (i, block) in data.chunks(65536).enumerate() {
        fs.write(fh, at + (i * 65536) as u64, block).unwrap();
    }
}

fn has_recipe(v: &Vault, path: &str) -> bool {
    let info = v.resolve("current").unwrap();
    let node = v.lookup(info.snap.root, &vault::repo::trees::split_path(path).unwrap()).unwrap();
    matches!(node.kind, NodeKind::File { content, .. } if content.recipe.is_some())
}

#[test]
fn a_gzip_written_in_order_is_stored_expanded_and_reads_back_exact() {
    let store = new_store();
    let v = vault(&store);
    let fs = VaultFs::new(v, true, 0, 0).unwrap();
    let gz = gzipped_records(1_000_000, 3);
    assert!(gz.len() > 12 << 20, "{}", gz.len());
    let (a, fh) = fs.create(ROOT, b"dump.gz", 0o600, 0, 0, 0).unwrap();
    write_all_at(&fs, fh, 0, &gz);
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    same(Some(&read_all(&fs, a.ino)), Some(&gz), "read through the mount");
    // Reads at random offsets, backwards too, through a handle.
    let fh = fs.open(a.ino, false, false, 0).unwrap();
    for k in [7u64, 3, 11, 1, 9, 0, 5] {
        let off = k * gz.len() as u64 / 12;
        let got = fs.read_fh(fh, off, 100_000).unwrap();
        assert!(got[..] == gz[off as usize..(off as usize + 100_000).min(gz.len())], "read at {off}");
    }
    fs.release(fh).unwrap();
    let r = restarted(&store);
    assert!(has_recipe(&r, "dump.gz"), "stored expanded");
    same(committed(&store, "dump.gz").as_ref(), Some(&gz), "after a restart");
    check_clean(&r);
    // Appending later: the file is chunked as it is again.
    let fh = fs.open(a.ino, true, false, 0).unwrap();
    fs.write(fh, gz.len() as u64, b"trailing bytes").unwrap();
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    let mut longer = gz.clone();
    longer.extend_from_slice(b"trailing bytes");
    same(committed(&store, "dump.gz").as_ref(), Some(&longer), "after an append");
    assert!(!has_recipe(&restarted(&store), "dump.gz"));
}

#[test]
fn a_gzip_rewritten_in_its_header_stays_expanded_and_elsewhere_or_read_while_written_is_not() {
    let store = new_store();
    let v = vault(&store);
    let fs = VaultFs::new(v, true, 0, 0).unwrap();
    let gz = gnu_gzipped_records(1_500_000, 4);
    let half = gz.len() / 2;
    assert!(half > 10 << 20, "{}", gz.len());
    // Seeks back while writing, as pg_dump -Fc does with its table of contents: a rewrite of
    // the header's time field, then one that runs on past the end written so far, then the
    // header again once everything is written.
    let (a, fh) = fs.create(ROOT, b"seeked.gz", 0o600, 0, 0, 0).unwrap();
    write_all_at(&fs, fh, 0, &gz[..half]);
    let mut model = gz.clone();
    fs.write(fh, 4, b"\0\0\0\0").unwrap();
    model[4..8].copy_from_slice(b"\0\0\0\0");
    write_all_at(&fs, fh, half as u64, &gz[half..gz.len() - 1000]);
    fs.write(fh, gz.len() as u64 - 1000, &gz[gz.len() - 1000..]).unwrap();
    fs.write(fh, 4, b"\x11\x22\x33").unwrap();
    model[4..7].copy_from_slice(b"\x11\x22\x33");
    assert_eq!(fs.getattr(a.ino).unwrap().size, gz.len() as u64);
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    same(Some(&read_all(&fs, a.ino)), Some(&model), "seeked, through the mount");
    same(committed(&store, "seeked.gz").as_ref(), Some(&model), "seeked");
    assert!(has_recipe(&restarted(&store), "seeked.gz"), "a header rewrite keeps the file expanded");
    // A rewrite inside the compressed data, and one that straddles the end written so far
    // (changing bytes before it, continuing the stream after it): the file is stored as it
    // is, with every rewrite.
    for (name, at, len) in [("inside.gz", half / 3, 5000usize), ("straddle.gz", half - 700, 2000)] {
        let (_, fh) = fs.create(ROOT, name.as_bytes(), 0o600, 0, 0, 0).unwrap();
        write_all_at(&fs, fh, 0, &gz[..half]);
        let mut model = gz.clone();
        let mut junk = stream(len, 9);
        if at + len > half {
            junk[half - at..].copy_from_slice(&gz[half..at + len]);
        }
        fs.write(fh, at as u64, &junk).unwrap();
        model[at..at + len].copy_from_slice(&junk);
        let next = half.max(at + len);
        write_all_at(&fs, fh, next as u64, &gz[next..]);
        fs.flush(fh, 0).unwrap();
        fs.release(fh).unwrap();
        same(committed(&store, name).as_ref(), Some(&model), name);
        assert!(!has_recipe(&restarted(&store), name), "{name}");
    }
    // Read back while being written.
    let (a, fh) = fs.create(ROOT, b"peeked.gz", 0o600, 0, 0, 0).unwrap();
    write_all_at(&fs, fh, 0, &gz[..half]);
    assert!(fs.read(a.ino, 1000, 10).unwrap() == gz[1000..1010]);
    write_all_at(&fs, fh, half as u64, &gz[half..]);
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    same(committed(&store, "peeked.gz").as_ref(), Some(&gz), "peeked");
    assert!(!has_recipe(&restarted(&store), "peeked.gz"));
    check_clean(&restarted(&store));
}

#[test]
fn a_gzip_grown_past_8_mib_by_a_hole_or_a_truncate_is_stored_as_written() {
    let store = new_store();
    let v = vault(&store);
    let fs = VaultFs::new(v, true, 0, 0).unwrap();
    let gz = gzipped_records(100_000, 5);
    assert!(gz.len() < 4 << 20);
    // A write far past the end: the zeros in between cross 8 MiB.
    let (_, fh) = fs.create(ROOT, b"hole.gz", 0o600, 0, 0, 0).unwrap();
    write_all_at(&fs, fh, 0, &gz);
    let far = (9 << 20) + 100;
    fs.write(fh, far, b"after the hole").unwrap();
    let mut model = gz.clone();
    model.resize(far as usize, 0);
    model.extend_from_slice(b"after the hole");
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    same(committed(&store, "hole.gz").as_ref(), Some(&model), "hole");
    // A truncate that grows it past 8 MiB, then an append.
    let (_, fh) = fs.create(ROOT, b"grown.gz", 0o600, 0, 0, 0).unwrap();
    write_all_at(&fs, fh, 0, &gz);
    fs.write(fh, gz.len() as u64, &[]).unwrap();
    let a = fs.lookup(ROOT, b"grown.gz").unwrap();
    fs.setattr(a.ino, &SetAttr { size: Some(10 << 20), ..Default::default() }).unwrap();
    fs.write(fh, 10 << 20, b"tail").unwrap();
    let mut model = gz.clone();
    model.resize(10 << 20, 0);
    model.extend_from_slice(b"tail");
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    same(committed(&store, "grown.gz").as_ref(), Some(&model), "grown");
    check_clean(&restarted(&store));
}

#[test]
fn a_gzip_under_8_mib_is_expanded_when_closed_and_a_small_one_is_not() {
    let store = new_store();
    let v = vault(&store);
    let fs = VaultFs::new(v, true, 0, 0).unwrap();
    for (name, n, expanded) in [("mid.gz", 200_000, true), ("small.gz", 10_000, false)] {
        let gz = gzipped_records(n, 6);
        let (a, fh) = fs.create(ROOT, name.as_bytes(), 0o600, 0, 0, 0).unwrap();
        write_all_at(&fs, fh, 0, &gz);
        fs.flush(fh, 0).unwrap();
        fs.release(fh).unwrap();
        same(Some(&read_all(&fs, a.ino)), Some(&gz), name);
        same(committed(&store, name).as_ref(), Some(&gz), name);
        assert_eq!(has_recipe(&restarted(&store), name), expanded, "{name} of {} bytes", gz.len());
    }
    check_clean(&restarted(&store));
}

#[test]
fn a_full_disk_while_rewrites_are_applied_never_shows_the_bytes_before_them() {
    // A rewrite inside the compressed data of a file being expanded is applied to its bytes
    // when the expansion ends (here: at a read). If the disk fills up meanwhile, reads fail;
    // none returns the bytes from before the rewrite.
    let gz = gnu_gzipped_records(700_000, 8);
    assert!(gz.len() > 10 << 20, "{}", gz.len());
    let mut model = gz.clone();
    let junk = stream(4000, 10);
    model[1 << 20..(1 << 20) + 4000].copy_from_slice(&junk);
    for n in [0u64, 1, 3, 6, 10, 16] {
        let mem = new_store();
        let fault = Arc::new(FaultStore::fail_after(mem.clone(), u64::MAX, ErrorKind::NoSpace));
        let fs = VaultFs::new(vault_on(fault.clone()), true, 0, 0).unwrap();
        let (a, fh) = fs.create(ROOT, b"dump.gz", 0o600, 0, 0, 0).unwrap();
        write_all_at(&fs, fh, 0, &gz);
        fs.write(fh, 1 << 20, &junk).unwrap();
        fault.allow(n);
        let mut failed = false;
        for k in 0..2 {
            match fs.read(a.ino, 0, gz.len() + 10) {
                Ok(b) => same(Some(&b), Some(&model), &format!("{n} write steps, read {k}")),
                Err(e) => {
                    failed = true;
                    assert_ne!(e.kind(), ErrorKind::Corrupt, "{n} write steps: {e}");
                }
            }
        }
        let closed = fs.release(fh);
        fault.allow(u64::MAX);
        // A file whose staged bytes were lost is dropped at its close; anything committed is
        // the file as last written.
        let got = committed(&mem, "dump.gz");
        if !failed && closed.is_ok() {
            same(got.as_ref(), Some(&model), &format!("{n} write steps, committed"));
        } else if let Some(b) = got {
            same(Some(&b), Some(&model), &format!("{n} write steps, committed after a failure"));
        }
    }
}

#[test]
fn large_files_stored_in_the_background_take_any_call_in_between() {
    // Files past the tail limit are stored by a thread of their own while the writer goes
    // on. Two such files are appended to in turns; in between, random calls that need the
    // chunk table as it is: reads anywhere (the bytes being stored included), writes behind
    // the tail, truncates, fsyncs, and a close and reopen. Every read, size and the final
    // content must match a model, in the mount, after a crash and after unmount.
    for seed in 0..3u64 {
        let store = new_store();
        let fs = VaultFs::new(vault(&store), true, 0, 0).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut files: Vec<(String, Ino, Fh, Vec<u8>)> = (0..2)
            .map(|k| {
                let name = format!("dump{k}");
                let (a, fh) = fs.create(ROOT, name.as_bytes(), 0o644, 0, 0, 1).unwrap();
                (name, a.ino, fh, Vec::new())
            })
            .collect();
        for step in 0..260u64 {
            let k = rng.gen_range(0..2);
            let (name, ino, fh, model) = &mut files[k];
            let what = rng.gen_range(0..100);
            let grow = model.len() < 48 << 20;
            if what < 80 && grow {
                // Appends, as a dump writes: up to 1 MiB each.
                let data = stream(rng.gen_range(1..=1 << 20), seed * 10_000 + step);
                fs.write(*fh, model.len() as u64, &data).unwrap();
                model.extend_from_slice(&data);
            } else if what < 88 {
                let off = rng.gen_range(0..model.len() as u64 + 10);
                let len = rng.gen_range(0..3 << 20);
                let got = fs.read(*ino, off, len).unwrap();
                let s = (off as usize).min(model.len());
                let e = (s + len).min(model.len());
                same(Some(&got), Some(&model[s..e].to_vec()), &format!("seed {seed} step {step}: read {off}+{len}"));
            } else if what < 93 {
                // A write behind the tail: possibly into bytes being stored.
                let len = rng.gen_range(1..200_000);
                let off = rng.gen_range(0..model.len().max(1)) as u64;
                let data = stream(len, seed * 20_000 + step);
                fs.write(*fh, off, &data).unwrap();
                let end = off as usize + len;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
            } else if what < 96 {
                let size = model.len().saturating_sub(rng.gen_range(0..12 << 20)) as u64;
                fs.setattr(*ino, &SetAttr { size: Some(size), ..Default::default() }).unwrap();
                model.resize(size as usize, 0);
            } else if what < 98 {
                fs.fsync(*fh).unwrap();
                same(committed(&store, name).as_ref(), Some(model), &format!("seed {seed} step {step}: fsynced"));
            } else {
                fs.flush(*fh, 1).unwrap();
                fs.release(*fh).unwrap();
                same(committed(&store, name).as_ref(), Some(model), &format!("seed {seed} step {step}: closed"));
                *fh = fs.open(*ino, true, false, 1).unwrap();
            }
            assert_eq!(fs.getattr(*ino).unwrap().size, model.len() as u64, "seed {seed} step {step}: size");
        }
        for (name, ino, fh, model) in &files {
            fs.flush(*fh, 1).unwrap();
            fs.release(*fh).unwrap();
            same(Some(&read_all(&fs, *ino)), Some(model), &format!("seed {seed}: {name} in the mount"));
            same(committed(&store, name).as_ref(), Some(model), &format!("seed {seed}: {name} after a crash"));
        }
        fs.shutdown().unwrap();
        let v = Vault::open(store.clone(), &secret(), &OpenOptions::default()).unwrap();
        for (name, _, _, model) in &files {
            same(file_at(&v, name).map(|x| x.0).as_ref(), Some(model), &format!("seed {seed}: {name} after unmount"));
        }
        check_clean(&v);
    }
}

#[test]
fn a_full_disk_while_a_large_file_is_stored_in_the_background_fails_a_later_write_or_the_close() {
    // The storing thread hits the full disk while the writer goes on: the failure is reported
    // by a later write or by the close (never lost), the file keeps its last committed
    // content, and what was closed before is intact.
    let data = stream(40 << 20, 7);
    let before = stream(3 << 20, 8);
    let mut n = 0u64;
    let mut failures = 0;
    loop {
        let mem = new_store();
        let fault = Arc::new(FaultStore::fail_after(mem.clone(), u64::MAX, ErrorKind::NoSpace));
        let v = vault_on(fault.clone());
        let fs = VaultFs::new(v, true, 0, 0).unwrap();
        let (_, fh) = fs.create(ROOT, b"before", 0o644, 0, 0, 1).unwrap();
        fs.write(fh, 0, &before).unwrap();
        fs.flush(fh, 1).unwrap();
        fs.release(fh).unwrap();
        // The n-th write step from here fails.
        fault.allow(n);
        let (a, fh) = fs.create(ROOT, b"dump", 0o644, 0, 0, 1).unwrap();
        let mut good = true;
        let mut written = 0usize;
        for (i, block) in data.chunks(1 << 20).enumerate() {
            if let Err(e) = fs.write(fh, (i << 20) as u64, block) {
                assert_eq!(e.kind(), ErrorKind::NoSpace, "step {n}, write {i}: {e}");
                good = false;
                break;
            }
            written += block.len();
        }
        if !good {
            // Before the close: reads of the failed file fail, or give all of its bytes there
            // that were written: never other bytes, never fewer.
            for off in [0usize, (8 << 20) - 100, 12 << 20, 16 << 20, 30 << 20] {
                if let Ok(got) = fs.read(a.ino, off as u64, 1 << 20) {
                    let want = data[off.min(written)..(off + (1 << 20)).min(written)].to_vec();
                    same(Some(&got), Some(&want), &format!("step {n}: read at {off} of {written} written"));
                }
            }
        }
        let closed = fs.flush(fh, 1);
        let released = fs.release(fh);
        for r in [&closed, &released] {
            if let Err(e) = r {
                assert_eq!(e.kind(), ErrorKind::NoSpace, "step {n}, close: {e}");
            }
        }
        if good && closed.is_ok() && released.is_ok() {
            // Nothing failed: the job ran through every write step.
            same(Some(&read_all(&fs, a.ino)), Some(&data), &format!("step {n}: dump in the mount"));
            assert!(failures > 3, "only {failures} failing steps");
            break;
        }
        failures += 1;
        // The failure came through; the dump is not shown with a short content.
        if let Ok(l) = fs.lookup(ROOT, b"dump") {
            assert_eq!(fs.getattr(l.ino).unwrap().size, 0, "step {n}: a failed dump keeps no content");
        }
        let v2 = restarted(&mem);
        same(file_at(&v2, "before").map(|x| x.0).as_ref(), Some(&before), &format!("step {n}: before, after a crash"));
        if let Some((got, _)) = file_at(&v2, "dump") {
            assert!(got.is_empty(), "step {n}: the failed dump was committed with {} bytes", got.len());
        }
        fault.allow(u64::MAX);
        fs.shutdown().unwrap_or_else(|e| panic!("step {n}: unmount: {e}"));
        let v3 = Vault::open(mem.clone(), &secret(), &OpenOptions::default()).unwrap();
        same(file_at(&v3, "before").map(|x| x.0).as_ref(), Some(&before), &format!("step {n}: before, after unmount"));
        check_clean(&v3);
        n += 1 + n / 2;
    }
}
