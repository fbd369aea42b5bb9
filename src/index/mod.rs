//! The chunk index: blob -> (pack, offset, length). A cache, never the source of truth.
//!
//! Its content is exactly the union of the vault's index files (`index/<id>`) it has loaded;
//! entries for packs whose index file is not yet durable are never inserted here (the writer
//! keeps those in memory), so deleting this cache at any moment loses nothing: the next open
//! reloads it from the vault. Backed by sled under the user's cache directory; when that is
//! unavailable (another process holds it, unwritable cache dir) an in-memory map is used.

mod filter;

use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::format::pack::{Member, PackEntry};
use crate::id::{BlobRef, IndexId, PackId};
use filter::Filter;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Where a blob is: its pack and its frame there (docs/DESIGN.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub pack: PackId,
    /// The frame's offset, sealed length and plaintext length.
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    /// For a member of a frame of several: the frame id and its place in the frame.
    pub member: Option<Member>,
}

impl IndexEntry {
    pub fn new(pack: PackId, e: &PackEntry) -> Self {
        IndexEntry { pack, offset: e.offset, length: e.length, raw_length: e.raw_length, member: e.member }
    }

    /// The pack entry of `blob` at this place.
    pub fn entry(&self, blob: BlobRef) -> PackEntry {
        PackEntry { blob, offset: self.offset, length: self.length, raw_length: self.raw_length, member: self.member }
    }

    /// 44 bytes for a lone blob (the layout of caches written before frames), 84 for a member.
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(84);
        v.extend_from_slice(self.pack.as_bytes());
        v.extend_from_slice(&self.offset.to_le_bytes());
        v.extend_from_slice(&self.length.to_le_bytes());
        v.extend_from_slice(&self.raw_length.to_le_bytes());
        if let Some(m) = &self.member {
            v.extend_from_slice(&m.frame);
            v.extend_from_slice(&m.start.to_le_bytes());
            v.extend_from_slice(&m.len.to_le_bytes());
        }
        v
    }
    fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != 44 && b.len() != 84 {
            return Err(Error::corrupt("index cache: bad entry length"));
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut p = [0u8; 32];
        p.copy_from_slice(&b[..32]);
        let member = (b.len() == 84).then(|| {
            let mut frame = [0u8; 32];
            frame.copy_from_slice(&b[44..76]);
            Member { frame, start: u(76), len: u(80) }
        });
        Ok(IndexEntry { pack: PackId(p), offset: u(32), length: u(36), raw_length: u(40), member })
    }
}

enum Backend {
    Sled { db: sled::Db, blobs: sled::Tree, files: sled::Tree, frames: sled::Tree, filter: Arc<FilterCell> },
    Memory { blobs: RwLock<HashMap<[u8; 33], IndexEntry>>, files: RwLock<HashSet<IndexId>> },
}

pub struct Index {
    backend: Backend,
}

/// sled's page cache. With 8 MiB, storing 2 GB of new data spent a third of its time fetching
/// and evicting the tree's leaves (docs/PERFORMANCE.md); since entries go in one at a time in
/// key order, a `put` of new data takes 14-19 % longer with 8 MiB than with this.
pub const CACHE_BYTES: u64 = 32 << 20;
/// sled's page cache in a process that keeps its memory low (the daemon): about 40-70 MiB less
/// resident; a fresh mount's reads about 5 % slower; the writes of new data it made slower (each
/// lookup of a new chunk walked the tree) are answered by the filter instead.
pub const CACHE_BYTES_LOW_MEMORY: u64 = 8 << 20;

/// Index entries inserted while [`Index::add_file_in_background`] runs on its own thread.
#[must_use = "wait for the entries to be inserted"]
pub struct Indexing(IndexingState);

enum IndexingState {
    Done(Result<()>),
    Running(std::thread::JoinHandle<Result<()>>),
}

impl Indexing {
    /// Waits until every entry is inserted and the cache is flushed; its result.
    pub fn wait(self) -> Result<()> {
        match self.0 {
            IndexingState::Done(r) => r,
            IndexingState::Running(h) => h.join().unwrap_or_else(|_| {
                Err(Error::new(crate::ErrorKind::Io, "index cache: the inserting thread panicked"))
            }),
        }
    }
}

/// The Bloom filter of a sled cache ([`filter`]): loaded or built when a writer first asks
/// ([`Index::may_contain_many`]); readers never do. `None` until then, and after the cache is
/// cleared.
struct FilterCell {
    path: PathBuf,
    state: RwLock<Option<Filter>>,
    /// Keys were inserted since it was loaded or saved.
    dirty: AtomicBool,
    /// Building it failed (the cache could not be read): lookups go to sled.
    failed: AtomicBool,
    /// Index files this process is adding now (their loading marks are theirs).
    adding: std::sync::Mutex<HashSet<[u8; 32]>>,
    /// One save at a time; when a flush last saved (a flush saves at most once a minute: the
    /// file grows with the cache, about 2 MB per million chunks; the end of the process saves).
    saving: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often a flush saves the filter.
const FILTER_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl FilterCell {
    fn state(&self) -> std::sync::RwLockReadGuard<'_, Option<Filter>> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, Option<Filter>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The ids of the index files the `files` tree records as loaded.
fn sled_file_ids(files: &sled::Tree) -> Result<Vec<[u8; 32]>> {
    let mut ids = Vec::new();
    for kv in files.iter() {
        let (k, _) = kv.map_err(sled_err)?;
        if let Ok(b) = <[u8; 32]>::try_from(&k[..]) {
            ids.push(b);
        }
    }
    Ok(ids)
}

/// The digest of the index files `files` records as loaded (what a saved filter must name).
fn files_digest(files: &sled::Tree) -> Result<[u8; 32]> {
    Ok(filter::files_digest(sled_file_ids(files)?))
}

/// Prefix of the key in the `files` tree that marks an index file whose entries are being
/// inserted (written before its first entry, removed after the file is recorded): while one
/// exists, the cache may hold keys that no saved filter has, whatever its digest says.
const LOADING: &[u8] = b"loading-";

/// The loading marks in `files` (ids of index files whose entries were being inserted).
fn loading_marks(files: &sled::Tree) -> Result<Vec<[u8; 32]>> {
    let mut out = Vec::new();
    for kv in files.scan_prefix(LOADING) {
        let (k, _) = kv.map_err(sled_err)?;
        if let Ok(id) = <[u8; 32]>::try_from(&k[LOADING.len()..]) {
            out.push(id);
        }
    }
    Ok(out)
}

fn loading_key(id: &[u8; 32]) -> Vec<u8> {
    [LOADING, &id[..]].concat()
}

/// The filter saved at `cell.path` when it names exactly the index files of the cache and no
/// index file was being loaded (by this process now, or by one that stopped midway: its keys
/// may be in sled, written after the filter was saved); otherwise one built from every key of
/// `blobs` (a cache written by a build without filters, or changed by a process that had not
/// loaded it: a reader that loaded new index files, a writer that was killed).
fn load_filter(cell: &FilterCell, blobs: &sled::Tree, files: &sled::Tree) -> Result<Filter> {
    let marks = loading_marks(files)?;
    if marks.is_empty() {
        let digest = files_digest(files)?;
        if let Some(f) = std::fs::read(&cell.path).ok().and_then(|b| Filter::decode(&b, &digest)) {
            return Ok(f);
        }
    }
    // One pass over the keys, the filter growing as it goes (its size is not known before).
    let mut f = Filter::with_capacity(0);
    for k in blobs.iter().keys() {
        let k = k.map_err(sled_err)?;
        if let Ok(key) = <[u8; 33]>::try_from(&k[..]) {
            f.insert_growing(&key);
        }
    }
    // Marks left by a process that stopped midway: the keys they stand for are in the filter
    // now (the marks of this process's own adds stay until those adds end).
    let active = cell.adding.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for id in marks.iter().filter(|id| !active.contains(*id)) {
        files.remove(loading_key(id)).map_err(sled_err)?;
    }
    cell.dirty.store(true, Ordering::Relaxed);
    Ok(f)
}

/// Writes the filter next to the cache, for the index files the cache holds now (whole or not
/// at all: a new file renamed over the old one). A filter that cannot be saved is only work
/// for the next writer (it rebuilds one), so failures are not reported. `rarely`: not when one
/// was saved less than [`FILTER_SAVE_EVERY`] ago.
fn save_filter(cell: &FilterCell, files: &sled::Tree, rarely: bool) {
    let mut last = cell.saving.lock().unwrap_or_else(|e| e.into_inner());
    if rarely && last.is_some_and(|t| t.elapsed() < FILTER_SAVE_EVERY) {
        return;
    }
    // Cleared first: keys inserted from here on make it dirty again.
    if !cell.dirty.swap(false, Ordering::Relaxed) {
        return;
    }
    let bytes = {
        let g = cell.state();
        let Some(f) = g.as_ref() else { return };
        // The digest before the bits: every index file it names has all its keys in them.
        match files_digest(files) {
            Ok(d) => f.encode(&d),
            Err(_) => return,
        }
    };
    let tmp = cell.path.with_extension("tmp");
    if std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &cell.path)).is_err() {
        let _ = std::fs::remove_file(&tmp);
        cell.dirty.store(true, Ordering::Relaxed);
    }
    *last = Some(std::time::Instant::now());
}

/// An index file this process is adding to the cache, for as long as it lives (its loading
/// mark is not a stale one to remove).
struct Adding<'a>(&'a FilterCell, [u8; 32]);

impl<'a> Adding<'a> {
    fn new(cell: &'a FilterCell, id: &IndexId) -> Self {
        cell.adding.lock().unwrap_or_else(|e| e.into_inner()).insert(*id.as_bytes());
        Adding(cell, *id.as_bytes())
    }
}

impl Drop for Adding<'_> {
    fn drop(&mut self) {
        self.0.adding.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.1);
    }
}

/// Inserts the entries of `packs` and the member lists of their frames (each in key order, one
/// at a time), then records `id` as loaded. Each key goes into the filter (when one is loaded)
/// before it goes into sled.
fn sled_add(
    blobs: &sled::Tree,
    files: &sled::Tree,
    frames: &sled::Tree,
    filter: &FilterCell,
    id: IndexId,
    packs: &[IndexPack],
) -> Result<()> {
    let _adding = Adding::new(filter, &id);
    // Before any of its keys (sled recovers its writes in order: a key of it in the cache
    // means the mark is there too), so that no saved filter is trusted while they go in.
    files.insert(loading_key(id.as_bytes()), &[][..]).map_err(sled_err)?;
    // In key order, so that consecutive inserts land in the same leaves of the tree (ids are
    // random: in file order, every insert would fetch another leaf once the tree outgrows
    // sled's cache); one insert at a time: sled keeps memory for every page a batch touched
    // (786,432 entries in batches of 1,024 left a process at 1.3 GiB, inserted one by one at
    // 108 MiB, and faster; docs/PERFORMANCE.md). Nothing needs the file's entries to appear at
    // once: the file is recorded as loaded after the last of them.
    let mut all: Vec<([u8; 33], IndexEntry)> =
        packs.iter().flat_map(|p| p.entries.iter().map(|e| (e.blob.key(), IndexEntry::new(p.pack, e)))).collect();
    all.sort_unstable_by_key(|a| a.0);
    for (k, e) in &all {
        // Held across both inserts: a filter built meanwhile (under the write lock) finds the
        // key in sled, or the key in it.
        let mut g = filter.state();
        if g.as_ref().is_some_and(Filter::needs_layer) {
            drop(g);
            if let Some(f) = filter.state_mut().as_mut() {
                if f.needs_layer() {
                    f.add_layer();
                }
            }
            g = filter.state();
        }
        if let Some(f) = g.as_ref() {
            f.insert(k);
        }
        blobs.insert(&k[..], e.encode()).map_err(sled_err)?;
    }
    if !all.is_empty() {
        filter.dirty.store(true, Ordering::Relaxed);
    }
    let mut recs: Vec<([u8; 32], Vec<u8>)> = Vec::new();
    for p in packs {
        let mut at = 0;
        while at < p.entries.len() {
            let Some(m) = p.entries[at].member else {
                at += 1;
                continue;
            };
            let n = p.entries[at..].iter().take_while(|e| e.member.map(|x| x.frame) == Some(m.frame)).count();
            recs.push((m.frame, FrameRecord::encode(p.pack, &p.entries[at..at + n])));
            at += n;
        }
    }
    recs.sort_unstable_by_key(|r| r.0);
    for (k, v) in recs {
        frames.insert(&k[..], v).map_err(sled_err)?;
    }
    files.insert(id.as_bytes(), &[][..]).map_err(sled_err)?;
    files.remove(loading_key(id.as_bytes())).map_err(sled_err)?;
    // Again after the file is recorded: a save in between named the file set without it.
    filter.dirty.store(true, Ordering::Relaxed);
    Ok(())
}

/// Key in the `files` tree saying that the cache holds the member lists of frames (a cache
/// without it was written before them and is rebuilt).
const FRAMES_MARK: &[u8] = b"frames-v1";

/// Frames whose member lists a lookup of many blobs keeps at hand.
const RECENT_FRAMES: usize = 8;

/// The members of one frame, as the `frames` tree of the cache holds them: the entries of the
/// frame's members without asking the cache for each (the chunks of a file that follow one
/// another are mostly members of the same frame).
struct FrameRecord {
    frame: [u8; 32],
    members: Vec<([u8; 33], IndexEntry)>,
}

impl FrameRecord {
    /// `pack 32 ‖ offset u32 ‖ length u32 ‖ raw length u32 ‖` per member `blob key 33 ‖ start
    /// u32 ‖ len u32`; `entries` are the members of one frame, in the pack's order.
    fn encode(pack: PackId, entries: &[PackEntry]) -> Vec<u8> {
        let f = &entries[0];
        let mut v = Vec::with_capacity(44 + 41 * entries.len());
        v.extend_from_slice(pack.as_bytes());
        v.extend_from_slice(&f.offset.to_le_bytes());
        v.extend_from_slice(&f.length.to_le_bytes());
        v.extend_from_slice(&f.raw_length.to_le_bytes());
        for e in entries {
            let m = e.member.unwrap_or(Member { frame: [0; 32], start: 0, len: 0 });
            v.extend_from_slice(&e.blob.key());
            v.extend_from_slice(&m.start.to_le_bytes());
            v.extend_from_slice(&m.len.to_le_bytes());
        }
        v
    }

    fn decode(frame: [u8; 32], b: &[u8]) -> Result<Self> {
        if b.len() < 44 || !(b.len() - 44).is_multiple_of(41) {
            return Err(Error::corrupt("index cache: bad frame record length"));
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut p = [0u8; 32];
        p.copy_from_slice(&b[..32]);
        let (offset, length, raw_length) = (u(32), u(36), u(40));
        let members = b[44..]
            .chunks_exact(41)
            .map(|r| {
                let mut key = [0u8; 33];
                key.copy_from_slice(&r[..33]);
                let member = Some(Member {
                    frame,
                    start: u32::from_le_bytes([r[33], r[34], r[35], r[36]]),
                    len: u32::from_le_bytes([r[37], r[38], r[39], r[40]]),
                });
                (key, IndexEntry { pack: PackId(p), offset, length, raw_length, member })
            })
            .collect();
        Ok(FrameRecord { frame, members })
    }

    fn get(&self, key: &[u8; 33]) -> Option<IndexEntry> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, e)| *e)
    }
}

/// Empties the cache (no index file loaded) and marks it as one that keeps frame records.
fn sled_reset(blobs: &sled::Tree, files: &sled::Tree, frames: &sled::Tree) -> Result<()> {
    files.clear().map_err(sled_err)?;
    blobs.clear().map_err(sled_err)?;
    frames.clear().map_err(sled_err)?;
    files.insert(FRAMES_MARK, &[][..]).map_err(sled_err)?;
    Ok(())
}

fn sled_err(e: sled::Error) -> Error {
    Error::new(crate::ErrorKind::Io, format!("index cache: {e}"))
}

impl Index {
    pub fn memory() -> Self {
        Index { backend: Backend::Memory { blobs: RwLock::new(HashMap::new()), files: RwLock::new(HashSet::new()) } }
    }

    /// Opens (or creates) the sled cache at `dir`. A damaged cache is deleted and recreated;
    /// a cache locked by another process, or any other failure, gives an in-memory index.
    pub fn open_cache(dir: &Path) -> Self {
        Self::open_cache_sized(dir, CACHE_BYTES)
    }

    /// [`Index::open_cache`] with sled's page cache at `cache_bytes`.
    pub fn open_cache_sized(dir: &Path, cache_bytes: u64) -> Self {
        // A previous process (or a just-dropped handle) may still be letting go of the lock.
        let mut attempt = Self::try_sled(dir, cache_bytes);
        for _ in 0..5 {
            match &attempt {
                Err(e) if e.to_string().contains("lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    attempt = Self::try_sled(dir, cache_bytes);
                }
                _ => break,
            }
        }
        match attempt {
            Ok(i) => i,
            Err(first) => {
                let locked = first.to_string().contains("lock");
                if !locked && std::fs::remove_dir_all(dir).is_ok() {
                    if let Ok(i) = Self::try_sled(dir, cache_bytes) {
                        return i;
                    }
                }
                Self::memory()
            }
        }
    }

    fn try_sled(dir: &Path, cache_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        // Chunk ids and pack locations are nobody else's business.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(2000))
            .open()
            .map_err(sled_err)?;
        let blobs = db.open_tree("blobs").map_err(sled_err)?;
        let files = db.open_tree("files").map_err(sled_err)?;
        let frames = db.open_tree("frames").map_err(sled_err)?;
        if !files.contains_key(FRAMES_MARK).map_err(sled_err)? {
            // Empty, or written before frame records: filled again from the index files.
            sled_reset(&blobs, &files, &frames)?;
        }
        let filter = Arc::new(FilterCell {
            path: dir.with_file_name("index-filter"),
            state: RwLock::new(None),
            dirty: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            adding: std::sync::Mutex::new(HashSet::new()),
            saving: std::sync::Mutex::new(None),
        });
        Ok(Index { backend: Backend::Sled { db, blobs, files, frames, filter } })
    }

    pub fn is_persistent(&self) -> bool {
        matches!(self.backend, Backend::Sled { .. })
    }

    pub fn get(&self, blob: &BlobRef) -> Result<Option<IndexEntry>> {
        match &self.backend {
            Backend::Sled { blobs, .. } => match blobs.get(blob.key()).map_err(sled_err)? {
                Some(v) => Ok(Some(IndexEntry::decode(&v)?)),
                None => Ok(None),
            },
            Backend::Memory { blobs, .. } => {
                Ok(blobs.read().unwrap_or_else(|e| e.into_inner()).get(&blob.key()).copied())
            }
        }
    }

    /// For each of `blobs`, whether the cache may hold it: `false` is certain (the sled cache's
    /// filter, loaded or built at the first call), `true` needs a lookup. For a writer's
    /// lookups of new chunks, which are mostly absent.
    pub fn may_contain_many(&self, blobs: &[BlobRef]) -> Vec<bool> {
        let Backend::Sled { blobs: tree, files, filter, .. } = &self.backend else {
            return vec![true; blobs.len()];
        };
        let answer = |f: &Filter| blobs.iter().map(|b| f.may_contain(&b.key())).collect();
        if let Some(f) = filter.state().as_ref() {
            return answer(f);
        }
        if !filter.failed.load(Ordering::Relaxed) {
            let mut g = filter.state_mut();
            if g.is_none() {
                match load_filter(filter, tree, files) {
                    Ok(f) => *g = Some(f),
                    Err(_) => filter.failed.store(true, Ordering::Relaxed),
                }
            }
            if let Some(f) = g.as_ref() {
                return answer(f);
            }
        }
        vec![true; blobs.len()]
    }

    /// Entries of many blobs at once, in order: one lock for the in-memory index; in the sled
    /// cache, the blobs that follow a member of a frame are answered from the frame's member
    /// list while they are members of one of the last eight frames met.
    pub fn get_many(&self, blobs: &[BlobRef]) -> Result<Vec<Option<IndexEntry>>> {
        match &self.backend {
            Backend::Sled { frames, .. } => {
                // The member lists of the last few frames met answer for the blobs that follow.
                let mut recent: std::collections::VecDeque<FrameRecord> = std::collections::VecDeque::new();
                let mut out = Vec::with_capacity(blobs.len());
                for b in blobs {
                    let key = b.key();
                    if let Some(e) = recent.iter().find_map(|f| f.get(&key)) {
                        out.push(Some(e));
                        continue;
                    }
                    let e = self.get(b)?;
                    if let Some(m) = e.as_ref().and_then(|e| e.member) {
                        if !recent.iter().any(|f| f.frame == m.frame) {
                            // A record that does not decode is only a shortcut lost: the
                            // blobs that follow are looked up one by one.
                            let rec = frames.get(m.frame).map_err(sled_err)?;
                            if let Some(r) = rec.and_then(|v| FrameRecord::decode(m.frame, &v).ok()) {
                                if recent.len() == RECENT_FRAMES {
                                    recent.pop_back();
                                }
                                recent.push_front(r);
                            }
                        }
                    }
                    out.push(e);
                }
                Ok(out)
            }
            Backend::Memory { blobs: m, .. } => {
                let m = m.read().unwrap_or_else(|e| e.into_inner());
                Ok(blobs.iter().map(|b| m.get(&b.key()).copied()).collect())
            }
        }
    }

    pub fn known_files(&self) -> Result<HashSet<IndexId>> {
        match &self.backend {
            Backend::Sled { files, .. } => Ok(sled_file_ids(files)?.into_iter().map(IndexId).collect()),
            Backend::Memory { files, .. } => Ok(files.read().unwrap_or_else(|e| e.into_inner()).clone()),
        }
    }

    /// Adds the content of one durable index file. The file is recorded as loaded only after
    /// its entries, so a crash in between makes the next open load it again.
    pub fn add_file(&self, id: IndexId, packs: &[IndexPack]) -> Result<()> {
        match &self.backend {
            Backend::Sled { blobs, files, frames, filter, .. } => sled_add(blobs, files, frames, filter, id, packs)?,
            Backend::Memory { blobs, files } => {
                let mut m = blobs.write().unwrap_or_else(|e| e.into_inner());
                for p in packs {
                    for e in &p.entries {
                        m.insert(e.blob.key(), IndexEntry::new(p.pack, e));
                    }
                }
                files.write().unwrap_or_else(|e| e.into_inner()).insert(id);
            }
        }
        Ok(())
    }

    /// [`Index::add_file`] followed by [`Index::flush`], on a thread of its own for the sled
    /// cache (the in-memory index adds at once). Until it is done, `get` may or may not find
    /// the entries: the caller keeps them where its own reads find them.
    pub fn add_file_in_background(&self, id: IndexId, packs: Vec<IndexPack>) -> Indexing {
        match &self.backend {
            Backend::Sled { db, blobs, files, frames, filter } => {
                let (db, blobs, files, frames, filter) =
                    (db.clone(), blobs.clone(), files.clone(), frames.clone(), filter.clone());
                let spawned = std::thread::Builder::new().name("index".into()).spawn(move || {
                    sled_add(&blobs, &files, &frames, &filter, id, &packs)?;
                    db.flush().map_err(sled_err)?;
                    Ok(())
                });
                match spawned {
                    Ok(h) => Indexing(IndexingState::Running(h)),
                    Err(e) => Indexing(IndexingState::Done(Err(Error::io("starting the index thread", e)))),
                }
            }
            Backend::Memory { .. } => Indexing(IndexingState::Done(self.add_file(id, &packs))),
        }
    }

    pub fn clear(&self) -> Result<()> {
        match &self.backend {
            Backend::Sled { blobs, files, frames, filter, .. } => {
                sled_reset(blobs, files, frames)?;
                *filter.state_mut() = None;
                filter.dirty.store(false, Ordering::Relaxed);
                let _ = std::fs::remove_file(&filter.path);
            }
            Backend::Memory { blobs, files } => {
                files.write().unwrap_or_else(|e| e.into_inner()).clear();
                blobs.write().unwrap_or_else(|e| e.into_inner()).clear();
            }
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        if let Backend::Sled { db, files, filter, .. } = &self.backend {
            db.flush().map_err(sled_err)?;
            save_filter(filter, files, true);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        match &self.backend {
            Backend::Sled { blobs, .. } => blobs.len(),
            Backend::Memory { blobs, .. } => blobs.read().unwrap_or_else(|e| e.into_inner()).len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Index {
    /// Saves the filter for the next writer (a cache is still valid without it).
    fn drop(&mut self) {
        if let Backend::Sled { files, filter, .. } = &self.backend {
            save_filter(filter, files, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobKind;

    fn sample() -> Vec<IndexPack> {
        vec![IndexPack {
            pack: PackId([5; 32]),
            size: 100,
            entries: vec![
                PackEntry::single(BlobRef { kind: BlobKind::Data, id: [1; 32] }, 8, 40, 90),
                PackEntry {
                    blob: BlobRef { kind: BlobKind::Data, id: [2; 32] },
                    offset: 48,
                    length: 40,
                    raw_length: 90,
                    member: Some(Member { frame: [7; 32], start: 10, len: 80 }),
                },
            ],
        }]
    }

    fn exercise(i: &Index) {
        let b = BlobRef { kind: BlobKind::Data, id: [1; 32] };
        assert_eq!(i.get(&b).unwrap(), None);
        i.add_file(IndexId([9; 32]), &sample()).unwrap();
        assert_eq!(i.get(&b).unwrap().unwrap().pack, PackId([5; 32]));
        let m = i.get(&BlobRef { kind: BlobKind::Data, id: [2; 32] }).unwrap().unwrap();
        assert_eq!(m.member, Some(Member { frame: [7; 32], start: 10, len: 80 }));
        assert_eq!(i.get(&BlobRef { kind: BlobKind::Tree, id: [1; 32] }).unwrap(), None);
        assert!(i.known_files().unwrap().contains(&IndexId([9; 32])));
        assert_eq!(i.len(), 2);
        i.clear().unwrap();
        assert!(i.is_empty());
    }

    #[test]
    fn memory_and_sled_behave_alike() {
        exercise(&Index::memory());
        let d = tempfile::tempdir().unwrap();
        let i = Index::open_cache(&d.path().join("idx"));
        assert!(i.is_persistent());
        exercise(&i);
    }

    #[test]
    fn cache_entries_written_before_frames_read_as_lone_blobs() {
        // The 44-byte value a cache of the build before frames holds for a blob.
        let mut old = Vec::new();
        old.extend_from_slice(&[5; 32]);
        for x in [8u32, 40, 90] {
            old.extend_from_slice(&x.to_le_bytes());
        }
        let e = IndexEntry::decode(&old).unwrap();
        assert_eq!(e, IndexEntry { pack: PackId([5; 32]), offset: 8, length: 40, raw_length: 90, member: None });
        assert_eq!(e.encode(), old);
        let m = IndexEntry { member: Some(Member { frame: [7; 32], start: 10, len: 80 }), ..e };
        assert_eq!(IndexEntry::decode(&m.encode()).unwrap(), m);
        assert!(IndexEntry::decode(&old[..43]).is_err());
        assert!(IndexEntry::decode(&m.encode()[..83]).is_err());
    }

    /// Index files of packs holding frames of `sizes[k]` members (1: a lone blob), with blob
    /// ids drawn from `ids` (so that some blobs are in two frames, as after an interrupted
    /// write stored them twice), and every place each blob has.
    #[allow(clippy::type_complexity)]
    fn framed_files(sizes: &[usize], ids: &[u8]) -> (Vec<Vec<IndexPack>>, HashMap<[u8; 33], Vec<IndexEntry>>) {
        let (mut files, mut places) = (Vec::new(), HashMap::<[u8; 33], Vec<IndexEntry>>::new());
        let mut next = ids.iter().cycle();
        for (f, group) in sizes.chunks(5).enumerate() {
            let pack = PackId([f as u8 + 1; 32]);
            let mut entries = Vec::new();
            let mut offset = 8u32;
            for (k, &n) in group.iter().enumerate() {
                let frame = [(f * 16 + k) as u8; 32];
                let raw = 100 * n as u32;
                for j in 0..n {
                    let blob = BlobRef::data(crate::id::ChunkId([*next.next().unwrap(); 32]));
                    let member = (n > 1).then_some(Member { frame, start: 100 * j as u32, len: 100 });
                    entries.push(PackEntry { blob, offset, length: raw / 2 + 16, raw_length: raw, member });
                }
                offset += raw / 2 + 16;
            }
            for e in &entries {
                places.entry(e.blob.key()).or_default().push(IndexEntry::new(pack, e));
            }
            files.push(vec![IndexPack { pack, size: offset as u64, entries }]);
        }
        (files, places)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Lookups of many blobs at once (answered from the member lists of frames where they
        /// can be) give what one lookup at a time gives, or another place the blob really has.
        #[test]
        fn many_lookups_answer_what_single_lookups_do(
            sizes in proptest::collection::vec(1usize..20, 1..30),
            ids in proptest::collection::vec(0u8..200, 1..400),
            order in proptest::collection::vec(0usize..1000, 0..300),
        ) {
            let (files, places) = framed_files(&sizes, &ids);
            let d = tempfile::tempdir().unwrap();
            let i = Index::open_cache(&d.path().join("idx"));
            proptest::prop_assert!(i.is_persistent());
            for (k, f) in files.iter().enumerate() {
                i.add_file(IndexId([k as u8; 32]), f).unwrap();
            }
            // Runs of blobs in pack order (as a file reads them), blobs out of order, unknown ones.
            let all: Vec<BlobRef> = files.iter().flatten().flat_map(|p| p.entries.iter().map(|e| e.blob)).collect();
            let mut want: Vec<BlobRef> = all.clone();
            for &o in &order {
                want.push(match o % 3 {
                    0 => all[o % all.len()],
                    1 => BlobRef::data(crate::id::ChunkId([200 + (o % 50) as u8; 32])),
                    _ => BlobRef::tree(crate::id::TreeId(all[o % all.len()].id)),
                });
            }
            let many = i.get_many(&want).unwrap();
            for (b, got) in want.iter().zip(many) {
                let one = i.get(b).unwrap();
                match (&got, places.get(&b.key())) {
                    (None, None) => proptest::prop_assert_eq!(one, None),
                    (Some(g), Some(p)) => {
                        proptest::prop_assert!(p.contains(g), "{:?} is not a place of {:?}", g, b);
                        if p.len() == 1 {
                            proptest::prop_assert_eq!(Some(*g), one);
                        }
                    }
                    _ => proptest::prop_assert!(false, "{:?}: many gave {:?}, the files hold {:?}", b, got, places.get(&b.key())),
                }
            }
        }
    }

    #[test]
    fn a_damaged_frame_record_only_costs_lookups() {
        let (files, _) = framed_files(&[4, 6, 1, 3], &(0..14).collect::<Vec<u8>>());
        let d = tempfile::tempdir().unwrap();
        let i = Index::open_cache(&d.path().join("idx"));
        i.add_file(IndexId([1; 32]), &files[0]).unwrap();
        let Backend::Sled { frames, .. } = &i.backend else { panic!("not the sled cache") };
        let first = files[0][0].entries[0].member.unwrap().frame;
        frames.insert(first, &b"short"[..]).unwrap();
        let blobs: Vec<BlobRef> = files[0][0].entries.iter().map(|e| e.blob).collect();
        let one: Vec<Option<IndexEntry>> = blobs.iter().map(|b| i.get(b).unwrap()).collect();
        assert!(one.iter().all(Option::is_some));
        assert_eq!(i.get_many(&blobs).unwrap(), one);
    }

    /// The sled cache at `p` opened again once the previous handle let go of it (sled releases
    /// its lock asynchronously after a drop).
    /// One pack of `n` lone blobs with random ids.
    fn random_file(n: usize, seed: u64) -> (Vec<IndexPack>, Vec<BlobRef>) {
        use rand::{Rng, SeedableRng};
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let blobs: Vec<BlobRef> = (0..n).map(|_| BlobRef { kind: BlobKind::Data, id: r.gen() }).collect();
        let entries = blobs.iter().enumerate().map(|(k, b)| PackEntry::single(*b, 8 + 40 * k as u32, 40, 90)).collect();
        (vec![IndexPack { pack: PackId(r.gen()), size: 100, entries }], blobs)
    }

    #[test]
    fn the_filter_never_hides_a_blob_of_the_cache_across_reopens_and_changes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("idx");
        let (f1, b1) = random_file(30_000, 1);
        let (f2, b2) = random_file(30_000, 2);
        let (f3, b3) = random_file(5_000, 3);
        let (_, others) = random_file(20_000, 4);
        let absent = |i: &Index| i.may_contain_many(&others).iter().filter(|m| !**m).count();
        {
            let i = reopen(&p);
            // Built at the first question (the cache is empty), then kept up to date: past its
            // first layer of 16,384 keys it grows.
            assert!(i.may_contain_many(&b1).iter().all(|m| !*m));
            i.add_file(IndexId([1; 32]), &f1).unwrap();
            i.add_file_in_background(IndexId([2; 32]), f2.clone()).wait().unwrap();
            assert!(i.may_contain_many(&b1).iter().chain(i.may_contain_many(&b2).iter()).all(|m| *m));
            assert!(absent(&i) > 19_000, "{} of 20,000 absent ids said absent", absent(&i));
            i.flush().unwrap();
        }
        assert!(p.with_file_name("index-filter").exists(), "the filter is saved next to the cache");
        {
            // Read back: the same answers.
            let i = reopen(&p);
            assert!(i.may_contain_many(&b1).iter().chain(i.may_contain_many(&b2).iter()).all(|m| *m));
            assert!(absent(&i) > 19_000);
            // A process that never asks (a reader) loads another index file: the saved filter
            // no longer names the cache's index files.
        }
        {
            let i = reopen(&p);
            i.add_file(IndexId([3; 32]), &f3).unwrap();
        }
        {
            let i = reopen(&p);
            assert!(i.may_contain_many(&b3).iter().all(|m| *m), "a filter saved before the reader's file was used");
            assert!(i.may_contain_many(&b1).iter().all(|m| *m));
            // Cleared with the cache (a prune removed index files it held): rebuilt from it.
            i.clear().unwrap();
            assert!(!p.with_file_name("index-filter").exists());
            assert!(i.may_contain_many(&b1).iter().all(|m| !*m));
            i.add_file(IndexId([3; 32]), &f3).unwrap();
            assert!(i.may_contain_many(&b3).iter().all(|m| *m));
        }
        // A damaged filter file is rebuilt from the cache.
        let f = p.with_file_name("index-filter");
        let mut bytes = std::fs::read(&f).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(&f, bytes).unwrap();
        let i = reopen(&p);
        assert!(i.may_contain_many(&b3).iter().all(|m| *m));
        // The in-memory index answers "maybe" for everything: its lookups are cheap.
        assert!(Index::memory().may_contain_many(&others).iter().all(|m| *m));
    }

    #[test]
    fn keys_a_killed_process_left_without_their_file_mark_are_never_hidden_by_a_saved_filter() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("idx");
        let (f1, b1) = random_file(2_000, 11);
        let (f2, b2) = random_file(2_000, 12);
        {
            let i = reopen(&p);
            assert!(i.may_contain_many(&b1).iter().all(|m| !*m));
            i.add_file(IndexId([1; 32]), &f1).unwrap();
            i.flush().unwrap();
        }
        {
            // A process killed while it loaded index file 2: the mark written before its keys
            // and half of its keys reached the disk, its file mark did not (the file itself is
            // then gone: a prune, or damage), so nothing loads it again.
            let i = reopen(&p);
            let Backend::Sled { blobs, files, .. } = &i.backend else { panic!("not the sled cache") };
            files.insert(loading_key(&[2; 32]), &[][..]).unwrap();
            for e in &f2[0].entries[..1_000] {
                blobs.insert(&e.blob.key()[..], IndexEntry::new(f2[0].pack, e).encode()).unwrap();
            }
            i.flush().unwrap();
        }
        let i = reopen(&p);
        assert!(i.may_contain_many(&b2[..1_000]).iter().all(|m| *m), "the saved filter hid keys of the cache");
        assert!(i.may_contain_many(&b1).iter().all(|m| *m));
        // The stale mark went with the rebuild: the next process reads the saved filter again.
        let Backend::Sled { files, .. } = &i.backend else { panic!("not the sled cache") };
        assert!(loading_marks(files).unwrap().is_empty());
    }

    fn reopen(p: &Path) -> Index {
        let mut i = Index::open_cache(p);
        for _ in 0..100 {
            if i.is_persistent() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            i = Index::open_cache(p);
        }
        assert!(i.is_persistent());
        i
    }

    #[test]
    fn a_cache_written_before_frame_records_is_filled_again() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("idx");
        {
            // What a cache of the previous build holds: entries and a loaded file, no mark.
            let db = sled::Config::new().path(&p).open().unwrap();
            let blobs = db.open_tree("blobs").unwrap();
            blobs
                .insert(
                    BlobRef::data(crate::id::ChunkId([1; 32])).key(),
                    IndexEntry::new(PackId([5; 32]), &sample()[0].entries[0]).encode(),
                )
                .unwrap();
            db.open_tree("files").unwrap().insert([9u8; 32], &[][..]).unwrap();
            db.flush().unwrap();
        }
        let i = reopen(&p);
        assert!(i.known_files().unwrap().is_empty(), "the old cache's files would not be loaded again");
        assert!(i.is_empty());
        i.add_file(IndexId([9; 32]), &sample()).unwrap();
        assert_eq!(i.len(), 2);
        assert_eq!(i.known_files().unwrap().len(), 1);
    }

    #[test]
    fn sled_persists_and_second_opener_falls_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("idx");
        {
            let i = Index::open_cache(&p);
            i.add_file(IndexId([9; 32]), &sample()).unwrap();
            i.flush().unwrap();
            let second = Index::open_cache(&p);
            assert!(!second.is_persistent());
        }
        let i = reopen(&p);
        assert_eq!(i.len(), 2);
    }
}
