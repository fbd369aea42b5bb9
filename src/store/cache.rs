//! A local cache of whole packs in front of a slow store (a remote vault opened directly).
//!
//! Reading a file touches many small ranges of the same pack; over a network each range is a
//! round trip (or, for rclone, a process). The first ranged read of a pack downloads the whole
//! pack into `<dir>/<xx>/<name>` (temporary file, then rename), and later ranges are read from
//! disk. The cache is bounded: when it grows past its limit, the least recently used packs are
//! removed until it is at 3/4 of the limit.
//!
//! The cache is never trusted more than the store: it holds the same ciphertext, and the
//! engine authenticates every blob it reads. Only ranged pack reads are served from it; whole
//! object reads (`check --read-data`, `sync --verify`), listings and everything else go to the
//! store, so checking a remote checks the remote. A cached pack shorter than a requested range
//! is dropped and fetched again.

use super::{ObjKind, Store};
use crate::error::{Error, Result};
use rand::RngCore;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Default bound of a pack cache.
pub const DEFAULT_CACHE_BYTES: u64 = 2 << 30;

pub struct PackCache {
    inner: Arc<dyn Store>,
    dir: PathBuf,
    limit: u64,
    /// Bytes in the cache as last counted (plus what was added since).
    used: Mutex<Option<u64>>,
    /// One lock per pack being fetched, so that parallel readers download it once.
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl PackCache {
    pub fn new(inner: Arc<dyn Store>, dir: impl Into<PathBuf>, limit: u64) -> Self {
        PackCache { inner, dir: dir.into(), limit, used: Mutex::new(None), fetching: Mutex::new(HashMap::new()) }
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        super::local::check_name(ObjKind::Pack, name)?;
        Ok(self.dir.join(ObjKind::Pack.path(name).trim_start_matches("packs/")))
    }

    fn read_cached(path: &Path, offset: u64, len: u32) -> Option<Vec<u8>> {
        let f = fs::File::open(path).ok()?;
        let size = f.metadata().ok()?.len();
        if size < offset.saturating_add(len as u64) {
            let _ = fs::remove_file(path);
            return None;
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset).ok()?;
        // Mark as recently used (best effort: the eviction order only).
        let _ = f.set_modified(SystemTime::now());
        Some(buf)
    }

    fn store_cached(&self, path: &Path, data: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        let mut r = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut r);
        let tmp = dir.join(format!(".tmp-{}", hex::encode(r)));
        fs::write(&tmp, data).and_then(|()| fs::rename(&tmp, path)).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(format!("pack cache {}", path.display()), e)
        })?;
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let now = match *used {
            Some(u) => u + data.len() as u64,
            None => self.scan().iter().map(|(_, s, _)| s).sum(),
        };
        *used = Some(now);
        if now > self.limit {
            *used = Some(self.evict());
        }
        Ok(())
    }

    /// Every cached pack: path, size, last use.
    fn scan(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut out = Vec::new();
        for d in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                if let Ok(m) = f.metadata() {
                    if m.is_file() {
                        out.push((f.path(), m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
                    }
                }
            }
        }
        out
    }

    /// Removes the least recently used packs until the cache is at 3/4 of its limit; returns
    /// the bytes left.
    fn evict(&self) -> u64 {
        let mut all = self.scan();
        all.sort_by_key(|(_, _, t)| *t);
        let mut total: u64 = all.iter().map(|(_, s, _)| s).sum();
        for (p, s, _) in all {
            if total <= self.limit / 4 * 3 {
                break;
            }
            if fs::remove_file(&p).is_ok() {
                total -= s;
            }
        }
        total
    }
}

impl Store for PackCache {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()> {
        if kind == ObjKind::Pack {
            if let Ok(p) = self.path(name) {
                let _ = fs::remove_file(p);
            }
        }
        self.inner.put(kind, name, data)
    }
    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        if kind != ObjKind::Pack || self.limit == 0 {
            return self.inner.get_range(kind, name, offset, len);
        }
        let path = self.path(name)?;
        if let Some(b) = Self::read_cached(&path, offset, len) {
            return Ok(b);
        }
        let lock = self.fetching.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_string()).or_default().clone();
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = Self::read_cached(&path, offset, len) {
            return Ok(b);
        }
        let whole = self.inner.get(kind, name)?;
        let end = offset.checked_add(len as u64).filter(|e| *e <= whole.len() as u64).ok_or_else(|| {
            Error::corrupt(format!(
                "{}: truncated (wanted {len} bytes at offset {offset}, size {})",
                kind.path(name),
                whole.len()
            ))
        })?;
        // A cache that cannot be written (full disk, read-only) only costs speed.
        let _ = self.store_cached(&path, &whole);
        self.fetching.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        Ok(whole[offset as usize..end as usize].to_vec())
    }
    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: ObjKind, name: &str) -> Result<()> {
        if kind == ObjKind::Pack {
            if let Ok(p) = self.path(name) {
                let _ = fs::remove_file(p);
            }
        }
        self.inner.delete(kind, name)
    }
    fn size(&self, kind: ObjKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
    fn remove_temporaries(&self) -> Result<usize> {
        self.inner.remove_temporaries()
    }
}

/// A store opened for reading only: every change is refused with `ReadOnly` and `why`.
pub struct ReadOnly {
    inner: Arc<dyn Store>,
    why: String,
}

impl ReadOnly {
    pub fn new(inner: Arc<dyn Store>, why: impl Into<String>) -> Self {
        ReadOnly { inner, why: why.into() }
    }
}

impl Store for ReadOnly {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn put(&self, kind: ObjKind, name: &str, _: &[u8]) -> Result<()> {
        Err(Error::read_only(format!("writing {}: {}", kind.path(name), self.why)))
    }
    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        self.inner.get_range(kind, name, offset, len)
    }
    fn get_range_into(&self, kind: ObjKind, name: &str, offset: u64, len: u32, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.get_range_into(kind, name, offset, len, buf)
    }
    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: ObjKind, name: &str) -> Result<()> {
        Err(Error::read_only(format!("deleting {}: {}", kind.path(name), self.why)))
    }
    fn size(&self, kind: ObjKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts whole-object reads of the store behind the cache.
    struct Counting(MemoryStore, AtomicUsize);
    impl Store for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn put(&self, k: ObjKind, n: &str, d: &[u8]) -> Result<()> {
            self.0.put(k, n, d)
        }
        fn get(&self, k: ObjKind, n: &str) -> Result<Vec<u8>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.get(k, n)
        }
        fn get_range(&self, k: ObjKind, n: &str, o: u64, l: u32) -> Result<Vec<u8>> {
            self.0.get_range(k, n, o, l)
        }
        fn list(&self, k: ObjKind) -> Result<Vec<(String, u64)>> {
            self.0.list(k)
        }
        fn delete(&self, k: ObjKind, n: &str) -> Result<()> {
            self.0.delete(k, n)
        }
        fn size(&self, k: ObjKind, n: &str) -> Result<u64> {
            self.0.size(k, n)
        }
    }

    #[test]
    fn many_ranges_of_one_pack_download_it_once() {
        let d = tempfile::tempdir().unwrap();
        let inner = Arc::new(Counting(MemoryStore::new(), AtomicUsize::new(0)));
        inner.put(ObjKind::Pack, "abcdef", &(0..=255u8).collect::<Vec<_>>()).unwrap();
        let c = PackCache::new(inner.clone(), d.path(), 1 << 20);
        for i in 0..50u64 {
            assert_eq!(c.get_range(ObjKind::Pack, "abcdef", i, 3).unwrap(), vec![i as u8, i as u8 + 1, i as u8 + 2]);
        }
        assert_eq!(inner.1.load(Ordering::SeqCst), 1);
        assert!(d.path().join("ab/abcdef").exists());
        assert_eq!(c.get_range(ObjKind::Pack, "abcdef", 250, 10).unwrap_err().kind(), crate::ErrorKind::Corrupt);
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let d = tempfile::tempdir().unwrap();
        let inner = Arc::new(MemoryStore::new());
        let c = PackCache::new(inner.clone(), d.path(), 10_000);
        for i in 0..20 {
            let name = format!("{i:02x}00");
            inner.put(ObjKind::Pack, &name, &[1u8; 3000]).unwrap();
            c.get_range(ObjKind::Pack, &name, 0, 1).unwrap();
        }
        let used: u64 = c.scan().iter().map(|(_, s, _)| s).sum();
        assert!(used <= 10_000, "{used}");
    }

    #[test]
    fn read_only_refuses_changes() {
        let r = ReadOnly::new(Arc::new(MemoryStore::new()), "a remote is written only by sync");
        let e = r.put(ObjKind::Index, "ab", b"x").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::ReadOnly);
        assert!(e.to_string().contains("only by sync"), "{e}");
        assert_eq!(r.delete(ObjKind::Index, "ab").unwrap_err().kind(), crate::ErrorKind::ReadOnly);
    }
}
