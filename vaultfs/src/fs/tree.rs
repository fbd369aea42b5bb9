//! The writable side: the live trees of the periods this mount writes, as inodes. A node may
//! have several names (hard links); a directory has one. What a change journals is built
//! here: the tree node of every name of a file, the attributes of a directory.

use super::attr::{Attr, Ino, Kind};
use super::file::{Committed, FileData};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use vault::format::tree::{Node, NodeKind, Time};
use vault::id::SnapshotId;
use vault::repo::edit::{DirAttrs, Op, Path};
use vault::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Times {
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
}

impl Times {
    pub fn all(t: Time) -> Times {
        Times { atime: t, mtime: t, ctime: t }
    }
}

/// A regular file of the writable tree: its staged content behind its own lock, and what
/// `stat` needs without taking that lock.
pub struct FileNode {
    data: Mutex<FileData>,
    pub(super) size: AtomicU64,
    times: Mutex<Times>,
}

impl FileNode {
    pub(super) fn new(data: FileData, times: Times) -> Arc<Self> {
        let size = data.size();
        Arc::new(FileNode { data: Mutex::new(data), size: AtomicU64::new(size), times: Mutex::new(times) })
    }
    pub(super) fn data(&self) -> MutexGuard<'_, FileData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn times(&self) -> Times {
        *self.times.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn update_times(&self, f: impl FnOnce(&mut Times)) {
        f(&mut self.times.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub(super) enum Body {
    Dir {
        children: BTreeMap<Vec<u8>, Ino>,
    },
    File(Arc<FileNode>),
    Symlink(Vec<u8>),
    /// A fifo, socket or device.
    Special(NodeKind),
}

pub(super) struct LiveNode {
    /// Every name of the node: (parent directory, name). The root of a period has the one
    /// link (ROOT, empty name); a directory has exactly one; none once unlinked (open handles
    /// may still use it).
    pub links: Vec<(Ino, Vec<u8>)>,
    pub period: String,
    /// Type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// For everything but regular files (theirs live in the [`FileNode`]).
    pub times: Times,
    pub body: Body,
    /// Hard links: the id every name of this file carries in the tree (0: one name).
    pub link_id: u64,
    /// Directories: the attributes as last journaled.
    pub logged: bool,
}

impl LiveNode {
    pub fn is_root(&self) -> bool {
        self.links.first().is_some_and(|(_, n)| n.is_empty())
    }
    pub fn unlinked(&self) -> bool {
        self.links.is_empty()
    }
    pub fn times(&self) -> Times {
        match &self.body {
            Body::File(f) => f.times(),
            _ => self.times,
        }
    }
    pub fn update_times(&mut self, f: impl FnOnce(&mut Times)) {
        match &self.body {
            Body::File(file) => file.update_times(f),
            _ => f(&mut self.times),
        }
    }
    pub fn kind(&self) -> Kind {
        match &self.body {
            Body::Dir { .. } => Kind::Dir,
            Body::File(_) => Kind::File,
            Body::Symlink(_) => Kind::Symlink,
            Body::Special(k) => Kind::of(k),
        }
    }
}

/// The live trees.
pub(super) struct Tree {
    pub nodes: HashMap<Ino, LiveNode>,
    pub live_roots: BTreeMap<String, Ino>,
    pub cur: String,
    /// The committed revision each live tree was loaded from or last reloaded to.
    pub loaded: HashMap<String, Option<SnapshotId>>,
    /// Renames of incomplete files to `NAME.incomplete`, to journal with the next change.
    pub deferred: Vec<(String, Op)>,
}

impl Tree {
    /// `PERIOD/path` of a live inode, for messages: the directories holding it followed back to
    /// a period's root (a scan: only for errors).
    pub fn path_of(&self, ino: Ino) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        let mut cur = ino;
        for _ in 0..4096 {
            if let Some((p, _)) = self.live_roots.iter().find(|(_, r)| **r == cur) {
                parts.push(p.clone());
                parts.reverse();
                return Some(parts.join("/"));
            }
            let (parent, name) = self.nodes.iter().find_map(|(i, n)| match &n.body {
                Body::Dir { children } => children.iter().find(|(_, c)| **c == cur).map(|(name, _)| (*i, name)),
                _ => None,
            })?;
            parts.push(String::from_utf8_lossy(name).into_owned());
            cur = parent;
        }
        None
    }
}

pub(super) fn stale() -> Error {
    Error::not_found("stale inode")
}

pub(super) fn not_dir() -> Error {
    Error::new(ErrorKind::NotDir, "not a directory")
}

impl Tree {
    pub fn node(&self, ino: Ino) -> Result<&LiveNode> {
        self.nodes.get(&ino).ok_or_else(stale)
    }
    pub fn node_mut(&mut self, ino: Ino) -> Result<&mut LiveNode> {
        self.nodes.get_mut(&ino).ok_or_else(stale)
    }
    pub fn children(&self, ino: Ino) -> Result<&BTreeMap<Vec<u8>, Ino>> {
        match &self.node(ino)?.body {
            Body::Dir { children } => Ok(children),
            _ => Err(not_dir()),
        }
    }
    pub fn children_mut(&mut self, ino: Ino) -> Result<&mut BTreeMap<Vec<u8>, Ino>> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir { children } => Ok(children),
            _ => Err(not_dir()),
        }
    }

    /// The path of a directory below its period's root; `None` once removed.
    pub fn dir_path(&self, mut ino: Ino) -> Option<Path> {
        let mut out = Vec::new();
        loop {
            let n = self.nodes.get(&ino)?;
            let (parent, name) = n.links.first()?;
            if name.is_empty() {
                break;
            }
            out.push(name.clone());
            ino = *parent;
        }
        out.reverse();
        Some(out)
    }

    /// Every path of a node (one per hard link).
    pub fn paths_of(&self, ino: Ino) -> Vec<Path> {
        let Some(n) = self.nodes.get(&ino) else { return Vec::new() };
        if n.is_root() {
            return Vec::new();
        }
        n.links
            .iter()
            .filter_map(|(p, name)| {
                let mut path = self.dir_path(*p)?;
                path.push(name.clone());
                Some(path)
            })
            .collect()
    }

    /// The tree node a name of `ino` records (files: with `content` as committed).
    pub fn tree_node(&self, ino: Ino, content: Option<&Committed>) -> Option<Node> {
        let n = self.nodes.get(&ino)?;
        let t = n.times();
        let (kind, size) = match &n.body {
            Body::File(_) => {
                let c = content?;
                (NodeKind::File { state: c.state, content: c.content.clone() }, c.size)
            }
            Body::Symlink(target) => (NodeKind::Symlink { target: target.clone() }, 0),
            Body::Special(k) => (k.clone(), 0),
            Body::Dir { .. } => return None,
        };
        let name = n.links.first().map(|l| l.1.clone()).unwrap_or_default();
        Some(Node {
            name,
            kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            atime: t.atime,
            mtime: t.mtime,
            ctime: t.ctime,
            size,
            link: n.link_id,
        })
    }

    /// A `put` of every name of a non-directory node.
    pub fn put_ops(&self, ino: Ino, content: Option<&Committed>) -> Vec<Op> {
        let Some(node) = self.tree_node(ino, content) else { return Vec::new() };
        self.paths_of(ino)
            .into_iter()
            .map(|path| {
                let mut node = node.clone();
                node.name = path.last().cloned().unwrap_or_default();
                Op::Put { path, node }
            })
            .collect()
    }

    /// The `dir` operation describing a directory's current attributes.
    pub fn dir_op(&self, ino: Ino) -> Option<Op> {
        let n = self.nodes.get(&ino)?;
        if n.is_root() || n.unlinked() {
            return None;
        }
        let path = self.dir_path(ino)?;
        let t = n.times;
        Some(Op::Dir {
            path,
            attrs: DirAttrs { mode: n.mode, uid: n.uid, gid: n.gid, atime: t.atime, mtime: t.mtime, ctime: t.ctime },
        })
    }

    /// `ops` preceded by a `dir` for each of `dirs` whose attributes changed since they were
    /// last journaled.
    pub fn with_dirs(&mut self, dirs: &[Ino], ops: Vec<Op>) -> Vec<Op> {
        let mut out = Vec::new();
        for d in dirs {
            if self.nodes.get(d).is_some_and(|n| !n.logged) {
                out.extend(self.dir_op(*d));
                if let Some(n) = self.nodes.get_mut(d) {
                    n.logged = true;
                }
            }
        }
        out.extend(ops);
        out
    }

    /// A directory's contents changed now.
    pub fn touch_dir(&mut self, dir: Ino, now: Time) {
        if let Some(n) = self.nodes.get_mut(&dir) {
            n.times.mtime = now;
            n.times.ctime = now;
            n.logged = false;
        }
    }

    pub fn attr(&self, ino: Ino) -> Option<Attr> {
        let n = self.nodes.get(&ino)?;
        let t = n.times();
        let (size, nlink, rdev) = match &n.body {
            Body::Dir { children } => {
                let subdirs = children
                    .values()
                    .filter(|c| matches!(self.nodes.get(c).map(|x| &x.body), Some(Body::Dir { .. })))
                    .count();
                (0, 2 + subdirs as u32, 0)
            }
            Body::File(f) => (f.size.load(Ordering::SeqCst), n.links.len() as u32, 0),
            Body::Symlink(target) => (target.len() as u64, n.links.len() as u32, 0),
            Body::Special(k) => (0, n.links.len() as u32, k.rdev()),
        };
        Some(Attr {
            ino,
            kind: n.kind(),
            size,
            perm: n.mode & 0o7777,
            uid: n.uid,
            gid: n.gid,
            atime: t.atime,
            mtime: t.mtime,
            ctime: t.ctime,
            nlink,
            rdev,
        })
    }
}
