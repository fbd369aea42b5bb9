//! `check`: verify the vault's structure and, with `read_data`, every stored byte.
//!
//! Structure: config and key slots decode; every index file opens; every pack an index file
//! names exists with the recorded size; every snapshot revision opens; every tree of every
//! current snapshot opens and verifies, and every chunk a file needs is indexed. Read-data:
//! every pack is read whole, its header must open and agree with the index, and every blob
//! must open and hash to its id. Recreate: every distinct file stored expanded (compressed
//! inputs, docs/DESIGN.md §14) in a current snapshot is rebuilt to its original bytes, each
//! window checked against its hash, as `cat` would. Damage is reported with the objects and
//! the files it affects.

use crate::error::Result;
use crate::format::pack::PackEntry;
use crate::format::tree::NodeKind;
use crate::id::{BlobKind, BlobRef, IndexId, ListId, PackId, TreeId};
use crate::index::IndexEntry;
use crate::repo::frame::{member_of, open_frame};
use crate::repo::packer::parse_pack;
use crate::repo::trees::show;
use crate::repo::Vault;
use crate::store::ObjKind;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct CheckReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// `PERIOD/path` of every file or directory whose data is damaged or missing.
    pub affected: Vec<String>,
    pub packs: usize,
    pub blobs: usize,
    pub snapshots: usize,
    pub bytes_read: u64,
    /// Files stored expanded whose original bytes were recreated (`recreate`), and their bytes.
    pub recreated_files: usize,
    pub recreated_bytes: u64,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

pub fn check(v: &Vault, read_data: bool) -> Result<CheckReport> {
    check_with(v, read_data, &crate::progress::Silent)
}

/// [`check`], reporting the packs read to `progress` (phase "reading packs", their bytes).
pub fn check_with(v: &Vault, read_data: bool, progress: &dyn crate::progress::Progress) -> Result<CheckReport> {
    check_all(v, read_data, false, progress)
}

/// [`check_with`]; with `recreate`, also rebuilds the original bytes of every distinct file
/// stored expanded in a current snapshot (phase "recreating expanded files").
pub fn check_all(
    v: &Vault,
    read_data: bool,
    recreate: bool,
    progress: &dyn crate::progress::Progress,
) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    // Journals of a mount (docs/DESIGN.md §10b): committed by the next writer, not damage.
    let (waiting, damaged_journals) = crate::repo::journal::pending_journals(&**v.store())?;
    if !waiting.is_empty() {
        r.warnings.push(format!(
            "{} journal file(s) of a mount hold changes not yet committed (a mount is running, or one \
             stopped without unmounting); the next writer (vaultfs mount, vaultctl put) commits them",
            waiting.len()
        ));
    }
    for j in damaged_journals {
        r.warnings.push(format!(
            "journal/{j}: a damaged journal kept aside when it was replayed; what came before the damage \
             was committed"
        ));
    }
    for (id, s) in v.key_slots()? {
        if let Err(e) = s {
            r.errors.push(format!("key slot {}: {e}", id.short()));
        }
    }
    // The log is the evidence `status` and `report` are made of.
    for e in crate::repo::log::readable_entries(v)?.1 {
        r.errors.push(e.to_string());
    }

    // The snapshots first, then the index files: a writer committing meanwhile writes its
    // index file before its snapshot revision, so every revision listed here has its index
    // file listed below. A revision that does not decrypt is an error; the others are checked
    // all the same.
    let snaps = match v.readable_snapshots() {
        Ok((s, damaged)) => {
            for (id, e) in damaged {
                r.errors.push(format!("snapshot revision {} (snapshots/{}): {e}", id.short(), id.to_hex()));
            }
            s
        }
        Err(e) => {
            r.errors.push(format!("snapshots: {e}"));
            Vec::new()
        }
    };

    // Index files, read afresh from the vault (not from the local cache).
    let mut entries: HashMap<[u8; 33], IndexEntry> = HashMap::new();
    let mut pack_sizes: HashMap<PackId, u64> = HashMap::new();
    let mut pack_entries: HashMap<PackId, Vec<BlobRef>> = HashMap::new();
    let mut index_ids: Vec<IndexId> =
        v.store().list(ObjKind::Index)?.into_iter().filter_map(|(n, _)| IndexId::from_hex(&n).ok()).collect();
    // On an object-locked copy, index files kept only while retained are not the copy's vault.
    if let Some(current) = v.current_on_copy(ObjKind::Index)? {
        let before = index_ids.len();
        index_ids.retain(|id| current.contains(&id.to_hex()));
        if index_ids.len() < before {
            r.warnings.push(format!(
                "{} index files on the copy are not in its manifest (kept while retained): not checked",
                before - index_ids.len()
            ));
        }
    }
    let files: Vec<_> = index_ids.par_iter().map(|id| (*id, v.read_index_file(id))).collect();
    for (id, f) in files {
        match f {
            Err(e) => r.errors.push(format!("index file {}: {e}", id.short())),
            Ok(packs) => {
                for p in packs {
                    pack_sizes.insert(p.pack, p.size);
                    for e in &p.entries {
                        entries.insert(e.blob.key(), IndexEntry::new(p.pack, e));
                        pack_entries.entry(p.pack).or_default().push(e.blob);
                    }
                }
            }
        }
    }
    r.blobs = entries.len();

    let listed: HashMap<PackId, u64> =
        v.store().list(ObjKind::Pack)?.into_iter().filter_map(|(n, s)| Some((PackId::from_hex(&n).ok()?, s))).collect();
    r.packs = listed.len();
    let mut damaged: HashSet<[u8; 33]> = HashSet::new();
    for (pack, size) in &pack_sizes {
        let problem = match listed.get(pack) {
            None => Some("is missing".to_string()),
            Some(s) if s != size => Some(format!("has {s} bytes, the index records {size} (truncated or damaged)")),
            _ => None,
        };
        if let Some(p) = problem {
            r.errors.push(format!("pack {} {p}", pack.short()));
            for b in pack_entries.get(pack).into_iter().flatten() {
                damaged.insert(b.key());
            }
        }
    }
    for pack in listed.keys() {
        if !pack_sizes.contains_key(pack) {
            r.warnings.push(format!(
                "pack {} is not in any index file (being written by a running writer, or left by an interrupted \
                 one: reclaimable)",
                pack.short()
            ));
        }
    }

    if read_data {
        let packs: Vec<&PackId> = pack_sizes.keys().filter(|p| listed.get(*p) == pack_sizes.get(*p)).collect();
        progress.phase("reading packs", Some(packs.iter().map(|p| pack_sizes[*p]).sum()));
        let results: Vec<(PackId, u64, Vec<String>, Vec<[u8; 33]>)> = packs
            .par_iter()
            .map(|pack| {
                let r = verify_pack(v, pack, pack_entries.get(pack).map(|v| v.as_slice()).unwrap_or(&[]), &entries);
                progress.advance(pack_sizes[*pack]);
                r
            })
            .collect();
        for (_, bytes, errs, bad) in results {
            r.bytes_read += bytes;
            r.errors.extend(errs);
            damaged.extend(bad);
        }
    }

    // Snapshots and their trees (listed at the start).
    r.snapshots = snaps.len();
    let mut seen_trees: HashSet<TreeId> = HashSet::new();
    let mut seen_pages = HashMap::new();
    let mut affected: Vec<String> = Vec::new();
    for s in &snaps {
        let period = &s.snap.period;
        walk_check(
            v,
            s.snap.root,
            &mut Vec::new(),
            period,
            &entries,
            &damaged,
            &mut seen_trees,
            &mut seen_pages,
            &mut r.errors,
            &mut affected,
        );
    }
    if recreate {
        recreate_expanded(v, &snaps, &mut r, &mut affected, progress);
    }
    affected.sort();
    affected.dedup();
    r.affected = affected;
    Ok(r)
}

/// Rebuilds every distinct file stored expanded (same recipe and content: once) to its
/// original bytes, on every core; a window that does not come back as its hash says, or a
/// recipe that does not decode, is an error naming the file.
fn recreate_expanded(
    v: &Vault,
    snaps: &[crate::repo::SnapshotInfo],
    r: &mut CheckReport,
    affected: &mut Vec<String>,
    progress: &dyn crate::progress::Progress,
) {
    let mut seen: HashMap<crate::format::tree::Content, usize> = HashMap::new();
    let mut todo: Vec<(Vec<String>, crate::format::tree::Node)> = Vec::new();
    for s in snaps {
        let period = &s.snap.period;
        // Trees that do not open are reported by the structure check above.
        let _ = v.walk(s.snap.root, &mut |path, node| {
            if let NodeKind::File { content, .. } = &node.kind {
                if content.recipe.is_some() {
                    let label = format!("{period}/{}", show(path));
                    match seen.get(content) {
                        Some(&i) => todo[i].0.push(label),
                        None => {
                            seen.insert(content.clone(), todo.len());
                            todo.push((vec![label], node.clone()));
                        }
                    }
                }
            }
            Ok(())
        });
    }
    progress.phase("recreating expanded files", Some(todo.iter().map(|(_, n)| n.size).sum()));
    let results: Vec<Result<u64>> = todo
        .par_iter()
        .map(|(_, node)| {
            let res = v.file_reader(node).and_then(|f| f.copy_to(&mut std::io::sink()));
            progress.advance(node.size);
            res
        })
        .collect();
    for ((labels, _), res) in todo.into_iter().zip(results) {
        match res {
            Ok(n) => {
                r.recreated_files += 1;
                r.recreated_bytes += n;
            }
            Err(e) => {
                for label in labels {
                    r.errors.push(format!("{label}: recreating its original bytes: {e}"));
                    affected.push(label);
                }
            }
        }
    }
}

fn verify_pack(
    v: &Vault,
    pack: &PackId,
    expected: &[BlobRef],
    entries: &HashMap<[u8; 33], IndexEntry>,
) -> (PackId, u64, Vec<String>, Vec<[u8; 33]>) {
    let mut errs = Vec::new();
    let mut bad = Vec::new();
    let bytes = match v.store().get(ObjKind::Pack, &pack.to_hex()) {
        Ok(b) => b,
        Err(e) => {
            errs.push(format!("pack {}: {e}", pack.short()));
            return (*pack, 0, errs, expected.iter().map(|b| b.key()).collect());
        }
    };
    let n = bytes.len() as u64;
    match parse_pack(&v.sealer, pack, &bytes) {
        Ok((header, _)) => {
            let in_header: HashSet<[u8; 33]> = header.iter().map(|e| e.blob.key()).collect();
            for b in expected {
                if !in_header.contains(&b.key()) {
                    errs.push(format!(
                        "pack {}: header does not list {} named by the index",
                        pack.short(),
                        b.describe()
                    ));
                }
            }
        }
        Err(e) => errs.push(format!("pack {}: {e}", pack.short())),
    }
    // Each frame is opened once; a frame that fails damages every member the index places
    // in it, a member that fails its hash only itself.
    let mut by_frame: std::collections::BTreeMap<u32, Vec<PackEntry>> = Default::default();
    for b in expected {
        if let Some(e) = entries.get(&b.key()).filter(|e| e.pack == *pack) {
            by_frame.entry(e.offset).or_default().push(e.entry(*b));
        }
    }
    for (offset, members) in by_frame {
        let first = members[0];
        let (s, l) = (offset as usize, first.length as usize);
        let frame = bytes
            .get(s..s + l)
            .ok_or_else(|| crate::Error::corrupt("frame lies outside the pack"))
            .and_then(|ct| open_frame(&v.sealer, &first, ct));
        match frame {
            Err(err) => {
                let what = if members.len() == 1 {
                    first.blob.describe()
                } else {
                    format!("frame at offset {offset} ({} blobs)", members.len())
                };
                errs.push(format!("pack {}: {what}: {err}", pack.short()));
                bad.extend(members.iter().map(|m| m.blob.key()));
            }
            Ok(plain) => {
                for m in &members {
                    if let Err(err) = member_of(m, &plain).and_then(|x| v.verify_content(m.blob, x)) {
                        errs.push(format!("pack {}: {}: {err}", pack.short(), m.blob.describe()));
                        bad.push(m.blob.key());
                    }
                }
            }
        }
    }
    (*pack, n, errs, bad)
}

#[allow(clippy::too_many_arguments)]
fn walk_check(
    v: &Vault,
    tree: TreeId,
    path: &mut Vec<Vec<u8>>,
    period: &str,
    entries: &HashMap<[u8; 33], IndexEntry>,
    damaged: &HashSet<[u8; 33]>,
    seen: &mut HashSet<TreeId>,
    pages: &mut HashMap<ListId, std::result::Result<(u64, u64), String>>,
    errors: &mut Vec<String>,
    affected: &mut Vec<String>,
) {
    let where_ =
        |path: &[Vec<u8>]| if path.is_empty() { format!("{period}/") } else { format!("{period}/{}", show(path)) };
    let key = BlobRef::tree(tree).key();
    let first_visit = seen.insert(tree);
    if damaged.contains(&key) || !entries.contains_key(&key) {
        if first_visit {
            errors.push(format!("{}: directory listing (tree {}) is damaged or missing", where_(path), tree.short()));
        }
        affected.push(where_(path));
        return;
    }
    let t = match v.load_tree(tree) {
        Ok(t) => t,
        Err(e) => {
            if first_visit {
                errors.push(format!("{}: {e}", where_(path)));
            }
            affected.push(where_(path));
            return;
        }
    };
    for n in &t.nodes {
        path.push(n.name.clone());
        match &n.kind {
            NodeKind::Dir { tree } => {
                walk_check(v, *tree, path, period, entries, damaged, seen, pages, errors, affected)
            }
            NodeKind::File { content, .. } => {
                let count = |chunks: &[crate::format::tree::ChunkRef]| {
                    let (mut missing, mut bad) = (0u64, 0u64);
                    for c in chunks {
                        let k = BlobRef { kind: BlobKind::Data, id: c.id.0 }.key();
                        if !entries.contains_key(&k) {
                            missing += 1;
                        } else if damaged.contains(&k) {
                            bad += 1;
                        }
                    }
                    (missing, bad)
                };
                let (mut missing, mut bad) = (0u64, 0u64);
                let mut broken_list = false;
                for (inline, list_pages) in content.lists() {
                    let (m, b) = count(inline);
                    missing += m;
                    bad += b;
                    for p in list_pages {
                        let k = BlobRef::list(p.id).key();
                        let r = match pages.get(&p.id) {
                            Some(r) => r.clone(),
                            None => {
                                let r = if !entries.contains_key(&k) || damaged.contains(&k) {
                                    Err(format!("chunk list {} is damaged or missing", p.id.short()))
                                } else {
                                    v.load_list(p).map(|l| count(&l)).map_err(|e| e.to_string())
                                };
                                if let Err(e) = &r {
                                    errors.push(format!("{}: {e}", where_(path)));
                                }
                                pages.insert(p.id, r.clone());
                                r
                            }
                        };
                        match r {
                            Ok((m, b)) => {
                                missing += m;
                                bad += b;
                            }
                            Err(_) => broken_list = true,
                        }
                    }
                }
                if missing > 0 {
                    errors.push(format!("{}: {missing} chunk(s) missing from the index", where_(path)));
                }
                if missing + bad > 0 || broken_list {
                    affected.push(where_(path));
                }
            }
            _ => {}
        }
        path.pop();
    }
}
