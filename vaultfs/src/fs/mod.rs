//! The mount's file model, independent of FUSE: inodes, the writable tree of the current
//! period, the read-only dated directories, and when things are committed.
//!
//! Root = the current period's files + one directory per period + `latest` (a symlink to the
//! newest sealed period). The current period's dated directory shows the same entries as the
//! root. Every modifying call on a sealed period fails with `ReadOnly` (EROFS).
//!
//! Durability: `flush` (every close) and `fsync` of a written file commit: its content is
//! chunked and packed, then the period's changed directories and a new snapshot revision are
//! written (DESIGN.md §10), before the call returns. The close by the process that opened the
//! file records it complete; fsync, or a close by another process (a forked copy of the
//! descriptor), records it incomplete until the last close. After a crash an incomplete file
//! appears as `NAME.incomplete`, never under its real name.
//! Directory operations are committed at once when no file is open for writing, otherwise with
//! the next commit, `fsyncdir`, or unmount.
//!
//! Locking: a writable mount holds `mount.lock` for its life, and the vault's writer lock only
//! from the first change until everything is committed and no file is open for writing; on
//! taking it again it reloads what other writers (put, run, prune) committed meanwhile.
//!
//! Period rollover: every call first checks the vault clock. When the period has changed, the
//! root shows the new period; the old one is committed and sealed as soon as no file is open
//! for writing in it (a file open across midnight stays in the period it was created in).
//!
//! Must never: hold plaintext on disk, keep file content in memory beyond the limits of
//! `file.rs`, or show a file whose content was never committed under its real name after a
//! restart.

pub mod file;

#[cfg(test)]
mod tests;

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{FileState, Node, NodeKind, Tree};
use crate::id::TreeId;
use crate::period::reserved_at_root;
use crate::repo::{SnapshotInfo, Vault, WriteSession};
use file::FileData;
use std::collections::{BTreeMap, HashMap};

pub type Ino = u64;
pub const ROOT: Ino = 1;
pub const LATEST: Ino = 2;
const FIRST_FREE: Ino = 16;
/// How long a change waits for another writer (a prune, `vaultctl put`) to finish.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

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

enum Body {
    Dir { children: BTreeMap<Vec<u8>, Ino>, dirty: bool, tree: Option<TreeId> },
    File(Box<FileData>),
    Symlink(Vec<u8>),
}

struct LiveNode {
    parent: Ino,
    name: Vec<u8>,
    period: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    ctime_ns: i64,
    body: Body,
}

enum Inode {
    /// A node of the writable tree of a period.
    Live(LiveNode),
    /// A node of a sealed snapshot (read-only).
    Sealed { node: Node },
    /// The dated directory of a period.
    Period { name: String },
}

struct Handle {
    ino: Ino,
    write: bool,
    /// Process that opened it (thread group id), to tell its own close from a forked copy's.
    owner: u32,
    /// Chunk table and read-ahead, built once per open, for files of sealed snapshots and
    /// committed files nobody is writing (with the content generation it was built for).
    reader: Option<(crate::repo::FileReader<'static>, u64)>,
}

pub struct VaultFs {
    v: &'static Vault,
    writable: bool,
    /// The write session, holding the vault's writer lock: taken when something is about to
    /// change, given back once everything is committed and no file is open for writing, so
    /// that `vaultctl put/run/prune` can work while the vault stays mounted.
    w: Option<WriteSession<'static>>,
    /// Held for the life of a writable mount: one writable mount per vault.
    _mount_lock: Option<crate::repo::lock::VaultLock>,
    nodes: HashMap<Ino, Inode>,
    next_ino: Ino,
    /// Dated directory inode of every period shown.
    periods: BTreeMap<String, Ino>,
    /// Sealed snapshot roots by period.
    sealed_roots: HashMap<String, TreeId>,
    /// Read-only mounts: roots of periods that are not sealed yet.
    open_roots: HashMap<String, TreeId>,
    /// Stable inode numbers of sealed nodes: (parent, name) -> ino.
    sealed_children: HashMap<(Ino, Vec<u8>), Ino>,
    /// Writable periods: root inode of their live tree.
    live_roots: BTreeMap<String, Ino>,
    /// Last committed revision of each writable period.
    bases: HashMap<String, Option<SnapshotInfo>>,
    cur: String,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    uid: u32,
    gid: u32,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
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

impl VaultFs {
    /// Opens the file model over a vault. With `writable`, takes `mount.lock` for the life of
    /// the mount, seals ended periods (under the writer lock, given back before returning) and
    /// loads the current period's tree.
    pub fn new(v: &'static Vault, writable: bool, uid: u32, gid: u32) -> Result<Self> {
        let mount_lock = if writable {
            Some(crate::repo::lock::VaultLock::exclusive_named(
                &**v.store(),
                "mount.lock",
                std::time::Duration::from_secs(5),
                "vaultfs mount",
            )?)
        } else {
            None
        };
        let w = if writable { Some(v.begin_write("vaultfs mount", std::time::Duration::from_secs(5))?) } else { None };
        let mut fs = VaultFs {
            v,
            writable,
            w,
            _mount_lock: mount_lock,
            nodes: HashMap::new(),
            next_ino: FIRST_FREE,
            periods: BTreeMap::new(),
            sealed_roots: HashMap::new(),
            open_roots: HashMap::new(),
            sealed_children: HashMap::new(),
            live_roots: BTreeMap::new(),
            bases: HashMap::new(),
            cur: v.clock().current(),
            handles: HashMap::new(),
            next_fh: 1,
            uid,
            gid,
        };
        fs.refresh_periods()?;
        if fs.writable {
            let cur = fs.cur.clone();
            fs.open_live_period(&cur)?;
        }
        fs.release_lock_if_idle()?;
        Ok(fs)
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Whether this mount holds the vault's writer lock right now.
    pub fn holds_lock(&self) -> bool {
        self.w.is_some()
    }

    /// The write session, taking the writer lock first if needed (waiting for another writer,
    /// such as a prune, to finish). Whatever another writer committed meanwhile is loaded
    /// before anything changes here.
    fn session(&mut self) -> Result<&mut WriteSession<'static>> {
        if !self.writable {
            return Err(Error::read_only("the vault is mounted read-only"));
        }
        if self.w.is_none() {
            let w = self.v.begin_write("vaultfs mount", LOCK_WAIT)?;
            self.w = Some(w);
            if let Err(e) = self.reload_after_lock() {
                self.w = None;
                return Err(e);
            }
        }
        self.w.as_mut().ok_or_else(|| Error::read_only("the vault is mounted read-only"))
    }

    /// After taking the lock again (or listing the root without it): periods another process
    /// forgot or sealed, and revisions another writer committed, replace what this mount
    /// remembered. Called only when nothing here is uncommitted.
    fn reload_after_lock(&mut self) -> Result<()> {
        let snaps = self.v.snapshots()?;
        self.apply_periods(&snaps);
        let live: Vec<String> = self.live_roots.keys().cloned().collect();
        for period in live {
            let now = snaps.iter().find(|s| s.snap.period == period).cloned();
            let known = self.bases.get(&period).cloned().flatten();
            if now.as_ref().map(|s| s.id) == known.as_ref().map(|s| s.id) {
                continue;
            }
            // The other writer's index files name the blobs of its revision.
            self.v.sync_index()?;
            match now {
                Some(s) if s.snap.sealed => {
                    self.sealed_roots.insert(period.clone(), s.snap.root);
                    self.live_roots.remove(&period);
                    self.bases.remove(&period);
                }
                now => self.reload_live(&period, now)?,
            }
        }
        Ok(())
    }

    /// Gives the writer lock back when nothing is uncommitted and no file is open for writing.
    /// Directory changes are committed first.
    fn release_lock_if_idle(&mut self) -> Result<()> {
        if self.w.is_none() || self.handles.values().any(|h| h.write) {
            return Ok(());
        }
        self.commit_all()?;
        self.w = None;
        Ok(())
    }

    pub fn current_period(&self) -> &str {
        &self.cur
    }

    fn alloc(&mut self, node: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    fn period_ino(&mut self, name: &str) -> Ino {
        if let Some(i) = self.periods.get(name) {
            return *i;
        }
        let ino = self.alloc(Inode::Period { name: name.to_string() });
        self.periods.insert(name.to_string(), ino);
        ino
    }

    /// Re-reads the list of snapshots (sealed roots and dated directories).
    fn refresh_periods(&mut self) -> Result<()> {
        let snaps = self.v.snapshots()?;
        self.apply_periods(&snaps);
        Ok(())
    }

    fn apply_periods(&mut self, snaps: &[SnapshotInfo]) {
        let present: std::collections::HashSet<&str> = snaps.iter().map(|s| s.snap.period.as_str()).collect();
        // Periods forgotten by a prune disappear (unless this mount is writing in them).
        let gone: Vec<String> = self
            .periods
            .keys()
            .filter(|p| !present.contains(p.as_str()) && !self.live_roots.contains_key(*p) && **p != self.cur)
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
            } else if !self.writable {
                // A read-only mount shows open periods as they were last committed.
                self.open_roots.insert(s.snap.period.clone(), s.snap.root);
            }
            self.period_ino(&s.snap.period);
        }
        let cur = self.cur.clone();
        if self.writable {
            self.period_ino(&cur);
        }
    }

    /// Builds the live tree of a writable period from its last revision (or empty).
    fn open_live_period(&mut self, period: &str) -> Result<()> {
        let base = self.v.snapshots()?.into_iter().find(|s| s.snap.period == period);
        let now = now_ns();
        let root = self.alloc(Inode::Live(LiveNode {
            parent: ROOT,
            name: Vec::new(),
            period: period.to_string(),
            mode: S_IFDIR | 0o755,
            uid: self.uid,
            gid: self.gid,
            mtime_ns: now,
            ctime_ns: now,
            body: Body::Dir { children: BTreeMap::new(), dirty: false, tree: None },
        }));
        if let Some(b) = &base {
            if b.snap.sealed {
                // Sealed early (`vaultctl seal`): the rest of the period is read-only.
                self.sealed_roots.insert(period.to_string(), b.snap.root);
                self.nodes.remove(&root);
                return Ok(());
            }
            self.load_live(root, b.snap.root, period, &mut Vec::new(), &HashMap::new())?;
            if let Some(Inode::Live(LiveNode { body: Body::Dir { tree, .. }, .. })) = self.nodes.get_mut(&root) {
                *tree = Some(b.snap.root);
            }
        }
        self.live_roots.insert(period.to_string(), root);
        self.bases.insert(period.to_string(), base);
        Ok(())
    }

    /// Replaces the live tree of a period by its revision `base`, which another writer
    /// committed. Paths that still exist keep their inode numbers.
    fn reload_live(&mut self, period: &str, base: Option<SnapshotInfo>) -> Result<()> {
        let Some(&root) = self.live_roots.get(period) else { return Ok(()) };
        let mut old: HashMap<Vec<Vec<u8>>, (Ino, Kind)> = HashMap::new();
        self.collect_paths(root, &mut Vec::new(), &mut old);
        for (ino, _) in old.values() {
            if !self.handles.values().any(|h| h.ino == *ino) {
                self.nodes.remove(ino);
            }
        }
        if let Some(Inode::Live(LiveNode { body: Body::Dir { children, dirty, tree }, .. })) = self.nodes.get_mut(&root)
        {
            children.clear();
            *dirty = false;
            *tree = base.as_ref().map(|b| b.snap.root);
        }
        if let Some(b) = &base {
            self.load_live(root, b.snap.root, period, &mut Vec::new(), &old)?;
        }
        self.bases.insert(period.to_string(), base);
        Ok(())
    }

    fn collect_paths(&self, dir: Ino, path: &mut Vec<Vec<u8>>, out: &mut HashMap<Vec<Vec<u8>>, (Ino, Kind)>) {
        let Some(Inode::Live(LiveNode { body: Body::Dir { children, .. }, .. })) = self.nodes.get(&dir) else {
            return;
        };
        for (name, ino) in children {
            path.push(name.clone());
            let kind = match self.nodes.get(ino) {
                Some(Inode::Live(LiveNode { body: Body::Dir { .. }, .. })) => Kind::Dir,
                Some(Inode::Live(LiveNode { body: Body::Symlink(_), .. })) => Kind::Symlink,
                _ => Kind::File,
            };
            out.insert(path.clone(), (*ino, kind));
            if kind == Kind::Dir {
                self.collect_paths(*ino, path, out);
            }
            path.pop();
        }
    }

    fn load_live(
        &mut self,
        dir: Ino,
        tree: TreeId,
        period: &str,
        path: &mut Vec<Vec<u8>>,
        reuse: &HashMap<Vec<Vec<u8>>, (Ino, Kind)>,
    ) -> Result<()> {
        let t = self.v.load_tree(tree)?;
        for n in &t.nodes {
            let (body, name) = match &n.kind {
                NodeKind::Dir { tree } => {
                    (Body::Dir { children: BTreeMap::new(), dirty: false, tree: Some(*tree) }, n.name.clone())
                }
                NodeKind::File { state, content } => {
                    let mut name = n.name.clone();
                    // A file that was never closed is never shown under its real name.
                    if *state == FileState::Incomplete && !name.ends_with(b".incomplete") {
                        name.extend_from_slice(b".incomplete");
                    }
                    (Body::File(Box::new(FileData::from_content(content.clone(), *state))), name)
                }
                NodeKind::Symlink { target } => (Body::Symlink(target.clone()), n.name.clone()),
            };
            let sub = if let NodeKind::Dir { tree } = n.kind { Some(tree) } else { None };
            let kind = match &body {
                Body::Dir { .. } => Kind::Dir,
                Body::File(_) => Kind::File,
                Body::Symlink(_) => Kind::Symlink,
            };
            path.push(name.clone());
            let node = Inode::Live(LiveNode {
                parent: dir,
                name: name.clone(),
                period: period.to_string(),
                mode: n.mode,
                uid: n.uid,
                gid: n.gid,
                mtime_ns: n.mtime_ns,
                ctime_ns: n.mtime_ns,
                body,
            });
            let ino = match reuse.get(path.as_slice()) {
                Some((ino, k)) if *k == kind => {
                    self.nodes.insert(*ino, node);
                    *ino
                }
                _ => self.alloc(node),
            };
            self.live_mut(dir)?.children_mut()?.insert(name, ino);
            if let Some(t) = sub {
                self.load_live(ino, t, period, path, reuse)?;
            }
            path.pop();
        }
        Ok(())
    }

    /// Notices a new period: the root switches to it; the old one is sealed once no file is
    /// open for writing in it.
    fn tick(&mut self) -> Result<()> {
        let now = self.v.clock().current();
        if now == self.cur || !self.writable {
            return Ok(());
        }
        let old = std::mem::replace(&mut self.cur, now.clone());
        self.period_ino(&now);
        self.open_live_period(&now)?;
        self.try_seal(&old)?;
        Ok(())
    }

    /// Commits and seals a period that is no longer current, unless files are still open
    /// for writing in it.
    fn try_seal(&mut self, period: &str) -> Result<()> {
        if period == self.cur || !self.live_roots.contains_key(period) {
            return Ok(());
        }
        let open_writers = self
            .handles
            .values()
            .any(|h| h.write && matches!(self.nodes.get(&h.ino), Some(Inode::Live(n)) if n.period == period));
        if open_writers {
            return Ok(());
        }
        // Taking the lock may show that another writer sealed it already.
        self.session()?;
        if !self.live_roots.contains_key(period) {
            return Ok(());
        }
        self.commit_period(period)?;
        if let Some(Some(base)) = self.bases.get(period).cloned() {
            let sealed = self.session()?.seal(&base)?;
            self.sealed_roots.insert(period.to_string(), sealed.snap.root);
        }
        // The live nodes stay (open read handles may use them) but are no longer writable.
        self.live_roots.remove(period);
        self.bases.remove(period);
        Ok(())
    }

    // ----- node access -------------------------------------------------------------------

    fn live(&self, ino: Ino) -> Result<&LiveNode> {
        match self.nodes.get(&ino) {
            Some(Inode::Live(n)) => Ok(n),
            Some(_) => Err(Error::read_only("sealed snapshot")),
            None => Err(Error::not_found("stale inode")),
        }
    }

    fn live_mut(&mut self, ino: Ino) -> Result<&mut LiveNode> {
        match self.nodes.get_mut(&ino) {
            Some(Inode::Live(n)) => Ok(n),
            Some(_) => Err(Error::read_only("sealed snapshot")),
            None => Err(Error::not_found("stale inode")),
        }
    }

    /// Resolves ROOT and dated directories of writable periods to their live root.
    fn dir_target(&self, ino: Ino) -> Ino {
        let period = match ino {
            ROOT => Some(self.cur.as_str()),
            _ => match self.nodes.get(&ino) {
                Some(Inode::Period { name }) => Some(name.as_str()),
                _ => None,
            },
        };
        period.and_then(|p| self.live_roots.get(p).copied()).unwrap_or(ino)
    }

    /// A writable directory: its live inode. Sealed places give `ReadOnly`.
    fn writable_dir(&mut self, parent: Ino) -> Result<Ino> {
        self.tick()?;
        self.session()?;
        let d = self.dir_target(parent);
        match self.nodes.get(&d) {
            Some(Inode::Live(n)) if self.live_roots.contains_key(&n.period) => match n.body {
                Body::Dir { .. } => Ok(d),
                _ => Err(Error::new(ErrorKind::NotDir, "not a directory")),
            },
            Some(Inode::Live(_)) => Err(Error::read_only("the period is sealed")),
            Some(_) => Err(Error::read_only("snapshots of past periods are read-only")),
            None if parent == ROOT => Err(Error::read_only("the current period is sealed")),
            None => Err(Error::not_found("stale inode")),
        }
    }

    fn writable_node(&mut self, ino: Ino) -> Result<()> {
        self.tick()?;
        self.session()?;
        match self.nodes.get(&ino) {
            Some(Inode::Live(n)) if self.live_roots.contains_key(&n.period) => Ok(()),
            Some(Inode::Live(_)) if self.handles.values().any(|h| h.ino == ino && h.write) => Ok(()),
            None => Err(Error::not_found("stale inode")),
            _ => Err(Error::read_only("snapshots of past periods are read-only")),
        }
    }

    fn mark_dirty(&mut self, mut ino: Ino) {
        loop {
            let Some(Inode::Live(n)) = self.nodes.get_mut(&ino) else { return };
            if let Body::Dir { dirty, .. } = &mut n.body {
                *dirty = true;
            }
            if n.name.is_empty() {
                return;
            }
            ino = n.parent;
        }
    }

    // ----- reading ---------------------------------------------------------------------

    pub fn getattr(&mut self, ino: Ino) -> Result<Attr> {
        self.tick()?;
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
        match ino {
            ROOT => {
                let target = self.dir_target(ROOT);
                match self.nodes.get(&target) {
                    Some(Inode::Live(n)) => Ok(Attr { ino: ROOT, ..self.live_attr(target, n) }),
                    _ => Ok(dir(ROOT, 0o555, created)),
                }
            }
            LATEST => {
                let target = self.latest().ok_or_else(|| Error::not_found("no sealed snapshot yet"))?;
                Ok(Attr {
                    ino,
                    kind: Kind::Symlink,
                    size: target.len() as u64,
                    perm: 0o777,
                    uid: self.uid,
                    gid: self.gid,
                    mtime_ns: created,
                    ctime_ns: created,
                    nlink: 1,
                })
            }
            _ => match self.nodes.get(&ino) {
                Some(Inode::Live(n)) => Ok(self.live_attr(ino, n)),
                Some(Inode::Sealed { node }) => Ok(sealed_attr(ino, node)),
                Some(Inode::Period { name }) => {
                    let writable = self.live_roots.contains_key(name);
                    Ok(dir(ino, if writable { 0o755 } else { 0o555 }, created))
                }
                None => Err(Error::not_found("stale inode")),
            },
        }
    }

    fn live_attr(&self, ino: Ino, n: &LiveNode) -> Attr {
        let (kind, size, nlink) = match &n.body {
            Body::Dir { children, .. } => (Kind::Dir, 0, 2 + children.len() as u32),
            Body::File(f) => (Kind::File, f.size(), 1),
            Body::Symlink(t) => (Kind::Symlink, t.len() as u64, 1),
        };
        Attr {
            ino,
            kind,
            size,
            perm: n.mode & 0o7777,
            uid: n.uid,
            gid: n.gid,
            mtime_ns: n.mtime_ns,
            ctime_ns: n.ctime_ns,
            nlink,
        }
    }

    fn latest(&self) -> Option<String> {
        self.sealed_roots.keys().filter(|p| !self.live_roots.contains_key(*p)).max().cloned()
    }

    pub fn lookup(&mut self, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.tick()?;
        let ino = self.child(parent, name)?;
        self.getattr(ino)
    }

    fn child(&mut self, parent: Ino, name: &[u8]) -> Result<Ino> {
        let missing = || Error::not_found(format!("{}: no such file or directory", String::from_utf8_lossy(name)));
        if parent == ROOT {
            let s = String::from_utf8_lossy(name).into_owned();
            if s == "latest" && self.latest().is_some() {
                return Ok(LATEST);
            }
            if let Some(i) = self.periods.get(&s) {
                return Ok(*i);
            }
        }
        let d = self.dir_target(parent);
        match self.nodes.get(&d) {
            Some(Inode::Live(n)) => match &n.body {
                Body::Dir { children, .. } => children.get(name).copied().ok_or_else(missing),
                _ => Err(Error::new(ErrorKind::NotDir, "not a directory")),
            },
            Some(Inode::Period { name: p }) => {
                let root = *self.sealed_roots.get(p).or_else(|| self.open_roots.get(p)).ok_or_else(missing)?;
                self.sealed_child(d, root, name)
            }
            Some(Inode::Sealed { node }) => match node.kind {
                NodeKind::Dir { tree } => self.sealed_child(d, tree, name),
                _ => Err(Error::new(ErrorKind::NotDir, "not a directory")),
            },
            None if parent == ROOT => Err(missing()),
            None => Err(Error::not_found("stale inode")),
        }
    }

    fn sealed_child(&mut self, parent: Ino, tree: TreeId, name: &[u8]) -> Result<Ino> {
        if let Some(i) = self.sealed_children.get(&(parent, name.to_vec())) {
            return Ok(*i);
        }
        let t = self.v.load_tree(tree)?;
        let node = t.get(name).cloned().ok_or_else(|| Error::not_found("no such file or directory"))?;
        let ino = self.alloc(Inode::Sealed { node });
        self.sealed_children.insert((parent, name.to_vec()), ino);
        Ok(ino)
    }

    /// Directory entries (without `.` and `..`).
    pub fn readdir(&mut self, ino: Ino) -> Result<Vec<DirEntry>> {
        self.tick()?;
        let mut out = Vec::new();
        if ino == ROOT && self.w.is_none() {
            // Listing the root shows what other processes did meanwhile (a prune, a put).
            // Without the lock nothing here is uncommitted, so reloading loses nothing.
            self.reload_after_lock()?;
        }
        if ino == ROOT {
            let periods: Vec<(String, Ino)> = self.periods.iter().map(|(k, v)| (k.clone(), *v)).collect();
            for (p, i) in periods {
                out.push(DirEntry { ino: i, name: p.into_bytes(), kind: Kind::Dir });
            }
            if self.latest().is_some() {
                out.push(DirEntry { ino: LATEST, name: b"latest".to_vec(), kind: Kind::Symlink });
            }
        }
        let d = self.dir_target(ino);
        let names: Vec<Vec<u8>> = match self.nodes.get(&d) {
            Some(Inode::Live(n)) => match &n.body {
                Body::Dir { children, .. } => children.keys().cloned().collect(),
                _ => return Err(Error::new(ErrorKind::NotDir, "not a directory")),
            },
            Some(Inode::Period { name }) => match self.sealed_roots.get(name).or_else(|| self.open_roots.get(name)) {
                Some(t) => self.v.load_tree(*t)?.nodes.iter().map(|n| n.name.clone()).collect(),
                None => Vec::new(),
            },
            Some(Inode::Sealed { node }) => match node.kind {
                NodeKind::Dir { tree } => self.v.load_tree(tree)?.nodes.iter().map(|n| n.name.clone()).collect(),
                _ => return Err(Error::new(ErrorKind::NotDir, "not a directory")),
            },
            None if ino == ROOT => Vec::new(),
            None => return Err(Error::not_found("stale inode")),
        };
        for name in names {
            let i = self.child(d, &name)?;
            let kind = self.getattr(i)?.kind;
            out.push(DirEntry { ino: i, name, kind });
        }
        Ok(out)
    }

    pub fn readlink(&mut self, ino: Ino) -> Result<Vec<u8>> {
        if ino == LATEST {
            return self.latest().map(|s| s.into_bytes()).ok_or_else(|| Error::not_found("no sealed snapshot yet"));
        }
        match self.nodes.get(&ino) {
            Some(Inode::Live(LiveNode { body: Body::Symlink(t), .. })) => Ok(t.clone()),
            Some(Inode::Sealed { node: Node { kind: NodeKind::Symlink { target }, .. } }) => Ok(target.clone()),
            _ => Err(Error::invalid("not a symbolic link")),
        }
    }

    /// The chunk table and read-ahead of a handle that reads a committed file.
    fn make_reader(&self, ino: Ino) -> Result<Option<(crate::repo::FileReader<'static>, u64)>> {
        Ok(match self.nodes.get(&ino) {
            Some(Inode::Sealed { node }) => Some((self.v.file_reader(node)?, 0)),
            Some(Inode::Live(LiveNode { body: Body::File(f), .. })) => {
                f.lazy_content().map(|c| (crate::repo::FileReader::new(self.v, c), f.generation))
            }
            _ => None,
        })
    }

    /// Reads through an open handle (uses its read-ahead for sealed files). Blobs that a prune
    /// moved meanwhile are found again by `Vault::read_blob`.
    pub fn read_fh(&mut self, fh: u64, ino: Ino, off: u64, len: usize) -> Result<Vec<u8>> {
        if let Some(Handle { reader: Some((r, generation)), .. }) = self.handles.get(&fh) {
            let valid = match self.nodes.get(&ino) {
                Some(Inode::Live(LiveNode { body: Body::File(f), .. })) => {
                    f.lazy_content().is_some() && f.generation == *generation
                }
                _ => true,
            };
            if valid {
                return r.read_at(off, len);
            }
        }
        self.read(ino, off, len)
    }

    pub fn read(&mut self, ino: Ino, off: u64, len: usize) -> Result<Vec<u8>> {
        let v = self.v;
        match self.nodes.get(&ino) {
            Some(Inode::Live(LiveNode { body: Body::File(f), .. })) => f.read(v, self.w.as_mut(), off, len),
            Some(Inode::Sealed { node }) => v.file_reader(node)?.read_at(off, len),
            Some(_) => Err(Error::new(ErrorKind::IsDir, "is a directory")),
            None => Err(Error::not_found("stale inode")),
        }
    }

    // ----- opening and writing ---------------------------------------------------------

    /// Opens a file; `owner` is the opening process (used by `flush`).
    pub fn open(&mut self, ino: Ino, write: bool, truncate: bool, owner: u32) -> Result<u64> {
        if write {
            self.writable_node(ino)?;
            let n = self.live_mut(ino)?;
            match &mut n.body {
                Body::File(f) => f.writers += 1,
                _ => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
            }
            if truncate {
                // With the handle registered first, the truncation is committed with the file.
                let fh = self.next_fh;
                self.next_fh += 1;
                self.handles.insert(fh, Handle { ino, write, owner, reader: None });
                if let Err(e) = self.setattr(ino, &SetAttr { size: Some(0), ..Default::default() }) {
                    self.handles.remove(&fh);
                    return Err(e);
                }
                return Ok(fh);
            }
        } else {
            self.tick()?;
            if let Some(Inode::Live(LiveNode { body: Body::Dir { .. }, .. })) = self.nodes.get(&ino) {
                return Err(Error::new(ErrorKind::IsDir, "is a directory"));
            }
        }
        let reader = if write { None } else { self.make_reader(ino)? };
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Handle { ino, write, owner, reader });
        Ok(fh)
    }

    pub fn create(
        &mut self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
        owner: u32,
    ) -> Result<(Attr, u64)> {
        let ino =
            self.make_node(parent, name, S_IFREG | (mode & 0o7777), uid, gid, Body::File(Box::new(FileData::new())))?;
        let fh = self.open(ino, true, false, owner)?;
        Ok((self.getattr(ino)?, fh))
    }

    fn make_node(&mut self, parent: Ino, name: &[u8], mode: u32, uid: u32, gid: u32, body: Body) -> Result<Ino> {
        validate_name(name)?;
        let d = self.writable_dir(parent)?;
        let is_root = self.live(d)?.name.is_empty();
        if is_root && reserved_at_root(&String::from_utf8_lossy(name), matches!(body, Body::Dir { .. })) {
            return Err(Error::new(ErrorKind::NotPermitted, "reserved name at the root of a period"));
        }
        if (is_root || parent == ROOT) && self.periods.contains_key(String::from_utf8_lossy(name).as_ref()) {
            return Err(Error::new(ErrorKind::AlreadyExists, "file exists"));
        }
        if self.live(d)?.children()?.contains_key(name) {
            return Err(Error::new(ErrorKind::AlreadyExists, "file exists"));
        }
        let period = self.live(d)?.period.clone();
        let now = now_ns();
        let ino = self.alloc(Inode::Live(LiveNode {
            parent: d,
            name: name.to_vec(),
            period,
            mode,
            uid,
            gid,
            mtime_ns: now,
            ctime_ns: now,
            body,
        }));
        let p = self.live_mut(d)?;
        p.children_mut()?.insert(name.to_vec(), ino);
        p.mtime_ns = now;
        self.mark_dirty(d);
        Ok(ino)
    }

    pub fn write(&mut self, fh: u64, off: u64, data: &[u8]) -> Result<usize> {
        let h = self.handles.get(&fh).ok_or_else(|| Error::invalid("bad file handle"))?;
        if !h.write {
            return Err(Error::invalid("file not open for writing"));
        }
        let ino = h.ino;
        self.writable_node(ino)?;
        let v = self.v;
        self.session()?;
        let w = self.w.as_mut().ok_or_else(|| Error::read_only("read-only mount"))?;
        let Some(Inode::Live(n)) = self.nodes.get_mut(&ino) else { return Err(Error::not_found("stale inode")) };
        let Body::File(f) = &mut n.body else { return Err(Error::new(ErrorKind::IsDir, "is a directory")) };
        f.write(v, w, off, data)?;
        n.mtime_ns = now_ns();
        Ok(data.len())
    }

    pub fn setattr(&mut self, ino: Ino, a: &SetAttr) -> Result<Attr> {
        self.writable_node(ino)?;
        let v = self.v;
        let now = now_ns();
        {
            self.session()?;
            let w = self.w.as_mut().ok_or_else(|| Error::read_only("read-only mount"))?;
            let Some(Inode::Live(n)) = self.nodes.get_mut(&ino) else { return Err(Error::not_found("stale inode")) };
            if let Some(size) = a.size {
                match &mut n.body {
                    Body::File(f) => f.truncate(v, w, size)?,
                    Body::Dir { .. } => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
                    Body::Symlink(_) => return Err(Error::invalid("not a regular file")),
                }
                n.mtime_ns = now;
            }
            if let Some(m) = a.mode {
                n.mode = (n.mode & S_IFMT) | (m & 0o7777);
            }
            if let Some(u) = a.uid {
                n.uid = u;
            }
            if let Some(g) = a.gid {
                n.gid = g;
            }
            if let Some(t) = a.mtime_ns {
                n.mtime_ns = t;
            }
            n.ctime_ns = now;
            if let Body::File(f) = &mut n.body {
                f.dirty = true;
            }
        }
        let parent = self.live(ino)?.parent;
        self.mark_dirty(parent);
        self.release_lock_if_idle()?;
        self.getattr(ino)
    }

    /// `close()` of one descriptor by process `caller`. The content is committed before close
    /// returns. It is recorded complete when the process that opened the file closes it and
    /// no other descriptor is open for writing; a close by another process (a forked child
    /// closing its copy while the writer goes on) records it incomplete. `release` (the last
    /// close) marks it complete in any case.
    pub fn flush(&mut self, fh: u64, caller: u32) -> Result<()> {
        let Some(h) = self.handles.get(&fh) else { return Ok(()) };
        if !h.write {
            return Ok(());
        }
        let (ino, owner) = (h.ino, h.owner);
        let others = self.handles.iter().any(|(k, o)| *k != fh && o.write && o.ino == ino);
        let state = if caller == owner && !others { FileState::Complete } else { FileState::Incomplete };
        self.commit_file(ino, state)
    }

    /// `fsync()`: commits the file now; while it stays open for writing it is recorded as
    /// incomplete.
    pub fn fsync(&mut self, fh: u64) -> Result<()> {
        let Some(h) = self.handles.get(&fh) else { return Ok(()) };
        let ino = h.ino;
        if !h.write {
            return Ok(());
        }
        self.commit_file(ino, FileState::Incomplete)
    }

    /// The last close of a descriptor: when no writer is left, the file is complete.
    pub fn release(&mut self, fh: u64) -> Result<()> {
        let Some(h) = self.handles.remove(&fh) else { return Ok(()) };
        if !h.write {
            return Ok(());
        }
        let mut period = None;
        let mut last = false;
        if let Some(Inode::Live(n)) = self.nodes.get_mut(&h.ino) {
            if let Body::File(f) = &mut n.body {
                f.writers = f.writers.saturating_sub(1);
                last = f.writers == 0;
            }
            period = Some(n.period.clone());
        }
        if last {
            self.commit_file(h.ino, FileState::Complete)?;
            if let Some(Inode::Live(LiveNode { body: Body::File(f), .. })) = self.nodes.get_mut(&h.ino) {
                f.unload();
            }
        }
        if let Some(p) = period {
            if p != self.cur {
                self.try_seal(&p)?;
            }
        }
        self.release_lock_if_idle()
    }

    fn commit_file(&mut self, ino: Ino, state: FileState) -> Result<()> {
        let v = self.v;
        let (period, parent) = {
            self.session()?;
            let w = self.w.as_mut().ok_or_else(|| Error::read_only("read-only mount"))?;
            let Some(Inode::Live(n)) = self.nodes.get_mut(&ino) else { return Ok(()) };
            let Body::File(f) = &mut n.body else { return Ok(()) };
            let was = f.committed.as_ref().map(|c| c.state);
            if !f.dirty && was == Some(state) {
                return Ok(());
            }
            f.finalize(v, w, state)?;
            (n.period.clone(), n.parent)
        };
        self.mark_dirty(parent);
        self.commit_period(&period)
    }

    /// Writes the changed directories of a period and a new snapshot revision.
    pub fn commit_period(&mut self, period: &str) -> Result<()> {
        let Some(&root) = self.live_roots.get(period) else { return Ok(()) };
        let empty = matches!(self.live(root)?.children(), Ok(c) if c.is_empty());
        if empty && self.bases.get(period).cloned().flatten().is_none() {
            // Nothing was ever written in this period: no revision yet.
            return Ok(());
        }
        let (root_tree, files, bytes) = self.build_dir(root)?;
        let base = self.bases.get(period).cloned().flatten();
        if let Some(b) = &base {
            if b.snap.root == root_tree {
                return Ok(());
            }
        }
        self.session()?;
        let w = self.w.as_mut().ok_or_else(|| Error::read_only("read-only mount"))?;
        let info = w.commit(period, base.as_ref(), root_tree, files, bytes)?;
        self.bases.insert(period.to_string(), Some(info));
        Ok(())
    }

    /// Stores the tree of a live directory (only changed subdirectories are re-encoded).
    /// Returns its id and the number and total size of committed files below it.
    fn build_dir(&mut self, ino: Ino) -> Result<(TreeId, u64, u64)> {
        let children: Vec<(Vec<u8>, Ino)> = match &self.live(ino)?.body {
            Body::Dir { children, .. } => children.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            _ => return Err(Error::new(ErrorKind::NotDir, "not a directory")),
        };
        let mut tree = Tree::default();
        let (mut files, mut bytes) = (0u64, 0u64);
        for (name, c) in children {
            let n = self.live(c)?;
            let (mode, uid, gid, mtime_ns) = (n.mode, n.uid, n.gid, n.mtime_ns);
            let node = match &n.body {
                Body::Dir { .. } => {
                    let (t, f, b) = self.build_dir(c)?;
                    files += f;
                    bytes += b;
                    Node { name, kind: NodeKind::Dir { tree: t }, mode, uid, gid, mtime_ns, size: 0 }
                }
                Body::File(f) => match &f.committed {
                    Some(cm) => {
                        files += 1;
                        bytes += cm.size;
                        Node {
                            name,
                            kind: NodeKind::File { state: cm.state, content: cm.content.clone() },
                            mode,
                            uid,
                            gid,
                            mtime_ns,
                            size: cm.size,
                        }
                    }
                    None => continue,
                },
                Body::Symlink(t) => {
                    Node { name, kind: NodeKind::Symlink { target: t.clone() }, mode, uid, gid, mtime_ns, size: 0 }
                }
            };
            tree.upsert(node);
        }
        let (dirty, cached) = match &self.live(ino)?.body {
            Body::Dir { dirty, tree, .. } => (*dirty, *tree),
            _ => (true, None),
        };
        let id = match (dirty, cached) {
            (false, Some(t)) => t,
            _ => {
                self.session()?;
                let w = self.w.as_mut().ok_or_else(|| Error::read_only("read-only mount"))?;
                w.write_tree(tree)?
            }
        };
        if let Some(Inode::Live(LiveNode { body: Body::Dir { dirty, tree, .. }, .. })) = self.nodes.get_mut(&ino) {
            *dirty = false;
            *tree = Some(id);
        }
        Ok((id, files, bytes))
    }

    // ----- namespace operations ---------------------------------------------------------

    pub fn mkdir(&mut self, parent: Ino, name: &[u8], mode: u32, uid: u32, gid: u32) -> Result<Attr> {
        let ino = self.make_node(
            parent,
            name,
            S_IFDIR | (mode & 0o7777),
            uid,
            gid,
            Body::Dir { children: BTreeMap::new(), dirty: true, tree: None },
        )?;
        self.release_lock_if_idle()?;
        self.getattr(ino)
    }

    pub fn symlink(&mut self, parent: Ino, name: &[u8], target: &[u8], uid: u32, gid: u32) -> Result<Attr> {
        let ino = self.make_node(parent, name, S_IFLNK | 0o777, uid, gid, Body::Symlink(target.to_vec()))?;
        self.release_lock_if_idle()?;
        self.getattr(ino)
    }

    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let d = self.writable_dir(parent)?;
        let c = self.child(d, name)?;
        if matches!(self.live(c)?.body, Body::Dir { .. }) {
            return Err(Error::new(ErrorKind::IsDir, "is a directory"));
        }
        self.detach(d, name)
    }

    pub fn rmdir(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let d = self.writable_dir(parent)?;
        let c = self.child(d, name)?;
        match &self.live(c)?.body {
            Body::Dir { children, .. } if children.is_empty() => {}
            Body::Dir { .. } => return Err(Error::new(ErrorKind::NotEmpty, "directory not empty")),
            _ => return Err(Error::new(ErrorKind::NotDir, "not a directory")),
        }
        self.detach(d, name)
    }

    fn detach(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        let now = now_ns();
        let p = self.live_mut(dir)?;
        p.children_mut()?.remove(name);
        p.mtime_ns = now;
        self.mark_dirty(dir);
        // The inode stays for open handles; it is simply no longer reachable.
        self.release_lock_if_idle()
    }

    pub fn rename(&mut self, parent: Ino, name: &[u8], newparent: Ino, newname: &[u8], noreplace: bool) -> Result<()> {
        validate_name(newname)?;
        let d = self.writable_dir(parent)?;
        let nd = self.writable_dir(newparent)?;
        if self.live(d)?.period != self.live(nd)?.period {
            return Err(Error::new(ErrorKind::NotPermitted, "cannot move files between periods"));
        }
        let c = self.child(d, name)?;
        let is_dir = matches!(self.live(c)?.body, Body::Dir { .. });
        if self.live(nd)?.name.is_empty() {
            let s = String::from_utf8_lossy(newname);
            if reserved_at_root(&s, is_dir) || self.periods.contains_key(s.as_ref()) {
                return Err(Error::new(ErrorKind::NotPermitted, "reserved name at the root of a period"));
            }
        }
        // Refuse moving a directory into itself.
        let mut up = nd;
        loop {
            if up == c {
                return Err(Error::invalid("cannot move a directory into itself"));
            }
            let n = self.live(up)?;
            if n.name.is_empty() {
                break;
            }
            up = n.parent;
        }
        if let Some(&existing) = self.live(nd)?.children()?.get(newname) {
            if existing == c {
                return Ok(());
            }
            if noreplace {
                return Err(Error::new(ErrorKind::AlreadyExists, "file exists"));
            }
            match (&self.live(existing)?.body, is_dir) {
                (Body::Dir { children, .. }, true) if !children.is_empty() => {
                    return Err(Error::new(ErrorKind::NotEmpty, "directory not empty"))
                }
                (Body::Dir { .. }, false) => return Err(Error::new(ErrorKind::IsDir, "is a directory")),
                (Body::File(_) | Body::Symlink(_), true) => {
                    return Err(Error::new(ErrorKind::NotDir, "not a directory"))
                }
                _ => {}
            }
        }
        let now = now_ns();
        self.live_mut(d)?.children_mut()?.remove(name);
        self.live_mut(nd)?.children_mut()?.insert(newname.to_vec(), c);
        {
            let n = self.live_mut(c)?;
            n.parent = nd;
            n.name = newname.to_vec();
            n.ctime_ns = now;
        }
        self.live_mut(d)?.mtime_ns = now;
        self.live_mut(nd)?.mtime_ns = now;
        self.mark_dirty(d);
        self.mark_dirty(nd);
        self.release_lock_if_idle()
    }

    /// Commits every writable period (fsyncdir, unmount).
    pub fn commit_all(&mut self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let v = self.v;
        // Every changed file is committed; files still open for writing as incomplete.
        let dirty: Vec<Ino> = self
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n, Inode::Live(LiveNode { body: Body::File(f), .. }) if f.dirty))
            .map(|(i, _)| *i)
            .collect();
        for ino in dirty {
            let open = self.handles.values().any(|h| h.write && h.ino == ino);
            self.session()?;
            let w = self.w.as_mut().ok_or_else(|| Error::read_only("read-only mount"))?;
            if let Some(Inode::Live(n)) = self.nodes.get_mut(&ino) {
                if let Body::File(f) = &mut n.body {
                    f.finalize(v, w, if open { FileState::Incomplete } else { FileState::Complete })?;
                    let p = n.parent;
                    self.mark_dirty(p);
                }
            }
        }
        let periods: Vec<String> = self.live_roots.keys().cloned().collect();
        for p in periods {
            self.commit_period(&p)?;
        }
        Ok(())
    }

    /// Unmount: commits everything and seals ended periods.
    pub fn shutdown(&mut self) -> Result<()> {
        self.commit_all()?;
        let old: Vec<String> = self.live_roots.keys().filter(|p| **p != self.cur).cloned().collect();
        self.handles.clear();
        for p in old {
            self.try_seal(&p)?;
        }
        Ok(())
    }

    /// Space of the file system holding the vault: (total bytes, free bytes, block size).
    pub fn statfs(&self) -> (u64, u64, u32) {
        let Some(p) = self.v.store().local_path() else { return (1 << 40, 1 << 40, 4096) };
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return (0, 0, 4096) };
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `s` a valid out-pointer.
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return (0, 0, 4096);
        }
        let f = s.f_frsize as u64;
        (s.f_blocks as u64 * f, s.f_bavail as u64 * f, f as u32)
    }
}

impl LiveNode {
    fn children(&self) -> Result<&BTreeMap<Vec<u8>, Ino>> {
        match &self.body {
            Body::Dir { children, .. } => Ok(children),
            _ => Err(Error::new(ErrorKind::NotDir, "not a directory")),
        }
    }
    fn children_mut(&mut self) -> Result<&mut BTreeMap<Vec<u8>, Ino>> {
        match &mut self.body {
            Body::Dir { children, .. } => Ok(children),
            _ => Err(Error::new(ErrorKind::NotDir, "not a directory")),
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
