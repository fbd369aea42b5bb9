//! The chunk index: blob -> (pack, offset, length). A cache, never the source of truth.
//!
//! Its content is exactly the union of the vault's index files (`index/<id>`) it has loaded;
//! entries for packs whose index file is not yet durable are never inserted here (the writer
//! keeps those in memory), so deleting this cache at any moment loses nothing: the next open
//! reloads it from the vault. Backed by sled under the user's cache directory; when that is
//! unavailable (another process holds it, unwritable cache dir) an in-memory map is used.

use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::format::pack::{Member, PackEntry};
use crate::id::{BlobRef, IndexId, PackId};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::RwLock;

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
    Sled { db: sled::Db, blobs: sled::Tree, files: sled::Tree },
    Memory { blobs: RwLock<HashMap<[u8; 33], IndexEntry>>, files: RwLock<HashSet<IndexId>> },
}

pub struct Index {
    backend: Backend,
}

/// sled's page cache. With 8 MiB, storing 2 GB of new data spent a third of its time fetching
/// and evicting the tree's leaves (docs/PERFORMANCE.md).
const CACHE_BYTES: u64 = 32 << 20;

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

/// Inserts the entries of `packs` (in key order, in bounded batches), then records `id` as
/// loaded.
fn sled_add(blobs: &sled::Tree, files: &sled::Tree, id: IndexId, packs: &[IndexPack]) -> Result<()> {
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
        blobs.insert(&k[..], e.encode()).map_err(sled_err)?;
    }
    files.insert(id.as_bytes(), &[][..]).map_err(sled_err)?;
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
        // A previous process (or a just-dropped handle) may still be letting go of the lock.
        let mut attempt = Self::try_sled(dir);
        for _ in 0..5 {
            match &attempt {
                Err(e) if e.to_string().contains("lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    attempt = Self::try_sled(dir);
                }
                _ => break,
            }
        }
        match attempt {
            Ok(i) => i,
            Err(first) => {
                let locked = first.to_string().contains("lock");
                if !locked && std::fs::remove_dir_all(dir).is_ok() {
                    if let Ok(i) = Self::try_sled(dir) {
                        return i;
                    }
                }
                Self::memory()
            }
        }
    }

    fn try_sled(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        // Chunk ids and pack locations are nobody else's business.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(2000))
            .open()
            .map_err(sled_err)?;
        let blobs = db.open_tree("blobs").map_err(sled_err)?;
        let files = db.open_tree("files").map_err(sled_err)?;
        Ok(Index { backend: Backend::Sled { db, blobs, files } })
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

    /// Entries of many blobs at once (one lock for the in-memory index), in order.
    pub fn get_many(&self, blobs: &[BlobRef]) -> Result<Vec<Option<IndexEntry>>> {
        match &self.backend {
            Backend::Sled { .. } => blobs.iter().map(|b| self.get(b)).collect(),
            Backend::Memory { blobs: m, .. } => {
                let m = m.read().unwrap_or_else(|e| e.into_inner());
                Ok(blobs.iter().map(|b| m.get(&b.key()).copied()).collect())
            }
        }
    }

    pub fn known_files(&self) -> Result<HashSet<IndexId>> {
        match &self.backend {
            Backend::Sled { files, .. } => {
                let mut out = HashSet::new();
                for kv in files.iter() {
                    let (k, _) = kv.map_err(sled_err)?;
                    if k.len() == 32 {
                        let mut b = [0u8; 32];
                        b.copy_from_slice(&k);
                        out.insert(IndexId(b));
                    }
                }
                Ok(out)
            }
            Backend::Memory { files, .. } => Ok(files.read().unwrap_or_else(|e| e.into_inner()).clone()),
        }
    }

    /// Adds the content of one durable index file. The file is recorded as loaded only after
    /// its entries, so a crash in between makes the next open load it again.
    pub fn add_file(&self, id: IndexId, packs: &[IndexPack]) -> Result<()> {
        match &self.backend {
            Backend::Sled { blobs, files, .. } => sled_add(blobs, files, id, packs)?,
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
            Backend::Sled { db, blobs, files } => {
                let (db, blobs, files) = (db.clone(), blobs.clone(), files.clone());
                let spawned = std::thread::Builder::new().name("index".into()).spawn(move || {
                    sled_add(&blobs, &files, id, &packs)?;
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
            Backend::Sled { blobs, files, .. } => {
                files.clear().map_err(sled_err)?;
                blobs.clear().map_err(sled_err)?;
            }
            Backend::Memory { blobs, files } => {
                files.write().unwrap_or_else(|e| e.into_inner()).clear();
                blobs.write().unwrap_or_else(|e| e.into_inner()).clear();
            }
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        if let Backend::Sled { db, .. } = &self.backend {
            db.flush().map_err(sled_err)?;
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
        // sled lets go of its lock asynchronously after a drop.
        let mut i = Index::open_cache(&p);
        for _ in 0..100 {
            if i.is_persistent() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            i = Index::open_cache(&p);
        }
        assert!(i.is_persistent());
        assert_eq!(i.len(), 2);
    }
}
