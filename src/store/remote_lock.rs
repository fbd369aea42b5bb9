//! The lock a sync takes on a remote, so that two syncs never write the same copy at once.
//!
//! Two layers:
//!
//! - On the machine: `flock` on `<state dir>/sync-<16 hex of BLAKE3(url)>.lock`. Two syncs of
//!   the same URL from one machine queue up (the second waits up to its lock wait, then fails
//!   naming the holder); the kernel releases it when the holder dies.
//! - On the remote: a lock object `locks/<random id>` holding a small plaintext JSON record
//!   (format version, a hash of the host name, pid, program, creation and expiry times). A
//!   sync writes its lock object, then lists `locks/`: if another live lock is there, it
//!   removes its own and waits (random back-off) or fails; if not, it holds the lock. Two syncs
//!   that write at the same moment both see each other and both back off, so at most one
//!   proceeds. The holder rewrites its lock object every [`REFRESH`]; a lock object not
//!   refreshed for [`TTL`] is stale, and so is one written by a process of this host that no
//!   longer exists. A holder that could not refresh for nearly [`TTL`] stops before its next
//!   destructive step ([`RemoteLock::check`]).
//!
//! This needs a store whose listings show a completed write at once (S3 and local disks do;
//! so do most rclone backends, but not all: see docs/DESIGN.md §12). Stores without deletes
//! (append-only remotes) take only the machine lock: their syncs only add new objects, so
//! concurrent syncs cannot destroy anything there.

use super::{ObjKind, Store};
use crate::error::{Error, ErrorKind, Result};
use rand::{Rng, RngCore};
use std::fs::File;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A lock object not rewritten for this long is stale.
pub const TTL: Duration = Duration::from_secs(600);
/// How often the holder rewrites its lock object.
pub const REFRESH: Duration = Duration::from_secs(120);
const VERSION: u64 = 1;

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn host_hash() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let n = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    let name = if n == 0 { buf.split(|b| *b == 0).next().unwrap_or(&[]) } else { &[] };
    blake3::hash(name).to_hex()[..16].to_string()
}

fn pid_alive(pid: i64) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    pid > 0
        && (unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH))
}

/// A lock object as read from the remote.
#[derive(Debug)]
struct Holder {
    name: String,
    host: String,
    pid: i64,
    program: String,
    created: i64,
    expires: i64,
}

impl Holder {
    fn parse(name: &str, b: &[u8]) -> Option<Holder> {
        let v: serde_json::Value = serde_json::from_slice(b).ok()?;
        Some(Holder {
            name: name.to_string(),
            host: v["host"].as_str()?.to_string(),
            pid: v["pid"].as_i64()?,
            program: v["program"].as_str().unwrap_or("").to_string(),
            created: v["created_unix"].as_i64()?,
            expires: v["expires_unix"].as_i64()?,
        })
    }

    fn stale(&self, now: i64, host: &str) -> bool {
        self.expires <= now || (self.host == host && !pid_alive(self.pid))
    }

    fn describe(&self, host: &str) -> String {
        let fmt = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default()
        };
        let whose = if self.host == host { "on this machine".to_string() } else { "on another machine".to_string() };
        format!(
            "{} (pid {} {whose}), locked since {}, lock valid until {} unless renewed",
            if self.program.is_empty() { "another sync" } else { &self.program },
            self.pid,
            fmt(self.created),
            fmt(self.expires)
        )
    }
}

/// The machine-local half: an flock held for the life of the value.
struct LocalLock {
    _file: File,
}

fn local_lock(dir: &Path, url: &str, wait: Duration, program: &str) -> Result<LocalLock> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let path = dir.join(format!("sync-{}.lock", &blake3::hash(url.as_bytes()).to_hex()[..16]));
    match crate::repo::lock::flock_wait(&path, wait, program)? {
        Ok(f) => Ok(LocalLock { _file: f }),
        Err(who) => Err(Error::new(
            ErrorKind::Locked,
            format!("{url} is being synced by {who} on this machine; wait for it to finish (or raise --lock-wait)"),
        )),
    }
}

/// A held sync lock; released when dropped.
pub struct RemoteLock {
    _local: LocalLock,
    remote: Option<Arc<Held>>,
    /// Dropping it wakes the refresher, which then ends.
    stop: Option<std::sync::mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

struct Held {
    store: Arc<dyn Store>,
    /// Write the lock object as a new version with `Content-MD5` (buckets with Object Lock,
    /// whose default retention rule may demand it).
    versioned: bool,
    name: String,
    record: serde_json::Value,
    /// Unix seconds of the last successful write of the lock object.
    written: AtomicI64,
}

impl Held {
    fn write(&self) -> Result<()> {
        let mut rec = self.record.clone();
        let now = now_unix();
        rec["expires_unix"] = (now + TTL.as_secs() as i64).into();
        let bytes = rec.to_string().into_bytes();
        match self.store.versioned().filter(|_| self.versioned) {
            Some(v) => v.put_version(ObjKind::Lock, &self.name, &bytes, None).map(|_| ())?,
            None => self.store.put(ObjKind::Lock, &self.name, &bytes)?,
        }
        self.written.store(now, Ordering::SeqCst);
        Ok(())
    }
}

impl RemoteLock {
    /// Takes the lock of `url`: the machine lock in `state_dir`, then (when `remote_too`) the
    /// lock object on `store`, waiting up to `wait` for each. `versioned`: the store is an
    /// object-locked bucket (see [`Held`]).
    pub fn acquire(
        store: Arc<dyn Store>,
        url: &str,
        state_dir: &Path,
        remote_too: bool,
        versioned: bool,
        wait: Duration,
        program: &str,
    ) -> Result<RemoteLock> {
        let start = Instant::now();
        let local = local_lock(state_dir, url, wait, program)?;
        if !remote_too {
            return Ok(RemoteLock { _local: local, remote: None, stop: None, refresher: None });
        }
        let host = host_hash();
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let held = Arc::new(Held {
            store: store.clone(),
            versioned,
            name: hex::encode(id),
            record: serde_json::json!({"version": VERSION, "host": host, "pid": std::process::id(),
                "program": program, "created_unix": now_unix()}),
            written: AtomicI64::new(0),
        });
        let mut mine = false;
        loop {
            let now = now_unix();
            let mut others = Vec::new();
            for (name, _) in store.list(ObjKind::Lock)? {
                if name == held.name {
                    continue;
                }
                let h = match store.get(ObjKind::Lock, &name) {
                    Ok(b) => Holder::parse(&name, &b),
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                match h {
                    Some(h) if h.stale(now, &host) => {
                        // Best effort: a stale lock is ignored whether or not it can go.
                        let _ = store.delete(ObjKind::Lock, &h.name);
                    }
                    Some(h) => others.push(h),
                    // Unreadable: someone else's format; honour it until it is old enough.
                    None => others.push(Holder {
                        name,
                        host: String::new(),
                        pid: 0,
                        program: "an unreadable lock object".into(),
                        created: now,
                        expires: now + TTL.as_secs() as i64,
                    }),
                }
            }
            if others.is_empty() {
                if mine {
                    break;
                }
                held.write()?;
                mine = true;
                continue;
            }
            if mine {
                store.delete(ObjKind::Lock, &held.name)?;
                mine = false;
            }
            if start.elapsed() >= wait {
                others.sort_by_key(|h| h.created);
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "{url} is being synced by {}; wait for it to finish (or raise --lock-wait). A lock left by a \
                         process that is gone expires on its own, or delete {} on the remote",
                        others[0].describe(&host),
                        ObjKind::Lock.path(&others[0].name)
                    ),
                ));
            }
            let pause = Duration::from_millis(rand::thread_rng().gen_range(500..2500));
            std::thread::sleep(pause.min(wait.saturating_sub(start.elapsed())).max(Duration::from_millis(50)));
        }
        let h = held.clone();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let refresher = std::thread::Builder::new()
            .name("vault-sync-lock".into())
            .spawn(move || {
                let mut wait = REFRESH;
                // Until the lock is dropped (the sender goes away).
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    // A failed refresh is tried again soon; `check` notices a lock that has
                    // not been written for too long.
                    wait = if h.write().is_ok() { REFRESH } else { Duration::from_secs(10) };
                }
            })
            .map_err(|e| Error::io("starting the lock refresher", e))?;
        Ok(RemoteLock { _local: local, remote: Some(held), stop: Some(stop), refresher: Some(refresher) })
    }

    /// Fails when the lock object could not be renewed for so long that another sync may
    /// have taken it over: call before every destructive step.
    pub fn check(&self) -> Result<()> {
        if let Some(h) = &self.remote {
            let age = now_unix() - h.written.load(Ordering::SeqCst);
            if age > TTL.as_secs() as i64 - 60 {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "the lock object {} could not be renewed for {age} s; stopping before another sync takes over",
                        ObjKind::Lock.path(&h.name)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        if let Some(h) = &self.remote {
            let _ = h.store.delete(ObjKind::Lock, &h.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn a_second_sync_waits_then_fails_naming_the_first() {
        let d = tempfile::tempdir().unwrap();
        let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a =
            RemoteLock::acquire(s.clone(), "s3://b/x", d.path(), true, false, Duration::ZERO, "vaultctl sync").unwrap();
        assert_eq!(s.list(ObjKind::Lock).unwrap().len(), 1);
        // Another machine (a different state dir, so only the lock object stands in the way).
        let d2 = tempfile::tempdir().unwrap();
        let e =
            RemoteLock::acquire(s.clone(), "s3://b/x", d2.path(), true, false, Duration::from_millis(300), "second")
                .err()
                .unwrap();
        assert_eq!(e.kind(), ErrorKind::Locked);
        assert!(e.to_string().contains("vaultctl sync") && e.to_string().contains("on this machine"), "{e}");
        assert_eq!(s.list(ObjKind::Lock).unwrap().len(), 1, "the loser removed its lock object");
        // The same machine: the machine lock refuses first.
        let e =
            RemoteLock::acquire(s.clone(), "s3://b/x", d.path(), true, false, Duration::ZERO, "third").err().unwrap();
        assert!(e.to_string().contains("on this machine"), "{e}");
        a.check().unwrap();
        drop(a);
        assert!(s.list(ObjKind::Lock).unwrap().is_empty());
        RemoteLock::acquire(s.clone(), "s3://b/x", d2.path(), true, false, Duration::ZERO, "second").unwrap();
    }

    #[test]
    fn stale_locks_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let now = now_unix();
        // Expired, and a dead process of this host.
        let expired = serde_json::json!({"version": 1, "host": "elsewhere", "pid": 1, "program": "x",
            "created_unix": now - 9000, "expires_unix": now - 10});
        s.put(ObjKind::Lock, "aa", expired.to_string().as_bytes()).unwrap();
        let dead = serde_json::json!({"version": 1, "host": host_hash(), "pid": i32::MAX, "program": "x",
            "created_unix": now, "expires_unix": now + 500});
        s.put(ObjKind::Lock, "bb", dead.to_string().as_bytes()).unwrap();
        let l = RemoteLock::acquire(s.clone(), "u", d.path(), true, false, Duration::ZERO, "sync").unwrap();
        assert_eq!(s.list(ObjKind::Lock).unwrap().len(), 1);
        drop(l);
    }
}
