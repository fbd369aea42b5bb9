//! A vault in a local directory (or any mounted file system: USB disk, NAS).
//!
//! Writes: temporary file `.tmp-*` in the target directory, write, fsync, rename over the
//! final name, fsync the directory. A crash leaves at most a `.tmp-*` file, which listings
//! ignore and the next writer removes. Open pack files are kept in a small handle cache so
//! ranged reads cost one `pread`.

use super::{journal_name_ok, JournalFile, Journals, ObjKind, Store};
use crate::error::{Error, Result};
use rand::RngCore;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const TMP_PREFIX: &str = ".tmp-";
const HANDLE_CACHE: usize = 64;

pub struct LocalStore {
    root: PathBuf,
    handles: Mutex<HashMap<String, Arc<File>>>,
}

impl LocalStore {
    /// Opens an existing or future vault directory; nothing is created here.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into(), handles: Mutex::new(HashMap::new()) }
    }

    fn full(&self, kind: ObjKind, name: &str) -> Result<PathBuf> {
        check_name(kind, name)?;
        Ok(self.root.join(kind.path(name)))
    }

    fn handle(&self, kind: ObjKind, name: &str) -> Result<Arc<File>> {
        let key = kind.path(name);
        if let Some(f) = self.handles.lock().map_err(poisoned)?.get(&key) {
            return Ok(f.clone());
        }
        let path = self.full(kind, name)?;
        let f = Arc::new(File::open(&path).map_err(|e| Error::io(path.display(), e))?);
        let mut h = self.handles.lock().map_err(poisoned)?;
        if h.len() >= HANDLE_CACHE {
            h.clear();
        }
        h.insert(key, f.clone());
        Ok(f)
    }

    fn forget_handle(&self, kind: ObjKind, name: &str) {
        if let Ok(mut h) = self.handles.lock() {
            h.remove(&kind.path(name));
        }
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::new(crate::ErrorKind::Io, "internal lock poisoned")
}

/// Names are what the engine makes (hex ids, "config"); anything else is refused so that no
/// name can escape the vault directory.
pub(crate) fn check_name(kind: ObjKind, name: &str) -> Result<()> {
    let ok = match kind {
        ObjKind::Config => super::CONFIG_NAMES.contains(&name),
        _ => {
            !name.is_empty()
                && name.len() <= 128
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("invalid object name {name:?}")))
    }
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(format!("fsync {}", dir.display()), e))
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()> {
        let path = self.full(kind, name)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
            if let Some(p) = dir.parent() {
                fsync_dir(p)?;
            }
        }
        let mut r = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut r);
        let tmp = dir.join(format!("{TMP_PREFIX}{}", hex::encode(r)));
        let res = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", path.display()), e));
        }
        self.forget_handle(kind, name);
        fsync_dir(&dir)
    }

    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>> {
        let path = self.full(kind, name)?;
        fs::read(&path).map_err(|e| Error::io(path.display(), e))
    }

    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.get_range_into(kind, name, offset, len, &mut buf)?;
        Ok(buf)
    }

    fn get_range_into(&self, kind: ObjKind, name: &str, offset: u64, len: u32, buf: &mut Vec<u8>) -> Result<()> {
        let f = self.handle(kind, name)?;
        // A reused buffer is not cleared first: every byte is read over.
        if buf.len() < len as usize {
            buf.resize(len as usize, 0);
        }
        buf.truncate(len as usize);
        let mut done = 0usize;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    return Err(Error::corrupt(format!(
                        "{}: truncated (wanted {len} bytes at offset {offset}, file ends at {})",
                        kind.path(name),
                        offset + done as u64
                    )))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(kind.path(name), e)),
            }
        }
        Ok(())
    }

    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        if kind == ObjKind::Config {
            for n in super::CONFIG_NAMES {
                if let Ok(m) = fs::metadata(self.root.join(n)) {
                    out.push((n.to_string(), m.len()));
                }
            }
            return Ok(out);
        }
        let base = self.root.join(kind.dir());
        let mut dirs = vec![base.clone()];
        if kind == ObjKind::Pack {
            dirs.clear();
            match fs::read_dir(&base) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.map_err(|e| Error::io(base.display(), e))?;
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            dirs.push(e.path());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(base.display(), e)),
            }
        }
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(d.display(), e)),
            };
            for e in rd {
                let e = e.map_err(|e| Error::io(d.display(), e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(TMP_PREFIX) {
                    continue;
                }
                let m = e.metadata().map_err(|err| Error::io(e.path().display(), err))?;
                if m.is_file() {
                    out.push((name, m.len()));
                }
            }
        }
        Ok(out)
    }

    fn delete(&self, kind: ObjKind, name: &str) -> Result<()> {
        let path = self.full(kind, name)?;
        self.forget_handle(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(path.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    fn size(&self, kind: ObjKind, name: &str) -> Result<u64> {
        let path = self.full(kind, name)?;
        fs::metadata(&path).map(|m| m.len()).map_err(|e| Error::io(path.display(), e))
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn journals(&self) -> Option<&dyn Journals> {
        Some(self)
    }

    fn remove_temporaries(&self) -> Result<usize> {
        let mut n = 0;
        let mut dirs = vec![self.root.clone()];
        for k in ObjKind::ALL {
            if k != ObjKind::Config {
                dirs.push(self.root.join(k.dir()));
            }
        }
        if let Ok(rd) = fs::read_dir(self.root.join("packs")) {
            dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for d in dirs {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) && fs::remove_file(e.path()).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

const JOURNAL_DIR: &str = "journal";

/// A journal file: appends at the end (cut back on failure), `fdatasync` to make them durable.
struct LocalJournal {
    file: File,
    len: Mutex<u64>,
    path: PathBuf,
}

impl JournalFile for LocalJournal {
    fn append(&self, data: &[u8]) -> Result<()> {
        let mut len = self.len.lock().map_err(poisoned)?;
        if let Err(e) = self.file.write_all_at(data, *len) {
            // Never leave part of a record: a later append would follow garbage.
            let _ = self.file.set_len(*len);
            return Err(Error::io(format!("appending to {}", self.path.display()), e));
        }
        *len += data.len() as u64;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(format!("fsync {}", self.path.display()), e))
    }
}

impl LocalStore {
    fn journal_path(&self, name: &str) -> Result<PathBuf> {
        if !journal_name_ok(name) {
            return Err(Error::invalid(format!("invalid journal name {name:?}")));
        }
        Ok(self.root.join(JOURNAL_DIR).join(name))
    }
}

impl Journals for LocalStore {
    fn create(&self, name: &str, header: &[u8]) -> Result<Arc<dyn JournalFile>> {
        let path = self.journal_path(name)?;
        let dir = self.root.join(JOURNAL_DIR);
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
            fsync_dir(&self.root)?;
        }
        let res = (|| {
            let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
            f.write_all(header)?;
            f.sync_all()?;
            Ok::<File, std::io::Error>(f)
        })();
        let f = match res {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(Error::io(format!("creating {}", path.display()), e));
            }
        };
        fsync_dir(&dir)?;
        Ok(Arc::new(LocalJournal { file: f, len: Mutex::new(header.len() as u64), path }))
    }

    fn list(&self) -> Result<Vec<String>> {
        let dir = self.root.join(JOURNAL_DIR);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(dir.display(), e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| Error::io(dir.display(), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if journal_name_ok(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.journal_path(name)?;
        fs::read(&path).map_err(|e| Error::io(path.display(), e))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.journal_path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&self.root.join(JOURNAL_DIR)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (a, b) = (self.journal_path(from)?, self.journal_path(to)?);
        fs::rename(&a, &b).map_err(|e| Error::io(format!("renaming {}", a.display()), e))?;
        fsync_dir(&self.root.join(JOURNAL_DIR))
    }
}
