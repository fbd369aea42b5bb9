//! Directory listings (tree blobs). One tree per directory, entries sorted by name, names
//! unique. A file entry carries its whole chunk list, so reading a file needs no further
//! metadata lookups.
//!
//! Plaintext: `version u8 = 1 | count u32 | count x node`, node =
//! `name (u16 len + bytes) | type u8 (1 file, 2 dir, 3 symlink) | mode u32 | uid u32 | gid u32 |
//! mtime i64 (ns) | size u64 | type-specific`, where file = `state u8 (0 complete,
//! 1 incomplete, 2 failed) | chunk count u32 | count x (chunk id [32] | length u32)`,
//! dir = `tree id [32]`, symlink = `target (u16 len + bytes)`.

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::{ChunkId, TreeId};

const VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
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
    File { state: FileState, chunks: Vec<ChunkRef> },
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

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION).u32(self.nodes.len() as u32);
        for n in &self.nodes {
            w.bytes16(&n.name);
            let t = match n.kind {
                NodeKind::File { .. } => 1,
                NodeKind::Dir { .. } => 2,
                NodeKind::Symlink { .. } => 3,
            };
            w.u8(t).u32(n.mode).u32(n.uid).u32(n.gid).i64(n.mtime_ns).u64(n.size);
            match &n.kind {
                NodeKind::File { state, chunks } => {
                    w.u8(*state as u8).u32(chunks.len() as u32);
                    for c in chunks {
                        w.raw(c.id.as_bytes()).u32(c.len);
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
        w.finish()
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "tree");
        r.version(VERSION)?;
        let n = r.count(32)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        for _ in 0..n {
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
                    let m = r.count(36)?;
                    let mut chunks = Vec::with_capacity(m);
                    let mut total = 0u64;
                    for _ in 0..m {
                        let c = ChunkRef { id: ChunkId(r.array()?), len: r.u32()? };
                        total += c.len as u64;
                        chunks.push(c);
                    }
                    if total != size {
                        return Err(Error::corrupt("tree: file size differs from its chunk lengths"));
                    }
                    NodeKind::File { state, chunks }
                }
                2 => NodeKind::Dir { tree: TreeId(r.array()?) },
                3 => NodeKind::Symlink { target: r.bytes16()?.to_vec() },
                _ => return Err(Error::corrupt(format!("tree: unknown node type {t}"))),
            };
            if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
                return Err(Error::corrupt("tree: invalid entry name"));
            }
            if let Some(prev) = nodes.last() {
                if prev.name >= name {
                    return Err(Error::corrupt("tree: entries not sorted or not unique"));
                }
            }
            nodes.push(Node { name, kind, mode, uid, gid, mtime_ns, size });
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
            (proptest::collection::vec((any::<[u8; 32]>(), 1u32..70000), 0..5), 0u8..3).prop_map(|(cs, s)| {
                NodeKind::File {
                    state: [FileState::Complete, FileState::Incomplete, FileState::Failed][s as usize],
                    chunks: cs.into_iter().map(|(id, len)| ChunkRef { id: ChunkId(id), len }).collect(),
                }
            }),
            any::<[u8; 32]>().prop_map(|t| NodeKind::Dir { tree: TreeId(t) }),
            proptest::collection::vec(any::<u8>(), 1..40).prop_map(|target| NodeKind::Symlink { target }),
        ];
        ("[a-z]{1,12}", kind, any::<u32>(), any::<i64>()).prop_map(|(name, kind, mode, mtime_ns)| {
            let size = match &kind {
                NodeKind::File { chunks, .. } => chunks.iter().map(|c| c.len as u64).sum(),
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
        }
    }
}
