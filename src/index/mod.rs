//! The chunk index: blob -> (pack, offset, length). A cache, never the source of truth.
//!
//! Its content is exactly the union of the vault's index files (`index/<id>`) it has loaded;
//! entries for packs whose index file is not yet durable are never inserted here (the writer
//! keeps those in memory), so deleting this cache at any moment loses nothing: the next open
//! reloads it from the vault. Backed by sled under the user's cache directory; when that is
//! unavailable (another process holds it, unwritable cache dir) an in-memory map is used.

use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::id::{BlobRef, IndexId, PackId};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::RwLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub pack: PackId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

impl IndexEntry {
    fn encode(&self) -> [u8; 44] {
        let mut v = [0u8; 44];
        v[..32].copy_from_slice(self.pack.as_bytes());
        v[32..36].copy_from_slice(&self.offset.to_le_bytes());
        v[36..40].copy_from_slice(&self.length.to_le_bytes());
        v[40..44].copy_from_slice(&self.raw_length.to_le_bytes());
        v
    }
    fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != 44 {
            return Err(Error::corrupt("index cache: bad entry length"));
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut p = [0u8; 32];
        p.copy_from_slice(&b[..32]);
        Ok(IndexEntry { pack: PackId(p), offset: u(32), length: u(36), raw_length: u(40) })
    }
}

enum Backend {
    Sled { db: sled::Db, blobs: sled::Tree, files: sled::Tree },
    Memory { blobs: RwLock<HashMap<[u8; 33], IndexEntry>>, files: RwLock<HashSet<IndexId>> },
}

pub struct Index {
    backend: Backend,
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
            .cache_capacity(8 << 20)
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
            Backend::Sled { blobs, files, .. } => {
                // Bounded batches: sled's memory grows with the size of one batch.
                let mut batch = sled::Batch::default();
                let mut n = 0usize;
                for p in packs {
                    for e in &p.entries {
                        let v =
                            IndexEntry { pack: p.pack, offset: e.offset, length: e.length, raw_length: e.raw_length };
                        batch.insert(&e.blob.key()[..], &v.encode()[..]);
                        n += 1;
                        if n.is_multiple_of(1024) {
                            blobs.apply_batch(std::mem::take(&mut batch)).map_err(sled_err)?;
                        }
                    }
                }
                blobs.apply_batch(batch).map_err(sled_err)?;
                files.insert(id.as_bytes(), &[][..]).map_err(sled_err)?;
            }
            Backend::Memory { blobs, files } => {
                let mut m = blobs.write().unwrap_or_else(|e| e.into_inner());
                for p in packs {
                    for e in &p.entries {
                        m.insert(
                            e.blob.key(),
                            IndexEntry { pack: p.pack, offset: e.offset, length: e.length, raw_length: e.raw_length },
                        );
                    }
                }
                files.write().unwrap_or_else(|e| e.into_inner()).insert(id);
            }
        }
        Ok(())
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
    use crate::format::pack::PackEntry;
    use crate::id::BlobKind;

    fn sample() -> Vec<IndexPack> {
        vec![IndexPack {
            pack: PackId([5; 32]),
            size: 100,
            entries: vec![PackEntry {
                blob: BlobRef { kind: BlobKind::Data, id: [1; 32] },
                offset: 8,
                length: 40,
                raw_length: 90,
            }],
        }]
    }

    fn exercise(i: &Index) {
        let b = BlobRef { kind: BlobKind::Data, id: [1; 32] };
        assert_eq!(i.get(&b).unwrap(), None);
        i.add_file(IndexId([9; 32]), &sample()).unwrap();
        assert_eq!(i.get(&b).unwrap().unwrap().pack, PackId([5; 32]));
        assert_eq!(i.get(&BlobRef { kind: BlobKind::Tree, id: [1; 32] }).unwrap(), None);
        assert!(i.known_files().unwrap().contains(&IndexId([9; 32])));
        assert_eq!(i.len(), 1);
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
        assert_eq!(i.len(), 1);
    }
}
