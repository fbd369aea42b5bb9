//! Building pack files from sealed blobs.
//!
//! Data blobs are spread at random over several open packs (restic 0.18's mitigation: which
//! chunks share a pack no longer reveals their order in the file); tree and list blobs go to
//! their own pack so that metadata stays small and quick to fetch. A pack is written whole with
//! one atomic, durable `put`; its entries become visible to other processes only through an
//! index file written after it.
//!
//! Until then, every blob of the session is in [`Pending`]: in an open pack's buffer, in a pack
//! on its way to the store, or in a written pack no index file names yet. The session's own
//! process reads blobs from there (`Vault::read_blob` looks there first), so nothing has to be
//! flushed for a read. A pack whose write fails (a full disk) is kept in memory and written
//! again by the next flush; while one waits, `add` fails with the same error, so memory stays
//! bounded and no blob that a caller was told is stored is ever dropped.

use crate::crypto::{Domain, Sealer};
use crate::error::{Error, ErrorKind, Result};
use crate::format::codec::Writer;
use crate::format::index::IndexPack;
use crate::format::pack::{encode_header, PackEntry, PREAMBLE};
use crate::id::{BlobKind, BlobRef, PackId};
use crate::store::{ObjKind, Store};
use rand::Rng;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, RwLock};

/// How many data packs are filled at once.
pub const OPEN_DATA_PACKS: usize = 4;

/// A blob ready to be packed: `[compression u8 || payload]` sealed.
pub struct SealedBlob {
    pub blob: BlobRef,
    pub bytes: Vec<u8>,
    pub raw_length: u32,
}

pub const COMP_NONE: u8 = 0;
pub const COMP_ZSTD: u8 = 1;

pub fn domain_of(kind: BlobKind) -> Domain {
    match kind {
        BlobKind::Data => Domain::DataBlob,
        BlobKind::Tree => Domain::TreeBlob,
        BlobKind::List => Domain::ListBlob,
    }
}

/// Compresses (when it helps) and seals one blob.
pub fn seal_blob(sealer: &Sealer, level: i32, blob: BlobRef, plain: &[u8]) -> SealedBlob {
    let mut framed = Vec::with_capacity(plain.len() + 1);
    let compressed = compress(plain, level).filter(|c| c.len() + c.len() / 32 < plain.len());
    match compressed {
        Some(c) => {
            framed.push(COMP_ZSTD);
            framed.extend_from_slice(&c);
        }
        None => {
            framed.push(COMP_NONE);
            framed.extend_from_slice(plain);
        }
    }
    SealedBlob { blob, bytes: sealer.seal(domain_of(blob.kind), &blob.id, &framed), raw_length: plain.len() as u32 }
}

thread_local! {
    /// One zstd context per thread, reused for every blob (creating one per chunk costs more
    /// than compressing a small chunk).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
}

fn compress(plain: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            *c = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        c.as_mut()?.1.compress(plain).ok()
    })
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn decompress(body: &[u8], raw_length: usize) -> Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(|e| Error::corrupt(format!("zstd: {e}")))?);
        }
        let d = d.as_mut().ok_or_else(|| Error::corrupt("zstd unavailable"))?;
        d.decompress(body, raw_length).map_err(|e| Error::corrupt(format!("decompression failed: {e}")))
    })
}

/// Opens a sealed blob and undoes compression; checks the length against `raw_length`.
pub fn open_blob(sealer: &Sealer, blob: BlobRef, sealed: &[u8], raw_length: u32) -> Result<Vec<u8>> {
    let framed = sealer.open(domain_of(blob.kind), &blob.id, sealed)?;
    let (flag, body) = framed.split_first().ok_or_else(|| Error::corrupt("empty blob"))?;
    let plain = match *flag {
        COMP_NONE => body.to_vec(),
        COMP_ZSTD => decompress(body, raw_length as usize)?,
        f => return Err(Error::corrupt(format!("unknown compression {f}"))),
    };
    if plain.len() != raw_length as usize {
        return Err(Error::corrupt(format!("length {} differs from the recorded {raw_length}", plain.len())));
    }
    Ok(plain)
}

type Buf = Arc<RwLock<Vec<u8>>>;

fn read_lock(b: &Buf) -> std::sync::RwLockReadGuard<'_, Vec<u8>> {
    b.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock(b: &Buf) -> std::sync::RwLockWriteGuard<'_, Vec<u8>> {
    b.write().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone)]
enum Loc {
    /// In a pack buffer (open, on its way to the store, or waiting after a failed write);
    /// `bulk`: one of the packs that streams of large files fill (never copied to a journal).
    Buf { buf: Buf, offset: u32, length: u32, raw: u32, bulk: bool },
    /// In a pack file that no index file names yet.
    Pack { pack: PackId, offset: u32, length: u32, raw: u32 },
}

/// Blobs of a write session that no index file names yet, readable by the session's process.
#[derive(Default)]
pub struct Pending {
    map: RwLock<HashMap<[u8; 33], Loc>>,
}

impl Pending {
    fn map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 33], Loc>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
    fn map_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 33], Loc>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn contains(&self, blob: &BlobRef) -> bool {
        self.map().contains_key(&blob.key())
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// The sealed bytes and raw length of a pending blob, `None` when it is not pending.
    pub fn sealed(&self, store: &dyn Store, blob: &BlobRef) -> Option<Result<(Vec<u8>, u32)>> {
        let loc = self.map().get(&blob.key()).cloned()?;
        Some(match loc {
            Loc::Buf { buf, offset, length, raw, .. } => {
                let b = read_lock(&buf);
                let (s, e) = (offset as usize, offset as usize + length as usize);
                match b.get(s..e) {
                    Some(x) => Ok((x.to_vec(), raw)),
                    None => Err(Error::corrupt(format!("{} lies outside its open pack", blob.describe()))),
                }
            }
            Loc::Pack { pack, offset, length, raw } => store
                .get_range(ObjKind::Pack, &pack.to_hex(), offset as u64, length)
                .map(|b| (b, raw))
                .map_err(|e| e.context(format!("{} in pack {} (not yet indexed)", blob.describe(), pack.short()))),
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
    fn add(&mut self, pending: &Pending, b: SealedBlob) {
        let offset = {
            let mut buf = write_lock(&self.buf);
            let o = buf.len() as u32;
            buf.extend_from_slice(&b.bytes);
            o
        };
        let e = PackEntry { blob: b.blob, offset, length: b.bytes.len() as u32, raw_length: b.raw_length };
        pending.map_mut().insert(
            b.blob.key(),
            Loc::Buf { buf: self.buf.clone(), offset, length: e.length, raw: e.raw_length, bulk: self.bulk },
        );
        self.entries.push(e);
    }
}

/// A blob record for the journal: a blob not yet in any pack file.
pub struct JournalBlob {
    pub blob: BlobRef,
    pub raw_length: u32,
    pub sealed: Vec<u8>,
}

struct Job {
    seq: u64,
    builder: Builder,
}

enum Done {
    Written(u64, Builder, IndexPack),
    Failed(u64, Builder, Error),
}

/// Writes full packs on a background thread, so sealing goes on while a pack is being
/// written and fsynced. At most one pack waits in the queue.
struct Uploader {
    tx: SyncSender<Job>,
    rx: Receiver<Done>,
}

impl Uploader {
    fn start(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        let (tx, jobs) = std::sync::mpsc::sync_channel::<Job>(1);
        let (done_tx, rx) = std::sync::mpsc::channel::<Done>();
        std::thread::spawn(move || {
            for mut job in jobs {
                let d = match write_pack(&*store, &sealer, &mut job.builder) {
                    Ok(p) => Done::Written(job.seq, job.builder, p),
                    Err(e) => Done::Failed(job.seq, job.builder, e),
                };
                if done_tx.send(d).is_err() {
                    return;
                }
            }
        });
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
    /// Packs written (durable) and not yet covered by an index file.
    written: Vec<IndexPack>,
    /// Packs written since the journal last took them.
    unjournaled_packs: Vec<IndexPack>,
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
            written: Vec::new(),
            unjournaled_packs: Vec::new(),
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
        let mut map = self.pending.map_mut();
        for e in &b.entries {
            if let Some(Loc::Buf { buf, .. }) = map.get(&e.blob.key()) {
                if Arc::ptr_eq(buf, &b.buf) {
                    map.insert(
                        e.blob.key(),
                        Loc::Pack { pack: p.pack, offset: e.offset, length: e.length, raw: e.raw_length },
                    );
                }
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
                    self.unjournaled_packs.push(p.clone());
                    self.written.push(p);
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

    /// Adds a blob; hands a pack to the writer thread when one reaches the target size.
    pub fn add(&mut self, b: SealedBlob) -> Result<()> {
        self.add_to(b, false)
    }

    /// [`Packer::add`], choosing the lane: `bulk` for the stream of a large file.
    pub fn add_to(&mut self, b: SealedBlob, bulk: bool) -> Result<()> {
        self.collect(false);
        if !self.failed.is_empty() {
            // Space may have been freed since: try those packs again first.
            self.retry_failed();
            if let Some(e) = self.failure() {
                return Err(e);
            }
        }
        self.stored_bytes += b.bytes.len() as u64;
        let builder = match (b.blob.kind, bulk) {
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
        builder.add(&self.pending, b);
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
        let up = self.uploader.get_or_insert_with(|| Uploader::start(self.store.clone(), self.sealer.clone()));
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
                    self.unjournaled_packs.push(p.clone());
                    self.written.push(p);
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
        let mut err = None;
        for mut b in all {
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
                    self.unjournaled_packs.push(p.clone());
                    self.written.push(p);
                }
                Err(e) => {
                    self.last_error = Some((e.kind(), e.to_string()));
                    self.failed.push(b);
                    err = Some(e);
                }
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
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
            map.insert(
                e.blob.key(),
                Loc::Buf { buf: a.buf.clone(), offset: e.offset, length: e.length, raw: e.raw_length, bulk: a.bulk },
            );
            a.entries.push(e);
        }
        // Journaled is a prefix count: when `a` was not wholly journaled, some of `b`'s blobs
        // may be journaled twice, which replay tolerates.
        if all_journaled {
            a.journaled = a_len + b.journaled;
        }
    }

    /// Packs written and not yet named by an index file.
    pub fn written(&self) -> &[IndexPack] {
        &self.written
    }

    /// Called once an index file names every pack of [`Packer::written`].
    pub fn indexed(&mut self) {
        self.written.clear();
        if self.failed.is_empty()
            && self.inflight.is_empty()
            && self.data.iter().chain(self.bulk.iter()).all(|b| b.entries.is_empty())
            && self.tree.entries.is_empty()
        {
            self.pending.clear();
        } else {
            // Only what the index file covers leaves the pending set.
            let mut map = self.pending.map_mut();
            map.retain(|_, l| matches!(l, Loc::Buf { .. }));
        }
    }

    /// Adds packs written by someone else (journal replay) to the next index file.
    pub fn add_written(&mut self, p: IndexPack) {
        {
            let mut map = self.pending.map_mut();
            for e in &p.entries {
                map.entry(e.blob.key()).or_insert(Loc::Pack {
                    pack: p.pack,
                    offset: e.offset,
                    length: e.length,
                    raw: e.raw_length,
                });
            }
        }
        self.written.push(p);
    }

    /// Blobs not yet in any pack file and not yet given to the journal, and packs written
    /// since the last call. Marks them as journaled.
    pub fn take_unjournaled(&mut self) -> (Vec<JournalBlob>, Vec<IndexPack>) {
        self.collect(false);
        let mut blobs = Vec::new();
        let take = |buf: &Buf, entries: &[PackEntry], from: usize, out: &mut Vec<JournalBlob>| {
            let b = read_lock(buf);
            for e in &entries[from.min(entries.len())..] {
                let s = e.offset as usize;
                if let Some(x) = b.get(s..s + e.length as usize) {
                    out.push(JournalBlob { blob: e.blob, raw_length: e.raw_length, sealed: x.to_vec() });
                }
            }
        };
        for b in self.data.iter_mut().chain(std::iter::once(&mut self.tree)).chain(self.failed.iter_mut()) {
            take(&b.buf, &b.entries, b.journaled, &mut blobs);
            b.journaled = b.entries.len();
        }
        for (buf, entries, journaled, bulk) in self.inflight.values_mut() {
            if !*bulk {
                take(buf, entries, *journaled, &mut blobs);
                *journaled = entries.len();
            }
        }
        (blobs, std::mem::take(&mut self.unjournaled_packs))
    }

    /// Journal records for those of `blobs` that sit in a bulk pack not yet written (a small
    /// file whose chunks another file's stream packed first).
    pub fn bulk_blobs(&self, blobs: &[BlobRef]) -> Vec<JournalBlob> {
        let map = self.pending.map();
        let mut out = Vec::new();
        for b in blobs {
            if let Some(Loc::Buf { buf, offset, length, raw, bulk: true }) = map.get(&b.key()) {
                let data = read_lock(buf);
                let s = *offset as usize;
                if let Some(x) = data.get(s..s + *length as usize) {
                    out.push(JournalBlob { blob: *b, raw_length: *raw, sealed: x.to_vec() });
                }
            }
        }
        out
    }

    /// Sealed bytes in open packs that the journal has not taken yet.
    pub fn unjournaled_bytes(&self) -> usize {
        let f = |b: &Builder| -> usize {
            b.entries[b.journaled.min(b.entries.len())..].iter().map(|e| e.length as usize).sum()
        };
        self.data.iter().map(f).sum::<usize>() + f(&self.tree)
    }

    /// Makes every bulk blob durable in a pack file (the close of a large file): waits for
    /// the packs on their way to the store, then writes the open bulk packs, without an index
    /// file. The packs become pack records of the journal.
    pub fn write_bulk(&mut self) -> Result<()> {
        self.collect(true);
        let open: Vec<Builder> = self.bulk.iter_mut().map(|b| std::mem::replace(b, Builder::new(true))).collect();
        let mut err = None;
        for mut b in self.merge_small(open) {
            if err.is_some() {
                self.failed.push(b);
                continue;
            }
            match write_pack(&*self.store, &self.sealer, &mut b) {
                Ok(p) => {
                    self.note_written(&b, &p);
                    self.unjournaled_packs.push(p.clone());
                    self.written.push(p);
                }
                Err(e) => {
                    self.last_error = Some((e.kind(), e.to_string()));
                    self.failed.push(b);
                    err = Some(e);
                }
            }
        }
        if err.is_none() {
            if let Some(e) = self.failure() {
                err = Some(e);
            }
        }
        match err {
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
