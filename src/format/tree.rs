//! Directory listings (tree blobs) and chunk-list pages (list blobs). One tree per directory,
//! entries sorted by name, names unique. A small file carries its chunk list inline; a large
//! one refers to pages of at most [`PAGE_CHUNKS`] chunks stored as list blobs, so a directory
//! listing stays small whatever the file sizes, and unchanged pages are shared between
//! snapshots.
//!
//! Tree plaintext: `version u8 = 3 | count u32 | count x node`, node =
//! `name (u16 len + bytes) | type u8 (1 file, 2 dir, 3 symlink, 4 fifo, 5 socket, 6 character
//! device, 7 block device) | mode u32 | uid u32 | gid u32 | atime | mtime | ctime (each: seconds
//! i64 | nanoseconds u32) | size u64 | link u64 | type-specific`, where file = `state u8
//! (0 complete, 1 incomplete, 2 failed) | chunks | encoding u8 (0 stored as is, 1 expanded) |
//! if 1: recipe chunks`, chunks = `inline count u32 | inline x (chunk id [32] | length u32) |
//! page count u32 | pages x (list id [32] | chunk count u32 | bytes u64)`, dir = `tree id
//! [32]`, symlink = `target (u16 len + bytes)`, devices = `rdev u64`, fifo and socket: nothing.
//! A file stored as is: its chunks add up to `size`. Expanded (src/rebuild): the chunks hold
//! the expanded stream and the recipe's chunks the recipe; `size` is the original size.
//! `link`: nodes of one period with the same nonzero value are hard links of one file.
//! Version 2 trees have no encoding byte (every file as is); version 1 trees (types 1-3,
//! `mtime i64 (ns)` only, no link) decode with atime and ctime equal to mtime.
//! List plaintext: `version u8 = 1 | count u32 | count x (chunk id [32] | length u32)`.

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::{ChunkId, ListId, TreeId};

/// Version of list blobs.
const VERSION: u8 = 1;
/// Version of the trees this build writes; it reads 1 to 3.
pub const TREE_VERSION: u8 = 3;

/// A point in time: seconds since the epoch (the whole i64 range) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

impl Time {
    pub fn from_ns(ns: i64) -> Time {
        Time { sec: ns.div_euclid(1_000_000_000), nsec: ns.rem_euclid(1_000_000_000) as u32 }
    }
    pub fn now() -> Time {
        Self::from_system(std::time::SystemTime::now())
    }
    pub fn from_system(t: std::time::SystemTime) -> Time {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Time { sec: d.as_secs() as i64, nsec: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                let mut sec = -(d.as_secs() as i64);
                let mut nsec = d.subsec_nanos();
                if nsec > 0 {
                    sec -= 1;
                    nsec = 1_000_000_000 - nsec;
                }
                Time { sec, nsec }
            }
        }
    }
    /// Nanoseconds since the epoch, saturating outside about 1677-2262.
    pub fn as_ns(&self) -> i64 {
        self.sec.saturating_mul(1_000_000_000).saturating_add(self.nsec as i64)
    }
    fn write(&self, w: &mut Writer) {
        w.i64(self.sec).u32(self.nsec);
    }
    fn read(r: &mut Reader) -> Result<Time> {
        let t = Time { sec: r.i64()?, nsec: r.u32()? };
        if t.nsec >= 1_000_000_000 {
            return Err(Error::corrupt("tree: nanoseconds out of range"));
        }
        Ok(t)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// Most chunks in one list page (64 MiB of file at the default 4 KiB chunks).
pub const PAGE_CHUNKS: usize = 16384;
/// Files with at most this many chunks keep their list inline in the tree.
pub const INLINE_CHUNKS: usize = 1024;

/// One stored page of a file's chunk list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRef {
    pub id: ListId,
    pub chunks: u32,
    pub bytes: u64,
}

/// A file's content: inline chunks, then pages, in file order (one of the two is empty).
/// With a recipe, the chunks hold the file's expanded stream and the file is what the recipe
/// makes of it (src/rebuild); without, the chunks are the file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Content {
    pub inline: Vec<ChunkRef>,
    pub pages: Vec<PageRef>,
    pub recipe: Option<Box<Recipe>>,
}

/// How a file stored expanded is rebuilt: the chunks of its recipe and the original size.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Recipe {
    pub size: u64,
    pub inline: Vec<ChunkRef>,
    pub pages: Vec<PageRef>,
}

impl Content {
    /// The size of the file.
    pub fn size(&self) -> u64 {
        match &self.recipe {
            Some(r) => r.size,
            None => self.chunk_bytes(),
        }
    }
    /// Bytes of the chunks (the expanded stream of a file with a recipe).
    pub fn chunk_bytes(&self) -> u64 {
        list_bytes(&self.inline, &self.pages)
    }
    pub fn chunk_count(&self) -> u64 {
        self.lists().map(|(i, p)| i.len() as u64 + p.iter().map(|p| p.chunks as u64).sum::<u64>()).sum()
    }
    pub fn inline(chunks: Vec<ChunkRef>) -> Self {
        Content { inline: chunks, pages: Vec::new(), recipe: None }
    }
    /// The chunk lists the file needs: its own and its recipe's.
    pub fn lists(&self) -> impl Iterator<Item = (&[ChunkRef], &[PageRef])> {
        std::iter::once((self.inline.as_slice(), self.pages.as_slice()))
            .chain(self.recipe.iter().map(|r| (r.inline.as_slice(), r.pages.as_slice())))
    }
    /// The chunks alone, as a content without recipe.
    pub fn chunks_only(&self) -> Content {
        Content { inline: self.inline.clone(), pages: self.pages.clone(), recipe: None }
    }
}

impl Recipe {
    /// The recipe's own chunks, as a content.
    pub fn content(&self) -> Content {
        Content { inline: self.inline.clone(), pages: self.pages.clone(), recipe: None }
    }
}

fn list_bytes(inline: &[ChunkRef], pages: &[PageRef]) -> u64 {
    inline.iter().map(|c| c.len as u64).sum::<u64>() + pages.iter().map(|p| p.bytes).sum::<u64>()
}

fn write_chunks(w: &mut Writer, inline: &[ChunkRef], pages: &[PageRef]) {
    w.u32(inline.len() as u32);
    for c in inline {
        w.raw(c.id.as_bytes()).u32(c.len);
    }
    w.u32(pages.len() as u32);
    for p in pages {
        w.raw(p.id.as_bytes()).u32(p.chunks).u64(p.bytes);
    }
}

fn read_chunks(r: &mut Reader) -> Result<(Vec<ChunkRef>, Vec<PageRef>)> {
    let inline = r.items(36, |r| Ok(ChunkRef { id: ChunkId(r.array()?), len: r.u32()? }))?;
    let pages = r.items(44, |r| Ok(PageRef { id: ListId(r.array()?), chunks: r.u32()?, bytes: r.u64()? }))?;
    Ok((inline, pages))
}

pub fn encode_list(chunks: &[ChunkRef]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(VERSION).u32(chunks.len() as u32);
    for c in chunks {
        w.raw(c.id.as_bytes()).u32(c.len);
    }
    w.finish()
}

pub fn decode_list(b: &[u8]) -> Result<Vec<ChunkRef>> {
    let mut r = Reader::new(b, "chunk list");
    r.version(VERSION)?;
    let out = r.items(36, |r| Ok(ChunkRef { id: ChunkId(r.array()?), len: r.u32()? }))?;
    r.end()?;
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Closed normally: the content is what the writer wrote.
    Complete = 0,
    /// The writer never finished (crash, kill): content may be short.
    Incomplete = 1,
    /// Written by a backup job that exited with an error.
    Failed = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    File { state: FileState, content: Content },
    Dir { tree: TreeId },
    Symlink { target: Vec<u8> },
    Fifo,
    Socket,
    CharDevice { rdev: u64 },
    BlockDevice { rdev: u64 },
}

impl NodeKind {
    fn code(&self) -> u8 {
        match self {
            NodeKind::File { .. } => 1,
            NodeKind::Dir { .. } => 2,
            NodeKind::Symlink { .. } => 3,
            NodeKind::Fifo => 4,
            NodeKind::Socket => 5,
            NodeKind::CharDevice { .. } => 6,
            NodeKind::BlockDevice { .. } => 7,
        }
    }
    /// The `S_IF*` bits of the kind.
    pub fn type_bits(&self) -> u32 {
        match self {
            NodeKind::File { .. } => 0o100000,
            NodeKind::Dir { .. } => 0o040000,
            NodeKind::Symlink { .. } => 0o120000,
            NodeKind::Fifo => 0o010000,
            NodeKind::Socket => 0o140000,
            NodeKind::CharDevice { .. } => 0o020000,
            NodeKind::BlockDevice { .. } => 0o060000,
        }
    }
    pub fn rdev(&self) -> u64 {
        match self {
            NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => *rdev,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    pub size: u64,
    /// Hard links: nodes of one period with the same nonzero value are one file.
    pub link: u64,
}

impl Node {
    /// A node with every time set to `t` and no hard link.
    pub fn new(name: Vec<u8>, kind: NodeKind, mode: u32, uid: u32, gid: u32, t: Time, size: u64) -> Node {
        Node { name, kind, mode, uid, gid, atime: t, mtime: t, ctime: t, size, link: 0 }
    }
}

/// A decoded directory: nodes sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Encodes one node as it appears in a tree (also used by the mount's journal).
pub fn encode_node(w: &mut Writer, n: &Node) {
    w.bytes16(&n.name);
    w.u8(n.kind.code()).u32(n.mode).u32(n.uid).u32(n.gid);
    n.atime.write(w);
    n.mtime.write(w);
    n.ctime.write(w);
    w.u64(n.size).u64(n.link);
    match &n.kind {
        NodeKind::File { state, content } => {
            w.u8(*state as u8);
            write_chunks(w, &content.inline, &content.pages);
            match &content.recipe {
                None => {
                    w.u8(0);
                }
                Some(r) => {
                    w.u8(1);
                    write_chunks(w, &r.inline, &r.pages);
                }
            }
        }
        NodeKind::Dir { tree } => {
            w.raw(tree.as_bytes());
        }
        NodeKind::Symlink { target } => {
            w.bytes16(target);
        }
        NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => {
            w.u64(*rdev);
        }
        NodeKind::Fifo | NodeKind::Socket => {}
    }
}

/// Decodes one node written by [`encode_node`] in tree format `version` (1 to 3), checking
/// its name and sizes.
pub fn decode_node(r: &mut Reader, version: u8) -> Result<Node> {
    let name = r.bytes16()?.to_vec();
    let t = r.u8()?;
    let (mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?);
    let (atime, mtime, ctime, size, link) = if version >= 2 {
        (Time::read(r)?, Time::read(r)?, Time::read(r)?, r.u64()?, r.u64()?)
    } else {
        let m = Time::from_ns(r.i64()?);
        (m, m, m, r.u64()?, 0)
    };
    let kind = match t {
        1 => {
            let state = match r.u8()? {
                0 => FileState::Complete,
                1 => FileState::Incomplete,
                2 => FileState::Failed,
                s => return Err(Error::corrupt(format!("tree: bad file state {s}"))),
            };
            let (inline, pages) = read_chunks(r)?;
            let recipe = match if version >= 3 { r.u8()? } else { 0 } {
                0 => None,
                1 => {
                    let (inline, pages) = read_chunks(r)?;
                    Some(Box::new(Recipe { size, inline, pages }))
                }
                x => return Err(Error::corrupt(format!("tree: unknown file encoding {x}"))),
            };
            let content = Content { inline, pages, recipe };
            if content.size() != size {
                return Err(Error::corrupt("tree: file size differs from its chunk lengths"));
            }
            NodeKind::File { state, content }
        }
        2 => NodeKind::Dir { tree: TreeId(r.array()?) },
        3 => NodeKind::Symlink { target: r.bytes16()?.to_vec() },
        4 if version >= 2 => NodeKind::Fifo,
        5 if version >= 2 => NodeKind::Socket,
        6 if version >= 2 => NodeKind::CharDevice { rdev: r.u64()? },
        7 if version >= 2 => NodeKind::BlockDevice { rdev: r.u64()? },
        _ => return Err(Error::corrupt(format!("tree: unknown node type {t}"))),
    };
    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
        return Err(Error::corrupt("tree: invalid entry name"));
    }
    Ok(Node { name, kind, mode, uid, gid, atime, mtime, ctime, size, link })
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(TREE_VERSION).u32(self.nodes.len() as u32);
        for n in &self.nodes {
            encode_node(&mut w, n);
        }
        w.finish()
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "tree");
        let version = r.u8()?;
        if version == 0 || version > TREE_VERSION {
            return Err(Error::unsupported(format!(
                "tree: format version {version} is not supported (this build reads versions 1 to {TREE_VERSION})"
            )));
        }
        let n = r.count(32)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        for _ in 0..n {
            let node = decode_node(&mut r, version)?;
            if let Some(prev) = nodes.last() {
                if prev.name >= node.name {
                    return Err(Error::corrupt("tree: entries not sorted or not unique"));
                }
            }
            nodes.push(node);
        }
        r.end()?;
        Ok(Tree { nodes })
    }

    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }

    /// Inserts or replaces the node with the same name, keeping the order.
    pub fn upsert(&mut self, node: Node) {
        match self.nodes.binary_search_by(|n| n.name.cmp(&node.name)) {
            Ok(i) => self.nodes[i] = node,
            Err(i) => self.nodes.insert(i, node),
        }
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Node> {
        match self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)) {
            Ok(i) => Some(self.nodes.remove(i)),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_node() -> impl Strategy<Value = Node> {
        let kind = prop_oneof![
            (
                proptest::collection::vec((any::<[u8; 32]>(), 1u32..70000), 0..5),
                proptest::collection::vec((any::<[u8; 32]>(), 1u32..20000, 1u64..1 << 40), 0..3),
                0u8..3,
                proptest::option::of((
                    any::<u64>(),
                    proptest::collection::vec((any::<[u8; 32]>(), 1u32..70000), 0..3),
                    proptest::collection::vec((any::<[u8; 32]>(), 1u32..20000, 1u64..1 << 40), 0..2),
                )),
            )
                .prop_map(|(cs, ps, s, recipe)| {
                    let chunks = |cs: Vec<([u8; 32], u32)>| {
                        cs.into_iter().map(|(id, len)| ChunkRef { id: ChunkId(id), len }).collect()
                    };
                    let pages = |ps: Vec<([u8; 32], u32, u64)>| {
                        ps.into_iter().map(|(id, chunks, bytes)| PageRef { id: ListId(id), chunks, bytes }).collect()
                    };
                    NodeKind::File {
                        state: [FileState::Complete, FileState::Incomplete, FileState::Failed][s as usize],
                        content: Content {
                            inline: chunks(cs),
                            pages: pages(ps),
                            recipe: recipe
                                .map(|(size, rc, rp)| Box::new(Recipe { size, inline: chunks(rc), pages: pages(rp) })),
                        },
                    }
                }),
            any::<[u8; 32]>().prop_map(|t| NodeKind::Dir { tree: TreeId(t) }),
            proptest::collection::vec(any::<u8>(), 1..40).prop_map(|target| NodeKind::Symlink { target }),
            Just(NodeKind::Fifo),
            Just(NodeKind::Socket),
            any::<u64>().prop_map(|rdev| NodeKind::CharDevice { rdev }),
            any::<u64>().prop_map(|rdev| NodeKind::BlockDevice { rdev }),
        ];
        let time = (any::<i64>(), 0u32..1_000_000_000).prop_map(|(sec, nsec)| Time { sec, nsec });
        ("[a-z]{1,12}", kind, any::<u32>(), time.clone(), time.clone(), time, any::<u64>()).prop_map(
            |(name, kind, mode, atime, mtime, ctime, link)| {
                let size = match &kind {
                    NodeKind::File { content, .. } => content.size(),
                    _ => 0,
                };
                Node { name: name.into_bytes(), kind, mode, uid: 1, gid: 2, atime, mtime, ctime, size, link }
            },
        )
    }

    #[test]
    fn version_1_trees_still_decode() {
        // name "f", file, mode, uid, gid, mtime ns, size 0, complete, no chunks, no pages.
        let mut w = Writer::new();
        w.u8(1).u32(1).bytes16(b"f").u8(1).u32(0o100644).u32(5).u32(6).i64(-1_500_000_001).u64(0).u8(0).u32(0).u32(0);
        let t = Tree::decode(&w.finish()).unwrap();
        let n = &t.nodes[0];
        assert_eq!((n.uid, n.gid, n.link), (5, 6, 0));
        assert_eq!(n.mtime, Time { sec: -2, nsec: 499_999_999 });
        assert_eq!((n.atime, n.ctime), (n.mtime, n.mtime));
        assert_eq!(Time::from_ns(n.mtime.as_ns()), n.mtime);
    }

    #[test]
    fn times_before_the_epoch_convert_exactly() {
        let t = std::time::UNIX_EPOCH - std::time::Duration::new(5, 250);
        assert_eq!(Time::from_system(t), Time { sec: -6, nsec: 999_999_750 });
        assert_eq!(Time::from_ns(-1), Time { sec: -1, nsec: 999_999_999 });
    }

    proptest! {
        #[test]
        fn round_trip(nodes in proptest::collection::vec(arb_node(), 0..20)) {
            let mut t = Tree::default();
            for n in nodes { t.upsert(n); }
            prop_assert_eq!(Tree::decode(&t.encode()).unwrap(), t);
        }

        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Tree::decode(&b);
            let _ = decode_list(&b);
        }

        #[test]
        fn list_round_trip(cs in proptest::collection::vec((any::<[u8; 32]>(), any::<u32>()), 0..50)) {
            let list: Vec<ChunkRef> = cs.into_iter().map(|(id, len)| ChunkRef { id: ChunkId(id), len }).collect();
            prop_assert_eq!(decode_list(&encode_list(&list)).unwrap(), list);
        }
    }
}
