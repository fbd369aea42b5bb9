//! Building pack files from sealed blobs.
//!
//! Data frames (docs/DESIGN.md §5) are spread at random over several open packs (restic 0.18's
//! mitigation: which frames share a pack no longer reveals their order in the file); tree and
//! list blobs go to their own pack so that metadata stays small and quick to fetch. A pack is written whole with
//! one atomic, durable `put`; its entries become visible to other processes only through an
//! index file written after it.
//!
//! Until then, every blob of the session is in [`Pending`]: in an open pack's buffer, in a pack
//! on its way to the store, or in a written pack no index file names yet. The session's own
//! process reads blobs from there (`Vault::read_blob` looks there first), so nothing has to be
//! flushed for a read. A pack whose write fails (a full disk) is kept in memory and written
//! again by the next flush; while one waits, `add` fails with the same error, so memory stays
//! bounded and no blob that a caller was told is stored is ever dropped.

use super::frame::SealedFrame;
use crate::crypto::{Domain, Sealer};
use crate::error::{Error, ErrorKind, Result};
use crate::format::codec::Writer;
use crate::format::index::IndexPack;
use crate::format::pack::{encode_header, frames, Member, PackEntry, PREAMBLE};
use crate::id::{BlobKind, BlobRef, IdMap, PackId};
use crate::store::{ObjKind, Store};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, RwLock};

/// How many data packs are filled at once.
pub const OPEN_DATA_PACKS: usize = 4;
/// How many packs the streams of large files fill at once in a process that keeps its memory
/// low ([`Packer::set_bulk_lanes`]): two full packs less in memory at the moment they fill.
pub const BULK_PACKS_LOW_MEMORY: usize = 2;
/// Buffers of written packs kept for reuse by default: enough for every bulk pack and the two
/// on their way to the store. A reused buffer is resident whole from its first frame on, so a
/// process that keeps its memory low turns this off ([`Packer::reuse_buffers`]).
const SPARE_BUFFERS: usize = OPEN_DATA_PACKS + 2;

type Buf = Arc<RwLock<Vec<u8>>>;

fn read_lock(b: &Buf) -> std::sync::RwLockReadGuard<'_, Vec<u8>> {
    b.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock(b: &Buf) -> std::sync::RwLockWriteGuard<'_, Vec<u8>> {
    b.write().unwrap_or_else(|e| e.into_inner())
}

/// Where a pending blob is: in a pack buffer (open, on its way to the store, or waiting after a
/// failed write; `bulk`: one of the packs that streams of large files fill, never copied to a
/// journal), or in a pack file that no index file names yet.
#[derive(Clone)]
enum At {
    Buf { buf: Buf, bulk: bool },
    Pack(Arc<PackId>),
}

/// A pending blob's place: its [`PackEntry`] without the blob's id (the map's key holds it),
/// the pack and the frame's id shared with the other blobs there. 48 bytes, where a whole entry
/// and a pack id took 128: a long write holds up to twice [`super::writer`]'s pending limit
/// of them.
#[derive(Clone)]
struct Loc {
    at: At,
    offset: u32,
    length: u32,
    raw_length: u32,
    /// The frame's id, and the member's start and length in it.
    member: Option<(Arc<[u8; 32]>, u32, u32)>,
}

const _: () = assert!(std::mem::size_of::<Loc>() <= 48);

impl Loc {
    fn new(at: At, e: &PackEntry, frame: Option<Arc<[u8; 32]>>) -> Self {
        Loc {
            at,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
            member: e.member.zip(frame).map(|(m, f)| (f, m.start, m.len)),
        }
    }

    fn entry(&self, key: &[u8; 33]) -> Result<PackEntry> {
        let mut id = [0u8; 32];
        id.copy_from_slice(&key[1..]);
        Ok(PackEntry {
            blob: BlobRef { kind: BlobKind::from_u8(key[0])?, id },
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
            member: self.member.as_ref().map(|(f, start, len)| Member { frame: **f, start: *start, len: *len }),
        })
    }
}

/// One shared copy of each frame's id for the pending entries of its members (`entries` in
/// pack order: the members of a frame are adjacent).
fn frame_ids(entries: &[PackEntry]) -> Vec<Option<Arc<[u8; 32]>>> {
    let mut last: Option<Arc<[u8; 32]>> = None;
    entries
        .iter()
        .map(|e| {
            let m = e.member?;
            match &last {
                Some(f) if **f == m.frame => Some(f.clone()),
                _ => {
                    let f = Arc::new(m.frame);
                    last = Some(f.clone());
                    Some(f)
                }
            }
        })
        .collect()
}

/// Blobs of a write session that no index file names yet, readable by the session's process.
#[derive(Default)]
pub struct Pending {
    map: RwLock<IdMap<[u8; 33], Loc>>,
}

impl Pending {
    fn map(&self) -> std::sync::RwLockReadGuard<'_, IdMap<[u8; 33], Loc>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
    fn map_mut(&self) -> std::sync::RwLockWriteGuard<'_, IdMap<[u8; 33], Loc>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn contains(&self, blob: &BlobRef) -> bool {
        self.map().contains_key(&blob.key())
    }

    /// Which of `blobs` are pending (one lock for all).
    pub fn contains_many(&self, blobs: &[BlobRef]) -> Vec<bool> {
        let m = self.map();
        blobs.iter().map(|b| m.contains_key(&b.key())).collect()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// The sealed frame holding a pending blob and the blob's entry in it, `None` when it is
    /// not pending.
    pub fn sealed(&self, store: &dyn Store, blob: &BlobRef) -> Option<Result<(Vec<u8>, PackEntry)>> {
        let key = blob.key();
        let loc = self.map().get(&key).cloned()?;
        let e = match loc.entry(&key) {
            Ok(e) => e,
            Err(err) => return Some(Err(err)),
        };
        Some(match loc.at {
            At::Buf { buf, .. } => {
                let b = read_lock(&buf);
                let (s, end) = (e.offset as usize, e.offset as usize + e.length as usize);
                match b.get(s..end) {
                    Some(x) => Ok((x.to_vec(), e)),
                    None => Err(Error::corrupt(format!("{} lies outside its open pack", blob.describe()))),
                }
            }
            At::Pack(pack) => store
                .get_range(ObjKind::Pack, &pack.to_hex(), e.offset as u64, e.length)
                .map(|b| (b, e))
                .map_err(|err| err.context(format!("{} in pack {} (not yet indexed)", blob.describe(), pack.short()))),
        })
    }

    fn clear(&self) {
        self.map_mut().clear();
    }
}

struct Builder {
    buf: Buf,
    entries: Vec<PackEntry>,
    /// Entries already handed to the journal.
    journaled: usize,
    /// Pack id, fixed at the first write attempt (a retry writes the same pack).
    id: Option<PackId>,
    /// Filled by streams of large files: written as packs, never copied to a journal.
    bulk: bool,
}

impl Builder {
    fn new(bulk: bool) -> Self {
        Builder { buf: Arc::new(RwLock::new(PREAMBLE.to_vec())), entries: Vec::new(), journaled: 0, id: None, bulk }
    }
    fn len(&self) -> usize {
        read_lock(&self.buf).len()
    }
    /// Appends a frame; the first growth reserves `reserve` bytes at once, so that filling a
    /// pack does not copy it again and again as it doubles.
    /// A buffer of `spare` (one of a pack written before) is taken instead when there is one,
    /// so that its pages are not faulted in again.
    fn add(&mut self, pending: &Pending, f: SealedFrame, reserve: usize, spare: &mut Vec<Vec<u8>>) {
        let offset = {
            let mut buf = write_lock(&self.buf);
            if buf.capacity() - buf.len() < f.bytes.len() {
                let len = buf.len();
                let want = reserve.max(len + f.bytes.len());
                match spare.pop() {
                    Some(mut v) if len == PREAMBLE.len() && v.capacity() >= want => {
                        v.clear();
                        v.extend_from_slice(PREAMBLE);
                        *buf = v;
                    }
                    _ => buf.reserve_exact(want - len),
                }
            }
            let o = buf.len() as u32;
            buf.extend_from_slice(&f.bytes);
            o
        };
        let frame = f.id.map(Arc::new);
        let mut map = pending.map_mut();
        for e in f.entries(offset) {
            // A blob another frame of this session holds already keeps that place.
            map.entry(e.blob.key())
                .or_insert_with(|| Loc::new(At::Buf { buf: self.buf.clone(), bulk: self.bulk }, &e, frame.clone()));
            self.entries.push(e);
        }
    }

    /// The frames of entries `from..` with their sealed bytes.
    fn frames_from(&self, from: usize) -> Vec<SealedFrame> {
        frames_in(&self.buf, &self.entries[from.min(self.entries.len())..])
    }
}

/// The frames of `entries` (whole frames of `buf`) with their sealed bytes.
fn frames_in(buf: &Buf, entries: &[PackEntry]) -> Vec<SealedFrame> {
    let b = read_lock(buf);
    let mut out = Vec::new();
    for f in frames(entries) {
        let (s, l) = (f[0].offset as usize, f[0].length as usize);
        if let Some(x) = b.get(s..s + l) {
            if let Ok(fr) = SealedFrame::from_entries(f, x.to_vec()) {
                out.push(fr);
            }
        }
    }
    out
}

struct Job {
    seq: u64,
    builder: Builder,
}

enum Done {
    Written(u64, Builder, IndexPack),
    Failed(u64, Builder, Error),
}

/// Threads writing full packs.
const PACK_WRITERS: usize = 2;

/// Writes full packs on background threads, so sealing goes on while a pack is being written
/// and fsynced. Two packs are written at once (one's write overlaps the other's fsync: the
/// disk is kept busy); a third full pack waits until one of them is handed over, as before
/// with one writer and one waiting pack, so no more packs are held in memory.
struct Uploader {
    tx: SyncSender<Job>,
    rx: Receiver<Done>,
}

impl Uploader {
    fn start(store: Arc<dyn Store>, sealer: Arc<Sealer>, writers: usize) -> Self {
        let (tx, jobs) = std::sync::mpsc::sync_channel::<Job>(0);
        let jobs = Arc::new(std::sync::Mutex::new(jobs));
        let (done_tx, rx) = std::sync::mpsc::channel::<Done>();
        for _ in 0..writers {
            let (store, sealer, jobs, done_tx) = (store.clone(), sealer.clone(), jobs.clone(), done_tx.clone());
            std::thread::spawn(move || loop {
                let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(mut job) = next else { return };
                // A panic fails this pack (kept, written again by the next flush) instead of
                // leaving it unanswered while the other writer goes on.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    write_pack(&*store, &sealer, &mut job.builder)
                }))
                .unwrap_or_else(|_| Err(Error::new(ErrorKind::Io, "the pack writer stopped")));
                let d = match r {
                    Ok(p) => Done::Written(job.seq, job.builder, p),
                    Err(e) => Done::Failed(job.seq, job.builder, e),
                };
                if done_tx.send(d).is_err() {
                    return;
                }
            });
        }
        Uploader { tx, rx }
    }
}

pub struct Packer {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    pending: Arc<Pending>,
    /// Open data packs filled by small files and metadata-sized writes.
    data: Vec<Builder>,
    /// Open data packs filled by streams of large files.
    bulk: Vec<Builder>,
    tree: Builder,
    target: usize,
    uploader: Option<Uploader>,
    /// Full packs handed to the uploader, by job number (kept for the journal and for reads):
    /// buffer, entries, entries journaled, bulk.
    inflight: HashMap<u64, (Buf, Vec<PackEntry>, usize, bool)>,
    next_job: u64,
    /// Packs whose write failed, to be written again by the next flush.
    failed: Vec<Builder>,
    last_error: Option<(ErrorKind, String)>,
    /// Buffers of packs written, for the next packs to fill (at most `spare_limit`).
    spare: Vec<Vec<u8>>,
    spare_limit: usize,
    /// Packs written (durable) and not yet covered by an index file.
    written: Vec<IndexPack>,
    /// Packs written since the journal last took them and not named by an index file since
    /// (kept only for a session with a journal: [`Packer::keep_journal_records`]).
    unjournaled_packs: Vec<IndexPack>,
    journal_packs: bool,
    /// Threads writing full packs ([`PACK_WRITERS`]).
    writers: usize,
    stored_bytes: u64,
}

impl Packer {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>, target: u32, pending: Arc<Pending>) -> Self {
        Packer {
            store,
            sealer,
            pending,
            data: (0..OPEN_DATA_PACKS).map(|_| Builder::new(false)).collect(),
            bulk: (0..OPEN_DATA_PACKS).map(|_| Builder::new(true)).collect(),
            tree: Builder::new(false),
            target: target as usize,
            uploader: None,
            inflight: HashMap::new(),
            next_job: 0,
            failed: Vec::new(),
            last_error: None,
            spare: Vec::new(),
            spare_limit: SPARE_BUFFERS,
            written: Vec::new(),
            unjournaled_packs: Vec::new(),
            journal_packs: false,
            writers: PACK_WRITERS,
            stored_bytes: 0,
        }
    }

    fn failure(&self) -> Option<Error> {
        if self.failed.is_empty() {
            return None;
        }
        let (kind, msg) = self.last_error.clone().unwrap_or((ErrorKind::Io, "a pack could not be written".into()));
        Some(Error::new(kind, format!("{msg} (new data is refused until it is written)")))
    }

    fn note_written(&mut self, b: &Builder, p: &IndexPack) {
        let pack = Arc::new(p.pack);
        let mut map = self.pending.map_mut();
        for e in &b.entries {
            if let Some(l) = map.get_mut(&e.blob.key()) {
                if matches!(&l.at, At::Buf { buf, .. } if Arc::ptr_eq(buf, &b.buf)) {
                    l.at = At::Pack(pack.clone());
                }
            }
        }
    }

    /// Keeps the buffer of a written pack for the next one, unless a reader still holds it.
    fn recycle(&mut self, b: Builder) {
        if self.spare.len() < self.spare_limit {
            if let Ok(lock) = Arc::try_unwrap(b.buf) {
                self.spare.push(lock.into_inner().unwrap_or_else(|e| e.into_inner()));
            }
        }
    }

    /// Collects what the uploader finished (without waiting, or waiting for everything).
    fn collect(&mut self, wait: bool) {
        loop {
            if self.inflight.is_empty() {
                return;
            }
            let Some(up) = &self.uploader else { return };
            let d = if wait {
                match up.rx.recv() {
                    Ok(d) => d,
                    Err(_) => break,
                }
            } else {
                match up.rx.try_recv() {
                    Ok(d) => d,
                    Err(TryRecvError::Empty) => return,
                    Err(TryRecvError::Disconnected) => break,
                }
            };
            match d {
                Done::Written(seq, b, p) => {
                    self.inflight.remove(&seq);
                    self.note_written(&b, &p);
                    self.record_written(p);
                    self.recycle(b);
                }
                Done::Failed(seq, mut b, e) => {
                    if let Some((_, _, j, _)) = self.inflight.remove(&seq) {
                        b.journaled = b.journaled.max(j);
                    }
                    self.last_error = Some((e.kind(), e.to_string()));
                    self.failed.push(b);
                }
            }
        }
        // The writer thread is gone (it panicked): its packs are lost to it, not to us.
        self.uploader = None;
        let lost: Vec<u64> = self.inflight.keys().copied().collect();
        for seq in lost {
            if let Some((buf, entries, journaled, bulk)) = self.inflight.remove(&seq) {
                self.last_error = Some((ErrorKind::Io, "the pack writer stopped".into()));
                self.failed.push(Builder { buf, entries, journaled, id: None, bulk });
            }
        }
    }

    /// Adds a frame; hands a pack to the writer thread when one reaches the target size.
    pub fn add(&mut self, b: SealedFrame) -> Result<()> {
        self.add_to(b, false)
    }

    /// [`Packer::add`], choosing the lane: `bulk` for the stream of a large file.
    pub fn add_to(&mut self, b: SealedFrame, bulk: bool) -> Result<()> {
        self.collect(false);
        if !self.failed.is_empty() {
            // Space may have been freed since: try those packs again first.
            self.retry_failed();
            if let Some(e) = self.failure() {
                return Err(e);
            }
        }
        self.stored_bytes += b.bytes.len() as u64;
        let kind = b.members.first().map(|(m, _)| m.kind).unwrap_or(BlobKind::Data);
        let builder = match (kind, bulk) {
            (BlobKind::Tree | BlobKind::List, _) => &mut self.tree,
            (BlobKind::Data, false) => {
                let i = rand::thread_rng().gen_range(0..self.data.len());
                &mut self.data[i]
            }
            (BlobKind::Data, true) => {
                let i = rand::thread_rng().gen_range(0..self.bulk.len());
                &mut self.bulk[i]
            }
        };
        builder.add(&self.pending, b, self.target + (1 << 20), &mut self.spare);
        if builder.len() >= self.target {
            let lane = builder.bulk;
            let full = std::mem::replace(builder, Builder::new(lane));
            self.send(full);
        }
        Ok(())
    }

    fn send(&mut self, full: Builder) {
        let seq = self.next_job;
        self.next_job += 1;
        self.inflight.insert(seq, (full.buf.clone(), full.entries.clone(), full.journaled, full.bulk));
        let writers = self.writers;
        let up = self.uploader.get_or_insert_with(|| Uploader::start(self.store.clone(), self.sealer.clone(), writers));
        if let Err(std::sync::mpsc::SendError(job)) = up.tx.send(Job { seq, builder: full }) {
            self.inflight.remove(&seq);
            self.uploader = None;
            self.last_error = Some((ErrorKind::Io, "the pack writer stopped".into()));
            self.failed.push(job.builder);
        }
    }

    fn retry_failed(&mut self) {
        for mut b in std::mem::take(&mut self.failed) {
            if !self.failed.is_empty() {
                self.failed.push(b);
                continue;
            }
            match write_pack(&*self.store, &self.sealer, &mut b) {
                Ok(p) => {
                    self.note_written(&b, &p);
                    self.record_written(p);
                }
                Err(e) => {
                    self.last_error = Some((e.kind(), e.to_string()));
                    self.failed.push(b);
                }
            }
        }
    }

    /// Writes every non-empty open pack (and every pack whose write failed before) and waits
    /// until all packs are durable. On error, the packs not written stay in memory.
    pub fn flush(&mut self) -> Result<()> {
        self.collect(true);
        let mut all: Vec<Builder> = std::mem::take(&mut self.failed);
        let mut data: Vec<Builder> = self.data.iter_mut().map(|b| std::mem::replace(b, Builder::new(false))).collect();
        data.extend(self.bulk.iter_mut().map(|b| std::mem::replace(b, Builder::new(true))));
        all.extend(self.merge_small(data));
        all.push(std::mem::replace(&mut self.tree, Builder::new(false)));
        match self.write_now(all) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes `packs` (empty ones skipped) in this thread; after the first failure the rest
    /// wait in `failed` with it. Returns that failure.
    fn write_now(&mut self, packs: Vec<Builder>) -> Option<Error> {
        let mut err = None;
        for mut b in packs {
            if b.entries.is_empty() {
                continue;
            }
            if err.is_some() {
                self.failed.push(b);
                continue;
            }
            match write_pack(&*self.store, &self.sealer, &mut b) {
                Ok(p) => {
                    self.note_written(&b, &p);
                    self.record_written(p);
                }
                Err(e) => {
                    self.last_error = Some((e.kind(), e.to_string()));
                    self.failed.push(b);
                    err = Some(e);
                }
            }
        }
        err
    }

    /// Partly filled data packs are written as few packs as fit the target size, so that a
    /// flush makes one pack, not one per open pack.
    fn merge_small(&self, builders: Vec<Builder>) -> Vec<Builder> {
        let mut out: Vec<Builder> = Vec::new();
        for b in builders.into_iter().filter(|b| !b.entries.is_empty()) {
            match out.last_mut() {
                Some(a) if a.len() + b.len() <= self.target + PREAMBLE.len() => self.append(a, b),
                _ => out.push(b),
            }
        }
        out
    }

    /// Moves the blobs of `b` to the end of `a` (pending reads follow them).
    fn append(&self, a: &mut Builder, b: Builder) {
        let base = {
            let mut ab = write_lock(&a.buf);
            let bb = read_lock(&b.buf);
            let base = ab.len() as u32 - PREAMBLE.len() as u32;
            ab.extend_from_slice(&bb[PREAMBLE.len()..]);
            base
        };
        let all_journaled = a.journaled == a.entries.len();
        let a_len = a.entries.len();
        let mut map = self.pending.map_mut();
        for mut e in b.entries {
            e.offset += base;
            if let Some(l) = map.get_mut(&e.blob.key()) {
                if matches!(&l.at, At::Buf { buf, .. } if Arc::ptr_eq(buf, &b.buf)) {
                    l.at = At::Buf { buf: a.buf.clone(), bulk: a.bulk };
                    l.offset = e.offset;
                }
            }
            a.entries.push(e);
        }
        // Journaled is a prefix count: when `a` was not wholly journaled, some of `b`'s blobs
        // may be journaled twice, which replay tolerates.
        if all_journaled {
            a.journaled = a_len + b.journaled;
        }
    }

    /// Whether the buffers of written packs are kept for the next packs (the default): saves
    /// faulting their pages in again, at the cost of holding them whole.
    /// Fills `n` packs at once with the streams of large files (frames spread over them at
    /// random) instead of [`OPEN_DATA_PACKS`]. Open bulk packs beyond `n` are sent to be
    /// written when they fill, as any other.
    pub fn set_bulk_lanes(&mut self, n: usize) {
        let n = n.max(1);
        while self.bulk.len() > n {
            let b = self.bulk.pop().expect("more than one lane");
            if !b.entries.is_empty() {
                self.send(b);
            }
        }
        while self.bulk.len() < n {
            self.bulk.push(Builder::new(true));
        }
    }

    /// Writes full packs on `n` threads instead of [`PACK_WRITERS`] (before the first pack is
    /// sent): with one, a full pack less in memory while the disk is busy.
    pub fn set_pack_writers(&mut self, n: usize) {
        self.writers = n.max(1);
    }

    pub fn reuse_buffers(&mut self, on: bool) {
        self.spare_limit = if on { SPARE_BUFFERS } else { 0 };
        if !on {
            self.release_spare();
        }
    }

    /// Frees the buffers kept for reuse (a stream of packs has ended).
    pub fn release_spare(&mut self) {
        self.spare = Vec::new();
    }

    /// Packs written and not yet named by an index file.
    pub fn written(&self) -> &[IndexPack] {
        &self.written
    }

    /// Takes the packs written so far and not yet named by an index file (without waiting for
    /// the ones being written, nor writing the open ones), for an index file whose entries go
    /// to the cache in the background: their blobs stay pending until
    /// [`Packer::forget_indexed`].
    pub fn take_written(&mut self) -> Vec<IndexPack> {
        self.collect(false);
        std::mem::take(&mut self.written)
    }

    /// Gives back packs taken by [`Packer::take_written`] whose index file could not be written.
    pub fn restore_written(&mut self, packs: Vec<IndexPack>) {
        self.written.extend(packs);
    }

    /// Called once the cache holds the entries of `packs` (taken by [`Packer::take_written`]):
    /// their blobs leave the pending set.
    pub fn forget_indexed(&mut self, packs: &[IndexPack]) {
        let ids: HashSet<PackId> = packs.iter().map(|p| p.pack).collect();
        self.pending.map_mut().retain(|_, l| !matches!(&l.at, At::Pack(pack) if ids.contains(&**pack)));
    }

    /// A written pack: for the next index file, and for the journal when there is one.
    fn record_written(&mut self, p: IndexPack) {
        if self.journal_packs {
            self.unjournaled_packs.push(p.clone());
        }
        self.written.push(p);
    }

    /// Keeps records of written packs for [`Packer::take_unjournaled`] (a session with a
    /// journal). Without one nothing takes them, and they would add up for the whole session.
    pub fn keep_journal_records(&mut self, on: bool) {
        self.journal_packs = on;
        if !on {
            self.unjournaled_packs = Vec::new();
        }
    }

    /// A durable index file names `packs`: the journal no longer needs records of them
    /// (replay skips packs an index file names), so they are not kept until the next close.
    pub fn named_by_index(&mut self, packs: &[IndexPack]) {
        if self.unjournaled_packs.is_empty() {
            return;
        }
        let ids: HashSet<PackId> = packs.iter().map(|p| p.pack).collect();
        self.unjournaled_packs.retain(|p| !ids.contains(&p.pack));
    }

    /// Called once an index file names every pack of [`Packer::written`].
    pub fn indexed(&mut self) {
        let written = std::mem::take(&mut self.written);
        self.named_by_index(&written);
        if self.failed.is_empty()
            && self.inflight.is_empty()
            && self.data.iter().chain(self.bulk.iter()).all(|b| b.entries.is_empty())
            && self.tree.entries.is_empty()
        {
            self.pending.clear();
        } else {
            // Only what the index file covers leaves the pending set.
            let mut map = self.pending.map_mut();
            map.retain(|_, l| matches!(l.at, At::Buf { .. }));
        }
    }

    /// Adds packs written by someone else (journal replay) to the next index file.
    pub fn add_written(&mut self, p: IndexPack) {
        {
            let pack = Arc::new(p.pack);
            let mut map = self.pending.map_mut();
            for (e, frame) in p.entries.iter().zip(frame_ids(&p.entries)) {
                map.entry(e.blob.key()).or_insert_with(|| Loc::new(At::Pack(pack.clone()), e, frame));
            }
        }
        self.written.push(p);
    }

    /// Frames not yet in any pack file and not yet given to the journal, and packs written
    /// since the last call. Marks them as journaled.
    pub fn take_unjournaled(&mut self) -> (Vec<SealedFrame>, Vec<IndexPack>) {
        self.collect(false);
        let mut out = Vec::new();
        for b in self.data.iter_mut().chain(std::iter::once(&mut self.tree)).chain(self.failed.iter_mut()) {
            out.extend(b.frames_from(b.journaled));
            b.journaled = b.entries.len();
        }
        for (buf, entries, journaled, bulk) in self.inflight.values_mut() {
            if !*bulk {
                out.extend(frames_in(buf, &entries[(*journaled).min(entries.len())..]));
                *journaled = entries.len();
            }
        }
        (out, std::mem::take(&mut self.unjournaled_packs))
    }

    /// Journal records for the frames holding those of `blobs` that sit in a bulk pack not
    /// yet written (a small file whose chunks another file's stream packed first).
    pub fn bulk_blobs(&self, blobs: &[BlobRef]) -> Vec<SealedFrame> {
        // (buffer, frame offset) of every such blob.
        let wanted: HashSet<(usize, u32)> = {
            let map = self.pending.map();
            blobs
                .iter()
                .filter_map(|b| match map.get(&b.key()) {
                    Some(Loc { at: At::Buf { buf, bulk: true }, offset, .. }) => {
                        Some((Arc::as_ptr(buf) as usize, *offset))
                    }
                    _ => None,
                })
                .collect()
        };
        if wanted.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut pick = |buf: &Buf, entries: &[PackEntry]| {
            let key = Arc::as_ptr(buf) as usize;
            let mine: Vec<PackEntry> = entries.iter().filter(|e| wanted.contains(&(key, e.offset))).copied().collect();
            if !mine.is_empty() {
                out.extend(frames_in(buf, &mine));
            }
        };
        for b in self.bulk.iter().chain(self.failed.iter()) {
            pick(&b.buf, &b.entries);
        }
        for (buf, entries, _, bulk) in self.inflight.values() {
            if *bulk {
                pick(buf, entries);
            }
        }
        out
    }

    /// Sealed bytes in open packs that the journal has not taken yet.
    pub fn unjournaled_bytes(&self) -> usize {
        let f = |b: &Builder| -> usize {
            frames(&b.entries[b.journaled.min(b.entries.len())..]).map(|f| f[0].length as usize).sum()
        };
        self.data.iter().map(f).sum::<usize>() + f(&self.tree)
    }

    /// Makes every bulk blob durable in a pack file (the close of a large file): waits for
    /// the packs on their way to the store, then writes the open bulk packs, without an index
    /// file. The packs become pack records of the journal.
    pub fn write_bulk(&mut self) -> Result<()> {
        self.collect(true);
        let open: Vec<Builder> = self.bulk.iter_mut().map(|b| std::mem::replace(b, Builder::new(true))).collect();
        let merged = self.merge_small(open);
        match self.write_now(merged).or_else(|| self.failure()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether packs wait to be written again after a failure.
    pub fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Sealed bytes of every blob added so far.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    /// Bytes buffered in open packs (bounded by OPEN_DATA_PACKS + 1 times the target, plus
    /// two packs on their way to the store).
    pub fn buffered(&self) -> usize {
        self.data.iter().chain(self.bulk.iter()).map(|b| b.len()).sum::<usize>() + self.tree.len()
    }
}

impl Drop for Packer {
    fn drop(&mut self) {
        // Let the writer thread finish what it holds: a pack it writes is harmless (no index
        // names it) but must not be cut short by process exit racing the thread.
        if let Some(up) = self.uploader.take() {
            drop(up.tx);
            while up.rx.recv().is_ok() {}
        }
    }
}

/// Writes a pack: the header and trailer are appended to the buffer, the whole is stored
/// atomically; on failure the buffer is restored, so the pack can be written again.
fn write_pack(store: &dyn Store, sealer: &Sealer, b: &mut Builder) -> Result<IndexPack> {
    let id = *b.id.get_or_insert_with(PackId::random);
    let header = sealer.seal(Domain::PackHeader, id.as_bytes(), &encode_header(&b.entries));
    let blob_end = {
        let mut buf = write_lock(&b.buf);
        let end = buf.len();
        let mut w = Writer { buf: Vec::with_capacity(header.len() + 4) };
        w.raw(&header).u32(header.len() as u32);
        buf.extend_from_slice(&w.finish());
        end
    };
    let res = {
        let buf = read_lock(&b.buf);
        store.put(ObjKind::Pack, &id.to_hex(), &buf).map(|_| buf.len() as u64)
    };
    match res {
        Ok(size) => Ok(IndexPack { pack: id, size, entries: b.entries.clone() }),
        Err(e) => {
            write_lock(&b.buf).truncate(blob_end);
            Err(e.context(format!("writing pack {}", id.short())))
        }
    }
}

/// Reads and authenticates a whole pack's header (used by check and index rebuild).
pub fn read_pack_header(store: &dyn Store, sealer: &Sealer, id: &PackId) -> Result<(u64, Vec<PackEntry>)> {
    let bytes = store.get(ObjKind::Pack, &id.to_hex())?;
    let (entries, _) = parse_pack(sealer, id, &bytes)?;
    Ok((bytes.len() as u64, entries))
}

/// Parses a whole pack file: header entries and the file length.
pub fn parse_pack(sealer: &Sealer, id: &PackId, bytes: &[u8]) -> Result<(Vec<PackEntry>, u64)> {
    let (sealed_header, blob_end) = crate::format::pack::split_trailer(bytes)?;
    let plain = sealer.open(Domain::PackHeader, id.as_bytes(), sealed_header).map_err(|e| e.context("pack header"))?;
    let entries = crate::format::pack::decode_header(&plain, blob_end)?;
    Ok((entries, bytes.len() as u64))
}
