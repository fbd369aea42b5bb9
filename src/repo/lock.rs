//! The writer lock: one writing process per vault (several processes may read).
//!
//! A local vault is locked with `flock(LOCK_EX)` on `<vault>/lock`; the kernel drops the lock
//! when the holder dies, so a killed writer never leaves a stale lock. The file records the
//! holder's pid and program so that the refusal message can name it. Stores without a local
//! directory are written only by a single process (sync targets) and take no lock here.

use crate::error::{Error, ErrorKind, Result};
use crate::store::Store;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct VaultLock {
    _file: Option<File>,
}

impl VaultLock {
    /// Waits up to `wait` for the lock.
    pub fn exclusive(store: &dyn Store, wait: Duration, holder: &str) -> Result<Self> {
        Self::exclusive_named(store, "lock", wait, holder)
    }

    /// The same on another lock file of the vault directory (`mount.lock`: one writable mount
    /// per vault, held for the life of the mount while `lock` is taken only to write).
    pub fn exclusive_named(store: &dyn Store, file: &str, wait: Duration, holder: &str) -> Result<Self> {
        let Some(root) = store.local_path() else {
            return Ok(VaultLock { _file: None });
        };
        let path = root.join(file);
        match flock_wait(&path, wait, holder)? {
            Ok(f) => Ok(VaultLock { _file: Some(f) }),
            Err(who) => {
                let msg = if file == "lock" {
                    format!("the vault {} is locked by another writer ({who}); wait for it to finish", root.display())
                } else {
                    format!("the vault {} is already mounted writable ({who}); unmount it first", root.display())
                };
                Err(Error::new(ErrorKind::Locked, msg))
            }
        }
    }
}

/// Takes an exclusive `flock` on `path` (created if missing), trying every 100 ms for up to
/// `wait`, and then writes `pid N (holder)` into it; the lock lasts as long as the returned
/// file. `Ok(Err(who))` when another process still holds it after `wait`, naming it by what it
/// wrote there.
pub(crate) fn flock_wait(path: &Path, wait: Duration, holder: &str) -> Result<std::result::Result<File, String>> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path.display(), e))?;
    let start = Instant::now();
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io(format!("locking {}", path.display()), err));
        }
        if start.elapsed() >= wait {
            let mut who = String::new();
            let _ = f.read_to_string(&mut who);
            let who = who.trim();
            return Ok(Err(if who.is_empty() { "an unknown process".to_string() } else { who.to_string() }));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "pid {} ({holder})", std::process::id());
    let _ = f.flush();
    Ok(Ok(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::LocalStore;

    #[test]
    fn second_writer_is_refused_with_holder_named() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(d.path());
        let l = VaultLock::exclusive(&s, Duration::ZERO, "vaultctl put").unwrap();
        let e = VaultLock::exclusive(&s, Duration::from_millis(200), "vaultctl seal").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Locked);
        assert!(e.to_string().contains("vaultctl put"), "{e}");
        drop(l);
        VaultLock::exclusive(&s, Duration::ZERO, "vaultctl seal").unwrap();
    }
}
