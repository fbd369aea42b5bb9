//! The mount's file model, independent of FUSE: inodes, handles, the writable tree of the
//! current period, the read-only dated directories, and when things are committed.
//!
//! Root = the current period's files + one directory per period + `latest` (a symlink to the
//! newest sealed period). The current period's dated directory shows the same entries as the
//! root. Every modifying call on a sealed period fails with `ReadOnly` (EROFS). The writable
//! period holds every node type: files, directories, symlinks, hard links, fifos, sockets and
//! devices, with owner, mode and atime/mtime/ctime to the nanosecond (docs/SEMANTICS.md).
//!
//! Durability (docs/SEMANTICS.md, docs/DESIGN.md §10b): a close or fsync of a written file
//! chunks and packs the rest of its content, journals it with the mount's [`Live`] writer and
//! waits for one `fdatasync` of the journal, shared with concurrent closes. Directory changes
//! are journaled at once and synced within a second. Checkpoints (packs, index file,
//! revisions) run from [`VaultFs::maintain`]: every few seconds or megabytes, when idle, at
//! unmount and before a period is sealed. The close by the process that opened the file
//! records it complete; fsync, or a close by another process (a forked copy of the
//! descriptor), records it incomplete until the last close. After a crash an incomplete file
//! appears as `NAME.incomplete`, never under its real name.
//!
//! Concurrency: requests run on several threads. The snapshot side (`snaps.rs`: dated
//! directories of sealed periods, `latest`) has its own lock and never waits for the writable
//! side (`tree.rs`), for a checkpoint or for the writer lock; reads through a handle take no
//! lock of this module at all. Lock order: the writer's gate ([`Live::begin`]) → `tree` →
//! `snaps` → `handles` → a file's data → the writer's internals.
//!
//! Locking of the vault: a writable mount holds `mount.lock` for its life, and the vault's
//! writer lock while something is not checkpointed, any file is open for writing, or for two
//! seconds after the last change; on taking it again it reloads what other writers (put,
//! run, prune) committed meanwhile.
//!
//! Period rollover: every call checks the vault clock. When the period has changed, the root
//! shows the new period; the old one is checkpointed and sealed as soon as no file is open
//! for writing in it (a file open across midnight stays in the period it was created in).
//!
//! Must never: hold plaintext on disk, keep file content in memory beyond the limits of
//! `file.rs`, or show a file whose content was never committed under its real name after a
//! restart.

mod attr;
pub mod file;
mod flow;
mod snaps;
mod tree;

#[cfg(test)]
mod tests;

use attr::{sealed_attr, FIRST_FREE, LINK_MAX, NAME_MAX, TARGET_MAX};
pub use attr::{Attr, DirEntry, Fh, Ino, Kind, SetAttr, LATEST, ROOT};
use file::FileData;
use snaps::{count_links, SNode, Snaps};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tree::{not_dir, stale, Body, FileNode, LiveNode, Times, Tree};
use vault::format::tree::{FileState, Node, NodeKind, Time};
use vault::id::TreeId;
use vault::period::reserved_at_root;
use vault::repo::edit::Op;
use vault::repo::live::{Gate, Live, Prepare, Ticket};
use vault::repo::{FileReader, SnapshotInfo, Vault};
use vault::{Error, ErrorKind, Result};

/// How long a change waits for another writer (a prune, `vaultctl put`) to finish.
const LOCK_WAIT: Duration = Duration::from_secs(3600);
/// The writer lock is given back after this long without changes (and nothing open).
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);
/// Journaled directory changes are synced at the latest after this long.
const SYNC_DELAY: Duration = Duration::from_secs(1);
/// A checkpoint runs at the latest this long after the first change it would commit.
const CHECKPOINT_AGE: Duration = Duration::from_secs(10);
/// ... or once this much has been journaled.
const CHECKPOINT_BYTES: u64 = 16 << 20;
/// After a failed background commit (a full disk), the next attempt waits this long.
const FAILURE_PAUSE: Duration = Duration::from_secs(5);

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_ISGID: u32 = 0o2000;

struct Handle {
    ino: Ino,
    write: bool,
    /// Process that opened it (thread group id), to tell its own close from a forked copy's.
    owner: u32,
    file: Option<Arc<FileNode>>,
    /// Chunk table and read-ahead, built once per open, for files of sealed snapshots and
    /// committed files nobody is writing (with the content generation it was built for).
    reader: Option<(FileReader<'static>, u64)>,
}

pub struct VaultFs {
    v: &'static Vault,
    live: Option<Arc<Live>>,
    /// Held for the life of a writable mount: one writable mount per vault.
    _mount_lock: Option<vault::repo::lock::VaultLock>,
    tree: Mutex<Tree>,
    snaps: Mutex<Snaps>,
    handles: Mutex<HashMap<Fh, Arc<Handle>>>,
    next_fh: AtomicU64,
    next_ino: AtomicU64,
    /// The current period, readable without the tree lock.
    cur: RwLock<String>,
    /// Unmounted: the maintenance thread stops.
    stopped: AtomicBool,
    /// The last failed background commit (a full disk): retried after a pause, logged once.
    failure: Mutex<Option<(std::time::Instant, String)>>,
    /// When a lookup that found nothing last looked for what other writers committed.
    miss_refreshed: Mutex<Option<std::time::Instant>>,
    uid: u32,
    gid: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn validate_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::new(ErrorKind::NameTooLong, "file name too long"));
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::invalid("invalid file name"));
    }
    Ok(())
}

fn is_dir() -> Error {
    Error::new(ErrorKind::IsDir, "is a directory")
}

impl VaultFs {
    /// Opens the file model over a vault. With `writable`, takes `mount.lock` for the life of
    /// the mount, replays journals and seals ended periods (under the writer lock, given back
    /// before returning) and loads the current period's tree.
    pub fn new(v: &'static Vault, writable: bool, uid: u32, gid: u32) -> Result<Self> {
        let mount_lock = if writable {
            Some(vault::repo::lock::VaultLock::exclusive_named(
                &**v.store(),
                "mount.lock",
                Duration::from_secs(5),
                "vaultfs mount",
            )?)
        } else {
            None
        };
        let cur = v.clock().current();
        let fs = VaultFs {
            v,
            live: if writable { Some(Arc::new(Live::new(v, "vaultfs mount", LOCK_WAIT))) } else { None },
            _mount_lock: mount_lock,
            tree: Mutex::new(Tree {
                nodes: HashMap::new(),
                live_roots: BTreeMap::new(),
                cur: cur.clone(),
                loaded: HashMap::new(),
                deferred: Vec::new(),
            }),
            snaps: Mutex::new(Snaps::new(cur.clone())),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            next_ino: AtomicU64::new(FIRST_FREE.0),
            cur: RwLock::new(cur.clone()),
            stopped: AtomicBool::new(false),
            failure: Mutex::new(None),
            miss_refreshed: Mutex::new(None),
            uid,
            gid,
        };
        match &fs.live {
            Some(live) => {
                // Taking the lock replays journals left by a killed mount and seals ended
                // periods; the reload then shows the result.
                let g = live.begin_with(Duration::from_secs(5), &|s| fs.reload(s))?;
                fs.open_live_period(&cur)?;
                fs.log_deferred()?;
                drop(g);
                live.release()?;
            }
            None => {
                // Read-only: a revision that cannot be read leaves out only itself.
                let snaps = v.readable_snapshots()?.0;
                lock(&fs.snaps).apply_periods(&fs.next_ino, &snaps, false);
            }
        }
        Ok(fs)
    }

    pub fn is_writable(&self) -> bool {
        self.live.is_some()
    }

    /// Whether [`VaultFs::shutdown`] ran.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Whether this mount holds the vault's writer lock right now.
    #[cfg(test)]
    pub fn holds_lock(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.holds_lock())
    }

    pub fn current_period(&self) -> String {
        self.cur.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn live(&self) -> Result<&Arc<Live>> {
        self.live.as_ref().ok_or_else(|| Error::read_only("the vault is mounted read-only"))
    }

    /// The writer's gate, taking the writer lock first if needed (waiting for another writer,
    /// such as a prune, to finish). Whatever another writer committed meanwhile is loaded
    /// before anything changes here; deferred renames are journaled first.
    fn begin(&self) -> Result<Gate<'_>> {
        let g = self.gate()?;
        self.log_deferred()?;
        Ok(g)
    }

    /// [`VaultFs::begin`] without journaling deferred renames (writes into a file).
    fn gate(&self) -> Result<Gate<'_>> {
        let live = self.live()?;
        live.begin(&|s| self.reload(s))
    }

    fn alloc(&self) -> Ino {
        Ino(self.next_ino.fetch_add(1, Ordering::SeqCst))
    }

    /// Journals the renames of incomplete files found when a period was loaded.
    fn log_deferred(&self) -> Result<()> {
        let Some(live) = &self.live else { return Ok(()) };
        let mut t = lock(&self.tree);
        if t.deferred.is_empty() || !live.holds_lock() {
            return Ok(());
        }
        let ops = std::mem::take(&mut t.deferred);
        let mut by_period: BTreeMap<String, Vec<Op>> = BTreeMap::new();
        for (p, op) in ops {
            by_period.entry(p).or_default().push(op);
        }
        for (p, ops) in by_period {
            live.log(&p, ops)?;
        }
        Ok(())
    }

    /// Replaces what this mount shows by what is committed in the vault (another writer
    /// committed, or a read-only mount refreshes). Never called with anything uncommitted.
    fn reload(&self, snaps: &[SnapshotInfo]) -> Result<()> {
        let writable = self.live.is_some();
        let mut t = lock(&self.tree);
        lock(&self.snaps).apply_periods(&self.next_ino, snaps, writable);
        let periods: Vec<String> = t.live_roots.keys().cloned().collect();
        for period in periods {
            let now = snaps.iter().find(|s| s.snap.period == period).cloned();
            let known = t.loaded.get(&period).cloned().flatten();
            if now.as_ref().map(|s| s.id) == known {
                continue;
            }
            match now {
                Some(s) if s.snap.sealed => {
                    t.live_roots.remove(&period);
                    t.loaded.remove(&period);
                    let mut sn = lock(&self.snaps);
                    sn.sealed_roots.insert(period.clone(), s.snap.root);
                    sn.live.remove(&period);
                }
                now => self.reload_live(&mut t, &period, now)?,
            }
        }
        Ok(())
    }

    fn new_root(&self, period: &str) -> (Ino, LiveNode) {
        (
            self.alloc(),
            LiveNode {
                links: vec![(ROOT, Vec::new())],
                period: period.to_string(),
                mode: S_IFDIR | 0o755,
                uid: self.uid,
                gid: self.gid,
                times: Times::all(Time::now()),
                body: Body::Dir { children: BTreeMap::new() },
                link_id: 0,
                logged: true,
            },
        )
    }

    /// Builds the live tree of a writable period from its last revision (or empty).
    fn open_live_period(&self, period: &str) -> Result<()> {
        let Some(live) = &self.live else { return Ok(()) };
        let mut t = lock(&self.tree);
        if t.live_roots.contains_key(period) {
            return Ok(());
        }
        let snaps = self.v.snapshots()?;
        vault::repo::snapshots::refuse_backdating(&snaps, period)?;
        let base = snaps.into_iter().find(|s| s.snap.period == period);
        {
            let mut sn = lock(&self.snaps);
            sn.period_ino(&self.next_ino, period);
            if let Some(b) = &base {
                if b.snap.sealed {
                    // Sealed early (`vaultctl seal`): the rest of the period is read-only.
                    sn.sealed_roots.insert(period.to_string(), b.snap.root);
                    return Ok(());
                }
            }
        }
        let (root, node) = self.new_root(period);
        t.nodes.insert(root, node);
        if let Some(b) = &base {
            let mut links = HashMap::new();
            self.load_live(&mut t, root, b.snap.root, period, &mut Vec::new(), &HashMap::new(), &mut links)?;
        }
        t.live_roots.insert(period.to_string(), root);
        t.loaded.insert(period.to_string(), base.as_ref().map(|b| b.id));
        lock(&self.snaps).live.insert(period.to_string());
        live.set_base(period, base);
        Ok(())
    }

    /// Replaces the live tree of a period by its revision `base`, which another writer
    /// committed. Paths that still exist keep their inode numbers.
    fn reload_live(&self, t: &mut Tree, period: &str, base: Option<SnapshotInfo>) -> Result<()> {
        let Some(&root) = t.live_roots.get(period) else { return Ok(()) };
        let mut old: HashMap<Vec<Vec<u8>>, (Ino, Kind)> = HashMap::new();
        collect_paths(t, root, &mut Vec::new(), &mut old);
        let open: std::collections::HashSet<Ino> = lock(&self.handles).values().map(|h| h.ino).collect();
        for (ino, _) in old.values() {
            if !open.contains(ino) {
                t.nodes.remove(ino);
            } else if let Some(n) = t.nodes.get_mut(ino) {
                n.links.clear();
            }
        }
        t.children_mut(root)?.clear();
        t.deferred.retain(|(p, _)| p != period);
        if let Some(b) = &base {
            let mut links = HashMap::new();
            self.load_live(t, root, b.snap.root, period, &mut Vec::new(), &old, &mut links)?;
        }
        t.loaded.insert(period.to_string(), base.as_ref().map(|b| b.id));
        if let Some(live) = &self.live {
            live.set_base(period, base);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn load_live(
        &self,
        t: &mut Tree,
        dir: Ino,
        tree: TreeId,
        period: &str,
        path: &mut Vec<Vec<u8>>,
        reuse: &HashMap<Vec<Vec<u8>>, (Ino, Kind)>,
        links: &mut HashMap<u64, Ino>,
    ) -> Result<()> {
        let tr = self.v.load_tree(tree)?;
        for n in &tr.nodes {
            let mut name = n.name.clone();
            // A second name of a hard-linked file: one more link to the node loaded first.
            if n.link != 0 && !matches!(n.kind, NodeKind::Dir { .. }) {
                if let Some(&ino) = links.get(&n.link) {
                    if let Some(x) = t.nodes.get_mut(&ino) {
                        x.links.push((dir, name.clone()));
                        t.children_mut(dir)?.insert(name, ino);
                        continue;
                    }
                }
            }
            let times = Times { atime: n.atime, mtime: n.mtime, ctime: n.ctime };
            let body = match &n.kind {
                NodeKind::Dir { .. } => Body::Dir { children: BTreeMap::new() },
                NodeKind::File { state, content } => {
                    // A file that was never closed is never shown under its real name.
                    if *state == FileState::Incomplete && !name.ends_with(b".incomplete") && n.link == 0 {
                        let mut shown = name.clone();
                        shown.extend_from_slice(b".incomplete");
                        if tr.get(&shown).is_none() && shown.len() <= NAME_MAX {
                            let mut from = path.clone();
                            from.push(name.clone());
                            let mut to = path.clone();
                            to.push(shown.clone());
                            t.deferred.push((period.to_string(), Op::Rename { from, to }));
                            name = shown;
                        }
                    }
                    Body::File(FileNode::new(FileData::from_content(content.clone(), *state), times))
                }
                NodeKind::Symlink { target } => Body::Symlink(target.clone()),
                k => Body::Special(k.clone()),
            };
            let kind = Kind::of(&n.kind);
            path.push(name.clone());
            let node = LiveNode {
                links: vec![(dir, name.clone())],
                period: period.to_string(),
                mode: n.mode,
                uid: n.uid,
                gid: n.gid,
                times,
                body,
                link_id: n.link,
                logged: true,
            };
            let ino = match reuse.get(path.as_slice()) {
                Some((ino, k)) if *k == kind && !t.nodes.contains_key(ino) => *ino,
                _ => self.alloc(),
            };
            t.nodes.insert(ino, node);
            t.children_mut(dir)?.insert(name, ino);
            if n.link != 0 {
                links.insert(n.link, ino);
            }
            if let NodeKind::Dir { tree } = n.kind {
                self.load_live(t, ino, tree, period, path, reuse, links)?;
            }
            path.pop();
        }
        Ok(())
    }

    /// Notices a new period: the root switches to it. The old one is sealed by
    /// [`VaultFs::maintain`] once no file is open for writing in it.
    fn tick(&self) -> Result<()> {
        if self.live.is_none() {
            return Ok(());
        }
        let now = self.v.clock().current();
        if *self.cur.read().unwrap_or_else(|e| e.into_inner()) == now {
            return Ok(());
        }
        {
            let mut t = lock(&self.tree);
            if t.cur == now {
                return Ok(());
            }
            t.cur = now.clone();
            let mut sn = lock(&self.snaps);
            sn.cur = now.clone();
            sn.period_ino(&self.next_ino, &now);
        }
        *self.cur.write().unwrap_or_else(|e| e.into_inner()) = now.clone();
        self.open_live_period(&now)
    }

    /// Whether any file of `period` is open for writing.
    fn writers_in(&self, t: &Tree, period: &str) -> bool {
        lock(&self.handles).values().any(|h| h.write && t.nodes.get(&h.ino).is_some_and(|n| n.period == period))
    }

    fn any_writer(&self) -> bool {
        lock(&self.handles).values().any(|h| h.write)
    }

    /// Checkpoints and seals a period that is no longer current, unless files are still open
    /// for writing in it.
    fn try_seal(&self, period: &str) -> Result<()> {
        let Some(live) = &self.live else { return Ok(()) };
        {
            let t = lock(&self.tree);
            if period == t.cur || !t.live_roots.contains_key(period) || self.writers_in(&t, period) {
                return Ok(());
            }
        }
        let _g = self.begin()?;
        {
            let t = lock(&self.tree);
            // Taking the lock may show that another writer sealed it already.
            if !t.live_roots.contains_key(period) || self.writers_in(&t, period) {
                return Ok(());
            }
        }
        self.log_dirty_dirs()?;
        live.checkpoint(&[period.to_string()])?;
        let sealed = live.base(period);
        let mut t = lock(&self.tree);
        // The live nodes stay (open read handles may use them) but are no longer writable.
        t.live_roots.remove(period);
        t.loaded.remove(period);
        let mut sn = lock(&self.snaps);
        sn.live.remove(period);
        if let Some(s) = sealed {
            sn.sealed_roots.insert(period.to_string(), s.snap.root);
        }
        Ok(())
    }

    /// Journals the attributes of every directory changed since they were last journaled.
    fn log_dirty_dirs(&self) -> Result<()> {
        let Some(live) = &self.live else { return Ok(()) };
        let mut t = lock(&self.tree);
        let dirty: Vec<Ino> = t
            .nodes
            .iter()
            .filter(|(_, n)| !n.logged && !n.unlinked() && matches!(n.body, Body::Dir { .. }))
            .map(|(i, _)| *i)
            .collect();
        let mut by_period: BTreeMap<String, Vec<Op>> = BTreeMap::new();
        for ino in dirty {
            let period = match t.nodes.get(&ino) {
                Some(n) if t.live_roots.contains_key(&n.period) => n.period.clone(),
                _ => continue,
            };
            if let Some(op) = t.dir_op(ino) {
                by_period.entry(period).or_default().push(op);
            }
            if let Some(n) = t.nodes.get_mut(&ino) {
                n.logged = true;
            }
        }
        for (p, ops) in by_period {
            live.log(&p, ops)?;
        }
        Ok(())
    }

    /// Periodic work of a writable mount (called every few hundred milliseconds by the
    /// daemon; `force` checkpoints and releases now, as the tests do): period rollover and
    /// sealing, syncing journaled directory changes, checkpoints, and giving the writer lock
    /// back when idle. Returns messages worth logging.
    /// Messages of the writer not yet logged (journal replays when the mount opened).
    pub fn take_notices(&self) -> Vec<String> {
        self.live.as_ref().map(|l| l.take_notices()).unwrap_or_default()
    }

    pub fn maintain(&self, force: bool) -> Vec<String> {
        let Some(live) = &self.live else { return Vec::new() };
        let mut msgs = Vec::new();
        let paused = lock(&self.failure).as_ref().is_some_and(|(t, _)| t.elapsed() < FAILURE_PAUSE);
        if !paused || force {
            match self.maintain_inner(live, force) {
                Ok(()) => {
                    if lock(&self.failure).take().is_some() {
                        msgs.push("background commit: working again".to_string());
                    }
                }
                Err(e) => {
                    let msg = format!("background commit failed (retried every {} s): {e}", FAILURE_PAUSE.as_secs());
                    let mut f = lock(&self.failure);
                    if f.as_ref().map(|(_, m)| m) != Some(&msg) {
                        msgs.push(msg.clone());
                    }
                    *f = Some((std::time::Instant::now(), msg));
                }
            }
        }
        // Notices repeat what a failure already said; keep the rest.
        msgs.extend(live.take_notices().into_iter().filter(|n| !n.starts_with("checkpoint failed")));
        msgs
    }

    fn maintain_inner(&self, live: &Live, force: bool) -> Result<()> {
        self.tick()?;
        let ended: Vec<String> = {
            let t = lock(&self.tree);
            t.live_roots.keys().filter(|p| **p != t.cur).cloned().collect()
        };
        for p in ended {
            self.try_seal(&p)?;
        }
        let st = live.status();
        if !st.holds_lock {
            return Ok(());
        }
        if st.unsynced_for.is_some_and(|d| d >= SYNC_DELAY) || force {
            live.sync_all()?;
        }
        let idle = st.idle_for >= IDLE_RELEASE;
        let due = st.journaled_bytes >= CHECKPOINT_BYTES
            || st.since_first_op.is_some_and(|d| d >= CHECKPOINT_AGE)
            || (idle && st.pending_ops > 0)
            || st.failing;
        if due || force {
            self.log_dirty_dirs()?;
            live.checkpoint(&[])?;
        }
        if (idle || force) && !self.any_writer() {
            self.log_dirty_dirs()?;
            self.release_when_idle(live)?;
        }
        Ok(())
    }

    /// Gives the vault's writer lock back unless a file is open for writing, looked at again
    /// once no change is in progress. A file created or opened for writing after the caller's
    /// look is journaled only at its close: were the lock given back meanwhile, taking it
    /// again would reload the tree from the committed revisions and drop that file, and its
    /// close would succeed with nothing to journal.
    fn release_when_idle(&self, live: &Live) -> Result<bool> {
        live.release_if(&|| !self.any_writer())
    }

    // ----- node access -------------------------------------------------------------------

    /// Resolves ROOT and dated directories of writable periods to their live root.
    fn dir_target(&self, t: &Tree, sn: &Snaps, ino: Ino) -> Ino {
        let period = match ino {
            ROOT => Some(t.cur.as_str()),
            _ => match sn.nodes.get(&ino) {
                Some(SNode::Period(name)) => Some(name.as_str()),
                _ => None,
            },
        };
        period.and_then(|p| t.live_roots.get(p).copied()).unwrap_or(ino)
    }

    /// A writable directory: its live inode. Sealed places give `ReadOnly`.
    fn writable_dir(&self, t: &Tree, parent: Ino) -> Result<Ino> {
        let d = {
            let sn = lock(&self.snaps);
            self.dir_target(t, &sn, parent)
        };
        if d.is_snap() || d == LATEST {
            return Err(Error::read_only("snapshots of past periods are read-only"));
        }
        match t.nodes.get(&d) {
            Some(n) if n.unlinked() => Err(Error::not_found("directory was removed")),
            // An ended period takes nothing new while it waits to be sealed.
            Some(n) if n.period != t.cur => Err(Error::read_only("the period has ended")),
            Some(n) if t.live_roots.contains_key(&n.period) => match n.body {
                Body::Dir { .. } => Ok(d),
                _ => Err(not_dir()),
            },
            Some(_) => Err(Error::read_only("the period is sealed")),
            None if parent == ROOT => Err(Error::read_only("the current period is sealed")),
            None => Err(stale()),
        }
    }

    fn check_writable_node(&self, t: &Tree, ino: Ino) -> Result<()> {
        if ino.is_snap() || ino == ROOT || ino == LATEST {
            return Err(Error::read_only("snapshots of past periods are read-only"));
        }
        match t.nodes.get(&ino) {
            Some(n) if n.period == t.cur && t.live_roots.contains_key(&n.period) => Ok(()),
            // A file open for writing when its period ended is written to the end (and the
            // period sealed after it); nothing else in an ended period changes.
            Some(_) if lock(&self.handles).values().any(|h| h.ino == ino && h.write) => Ok(()),
            None => Err(stale()),
            _ => Err(Error::read_only("snapshots of past periods are read-only")),
        }
    }

    // ----- reading ---------------------------------------------------------------------

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let created = Time { sec: self.v.settings().created_unix, nsec: 0 };
        let dir = |ino, perm| Attr {
            ino,
            kind: Kind::Dir,
            size: 0,
            perm,
            uid: self.uid,
            gid: self.gid,
            atime: created,
            mtime: created,
            ctime: created,
            nlink: 2,
            rdev: 0,
        };
        if ino == ROOT {
            self.tick()?;
            let t = lock(&self.tree);
            return Ok(match t.live_roots.get(&t.cur).and_then(|r| t.attr(*r)) {
                Some(a) => Attr { ino: ROOT, ..a },
                None => dir(ROOT, 0o555),
            });
        }
        if ino == LATEST {
            let target = lock(&self.snaps).latest().ok_or_else(|| Error::not_found("no sealed snapshot yet"))?;
            return Ok(Attr { kind: Kind::Symlink, size: target.len() as u64, perm: 0o777, nlink: 1, ..dir(ino, 0) });
        }
        if ino.is_snap() {
            let sn = lock(&self.snaps);
            return match sn.nodes.get(&ino) {
                Some(SNode::Sealed { node, period }) => Ok(sealed_attr(ino, node, sn.nlink(period, node))),
                Some(SNode::Period(name)) => Ok(dir(ino, if sn.live.contains(name) { 0o755 } else { 0o555 })),
                None => Err(stale()),
            };
        }
        lock(&self.tree).attr(ino).ok_or_else(stale)
    }

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        if name.len() > NAME_MAX {
            return Err(Error::new(ErrorKind::NameTooLong, "file name too long"));
        }
        let ino = match self.child(parent, name) {
            // A name not found at the root or in a period's directory may have just been
            // stored by another writer (`vaultctl put today` before `mongorestore
            // --archive=/mnt/vault/today`): look for what was committed, at most once a second.
            Err(e) if e.kind() == ErrorKind::NotFound && self.period_level(parent) && self.miss_may_refresh() => {
                self.refresh()?;
                self.child(parent, name)?
            }
            r => r?,
        };
        self.getattr(ino)
    }

    /// Whether `dir` is the root or a period's directory.
    fn period_level(&self, dir: Ino) -> bool {
        dir == ROOT || matches!(lock(&self.snaps).nodes.get(&dir), Some(SNode::Period(_)))
    }

    /// True at most once a second (a lookup that finds nothing may then refresh).
    fn miss_may_refresh(&self) -> bool {
        let mut last = lock(&self.miss_refreshed);
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    fn child(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        let missing = || Error::not_found(format!("{}: no such file or directory", String::from_utf8_lossy(name)));
        if parent == ROOT {
            self.tick()?;
            let sn = lock(&self.snaps);
            let s = String::from_utf8_lossy(name);
            if s == "latest" && sn.latest().is_some() {
                return Ok(LATEST);
            }
            if let Some(i) = sn.periods.get(s.as_ref()) {
                return Ok(*i);
            }
        }
        let target = {
            let t = lock(&self.tree);
            let sn = lock(&self.snaps);
            self.dir_target(&t, &sn, parent)
        };
        if !target.is_snap() {
            let t = lock(&self.tree);
            return match t.nodes.get(&target).map(|n| &n.body) {
                Some(Body::Dir { children }) => children.get(name).copied().ok_or_else(missing),
                Some(_) => Err(not_dir()),
                None if parent == ROOT => Err(missing()),
                None => Err(stale()),
            };
        }
        self.sealed_child_of(target, name)
    }

    /// The tree of a node of the snapshot side (a dated directory or a sealed directory).
    fn sealed_tree(&self, ino: Ino) -> Result<Option<(TreeId, Arc<str>)>> {
        let sn = lock(&self.snaps);
        Ok(match sn.nodes.get(&ino) {
            Some(SNode::Period(p)) => sn.root_of(p).map(|t| (t, Arc::from(p.as_str()))),
            Some(SNode::Sealed { node, period }) => match node.kind {
                NodeKind::Dir { tree } => Some((tree, period.clone())),
                _ => return Err(not_dir()),
            },
            None => return Err(stale()),
        })
    }

    /// Counts the hard links of a period once, when one of them is first shown.
    fn count_links_of(&self, period: &str) -> Result<()> {
        let root = {
            let sn = lock(&self.snaps);
            if sn.counted(period) {
                return Ok(());
            }
            sn.root_of(period)
        };
        let Some(root) = root else { return Ok(()) };
        let counts = count_links(self.v, root)?;
        lock(&self.snaps).links.entry(period.to_string()).or_insert(counts);
        Ok(())
    }

    /// A child of a node of the snapshot side; the tree is loaded without holding the lock.
    fn sealed_child_of(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        let missing = || Error::not_found(format!("{}: no such file or directory", String::from_utf8_lossy(name)));
        if let Some(i) = lock(&self.snaps).children.get(&(parent, name.to_vec())) {
            return Ok(*i);
        }
        let (tree, period) = self.sealed_tree(parent)?.ok_or_else(missing)?;
        let t = self.v.load_tree(tree)?;
        let node = t.get(name).cloned().ok_or_else(missing)?;
        if node.link != 0 {
            self.count_links_of(&period)?;
        }
        Ok(lock(&self.snaps).child_ino(&self.next_ino, parent, &period, &node))
    }

    /// Shows what other processes committed (a prune, a put) when this mount holds nothing
    /// uncommitted; a read-only mount always refreshes.
    fn refresh(&self) -> Result<()> {
        match &self.live {
            Some(live) => {
                if let Some(r) = live.when_idle(|| -> Result<()> {
                    let snaps = self.v.snapshots()?;
                    self.reload(&snaps)
                }) {
                    r?;
                }
            }
            None => {
                let snaps = self.v.readable_snapshots()?.0;
                lock(&self.snaps).apply_periods(&self.next_ino, &snaps, false);
            }
        }
        Ok(())
    }

    /// Directory entries (without `.` and `..`).
    pub fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        if ino == ROOT {
            self.tick()?;
            self.refresh()?;
            let sn = lock(&self.snaps);
            for (p, i) in &sn.periods {
                out.push(DirEntry { ino: *i, name: p.clone().into_bytes(), kind: Kind::Dir });
            }
            if sn.latest().is_some() {
                out.push(DirEntry { ino: LATEST, name: b"latest".to_vec(), kind: Kind::Symlink });
            }
        }
        let target = {
            let t = lock(&self.tree);
            let sn = lock(&self.snaps);
            self.dir_target(&t, &sn, ino)
        };
        if !target.is_snap() {
            let t = lock(&self.tree);
            match t.nodes.get(&target).map(|n| &n.body) {
                Some(Body::Dir { children }) => {
                    for (name, i) in children {
                        let kind = t.nodes.get(i).map(|n| n.kind()).unwrap_or(Kind::File);
                        out.push(DirEntry { ino: *i, name: name.clone(), kind });
                    }
                }
                Some(_) => return Err(not_dir()),
                None if ino == ROOT => {}
                None => return Err(stale()),
            }
            return Ok(out);
        }
        let Some((tree, period)) = self.sealed_tree(target)? else { return Ok(out) };
        let tr = self.v.load_tree(tree)?;
        if tr.nodes.iter().any(|n| n.link != 0) {
            self.count_links_of(&period)?;
        }
        let mut sn = lock(&self.snaps);
        for n in &tr.nodes {
            let i = sn.child_ino(&self.next_ino, target, &period, n);
            out.push(DirEntry { ino: i, name: n.name.clone(), kind: Kind::of(&n.kind) });
        }
        Ok(out)
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        if ino == LATEST {
            return lock(&self.snaps)
                .latest()
                .map(|s| s.into_bytes())
                .ok_or_else(|| Error::not_found("no sealed snapshot yet"));
        }
        if ino.is_snap() {
            return match lock(&self.snaps).nodes.get(&ino) {
                Some(SNode::Sealed { node: Node { kind: NodeKind::Symlink { target }, .. }, .. }) => Ok(target.clone()),
                _ => Err(Error::invalid("not a symbolic link")),
            };
        }
        match lock(&self.tree).nodes.get(&ino).map(|n| &n.body) {
            Some(Body::Symlink(t)) => Ok(t.clone()),
            _ => Err(Error::invalid("not a symbolic link")),
        }
    }

    /// Reads through an open handle: committed files through the handle's own chunk table
    /// and read-ahead, files being written through their staged content. Takes no lock of
    /// the file model, so reads never wait for writers, commits or the writer lock.
    pub fn read_fh(&self, fh: Fh, off: u64, len: usize) -> Result<Vec<u8>> {
        let h = lock(&self.handles).get(&fh).cloned().ok_or_else(|| Error::invalid("bad file handle"))?;
        self.read_handle(&h, off, len).map_err(|e| {
            // The log line names the file, not only its inode.
            let path = if h.ino.is_snap() { lock(&self.snaps).path_of(h.ino) } else { lock(&self.tree).path_of(h.ino) };
            match path {
                Some(p) => e.context(p),
                None => e,
            }
        })
    }

    fn read_handle(&self, h: &Handle, off: u64, len: usize) -> Result<Vec<u8>> {
        if let Some((r, generation)) = &h.reader {
            let valid = match &h.file {
                Some(f) => {
                    let d = f.data();
                    d.lazy_content().is_some() && d.generation == *generation
                }
                None => true,
            };
            if valid {
                return r.read_at(off, len);
            }
        }
        match &h.file {
            Some(f) => f.data().read(self.live.as_ref(), self.v, off, len),
            None => Err(is_dir()),
        }
    }

    /// Reads a node without a handle (tests).
    #[cfg(test)]
    pub fn read(&self, ino: Ino, off: u64, len: usize) -> Result<Vec<u8>> {
        if ino.is_snap() {
            let node = match lock(&self.snaps).nodes.get(&ino) {
                Some(SNode::Sealed { node, .. }) => node.clone(),
                Some(_) => return Err(is_dir()),
                None => return Err(stale()),
            };
            return self.v.file_reader(&node)?.read_at(off, len);
        }
        let f = match lock(&self.tree).nodes.get(&ino).map(|n| &n.body) {
            Some(Body::File(f)) => f.clone(),
            Some(_) => return Err(is_dir()),
            None => return Err(stale()),
        };
        let mut d = f.data();
        d.read(self.live.as_ref(), self.v, off, len)
    }

    // ----- opening and writing ---------------------------------------------------------

    fn add_handle(&self, h: Handle) -> Fh {
        let fh = Fh(self.next_fh.fetch_add(1, Ordering::SeqCst));
        lock(&self.handles).insert(fh, Arc::new(h));
        fh
    }

    /// Opens a file; `owner` is the opening process (used by `flush`).
    pub fn open(&self, ino: Ino, write: bool, truncate: bool, owner: u32) -> Result<Fh> {
        if !write {
            if ino.is_snap() {
                let node = match lock(&self.snaps).nodes.get(&ino) {
                    Some(SNode::Sealed { node, .. }) => node.clone(),
                    Some(_) => return Err(is_dir()),
                    None => return Err(stale()),
                };
                let reader = match node.kind {
                    NodeKind::File { .. } => Some((self.v.file_reader(&node)?, 0)),
                    NodeKind::Dir { .. } => return Err(is_dir()),
                    _ => None,
                };
                return Ok(self.add_handle(Handle { ino, write, owner, file: None, reader }));
            }
            let f = match lock(&self.tree).nodes.get(&ino).map(|n| &n.body) {
                Some(Body::File(f)) => f.clone(),
                Some(Body::Dir { .. }) => return Err(is_dir()),
                Some(_) => return Err(Error::invalid("not a regular file")),
                None => return Err(stale()),
            };
            let reader = {
                let d = f.data();
                d.lazy_content().map(|c| FileReader::new(self.v, c).map(|r| (r, d.generation))).transpose()?
            };
            return Ok(self.add_handle(Handle { ino, write, owner, file: Some(f), reader }));
        }
        let _g = self.begin()?;
        self.tick()?;
        let f = {
            let t = lock(&self.tree);
            self.check_writable_node(&t, ino)?;
            match t.nodes.get(&ino).map(|n| &n.body) {
                Some(Body::File(f)) => f.clone(),
                Some(Body::Dir { .. }) => return Err(is_dir()),
                Some(_) => return Err(Error::invalid("not a regular file")),
                None => return Err(stale()),
            }
        };
        f.data().writers += 1;
        let fh = self.add_handle(Handle { ino, write, owner, file: Some(f.clone()), reader: None });
        if truncate {
            // With the handle registered first, the truncation is committed with the file.
            if let Err(e) = self.resize(&f, 0, true) {
                self.drop_handle(fh);
                return Err(e);
            }
        }
        Ok(fh)
    }

    fn drop_handle(&self, fh: Fh) -> Option<Arc<Handle>> {
        let h = lock(&self.handles).remove(&fh)?;
        if h.write {
            if let Some(f) = &h.file {
                let mut d = f.data();
                d.writers = d.writers.saturating_sub(1);
            }
        }
        Some(h)
    }

    /// Truncates or extends a file (with `times`, the change is recorded in mtime and ctime).
    fn resize(&self, f: &FileNode, size: u64, times: bool) -> Result<()> {
        let live = self.live()?;
        let mut d = f.data();
        d.truncate(live, size)?;
        f.size.store(d.size(), Ordering::SeqCst);
        if times {
            let now = Time::now();
            f.update_times(|t| {
                t.mtime = now;
                t.ctime = now;
            });
        }
        Ok(())
    }

    /// Checks shared by every call that adds a name: returns the live parent directory.
    fn add_name_checks(&self, t: &Tree, parent: Ino, name: &[u8], is_dir: bool) -> Result<Ino> {
        validate_name(name)?;
        let d = self.writable_dir(t, parent)?;
        let is_root = t.node(d)?.is_root();
        if is_root && reserved_at_root(&String::from_utf8_lossy(name), is_dir) {
            return Err(Error::new(ErrorKind::NotPermitted, "reserved name at the root of a period"));
        }
        if (is_root || parent == ROOT) && lock(&self.snaps).periods.contains_key(String::from_utf8_lossy(name).as_ref())
        {
            return Err(Error::new(ErrorKind::AlreadyExists, "file exists"));
        }
        if t.children(d)?.contains_key(name) {
            return Err(Error::new(ErrorKind::AlreadyExists, "file exists"));
        }
        Ok(d)
    }

    /// A new node in directory `d`: owner and group as POSIX says (a set-group-id directory
    /// passes its group on, and its set-group-id bit to subdirectories).
    fn new_node(t: &Tree, d: Ino, name: &[u8], mode: u32, owner: (u32, u32), body: Body, now: Time) -> LiveNode {
        let (uid, gid) = owner;
        let (period, dgid, dsetgid) =
            t.nodes.get(&d).map(|p| (p.period.clone(), p.gid, p.mode & S_ISGID != 0)).unwrap_or_default();
        let is_dir = matches!(body, Body::Dir { .. });
        let mut mode = mode;
        let gid = if dsetgid {
            if is_dir {
                mode |= S_ISGID;
            }
            dgid
        } else {
            gid
        };
        LiveNode {
            links: vec![(d, name.to_vec())],
            period,
            mode,
            uid,
            gid,
            times: Times::all(now),
            body,
            link_id: 0,
            logged: true,
        }
    }

    pub fn create(&self, parent: Ino, name: &[u8], mode: u32, uid: u32, gid: u32, owner: u32) -> Result<(Attr, Fh)> {
        let _g = self.begin()?;
        self.tick()?;
        let now = Time::now();
        let f = FileNode::new(FileData::created(), Times::all(now));
        let ino = {
            let mut t = lock(&self.tree);
            let d = self.add_name_checks(&t, parent, name, false)?;
            let node = Self::new_node(&t, d, name, S_IFREG | (mode & 0o7777), (uid, gid), Body::File(f.clone()), now);
            let ino = self.alloc();
            t.nodes.insert(ino, node);
            t.children_mut(d)?.insert(name.to_vec(), ino);
            // The file itself is journaled when it is closed or fsynced; until then it would
            // be absent after a crash.
            t.touch_dir(d, now);
            ino
        };
        f.data().writers += 1;
        let fh = self.add_handle(Handle { ino, write: true, owner, file: Some(f), reader: None });
        Ok((self.getattr(ino)?, fh))
    }

    pub fn write(&self, fh: Fh, off: u64, data: &[u8]) -> Result<usize> {
        let h = lock(&self.handles).get(&fh).cloned().ok_or_else(|| Error::invalid("bad file handle"))?;
        if !h.write {
            return Err(Error::invalid("file not open for writing"));
        }
        let f = h.file.clone().ok_or_else(|| Error::invalid("not a regular file"))?;
        let _g = self.gate()?;
        let live = self.live()?;
        let mut d = f.data();
        d.write(live, off, data)?;
        f.size.store(d.size(), Ordering::SeqCst);
        let now = Time::now();
        f.update_times(|t| {
            t.mtime = now;
            t.ctime = now;
        });
        Ok(data.len())
    }

    /// `fallocate`: makes sure `[off, off + len)` is backed; extends the file with zeros when
    /// it ends before (mode 0, what `posix_fallocate` asks). Other modes are not supported.
    pub fn fallocate(&self, fh: Fh, off: u64, len: u64, mode: i32) -> Result<()> {
        if mode != 0 {
            return Err(Error::unsupported("only fallocate mode 0 (allocate and extend) is supported"));
        }
        let h = lock(&self.handles).get(&fh).cloned().ok_or_else(|| Error::invalid("bad file handle"))?;
        if !h.write {
            return Err(Error::invalid("file not open for writing"));
        }
        let f = h.file.clone().ok_or_else(|| Error::invalid("not a regular file"))?;
        let _g = self.gate()?;
        let end = off.checked_add(len).ok_or_else(|| Error::new(ErrorKind::NoSpace, "beyond the largest size"))?;
        let grows = end > f.size.load(Ordering::SeqCst);
        if grows {
            self.resize(&f, end, false)?;
        }
        let now = Time::now();
        f.update_times(|t| {
            t.ctime = now;
            if grows {
                t.mtime = now;
            }
        });
        Ok(())
    }

    pub fn setattr(&self, shown: Ino, a: &SetAttr) -> Result<Attr> {
        let _g = self.begin()?;
        self.tick()?;
        let now = Time::now();
        let live = self.live()?;
        // The root (and the current period's dated directory) is the period's live root. Its
        // own attributes are shown but not stored: a snapshot has no node for its root.
        let ino = {
            let t = lock(&self.tree);
            let sn = lock(&self.snaps);
            self.dir_target(&t, &sn, shown)
        };
        let file = {
            let t = lock(&self.tree);
            self.check_writable_node(&t, ino)?;
            match &t.node(ino)?.body {
                Body::File(f) => Some(f.clone()),
                Body::Dir { .. } if a.size.is_some() => return Err(is_dir()),
                _ if a.size.is_some() => return Err(Error::invalid("not a regular file")),
                _ => None,
            }
        };
        if let (Some(size), Some(f)) = (a.size, &file) {
            self.resize(f, size, true)?;
        }
        let (period, ops) = {
            let mut t = lock(&self.tree);
            let n = t.node_mut(ino)?;
            if let Some(m) = a.mode {
                n.mode = (n.mode & S_IFMT) | (m & 0o7777);
            }
            if let Some(u) = a.uid {
                n.uid = u;
            }
            if let Some(g) = a.gid {
                n.gid = g;
            }
            n.update_times(|t| {
                if let Some(x) = a.atime {
                    t.atime = x;
                }
                if let Some(x) = a.mtime {
                    t.mtime = x;
                }
                t.ctime = now;
            });
            let period = n.period.clone();
            // What to journal: every name of a committed file, symlink or special file again
            // with its new attributes; a directory's attributes. A file never committed gets
            // them with its first commit.
            let ops = match &n.body {
                Body::Dir { .. } => {
                    n.logged = true;
                    t.dir_op(ino).into_iter().collect()
                }
                Body::File(f) => {
                    let c = f.data().journaled.clone();
                    match c {
                        Some(c) => t.put_ops(ino, Some(&c)),
                        None => Vec::new(),
                    }
                }
                _ => t.put_ops(ino, None),
            };
            (period, ops)
        };
        if !ops.is_empty() {
            live.log(&period, ops)?;
        }
        // A truncate by path (no descriptor open for writing) is committed at once.
        if a.size.is_some() {
            if let Some(f) = &file {
                if f.data().writers == 0 {
                    self.commit_file(ino, f, FileState::Complete, false)?;
                }
            }
        }
        self.getattr(shown)
    }

    /// Commits a file's content: staged bytes chunked and packed, every name of the file
    /// journaled with `state`, and (with `durable`) the journal synced before returning.
    fn commit_file(&self, ino: Ino, f: &FileNode, state: FileState, durable: bool) -> Result<()> {
        let live = self.live()?;
        let small = {
            let mut d = f.data();
            let unchanged = !d.dirty && d.committed.as_ref().map(|c| c.state) == Some(state);
            if unchanged && d.failed.is_none() {
                return Ok(());
            }
            d.finalize(live, state)?;
            d.small_chunks()
        };
        let what = match &small {
            Some(chunks) => Prepare::Small(chunks),
            None => Prepare::Bulk,
        };
        // Until the record is appended, the file may fall back to its last journaled content.
        let journaled = self.journal_file(live, ino, f, what).inspect_err(|e| f.data().failed = Some(e.kind()))?;
        if let (Some(ticket), true) = (journaled, durable) {
            live.sync(ticket)?;
        }
        Ok(())
    }

    /// Journals a file's committed content under every name (blobs first); `None` when it has
    /// no name any more.
    fn journal_file(&self, live: &Live, ino: Ino, f: &FileNode, what: Prepare<'_>) -> Result<Option<Ticket>> {
        live.prepare(what)?;
        let mut t = lock(&self.tree);
        let Some(n) = t.nodes.get(&ino) else { return Ok(None) };
        if !t.live_roots.contains_key(&n.period) {
            return Err(Error::read_only("the period was sealed while the file was open"));
        }
        let period = n.period.clone();
        let parents: Vec<Ino> = n.links.iter().map(|l| l.0).collect();
        let mut d = f.data();
        let Some(c) = d.committed.clone() else { return Ok(None) };
        let puts = t.put_ops(ino, Some(&c));
        if puts.is_empty() {
            return Ok(None);
        }
        let ops = t.with_dirs(&parents, puts);
        let ticket = live.log(&period, ops)?;
        d.journaled = Some(c);
        Ok(Some(ticket))
    }

    fn write_handle(&self, fh: Fh) -> Option<Arc<Handle>> {
        lock(&self.handles).get(&fh).filter(|h| h.write).cloned()
    }

    /// `close()` of one descriptor by process `caller`. The content is committed before close
    /// returns. It is recorded complete when the process that opened the file closes it and
    /// no other descriptor is open for writing; a close by another process (a forked child
    /// closing its copy while the writer goes on) records it incomplete if anything was
    /// written since the last commit, else changes nothing. `release` (the last close) marks
    /// it complete in any case.
    pub fn flush(&self, fh: Fh, caller: u32) -> Result<()> {
        let Some(h) = self.write_handle(fh) else { return Ok(()) };
        let Some(f) = &h.file else { return Ok(()) };
        let others = lock(&self.handles).iter().any(|(k, o)| *k != fh && o.write && o.ino == h.ino);
        let state = if caller == h.owner && !others { FileState::Complete } else { FileState::Incomplete };
        // A copy closed by another process (a child given the descriptor when the writer
        // started a program) after nothing more was written leaves the file as its last commit
        // recorded it: never turns the writer's complete close into an incomplete one.
        if caller != h.owner && !f.data().dirty {
            return Ok(());
        }
        let _g = self.begin()?;
        self.commit_file(h.ino, f, state, true)
    }

    /// `fsync()`: commits the file now; while it stays open for writing it is recorded as
    /// incomplete.
    pub fn fsync(&self, fh: Fh) -> Result<()> {
        let Some(h) = self.write_handle(fh) else { return Ok(()) };
        let Some(f) = &h.file else { return Ok(()) };
        let _g = self.begin()?;
        self.commit_file(h.ino, f, FileState::Incomplete, true)
    }

    /// The last close of a descriptor: when no writer is left, the file is complete. A file
    /// whose writes failed loses what was staged: it keeps its last committed content, or
    /// disappears if it never had any.
    pub fn release(&self, fh: Fh) -> Result<()> {
        // A writer's handle goes under the gate, which is kept until its file is committed:
        // the writer lock is given back only when no file is open for writing
        // ([`VaultFs::release_when_idle`]), never between the two.
        let gate = self.write_handle(fh).map(|_| self.begin());
        let Some(h) = self.drop_handle(fh) else { return Ok(()) };
        let Some((f, gate)) = h.file.as_ref().zip(gate) else { return Ok(()) };
        let (last, failed) = {
            let d = f.data();
            (d.writers == 0, d.failed.is_some())
        };
        let mut res = Ok(());
        if last && !failed {
            res = gate.and_then(|_g| self.commit_file(h.ino, f, FileState::Complete, true));
            if res.is_ok() {
                // Closed by its last writer: from now on its committed content is what it keeps.
                f.data().fresh = false;
            }
        } else {
            drop(gate);
        }
        if last {
            if failed || res.is_err() {
                self.drop_failed(h.ino, f);
            }
            f.data().unload();
        }
        let period = lock(&self.tree).nodes.get(&h.ino).map(|n| n.period.clone());
        if let Some(p) = period {
            if p != self.current_period() {
                self.try_seal(&p)?;
            }
        }
        res
    }

    /// Forgets the staged content of a file whose write or commit failed.
    fn drop_failed(&self, ino: Ino, f: &FileNode) {
        let (never_committed, journaled) = {
            let mut d = f.data();
            let fresh = d.fresh;
            d.reset_to_journaled();
            let journaled = d.committed.is_some();
            let empty = d.size() == 0;
            f.size.store(d.size(), Ordering::SeqCst);
            (!journaled || (fresh && empty), journaled)
        };
        if never_committed {
            let mut t = lock(&self.tree);
            let links = t.nodes.get_mut(&ino).map(|n| std::mem::take(&mut n.links)).unwrap_or_default();
            for (parent, name) in links {
                if let Ok(c) = t.children_mut(parent) {
                    if c.get(&name) == Some(&ino) {
                        c.remove(&name);
                        if journaled {
                            // Journaled empty by an earlier close: out of the journal too.
                            self.journal_removal(&mut t, parent, &name);
                        }
                    }
                }
            }
        }
    }

    /// Journals that `name` left directory `parent` (a failure is logged: a replay would then
    /// show the file as it was journaled).
    fn journal_removal(&self, t: &mut Tree, parent: Ino, name: &[u8]) {
        let (Some(mut path), Some(period), Some(live)) =
            (t.dir_path(parent), t.nodes.get(&parent).map(|n| n.period.clone()), self.live.as_ref())
        else {
            return;
        };
        path.push(name.to_vec());
        let ops = t.with_dirs(&[parent], vec![Op::Remove { path }]);
        if let Err(e) = live.log(&period, ops) {
            crate::log(&format!("dropping a file whose write failed: journaling it failed: {e}"));
        }
    }

    // ----- namespace operations ---------------------------------------------------------

    /// Adds a directory, symlink or special node: journaled at once with its parent.
    fn add_node(&self, parent: Ino, name: &[u8], mode: u32, uid: u32, gid: u32, body: Body) -> Result<Attr> {
        let _g = self.begin()?;
        self.tick()?;
        let live = self.live()?;
        let now = Time::now();
        let is_dir = matches!(body, Body::Dir { .. });
        let ino = {
            let mut t = lock(&self.tree);
            let d = self.add_name_checks(&t, parent, name, is_dir)?;
            let period = t.node(d)?.period.clone();
            let node = Self::new_node(&t, d, name, mode, (uid, gid), body, now);
            let ino = self.alloc();
            t.nodes.insert(ino, node);
            t.children_mut(d)?.insert(name.to_vec(), ino);
            t.touch_dir(d, now);
            let own = if is_dir { t.dir_op(ino).into_iter().collect() } else { t.put_ops(ino, None) };
            let ops = t.with_dirs(&[d], own);
            if let Err(e) = live.log(&period, ops) {
                t.nodes.remove(&ino);
                t.children_mut(d)?.remove(name);
                return Err(e);
            }
            ino
        };
        self.getattr(ino)
    }

    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32, uid: u32, gid: u32) -> Result<Attr> {
        self.add_node(parent, name, S_IFDIR | (mode & 0o7777), uid, gid, Body::Dir { children: BTreeMap::new() })
    }

    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], uid: u32, gid: u32) -> Result<Attr> {
        if target.len() > TARGET_MAX {
            return Err(Error::new(ErrorKind::NameTooLong, "symbolic link target too long"));
        }
        self.add_node(parent, name, S_IFLNK | 0o777, uid, gid, Body::Symlink(target.to_vec()))
    }

    /// `mknod`: fifos, sockets, character and block devices (and regular files, as create
    /// without opening).
    pub fn mknod(&self, parent: Ino, name: &[u8], mode: u32, rdev: u64, uid: u32, gid: u32) -> Result<Attr> {
        let kind = match mode & S_IFMT {
            0o010000 => NodeKind::Fifo,
            0o140000 => NodeKind::Socket,
            0o020000 => NodeKind::CharDevice { rdev },
            0o060000 => NodeKind::BlockDevice { rdev },
            0 | S_IFREG => {
                let (a, fh) = self.create(parent, name, mode, uid, gid, 0)?;
                self.flush(fh, 0)?;
                self.release(fh)?;
                return Ok(a);
            }
            _ => return Err(Error::invalid("mknod of this file type is not supported")),
        };
        let mode = kind.type_bits() | (mode & 0o7777);
        self.add_node(parent, name, mode, uid, gid, Body::Special(kind))
    }

    /// `link`: a new name for a file, symlink or special file of the same period.
    pub fn link(&self, ino: Ino, newparent: Ino, newname: &[u8]) -> Result<Attr> {
        let _g = self.begin()?;
        self.tick()?;
        let live = self.live()?;
        let now = Time::now();
        {
            let mut t = lock(&self.tree);
            if ino.is_snap() {
                return Err(Error::read_only("snapshots of past periods are read-only"));
            }
            let d = self.add_name_checks(&t, newparent, newname, false)?;
            let n = t.node(ino)?;
            if matches!(n.body, Body::Dir { .. }) {
                return Err(Error::new(ErrorKind::NotPermitted, "hard links to directories are not allowed"));
            }
            if n.unlinked() {
                return Err(Error::not_found("the file was removed"));
            }
            if n.period != t.node(d)?.period {
                return Err(Error::new(ErrorKind::CrossDevice, "cannot link across periods"));
            }
            if !t.live_roots.contains_key(&n.period) {
                return Err(Error::read_only("the period is sealed"));
            }
            if n.links.len() >= LINK_MAX {
                return Err(Error::new(ErrorKind::TooManyLinks, "too many links"));
            }
            let period = n.period.clone();
            let n = t.node_mut(ino)?;
            let new_id = n.link_id == 0;
            if new_id {
                n.link_id = rand::random::<u64>() | 1;
            }
            n.links.push((d, newname.to_vec()));
            n.update_times(|x| x.ctime = now);
            t.children_mut(d)?.insert(newname.to_vec(), ino);
            t.touch_dir(d, now);
            // Every name of a committed file carries the link id; a file never committed gets
            // its names with its first commit.
            let content = match &t.node(ino)?.body {
                Body::File(f) => f.data().journaled.clone().map(Some),
                _ => Some(None),
            };
            let puts = match content {
                Some(c) => t.put_ops(ino, c.as_ref()),
                None => Vec::new(),
            };
            let ops = t.with_dirs(&[d], puts);
            if let Err(e) = live.log(&period, ops) {
                let n = t.node_mut(ino)?;
                n.links.pop();
                if new_id {
                    n.link_id = 0;
                }
                t.children_mut(d)?.remove(newname);
                return Err(e);
            }
        }
        self.getattr(ino)
    }

    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: Ino, name: &[u8], dir: bool) -> Result<()> {
        if name.len() > NAME_MAX {
            return Err(Error::new(ErrorKind::NameTooLong, "file name too long"));
        }
        let _g = self.begin()?;
        self.tick()?;
        let live = self.live()?;
        let now = Time::now();
        let mut t = lock(&self.tree);
        let d = self.writable_dir(&t, parent)?;
        let c = *t
            .children(d)?
            .get(name)
            .ok_or_else(|| Error::not_found(format!("{}: no such file or directory", String::from_utf8_lossy(name))))?;
        match (&t.node(c)?.body, dir) {
            (Body::Dir { children }, true) if !children.is_empty() => {
                return Err(Error::new(ErrorKind::NotEmpty, "directory not empty"))
            }
            (Body::Dir { .. }, true) => {}
            (_, true) => return Err(not_dir()),
            (Body::Dir { .. }, false) => return Err(is_dir()),
            (_, false) => {}
        }
        let period = t.node(d)?.period.clone();
        let mut path = t.dir_path(d).ok_or_else(stale)?;
        path.push(name.to_vec());
        t.touch_dir(d, now);
        let ops = t.with_dirs(&[d], vec![Op::Remove { path }]);
        live.log(&period, ops)?;
        t.children_mut(d)?.remove(name);
        // The inode stays for open handles; it is simply no longer reachable by this name.
        let n = t.node_mut(c)?;
        if let Some(i) = n.links.iter().position(|(p, x)| *p == d && x.as_slice() == name) {
            n.links.remove(i);
        }
        n.update_times(|x| x.ctime = now);
        Ok(())
    }

    pub fn rename(&self, parent: Ino, name: &[u8], newparent: Ino, newname: &[u8], noreplace: bool) -> Result<()> {
        if name.len() > NAME_MAX {
            return Err(Error::new(ErrorKind::NameTooLong, "file name too long"));
        }
        validate_name(newname)?;
        let _g = self.begin()?;
        self.tick()?;
        let live = self.live()?;
        let mut t = lock(&self.tree);
        let d = self.writable_dir(&t, parent)?;
        let nd = self.writable_dir(&t, newparent)?;
        if t.node(d)?.period != t.node(nd)?.period {
            return Err(Error::new(ErrorKind::CrossDevice, "cannot move files between periods"));
        }
        let c = *t
            .children(d)?
            .get(name)
            .ok_or_else(|| Error::not_found(format!("{}: no such file or directory", String::from_utf8_lossy(name))))?;
        let is_dir = matches!(t.node(c)?.body, Body::Dir { .. });
        if t.node(nd)?.is_root() {
            let s = String::from_utf8_lossy(newname);
            if reserved_at_root(&s, is_dir) || lock(&self.snaps).periods.contains_key(s.as_ref()) {
                return Err(Error::new(ErrorKind::NotPermitted, "reserved name at the root of a period"));
            }
        }
        // Refuse moving a directory into itself.
        let mut up = nd;
        loop {
            if up == c {
                return Err(Error::invalid("cannot move a directory into itself"));
            }
            let n = t.node(up)?;
            if n.is_root() {
                break;
            }
            up = n.links.first().map(|l| l.0).ok_or_else(stale)?;
        }
        let existing = t.children(nd)?.get(newname).copied();
        if let Some(existing) = existing {
            if existing == c {
                // Two names of one file (or the same name): nothing to do.
                return Ok(());
            }
            if noreplace {
                return Err(Error::new(ErrorKind::AlreadyExists, "file exists"));
            }
            match (&t.node(existing)?.body, is_dir) {
                (Body::Dir { children }, true) if !children.is_empty() => {
                    return Err(Error::new(ErrorKind::NotEmpty, "directory not empty"))
                }
                (Body::Dir { .. }, false) => return Err(is_dir_err()),
                (Body::Dir { .. }, true) => {}
                (_, true) => return Err(not_dir()),
                _ => {}
            }
        }
        let now = Time::now();
        let period = t.node(d)?.period.clone();
        let mut from = t.dir_path(d).ok_or_else(stale)?;
        from.push(name.to_vec());
        let mut to = t.dir_path(nd).ok_or_else(stale)?;
        to.push(newname.to_vec());
        t.touch_dir(d, now);
        t.touch_dir(nd, now);
        let ops = t.with_dirs(&[d, nd], vec![Op::Rename { from, to }]);
        live.log(&period, ops)?;
        if let Some(existing) = existing {
            if let Ok(n) = t.node_mut(existing) {
                if let Some(i) = n.links.iter().position(|(p, x)| *p == nd && x.as_slice() == newname) {
                    n.links.remove(i);
                }
                n.update_times(|x| x.ctime = now);
            }
        }
        t.children_mut(d)?.remove(name);
        t.children_mut(nd)?.insert(newname.to_vec(), c);
        let n = t.node_mut(c)?;
        if let Some(l) = n.links.iter_mut().find(|(p, x)| *p == d && x.as_slice() == name) {
            *l = (nd, newname.to_vec());
        }
        n.update_times(|x| x.ctime = now);
        Ok(())
    }

    /// Commits every file being written (as incomplete) and every directory change, and
    /// syncs the journal (the unmount's first step).
    pub fn commit_all(&self) -> Result<()> {
        let Some(live) = &self.live else { return Ok(()) };
        if !live.holds_lock() {
            return Ok(());
        }
        let _g = self.begin()?;
        let dirty: Vec<(Ino, Arc<FileNode>)> = {
            let t = lock(&self.tree);
            t.nodes
                .iter()
                .filter(|(_, n)| !n.unlinked() && t.live_roots.contains_key(&n.period))
                .filter_map(|(i, n)| match &n.body {
                    Body::File(f) if f.data().dirty => Some((*i, f.clone())),
                    _ => None,
                })
                .collect()
        };
        for (ino, f) in dirty {
            let open = lock(&self.handles).values().any(|h| h.write && h.ino == ino);
            self.commit_file(ino, &f, if open { FileState::Incomplete } else { FileState::Complete }, false)?;
        }
        self.log_dirty_dirs()?;
        live.sync_all()
    }

    /// Makes every journaled change durable, directory changes included (fsyncdir). Files
    /// open for writing are not committed by it.
    pub fn sync_dirs(&self) -> Result<()> {
        let Some(live) = &self.live else { return Ok(()) };
        if !live.holds_lock() {
            return Ok(());
        }
        let _g = self.begin()?;
        self.log_dirty_dirs()?;
        live.sync_all()
    }

    /// Unmount: commits everything, seals ended periods, checkpoints and gives the writer
    /// lock back.
    pub fn shutdown(&self) -> Result<()> {
        let Some(live) = &self.live else { return Ok(()) };
        self.stopped.store(true, Ordering::SeqCst);
        self.commit_all()?;
        lock(&self.handles).clear();
        let old: Vec<String> = {
            let t = lock(&self.tree);
            t.live_roots.keys().filter(|p| **p != t.cur).cloned().collect()
        };
        for p in old {
            self.try_seal(&p)?;
        }
        self.log_dirty_dirs()?;
        live.checkpoint(&[])?;
        live.release()
    }

    /// Space of the file system holding the vault: (total bytes, free bytes, block size).
    pub fn statfs(&self) -> (u64, u64, u32) {
        let Some(p) = self.v.store().local_path() else { return (1 << 40, 1 << 40, 4096) };
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return (0, 0, 4096) };
        // SAFETY: statvfs is plain old data; zeroed is a valid value.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `s` a valid out-pointer.
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return (0, 0, 4096);
        }
        let f = s.f_frsize;
        (s.f_blocks * f, s.f_bavail * f, f as u32)
    }
}

fn is_dir_err() -> Error {
    is_dir()
}

fn collect_paths(t: &Tree, dir: Ino, path: &mut Vec<Vec<u8>>, out: &mut HashMap<Vec<Vec<u8>>, (Ino, Kind)>) {
    let Some(LiveNode { body: Body::Dir { children }, .. }) = t.nodes.get(&dir) else {
        return;
    };
    for (name, ino) in children {
        path.push(name.clone());
        let kind = t.nodes.get(ino).map(|n| n.kind()).unwrap_or(Kind::File);
        out.insert(path.clone(), (*ino, kind));
        if kind == Kind::Dir {
            collect_paths(t, *ino, path, out);
        }
        path.pop();
    }
}
