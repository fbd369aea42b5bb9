//! The mount's journal (docs/DESIGN.md §10b): its bytes, appending, reading back, and replay.
//!
//! A journal file holds sealed records: blobs not yet in a pack file, packs not yet named by
//! an index file, the revision each period builds on, and the path operations of closed
//! files and directory changes. Replay runs in every writer right after it takes the writer
//! lock, so whatever a mount made durable is committed before anyone else changes the vault.
//!
//! Must never: apply a record that failed authentication, apply an operation twice (the
//! journal mark of each revision says what is included), or delete a journal before what it
//! holds is committed.

use super::edit::{Editor, Op};
use super::frame::SealedFrame;
use super::writer::WriteSession;
use super::SnapshotInfo;
use crate::crypto::{Domain, Sealer};
use crate::error::{Error, Result};
use crate::format::codec::{Reader, Writer};
use crate::format::index::IndexPack;
use crate::format::pack::{decode_entries_v1, decode_frames, encode_frames};
use crate::format::snapshot::JournalMark;
use crate::format::tree::NodeKind;
use crate::id::{BlobKind, BlobRef, PackId, SnapshotId};
use crate::store::{JournalFile, ObjKind, Store};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

pub const MAGIC: &[u8; 4] = b"VLTJ";
/// Journal format: version 4 records nodes in tree format 3 (files stored expanded); version 3
/// adds frame records (type 6) and pack records of format 2 (type 7); version 2 records nodes
/// in tree format 2. Journals of versions 1 (tree format 1 nodes) to 3 are still replayed.
const VERSION: u8 = 4;
const HEADER_LEN: usize = 24;
const LEN_CHECK: u32 = 0xA5A5_A5A5;
/// Largest record accepted when reading (a pack record of a huge pack is the biggest).
const MAX_RECORD: u32 = 256 << 20;

/// One journal record (plaintext).
#[derive(Debug, Clone)]
pub enum Record {
    Start {
        mount: [u8; 16],
        first_seq: u64,
        created_ns: i64,
    },
    /// A one-member frame (a blob sealed under its own id).
    Blob {
        blob: BlobRef,
        raw_length: u32,
        sealed: Vec<u8>,
    },
    /// A frame of several members (type 6).
    Frame(SealedFrame),
    /// A pack file not yet named by an index file (written as type 7; type 3 read).
    Pack(IndexPack),
    Base {
        period: String,
        revision: Option<SnapshotId>,
    },
    Op {
        seq: u64,
        period: String,
        op: Op,
    },
}

/// The tree format of the nodes in a journal of format `version`.
fn tree_version(version: u8) -> u8 {
    match version {
        1 => 1,
        2 | 3 => 2,
        _ => 3,
    }
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Record::Start { mount, first_seq, created_ns } => {
                w.u8(1).raw(mount).u64(*first_seq).i64(*created_ns);
            }
            Record::Blob { blob, raw_length, sealed } => {
                w.u8(2).u8(blob.kind as u8).raw(&blob.id).u32(*raw_length).raw(sealed);
            }
            Record::Frame(f) => {
                w.u8(6).raw(&f.id.unwrap_or_default()).u32(f.raw_length).u16(f.members.len() as u16);
                for (b, len) in &f.members {
                    w.u8(b.kind as u8).raw(&b.id).u32(*len);
                }
                w.raw(&f.bytes);
            }
            Record::Pack(p) => {
                w.u8(7).raw(p.pack.as_bytes()).u64(p.size);
                encode_frames(&mut w, &p.entries);
            }
            Record::Base { period, revision } => {
                w.u8(4).bytes16(period.as_bytes());
                match revision {
                    Some(r) => w.u8(1).raw(r.as_bytes()),
                    None => w.u8(0).raw(&[0u8; 32]),
                };
            }
            Record::Op { seq, period, op } => {
                w.u8(5).u64(*seq).bytes16(period.as_bytes());
                op.encode(&mut w);
            }
        }
        w.finish()
    }

    /// Decodes a record of a journal of format `version` (1 to 3).
    pub fn decode(b: &[u8], version: u8) -> Result<Record> {
        let mut r = Reader::new(b, "journal record");
        let rec = match r.u8()? {
            1 => Record::Start { mount: r.array()?, first_seq: r.u64()?, created_ns: r.i64()? },
            2 => {
                let kind = BlobKind::from_u8(r.u8()?)?;
                let blob = BlobRef { kind, id: r.array()? };
                let raw_length = r.u32()?;
                let sealed = r.take(r.remaining())?.to_vec();
                Record::Blob { blob, raw_length, sealed }
            }
            3 => {
                let pack = PackId(r.array()?);
                let size = r.u64()?;
                Record::Pack(IndexPack { pack, size, entries: decode_entries_v1(&mut r)? })
            }
            6 => {
                let id: [u8; 32] = r.array()?;
                let raw_length = r.u32()?;
                let count = r.u16()? as usize;
                if count < 2 {
                    return Err(Error::corrupt("journal: a frame record of fewer than two members"));
                }
                let mut members = Vec::with_capacity(count);
                let mut sum = 0u64;
                for _ in 0..count {
                    let kind = BlobKind::from_u8(r.u8()?)?;
                    let blob = BlobRef { kind, id: r.array()? };
                    let len = r.u32()?;
                    sum += len as u64;
                    members.push((blob, len));
                }
                if sum != raw_length as u64 {
                    return Err(Error::corrupt("journal: frame members do not add up to its length"));
                }
                let bytes = r.take(r.remaining())?.to_vec();
                Record::Frame(SealedFrame { id: Some(id), members, bytes, raw_length })
            }
            7 => {
                let pack = PackId(r.array()?);
                let size = r.u64()?;
                Record::Pack(IndexPack { pack, size, entries: decode_frames(&mut r)? })
            }
            4 => {
                let period = r.string16()?;
                let has = r.u8()?;
                let id: [u8; 32] = r.array()?;
                Record::Base { period, revision: (has == 1).then_some(SnapshotId(id)) }
            }
            5 => Record::Op { seq: r.u64()?, period: r.string16()?, op: Op::decode(&mut r, tree_version(version))? },
            t => return Err(Error::corrupt(format!("journal: unknown record type {t}"))),
        };
        r.end()?;
        Ok(rec)
    }
}

fn record_aad_id(journal: &[u8; 16], n: u64) -> [u8; 24] {
    let mut id = [0u8; 24];
    id[..16].copy_from_slice(journal);
    id[16..].copy_from_slice(&n.to_le_bytes());
    id
}

fn header(id: &[u8; 16]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&[VERSION, 0, 0, 0]);
    h.extend_from_slice(id);
    h
}

/// Appends records to one journal file. Not thread-safe by itself: the caller serialises
/// appends; `file()` may be synced from another thread meanwhile.
pub struct JournalWriter {
    file: Arc<dyn JournalFile>,
    id: [u8; 16],
    name: String,
    next: u64,
    len: u64,
}

impl JournalWriter {
    /// Creates a journal whose first record says which mount writes it from which seq on.
    pub fn create(store: &dyn Store, sealer: &Sealer, mount: [u8; 16], first_seq: u64) -> Result<Self> {
        let j =
            store.journals().ok_or_else(|| Error::read_only(format!("{} cannot hold a journal", store.describe())))?;
        let id: [u8; 16] = rand::random();
        let name = hex::encode(id);
        let mut w = JournalWriter { file: j.create(&name, &header(&id))?, id, name, next: 0, len: HEADER_LEN as u64 };
        w.append(sealer, &[Record::Start { mount, first_seq, created_ns: super::now_unix_ns() }])?;
        Ok(w)
    }

    /// Appends records with one write; returns the file length after them.
    pub fn append(&mut self, sealer: &Sealer, recs: &[Record]) -> Result<u64> {
        let mut buf = Vec::new();
        let mut n = self.next;
        for rec in recs {
            let sealed = sealer.seal(Domain::Journal, &record_aad_id(&self.id, n), &rec.encode());
            let len = sealed.len() as u32;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&(len ^ LEN_CHECK).to_le_bytes());
            buf.extend_from_slice(&sealed);
            n += 1;
        }
        self.file.append(&buf).map_err(|e| e.context(format!("journal {}", &self.name[..8])))?;
        self.next = n;
        self.len += buf.len() as u64;
        Ok(self.len)
    }

    pub fn file(&self) -> Arc<dyn JournalFile> {
        self.file.clone()
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.next <= 1
    }
}

/// A journal read back.
pub struct ReadJournal {
    pub name: String,
    pub mount: [u8; 16],
    pub first_seq: u64,
    pub records: Vec<Record>,
    /// A torn tail was dropped (bytes at the end that were never synced).
    pub torn: bool,
    /// Damage found: the records after it were not read.
    pub damage: Option<String>,
}

/// Reads a journal: records up to a torn tail or the first damaged record.
pub fn read(store: &dyn Store, sealer: &Sealer, name: &str) -> Result<ReadJournal> {
    let j = store.journals().ok_or_else(|| Error::not_found("no journals"))?;
    let bytes = j.read(name)?;
    let short = &name[..8.min(name.len())];
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(Error::corrupt(format!("journal {short}: not a journal file")));
    }
    let version = bytes[4];
    if version == 0 || version > VERSION {
        return Err(Error::unsupported(format!("journal {short}: format version {version} is not supported")));
    }
    let id: [u8; 16] = bytes[8..24].try_into().map_err(|_| Error::corrupt("journal header"))?;
    let mut out = ReadJournal {
        name: name.to_string(),
        mount: [0; 16],
        first_seq: 0,
        records: Vec::new(),
        torn: false,
        damage: None,
    };
    let mut pos = HEADER_LEN;
    let mut n = 0u64;
    while pos < bytes.len() {
        if bytes.len() - pos < 8 {
            out.torn = true;
            break;
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default());
        let check = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
        let all_zero = bytes[pos..].iter().all(|b| *b == 0);
        if len ^ LEN_CHECK != check || len > MAX_RECORD {
            if all_zero {
                // Space the file system allocated but whose data never reached the disk.
                out.torn = true;
            } else {
                out.damage = Some(format!("journal {short}: record {n} at offset {pos}: damaged length"));
            }
            break;
        }
        let end = pos + 8 + len as usize;
        if end > bytes.len() {
            out.torn = true;
            break;
        }
        let rec = sealer
            .open(Domain::Journal, &record_aad_id(&id, n), &bytes[pos + 8..end])
            .and_then(|plain| Record::decode(&plain, version));
        match rec {
            Ok(r) => out.records.push(r),
            Err(e) => {
                if end == bytes.len() || bytes[end..].iter().all(|b| *b == 0) {
                    out.torn = true;
                } else {
                    out.damage = Some(format!("journal {short}: record {n} at offset {pos} is damaged ({e})"));
                }
                break;
            }
        }
        pos = end;
        n += 1;
    }
    match out.records.first() {
        Some(Record::Start { mount, first_seq, .. }) => {
            out.mount = *mount;
            out.first_seq = *first_seq;
        }
        _ => {
            if out.damage.is_none() && !out.records.is_empty() {
                out.damage = Some(format!("journal {short}: no start record"));
            }
            out.records.clear();
        }
    }
    Ok(out)
}

/// What a replay did, for the writer's messages and `check`.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Journal files replayed.
    pub journals: usize,
    /// Operations applied.
    pub applied: u64,
    /// Periods given a new revision.
    pub periods: Vec<String>,
    /// Damage found (journals kept as `.damaged`) and operations not applied, by name.
    pub problems: Vec<String>,
}

/// Journal files waiting for replay and damaged ones kept aside.
pub fn pending_journals(store: &dyn Store) -> Result<(Vec<String>, Vec<String>)> {
    let Some(j) = store.journals() else { return Ok((Vec::new(), Vec::new())) };
    let (mut live, mut damaged) = (Vec::new(), Vec::new());
    for n in j.list()? {
        if n.ends_with(".damaged") {
            damaged.push(n);
        } else {
            live.push(n);
        }
    }
    Ok((live, damaged))
}

/// Whether every blob a node needs is available to this session.
fn available(w: &WriteSession<'_>, node: &crate::format::tree::Node, extra: &HashSet<[u8; 33]>) -> Result<bool> {
    let NodeKind::File { content, .. } = &node.kind else { return Ok(true) };
    let v = w.vault();
    let have =
        |b: &BlobRef| -> Result<bool> { Ok(extra.contains(&b.key()) || w.is_pending(b) || v.index.get(b)?.is_some()) };
    for (inline, pages) in content.lists() {
        for c in inline {
            if !have(&BlobRef::data(c.id))? {
                return Ok(false);
            }
        }
        for p in pages {
            if !have(&BlobRef::list(p.id))? {
                return Ok(false);
            }
            let Ok(list) = v.load_list(p) else { return Ok(false) };
            for c in list {
                if !have(&BlobRef::data(c.id))? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// Whether an index file already names this pack (its first blob is indexed there).
fn indexed(v: &super::Vault, p: &IndexPack) -> Result<bool> {
    Ok(match p.entries.first() {
        Some(e) => v.index.get(&e.blob)?.is_some_and(|x| x.pack == p.pack),
        None => true,
    })
}

/// Replays every journal in the vault (called with the writer lock held, by
/// `Vault::begin_write`). `None` when there was nothing to replay.
pub fn replay(w: &mut WriteSession<'_>) -> Result<Option<ReplayReport>> {
    let v = w.vault();
    let store = v.store.clone();
    let (names, _) = pending_journals(&*store)?;
    if names.is_empty() {
        return Ok(None);
    }
    let mut report = ReplayReport::default();
    let mut journals = Vec::new();
    for n in &names {
        match read(&*store, &v.sealer, n) {
            Ok(j) => journals.push(j),
            Err(e) => {
                report.problems.push(format!("{e}; kept as journal/{n}.damaged"));
                if let Some(js) = store.journals() {
                    js.rename(n, &format!("{n}.damaged"))?;
                }
            }
        }
    }
    // One mount's journals in the order they were written.
    journals.sort_by_key(|j| (j.records.is_empty(), j.mount, j.first_seq));
    let mut by_mount: BTreeMap<[u8; 16], Vec<&ReadJournal>> = BTreeMap::new();
    for j in &journals {
        if let Some(d) = &j.damage {
            report.problems.push(format!("{d}: the records after it were not applied"));
        }
        if !j.records.is_empty() {
            by_mount.entry(j.mount).or_default().push(j);
        }
    }
    // Blobs, frames and packs first: they are what the operations refer to.
    let mut recorded: HashSet<[u8; 33]> = HashSet::new();
    let missing =
        |w: &WriteSession<'_>, b: &BlobRef| -> Result<bool> { Ok(!w.is_pending(b) && v.index.get(b)?.is_none()) };
    for j in &journals {
        for r in &j.records {
            match r {
                Record::Blob { blob, raw_length, sealed } if missing(w, blob)? => {
                    w.add_sealed(SealedFrame::single(*blob, sealed.clone(), *raw_length))?;
                }
                Record::Frame(f) => {
                    let mut any = false;
                    for (b, _) in &f.members {
                        any |= missing(w, b)?;
                    }
                    if any {
                        w.add_sealed(f.clone())?;
                    }
                }
                // Already named by an index file (written before the crash, or by a replay
                // that was itself interrupted).
                Record::Pack(p) if indexed(v, p)? => {}
                Record::Pack(p) => match store.size(ObjKind::Pack, &p.pack.to_hex()) {
                    Ok(s) if s == p.size => {
                        recorded.extend(p.entries.iter().map(|e| e.blob.key()));
                        w.packer_mut().add_written(p.clone());
                    }
                    _ => report.problems.push(format!(
                        "journal {}: pack {} is missing or has the wrong size",
                        &j.name[..8],
                        p.pack.short()
                    )),
                },
                _ => {}
            }
        }
    }
    for (mount, js) in &by_mount {
        let mut bases: HashMap<&str, Vec<Option<SnapshotId>>> = HashMap::new();
        let mut ops: BTreeMap<&str, Vec<(u64, &Op)>> = BTreeMap::new();
        let mut last_seq = 0u64;
        for j in js {
            for r in &j.records {
                match r {
                    Record::Base { period, revision } => bases.entry(period.as_str()).or_default().push(*revision),
                    Record::Op { seq, period, op } => {
                        ops.entry(period.as_str()).or_default().push((*seq, op));
                        last_seq = last_seq.max(*seq);
                    }
                    _ => {}
                }
            }
        }
        let snaps = v.snapshots()?;
        for (period, list) in ops {
            let cur: Option<SnapshotInfo> = snaps.iter().find(|s| s.snap.period == period).cloned();
            let from = match cur.as_ref().and_then(|c| c.snap.journal) {
                Some(m) if m.mount == *mount => m.seq,
                _ => {
                    let cur_id = cur.as_ref().map(|c| c.id);
                    if bases.get(period).is_some_and(|b| b.contains(&cur_id)) {
                        0
                    } else {
                        report.problems.push(format!(
                            "{period}: {} journaled change(s) were superseded by another writer and not applied",
                            list.len()
                        ));
                        continue;
                    }
                }
            };
            let todo: Vec<&Op> = list.iter().filter(|(s, _)| *s > from).map(|(_, o)| *o).collect();
            if todo.is_empty() {
                continue;
            }
            if cur.as_ref().is_some_and(|c| c.snap.sealed) {
                report
                    .problems
                    .push(format!("{period}: sealed before {} journaled change(s) were applied", todo.len()));
                continue;
            }
            let load = |id| w.load_tree(id);
            let mut ed = Editor::new(
                cur.as_ref().map(|c| c.snap.root),
                cur.as_ref().map(|c| c.snap.files).unwrap_or(0),
                cur.as_ref().map(|c| c.snap.logical_bytes).unwrap_or(0),
                &load,
            );
            for op in &todo {
                if let Op::Put { node, path } = op {
                    if !available(w, node, &recorded)? {
                        report.problems.push(format!(
                            "{period}/{}: its data is missing from the journal; the previous version is kept",
                            super::trees::show(path)
                        ));
                        continue;
                    }
                }
                ed.apply(op)?;
                report.applied += 1;
            }
            let edited = ed.finish();
            let (root, files, bytes) = edited.write(w)?;
            w.commit_marked(
                period,
                cur.as_ref(),
                root,
                files,
                bytes,
                Some(JournalMark { mount: *mount, seq: last_seq }),
            )?;
            report.periods.push(period.to_string());
        }
    }
    w.flush()?;
    report.journals = journals.len();
    if let Some(js) = store.journals() {
        for j in &journals {
            if j.damage.is_some() {
                js.rename(&j.name, &format!("{}.damaged", j.name))?;
            } else {
                js.remove(&j.name)?;
            }
        }
    }
    Ok(Some(report))
}

/// Blob and frame records for frames the packer handed over.
pub fn blob_records(frames: Vec<SealedFrame>) -> Vec<Record> {
    frames
        .into_iter()
        .map(|f| match (f.id, f.members.as_slice()) {
            (None, [(blob, _)]) => Record::Blob { blob: *blob, raw_length: f.raw_length, sealed: f.bytes },
            _ => Record::Frame(f),
        })
        .collect()
}
