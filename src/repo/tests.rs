//! Engine tests over the memory store and the fault-injecting store.

use super::*;
use crate::commands::{check, keys, put, rebuild_index};
use crate::format::tree::{FileState, Node, NodeKind};
use crate::store::fault::FaultStore;
use crate::store::memory::MemoryStore;
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn secret() -> Secret {
    Secret::raw_key_from_hex(&"42".repeat(32)).unwrap()
}

fn small() -> InitOptions {
    InitOptions { chunk_avg: 1024, pack_target: 1 << 20, ..Default::default() }
}

fn new_vault() -> (Arc<MemoryStore>, Vault) {
    let m = Arc::new(MemoryStore::new());
    Vault::init(m.clone(), &secret(), &small()).unwrap();
    let v = Vault::open(m.clone(), &secret(), &OpenOptions::default()).unwrap();
    (m, v)
}

fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    // Half random, half text-like, so both compression paths are used.
    (0..n).map(|i| if (i / 4096) % 2 == 0 { r.gen() } else { b"abcdefgh"[r.gen_range(0..8)] }).collect()
}

fn file_node(content: crate::format::tree::Content, size: u64) -> Node {
    Node::new(
        Vec::new(),
        NodeKind::File { state: FileState::Complete, content },
        0o100644,
        0,
        0,
        Default::default(),
        size,
    )
}

/// Stores `content` as `path` in `period` through the low-level session API.
fn store_in(v: &Vault, period: &str, path: &str, content: &[u8]) -> SnapshotInfo {
    let mut w = v.begin_write("test", Duration::ZERO).unwrap();
    let base = v.snapshots().unwrap().into_iter().find(|s| s.snap.period == period);
    let st = w.store_stream(&mut &content[..]).unwrap();
    let comps = trees::split_path(path).unwrap();
    let (root, old) = w.set_path(base.as_ref().map(|b| b.snap.root), &comps, file_node(st.content, st.size)).unwrap();
    let (files, logical) = base.as_ref().map(|b| (b.snap.files, b.snap.logical_bytes)).unwrap_or((0, 0));
    let (files, logical) = match old {
        Some(o) => (files, logical - o.size + st.size),
        None => (files + 1, logical + st.size),
    };
    w.commit(period, base.as_ref(), root, files, logical).unwrap()
}

/// A new vault (small chunks and packs) opened with a sled index cache in a temporary directory.
fn new_cached_vault() -> (Arc<MemoryStore>, tempfile::TempDir, OpenOptions) {
    let m = Arc::new(MemoryStore::new());
    Vault::init(m.clone(), &secret(), &small()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let o = OpenOptions { cache_dir: Some(cache.path().to_path_buf()), ..Default::default() };
    (m, cache, o)
}

/// Commits a stored stream as the only file `f` of a new period 2026-11-20.
fn commit_as_f(w: &mut WriteSession<'_>, st: &writer::Stored) {
    let comps = trees::split_path("f").unwrap();
    let (root, _) = w.set_path(None, &comps, file_node(st.content.clone(), st.size)).unwrap();
    w.commit("2026-11-20", None, root, 1, st.size).unwrap();
}

/// Every index file of the vault is recorded in `v`'s index cache.
fn assert_cache_holds_every_index_file(m: &MemoryStore, v: &Vault) {
    let known = v.index.known_files().unwrap();
    for (name, _) in m.list(ObjKind::Index).unwrap() {
        assert!(known.contains(&crate::id::IndexId::from_hex(&name).unwrap()), "index file {name} not in the cache");
    }
}

fn read(v: &Vault, period: &str, path: &str) -> Result<Vec<u8>> {
    let info = v.resolve(period)?;
    let node = v.lookup(info.snap.root, &trees::split_path(path)?)?;
    let mut out = Vec::new();
    v.file_reader(&node)?.copy_to(&mut out)?;
    Ok(out)
}

#[test]
fn wrong_key_is_refused_and_writes_nothing() {
    let (m, _) = new_vault();
    let before: usize = ObjKind::ALL.iter().map(|k| m.list(*k).unwrap().len()).sum();
    let e = Vault::open(m.clone(), &Secret::raw_key_from_hex(&"43".repeat(32)).unwrap(), &OpenOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey);
    let e = Vault::open(m.clone(), &Secret::passphrase("x".into()).unwrap(), &OpenOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey);
    let after: usize = ObjKind::ALL.iter().map(|k| m.list(*k).unwrap().len()).sum();
    assert_eq!(before, after);
}

#[test]
fn init_refuses_existing_vault() {
    let (m, _) = new_vault();
    assert_eq!(Vault::init(m, &secret(), &small()).unwrap_err().kind(), ErrorKind::AlreadyExists);
}

#[test]
fn round_trip_nested_paths_and_random_reads() {
    let (_, v) = new_vault();
    let a = data(300_000, 1);
    let b = data(5_000, 2);
    store_in(&v, "2099-01-20", "a.bin", &a);
    let s = store_in(&v, "2099-01-20", "dir/sub/b.bin", &b);
    assert_eq!(s.snap.files, 2);
    assert_eq!(s.snap.logical_bytes, 305_000);
    assert_eq!(read(&v, "2099-01-20", "a.bin").unwrap(), a);
    assert_eq!(read(&v, "2099-01-20", "dir/sub/b.bin").unwrap(), b);
    let info = v.resolve("2099-01-20").unwrap();
    let node = v.lookup(info.snap.root, &trees::split_path("a.bin").unwrap()).unwrap();
    let r = v.file_reader(&node).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..200 {
        let off = rng.gen_range(0..a.len() as u64 + 10);
        let len = rng.gen_range(0..20_000);
        let got = r.read_at(off, len).unwrap();
        let s = (off as usize).min(a.len());
        let e = (s + len).min(a.len());
        assert_eq!(got, &a[s..e]);
    }
    // Replacing a file keeps the count and updates the size.
    let s = store_in(&v, "2099-01-20", "a.bin", &b);
    assert_eq!((s.snap.files, s.snap.logical_bytes), (2, 10_000));
    // Only the newest revision of the period is kept.
    assert_eq!(v.store.list(ObjKind::Snapshot).unwrap().len(), 1);
}

#[test]
fn dedup_across_periods() {
    let (_, v) = new_vault();
    let day1 = data(400_000, 7);
    let mut day2 = day1.clone();
    for i in (0..day2.len()).step_by(100_000) {
        day2[i] ^= 0x55; // scattered small edits
    }
    let s1 = store_in(&v, "2026-11-20", "dump", &day1);
    let s2 = store_in(&v, "2026-11-21", "dump", &day2);
    assert!(
        s2.snap.new_bytes * 4 < s1.snap.new_bytes,
        "day 2 stored {} vs day 1 {}",
        s2.snap.new_bytes,
        s1.snap.new_bytes
    );
    assert_eq!(read(&v, "2026-11-20", "dump").unwrap(), day1);
    assert_eq!(read(&v, "2026-11-21", "dump").unwrap(), day2);
}

#[test]
fn sealed_periods_are_immutable_and_latest_is_newest_sealed() {
    let (_, v) = new_vault();
    let s1 = store_in(&v, "2099-01-20", "x", b"one");
    store_in(&v, "2099-01-21", "x", b"two");
    assert_eq!(v.resolve("latest").unwrap_err().kind(), ErrorKind::NotFound);
    {
        let mut w = v.begin_write("test", Duration::ZERO).unwrap();
        let info = v.resolve("2099-01-20").unwrap();
        w.seal(&info).unwrap();
        let e = w.commit("2099-01-20", Some(&v.resolve("2099-01-20").unwrap()), s1.snap.root, 1, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly);
    }
    assert_eq!(v.resolve("latest").unwrap().snap.period, "2099-01-20");
    assert_eq!(read(&v, "latest", "x").unwrap(), b"one");
}

#[test]
fn ended_periods_are_sealed_by_the_next_writer() {
    let (_, v) = new_vault();
    store_in(&v, "2000-01-01", "old", b"old data");
    let w = v.begin_write("test", Duration::ZERO).unwrap();
    drop(w);
    let s = v.resolve("2000-01-01").unwrap();
    assert!(s.snap.sealed);
    let mut input = &b"new"[..];
    let o = put::PutOptions { path: "f".into(), mode: 0o600, mtime_ns: None, lock_wait: Duration::ZERO };
    let r = put::put(&v, &o, &mut input).unwrap();
    assert_eq!(r.period, v.clock().current());
    assert_eq!(read(&v, "current", "f").unwrap(), b"new");
    assert_eq!(put::validate_new_path("latest").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(put::validate_new_path("2026-01-01/x").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(put::validate_new_path("today/x").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(put::validate_new_path("today").is_ok());
    assert_eq!(put::validate_new_path("a/../b").unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn crash_at_every_write_keeps_earlier_snapshots() {
    // A clean vault with one committed period, then a second commit that dies at the N-th
    // object write, for every N until it succeeds.
    let base = Arc::new(MemoryStore::new());
    Vault::init(base.clone(), &secret(), &small()).unwrap();
    let day1 = data(200_000, 11);
    {
        let v = Vault::open(base.clone(), &secret(), &OpenOptions::default()).unwrap();
        store_in(&v, "2026-11-20", "dump", &day1);
    }
    let day2 = data(2_500_000, 12);
    commit_failing_at_every_write(&base, &secret(), &day1, &day2);
}

#[test]
fn damaged_pack_is_reported_with_the_files_it_affects() {
    let (m, v) = new_vault();
    store_in(&v, "2026-11-20", "big", &data(600_000, 5));
    let small_file = data(3000, 6);
    // A second period whose data lives in other packs.
    store_in(&v, "2026-11-21", "small", &small_file);
    let packs_of_big: Vec<String> = {
        let info = v.resolve("2026-11-20").unwrap();
        let node = v.lookup(info.snap.root, &trees::split_path("big").unwrap()).unwrap();
        let NodeKind::File { content, .. } = node.kind else { panic!() };
        let e = v.index.get(&crate::id::BlobRef::data(content.inline[0].id)).unwrap().unwrap();
        vec![e.pack.to_hex()]
    };
    m.mutate(ObjKind::Pack, &packs_of_big[0], |b| b[20] ^= 1);
    let r = check::check(&v, true).unwrap();
    assert!(!r.ok());
    assert!(r.errors.iter().any(|e| e.contains(&packs_of_big[0][..8])), "{:?}", r.errors);
    assert!(r.affected.contains(&"2026-11-20/big".to_string()), "{:?}", r.affected);
    assert!(!r.affected.iter().any(|a| a.contains("small")), "{:?}", r.affected);
    assert_eq!(read(&v, "2026-11-20", "big").unwrap_err().kind(), ErrorKind::Corrupt);
    assert_eq!(read(&v, "2026-11-21", "small").unwrap(), small_file);
    // Structure-only check does not read data, so it passes.
    assert!(check::check(&v, false).unwrap().ok());
}

#[test]
fn index_is_rebuilt_from_packs_alone() {
    let (m, v) = new_vault();
    let d = data(200_000, 9);
    store_in(&v, "2026-11-20", "f", &d);
    drop(v);
    for (n, _) in m.list(ObjKind::Index).unwrap() {
        m.delete(ObjKind::Index, &n).unwrap();
    }
    let v = Vault::open(m.clone(), &secret(), &OpenOptions::default()).unwrap();
    // Trees are unreachable without an index.
    assert_eq!(read(&v, "2026-11-20", "f").unwrap_err().kind(), ErrorKind::Corrupt);
    let r = rebuild_index::rebuild_index(&v, Duration::ZERO).unwrap();
    assert!(r.unreadable.is_empty());
    assert!(r.blobs > 0);
    assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    assert!(check::check(&v, true).unwrap().ok());
}

#[test]
fn sled_cache_can_be_deleted_at_any_time() {
    let (m, cache, o) = new_cached_vault();
    let d = data(100_000, 3);
    {
        let v = Vault::open(m.clone(), &secret(), &o).unwrap();
        assert!(v.index.is_persistent());
        store_in(&v, "2026-11-20", "f", &d);
    }
    {
        let v = Vault::open(m.clone(), &secret(), &o).unwrap();
        assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    }
    std::fs::remove_dir_all(cache.path()).unwrap();
    let v = Vault::open(m.clone(), &secret(), &o).unwrap();
    assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    // A cache that knows an index file the vault no longer has is rebuilt.
    drop(v);
    let v = Vault::open(m.clone(), &secret(), &o).unwrap();
    rebuild_index::rebuild_index(&v, Duration::ZERO).unwrap();
    drop(v);
    let v = Vault::open(m, &secret(), &o).unwrap();
    assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
}

#[test]
fn key_slots() {
    let (m, v) = new_vault();
    let pass = Secret::passphrase("hunter2 hunter2".into()).unwrap();
    keys::add(&v, &pass, "ops", Duration::ZERO).unwrap();
    assert_eq!(keys::list(&v).unwrap().len(), 2);
    let v2 = Vault::open(m.clone(), &pass, &OpenOptions::default()).unwrap();
    // passwd replaces the slot used to unlock.
    let newer = Secret::passphrase("correct horse".into()).unwrap();
    keys::passwd(&v2, &newer, Duration::ZERO).unwrap();
    assert_eq!(Vault::open(m.clone(), &pass, &OpenOptions::default()).unwrap_err().kind(), ErrorKind::WrongKey);
    let v3 = Vault::open(m.clone(), &newer, &OpenOptions::default()).unwrap();
    let slots = keys::list(&v3).unwrap();
    assert_eq!(slots.len(), 2);
    assert!(slots.iter().any(|s| s.label == "ops" && s.current));
    // Remove the raw-key slot, then the last one is refused.
    let raw = slots.iter().find(|s| s.kind == "raw-key").unwrap().id.to_hex();
    keys::remove(&v3, &raw[..8], Duration::ZERO).unwrap();
    let last = keys::list(&v3).unwrap()[0].id.to_hex();
    let e = keys::remove(&v3, &last[..8], Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains("last key slot"), "{e}");
    assert_eq!(Vault::open(m, &secret(), &OpenOptions::default()).unwrap_err().kind(), ErrorKind::WrongKey);
}

#[test]
fn metadata_is_opaque() {
    let (m, v) = new_vault();
    store_in(&v, "2026-11-20", "very-secret-name.pgdump", b"some content that is secret");
    for k in ObjKind::ALL {
        for (name, _) in m.list(k).unwrap() {
            let b = m.get(k, &name).unwrap();
            for needle in [&b"very-secret-name"[..], b"2026-11-20", b"content that"] {
                assert!(!b.windows(needle.len()).any(|w| w == needle), "{k:?}/{name} leaks {needle:?}");
            }
        }
    }
}

#[test]
fn large_files_keep_their_chunk_list_in_pages() {
    let (_, v) = new_vault();
    // ~3 MB at 1 KiB chunks: several thousand chunks, so the list is paged.
    let big = data(3_000_000, 21);
    let s = store_in(&v, "2099-01-20", "big", &big);
    let tree = v.load_tree(s.snap.root).unwrap();
    let NodeKind::File { content, .. } = &tree.get(b"big").unwrap().kind else { panic!() };
    assert!(content.inline.is_empty() && !content.pages.is_empty());
    assert_eq!(content.size(), big.len() as u64);
    assert_eq!(read(&v, "2099-01-20", "big").unwrap(), big);
    let node = v.lookup(s.snap.root, &[b"big".to_vec()]).unwrap();
    let r = v.file_reader(&node).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for _ in 0..100 {
        let off = rng.gen_range(0..big.len() as u64);
        let len = rng.gen_range(1..100_000);
        let e = (off as usize + len).min(big.len());
        assert_eq!(r.read_at(off, len).unwrap(), &big[off as usize..e]);
    }
    // The same content again shares every page.
    let s2 = store_in(&v, "2099-01-20", "copy", &big);
    assert!(s2.snap.new_bytes - s.snap.new_bytes < 20_000, "pages were not shared");
    assert!(check::check(&v, true).unwrap().ok());
}

#[test]
fn an_offsite_copy_refuses_every_writer() {
    let (store, v) = new_vault();
    v.begin_write("test", Duration::ZERO).unwrap();
    // A sync manifest makes the store an offsite copy: only sync writes it, through the store.
    store.put(ObjKind::Config, "manifest", b"VAULTMAN").unwrap();
    let e = v.begin_write("test", Duration::ZERO).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
    assert!(e.to_string().contains("offsite copy"), "{e}");
    assert!(v.begin_write_keeping_ended("test", Duration::ZERO).is_err());
    let o = put::PutOptions { path: "x".into(), mode: 0o644, mtime_ns: None, lock_wait: Duration::ZERO };
    assert_eq!(put::put(&v, &o, &mut &b"data"[..]).err().unwrap().kind(), ErrorKind::ReadOnly);
    // Append-only copies carry journal manifests instead.
    store.delete(ObjKind::Config, "manifest").unwrap();
    v.begin_write("test", Duration::ZERO).unwrap();
    store.put(ObjKind::Manifest, "0001", b"VAULTMAN").unwrap();
    assert_eq!(v.begin_write("test", Duration::ZERO).err().unwrap().kind(), ErrorKind::ReadOnly);
}

/// A copy of every object of `from`.
pub(super) fn copy_store(from: &MemoryStore) -> Arc<MemoryStore> {
    let copy = Arc::new(MemoryStore::new());
    for k in ObjKind::ALL {
        for (name, _) in from.list(k).unwrap() {
            copy.put(k, &name, &from.get(k, &name).unwrap()).unwrap();
        }
    }
    copy
}

/// Commits `day2` as period 2026-11-21 of the vault in `base` (opened with `key`) (which holds `day1` in
/// 2026-11-20) with the N-th object write failing, for every N until it succeeds: every
/// attempt leaves a clean vault with day 1 intact, and a failed commit is not visible.
pub(super) fn commit_failing_at_every_write(base: &MemoryStore, key: &Secret, day1: &[u8], day2: &[u8]) {
    let mut n = 0;
    loop {
        // Copy the store so every attempt starts from the same state.
        let copy = copy_store(base);
        let faulty = Arc::new(FaultStore::fail_after(copy.clone(), n, ErrorKind::NoSpace));
        let v = Vault::open(faulty, key, &OpenOptions::default()).unwrap();
        let done = (|| -> Result<()> {
            let mut w = v.begin_write("test", Duration::ZERO)?;
            let st = w.store_stream(&mut &day2[..])?;
            let (root, _) = w.set_path(None, &trees::split_path("dump")?, file_node(st.content, st.size))?;
            w.commit("2026-11-21", None, root, 1, st.size)?;
            Ok(())
        })();
        let v = Vault::open(copy.clone(), key, &OpenOptions::default()).unwrap();
        let report = check::check(&v, true).unwrap();
        assert!(report.ok(), "after failing at write {n}: {:?}", report.errors);
        assert_eq!(read(&v, "2026-11-20", "dump").unwrap(), day1, "write {n}");
        match done {
            Ok(()) => {
                assert_eq!(read(&v, "2026-11-21", "dump").unwrap(), day2);
                break;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NoSpace);
                assert!(v.resolve("2026-11-21").is_err(), "a failed commit must not be visible (write {n})");
            }
        }
        n += 1;
    }
    assert!(n >= 3, "the commit should take several writes, took {n}");
}

#[test]
fn a_long_write_names_its_packs_while_the_index_cache_fills_behind_it() {
    let (m, _cache, o) = new_cached_vault();
    // Random bytes at 1 KiB chunks: more new chunks than a session holds before it names its
    // packs in an index file (writer::MAX_PENDING), so the sled cache is filled on its thread
    // while the stream goes on.
    let mut r = rand::rngs::StdRng::seed_from_u64(77);
    let d: Vec<u8> = (0..90_000_000).map(|_| r.gen()).collect();
    {
        let v = Vault::open(m.clone(), &secret(), &o).unwrap();
        assert!(v.index.is_persistent());
        let mut w = v.begin_write("test", Duration::ZERO).unwrap();
        // As the daemon's session: written packs are kept for its journal until a close
        // takes them, or until an index file names them.
        w.packer_mut().keep_journal_records(true);
        let first = w.store_stream(&mut &d[..]).unwrap();
        assert!(first.new_chunks > 65_536, "only {} chunks", first.new_chunks);
        assert!(!m.list(ObjKind::Index).unwrap().is_empty(), "no index file during the write");
        let (_, records) = w.packer_mut().take_unjournaled();
        let unnamed: std::collections::HashSet<_> = w.packer_mut().written().iter().map(|p| p.pack).collect();
        assert!(
            records.iter().all(|p| unnamed.contains(&p.pack)),
            "{} pack records kept for the journal, {} packs not named by an index file",
            records.len(),
            unnamed.len()
        );
        // The same bytes again in the same session: every chunk is found, pending or indexed.
        let again = w.store_stream(&mut &d[..]).unwrap();
        assert_eq!(again.new_chunks, 0);
        assert_eq!(again.content, first.content);
        commit_as_f(&mut w, &first);
        assert!(m.list(ObjKind::Index).unwrap().len() >= 2);
        assert!(v.index.len() >= first.new_chunks as usize, "{} entries in the cache", v.index.len());
        assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    }
    // The cache holds every index file: a new process reads from it without reloading.
    let v = Vault::open(m.clone(), &secret(), &o).unwrap();
    assert_cache_holds_every_index_file(&m, &v);
    assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    assert!(check::check(&v, true).unwrap().ok());
}

#[test]
fn a_session_without_a_journal_keeps_no_records_of_its_packs() {
    let (_m, v) = new_vault();
    let mut w = v.begin_write("test", Duration::ZERO).unwrap();
    w.store_stream(&mut &data(5_000_000, 81)[..]).unwrap();
    w.flush().unwrap();
    // Nothing takes them in a session without a journal: kept, they added up for its whole
    // length (a 4 GB `put` held about 90 MB of them).
    assert!(w.packer_mut().take_unjournaled().1.is_empty());
}

#[test]
fn a_session_that_keeps_its_memory_low_fills_fewer_packs_and_loses_nothing() {
    let (m, v) = new_vault();
    let d = data(30_000_000, 83);
    let mut w = v.begin_write("test", Duration::ZERO).unwrap();
    let st = w.store_stream(&mut &d[..]).unwrap();
    let open_before = w.packer_mut().buffered();
    assert!(open_before > 0, "the stream left nothing in open packs");
    // Fewer lanes while the stream's packs are open: those beyond are sent to be written.
    w.keep_memory_low();
    assert!(w.packer_mut().buffered() < open_before);
    let again = w.store_stream(&mut &data(30_000_000, 84)[..]).unwrap();
    commit_as_f(&mut w, &st);
    drop(w);
    assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    assert!(again.new_chunks > 0);
    assert!(check::check(&v, true).unwrap().ok());
    assert!(!m.list(ObjKind::Pack).unwrap().is_empty());
}

/// Gives `ok` bytes of `data`, then fails every read.
struct FailsAfter<'a> {
    data: &'a [u8],
    ok: usize,
}

impl std::io::Read for FailsAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ok == 0 {
            return Err(std::io::Error::other("the disk went away"));
        }
        let n = buf.len().min(self.ok).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.ok -= n;
        Ok(n)
    }
}

#[test]
fn an_input_that_fails_midway_ends_the_stream_with_its_error_and_the_session_goes_on() {
    let (m, v) = new_vault();
    let d = data(40_000_000, 79);
    let mut w = v.begin_write("test", Duration::ZERO).unwrap();
    // Fails after several batches have gone through every stage (read, identify, seal, pack).
    for ok in [0, 5_000_000, 30_000_000] {
        let err = w.store_stream(&mut FailsAfter { data: &d, ok }).unwrap_err();
        assert!(err.to_string().contains("the disk went away"), "{err}");
    }
    // The same session stores the whole input afterwards and commits it.
    let s = w.store_stream(&mut &d[..]).unwrap();
    commit_as_f(&mut w, &s);
    drop(w);
    assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    let v = Vault::open(m.clone(), &secret(), &OpenOptions::default()).unwrap();
    assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    assert!(check::check(&v, true).unwrap().ok());
}

#[test]
fn a_commit_names_packs_already_written_before_it_writes_the_open_ones() {
    let (m, _cache, o) = new_cached_vault();
    // About 20,000 new 1 KiB chunks: fewer than a session holds before it names its packs on
    // its own, more than a commit names in an index file of their own before it writes the
    // open packs (writer::EARLY_INDEX).
    let d = data(20_000_000, 78);
    {
        let v = Vault::open(m.clone(), &secret(), &o).unwrap();
        let mut w = v.begin_write("test", Duration::ZERO).unwrap();
        let s = w.store_stream(&mut &d[..]).unwrap();
        assert!(s.new_chunks > 1 << 13 && s.new_chunks < 1 << 16, "{} chunks", s.new_chunks);
        assert!(m.list(ObjKind::Index).unwrap().is_empty(), "an index file before the commit");
        assert!(w.buffered() > 64 << 10, "no open pack before the commit");
        commit_as_f(&mut w, &s);
        let files = m.list(ObjKind::Index).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        // The first names only packs written before the commit; the second the packs it wrote.
        let mut sizes: Vec<usize> = files
            .iter()
            .map(|(name, _)| {
                let id = crate::id::IndexId::from_hex(name).unwrap();
                let b = m.get(ObjKind::Index, name).unwrap();
                let plain = v.sealer.open(crate::crypto::Domain::IndexFile, id.as_bytes(), &b).unwrap();
                crate::format::index::decode(&plain).unwrap().iter().map(|p| p.entries.len()).sum()
            })
            .collect();
        sizes.sort_unstable();
        assert!(sizes[0] > 0 && sizes[1] >= 1 << 13, "{sizes:?}");
        assert!(v.index.len() >= s.new_chunks as usize, "{} entries in the cache", v.index.len());
        assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    }
    let v = Vault::open(m.clone(), &secret(), &o).unwrap();
    assert_cache_holds_every_index_file(&m, &v);
    assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    assert!(check::check(&v, true).unwrap().ok());
}

#[test]
fn read_ahead_serves_concurrent_readers_and_reports_damage_only_where_read() {
    let (m, v) = new_vault();
    let big = data(6_000_000, 31);
    let s = store_in(&v, "2099-01-20", "big", &big);
    let node = v.lookup(s.snap.root, &[b"big".to_vec()]).unwrap();
    const REQ: usize = 128 << 10;
    // Four sequential readers from different starts and one random reader share one reader
    // (as the mount's threads do), each read followed by a read-ahead.
    let r = v.file_reader(&node).unwrap();
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let (r, big) = (&r, &big);
            sc.spawn(move || {
                let mut off = t * 1_300_000;
                while off < big.len() as u64 {
                    let got = r.read_at(off, REQ).unwrap();
                    let e = (off as usize + REQ).min(big.len());
                    assert_eq!(got, &big[off as usize..e], "at {off}");
                    r.read_ahead();
                    off += REQ as u64;
                }
            });
        }
        let (r, big) = (&r, &big);
        sc.spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(32);
            for _ in 0..100 {
                let off = rng.gen_range(0..big.len() as u64);
                let len = rng.gen_range(1..300_000);
                let e = (off as usize + len).min(big.len());
                assert_eq!(r.read_at(off, len).unwrap(), &big[off as usize..e]);
                r.read_ahead();
            }
        });
    });
    // Damage the pack holding the chunks around the middle of the file.
    let NodeKind::File { content, .. } = &node.kind else { panic!() };
    let mut pos = 0u64;
    let mut middle = None;
    for p in &content.pages {
        for c in v.load_list(p).unwrap() {
            if pos >= 3_000_000 && middle.is_none() {
                middle = Some(c.id);
            }
            pos += c.len as u64;
        }
    }
    let e = v.index.get(&crate::id::BlobRef::data(middle.unwrap())).unwrap().unwrap();
    m.mutate(ObjKind::Pack, &e.pack.to_hex(), |b| {
        let at = e.offset as usize + 20;
        b[at] ^= 1
    });
    // Read in order with read-ahead: each request gives what a fresh reader of just that
    // range gives; damage fetched ahead is reported by the read of its range only.
    let r = v.file_reader(&node).unwrap();
    let (mut failed, mut ok_after) = (0, 0);
    let mut off = 0u64;
    while off < big.len() as u64 {
        let e = (off as usize + REQ).min(big.len());
        let alone = v.file_reader(&node).unwrap().read_at(off, REQ);
        match r.read_at(off, REQ) {
            Ok(got) => {
                assert_eq!(got, &big[off as usize..e], "at {off}");
                assert!(alone.is_ok(), "at {off}: a read alone fails");
                ok_after += usize::from(failed > 0);
            }
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
                assert!(alone.is_err(), "at {off}: a read alone succeeds");
                failed += 1;
            }
        }
        r.read_ahead();
        off += REQ as u64;
    }
    assert!(failed > 0 && ok_after > 0, "failed {failed}, ok after {ok_after}");
}

#[test]
fn content_repeated_across_batches_is_sealed_once() {
    // A stream is identified a batch or two ahead of the stage that seals and packs it: content
    // that comes back in the next batches (a block written again and again) must still be
    // sealed once, and the stream read back whole.
    let (m, v) = new_vault();
    let block = data(3 << 20, 5);
    let mut d = Vec::new();
    for i in 0..12u64 {
        d.extend_from_slice(&block);
        d.extend_from_slice(&data(50_000, 100 + i));
    }
    let mut w = v.begin_write("test", Duration::ZERO).unwrap();
    let st = w.store_stream(&mut &d[..]).unwrap();
    let mut refs = st.content.inline.clone();
    for p in &st.content.pages {
        refs.extend(v.load_list(p).unwrap());
    }
    let distinct: std::collections::HashSet<_> = refs.iter().map(|c| c.id).collect();
    assert!(refs.len() > 2 * distinct.len(), "{} chunks, {} distinct", refs.len(), distinct.len());
    assert_eq!(st.new_chunks as usize, distinct.len(), "chunks packed vs distinct chunks of the stream");
    commit_as_f(&mut w, &st);
    drop(w);
    assert_eq!(read(&v, "2026-11-20", "f").unwrap(), d);
    // Each chunk is in exactly one pack entry.
    let mut data_entries = 0;
    for (name, _) in m.list(ObjKind::Pack).unwrap() {
        let id = crate::id::PackId::from_hex(&name).unwrap();
        let (_, entries) = crate::repo::packer::read_pack_header(&*v.store, &v.sealer, &id).unwrap();
        data_entries += entries.iter().filter(|e| e.blob.kind == crate::id::BlobKind::Data).count();
    }
    assert_eq!(data_entries, distinct.len(), "data blobs in the packs vs distinct chunks");
    assert!(check::check(&v, true).unwrap().ok());
}

#[test]
fn a_member_whose_frame_holds_other_bytes_is_refused_alone() {
    let (_m, v) = new_vault();
    let content = data(200_000, 9);
    store_in(&v, "2026-11-20", "f", &content);
    let info = v.resolve("2026-11-20").unwrap();
    let node = v.lookup(info.snap.root, &trees::split_path("f").unwrap()).unwrap();
    let NodeKind::File { content: stored, .. } = &node.kind else { panic!("not a file") };
    let mut chunks = Vec::new();
    ChunkReader::new(&v, stored)
        .for_each_chunk(&mut |c| {
            chunks.push(*c);
            Ok(())
        })
        .unwrap();
    // Two chunks of one frame: the index is told that the first lies where the second does.
    let entry = |k: usize| v.index.get(&crate::id::BlobRef::data(chunks[k].id)).unwrap().unwrap();
    let k = (1..chunks.len())
        .find(|&k| entry(k).member.is_some() && entry(k).offset == entry(k + 1).offset)
        .expect("two chunks in one frame");
    let (wrong, there) = (entry(k), entry(k + 1));
    let fake = crate::format::pack::PackEntry {
        blob: crate::id::BlobRef::data(chunks[k].id),
        offset: there.offset,
        length: there.length,
        raw_length: there.raw_length,
        member: there.member,
    };
    assert_eq!(wrong.pack, there.pack);
    let pack = crate::format::index::IndexPack { pack: there.pack, size: 0, entries: vec![fake] };
    v.index.add_file(crate::id::IndexId::random(), &[pack]).unwrap();
    // Every other chunk reads; that one is refused as not its content.
    let got = v.read_run(&chunks);
    for (i, r) in got.iter().enumerate() {
        match r {
            Ok(p) => assert_ne!(i, k, "chunk {i} was accepted with another chunk's bytes: {:?}", p.len()),
            Err(e) => {
                assert_eq!(i, k, "chunk {i}: {e}");
                assert_eq!(e.kind(), ErrorKind::Corrupt);
                assert!(e.to_string().contains("does not match its id"), "{e}");
            }
        }
    }
    // A whole-file read stops there, having written exactly the bytes before it.
    let mut out = Vec::new();
    let reader = v.file_reader(&node).unwrap();
    assert_eq!(reader.copy_to(&mut out).unwrap_err().kind(), ErrorKind::Corrupt);
    let before: usize = chunks[..k].iter().map(|c| c.len as usize).sum();
    assert_eq!(out, content[..before]);
}

#[test]
fn read_ahead_grows_for_a_sequential_reader_and_shrinks_for_a_random_one() {
    let (_m, v) = new_vault();
    let big = data(24_000_000, 41);
    let s = store_in(&v, "2099-01-20", "big", &big);
    let node = v.lookup(s.snap.root, &[b"big".to_vec()]).unwrap();
    let r = v.file_reader(&node).unwrap();
    const REQ: usize = 128 << 10;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    // The first read fetches 2 MiB ahead.
    assert_eq!(r.read_at(0, REQ).unwrap(), &big[..REQ]);
    let first = r.held_ahead();
    assert!((1 << 20..=3 << 20).contains(&first), "{:.2} MiB ahead after the first read", mib(first));
    // A sequential reader's misses fetch more and more, up to 8 MiB.
    let (mut off, mut most) = (REQ, first);
    while off + REQ < 16_000_000 {
        assert_eq!(r.read_at(off as u64, REQ).unwrap(), &big[off..off + REQ]);
        most = most.max(r.held_ahead());
        off += REQ;
    }
    assert!(most >= 6 << 20, "at most {:.2} MiB ahead of a sequential reader", mib(most));
    // A read elsewhere fetches a little only; reads around it go on being right.
    for at in [2_000_000usize, 23_000_000, 9_000_000] {
        assert_eq!(r.read_at(at as u64, 4096).unwrap(), &big[at..at + 4096]);
        let held = r.held_ahead();
        assert!(held <= 600 << 10, "{:.2} MiB ahead of a random read at {at}", mib(held));
    }
}
