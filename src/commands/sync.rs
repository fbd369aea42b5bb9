//! `sync`: make a remote store a complete, consistent copy of the vault.
//!
//! Plan first (what the remote lacks, by its manifest), then apply in the vault's own write
//! order: packs, index files, key slots, snapshots, logs, config files, and the manifest
//! last. A sync killed at any moment leaves the remote described by its previous manifest,
//! whose objects are all there; the next sync finds what already arrived (same size and hash)
//! and does not send it again. Deletions reach the remote only after the new manifest is
//! written, and never on a keep-all or append-only remote. `verify` needs no key: it checks
//! every object against the manifest and drops damaged ones from it so that the next sync sends
//! them again.
//!
//! Two syncs never write one copy at once: a sync holds the machine lock and the lock object
//! of the remote (`store::remote_lock`) from planning to its last deletion.
//!
//! Protected remotes (docs/DESIGN.md §12a):
//! - object-locked (S3 with Object Lock): every object is written as a new version carrying a
//!   retain-until date `days + margin` ahead, and every object still in use whose date comes
//!   closer than `days` is extended, so what the vault uses stays retained for at least
//!   `days` after every sync. The copy's current view is checked against the versions the
//!   manifest records, and anything deleted or replaced behind the sync's back is sent again.
//!   Deletion is the offsite prune: only versions that nothing uses and whose retention has
//!   ended are deleted; unused objects still retained are kept (`held`) until then.
//! - append-only: only new names are written (never a delete, never a replacement); each sync
//!   writes its manifest as a new object under `manifests/`.
//!
//! Uploads of one kind run in parallel on a dedicated pool (`SyncOptions::jobs`, sized for
//! network latency rather than for the CPU); an optional bandwidth limit is one token bucket
//! shared by all upload threads.

use crate::error::{Error, ErrorKind, Result};
use crate::format::log::{Record, SyncRecord};
use crate::format::manifest::{self, Entry};
use crate::format::remotes::Remote;
use crate::repo::lock::VaultLock;
use crate::repo::Vault;
use crate::store::remote_lock::RemoteLock;
use crate::store::{ObjKind, ObjVersion, Retention, Store, Versioned};
use rand::RngCore;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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

const DAY: i64 = 86_400;

#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Parallel uploads (and parallel reads for `verify`).
    pub jobs: usize,
    /// Upload bandwidth limit in bytes per second (`None`: unlimited).
    pub bwlimit: Option<u64>,
    /// Where this machine keeps its sync locks and what it last wrote to versioned remotes
    /// (`<cache dir>/sync`). `None`: a directory under the system's temporary directory.
    pub state_dir: Option<PathBuf>,
    /// How long to wait for another sync of the same remote to finish.
    pub lock_wait: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            jobs: DEFAULT_JOBS,
            bwlimit: None,
            state_dir: crate::repo::default_cache_dir().map(|d| d.join("sync")),
            lock_wait: Duration::from_secs(30),
        }
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

    /// The sync lock on `remote` (docs/DESIGN.md §12): this machine's, and the remote's own
    /// unless the remote is append-only.
    fn lock_remote(&self, remote: &Remote, dst: &Arc<dyn Store>, program: &str) -> Result<RemoteLock> {
        RemoteLock::acquire(
            dst.clone(),
            &remote.url,
            &self.state_dir(),
            !remote.append_only,
            remote.object_lock.is_some(),
            self.lock_wait,
            program,
        )
    }

    fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions.
            std::env::temp_dir().join(format!("vault-sync-{}", unsafe { libc::getuid() }))
        })
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

/// What a sync would do.
#[derive(Debug, Default, Clone)]
pub struct SyncPlan {
    pub upload: Vec<(ObjKind, String, u64)>,
    /// Objects the vault no longer has, to delete (on an object-locked remote: only those
    /// whose retention has ended).
    pub delete: Vec<(ObjKind, String)>,
    /// Object-locked remotes: unused objects kept until their retention ends (unix seconds).
    pub held: Vec<(ObjKind, String, i64)>,
    /// Object-locked remotes: objects in use whose retention is extended.
    pub extend: Vec<(ObjKind, String)>,
    /// Objects of the copy deleted or replaced since the last sync (sent again).
    pub repair: Vec<(ObjKind, String)>,
    /// Append-only remotes: changed config files that cannot be replaced there.
    pub not_replaced: Vec<String>,
    pub unchanged: usize,
    /// The copy's manifest was not trusted (not the one this machine wrote last, or
    /// unreadable): every object was checked against the vault.
    pub manifest_untrusted: Option<String>,
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
    /// Retention dates extended.
    pub extended: usize,
    /// Object versions deleted by the offsite prune (object-locked remotes).
    pub pruned_versions: usize,
    /// Objects that differ on an append-only copy and could not be replaced.
    pub not_replaced: Vec<String>,
    pub elapsed: Duration,
}

fn hash(b: &[u8]) -> [u8; 32] {
    *blake3::hash(b).as_bytes()
}

fn now_unix() -> i64 {
    crate::repo::now_unix()
}

/// The newest manifest of a copy: the newest `manifests/*` (append-only copies), else
/// `manifest`; empty when there is none.
pub fn read_manifest(dst: &dyn Store) -> Result<Vec<Entry>> {
    let journal = newest_journal_manifest(dst)?;
    let got = match &journal {
        Some(n) => dst.get(ObjKind::Manifest, n),
        None => dst.get(ObjKind::Config, "manifest"),
    };
    match got {
        Ok(b) => manifest::decode(&b).map_err(|e| e.context(dst.describe())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn newest_journal_manifest(dst: &dyn Store) -> Result<Option<String>> {
    Ok(dst.list(ObjKind::Manifest)?.into_iter().map(|(n, _)| n).max())
}

/// A name for a new append-only manifest that sorts after every earlier one.
fn journal_name() -> String {
    let mut r = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut r);
    format!("{:020}-{}", crate::repo::now_unix_ns().max(0), hex::encode(r))
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

/// Retention policy of an object-locked remote: new and extended dates are `days + margin`
/// ahead; a date closer than `days` is extended. The margin (a tenth of `days`, at least a
/// day) spares extending every object at every sync.
#[derive(Debug, Clone, Copy)]
struct Policy {
    mode: crate::store::LockMode,
    keep: i64,
    margin: i64,
}

impl Policy {
    fn of(remote: &Remote) -> Option<Policy> {
        remote.object_lock.map(|l| {
            let keep = l.days as i64 * DAY;
            Policy { mode: l.mode, keep, margin: (keep / 10).max(DAY) }
        })
    }
    fn target(&self, now: i64) -> Retention {
        Retention { mode: self.mode, until: now + self.keep + self.margin }
    }
    fn needs_extension(&self, until: i64, now: i64) -> bool {
        until < now + self.keep
    }
}

/// What this machine last wrote to a versioned remote: the manifest version it trusts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct State {
    vault_id: String,
    manifest_version: String,
    manifest_hash: String,
}

fn state_path(o: &SyncOptions, url: &str) -> PathBuf {
    o.state_dir().join(format!("state-{}.json", &blake3::hash(url.as_bytes()).to_hex()[..16]))
}

fn read_state(o: &SyncOptions, url: &str) -> Option<State> {
    serde_json::from_slice(&std::fs::read(state_path(o, url)).ok()?).ok()
}

fn write_state(o: &SyncOptions, url: &str, s: &State) -> Result<()> {
    let p = state_path(o, url);
    let dir = o.state_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(s).unwrap_or_default())
        .and_then(|()| std::fs::rename(&tmp, &p))
        .map_err(|e| Error::io(p.display(), e))
}

/// The copy as the sync sees it.
struct View {
    /// Manifest entries (empty when untrusted).
    have: HashMap<(ObjKind, String), Entry>,
    untrusted: Option<String>,
    /// Versioned remotes: every version, and the current (non-deleted) version of each name.
    versions: Vec<ObjVersion>,
    current: HashMap<(ObjKind, String), ObjVersion>,
}

fn versioned<'a>(remote: &Remote, dst: &'a dyn Store) -> Result<Option<&'a dyn Versioned>> {
    if remote.object_lock.is_none() {
        return Ok(None);
    }
    let v = dst.versioned().ok_or_else(|| {
        Error::invalid(format!("{}: object lock needs an s3:// remote ({} is not one)", remote.name, dst.describe()))
    })?;
    if !v.lock_enabled()? {
        return Err(Error::invalid(format!(
            "{}: the bucket of {} has no Object Lock enabled, so the retention this remote was added with cannot be set",
            remote.name,
            dst.describe()
        )));
    }
    Ok(Some(v))
}

fn view(v: &Vault, remote: &Remote, dst: &dyn Store, o: &SyncOptions) -> Result<View> {
    let mut view = View { have: HashMap::new(), untrusted: None, versions: Vec::new(), current: HashMap::new() };
    let entries = match read_manifest(dst) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::Unsupported => {
            view.untrusted = Some(format!("its manifest is unreadable ({e})"));
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    if let Some(ver) = versioned(remote, dst)? {
        view.versions = ver.list_versions()?;
        for x in &view.versions {
            if x.latest && !x.delete_marker {
                view.current.insert((x.kind, x.name.clone()), x.clone());
            }
        }
        let cur = view.current.get(&(ObjKind::Config, "manifest".to_string())).map(|x| x.version_id.clone());
        let state = read_state(o, &remote.url).filter(|s| s.vault_id == v.vault_id_hex());
        let trusted = match (&cur, &state) {
            (Some(c), Some(s)) => *c == s.manifest_version,
            (None, None) => true,
            _ => false,
        };
        if !trusted && view.untrusted.is_none() {
            view.untrusted = Some(match (cur, state) {
                (Some(_), None) => "this machine has no record of writing it".to_string(),
                (None, Some(_)) => "its manifest was deleted".to_string(),
                _ => "its manifest is not the version this machine wrote last".to_string(),
            });
        }
    }
    if view.untrusted.is_none() {
        view.have = entries.into_iter().map(|e| ((e.kind, e.name.clone()), e)).collect();
    }
    Ok(view)
}

/// What a sync would do.
pub fn plan(v: &Vault, remote: &Remote, dst: &dyn Store, o: &SyncOptions) -> Result<SyncPlan> {
    let view = view(v, remote, dst, o)?;
    plan_with(v, remote, &view, &local_objects(v)?, now_unix())
}

fn plan_with(v: &Vault, remote: &Remote, view: &View, local: &[(ObjKind, String, u64)], now: i64) -> Result<SyncPlan> {
    let policy = Policy::of(remote);
    let mut p = SyncPlan { manifest_untrusted: view.untrusted.clone(), ..Default::default() };
    for (k, name, size) in local {
        let key = (*k, name.clone());
        let e = view.have.get(&key).filter(|e| !e.held);
        let same = match e {
            // Everything but the config files is written once under a fresh name.
            Some(e) if e.size == *size && *k != ObjKind::Config => true,
            Some(e) if e.size == *size => hash(&v.store().get(*k, name)?) == e.hash,
            _ => false,
        };
        // On a locked remote: the current version is not the one the manifest records.
        let tampered = match (e, policy) {
            (Some(e), Some(_)) if !e.version_id.is_empty() => {
                view.current.get(&key).map(|c| c.version_id != e.version_id).unwrap_or(true)
            }
            _ => false,
        };
        // An entry without a version (the remote was not locked when it was written) goes
        // through the upload step, which finds it there and sets its retention.
        let same = same && !(policy.is_some() && e.is_some_and(|e| e.version_id.is_empty()));
        if same && !tampered {
            p.unchanged += 1;
            if let (Some(pol), Some(e)) = (policy, e) {
                if pol.needs_extension(e.retain_until, now) {
                    p.extend.push(key);
                }
            }
        } else if remote.append_only && *k == ObjKind::Config && e.is_some() {
            p.not_replaced.push(k.path(name));
        } else {
            if tampered {
                p.repair.push(key);
            }
            p.upload.push((*k, name.clone(), *size));
        }
    }
    if remote.deletes() {
        let present: HashSet<(ObjKind, &str)> = local.iter().map(|(k, n, _)| (*k, n.as_str())).collect();
        for ((k, n), e) in &view.have {
            if present.contains(&(*k, n.as_str())) {
                continue;
            }
            match policy {
                Some(_) if e.retain_until > now => p.held.push((*k, n.clone(), e.retain_until)),
                _ => p.delete.push((*k, n.clone())),
            }
        }
    }
    p.delete.sort();
    p.held.sort();
    Ok(p)
}

/// Writes one object: a new version with its retention on an object-locked remote, else a
/// plain put. Returns the entry fields it sets (version id, retain-until).
fn write(
    dst: &dyn Store,
    policy: Option<Policy>,
    k: ObjKind,
    name: &str,
    data: &[u8],
    now: i64,
) -> Result<(String, i64)> {
    write_from(dst, policy, k, name, data, None, now)
}

/// `write`, telling the store the local file that holds the same bytes (a pack of a local
/// vault), which an rclone store copies directly.
fn write_from(
    dst: &dyn Store,
    policy: Option<Policy>,
    k: ObjKind,
    name: &str,
    data: &[u8],
    file: Option<&std::path::Path>,
    now: i64,
) -> Result<(String, i64)> {
    match (policy, dst.versioned(), file) {
        (Some(pol), Some(ver), _) => {
            let r = pol.target(now);
            Ok((ver.put_version(k, name, data, Some(r))?, r.until))
        }
        (_, _, Some(f)) => dst.put_file(k, name, data, f).map(|()| (String::new(), 0)),
        _ => dst.put(k, name, data).map(|()| (String::new(), 0)),
    }
}

/// Applies a fresh plan; `progress(done_bytes, total_bytes)` is called as objects arrive.
pub fn sync(
    v: &Vault,
    remote: &Remote,
    dst: &Arc<dyn Store>,
    o: &SyncOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<SyncReport> {
    let start = Instant::now();
    let pool = o.pool()?;
    let limiter = o.bwlimit.map(RateLimiter::new);
    if let Some(p) = dst.local_path() {
        std::fs::create_dir_all(p).map_err(|e| crate::Error::io(p.display(), e))?;
    }
    let _flock = VaultLock::exclusive(&**dst, o.lock_wait, "vaultctl sync")?;
    let lock = o.lock_remote(remote, dst, "vaultctl sync")?;
    let dst: &dyn Store = &**dst;
    let policy = Policy::of(remote);
    let now = now_unix();
    let view = view(v, remote, dst, o)?;
    let local = local_objects(v)?;
    let p = plan_with(v, remote, &view, &local, now)?;
    if !p.upload.is_empty() && !remote.append_only {
        // Leftovers of uploads a killed sync left behind (never listed, never in a manifest).
        dst.remove_temporaries()?;
    }
    let total = p.upload_bytes();
    let done = std::sync::atomic::AtomicU64::new(0);
    let mut report = SyncReport::default();
    let mut entries: HashMap<(ObjKind, String), Entry> = view.have.clone();
    let not_replaced = Mutex::new(Vec::new());
    for kind in UPLOAD_ORDER {
        let batch: Vec<&(ObjKind, String, u64)> = p.upload.iter().filter(|(k, _, _)| *k == kind).collect();
        if batch.is_empty() {
            continue;
        }
        // What already arrived from an interrupted sync: for a large batch one listing of the
        // kind beats asking object by object; a small batch asks per object.
        let listed: Option<HashMap<String, u64>> =
            if batch.len() > LIST_THRESHOLD { Some(dst.list(kind)?.into_iter().collect()) } else { None };
        let remote_size = |k: ObjKind, name: &str| match &listed {
            Some(m) => m.get(name).copied(),
            None => dst.size(k, name).ok(),
        };
        let results: Vec<Result<Option<(Entry, bool)>>> = pool.install(|| {
            batch
                .par_iter()
                .map(|(k, name, _)| {
                    let bytes = v.store().get(*k, name)?;
                    let h = hash(&bytes);
                    let mut e = Entry::new(*k, name, bytes.len() as u64, h);
                    let there = remote_size(*k, name);
                    // Already there from an interrupted sync (and, on a locked remote, not
                    // one we are repairing)?
                    let repairing = p.repair.contains(&(*k, name.clone()));
                    let arrived = !repairing
                        && there == Some(bytes.len() as u64)
                        && dst.get(*k, name).map(|b| hash(&b) == h).unwrap_or(false);
                    if arrived {
                        if let (Some(pol), Some(ver)) = (policy, dst.versioned()) {
                            let cur = view.current.get(&(*k, name.clone())).map(|c| c.version_id.clone());
                            let id = cur.ok_or_else(|| {
                                Error::new(
                                    ErrorKind::Io,
                                    format!("{}: no current version in the listing", k.path(name)),
                                )
                            })?;
                            let r = ver.retention(*k, name, &id)?;
                            e.retain_until = match r {
                                Some(r) if !pol.needs_extension(r.until, now) => r.until,
                                _ => {
                                    let t = pol.target(now);
                                    ver.set_retention(*k, name, &id, t)?;
                                    t.until
                                }
                            };
                            e.version_id = id;
                        }
                    } else if remote.append_only && there.is_some() {
                        not_replaced.lock().unwrap_or_else(|e| e.into_inner()).push(k.path(name));
                        return Ok(None);
                    } else {
                        if let Some(l) = &limiter {
                            l.take(bytes.len() as u64);
                        }
                        // Packs are written once: the store may copy the vault's own file.
                        let file = (*k == ObjKind::Pack)
                            .then(|| {
                                v.store()
                                    .local_path()
                                    .and_then(|root| std::path::absolute(root.join(k.path(name))).ok())
                            })
                            .flatten();
                        let (id, until) = write_from(dst, policy, *k, name, &bytes, file.as_deref(), now)
                            .map_err(|e| e.context(format!("uploading {}", k.path(name))))?;
                        e.version_id = id;
                        e.retain_until = until;
                    }
                    let n =
                        done.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed) + bytes.len() as u64;
                    progress(n, total);
                    Ok(Some((e, arrived)))
                })
                .collect()
        });
        for r in results {
            let Some((e, arrived)) = r? else { continue };
            if arrived {
                report.resumed += 1;
            } else {
                report.uploaded += 1;
                report.uploaded_bytes += e.size;
            }
            entries.insert((e.kind, e.name.clone()), e);
        }
    }
    // Retention of what is in use and comes due.
    if let (Some(pol), Some(ver)) = (policy, dst.versioned()) {
        let t = pol.target(now);
        let extended: Vec<Result<(ObjKind, String)>> = pool.install(|| {
            p.extend
                .par_iter()
                .map(|(k, n)| {
                    let id = entries.get(&(*k, n.clone())).map(|e| e.version_id.clone()).unwrap_or_default();
                    ver.set_retention(*k, n, &id, t).map(|()| (*k, n.clone()))
                })
                .collect()
        });
        for r in extended {
            let key = r?;
            if let Some(e) = entries.get_mut(&key) {
                e.retain_until = t.until;
                report.extended += 1;
            }
        }
    }
    for d in &p.delete {
        entries.remove(d);
    }
    for (k, n, _) in &p.held {
        if let Some(e) = entries.get_mut(&(*k, n.clone())) {
            e.held = true;
        }
    }
    // The record of this sync travels with it: appended locally, sent before the manifest.
    report.elapsed = start.elapsed();
    let entry = Record::Sync(SyncRecord {
        remote: remote.name.clone(),
        time_unix: now_unix(),
        complete: true,
        uploaded: report.uploaded as u64,
        uploaded_bytes: report.uploaded_bytes,
        seconds: report.elapsed.as_secs_f64(),
        error: None,
    });
    let log_name = crate::repo::log::append(v, &entry)?;
    let log_bytes = v.store().get(ObjKind::Log, &log_name)?;
    let (id, until) = write(dst, policy, ObjKind::Log, &log_name, &log_bytes, now)?;
    entries.insert(
        (ObjKind::Log, log_name.clone()),
        Entry {
            version_id: id,
            retain_until: until,
            ..Entry::new(ObjKind::Log, &log_name, log_bytes.len() as u64, hash(&log_bytes))
        },
    );
    let mut list: Vec<Entry> = entries.into_values().collect();
    list.sort_by(|a, b| (a.kind.code(), &a.name).cmp(&(b.kind.code(), &b.name)));
    let bytes = manifest::encode(&list);
    lock.check()?;
    let written = if remote.append_only {
        write(dst, policy, ObjKind::Manifest, &journal_name(), &bytes, now)
    } else {
        write(dst, policy, ObjKind::Config, "manifest", &bytes, now)
    };
    let (manifest_version, _) = match written {
        Ok(w) => w,
        Err(e) => {
            let failed = Record::Sync(SyncRecord {
                remote: remote.name.clone(),
                time_unix: now_unix(),
                complete: false,
                error: Some(e.to_string()),
                ..Default::default()
            });
            let _ = crate::repo::log::append(v, &failed);
            return Err(e);
        }
    };
    if policy.is_some() {
        let st = State { vault_id: v.vault_id_hex(), manifest_version, manifest_hash: hex::encode(hash(&bytes)) };
        write_state(o, &remote.url, &st)?;
    }
    if remote.deletes() {
        // A copy that was append-only once: its journal manifests would outrank `manifest`.
        for (n, _) in dst.list(ObjKind::Manifest)? {
            dst.delete(ObjKind::Manifest, &n)?;
        }
    }
    match (policy, dst.versioned()) {
        (Some(_), Some(ver)) if remote.deletes() => {
            let keep: HashSet<(ObjKind, &str, &str)> =
                list.iter().map(|e| (e.kind, e.name.as_str(), e.version_id.as_str())).collect();
            report.pruned_versions = prune_versions(ver, &view.versions, &keep, &p, policy, now, &lock)?;
            report.deleted = p.delete.len();
        }
        (Some(_), Some(_)) => {}
        _ => {
            for (k, name) in &p.delete {
                lock.check()?;
                dst.delete(*k, name)?;
                report.deleted += 1;
            }
        }
    }
    report.not_replaced = not_replaced.into_inner().unwrap_or_else(|e| e.into_inner());
    report.not_replaced.extend(p.not_replaced.iter().cloned());
    report.plan = p;
    report.elapsed = start.elapsed();
    Ok(report)
}

/// The offsite prune of an object-locked remote: deletes every version that the new manifest
/// does not name and whose retention has ended (delete markers have none). Versions and delete
/// markers younger than the remote's retention period (plus margin) stay without a question:
/// they may be under a retention this vault set, and they are the recent history. Returns how
/// many versions went.
fn prune_versions(
    ver: &dyn Versioned,
    versions: &[ObjVersion],
    keep: &HashSet<(ObjKind, &str, &str)>,
    p: &SyncPlan,
    policy: Option<Policy>,
    now: i64,
    lock: &RemoteLock,
) -> Result<usize> {
    let Some(pol) = policy else { return Ok(0) };
    let held: HashSet<(ObjKind, &str)> = p.held.iter().map(|(k, n, _)| (*k, n.as_str())).collect();
    let mut n = 0;
    for x in versions {
        if keep.contains(&(x.kind, x.name.as_str(), x.version_id.as_str())) || held.contains(&(x.kind, x.name.as_str()))
        {
            continue;
        }
        // Live lock objects belong to the lock protocol.
        if x.kind == ObjKind::Lock && x.latest {
            continue;
        }
        // Young versions and delete markers stay: the history `--as-of` reads (and the trace of
        // an attack) is kept as long as the retention this vault sets.
        let age = now - x.modified_ns / 1_000_000_000;
        if age < pol.keep + pol.margin {
            continue;
        }
        if !x.delete_marker {
            match ver.retention(x.kind, &x.name, &x.version_id) {
                Ok(Some(r)) if r.until > now => continue,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        lock.check()?;
        ver.delete_version(x.kind, &x.name, &x.version_id)?;
        n += 1;
    }
    Ok(n)
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: usize,
    pub bytes: u64,
    /// `kind/name: problem` of every missing or damaged object.
    pub bad: Vec<String>,
    /// Objects on the copy that its manifest does not name (left by an interrupted sync, or
    /// put there by someone else).
    pub extra: Vec<String>,
    /// Objects of the manifest the vault no longer has (kept by a keep-all, append-only or
    /// object-locked remote).
    pub not_in_vault: usize,
    /// Objects of the vault the copy does not have yet (the next sync sends them).
    pub not_synced: usize,
}

/// Checks every object of a remote against its manifest (no key needed), and compares the
/// copy's listing with the manifest (and with the vault, when given). With the vault, damaged
/// or missing objects are dropped from the manifest, so that the next sync sends them again;
/// without it (a check by URL, without the key) nothing on the copy is changed.
pub fn verify(v: Option<&Vault>, remote: &Remote, dst: &Arc<dyn Store>, o: &SyncOptions) -> Result<VerifyReport> {
    let list = read_manifest(&**dst)?;
    if list.is_empty() {
        // Nothing to check against is not a copy that checks out.
        return Err(Error::corrupt(format!(
            "{}: no manifest: not a complete offsite copy (never synced to the end, emptied, or a wrong URL){}",
            dst.describe(),
            if v.is_some() { "; the next sync sends everything it lacks" } else { "" }
        )));
    }
    let results: Vec<(Entry, Option<String>, u64)> = o.pool()?.install(|| {
        list.clone()
            .into_par_iter()
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
    let named: HashSet<(ObjKind, &str)> = list.iter().map(|e| (e.kind, e.name.as_str())).collect();
    for k in ObjKind::ALL {
        for (n, _) in dst.list(k)? {
            let is_manifest = k == ObjKind::Config && n == "manifest";
            if !is_manifest && !named.contains(&(k, n.as_str())) {
                r.extra.push(k.path(&n));
            }
        }
    }
    if let Some(v) = v {
        let local: HashSet<(ObjKind, String)> = local_objects(v)?.into_iter().map(|(k, n, _)| (k, n)).collect();
        r.not_in_vault = list.iter().filter(|e| !local.contains(&(e.kind, e.name.clone()))).count();
        r.not_synced = local.iter().filter(|(k, n)| !named.contains(&(*k, n.as_str()))).count();
    }
    if !r.bad.is_empty() && v.is_some() {
        let _lock = o.lock_remote(remote, dst, "vaultctl sync --verify")?;
        keep.sort_by(|a, b| (a.kind.code(), &a.name).cmp(&(b.kind.code(), &b.name)));
        let bytes = manifest::encode(&keep);
        if remote.append_only {
            write(&**dst, Policy::of(remote), ObjKind::Manifest, &journal_name(), &bytes, now_unix())?;
        } else {
            // On a versioned remote this manifest is not the one the last sync recorded, so
            // the next sync checks every object against the vault.
            write(&**dst, Policy::of(remote), ObjKind::Config, "manifest", &bytes, now_unix())?;
        }
    }
    r.bad.sort();
    r.extra.sort();
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
