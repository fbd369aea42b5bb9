//! What `stat` and `readdir` show, and what `setattr` changes: the types the FUSE adapter
//! translates, independent of where a node lives (writable tree or sealed snapshot).

use vault::format::tree::{Node, NodeKind, Time};

pub type Ino = u64;

/// A file handle: what `open` and `create` return and every read, write, flush and release
/// takes. A type of its own, so that an inode number cannot be passed for a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fh(pub u64);
pub const ROOT: Ino = 1;
pub const LATEST: Ino = 2;
/// Inodes of the snapshot side (dated directories, sealed nodes) carry this bit.
pub(super) const SNAP_BIT: Ino = 1 << 62;
pub(super) const FIRST_FREE: Ino = 16;

/// Most hard links of one file (EMLINK past it).
pub const LINK_MAX: usize = 65_000;
/// Longest name of a directory entry (ENAMETOOLONG past it).
pub const NAME_MAX: usize = 255;
/// Longest symlink target (ENAMETOOLONG past it).
pub const TARGET_MAX: usize = 4095;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    pub fn of(k: &NodeKind) -> Kind {
        match k {
            NodeKind::Dir { .. } => Kind::Dir,
            NodeKind::File { .. } => Kind::File,
            NodeKind::Symlink { .. } => Kind::Symlink,
            NodeKind::Fifo => Kind::Fifo,
            NodeKind::Socket => Kind::Socket,
            NodeKind::CharDevice { .. } => Kind::CharDevice,
            NodeKind::BlockDevice { .. } => Kind::BlockDevice,
        }
    }
}

/// What `stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (with set-id and sticky bits).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    pub nlink: u32,
    pub rdev: u64,
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
    pub atime: Option<Time>,
    pub mtime: Option<Time>,
}

/// The attributes of a node of a sealed (or read-only) snapshot; `nlink` counts its hard
/// links in the period.
pub(super) fn sealed_attr(ino: Ino, node: &Node, nlink: u32) -> Attr {
    let size = match &node.kind {
        NodeKind::Symlink { target } => target.len() as u64,
        NodeKind::File { .. } => node.size,
        _ => 0,
    };
    Attr {
        ino,
        kind: Kind::of(&node.kind),
        size,
        // As stored: every change is refused with EROFS anyway, for root too.
        perm: node.mode & 0o7777,
        uid: node.uid,
        gid: node.gid,
        atime: node.atime,
        mtime: node.mtime,
        ctime: node.ctime,
        nlink: if matches!(node.kind, NodeKind::Dir { .. }) { 2 } else { nlink },
        rdev: node.kind.rdev(),
    }
}
