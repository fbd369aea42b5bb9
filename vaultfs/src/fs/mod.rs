//! The mount's file model, independent of FUSE: inodes, handles, the writable tree of the
//! current period, the read-only dated directories, and when things are committed.
//!
//! Root = the current period's files + one directory per period + `latest` (a symlink to the
//! newest sealed period). The current period's dated directory shows the same entries as the
//! root. Every modifying call on a sealed period fails with `ReadOnly` (EROFS).
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
//! Concurrency: requests run on several threads. The snapshot side (dated directories of
//! sealed periods, `latest`) has its own lock and never waits for the writable side, for a
//! checkpoint or for the writer lock; reads through a handle take no lock of this module at
//! all. Lock order: the writer's gate ([`Live::begin`]) → `tree` → `snaps` → `handles` → a
//! file's data → the writer's internals.
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

pub mod file;

#[cfg(test)]
mod tests;

use file::{Committed, FileData};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use vault::format::tree::{FileState, Node, NodeKind};
use vault::id::{SnapshotId, TreeId};
use vault::period::reserved_at_root;
use vault::repo::edit::Op;
use vault::repo::live::{Gate, Live, Prepare, Ticket};
use vault::repo::{FileReader, SnapshotInfo, Vault};
use vault::{Error, ErrorKind, Result};

pub type Ino = u64;
pub const ROOT: Ino = 1;
pub const LATEST: Ino = 2;
/// Inodes of the snapshot side (dated directories, sealed nodes) carry this bit.
const SNAP_BIT: Ino = 1 << 62;
const FIRST_FREE: Ino = 16;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

/// What `stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits only.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub nlink: u32,
}

#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: Ino,
    pub name: Vec<u8>,
    pub kind: Kind,
}

/// Attribute changes of `setattr`.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime_ns: Option<i64>,
}

/// A regular file of the writable tree: its staged content behind its own lock, and what
/// `stat` needs without taking that lock.
pub struct FileNode {
    data: Mutex<FileData>,
    size: AtomicU64,
    mtime_ns: AtomicI64,
    ctime_ns: AtomicI64,
}

impl FileNode {
    fn new(data: FileData, mtime_ns: i64) -> Arc<Self> {
        let size = data.size();
        Arc::new(FileNode {
            data: Mutex::new(data),
            size: AtomicU64::new(size),
            mtime_ns: AtomicI64::new(mtime_ns),
            ctime_ns: AtomicI64::new(mtime_ns),
        })
    }
    fn data(&self) -> MutexGuard<'_, FileData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Body {
    Dir { children: BTreeMap<Vec<u8>, Ino> },
    File(Arc<FileNode>),
    Symlink(Vec<u8>),
}

struct LiveNode {
    parent: Ino,
    name: Vec<u8>,
    period: String,
    mode: u32,
    uid: u32,
    gid: u32,
    /// For directories and symlinks (a file's times live in its [`FileNode`]).
    mtime_ns: i64,
    ctime_ns: i64,
    body: Body,
    /// Removed from its directory (still reachable through open handles).
    unlinked: bool,
    /// Directories: the attributes as last journaled.
    logged: bool,
}

/// The writable side: live trees of the periods this mount writes.
struct Tree {
    nodes: HashMap<Ino, LiveNode>,
    live_roots: BTreeMap<String, Ino>,
    cur: String,
    /// The committed revision each live tree was loaded from or last reloaded to.
    loaded: HashMap<String, Option<SnapshotId>>,
    /// Renames of incomplete files to `NAME.incomplete`, to journal with the next change.
    deferred: Vec<(String, Op)>,
}

enum SNode {
    Sealed(Node),
    Period(String),
}

/// The snapshot side: dated directories and the nodes of committed snapshots.
struct Snaps {
    nodes: HashMap<Ino, SNode>,
    periods: BTreeMap<String, Ino>,
    sealed_roots: HashMap<String, TreeId>,
    /// Read-only mounts: roots of periods that are not sealed yet.
    open_roots: HashMap<String, TreeId>,
    children: HashMap<(Ino, Vec<u8>), Ino>,
    /// Periods shown from the writable side (mirror of `Tree::live_roots`).
    live: BTreeSet<String>,
    cur: String,
}

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
    live: Option<Live>,
    /// Held for the life of a writable mount: one writable mount per vault.
    _mount_lock: Option<vault::repo::lock::VaultLock>,
    tree: Mutex<Tree>,
    snaps: Mutex<Snaps>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    next_ino: AtomicU64,
    /// The current period, readable without the tree lock.
    cur: RwLock<String>,
    /// Unmounted: the maintenance thread stops.
    stopped: std::sync::atomic::AtomicBool,
    /// The last failed background commit (a full disk): retried after a pause, logged once.
    failure: Mutex<Option<(std::time::Instant, String)>>,
    uid: u32,
    gid: u32,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn validate_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::invalid("invalid file name"));
    }
    if name.len() > 255 {
        return Err(Error::invalid("file name too long"));
    }
    Ok(())
}

fn not_dir() -> Error {
    Error::new(ErrorKind::NotDir, "not a directory")
}

fn stale() -> Error {
    Error::not_found("stale inode")
}

impl Tree {
    fn node(&self, ino: Ino) -> Result<&LiveNode> {
        self.nodes.get(&ino).ok_or_else(stale)
    }
    fn node_mut(&mut self, ino: Ino) -> Result<&mut LiveNode> {
        self.nodes.get_mut(&ino).ok_or_else(stale)
    }
    fn children(&self, ino: Ino) -> Result<&BTreeMap<Vec<u8>, Ino>> {
        match &self.node(ino)?.body {
            Body::Dir { children } => Ok(children),
            _ => Err(not_dir()),
        }
    }
    fn children_mut(&mut self, ino: Ino) -> Result<&mut BTreeMap<Vec<u8>, Ino>> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir { children } => Ok(children),
            _ => Err(not_dir()),
        }
    }

    /// The path of a live node below its period's root; `None` once it is unlinked.
    fn path_of(&self, mut ino: Ino) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let n = self.nodes.get(&ino)?;
            if n.unlinked {
                return None;
            }
            if n.name.is_empty() {
                break;
            }
            out.push(n.name.clone());
            ino = n.parent;
        }
        out.reverse();
        Some(out)
    }

    /// The `dir` operation describing a directory's current attributes.
    fn dir_op(&self, ino: Ino) -> Option<Op> {
        let n = self.nodes.get(&ino)?;
        if n.name.is_empty() {
            return None;
        }
        let path = self.path_of(ino)?;
        Some(Op::Dir { path, mode: n.mode, uid: n.uid, gid: n.gid, mtime_ns: n.mtime_ns })
    }

    /// `ops` preceded by the deferred renames and by a `dir` for `parent` when its attributes
    /// changed since they were last journaled.
    fn with_parent(&mut self, parent: Option<Ino>, ops: Vec<Op>) -> Vec<Op> {
        let mut out = Vec::new();
        if let Some(p) = parent {
            if self.nodes.get(&p).is_some_and(|n| !n.logged) {
                out.extend(self.dir_op(p));
                if let Some(n) = self.nodes.get_mut(&p) {
                    n.logged = true;
                }
            }
        }
        out.extend(ops);
        out
    }
}

impl Snaps {
    fn period_ino(&mut self, alloc: &AtomicU64, name: &str) -> Ino {
        if let Some(i) = self.periods.get(name) {
            return *i;
        }
        let ino = alloc.fetch_add(1, Ordering::SeqCst) | SNAP_BIT;
        self.nodes.insert(ino, SNode::Period(name.to_string()));
        self.periods.insert(name.to_string(), ino);
        ino
    }

    fn latest(&self) -> Option<String> {
        self.sealed_roots.keys().filter(|p| !self.live.contains(*p)).max().cloned()
    }

    fn apply_periods(&mut self, alloc: &AtomicU64, snaps: &[SnapshotInfo], writable: bool) {
        let present: std::collections::HashSet<&str> = snaps.iter().map(|s| s.snap.period.as_str()).collect();
        // Periods forgotten by a prune disappear (unless this mount is writing in them).
        let gone: Vec<String> = self
            .periods
            .keys()
            .filter(|p| !present.contains(p.as_str()) && !self.live.contains(*p) && **p != self.cur)
            .cloned()
            .collect();
        for p in gone {
            self.periods.remove(&p);
            self.sealed_roots.remove(&p);
            self.open_roots.remove(&p);
        }
        for s in snaps {
            if s.snap.sealed {
                self.sealed_roots.insert(s.snap.period.clone(), s.snap.root);
            } else if !writable {
                // A read-only mount shows open periods as they were last committed.
                self.open_roots.insert(s.snap.period.clone(), s.snap.root);
            }
            self.period_ino(alloc, &s.snap.period);
        }
        if writable {
            let cur = self.cur.clone();
            self.period_ino(alloc, &cur);
        }
    }
}

fn sealed_attr(ino: Ino, node: &Node) -> Attr {
    let (kind, nlink) = match node.kind {
        NodeKind::Dir { .. } => (Kind::Dir, 2),
        NodeKind::File { .. } => (Kind::File, 1),
        NodeKind::Symlink { .. } => (Kind::Symlink, 1),
    };
    let size = match &node.kind {
        NodeKind::Symlink { target } => target.len() as u64,
        _ => node.size,
    };
    Attr {
        ino,
        kind,
        size,
        perm: node.mode & 0o7555,
        uid: node.uid,
        gid: node.gid,
        mtime_ns: node.mtime_ns,
        ctime_ns: node.mtime_ns,
        nlink,
    }
}

fn live_attr(ino: Ino, n: &LiveNode) -> Attr {
    let (kind, size, nlink, mtime, ctime) = match &n.body {
        Body::Dir { children } => (Kind::Dir, 0, 2 + children.len() as u32, n.mtime_ns, n.ctime_ns),
        Body::File(f) => (
            Kind::File,
            f.size.load(Ordering::SeqCst),
            if n.unlinked { 0 } else { 1 },
            f.mtime_ns.load(Ordering::SeqCst),
            f.ctime_ns.load(Ordering::SeqCst),
        ),
        Body::Symlink(t) => (Kind::Symlink, t.len() as u64, 1, n.mtime_ns, n.ctime_ns),
    };
    Attr { ino, kind, size, perm: n.mode & 0o7777, uid: n.uid, gid: n.gid, mtime_ns: mtime, ctime_ns: ctime, nlink }
}

/// The tree node recording a live file's committed content with its current attributes.
fn file_node(n: &LiveNode, f: &FileNode, c: &Committed) -> Node {
    Node {
        name: n.name.clone(),
        kind: NodeKind::File { state: c.state, content: c.content.clone() },
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        mtime_ns: f.mtime_ns.load(Ordering::SeqCst),
        size: c.size,
    }
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
            live: if writable { Some(Live::new(v, "vaultfs mount", LOCK_WAIT)) } else { None },
            _mount_lock: mount_lock,
            tree: Mutex::new(Tree {
                nodes: HashMap::new(),
                live_roots: BTreeMap::new(),
                cur: cur.clone(),
                loaded: HashMap::new(),
                deferred: Vec::new(),
            }),
            snaps: Mutex::new(Snaps {
                nodes: HashMap::new(),
                periods: BTreeMap::new(),
                sealed_roots: HashMap::new(),
                open_roots: HashMap::new(),
                children: HashMap::new(),
                live: BTreeSet::new(),
                cur: cur.clone(),
            }),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            next_ino: AtomicU64::new(FIRST_FREE),
            cur: RwLock::new(cur.clone()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            failure: Mutex::new(None),
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
                let snaps = v.snapshots()?;
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

    fn live(&self) -> Result<&Live> {
        self.live.as_ref().ok_or_else(|| Error::read_only("the vault is mounted read-only"))
    }

    /// The writer's gate, taking the writer lock first if needed (waiting for another writer,
    /// such as a prune, to finish). Whatever another writer committed meanwhile is loaded
    /// before anything changes here.
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
        self.next_ino.fetch_add(1, Ordering::SeqCst)
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
        {
            let mut sn = lock(&self.snaps);
            sn.apply_periods(&self.next_ino, snaps, writable);
        }
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

    /// Builds the live tree of a writable period from its last revision (or empty).
    fn open_live_period(&self, period: &str) -> Result<()> {
        let Some(live) = &self.live else { return Ok(()) };
        let mut t = lock(&self.tree);
        if t.live_roots.contains_key(period) {
            return Ok(());
        }
        let base = self.v.snapshots()?.into_iter().find(|s| s.snap.period == period);
        let mut sn = lock(&self.snaps);
        sn.period_ino(&self.next_ino, period);
        if let Some(b) = &base {
            if b.snap.sealed {
                // Sealed early (`vaultctl seal`): the rest of the period is read-only.
                sn.sealed_roots.insert(period.to_string(), b.snap.root);
                return Ok(());
            }
        }
        drop(sn);
        let now = now_ns();
        let root = self.alloc();
        t.nodes.insert(
            root,
            LiveNode {
                parent: ROOT,
                name: Vec::new(),
                period: period.to_string(),
                mode: S_IFDIR | 0o755,
                uid: self.uid,
                gid: self.gid,
                mtime_ns: now,
                ctime_ns: now,
                body: Body::Dir { children: BTreeMap::new() },
                unlinked: false,
                logged: true,
            },
        );
        if let Some(b) = &base {
            self.load_live(&mut t, root, b.snap.root, period, &mut Vec::new(), &HashMap::new())?;
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
                n.unlinked = true;
            }
        }
        t.children_mut(root)?.clear();
        t.deferred.retain(|(p, _)| p != period);
        if let Some(b) = &base {
            self.load_live(t, root, b.snap.root, period, &mut Vec::new(), &old)?;
        }
        t.loaded.insert(period.to_string(), base.as_ref().map(|b| b.id));
        if let Some(live) = &self.live {
            live.set_base(period, base);
        }
        Ok(())
    }

    fn load_live(
        &self,
        t: &mut Tree,
        dir: Ino,
        tree: TreeId,
        period: &str,
        path: &mut Vec<Vec<u8>>,
        reuse: &HashMap<Vec<Vec<u8>>, (Ino, Kind)>,
    ) -> Result<()> {
        let tr = self.v.load_tree(tree)?;
        for n in &tr.nodes {
            let mut name = n.name.clone();
            let (body, kind) = match &n.kind {
                NodeKind::Dir { .. } => (Body::Dir { children: BTreeMap::new() }, Kind::Dir),
                NodeKind::File { state, content } => {
                    // A file that was never closed is never shown under its real name.
                    if *state == FileState::Incomplete && !name.ends_with(b".incomplete") {
                        let mut shown = name.clone();
                        shown.extend_from_slice(b".incomplete");
                        if tr.get(&shown).is_none() && shown.len() <= 255 {
                            let mut from = path.clone();
                            from.push(name.clone());
                            let mut to = path.clone();
                            to.push(shown.clone());
                            t.deferred.push((period.to_string(), Op::Rename { from, to }));
                            name = shown;
                        }
                    }
                    let f = FileData::from_content(content.clone(), *state);
                    (Body::File(FileNode::new(f, n.mtime_ns)), Kind::File)
                }
                NodeKind::Symlink { target } => (Body::Symlink(target.clone()), Kind::Symlink),
            };
            path.push(name.clone());
            let node = LiveNode {
                parent: dir,
                name: name.clone(),
                period: period.to_string(),
                mode: n.mode,
                uid: n.uid,
                gid: n.gid,
                mtime_ns: n.mtime_ns,
                ctime_ns: n.mtime_ns,
                body,
                unlinked: false,
                logged: true,
            };
            let ino = match reuse.get(path.as_slice()) {
                Some((ino, k)) if *k == kind && !t.nodes.contains_key(ino) => *ino,
                _ => self.alloc(),
            };
            t.nodes.insert(ino, node);
            t.children_mut(dir)?.insert(name, ino);
            if let NodeKind::Dir { tree } = n.kind {
                self.load_live(t, ino, tree, period, path, reuse)?;
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
            .filter(|(_, n)| !n.logged && !n.unlinked && matches!(n.body, Body::Dir { .. }))
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
            live.release()?;
        }
        Ok(())
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
        if d & SNAP_BIT != 0 || d == LATEST {
            return Err(Error::read_only("snapshots of past periods are read-only"));
        }
        match t.nodes.get(&d) {
            Some(n) if n.unlinked => Err(Error::not_found("directory was removed")),
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
        if ino & SNAP_BIT != 0 || ino == ROOT || ino == LATEST {
            return Err(Error::read_only("snapshots of past periods are read-only"));
        }
        match t.nodes.get(&ino) {
            Some(n) if t.live_roots.contains_key(&n.period) => Ok(()),
            Some(_) if lock(&self.handles).values().any(|h| h.ino == ino && h.write) => Ok(()),
            None => Err(stale()),
            _ => Err(Error::read_only("snapshots of past periods are read-only")),
        }
    }

    fn mark_changed(t: &mut Tree, dir: Ino, now: i64) {
        if let Some(n) = t.nodes.get_mut(&dir) {
            n.mtime_ns = now;
            n.ctime_ns = now;
            n.logged = false;
        }
    }

    // ----- reading ---------------------------------------------------------------------

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let created = self.v.settings().created_unix * 1_000_000_000;
        let dir = |ino, perm, t| Attr {
            ino,
            kind: Kind::Dir,
            size: 0,
            perm,
            uid: self.uid,
            gid: self.gid,
            mtime_ns: t,
            ctime_ns: t,
            nlink: 2,
        };
        if ino == ROOT {
            self.tick()?;
            let t = lock(&self.tree);
            return Ok(match t.live_roots.get(&t.cur).and_then(|r| t.nodes.get(r)) {
                Some(n) => Attr { ino: ROOT, ..live_attr(ROOT, n) },
                None => dir(ROOT, 0o555, created),
            });
        }
        if ino == LATEST {
            let target = lock(&self.snaps).latest().ok_or_else(|| Error::not_found("no sealed snapshot yet"))?;
            return Ok(Attr {
                ino,
                kind: Kind::Symlink,
                size: target.len() as u64,
                perm: 0o777,
                uid: self.uid,
                gid: self.gid,
                mtime_ns: created,
                ctime_ns: created,
                nlink: 1,
            });
        }
        if ino & SNAP_BIT != 0 {
            let sn = lock(&self.snaps);
            return match sn.nodes.get(&ino) {
                Some(SNode::Sealed(node)) => Ok(sealed_attr(ino, node)),
                Some(SNode::Period(name)) => {
                    let writable = sn.live.contains(name);
                    Ok(dir(ino, if writable { 0o755 } else { 0o555 }, created))
                }
                None => Err(stale()),
            };
        }
        let t = lock(&self.tree);
        t.nodes.get(&ino).map(|n| live_attr(ino, n)).ok_or_else(stale)
    }

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        let ino = self.child(parent, name)?;
        self.getattr(ino)
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
        if parent & SNAP_BIT == 0 {
            let t = lock(&self.tree);
            let d = {
                let sn = lock(&self.snaps);
                self.dir_target(&t, &sn, parent)
            };
            if d & SNAP_BIT == 0 {
                return match t.nodes.get(&d) {
                    Some(LiveNode { body: Body::Dir { children }, .. }) => {
                        children.get(name).copied().ok_or_else(missing)
                    }
                    Some(_) => Err(not_dir()),
                    None if parent == ROOT => Err(missing()),
                    None => Err(stale()),
                };
            }
            drop(t);
            return self.sealed_child_of(d, name);
        }
        // A dated directory of a writable period shows its live tree.
        let target = {
            let t = lock(&self.tree);
            let sn = lock(&self.snaps);
            self.dir_target(&t, &sn, parent)
        };
        if target & SNAP_BIT == 0 {
            return self.child(target, name);
        }
        self.sealed_child_of(parent, name)
    }

    /// A child of a node of the snapshot side; the tree is loaded without holding the lock.
    fn sealed_child_of(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        let missing = || Error::not_found(format!("{}: no such file or directory", String::from_utf8_lossy(name)));
        let tree = {
            let sn = lock(&self.snaps);
            if let Some(i) = sn.children.get(&(parent, name.to_vec())) {
                return Ok(*i);
            }
            match sn.nodes.get(&parent) {
                Some(SNode::Period(p)) => {
                    *sn.sealed_roots.get(p).or_else(|| sn.open_roots.get(p)).ok_or_else(missing)?
                }
                Some(SNode::Sealed(node)) => match node.kind {
                    NodeKind::Dir { tree } => tree,
                    _ => return Err(not_dir()),
                },
                None => return Err(stale()),
            }
        };
        let t = self.v.load_tree(tree)?;
        let node = t.get(name).cloned().ok_or_else(missing)?;
        let mut sn = lock(&self.snaps);
        if let Some(i) = sn.children.get(&(parent, name.to_vec())) {
            return Ok(*i);
        }
        let ino = self.alloc() | SNAP_BIT;
        sn.nodes.insert(ino, SNode::Sealed(node));
        sn.children.insert((parent, name.to_vec()), ino);
        Ok(ino)
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
                let snaps = self.v.snapshots()?;
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
        let target = if ino & SNAP_BIT == 0 || matches!(lock(&self.snaps).nodes.get(&ino), Some(SNode::Period(_))) {
            let t = lock(&self.tree);
            let sn = lock(&self.snaps);
            self.dir_target(&t, &sn, ino)
        } else {
            ino
        };
        if target & SNAP_BIT == 0 {
            let t = lock(&self.tree);
            match t.nodes.get(&target) {
                Some(LiveNode { body: Body::Dir { children }, .. }) => {
                    for (name, i) in children {
                        let kind = match t.nodes.get(i).map(|n| &n.body) {
                            Some(Body::Dir { .. }) => Kind::Dir,
                            Some(Body::Symlink(_)) => Kind::Symlink,
                            _ => Kind::File,
                        };
                        out.push(DirEntry { ino: *i, name: name.clone(), kind });
                    }
                }
                Some(_) => return Err(not_dir()),
                None if ino == ROOT => {}
                None => return Err(stale()),
            }
            return Ok(out);
        }
        let tree = {
            let sn = lock(&self.snaps);
            match sn.nodes.get(&target) {
                Some(SNode::Period(name)) => sn.sealed_roots.get(name).or_else(|| sn.open_roots.get(name)).copied(),
                Some(SNode::Sealed(node)) => match node.kind {
                    NodeKind::Dir { tree } => Some(tree),
                    _ => return Err(not_dir()),
                },
                None => return Err(stale()),
            }
        };
        let Some(tree) = tree else { return Ok(out) };
        let tr = self.v.load_tree(tree)?;
        let mut sn = lock(&self.snaps);
        for n in &tr.nodes {
            let key = (target, n.name.clone());
            let i = match sn.children.get(&key) {
                Some(i) => *i,
                None => {
                    let i = self.alloc() | SNAP_BIT;
                    sn.nodes.insert(i, SNode::Sealed(n.clone()));
                    sn.children.insert(key, i);
                    i
                }
            };
            let kind = match n.kind {
                NodeKind::Dir { .. } => Kind::Dir,
                NodeKind::File { .. } => Kind::File,
                NodeKind::Symlink { .. } => Kind::Symlink,
            };
            out.push(DirEntry { ino: i, name: n.name.clone(), kind });
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
        if ino & SNAP_BIT != 0 {
            return match lock(&self.snaps).nodes.get(&ino) {
                Some(SNode::Sealed(Node { kind: NodeKind::Symlink { target }, .. })) => Ok(target.clone()),
                _ => Err(Error::invalid("not a symbolic link")),
            };
        }
        match lock(&self.tree).nodes.get(&ino) {
            Some(LiveNode { body: Body::Symlink(t), .. }) => Ok(t.clone()),
            _ => Err(Error::invalid("not a symbolic link")),
        }
    }

    /// Reads through an open handle: committed files through the handle's own chunk table
    /// and read-ahead, files being written through their staged content. Takes no lock of
    /// the file model, so reads never wait for writers, commits or the writer lock.
    pub fn read_fh(&self, fh: u64, off: u64, len: usize) -> Result<Vec<u8>> {
        let h = lock(&self.handles).get(&fh).cloned().ok_or_else(|| Error::invalid("bad file handle"))?;
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
            Some(f) => {
                let d = f.data();
                d.read(self.v, off, len)
            }
            None => Err(Error::new(ErrorKind::IsDir, "is a directory")),
        }
    }

    /// Reads a node without a handle (tests).
    #[cfg(test)]
    pub fn read(&self, ino: Ino, off: u64, len: usize) -> Result<Vec<u8>> {
        if ino & SNAP_BIT != 0 {
            let node = match lock(&self.snaps).nodes.get(&ino) {
                Some(SNode::Sealed(n)) => n.clone(),
                Some(_) => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
                None => return Err(stale()),
            };
            return self.v.file_reader(&node)?.read_at(off, len);
        }
        let f = match lock(&self.tree).nodes.get(&ino).map(|n| &n.body) {
            Some(Body::File(f)) => f.clone(),
            Some(_) => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
            None => return Err(stale()),
        };
        let d = f.data();
        d.read(self.v, off, len)
    }

    // ----- opening and writing ---------------------------------------------------------

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::SeqCst);
        lock(&self.handles).insert(fh, Arc::new(h));
        fh
    }

    /// Opens a file; `owner` is the opening process (used by `flush`).
    pub fn open(&self, ino: Ino, write: bool, truncate: bool, owner: u32) -> Result<u64> {
        if !write {
            if ino & SNAP_BIT != 0 {
                let node = match lock(&self.snaps).nodes.get(&ino) {
                    Some(SNode::Sealed(n)) => n.clone(),
                    Some(_) => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
                    None => return Err(stale()),
                };
                let reader = match node.kind {
                    NodeKind::File { .. } => Some((self.v.file_reader(&node)?, 0)),
                    NodeKind::Dir { .. } => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
                    NodeKind::Symlink { .. } => None,
                };
                return Ok(self.add_handle(Handle { ino, write, owner, file: None, reader }));
            }
            let f = match lock(&self.tree).nodes.get(&ino).map(|n| &n.body) {
                Some(Body::File(f)) => f.clone(),
                Some(Body::Dir { .. }) => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
                Some(Body::Symlink(_)) => return Err(Error::invalid("not a regular file")),
                None => return Err(stale()),
            };
            let reader = {
                let d = f.data();
                d.lazy_content().map(|c| (FileReader::new(self.v, c), d.generation))
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
                Some(Body::Dir { .. }) => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
                Some(Body::Symlink(_)) => return Err(Error::invalid("not a regular file")),
                None => return Err(stale()),
            }
        };
        f.data().writers += 1;
        let fh = self.add_handle(Handle { ino, write, owner, file: Some(f.clone()), reader: None });
        if truncate {
            // With the handle registered first, the truncation is committed with the file.
            if let Err(e) = self.truncate_file(&f, 0) {
                self.drop_handle(fh);
                return Err(e);
            }
        }
        Ok(fh)
    }

    fn drop_handle(&self, fh: u64) -> Option<Arc<Handle>> {
        let h = lock(&self.handles).remove(&fh)?;
        if h.write {
            if let Some(f) = &h.file {
                let mut d = f.data();
                d.writers = d.writers.saturating_sub(1);
            }
        }
        Some(h)
    }

    fn truncate_file(&self, f: &FileNode, size: u64) -> Result<()> {
        let live = self.live()?;
        let mut d = f.data();
        d.truncate(live, size)?;
        let now = now_ns();
        f.size.store(d.size(), Ordering::SeqCst);
        f.mtime_ns.store(now, Ordering::SeqCst);
        f.ctime_ns.store(now, Ordering::SeqCst);
        Ok(())
    }

    pub fn create(&self, parent: Ino, name: &[u8], mode: u32, uid: u32, gid: u32, owner: u32) -> Result<(Attr, u64)> {
        validate_name(name)?;
        let _g = self.begin()?;
        self.tick()?;
        let now = now_ns();
        let f = FileNode::new(FileData::new(), now);
        let ino = {
            let mut t = lock(&self.tree);
            let d = self.make_node_checks(&t, parent, name, false)?;
            let period = t.node(d)?.period.clone();
            let ino = self.alloc();
            t.nodes.insert(
                ino,
                LiveNode {
                    parent: d,
                    name: name.to_vec(),
                    period,
                    mode: S_IFREG | (mode & 0o7777),
                    uid,
                    gid,
                    mtime_ns: now,
                    ctime_ns: now,
                    body: Body::File(f.clone()),
                    unlinked: false,
                    logged: true,
                },
            );
            t.children_mut(d)?.insert(name.to_vec(), ino);
            // The file itself is journaled when it is closed or fsynced; until then it would
            // be absent after a crash.
            Self::mark_changed(&mut t, d, now);
            ino
        };
        f.data().writers += 1;
        let fh = self.add_handle(Handle { ino, write: true, owner, file: Some(f), reader: None });
        Ok((self.getattr(ino)?, fh))
    }

    /// Checks shared by every call that adds a name: returns the live parent directory.
    fn make_node_checks(&self, t: &Tree, parent: Ino, name: &[u8], is_dir: bool) -> Result<Ino> {
        let d = self.writable_dir(t, parent)?;
        let is_root = t.node(d)?.name.is_empty();
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

    pub fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<usize> {
        let h = lock(&self.handles).get(&fh).cloned().ok_or_else(|| Error::invalid("bad file handle"))?;
        if !h.write {
            return Err(Error::invalid("file not open for writing"));
        }
        let f = h.file.clone().ok_or_else(|| Error::invalid("not a regular file"))?;
        let _g = self.gate()?;
        let live = self.live()?;
        let mut d = f.data();
        d.write(live, off, data)?;
        let now = now_ns();
        f.size.store(d.size(), Ordering::SeqCst);
        f.mtime_ns.store(now, Ordering::SeqCst);
        f.ctime_ns.store(now, Ordering::SeqCst);
        Ok(data.len())
    }

    pub fn setattr(&self, ino: Ino, a: &SetAttr) -> Result<Attr> {
        let _g = self.begin()?;
        self.tick()?;
        let now = now_ns();
        let live = self.live()?;
        let file = {
            let t = lock(&self.tree);
            self.check_writable_node(&t, ino)?;
            match &t.node(ino)?.body {
                Body::File(f) => Some(f.clone()),
                Body::Dir { .. } if a.size.is_some() => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
                Body::Symlink(_) if a.size.is_some() => return Err(Error::invalid("not a regular file")),
                _ => None,
            }
        };
        if let (Some(size), Some(f)) = (a.size, &file) {
            self.truncate_file(f, size)?;
        }
        let (period, ops) = {
            let mut t = lock(&self.tree);
            let path = t.path_of(ino);
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
            match &n.body {
                Body::File(f) => {
                    if let Some(m) = a.mtime_ns {
                        f.mtime_ns.store(m, Ordering::SeqCst);
                    }
                    f.ctime_ns.store(now, Ordering::SeqCst);
                }
                _ => {
                    if let Some(m) = a.mtime_ns {
                        n.mtime_ns = m;
                    }
                    n.ctime_ns = now;
                }
            }
            let period = n.period.clone();
            // What to journal: a committed file or a symlink again with its new attributes, a
            // directory's attributes. A file never committed gets them with its first commit.
            let op = match (&n.body, path) {
                (_, None) => None,
                (Body::File(f), Some(path)) => {
                    let d = f.data();
                    d.committed.as_ref().map(|c| Op::Put { path, node: file_node(n, f, c) })
                }
                (Body::Symlink(target), Some(path)) => Some(Op::Put {
                    path,
                    node: Node {
                        name: n.name.clone(),
                        kind: NodeKind::Symlink { target: target.clone() },
                        mode: n.mode,
                        uid: n.uid,
                        gid: n.gid,
                        mtime_ns: n.mtime_ns,
                        size: 0,
                    },
                }),
                (Body::Dir { .. }, Some(path)) => {
                    Some(Op::Dir { path, mode: n.mode, uid: n.uid, gid: n.gid, mtime_ns: n.mtime_ns })
                }
            };
            if matches!(n.body, Body::Dir { .. }) {
                n.logged = true;
            }
            (period, op)
        };
        if let Some(op) = ops {
            live.log(&period, vec![op])?;
        }
        // A truncate by path (no descriptor open for writing) is committed at once.
        if a.size.is_some() {
            if let Some(f) = &file {
                if f.data().writers == 0 {
                    self.commit_file(ino, f, FileState::Complete, false)?;
                }
            }
        }
        self.getattr(ino)
    }

    /// Commits a file's content: staged bytes chunked and packed, the file journaled with
    /// `state`, and (with `durable`) the journal synced before returning.
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

    /// Journals a file's committed content (blobs first); `None` when it has no path any more.
    fn journal_file(&self, live: &Live, ino: Ino, f: &FileNode, what: Prepare<'_>) -> Result<Option<Ticket>> {
        live.prepare(what)?;
        let ticket = {
            let mut t = lock(&self.tree);
            let Some(n) = t.nodes.get(&ino) else { return Ok(None) };
            if !t.live_roots.contains_key(&n.period) {
                return Err(Error::read_only("the period was sealed while the file was open"));
            }
            let (period, parent) = (n.period.clone(), n.parent);
            let Some(path) = t.path_of(ino) else { return Ok(None) };
            let mut d = f.data();
            let Some(c) = d.committed.clone() else { return Ok(None) };
            let node = file_node(n, f, &c);
            let ops = t.with_parent(Some(parent), vec![Op::Put { path, node }]);
            let ticket = live.log(&period, ops)?;
            d.journaled = Some(c);
            ticket
        };
        Ok(Some(ticket))
    }

    fn write_handle(&self, fh: u64) -> Option<Arc<Handle>> {
        lock(&self.handles).get(&fh).filter(|h| h.write).cloned()
    }

    /// `close()` of one descriptor by process `caller`. The content is committed before close
    /// returns. It is recorded complete when the process that opened the file closes it and
    /// no other descriptor is open for writing; a close by another process (a forked child
    /// closing its copy while the writer goes on) records it incomplete. `release` (the last
    /// close) marks it complete in any case.
    pub fn flush(&self, fh: u64, caller: u32) -> Result<()> {
        let Some(h) = self.write_handle(fh) else { return Ok(()) };
        let Some(f) = &h.file else { return Ok(()) };
        let others = lock(&self.handles).iter().any(|(k, o)| *k != fh && o.write && o.ino == h.ino);
        let state = if caller == h.owner && !others { FileState::Complete } else { FileState::Incomplete };
        let _g = self.begin()?;
        self.commit_file(h.ino, f, state, true)
    }

    /// `fsync()`: commits the file now; while it stays open for writing it is recorded as
    /// incomplete.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        let Some(h) = self.write_handle(fh) else { return Ok(()) };
        let Some(f) = &h.file else { return Ok(()) };
        let _g = self.begin()?;
        self.commit_file(h.ino, f, FileState::Incomplete, true)
    }

    /// The last close of a descriptor: when no writer is left, the file is complete. A file
    /// whose writes failed loses what was staged: it keeps its last committed content, or
    /// disappears if it never had any.
    pub fn release(&self, fh: u64) -> Result<()> {
        let Some(h) = self.drop_handle(fh) else { return Ok(()) };
        if !h.write {
            return Ok(());
        }
        let Some(f) = &h.file else { return Ok(()) };
        let (last, failed) = {
            let d = f.data();
            (d.writers == 0, d.failed.is_some())
        };
        let mut res = Ok(());
        if last {
            if failed {
                self.drop_failed(h.ino, f);
            } else {
                let g = self.begin();
                res = g.and_then(|_g| self.commit_file(h.ino, f, FileState::Complete, true));
                if res.is_err() {
                    self.drop_failed(h.ino, f);
                }
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
        let never_committed = {
            let mut d = f.data();
            d.reset_to_journaled();
            f.size.store(d.size(), Ordering::SeqCst);
            d.committed.is_none()
        };
        if never_committed {
            let mut t = lock(&self.tree);
            if let Some(n) = t.nodes.get(&ino) {
                let (parent, name) = (n.parent, n.name.clone());
                if !n.unlinked {
                    if let Ok(c) = t.children_mut(parent) {
                        if c.get(&name) == Some(&ino) {
                            c.remove(&name);
                        }
                    }
                }
                if let Some(n) = t.nodes.get_mut(&ino) {
                    n.unlinked = true;
                }
            }
        }
    }

    // ----- namespace operations ---------------------------------------------------------

    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32, uid: u32, gid: u32) -> Result<Attr> {
        validate_name(name)?;
        let _g = self.begin()?;
        self.tick()?;
        let live = self.live()?;
        let now = now_ns();
        let ino = {
            let mut t = lock(&self.tree);
            let d = self.make_node_checks(&t, parent, name, true)?;
            let period = t.node(d)?.period.clone();
            let mut path = t.path_of(d).ok_or_else(|| Error::not_found("directory was removed"))?;
            path.push(name.to_vec());
            let mode = S_IFDIR | (mode & 0o7777);
            Self::mark_changed(&mut t, d, now);
            let ops = t.with_parent(Some(d), vec![Op::Dir { path, mode, uid, gid, mtime_ns: now }]);
            live.log(&period, ops)?;
            let ino = self.alloc();
            t.nodes.insert(
                ino,
                LiveNode {
                    parent: d,
                    name: name.to_vec(),
                    period,
                    mode,
                    uid,
                    gid,
                    mtime_ns: now,
                    ctime_ns: now,
                    body: Body::Dir { children: BTreeMap::new() },
                    unlinked: false,
                    logged: true,
                },
            );
            t.children_mut(d)?.insert(name.to_vec(), ino);
            ino
        };
        self.getattr(ino)
    }

    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], uid: u32, gid: u32) -> Result<Attr> {
        validate_name(name)?;
        let _g = self.begin()?;
        self.tick()?;
        let live = self.live()?;
        let now = now_ns();
        let ino = {
            let mut t = lock(&self.tree);
            let d = self.make_node_checks(&t, parent, name, false)?;
            let period = t.node(d)?.period.clone();
            let mut path = t.path_of(d).ok_or_else(|| Error::not_found("directory was removed"))?;
            path.push(name.to_vec());
            let mode = S_IFLNK | 0o777;
            let node = Node {
                name: name.to_vec(),
                kind: NodeKind::Symlink { target: target.to_vec() },
                mode,
                uid,
                gid,
                mtime_ns: now,
                size: 0,
            };
            Self::mark_changed(&mut t, d, now);
            let ops = t.with_parent(Some(d), vec![Op::Put { path, node }]);
            live.log(&period, ops)?;
            let ino = self.alloc();
            t.nodes.insert(
                ino,
                LiveNode {
                    parent: d,
                    name: name.to_vec(),
                    period,
                    mode,
                    uid,
                    gid,
                    mtime_ns: now,
                    ctime_ns: now,
                    body: Body::Symlink(target.to_vec()),
                    unlinked: false,
                    logged: true,
                },
            );
            t.children_mut(d)?.insert(name.to_vec(), ino);
            ino
        };
        self.getattr(ino)
    }

    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: Ino, name: &[u8], dir: bool) -> Result<()> {
        let _g = self.begin()?;
        self.tick()?;
        let live = self.live()?;
        let now = now_ns();
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
            (Body::Dir { .. }, false) => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
            (_, false) => {}
        }
        let period = t.node(d)?.period.clone();
        let path = t.path_of(c).ok_or_else(stale)?;
        Self::mark_changed(&mut t, d, now);
        let ops = t.with_parent(Some(d), vec![Op::Remove { path }]);
        live.log(&period, ops)?;
        t.children_mut(d)?.remove(name);
        // The inode stays for open handles; it is simply no longer reachable.
        let n = t.node_mut(c)?;
        n.unlinked = true;
        if let Body::File(f) = &n.body {
            f.ctime_ns.store(now, Ordering::SeqCst);
        }
        Ok(())
    }

    pub fn rename(&self, parent: Ino, name: &[u8], newparent: Ino, newname: &[u8], noreplace: bool) -> Result<()> {
        validate_name(newname)?;
        let _g = self.begin()?;
        self.tick()?;
        let live = self.live()?;
        let mut t = lock(&self.tree);
        let d = self.writable_dir(&t, parent)?;
        let nd = self.writable_dir(&t, newparent)?;
        if t.node(d)?.period != t.node(nd)?.period {
            return Err(Error::new(ErrorKind::NotPermitted, "cannot move files between periods"));
        }
        let c = *t
            .children(d)?
            .get(name)
            .ok_or_else(|| Error::not_found(format!("{}: no such file or directory", String::from_utf8_lossy(name))))?;
        let is_dir = matches!(t.node(c)?.body, Body::Dir { .. });
        if t.node(nd)?.name.is_empty() {
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
            if n.name.is_empty() {
                break;
            }
            up = n.parent;
        }
        let existing = t.children(nd)?.get(newname).copied();
        if let Some(existing) = existing {
            if existing == c {
                return Ok(());
            }
            if noreplace {
                return Err(Error::new(ErrorKind::AlreadyExists, "file exists"));
            }
            match (&t.node(existing)?.body, is_dir) {
                (Body::Dir { children }, true) if !children.is_empty() => {
                    return Err(Error::new(ErrorKind::NotEmpty, "directory not empty"))
                }
                (Body::Dir { .. }, false) => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
                (Body::File(_) | Body::Symlink(_), true) => return Err(not_dir()),
                _ => {}
            }
        }
        let now = now_ns();
        let period = t.node(d)?.period.clone();
        let from = t.path_of(c).ok_or_else(stale)?;
        let mut to = t.path_of(nd).ok_or_else(stale)?;
        to.push(newname.to_vec());
        Self::mark_changed(&mut t, d, now);
        Self::mark_changed(&mut t, nd, now);
        let mut ops = t.with_parent(Some(d), vec![Op::Rename { from, to }]);
        if nd != d {
            ops = {
                let mut o = ops;
                let extra = t.with_parent(Some(nd), Vec::new());
                o.extend(extra);
                o
            };
        }
        live.log(&period, ops)?;
        if let Some(existing) = existing {
            if let Ok(n) = t.node_mut(existing) {
                n.unlinked = true;
            }
        }
        t.children_mut(d)?.remove(name);
        t.children_mut(nd)?.insert(newname.to_vec(), c);
        let n = t.node_mut(c)?;
        n.parent = nd;
        n.name = newname.to_vec();
        match &n.body {
            Body::File(f) => f.ctime_ns.store(now, Ordering::SeqCst),
            _ => n.ctime_ns = now,
        }
        Ok(())
    }

    /// Commits every file being written (as incomplete) and every directory change, and
    /// syncs the journal (fsyncdir).
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
                .filter(|(_, n)| !n.unlinked && t.live_roots.contains_key(&n.period))
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

fn collect_paths(t: &Tree, dir: Ino, path: &mut Vec<Vec<u8>>, out: &mut HashMap<Vec<Vec<u8>>, (Ino, Kind)>) {
    let Some(LiveNode { body: Body::Dir { children }, .. }) = t.nodes.get(&dir) else {
        return;
    };
    for (name, ino) in children {
        path.push(name.clone());
        let kind = match t.nodes.get(ino).map(|n| &n.body) {
            Some(Body::Dir { .. }) => Kind::Dir,
            Some(Body::Symlink(_)) => Kind::Symlink,
            _ => Kind::File,
        };
        out.insert(path.clone(), (*ino, kind));
        if kind == Kind::Dir {
            collect_paths(t, *ino, path, out);
        }
        path.pop();
    }
}
