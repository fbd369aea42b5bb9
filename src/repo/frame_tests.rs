//! Tests of frames (docs/DESIGN.md §5): round trips of any chunk sequence and dedup pattern,
//! damage in a frame reported for exactly the files that use it, prune of partly dead frames,
//! and crashes during writes and prunes with frames.

use super::tests::copy_store;
use super::*;
use crate::commands::{check, prune};
use crate::format::pack::frames;
use crate::format::policy::Policy;
use crate::format::tree::{FileState, Node, NodeKind};
use crate::id::BlobRef;
use crate::store::fault::FaultStore;
use crate::store::memory::MemoryStore;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

fn secret() -> Secret {
    Secret::raw_key_from_hex(&"5a".repeat(32)).unwrap()
}

fn vault_with(frame_target: u32) -> (Arc<MemoryStore>, Vault) {
    let m = Arc::new(MemoryStore::new());
    let o = InitOptions { chunk_avg: 1024, pack_target: 1 << 20, frame_target, ..Default::default() };
    Vault::init(m.clone(), &secret(), &o).unwrap();
    let v = Vault::open(m.clone(), &secret(), &OpenOptions::default()).unwrap();
    (m, v)
}

fn node(content: crate::format::tree::Content, size: u64) -> Node {
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

/// Stores files in one commit of `period` (added to what it holds).
fn store(v: &Vault, period: &str, files: &[(&str, &[u8])]) -> SnapshotInfo {
    let mut w = v.begin_write("test", Duration::ZERO).unwrap();
    let base = v.snapshots().unwrap().into_iter().find(|s| s.snap.period == period);
    let mut root = base.as_ref().map(|b| b.snap.root);
    let (mut n, mut bytes) = base.as_ref().map(|b| (b.snap.files, b.snap.logical_bytes)).unwrap_or((0, 0));
    for (path, content) in files {
        let st = w.store_stream(&mut &content[..]).unwrap();
        let (r, old) = w.set_path(root, &trees::split_path(path).unwrap(), node(st.content, st.size)).unwrap();
        root = Some(r);
        match old {
            Some(o) => bytes = bytes - o.size + st.size,
            None => {
                n += 1;
                bytes += st.size;
            }
        }
    }
    w.commit(period, base.as_ref(), root.unwrap(), n, bytes).unwrap()
}

fn seal(v: &Vault, period: &str) {
    let mut w = v.begin_write("test", Duration::ZERO).unwrap();
    let info = v.resolve(period).unwrap();
    w.seal(&info).unwrap();
}

fn read(v: &Vault, period: &str, path: &str) -> Result<Vec<u8>> {
    let info = v.resolve(period)?;
    let node = v.lookup(info.snap.root, &trees::split_path(path)?)?;
    let mut out = Vec::new();
    v.file_reader(&node)?.copy_to(&mut out)?;
    Ok(out)
}

/// Random bytes (incompressible) or text-like (compressible), by seed.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    if seed.is_multiple_of(2) {
        (0..n).map(|_| r.gen()).collect()
    } else {
        (0..n).map(|_| b"abcdefgh ,{}"[r.gen_range(0..12)]).collect()
    }
}

/// A file made of segments: new bytes, or a repeat of an earlier segment (dedup inside the
/// file and, through `pool`, with other files).
fn build(segments: &[(u8, usize, u64)], pool: &mut Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for &(kind, len, seed) in segments {
        let seg = if kind == 0 || pool.is_empty() {
            let s = bytes(len, seed);
            pool.push(s.clone());
            s
        } else {
            pool[(seed as usize) % pool.len()].clone()
        };
        out.extend_from_slice(&seg);
    }
    out
}

/// Data blobs of each file of a period (top-level files only).
fn blobs_of(v: &Vault, period: &str, path: &str) -> HashSet<[u8; 33]> {
    let info = v.resolve(period).unwrap();
    let node = v.lookup(info.snap.root, &trees::split_path(path).unwrap()).unwrap();
    let mut out = HashSet::new();
    let crate::format::tree::NodeKind::File { content, .. } = &node.kind else { panic!("not a file") };
    crate::repo::ChunkReader::new(v, content)
        .for_each_chunk(&mut |c| {
            out.insert(BlobRef::data(c.id).key());
            Ok(())
        })
        .unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any sequence of chunk sizes and dedup patterns reads back byte for byte, whole and at
    /// random offsets, whatever the frame target, and checks clean.
    #[test]
    fn any_chunks_and_dedup_round_trip(
        target in prop_oneof![Just(0u32), Just(1024u32), Just(8192u32), Just(65536u32)],
        files in proptest::collection::vec(
            proptest::collection::vec((0u8..3, 1usize..40_000, any::<u64>()), 1..8), 1..4),
        reads in proptest::collection::vec((any::<u64>(), 1usize..70_000), 4),
    ) {
        let (_m, v) = vault_with(target);
        let mut pool = Vec::new();
        let contents: Vec<Vec<u8>> = files.iter().map(|f| build(f, &mut pool)).collect();
        let names: Vec<String> = (0..contents.len()).map(|i| format!("f{i}")).collect();
        let list: Vec<(&str, &[u8])> = names.iter().map(|n| n.as_str()).zip(contents.iter().map(|c| c.as_slice())).collect();
        store(&v, "2026-11-20", &list);
        // The same files again in another period: everything deduplicates.
        store(&v, "2026-11-21", &list);
        for (n, c) in names.iter().zip(&contents) {
            prop_assert_eq!(&read(&v, "2026-11-20", n).unwrap(), c);
            let info = v.resolve("2026-11-21").unwrap();
            let node = v.lookup(info.snap.root, &trees::split_path(n).unwrap()).unwrap();
            let r = v.file_reader(&node).unwrap();
            for &(off, len) in &reads {
                let off = off % (c.len() as u64 + 1);
                let end = (off as usize + len).min(c.len());
                prop_assert_eq!(r.read_at(off, len).unwrap(), c[off as usize..end].to_vec());
            }
        }
        let report = check::check(&v, true).unwrap();
        prop_assert!(report.ok(), "{:?}", report.errors);
    }

    /// A flipped bit anywhere in a frame is detected, and reported for exactly the files that
    /// use one of its members; the other files still read.
    #[test]
    fn a_flipped_bit_in_a_frame_names_exactly_the_files_using_it(
        pick in any::<u64>(), at in any::<u64>(), bit in 0u8..8, seed in any::<u64>(),
    ) {
        let (m, v) = vault_with(16 << 10);
        // Files sharing data: b repeats part of a, c is unrelated, d is a copy of c's start.
        let a = bytes(300_000, seed | 1);
        let mut b = a[100_000..200_000].to_vec();
        b.extend(bytes(50_000, seed.wrapping_add(2)));
        let c = bytes(200_000, seed.wrapping_add(3) | 1);
        let d = c[..60_000].to_vec();
        let files: Vec<(&str, &[u8])> = vec![("a", &a), ("b", &b), ("c", &c), ("d", &d)];
        store(&v, "2026-11-20", &files);
        // Every data frame of every pack, from the index files.
        let mut all = Vec::new();
        for (name, _) in m.list(ObjKind::Index).unwrap() {
            for p in v.read_index_file(&crate::id::IndexId::from_hex(&name).unwrap()).unwrap() {
                for f in frames(&p.entries) {
                    if f[0].blob.kind == crate::id::BlobKind::Data {
                        all.push((p.pack, f.to_vec()));
                    }
                }
            }
        }
        let (pack, frame) = &all[(pick % all.len() as u64) as usize];
        let pos = frame[0].offset as usize + (at % frame[0].length as u64) as usize;
        m.mutate(ObjKind::Pack, &pack.to_hex(), |buf| buf[pos] ^= 1 << bit);
        let members: HashSet<[u8; 33]> = frame.iter().map(|e| e.blob.key()).collect();
        let expected: BTreeSet<String> = files
            .iter()
            .filter(|(n, _)| !blobs_of(&v, "2026-11-20", n).is_disjoint(&members))
            .map(|(n, _)| format!("2026-11-20/{n}"))
            .collect();
        prop_assert!(!expected.is_empty());
        let r = check::check(&v, true).unwrap();
        prop_assert!(!r.ok());
        let affected: BTreeSet<String> = r.affected.iter().cloned().collect();
        prop_assert_eq!(&affected, &expected);
        for (n, content) in &files {
            let got = read(&v, "2026-11-20", n);
            if expected.contains(&format!("2026-11-20/{n}")) {
                prop_assert_eq!(got.unwrap_err().kind(), ErrorKind::Corrupt);
            } else {
                prop_assert_eq!(&got.unwrap(), content);
            }
        }
    }
}

/// Two days whose second changes scattered parts of the first: forgetting the first leaves
/// frames partly dead, which prune rewrites with only their live members.
fn two_days(v: &Vault) -> (Vec<u8>, Vec<u8>) {
    let day1 = bytes(3_000_000, 41);
    let mut day2 = day1.clone();
    let mut r = rand::rngs::StdRng::seed_from_u64(9);
    for _ in 0..150 {
        let at = r.gen_range(0..day2.len() - 100);
        for x in &mut day2[at..at + 100] {
            *x = r.gen();
        }
    }
    store(v, "2026-11-20", &[("dump", &day1)]);
    seal(v, "2026-11-20");
    store(v, "2026-11-21", &[("dump", &day2)]);
    seal(v, "2026-11-21");
    store(v, "2026-11-22", &[("note", b"open period")]);
    (day1, day2)
}

/// Keeps 2026-11-21 and 2026-11-22 (every period ended by the test clock is sealed by the
/// next writer), forgets 2026-11-20.
fn keep_last_two() -> prune::Options {
    prune::Options { policy: Policy { last: 2, ..Policy::default() }, max_unused: 0.0 }
}

#[test]
fn prune_rewrites_partly_dead_frames_and_keeps_whole_ones_verbatim() {
    let (m, v) = vault_with(64 << 10);
    let (_, day2) = two_days(&v);
    let frames_before: HashSet<[u8; 32]> = frame_ids(&v, &m);
    let r = prune::prune(&v, &keep_last_two(), Duration::ZERO, &|_| {}).unwrap();
    assert!(r.plan.forgotten().any(|d| d.info.snap.period == "2026-11-20"));
    assert!(r.plan.freed_bytes() > 0);
    assert_eq!(read(&v, "2026-11-21", "dump").unwrap(), day2);
    let report = check::check(&v, true).unwrap();
    assert!(report.ok(), "{:?}", report.errors);
    let after = frame_ids(&v, &m);
    // Whole frames kept their id (copied verbatim), partly dead ones were sealed anew.
    assert!(after.iter().any(|f| frames_before.contains(f)), "no frame was copied verbatim");
    assert!(after.iter().any(|f| !frames_before.contains(f)), "no frame was rewritten");
    // Nothing dead is left (beyond pack headers): a second prune has nothing to do.
    let again = prune::plan(&v, &prune::Options { max_unused: 0.1, ..keep_last_two() }).unwrap();
    assert!(again.repack.is_empty() && again.delete.is_empty(), "{:?} {:?}", again.repack, again.delete);
}

fn frame_ids(v: &Vault, m: &MemoryStore) -> HashSet<[u8; 32]> {
    let mut out = HashSet::new();
    for (name, _) in m.list(ObjKind::Index).unwrap() {
        for p in v.read_index_file(&crate::id::IndexId::from_hex(&name).unwrap()).unwrap() {
            out.extend(p.entries.iter().filter_map(|e| e.member.map(|x| x.frame)));
        }
    }
    out
}

#[test]
fn a_prune_of_frames_failing_at_every_write_leaves_a_good_vault() {
    let (m, v) = vault_with(64 << 10);
    let (_, day2) = two_days(&v);
    drop(v);
    let mut n = 0;
    loop {
        let copy = copy_store(&m);
        let faulty = Arc::new(FaultStore::fail_after(copy.clone(), n, ErrorKind::NoSpace));
        let v = Vault::open(faulty, &secret(), &OpenOptions::default()).unwrap();
        let done = prune::prune(&v, &keep_last_two(), Duration::ZERO, &|_| {});
        let v = Vault::open(copy.clone(), &secret(), &OpenOptions::default()).unwrap();
        let report = check::check(&v, true).unwrap();
        assert!(report.ok(), "after failing at write {n}: {:?}", report.errors);
        assert_eq!(read(&v, "2026-11-21", "dump").unwrap(), day2, "write {n}");
        assert_eq!(read(&v, "2026-11-22", "note").unwrap(), b"open period", "write {n}");
        // The next prune finishes the work.
        prune::prune(&v, &keep_last_two(), Duration::ZERO, &|_| {}).unwrap();
        assert!(check::check(&v, true).unwrap().ok(), "write {n}");
        assert_eq!(read(&v, "2026-11-21", "dump").unwrap(), day2, "write {n}");
        if done.is_ok() {
            break;
        }
        n += 1;
    }
    assert!(n >= 3, "the prune should take several writes, took {n}");
}

#[test]
fn a_write_of_frames_failing_at_every_write_keeps_earlier_snapshots() {
    let (m, v) = vault_with(64 << 10);
    let day1 = bytes(400_000, 3);
    store(&v, "2026-11-20", &[("dump", &day1)]);
    drop(v);
    let day2 = bytes(2_500_000, 5);
    super::tests::commit_failing_at_every_write(&m, &secret(), &day1, &day2);
}

#[test]
fn frames_hold_consecutive_new_chunks_and_reads_coalesce() {
    let (m, v) = vault_with(64 << 10);
    let data = bytes(2_000_000, 7);
    store(&v, "2026-11-20", &[("dump", &data)]);
    let mut members = 0;
    let mut frames_n = 0;
    for (name, _) in m.list(ObjKind::Index).unwrap() {
        for p in v.read_index_file(&crate::id::IndexId::from_hex(&name).unwrap()).unwrap() {
            for f in frames(&p.entries) {
                if f[0].blob.kind == crate::id::BlobKind::Data {
                    frames_n += 1;
                    members += f.len();
                    assert!(f.len() == 1 || f[0].member.is_some());
                }
            }
        }
    }
    // About 2 MB / 64 KiB frames of ~1 KiB chunks.
    assert!((25..=40).contains(&frames_n), "{frames_n} frames");
    assert!(members / frames_n >= 40, "{members} chunks in {frames_n} frames");
    assert_eq!(read(&v, "2026-11-20", "dump").unwrap(), data);
}
