//! Reading blobs and files back: index lookup, ranged pack read, authenticate, decompress,
//! verify the content id. Nothing unverified ever reaches a caller: a damaged or missing blob
//! is an error naming the blob and its pack.

use super::frame::{member_of, open_frame_in_place};
use super::Vault;
use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::PackEntry;
use crate::format::tree::{decode_list, ChunkRef, Content, Node, NodeKind, PageRef};
use crate::id::{BlobKind, BlobRef, PackId};
use crate::rebuild::{GzContent, Plan, Rebuilder, Source};
use crate::store::ObjKind;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::io::{IoSlice, Write};
use std::sync::{Arc, Condvar, Mutex};

/// File bytes per window of `copy_to`: looked up, read and verified as one batch.
const WINDOW_BYTES: u64 = 8 << 20;
/// Windows decoded ahead of the writer (besides the one being decoded and the one written).
const WINDOWS_AHEAD: usize = 2;
/// Frames of one pack this close together are fetched with one ranged read.
const COALESCE_GAP: u64 = 64 << 10;
/// Largest coalesced ranged read.
const MAX_RANGE: u64 = 8 << 20;
/// Most frames opened and verified by one parallel task of a read (their data chunks are
/// hashed together: [`crate::crypto::many`]).
const FRAMES_PER_TASK: usize = 8;
/// Decrypted frames kept for single-blob reads (a reader of one chunk of a frame usually
/// wants the next ones too).
const FRAME_CACHE: usize = 16;

/// Frames opened by one window of a sequential read, kept for the next window
/// ([`Vault::read_run_with`]): a frame covers at most `MAX_SPAN` of a file, so it is opened
/// once even when its members straddle two windows.
#[derive(Default)]
pub struct Carry {
    frames: HashMap<[u8; 32], Arc<Vec<u8>>>,
}

/// A verified blob: a slice of its (shared) frame plaintext.
#[derive(Clone)]
pub struct Piece {
    frame: Arc<Vec<u8>>,
    start: usize,
    len: usize,
}

impl Piece {
    pub fn bytes(&self) -> &[u8] {
        &self.frame[self.start..self.start + self.len]
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes().to_vec()
    }
}

/// Recently opened frames by frame id (ids are random and unique, so an entry can never
/// stand for another frame).
#[derive(Default)]
pub(crate) struct FrameCache {
    frames: Mutex<std::collections::VecDeque<([u8; 32], Arc<Vec<u8>>)>>,
}

impl FrameCache {
    fn get(&self, id: &[u8; 32]) -> Option<Arc<Vec<u8>>> {
        let f = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        f.iter().find(|(k, _)| k == id).map(|(_, v)| v.clone())
    }
    fn put(&self, id: [u8; 32], frame: Arc<Vec<u8>>) {
        let mut f = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if f.iter().any(|(k, _)| *k == id) {
            return;
        }
        if f.len() >= FRAME_CACHE {
            f.pop_front();
        }
        f.push_back((id, frame));
    }
}

/// Bytes of ranged-read buffers kept for the next reads (a buffer is filled by each read
/// without being allocated, zeroed and faulted in again).
const POOL_BYTES: usize = 16 << 20;

/// Buffers of ranged pack reads, handed back after their frames were opened.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    fn take(&self) -> Vec<u8> {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default()
    }
    fn give(&self, bufs: impl IntoIterator<Item = Vec<u8>>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let mut held: usize = free.iter().map(|b| b.capacity()).sum();
        for b in bufs {
            if held + b.capacity() <= POOL_BYTES {
                held += b.capacity();
                free.push(b);
            }
        }
    }
}

/// What one pass of a read left to do: chunks the index does not know or whose pack is gone
/// (read again after an index reload).
#[derive(Default)]
struct Pass {
    retry: Vec<usize>,
}

/// The sealed bytes of one frame: its slice of a coalesced read, or a copy of its own.
enum Sealed<'a> {
    Slice(&'a mut [u8]),
    Owned(Vec<u8>),
}

impl Sealed<'_> {
    fn bytes(&mut self) -> &mut [u8] {
        match self {
            Sealed::Slice(s) => s,
            Sealed::Owned(v) => v,
        }
    }
}

/// A failure that reloading the index may cure (a prune moved the blob meanwhile).
fn retryable(e: &Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

impl Vault {
    /// Fetches, authenticates and verifies one blob.
    pub fn read_blob(&self, blob: BlobRef) -> Result<Vec<u8>> {
        Ok(self.read_piece(blob)?.to_vec())
    }

    /// [`Vault::read_blob`] without copying the blob out of its frame.
    pub fn read_piece(&self, blob: BlobRef) -> Result<Piece> {
        match self.try_read_blob(blob)? {
            Ok(plain) => Ok(plain),
            Err(_) => {
                // Not where the index said (or not in it): a prune may have moved it since the
                // index was loaded. Reload the index files and look once more.
                self.sync_index()?;
                self.try_read_blob(blob)?
            }
        }
    }

    /// Opens the frame `e` describes from its sealed bytes, through the frame cache.
    fn open_cached(&self, e: &PackEntry, sealed: impl FnOnce() -> Result<Vec<u8>>) -> Result<Arc<Vec<u8>>> {
        if let Some(m) = &e.member {
            if let Some(f) = self.frame_cache.get(&m.frame) {
                return Ok(f);
            }
        }
        let f = Arc::new(open_frame_in_place(&self.sealer, e, &mut sealed()?)?);
        if let Some(m) = &e.member {
            self.frame_cache.put(m.frame, f.clone());
        }
        Ok(f)
    }

    /// The verified member `e` of an opened frame.
    fn piece(&self, e: &PackEntry, frame: Arc<Vec<u8>>) -> Result<Piece> {
        let one = [(0, *e)];
        self.pieces(&[(&frame, &one[..])]).pop().unwrap_or_else(|| Err(Error::corrupt("a chunk was not verified")))
    }

    /// The verified members `at` of opened frames, in order: the data chunks of all of them
    /// hashed together ([`crate::crypto::Keys::chunk_ids`]), other blobs one by one.
    fn pieces(&self, frames: &[(&Arc<Vec<u8>>, &[(usize, PackEntry)])]) -> Vec<Result<Piece>> {
        let sliced: Vec<(&PackEntry, &Arc<Vec<u8>>, Result<&[u8]>)> =
            frames.iter().flat_map(|(f, at)| at.iter().map(move |(_, e)| (e, *f, member_of(e, f)))).collect();
        let data: Vec<&[u8]> = sliced
            .iter()
            .filter_map(|(e, _, m)| match m {
                Ok(m) if e.blob.kind == BlobKind::Data => Some(*m),
                _ => None,
            })
            .collect();
        let mut ids = self.keys.chunk_ids(&data).into_iter();
        sliced
            .into_iter()
            .map(|(e, frame, m)| {
                let m = m?;
                if e.blob.kind == BlobKind::Data {
                    if ids.next().map(|id| id.0) != Some(e.blob.id) {
                        return Err(not_its_content());
                    }
                } else {
                    self.verify_content(e.blob, m)?;
                }
                Ok(Piece { frame: frame.clone(), start: m.as_ptr() as usize - frame.as_ptr() as usize, len: m.len() })
            })
            .collect()
    }

    /// The inner error is a blob the index does not know or whose pack is gone.
    fn try_read_blob(&self, blob: BlobRef) -> Result<Result<Piece>> {
        let pending = self.pending.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(p) = pending {
            if let Some(r) = p.sealed(&*self.store, &blob) {
                let what = || format!("{} (written by this process, not yet indexed)", blob.describe());
                let (sealed, e) = r?;
                let frame = self.open_cached(&e, || Ok(sealed)).map_err(|err| err.context(what()))?;
                return Ok(Ok(self.piece(&e, frame).map_err(|err| err.context(what()))?));
            }
        }
        let Some(ie) = self.index.get(&blob)? else {
            return Ok(Err(not_indexed(blob)));
        };
        let e = ie.entry(blob);
        let what = || format!("{} in pack {}", blob.describe(), ie.pack.short());
        let frame = match self
            .open_cached(&e, || self.store.get_range(ObjKind::Pack, &ie.pack.to_hex(), e.offset as u64, e.length))
        {
            Ok(f) => f,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                return Ok(Err(Error::corrupt(format!("{}: pack file is missing", what()))))
            }
            Err(err) => return Err(err.context(what())),
        };
        Ok(Ok(self.piece(&e, frame).map_err(|err| err.context(what()))?))
    }

    /// Reads data chunks of a file, in order: their index entries are looked up at once, the
    /// members of one frame share one AEAD open and one decompression, frames of one pack that
    /// lie close together share one ranged read, and frames are opened and verified in
    /// parallel. Each chunk gets its own result, so damage is reported per chunk.
    pub fn read_run(&self, chunks: &[ChunkRef]) -> Vec<Result<Piece>> {
        self.read_run_with(chunks, &mut Carry::default())
    }

    /// [`Vault::read_run`] for one window of a sequential read: frames that `carry` holds
    /// (opened by the previous window) are not read again, and `carry` is left holding the
    /// frames of this window, for the next.
    pub fn read_run_with(&self, chunks: &[ChunkRef], carry: &mut Carry) -> Vec<Result<Piece>> {
        let mut out: Vec<Option<Result<Piece>>> = (0..chunks.len()).map(|_| None).collect();
        let mut opened = HashMap::new();
        let all: Vec<usize> = (0..chunks.len()).collect();
        let retry = self.read_pass(chunks, &all, &mut out, &carry.frames, &mut opened).retry;
        carry.frames = opened;
        if !retry.is_empty() {
            // Not where the index said (or not in it): a prune may have moved them since the
            // index was loaded. Reload the index files and read those once more.
            match self.sync_index() {
                Ok(()) => {
                    let still = self.read_pass(chunks, &retry, &mut out, &HashMap::new(), &mut HashMap::new()).retry;
                    for i in still {
                        if out[i].is_none() {
                            out[i] = Some(Err(not_indexed(BlobRef::data(chunks[i].id))));
                        }
                    }
                }
                Err(e) => {
                    for &i in &retry {
                        out[i] = Some(Err(e.clone_shallow()));
                    }
                }
            }
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::corrupt("a chunk was not read")))).collect()
    }

    /// One pass of [`Vault::read_run_with`] over the chunks at `which` (in file order).
    fn read_pass(
        &self,
        chunks: &[ChunkRef],
        which: &[usize],
        out: &mut [Option<Result<Piece>>],
        known: &HashMap<[u8; 32], Arc<Vec<u8>>>,
        opened: &mut HashMap<[u8; 32], Arc<Vec<u8>>>,
    ) -> Pass {
        let mut pass = Pass::default();
        // Chunks of this process's write session are read one by one from where they wait.
        let pending = self.pending.read().unwrap_or_else(|e| e.into_inner()).clone();
        let blobs: Vec<BlobRef> = which.iter().map(|&i| BlobRef::data(chunks[i].id)).collect();
        let is_pending = match &pending {
            Some(p) if !p.is_empty() => p.contains_many(&blobs),
            _ => vec![false; blobs.len()],
        };
        // Where each chunk is (lookups in parallel slices).
        type At = Vec<(usize, PackEntry)>;
        let looked: Vec<Result<Option<crate::index::IndexEntry>>> = blobs
            .par_chunks(256)
            .flat_map_iter(|c| match self.index.get_many(c) {
                Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => c.iter().map(|_| Err(e.clone_shallow())).collect(),
            })
            .collect();
        let mut frames: HashMap<(PackId, u32), (PackEntry, At)> = HashMap::new();
        let mut singles = Vec::new();
        for (k, (&i, ie)) in which.iter().zip(looked).enumerate() {
            if is_pending[k] {
                singles.push(i);
                continue;
            }
            match ie {
                Ok(Some(ie)) => {
                    let e = ie.entry(blobs[k]);
                    frames.entry((ie.pack, ie.offset)).or_insert_with(|| (e, Vec::new())).1.push((i, e));
                }
                Ok(None) => pass.retry.push(i),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        // Frames the previous window opened.
        let mut reuse: Vec<(Arc<Vec<u8>>, At)> = Vec::new();
        frames.retain(|_, (e, at)| match e.member.and_then(|m| known.get(&m.frame).map(|f| (m.frame, f))) {
            Some((id, f)) => {
                opened.insert(id, f.clone());
                reuse.push((f.clone(), std::mem::take(at)));
                false
            }
            None => true,
        });
        let mut flat: Vec<(usize, Result<Piece>, bool)> = reuse
            .par_iter()
            .flat_map_iter(|(f, at)| {
                at.iter()
                    .zip(self.pieces(&[(f, &at[..])]))
                    .map(|((i, e), r)| (*i, r.map_err(|err| err.context(e.blob.describe())), false))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut order: Vec<((PackId, u32), (PackEntry, At))> = frames.into_iter().collect();
        order.sort_by_key(|((p, o), _)| (*p, *o));
        // Coalesce into ranged reads.
        let mut jobs: Vec<(PackId, u64, u64, Vec<(PackEntry, At)>)> = Vec::new();
        for ((pack, _), (e, at)) in order {
            let (s, end) = (e.offset as u64, e.offset as u64 + e.length as u64);
            match jobs.last_mut() {
                Some((p, js, je, fs))
                    if *p == pack && s >= *je && s - *je <= COALESCE_GAP && end - *js <= MAX_RANGE =>
                {
                    *je = end;
                    fs.push((e, at));
                }
                _ => jobs.push((pack, s, end, vec![(e, at)])),
            }
        }
        // 1. The ranged reads (one per coalesced run of frames), in parallel, into reused
        //    buffers.
        let mut reads: Vec<Result<Vec<u8>>> = jobs
            .par_iter()
            .map(|(pack, s, end, _)| {
                let mut buf = self.read_buffers.take();
                self.store.get_range_into(ObjKind::Pack, &pack.to_hex(), *s, (*end - *s) as u32, &mut buf).map(|()| buf)
            })
            .collect();
        // 2. Every frame decrypted where it was read, decompressed and its members verified,
        //    frame by frame in parallel (a run of frames of one pack is not one task: work
        //    stays balanced).
        let mut tasks: Vec<(usize, &PackEntry, &At, Result<Sealed>)> = Vec::new();
        for (k, ((pack, s, _, fs), r)) in jobs.iter().zip(reads.iter_mut()).enumerate() {
            match r {
                Ok(buf) => {
                    // The frames of a job are in pack order; each gets its own slice.
                    let (mut rest, mut at): (&mut [u8], u64) = (&mut buf[..], *s);
                    for (e, members) in fs {
                        let (o, l) = (e.offset as u64, e.length as usize);
                        let sealed = if o < at {
                            // Overlaps the frame before it (only a damaged index says so):
                            // read on its own.
                            self.store.get_range(ObjKind::Pack, &pack.to_hex(), o, e.length).map(Sealed::Owned)
                        } else if ((o - at) as usize).saturating_add(l) > rest.len() {
                            Err(Error::corrupt("the pack is shorter than its index says"))
                        } else {
                            let (_, tail) = std::mem::take(&mut rest).split_at_mut((o - at) as usize);
                            let (frame, tail) = tail.split_at_mut(l);
                            (rest, at) = (tail, o + l as u64);
                            Ok(Sealed::Slice(frame))
                        };
                        tasks.push((k, e, members, sealed));
                    }
                }
                Err(err) => {
                    let missing = retryable(err);
                    for (i, e) in fs.iter().flat_map(|(_, at)| at.iter()) {
                        let what = format!("{} in pack {}", e.blob.describe(), pack.short());
                        let msg = if missing {
                            Error::corrupt(format!("{what}: pack file is missing"))
                        } else {
                            err.clone_shallow().context(what)
                        };
                        flat.push((*i, Err(msg), missing));
                    }
                }
            }
        }
        // A few frames per task, so that their data chunks are hashed together.
        let per_task = (tasks.len() / (rayon::current_num_threads() * 4)).clamp(1, FRAMES_PER_TASK);
        type Done = (Vec<(usize, Result<Piece>, bool)>, Vec<([u8; 32], Arc<Vec<u8>>)>);
        let done: Vec<Done> = tasks
            .into_par_iter()
            .chunks(per_task)
            .map(|group| {
                let opened: Vec<(usize, &PackEntry, &At, Result<Arc<Vec<u8>>>)> = group
                    .into_iter()
                    .map(|(k, e, at, sealed)| {
                        let frame = sealed
                            .and_then(|mut sealed| open_frame_in_place(&self.sealer, e, sealed.bytes()))
                            .map(Arc::new);
                        (k, e, at, frame)
                    })
                    .collect();
                let good: Vec<(&Arc<Vec<u8>>, &[(usize, PackEntry)])> =
                    opened.iter().filter_map(|(_, _, at, f)| f.as_ref().ok().map(|f| (f, &at[..]))).collect();
                let mut verified = self.pieces(&good).into_iter();
                let mut res = Vec::new();
                let mut keep = Vec::new();
                for (k, e, at, frame) in &opened {
                    let pack = &jobs[*k].0;
                    for (i, me) in at.iter() {
                        let r = match frame {
                            Ok(_) => verified.next().unwrap_or_else(|| Err(Error::corrupt("a chunk was not verified"))),
                            Err(err) => Err(err.clone_shallow()),
                        };
                        let r =
                            r.map_err(|err| err.context(format!("{} in pack {}", me.blob.describe(), pack.short())));
                        res.push((*i, r, false));
                    }
                    if let (Ok(f), Some(m)) = (frame, &e.member) {
                        keep.push((m.frame, f.clone()));
                    }
                }
                (res, keep)
            })
            .collect();
        self.read_buffers.give(reads.into_iter().flatten());
        for (res, keep) in done {
            flat.extend(res);
            opened.extend(keep);
        }
        for (i, r, missing) in flat {
            if missing {
                pass.retry.push(i);
            }
            out[i] = Some(r);
        }
        let single: Vec<(usize, Result<Piece>)> =
            singles.par_iter().map(|&i| (i, self.read_piece(BlobRef::data(chunks[i].id)))).collect();
        for (i, r) in single {
            out[i] = Some(r);
        }
        pass.retry.sort_unstable();
        pass
    }

    pub(crate) fn verify_content(&self, blob: BlobRef, plain: &[u8]) -> Result<()> {
        let actual = match blob.kind {
            BlobKind::Data => self.keys.chunk_id(plain).0,
            BlobKind::Tree | BlobKind::List => self.keys.tree_id(plain).0,
        };
        if actual != blob.id {
            return Err(not_its_content());
        }
        Ok(())
    }

    /// Loads one page of a chunk list and checks it against its reference.
    pub fn load_list(&self, page: &PageRef) -> Result<Vec<ChunkRef>> {
        let plain = self.read_blob(BlobRef::list(page.id))?;
        let list = decode_list(&plain).map_err(|e| e.context(format!("chunk list {}", page.id.short())))?;
        let bytes: u64 = list.iter().map(|c| c.len as u64).sum();
        if list.len() != page.chunks as usize || bytes != page.bytes {
            return Err(Error::corrupt(format!("chunk list {} does not match its reference", page.id.short())));
        }
        Ok(list)
    }

    /// A reader over a file node's content.
    pub fn file_reader(&self, node: &Node) -> Result<FileReader<'_>> {
        match &node.kind {
            NodeKind::File { content, .. } => FileReader::new(self, content),
            _ => Err(Error::invalid(format!("{} is not a regular file", String::from_utf8_lossy(&node.name)))),
        }
    }
}

fn not_its_content() -> Error {
    Error::corrupt("content does not match its id")
}

fn not_indexed(blob: BlobRef) -> Error {
    Error::corrupt(format!(
        "{} is not in the index (missing data; if index files were lost, run `vaultctl rebuild-index`)",
        blob.describe()
    ))
}

/// Bytes fetched ahead of a reader (served by later `read_at` calls): from
/// `READ_AHEAD_BYTES` at the first read, doubled at each miss of a sequential reader up to
/// `MAX_AHEAD_BYTES` (fewer, larger batches: a read through the mount of the bench's newest
/// day took 0.43-0.48 s with 8 MiB against 0.49-0.64 s with 2 MiB), and `RANDOM_AHEAD_BYTES`
/// after a read away from the last one (a random reader does not wait for megabytes it will
/// not read).
const READ_AHEAD_BYTES: u64 = 2 << 20;
const MAX_AHEAD_BYTES: u64 = 8 << 20;
const RANDOM_AHEAD_BYTES: u64 = 256 << 10;
/// A read that starts this far after the end of the last one still counts as sequential (the
/// kernel's requests for one file arrive a little out of order, over several threads).
const SEQUENTIAL_SLACK: u64 = 2 << 20;
/// Bytes behind the latest read whose chunks are kept (the kernel's requests for one file
/// may be answered a little out of order).
const KEEP_BEHIND_BYTES: u64 = 1 << 20;
/// Chunk-list pages kept decoded per reader.
const PAGES_KEPT: usize = 4;

/// One page (or the inline list) with offsets relative to the page start.
struct Loaded {
    chunks: Vec<ChunkRef>,
    starts: Vec<u64>,
}

impl Loaded {
    fn new(chunks: Vec<ChunkRef>) -> Self {
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut off = 0u64;
        for c in &chunks {
            starts.push(off);
            off += c.len as u64;
        }
        starts.push(off);
        Loaded { chunks, starts }
    }
    fn chunk_at(&self, off: u64) -> usize {
        match self.starts.binary_search(&off) {
            Ok(i) => i.min(self.chunks.len().saturating_sub(1)),
            Err(i) => i - 1,
        }
    }
}

enum Seg {
    Inline(Arc<Loaded>),
    Page(PageRef),
}

/// Random and streaming access to one file's bytes: its chunks, or for a file stored expanded
/// (src/rebuild), the original bytes recreated from its expanded stream and recipe.
pub struct FileReader<'v>(Inner<'v>);

enum Inner<'v> {
    Chunks(Box<ChunkReader<'v>>),
    Rebuilt(Box<Rebuilder<ChunkReader<'v>>>),
}

impl<'v> FileReader<'v> {
    /// A reader of `content` (reads the whole recipe of a file stored expanded).
    pub fn new(vault: &'v Vault, content: &Content) -> Result<Self> {
        let chunks = ChunkReader::new(vault, content);
        let Some(r) = &content.recipe else { return Ok(FileReader(Inner::Chunks(Box::new(chunks)))) };
        let recipe = ChunkReader::new(vault, &r.content());
        let plan = Plan::read(&mut SourceRead { src: &recipe, off: 0 })?;
        if plan.original != r.size || plan.expanded != chunks.size() {
            return Err(Error::corrupt("recipe: sizes differ from the file's"));
        }
        Ok(FileReader(Inner::Rebuilt(Box::new(Rebuilder::new(plan, chunks, recipe)))))
    }

    pub fn size(&self) -> u64 {
        match &self.0 {
            Inner::Chunks(c) => c.size(),
            Inner::Rebuilt(r) => r.size(),
        }
    }

    /// Up to `len` bytes at `off` (fewer only at end of file).
    pub fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        match &self.0 {
            Inner::Chunks(c) => c.read_at(off, len),
            Inner::Rebuilt(r) => r.read_at(off, len),
        }
    }

    /// `Read` over the file from its start (its original bytes), in reads of up to 1 MiB.
    pub fn sequential(&self) -> impl std::io::Read + '_ {
        SourceRead { src: self, off: 0 }
    }

    /// Runs `f` with a second thread that calls [`FileReader::read_ahead`] each time `f`
    /// kicks it (after each of its reads), so that the next bytes are fetched and verified
    /// while `f` uses these. The thread ends when `f` returns or unwinds, even if `f` kept the
    /// [`Kick`] somewhere that outlives it.
    pub fn with_read_ahead<T>(&self, f: impl FnOnce(Kick) -> T) -> T {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::mpsc::RecvTimeoutError;
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|sc| {
            let (kick, woken) = std::sync::mpsc::sync_channel::<()>(1);
            let stopped = &stop;
            sc.spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match woken.recv_timeout(std::time::Duration::from_millis(50)) {
                        Ok(()) => self.read_ahead(),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            });
            let _stop = Stop(stopped);
            f(Kick(kick))
        })
    }

    #[cfg(test)]
    pub(crate) fn held_ahead(&self) -> u64 {
        match &self.0 {
            Inner::Chunks(c) => c.held_ahead(),
            Inner::Rebuilt(_) => 0,
        }
    }

    /// Fetches ahead of the last read (see [`ChunkReader::read_ahead`]); for a file stored
    /// expanded, ahead of the last read of its expanded stream.
    pub fn read_ahead(&self) {
        match &self.0 {
            Inner::Chunks(c) => c.read_ahead(),
            Inner::Rebuilt(r) => r.read_ahead(),
        }
    }

    /// Writes the whole file to `w`; stops at the first damaged chunk or window (bytes before
    /// it have been written, none after).
    pub fn copy_to(&self, w: &mut dyn Write) -> Result<u64> {
        match &self.0 {
            Inner::Chunks(c) => c.copy_to(w),
            Inner::Rebuilt(r) => r.copy_to(w),
        }
    }

    /// The decompressed content of a gzip file stored expanded (see
    /// [`Rebuilder::gzip_content`]): no deflate byte is recreated, nothing is inflated.
    pub fn gzip_content(&self) -> Option<GzContent<'_, ChunkReader<'v>>> {
        match &self.0 {
            Inner::Chunks(_) => None,
            Inner::Rebuilt(r) => r.gzip_content(),
        }
    }

    /// The rebuild plan of a file stored expanded.
    pub fn plan(&self) -> Option<&Plan> {
        match &self.0 {
            Inner::Chunks(_) => None,
            Inner::Rebuilt(r) => Some(r.plan()),
        }
    }
}

/// Writes the pieces to `w` in order, up to 1024 per vectored write where `w` takes them (a
/// writer that does not is given one piece per call).
fn write_pieces(w: &mut dyn Write, pieces: &[Piece]) -> std::io::Result<()> {
    for group in pieces.chunks(1024) {
        let mut slices: Vec<IoSlice<'_>> = group.iter().map(|p| IoSlice::new(p.bytes())).collect();
        let mut bufs = &mut slices[..];
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            match w.write_vectored(bufs) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Writes the verified chunks of `batch` up to the first damaged one, many at a time; the
/// bytes written, or the damage after writing what came before it.
fn write_verified(w: &mut dyn Write, batch: Vec<Result<Piece>>) -> Result<u64> {
    let mut ok = Vec::with_capacity(batch.len());
    let mut damaged = None;
    for b in batch {
        match b {
            Ok(p) => ok.push(p),
            Err(e) => {
                damaged = Some(e);
                break;
            }
        }
    }
    write_pieces(w, &ok).map_err(|e| Error::io("writing output", e))?;
    match damaged {
        Some(e) => Err(e),
        None => Ok(ok.iter().map(|p| p.len() as u64).sum()),
    }
}

/// Wakes the thread of [`FileReader::with_read_ahead`].
pub struct Kick(std::sync::mpsc::SyncSender<()>);

impl Kick {
    /// Asks for the next bytes to be fetched (a no-op when the thread is awake already).
    pub fn kick(&self) {
        let _ = self.0.try_send(());
    }
}

/// `Read` over a [`Source`] from an offset.
struct SourceRead<'a, S: Source> {
    src: &'a S,
    off: u64,
}

impl<S: Source> std::io::Read for SourceRead<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let b = self.src.read_at(self.off, buf.len().min(1 << 20)).map_err(std::io::Error::other)?;
        buf[..b.len()].copy_from_slice(&b);
        self.off += b.len() as u64;
        Ok(b.len())
    }
}

impl Source for FileReader<'_> {
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        FileReader::read_at(self, off, len)
    }
    fn read_ahead(&self) {
        FileReader::read_ahead(self)
    }
}

impl Source for ChunkReader<'_> {
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        ChunkReader::read_at(self, off, len)
    }
    fn read_ahead(&self) {
        ChunkReader::read_ahead(self)
    }
}

/// Random and streaming access to the bytes of a chunk list. Offsets are found by binary
/// search over the pages, then within the page; only a few pages are decoded at a time, so
/// memory does not depend on the file size.
pub struct ChunkReader<'v> {
    vault: &'v Vault,
    segs: Vec<Seg>,
    /// Byte offset of each segment; one extra entry = file size.
    seg_starts: Vec<u64>,
    /// Global index of each segment's first chunk.
    seg_first: Vec<usize>,
    pages: Mutex<Vec<(usize, Arc<Loaded>)>>,
    /// Verified chunks fetched ahead, and the fetch under way.
    ahead: Mutex<Ahead>,
    /// Signalled when a fetch ends.
    fetched: Condvar,
    /// Frames the last fetch opened.
    carry: Mutex<Carry>,
}

/// What a [`ChunkReader`] holds for the reads to come.
#[derive(Default)]
struct Ahead {
    /// Verified chunks by global chunk index (up to `window` bytes past the last read).
    pieces: BTreeMap<usize, Piece>,
    /// Chunks being fetched right now (one fetch at a time; the lock is not held meanwhile).
    fetching: Option<std::ops::Range<usize>>,
    /// Chunk after the last one read (where read-ahead goes on from).
    next: usize,
    /// End offset of the last read, and the bytes fetched ahead of a read at a miss (0 before
    /// the first read).
    last_end: u64,
    window: u64,
}

impl<'v> ChunkReader<'v> {
    pub fn new(vault: &'v Vault, content: &Content) -> Self {
        let mut segs = Vec::new();
        if !content.inline.is_empty() {
            segs.push(Seg::Inline(Arc::new(Loaded::new(content.inline.clone()))));
        }
        segs.extend(content.pages.iter().map(|p| Seg::Page(*p)));
        let (mut seg_starts, mut seg_first) = (Vec::new(), Vec::new());
        let (mut off, mut first) = (0u64, 0usize);
        for s in &segs {
            seg_starts.push(off);
            seg_first.push(first);
            let (n, b) = match s {
                Seg::Inline(l) => (l.chunks.len(), *l.starts.last().unwrap_or(&0)),
                Seg::Page(p) => (p.chunks as usize, p.bytes),
            };
            off += b;
            first += n;
        }
        seg_starts.push(off);
        seg_first.push(first);
        ChunkReader {
            vault,
            segs,
            seg_starts,
            seg_first,
            pages: Mutex::new(Vec::new()),
            ahead: Default::default(),
            fetched: Condvar::new(),
            carry: Default::default(),
        }
    }

    pub fn size(&self) -> u64 {
        *self.seg_starts.last().unwrap_or(&0)
    }

    fn chunk_count(&self) -> usize {
        *self.seg_first.last().unwrap_or(&0)
    }

    fn seg(&self, k: usize) -> Result<Arc<Loaded>> {
        match &self.segs[k] {
            Seg::Inline(l) => Ok(l.clone()),
            Seg::Page(p) => {
                let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, l)) = pages.iter().find(|(i, _)| *i == k) {
                    return Ok(l.clone());
                }
                let l = Arc::new(Loaded::new(self.vault.load_list(p)?));
                if pages.len() >= PAGES_KEPT {
                    pages.remove(0);
                }
                pages.push((k, l.clone()));
                Ok(l)
            }
        }
    }

    fn seg_of_offset(&self, off: u64) -> usize {
        match self.seg_starts.binary_search(&off) {
            Ok(i) => i.min(self.segs.len().saturating_sub(1)),
            Err(i) => i - 1,
        }
    }

    fn seg_of_chunk(&self, i: usize) -> usize {
        match self.seg_first.binary_search(&i) {
            Ok(k) => k.min(self.segs.len().saturating_sub(1)),
            Err(k) => k - 1,
        }
    }

    /// Global index of the chunk holding byte `off` (< size).
    fn chunk_index(&self, off: u64) -> Result<usize> {
        let k = self.seg_of_offset(off);
        let l = self.seg(k)?;
        Ok(self.seg_first[k] + l.chunk_at(off - self.seg_starts[k]))
    }

    /// (chunk, absolute start) of global chunk `i`.
    fn chunk(&self, i: usize) -> Result<(ChunkRef, u64)> {
        let k = self.seg_of_chunk(i);
        let l = self.seg(k)?;
        let j = i - self.seg_first[k];
        Ok((l.chunks[j], self.seg_starts[k] + l.starts[j]))
    }

    /// Up to `len` bytes at `off` (fewer only at end of file). Chunks after the range are
    /// fetched in the same parallel batch and kept for the next call, so a sequential reader
    /// (the kernel's 128 KiB requests) finds them decrypted already; [`ChunkReader::read_ahead`]
    /// on another thread keeps that going without a reader waiting for it.
    pub fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let end = (off + len as u64).min(self.size());
        if off >= end {
            return Ok(Vec::new());
        }
        let (first, last) = (self.chunk_index(off)?, self.chunk_index(end - 1)?);
        // Chunks well behind this read are let go (requests may arrive a little out of order).
        let keep_from = self.chunk_index(off.saturating_sub(KEEP_BEHIND_BYTES))?;
        let mut a = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        a.pieces = a.pieces.split_off(&keep_from);
        // The chunks of the range that are held; when some are not and a fetch of them is
        // under way, wait for it once.
        let mut waited = false;
        let mut have: Vec<Option<Piece>> = loop {
            let have: Vec<Option<Piece>> = (first..=last).map(|i| a.pieces.get(&i).cloned()).collect();
            if waited || have.iter().all(Option::is_some) {
                break have;
            }
            match &a.fetching {
                Some(r) if r.start <= last && first < r.end => {
                    a = self.fetched.wait(a).unwrap_or_else(|e| e.into_inner());
                    waited = true;
                }
                _ => break have,
            }
        };
        if have.iter().any(Option::is_none) {
            // A miss: fetch the rest of the range and read ahead of it. Errors beyond the
            // requested range are reported when that range is read.
            let (_, last_start) = self.chunk(last)?;
            let sequential = off + KEEP_BEHIND_BYTES >= a.last_end && off <= a.last_end + SEQUENTIAL_SLACK;
            a.window = match a.window {
                0 => READ_AHEAD_BYTES,
                w if sequential => (w * 2).clamp(READ_AHEAD_BYTES, MAX_AHEAD_BYTES),
                _ => RANDOM_AHEAD_BYTES,
            };
            let want = self.missing(&a.pieces, first, last_start + a.window)?;
            let got;
            (a, got) = self.fetch(a, want);
            for (i, r) in got {
                if (first..=last).contains(&i) {
                    have[i - first] = Some(r?);
                }
            }
        }
        a.next = last + 1;
        a.last_end = end;
        drop(a);
        let mut out = Vec::with_capacity((end - off) as usize);
        for (i, b) in (first..=last).zip(have) {
            let b = b.ok_or_else(|| Error::corrupt("a chunk was not read"))?;
            let (_, s) = self.chunk(i)?;
            let b = b.bytes();
            let from = off.saturating_sub(s) as usize;
            let to = ((end - s) as usize).min(b.len());
            out.extend_from_slice(&b[from..to]);
        }
        Ok(out)
    }

    /// Fetches the next chunks after the last read when fewer than half of
    /// the read-ahead window are held ahead of it and no fetch is under way. Called by a thread
    /// beside the reader (the drill's), so that the next reads find their chunks decrypted;
    /// errors are left for the read of those chunks to report.
    pub fn read_ahead(&self) {
        let a = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        if a.fetching.is_some() || a.next >= self.chunk_count() {
            return;
        }
        let Ok((_, from)) = self.chunk(a.next) else { return };
        let held: u64 = a.pieces.range(a.next..).map(|(_, p)| p.len() as u64).sum();
        let window = a.window.max(READ_AHEAD_BYTES);
        if held >= window / 2 {
            return;
        }
        let Ok(want) = self.missing(&a.pieces, a.next, from + window) else { return };
        drop(self.fetch(a, want).0);
    }

    /// Bytes of the verified chunks held right after the last read (up to the first chunk not
    /// held).
    #[cfg(test)]
    pub(crate) fn held_ahead(&self) -> u64 {
        let a = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        (a.next..).map_while(|i| a.pieces.get(&i).map(|p| p.len() as u64)).sum()
    }

    /// Chunks from `first` on that start before `limit` and are not held.
    fn missing(&self, held: &BTreeMap<usize, Piece>, first: usize, limit: u64) -> Result<Vec<(usize, ChunkRef)>> {
        let mut want = Vec::new();
        let mut i = first;
        while i < self.chunk_count() {
            let (c, s) = self.chunk(i)?;
            if s >= limit && i > first {
                break;
            }
            if !held.contains_key(&i) {
                want.push((i, c));
            }
            i += 1;
        }
        Ok(want)
    }

    /// Fetches `want` without holding the lock (other reads of held chunks go on meanwhile),
    /// adds the verified chunks and returns what each fetched chunk gave.
    #[allow(clippy::type_complexity)]
    fn fetch<'a>(
        &'a self,
        mut a: std::sync::MutexGuard<'a, Ahead>,
        want: Vec<(usize, ChunkRef)>,
    ) -> (std::sync::MutexGuard<'a, Ahead>, Vec<(usize, Result<Piece>)>) {
        let (Some(lo), Some(hi)) = (want.first().map(|w| w.0), want.last().map(|w| w.0)) else {
            return (a, Vec::new());
        };
        a.fetching = Some(lo..hi + 1);
        drop(a);
        let chunks: Vec<ChunkRef> = want.iter().map(|(_, c)| *c).collect();
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut carry = self.carry.lock().unwrap_or_else(|e| e.into_inner());
            self.vault.read_run_with(&chunks, &mut carry)
        }))
        // Readers waiting for this fetch must not wait forever.
        .unwrap_or_else(|_| chunks.iter().map(|_| Err(Error::corrupt("reading failed (internal error)"))).collect());
        let mut a = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        a.fetching = None;
        for ((i, _), b) in want.iter().zip(&got) {
            if let Ok(b) = b {
                a.pieces.insert(*i, b.clone());
            }
        }
        self.fetched.notify_all();
        (a, want.iter().map(|w| w.0).zip(got).collect())
    }

    /// Writes the whole content to `w`. A thread looks up, reads and verifies windows of the
    /// file on both cores ([`Vault::read_run`]) while this one writes them out in order; at
    /// most `WINDOWS_AHEAD` + 2 windows are in memory. A file of one window or less is read on
    /// this thread (a thread per file would cost a restore of many small files more than
    /// their bytes). Stops at the first damaged chunk: bytes before it have been written,
    /// none after.
    pub fn copy_to(&self, w: &mut dyn Write) -> Result<u64> {
        let size = self.seg_starts.last().copied().unwrap_or(0);
        if size <= WINDOW_BYTES {
            let mut window: Vec<ChunkRef> = Vec::new();
            for k in 0..self.segs.len() {
                window.extend_from_slice(&self.seg(k)?.chunks);
            }
            return write_verified(w, self.vault.read_run_with(&window, &mut Carry::default()));
        }
        let mut written = 0u64;
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Result<Piece>>>>(WINDOWS_AHEAD);
            scope.spawn(move || {
                let mut carry = Carry::default();
                let mut window: Vec<ChunkRef> = Vec::new();
                let mut bytes = 0u64;
                for k in 0..self.segs.len() {
                    let l = match self.seg(k) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    for c in &l.chunks {
                        window.push(*c);
                        bytes += c.len as u64;
                        if bytes >= WINDOW_BYTES {
                            if tx.send(Ok(self.vault.read_run_with(&window, &mut carry))).is_err() {
                                return;
                            }
                            window.clear();
                            bytes = 0;
                        }
                    }
                }
                if !window.is_empty() {
                    let _ = tx.send(Ok(self.vault.read_run_with(&window, &mut carry)));
                }
            });
            for batch in rx {
                written += write_verified(w, batch?)?;
            }
            Ok(())
        })?;
        Ok(written)
    }

    /// Every chunk of the file in order (loads the pages one after another).
    pub fn for_each_chunk(&self, f: &mut dyn FnMut(&ChunkRef) -> Result<()>) -> Result<()> {
        for k in 0..self.segs.len() {
            for c in &self.seg(k)?.chunks {
                f(c)?;
            }
        }
        Ok(())
    }
}
