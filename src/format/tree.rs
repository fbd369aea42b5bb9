//! Directory listings (tree blobs) and chunk-list pages (list blobs). One tree per directory,
//! entries sorted by name, names unique. A small file carries its chunk list inline; a large
//! one refers to pages of at most [`PAGE_CHUNKS`] chunks stored as list blobs, so a directory
//! listing stays small whatever the file sizes, and unchanged pages are shared between
//! snapshots.
//!
//! Tree plaintext: `version u8 = 1 | count u32 | count x node`, node =
//! `name (u16 len + bytes) | type u8 (1 file, 2 dir, 3 symlink) | mode u32 | uid u32 | gid u32 |
//! mtime i64 (ns) | size u64 | type-specific`, where file = `state u8 (0 complete,
//! 1 incomplete, 2 failed) | inline count u32 | inline x (chunk id [32] | length u32) |
//! page count u32 | pages x (list id [32] | chunk count u32 | bytes u64)`,
//! dir = `tree id [32]`, symlink = `target (u16 len + bytes)`.
//! List plaintext: `version u8 = 1 | count u32 | count x (chunk id [32] | length u32)`.

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::{ChunkId, ListId, TreeId};

const VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// Most chunks in one list page (64 MiB of file at the default 4 KiB chunks).
pub const PAGE_CHUNKS: usize = 16384;
/// Files with at most this many chunks keep their list inline in the tree.
pub const INLINE_CHUNKS: usize = 1024;

/// One stored page of a file's chunk list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRef {
    pub id: ListId,
    pub chunks: u32,
    pub bytes: u64,
}

/// A file's content: inline chunks, then pages, in file order (one of the two is empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Content {
    pub inline: Vec<ChunkRef>,
    pub pages: Vec<PageRef>,
}

impl Content {
    pub fn size(&self) -> u64 {
        self.inline.iter().map(|c| c.len as u64).sum::<u64>() + self.pages.iter().map(|p| p.bytes).sum::<u64>()
    }
    pub fn chunk_count(&self) -> u64 {
        self.inline.len() as u64 + self.pages.iter().map(|p| p.chunks as u64).sum::<u64>()
    }
    pub fn inline(chunks: Vec<ChunkRef>) -> Self {
        Content { inline: chunks, pages: Vec::new() }
    }
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub size: u64,
}

/// A decoded directory: nodes sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Encodes one node as it appears in a tree (also used by the mount's journal).
pub fn encode_node(w: &mut Writer, n: &Node) {
    w.bytes16(&n.name);
    let t = match n.kind {
        NodeKind::File { .. } => 1,
        NodeKind::Dir { .. } => 2,
        NodeKind::Symlink { .. } => 3,
    };
    w.u8(t).u32(n.mode).u32(n.uid).u32(n.gid).i64(n.mtime_ns).u64(n.size);
    match &n.kind {
        NodeKind::File { state, content } => {
            w.u8(*state as u8).u32(content.inline.len() as u32);
            for c in &content.inline {
                w.raw(c.id.as_bytes()).u32(c.len);
            }
            w.u32(content.pages.len() as u32);
            for p in &content.pages {
                w.raw(p.id.as_bytes()).u32(p.chunks).u64(p.bytes);
            }
        }
        NodeKind::Dir { tree } => {
            w.raw(tree.as_bytes());
        }
        NodeKind::Symlink { target } => {
            w.bytes16(target);
        }
    }
}

/// Decodes one node written by [`encode_node`], checking its name and sizes.
pub fn decode_node(r: &mut Reader) -> Result<Node> {
    let name = r.bytes16()?.to_vec();
    let t = r.u8()?;
    let (mode, uid, gid, mtime_ns, size) = (r.u32()?, r.u32()?, r.u32()?, r.i64()?, r.u64()?);
    let kind = match t {
        1 => {
            let state = match r.u8()? {
                0 => FileState::Complete,
                1 => FileState::Incomplete,
                2 => FileState::Failed,
                s => return Err(Error::corrupt(format!("tree: bad file state {s}"))),
            };
            let inline = r.items(36, |r| Ok(ChunkRef { id: ChunkId(r.array()?), len: r.u32()? }))?;
            let pages = r.items(44, |r| Ok(PageRef { id: ListId(r.array()?), chunks: r.u32()?, bytes: r.u64()? }))?;
            let content = Content { inline, pages };
            if content.size() != size {
                return Err(Error::corrupt("tree: file size differs from its chunk lengths"));
            }
            NodeKind::File { state, content }
        }
        2 => NodeKind::Dir { tree: TreeId(r.array()?) },
        3 => NodeKind::Symlink { target: r.bytes16()?.to_vec() },
        _ => return Err(Error::corrupt(format!("tree: unknown node type {t}"))),
    };
    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
        return Err(Error::corrupt("tree: invalid entry name"));
    }
    Ok(Node { name, kind, mode, uid, gid, mtime_ns, size })
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION).u32(self.nodes.len() as u32);
        for n in &self.nodes {
            encode_node(&mut w, n);
        }
        w.finish()
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "tree");
        r.version(VERSION)?;
        let n = r.count(32)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        for _ in 0..n {
            let node = decode_node(&mut r)?;
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
                0u8..3
            )
                .prop_map(|(cs, ps, s)| NodeKind::File {
                    state: [FileState::Complete, FileState::Incomplete, FileState::Failed][s as usize],
                    content: Content {
                        inline: cs.into_iter().map(|(id, len)| ChunkRef { id: ChunkId(id), len }).collect(),
                        pages: ps
                            .into_iter()
                            .map(|(id, chunks, bytes)| PageRef { id: ListId(id), chunks, bytes })
                            .collect(),
                    },
                }),
            any::<[u8; 32]>().prop_map(|t| NodeKind::Dir { tree: TreeId(t) }),
            proptest::collection::vec(any::<u8>(), 1..40).prop_map(|target| NodeKind::Symlink { target }),
        ];
        ("[a-z]{1,12}", kind, any::<u32>(), any::<i64>()).prop_map(|(name, kind, mode, mtime_ns)| {
            let size = match &kind {
                NodeKind::File { content, .. } => content.size(),
                _ => 0,
            };
            Node { name: name.into_bytes(), kind, mode, uid: 1, gid: 2, mtime_ns, size }
        })
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
