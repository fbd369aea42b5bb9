//! `sync`: make a remote store a complete, consistent copy of the vault.
//!
//! Plan first (what the remote lacks, by its manifest), then apply in the vault's own write
//! order: packs, index files, key slots, snapshots, logs, config files, and the manifest
//! last. A sync killed at any moment leaves the remote described by its previous manifest,
//! whose objects are all there; the next sync finds what already arrived (same size and hash)
//! and does not send it again. Deletions reach the remote only after the new manifest is
//! written, and never on a keep-all remote. `verify` needs no key: it checks every object
//! against the manifest and drops damaged ones from it so that the next sync sends them again.
//!
//! Uploads of one kind run in parallel on a dedicated pool (`SyncOptions::jobs`, sized for
//! network latency rather than for the CPU); an optional bandwidth limit is one token bucket
//! shared by all upload threads.

use crate::error::{ErrorKind, Result};
use crate::format::manifest::{self, Entry};
use crate::format::remotes::Remote;
use crate::repo::lock::VaultLock;
use crate::repo::Vault;
use crate::store::{ObjKind, Store};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upload order: what is referenced goes before what references it.
const UPLOAD_ORDER: [ObjKind; 6] =
    [ObjKind::Pack, ObjKind::Index, ObjKind::Key, ObjKind::Snapshot, ObjKind::Log, ObjKind::Config];
/// Listing order: the reverse, so that every object a listed one refers to is listed too.
const LIST_ORDER: [ObjKind; 6] =
    [ObjKind::Config, ObjKind::Snapshot, ObjKind::Log, ObjKind::Key, ObjKind::Index, ObjKind::Pack];

/// Above this many uploads of one kind, a sync lists the remote's objects of that kind once
/// instead of asking for each object's size (to find what an interrupted sync left).
const LIST_THRESHOLD: usize = 16;

/// Default number of parallel uploads: network stores are latency-bound.
pub const DEFAULT_JOBS: usize = 8;

#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Parallel uploads (and parallel reads for `verify`).
    pub jobs: usize,
    /// Upload bandwidth limit in bytes per second (`None`: unlimited).
    pub bwlimit: Option<u64>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions { jobs: DEFAULT_JOBS, bwlimit: None }
    }
}

impl SyncOptions {
    fn pool(&self) -> Result<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs.clamp(1, 256))
            .thread_name(|i| format!("vault-sync-{i}"))
            .build()
            .map_err(|e| crate::Error::new(ErrorKind::Io, format!("starting the upload threads: {e}")))
    }
}

/// A token bucket: `take(n)` returns once `n` bytes fit in the rate. The bucket holds at most
/// one second of tokens, so an idle pause does not allow a burst above the limit for long.
pub struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        RateLimiter { rate, state: Mutex::new((rate, Instant::now())) }
    }

    /// Takes `n` bytes' worth of tokens, sleeping as long as the limit requires. The debt is
    /// booked at once, so concurrent callers queue up fairly behind each other.
    pub fn take(&self, n: u64) {
        let wait = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let (tokens, last) = *st;
            let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate) - n as f64;
            *st = (tokens, now);
            if tokens < 0.0 {
                Duration::from_secs_f64(-tokens / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct SyncPlan {
    pub upload: Vec<(ObjKind, String, u64)>,
    pub delete: Vec<(ObjKind, String)>,
    pub unchanged: usize,
}

impl SyncPlan {
    pub fn upload_bytes(&self) -> u64 {
        self.upload.iter().map(|(_, _, s)| s).sum()
    }
}

#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    pub plan: SyncPlan,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    /// Objects that had already arrived (an interrupted sync) and were not sent again.
    pub resumed: usize,
    pub deleted: usize,
    pub elapsed: Duration,
}

fn hash(b: &[u8]) -> [u8; 32] {
    *blake3::hash(b).as_bytes()
}

pub fn read_manifest(dst: &dyn Store) -> Result<Vec<Entry>> {
    match dst.get(ObjKind::Config, "manifest") {
        Ok(b) => manifest::decode(&b).map_err(|e| e.context(format!("{}: manifest", dst.describe()))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn local_objects(v: &Vault) -> Result<Vec<(ObjKind, String, u64)>> {
    let mut out = Vec::new();
    for k in LIST_ORDER {
        for (name, size) in v.store().list(k)? {
            if k == ObjKind::Config && name == "manifest" {
                continue;
            }
            out.push((k, name, size));
        }
    }
    Ok(out)
}

/// What a sync would do.
pub fn plan(v: &Vault, remote: &Remote, dst: &dyn Store) -> Result<SyncPlan> {
    let have: HashMap<(ObjKind, String), Entry> =
        read_manifest(dst)?.into_iter().map(|e| ((e.kind, e.name.clone()), e)).collect();
    let local = local_objects(v)?;
    let mut p = SyncPlan::default();
    for (k, name, size) in &local {
        let same = match have.get(&(*k, name.clone())) {
            // Everything but the config files is written once under a fresh name.
            Some(e) if e.size == *size && *k != ObjKind::Config => true,
            Some(e) if e.size == *size => hash(&v.store().get(*k, name)?) == e.hash,
            _ => false,
        };
        if same {
            p.unchanged += 1;
        } else {
            p.upload.push((*k, name.clone(), *size));
        }
    }
    if !remote.keep_all {
        let present: std::collections::HashSet<(ObjKind, &str)> =
            local.iter().map(|(k, n, _)| (*k, n.as_str())).collect();
        p.delete = have.keys().filter(|(k, n)| !present.contains(&(*k, n.as_str()))).cloned().collect();
    }
    Ok(p)
}

/// Applies a fresh plan; `progress(done_bytes, total_bytes)` is called as objects arrive.
pub fn sync(
    v: &Vault,
    remote: &Remote,
    dst: &dyn Store,
    o: &SyncOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<SyncReport> {
    let start = Instant::now();
    let pool = o.pool()?;
    let limiter = o.bwlimit.map(RateLimiter::new);
    if let Some(p) = dst.local_path() {
        std::fs::create_dir_all(p).map_err(|e| crate::Error::io(p.display(), e))?;
    }
    let _lock = VaultLock::exclusive(dst, Duration::from_secs(30), "vaultctl sync")?;
    let old = read_manifest(dst)?;
    let p = plan(v, remote, dst)?;
    if !p.upload.is_empty() {
        // Leftovers of uploads a killed sync left behind (never listed, never in a manifest).
        dst.remove_temporaries()?;
    }
    let total = p.upload_bytes();
    let done = std::sync::atomic::AtomicU64::new(0);
    let mut report = SyncReport::default();
    let mut entries: HashMap<(ObjKind, String), Entry> =
        old.into_iter().map(|e| ((e.kind, e.name.clone()), e)).collect();
    for kind in UPLOAD_ORDER {
        let batch: Vec<&(ObjKind, String, u64)> = p.upload.iter().filter(|(k, _, _)| *k == kind).collect();
        // What already arrived from an interrupted sync: for a large batch one listing of the
        // kind beats asking object by object; a small batch asks per object.
        let listed: Option<HashMap<String, u64>> =
            if batch.len() > LIST_THRESHOLD { Some(dst.list(kind)?.into_iter().collect()) } else { None };
        let remote_size = |k: ObjKind, name: &str| match &listed {
            Some(m) => m.get(name).copied(),
            None => dst.size(k, name).ok(),
        };
        let results: Vec<Result<(Entry, bool)>> = pool.install(|| {
            batch
                .par_iter()
                .map(|(k, name, _)| {
                    let bytes = v.store().get(*k, name)?;
                    let h = hash(&bytes);
                    // Already there from an interrupted sync?
                    let arrived = remote_size(*k, name) == Some(bytes.len() as u64)
                        && dst.get(*k, name).map(|b| hash(&b) == h).unwrap_or(false);
                    if !arrived {
                        if let Some(l) = &limiter {
                            l.take(bytes.len() as u64);
                        }
                        dst.put(*k, name, &bytes).map_err(|e| e.context(format!("uploading {}", k.path(name))))?;
                    }
                    let n =
                        done.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed) + bytes.len() as u64;
                    progress(n, total);
                    Ok((Entry { kind: *k, name: name.clone(), size: bytes.len() as u64, hash: h }, arrived))
                })
                .collect()
        });
        for r in results {
            let (e, arrived) = r?;
            if arrived {
                report.resumed += 1;
            } else {
                report.uploaded += 1;
                report.uploaded_bytes += e.size;
            }
            entries.insert((e.kind, e.name.clone()), e);
        }
    }
    for d in &p.delete {
        entries.remove(d);
    }
    // The record of this sync travels with it: appended locally, sent before the manifest.
    report.elapsed = start.elapsed();
    let entry = serde_json::json!({
        "type": "sync",
        "remote": remote.name,
        "time_unix": crate::repo::now_unix(),
        "complete": true,
        "uploaded": report.uploaded,
        "uploaded_bytes": report.uploaded_bytes,
        "seconds": report.elapsed.as_secs_f64(),
    });
    let log_name = crate::repo::log::append(v, &entry)?;
    let log_bytes = v.store().get(ObjKind::Log, &log_name)?;
    dst.put(ObjKind::Log, &log_name, &log_bytes)?;
    entries.insert(
        (ObjKind::Log, log_name.clone()),
        Entry { kind: ObjKind::Log, name: log_name, size: log_bytes.len() as u64, hash: hash(&log_bytes) },
    );
    let mut list: Vec<Entry> = entries.into_values().collect();
    list.sort_by(|a, b| (a.kind.code(), &a.name).cmp(&(b.kind.code(), &b.name)));
    if let Err(e) = dst.put(ObjKind::Config, "manifest", &manifest::encode(&list)) {
        let failed = serde_json::json!({"type": "sync", "remote": remote.name, "time_unix": crate::repo::now_unix(),
            "complete": false, "error": e.to_string()});
        let _ = crate::repo::log::append(v, &failed);
        return Err(e);
    }
    for (k, name) in &p.delete {
        dst.delete(*k, name)?;
        report.deleted += 1;
    }
    report.plan = p;
    Ok(report)
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: usize,
    pub bytes: u64,
    /// `kind/name: problem` of every missing or damaged object.
    pub bad: Vec<String>,
}

/// Checks every object of a remote against its manifest (no key needed). Damaged or missing
/// objects are dropped from the manifest, so that the next sync sends them again.
pub fn verify(dst: &dyn Store, o: &SyncOptions) -> Result<VerifyReport> {
    let list = read_manifest(dst)?;
    let results: Vec<(Entry, Option<String>, u64)> = o.pool()?.install(|| {
        list.into_par_iter()
            .map(|e| match dst.get(e.kind, &e.name) {
                Ok(b) if b.len() as u64 != e.size => {
                    let n = b.len() as u64;
                    (e.clone(), Some(format!("has {n} bytes, the manifest records {}", e.size)), n)
                }
                Ok(b) if hash(&b) != e.hash => {
                    (e, Some("content differs from the manifest (damaged)".into()), b.len() as u64)
                }
                Ok(b) => (e, None, b.len() as u64),
                Err(err) if err.kind() == ErrorKind::NotFound => (e, Some("is missing".into()), 0),
                Err(err) => (e, Some(err.to_string()), 0),
            })
            .collect()
    });
    let mut r = VerifyReport::default();
    let mut keep = Vec::new();
    for (e, problem, n) in results {
        r.checked += 1;
        r.bytes += n;
        match problem {
            Some(p) => r.bad.push(format!("{}: {p}", e.kind.path(&e.name))),
            None => keep.push(e),
        }
    }
    if !r.bad.is_empty() {
        let _lock = VaultLock::exclusive(dst, Duration::from_secs(30), "vaultctl sync --verify")?;
        keep.sort_by(|a, b| (a.kind.code(), &a.name).cmp(&(b.kind.code(), &b.name)));
        dst.put(ObjKind::Config, "manifest", &manifest::encode(&keep))?;
    }
    r.bad.sort();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limiter_holds_the_rate_across_threads() {
        let l = RateLimiter::new(1_000_000);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        l.take(100_000);
                    }
                });
            }
        });
        // 2 MB at 1 MB/s with a 1 MB bucket to start with: about one second.
        let e = t.elapsed().as_secs_f64();
        assert!((0.9..2.0).contains(&e), "{e}");
    }
}
