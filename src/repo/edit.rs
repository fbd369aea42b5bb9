//! Path operations on a period's tree (docs/DESIGN.md §10b) and the editor that applies them.
//!
//! The mount describes every change it makes as an [`Op`]: what its checkpoints commit and
//! what journal replay applies after a crash are the same operations through the same
//! [`Editor`], so the two cannot disagree. The editor loads only the directories on the paths
//! it touches and re-encodes only the ones that changed; the period's file count and logical
//! size are kept up to date incrementally from the base revision's.
//!
//! Must never: fail on an operation that does not fit the tree (a missing source, a missing
//! parent); such operations are applied as documented (nothing, or parents created), since a
//! replay must always make progress.

use super::writer::{new_dir_node, WriteSession};
use crate::error::{Error, Result};
use crate::format::codec::{Reader, Writer};
use crate::format::tree::{decode_node, encode_node, Node, NodeKind, Time, Tree};
use crate::id::TreeId;
use std::collections::BTreeMap;
use std::sync::Arc;

pub type Path = Vec<Vec<u8>>;

/// One change to a period's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `node` (a file or symlink) replaces whatever is at `path`.
    Put { path: Path, node: Node },
    /// A directory at `path` with these attributes: created empty if absent, entries kept.
    Dir { path: Path, attrs: DirAttrs },
    /// Removes the node at `path` and everything below it.
    Remove { path: Path },
    /// Moves the node at `from` to `to`, replacing what was there.
    Rename { from: Path, to: Path },
}

/// The attributes of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirAttrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
}

impl DirAttrs {
    fn apply(&self, n: &mut Node) {
        n.mode = self.mode;
        n.uid = self.uid;
        n.gid = self.gid;
        n.atime = self.atime;
        n.mtime = self.mtime;
        n.ctime = self.ctime;
    }
}

fn encode_path(w: &mut Writer, p: &Path) {
    w.u16(p.len() as u16);
    for c in p {
        w.bytes16(c);
    }
}

fn decode_path(r: &mut Reader) -> Result<Path> {
    let n = r.u16()? as usize;
    let mut p = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let c = r.bytes16()?.to_vec();
        if c.is_empty() || c.contains(&b'/') || c.contains(&0) || c == b"." || c == b".." {
            return Err(Error::corrupt("journal: invalid path component"));
        }
        p.push(c);
    }
    if p.is_empty() {
        return Err(Error::corrupt("journal: empty path"));
    }
    Ok(p)
}

impl Op {
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Op::Put { path, node } => {
                w.u8(1);
                encode_path(w, path);
                encode_node(w, node);
            }
            Op::Dir { path, attrs } => {
                w.u8(2);
                encode_path(w, path);
                w.u32(attrs.mode).u32(attrs.uid).u32(attrs.gid);
                for t in [attrs.atime, attrs.mtime, attrs.ctime] {
                    w.i64(t.sec).u32(t.nsec);
                }
            }
            Op::Remove { path } => {
                w.u8(3);
                encode_path(w, path);
            }
            Op::Rename { from, to } => {
                w.u8(4);
                encode_path(w, from);
                encode_path(w, to);
            }
        }
    }

    /// Decodes an operation of a journal whose nodes are in tree format `version`.
    pub fn decode(r: &mut Reader, version: u8) -> Result<Op> {
        Ok(match r.u8()? {
            1 => {
                let path = decode_path(r)?;
                let node = decode_node(r, version)?;
                if matches!(node.kind, NodeKind::Dir { .. }) {
                    return Err(Error::corrupt("journal: a put of a directory"));
                }
                Op::Put { path, node }
            }
            2 => {
                let path = decode_path(r)?;
                let (mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?);
                let (atime, mtime, ctime) = if version >= 2 {
                    let mut t = [Time::default(); 3];
                    for x in &mut t {
                        *x = Time { sec: r.i64()?, nsec: r.u32()? };
                        if x.nsec >= 1_000_000_000 {
                            return Err(Error::corrupt("journal: nanoseconds out of range"));
                        }
                    }
                    (t[0], t[1], t[2])
                } else {
                    let m = Time::from_ns(r.i64()?);
                    (m, m, m)
                };
                Op::Dir { path, attrs: DirAttrs { mode, uid, gid, atime, mtime, ctime } }
            }
            3 => Op::Remove { path: decode_path(r)? },
            4 => Op::Rename { from: decode_path(r)?, to: decode_path(r)? },
            t => return Err(Error::corrupt(format!("journal: unknown operation {t}"))),
        })
    }

    /// The path the operation changes (for messages).
    pub fn path(&self) -> &Path {
        match self {
            Op::Put { path, .. } | Op::Dir { path, .. } | Op::Remove { path } => path,
            Op::Rename { to, .. } => to,
        }
    }
}

enum Entry {
    Leaf(Node),
    /// `node` carries the attributes (its tree id is filled in when written).
    Dir(Node, Box<EDir>),
}

struct EDir {
    tree: Option<TreeId>,
    /// Loaded entries; `None` while untouched.
    entries: Option<BTreeMap<Vec<u8>, Entry>>,
    changed: bool,
}

impl EDir {
    fn stored(tree: TreeId) -> Self {
        EDir { tree: Some(tree), entries: None, changed: false }
    }
    fn empty() -> Self {
        EDir { tree: None, entries: Some(BTreeMap::new()), changed: true }
    }
}

/// Applies [`Op`]s to one period's tree; [`Editor::write`] stores the changed directories.
pub struct Editor<'a> {
    root: EDir,
    files: i64,
    bytes: i64,
    load: &'a dyn Fn(TreeId) -> Result<Arc<Tree>>,
}

fn file_size(n: &Node) -> Option<u64> {
    match n.kind {
        NodeKind::File { .. } => Some(n.size),
        _ => None,
    }
}

impl<'a> Editor<'a> {
    /// An editor over the tree `root` (empty when `None`) holding `files` files of `bytes`
    /// bytes in all; `load` reads stored trees.
    pub fn new(root: Option<TreeId>, files: u64, bytes: u64, load: &'a dyn Fn(TreeId) -> Result<Arc<Tree>>) -> Self {
        let root = match root {
            Some(t) => EDir::stored(t),
            None => EDir::empty(),
        };
        Editor { root, files: files as i64, bytes: bytes as i64, load }
    }

    fn ensure_loaded(load: &dyn Fn(TreeId) -> Result<Arc<Tree>>, d: &mut EDir) -> Result<()> {
        if d.entries.is_some() {
            return Ok(());
        }
        let mut m = BTreeMap::new();
        if let Some(t) = d.tree {
            for n in &load(t)?.nodes {
                let e = match n.kind {
                    NodeKind::Dir { tree } => Entry::Dir(n.clone(), Box::new(EDir::stored(tree))),
                    _ => Entry::Leaf(n.clone()),
                };
                m.insert(n.name.clone(), e);
            }
        }
        d.entries = Some(m);
        Ok(())
    }

    /// The directory holding `path`'s last component; with `create`, missing or non-directory
    /// components become directories. Every directory on the way is marked changed.
    fn parent(&mut self, path: &[Vec<u8>], create: bool) -> Result<Option<&mut EDir>> {
        let load = self.load;
        let mut removed = (0i64, 0i64);
        let mut d = &mut self.root;
        Self::ensure_loaded(load, d)?;
        for comp in &path[..path.len().saturating_sub(1)] {
            let entries = d.entries.as_mut().ok_or_else(|| Error::corrupt("directory not loaded"))?;
            let is_dir = matches!(entries.get(comp), Some(Entry::Dir(..)));
            if !is_dir {
                if !create {
                    return Ok(None);
                }
                if let Some(Entry::Leaf(old)) = entries.get(comp) {
                    if let Some(s) = file_size(old) {
                        removed.0 += 1;
                        removed.1 += s as i64;
                    }
                }
                entries.insert(comp.clone(), Entry::Dir(new_dir_node(comp.clone()), Box::new(EDir::empty())));
            }
            d.changed = true;
            d = match entries.get_mut(comp) {
                Some(Entry::Dir(_, sub)) => sub,
                _ => return Err(Error::corrupt("directory vanished while editing")),
            };
            Self::ensure_loaded(load, d)?;
        }
        d.changed = true;
        self.files -= removed.0;
        self.bytes -= removed.1;
        Ok(Some(d))
    }

    /// Files and bytes below an entry (loads its subtree).
    fn totals(load: &dyn Fn(TreeId) -> Result<Arc<Tree>>, e: &Entry) -> Result<(i64, i64)> {
        match e {
            Entry::Leaf(n) => Ok(file_size(n).map(|s| (1, s as i64)).unwrap_or((0, 0))),
            Entry::Dir(_, d) => match &d.entries {
                Some(m) => {
                    let mut t = (0, 0);
                    for e in m.values() {
                        let (f, b) = Self::totals(load, e)?;
                        t = (t.0 + f, t.1 + b);
                    }
                    Ok(t)
                }
                None => match d.tree {
                    Some(id) => Self::tree_totals(load, id),
                    None => Ok((0, 0)),
                },
            },
        }
    }

    fn tree_totals(load: &dyn Fn(TreeId) -> Result<Arc<Tree>>, id: TreeId) -> Result<(i64, i64)> {
        let mut t = (0, 0);
        for n in &load(id)?.nodes {
            match n.kind {
                NodeKind::Dir { tree } => {
                    let (f, b) = Self::tree_totals(load, tree)?;
                    t = (t.0 + f, t.1 + b);
                }
                NodeKind::File { .. } => t = (t.0 + 1, t.1 + n.size as i64),
                _ => {}
            }
        }
        Ok(t)
    }

    pub fn apply(&mut self, op: &Op) -> Result<()> {
        let load = self.load;
        match op {
            Op::Put { path, node } => {
                let name = path.last().ok_or_else(|| Error::invalid("empty path"))?.clone();
                let mut node = node.clone();
                node.name = name.clone();
                let add = file_size(&node).map(|s| (1, s as i64)).unwrap_or((0, 0));
                let d = self.parent(path, true)?.ok_or_else(|| Error::corrupt("no parent"))?;
                let m = d.entries.as_mut().ok_or_else(|| Error::corrupt("directory not loaded"))?;
                let old = m.insert(name, Entry::Leaf(node));
                let sub = match &old {
                    Some(e) => Self::totals(load, e)?,
                    None => (0, 0),
                };
                self.files += add.0 - sub.0;
                self.bytes += add.1 - sub.1;
            }
            Op::Dir { path, attrs } => {
                let name = path.last().ok_or_else(|| Error::invalid("empty path"))?.clone();
                let d = self.parent(path, true)?.ok_or_else(|| Error::corrupt("no parent"))?;
                let m = d.entries.as_mut().ok_or_else(|| Error::corrupt("directory not loaded"))?;
                let mut sub = (0, 0);
                match m.get_mut(&name) {
                    Some(Entry::Dir(n, _)) => attrs.apply(n),
                    other => {
                        if let Some(e) = other {
                            sub = Self::totals(load, e)?;
                        }
                        let mut n = Node::new(
                            name.clone(),
                            NodeKind::Dir { tree: TreeId([0; 32]) },
                            attrs.mode,
                            attrs.uid,
                            attrs.gid,
                            attrs.mtime,
                            0,
                        );
                        attrs.apply(&mut n);
                        m.insert(name, Entry::Dir(n, Box::new(EDir::empty())));
                    }
                }
                self.files -= sub.0;
                self.bytes -= sub.1;
            }
            Op::Remove { path } => {
                let name = path.last().ok_or_else(|| Error::invalid("empty path"))?;
                let Some(d) = self.parent(path, false)? else { return Ok(()) };
                let m = d.entries.as_mut().ok_or_else(|| Error::corrupt("directory not loaded"))?;
                if let Some(e) = m.remove(name) {
                    let (f, b) = Self::totals(load, &e)?;
                    self.files -= f;
                    self.bytes -= b;
                }
            }
            Op::Rename { from, to } => {
                if from == to {
                    return Ok(());
                }
                let fname = from.last().ok_or_else(|| Error::invalid("empty path"))?;
                let Some(d) = self.parent(from, false)? else { return Ok(()) };
                let m = d.entries.as_mut().ok_or_else(|| Error::corrupt("directory not loaded"))?;
                let Some(mut e) = m.remove(fname) else { return Ok(()) };
                let tname = to.last().ok_or_else(|| Error::invalid("empty path"))?.clone();
                match &mut e {
                    Entry::Leaf(n) | Entry::Dir(n, _) => n.name = tname.clone(),
                }
                // A directory moved below itself would vanish: refuse to lose it.
                if matches!(e, Entry::Dir(..)) && to.len() > from.len() && to[..from.len()] == from[..] {
                    let d = self.parent(from, true)?.ok_or_else(|| Error::corrupt("no parent"))?;
                    let m = d.entries.as_mut().ok_or_else(|| Error::corrupt("directory not loaded"))?;
                    let (Entry::Leaf(n) | Entry::Dir(n, _)) = &mut e;
                    n.name = fname.clone();
                    m.insert(fname.clone(), e);
                    return Ok(());
                }
                let d = self.parent(to, true)?.ok_or_else(|| Error::corrupt("no parent"))?;
                let m = d.entries.as_mut().ok_or_else(|| Error::corrupt("directory not loaded"))?;
                if let Some(old) = m.insert(tname, e) {
                    let (f, b) = Self::totals(load, &old)?;
                    self.files -= f;
                    self.bytes -= b;
                }
            }
        }
        Ok(())
    }

    /// The edited tree, ready to be stored (the loader is no longer needed).
    pub fn finish(self) -> Edited {
        Edited { root: self.root, files: self.files.max(0) as u64, bytes: self.bytes.max(0) as u64 }
    }
}

/// An edited tree not yet stored.
pub struct Edited {
    root: EDir,
    files: u64,
    bytes: u64,
}

impl Edited {
    /// Stores every changed directory (children first) and returns the new root with the
    /// period's file count and logical size.
    pub fn write(self, w: &mut WriteSession<'_>) -> Result<(TreeId, u64, u64)> {
        let root = Self::write_dir(w, self.root)?;
        Ok((root, self.files, self.bytes))
    }

    fn write_dir(w: &mut WriteSession<'_>, d: EDir) -> Result<TreeId> {
        if !d.changed {
            if let Some(t) = d.tree {
                return Ok(t);
            }
        }
        let mut tree = Tree::default();
        for (_, e) in d.entries.unwrap_or_default() {
            let node = match e {
                Entry::Leaf(n) => n,
                Entry::Dir(mut n, sub) => {
                    n.kind = NodeKind::Dir { tree: Self::write_dir(w, *sub)? };
                    n
                }
            };
            tree.nodes.push(node);
        }
        w.write_tree(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::{Content, FileState};

    fn p(s: &str) -> Path {
        s.split('/').map(|c| c.as_bytes().to_vec()).collect()
    }

    fn file(size: u64) -> Node {
        let content = Content::inline(if size == 0 {
            vec![]
        } else {
            vec![crate::format::tree::ChunkRef { id: crate::id::ChunkId([size as u8; 32]), len: size as u32 }]
        });
        Node::new(
            b"x".to_vec(),
            NodeKind::File { state: FileState::Complete, content },
            0o100644,
            0,
            0,
            Time::from_ns(1),
            size,
        )
    }

    fn dir_attrs(mode: u32) -> DirAttrs {
        let t = Time { sec: -5, nsec: 7 };
        DirAttrs { mode, uid: 1, gid: 2, atime: t, mtime: Time { sec: 1 << 40, nsec: 3 }, ctime: t }
    }

    #[test]
    fn ops_round_trip() {
        let ops = vec![
            Op::Put { path: p("a/b"), node: Node { name: b"b".to_vec(), ..file(5) } },
            Op::Dir { path: p("d"), attrs: dir_attrs(0o40700) },
            Op::Remove { path: p("a") },
            Op::Rename { from: p("x/y"), to: p("z") },
        ];
        for op in ops {
            let mut w = Writer::new();
            op.encode(&mut w);
            let b = w.finish();
            let mut r = Reader::new(&b, "op");
            assert_eq!(Op::decode(&mut r, crate::format::tree::TREE_VERSION).unwrap(), op);
            r.end().unwrap();
        }
    }

    /// The reference: every path and what is there (a file's size, or a directory's mode).
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ref {
        File(u64),
        Dir(u32),
    }

    fn ref_parents(m: &mut std::collections::BTreeMap<Path, Ref>, path: &[Vec<u8>]) {
        for i in 1..path.len() {
            let pre = path[..i].to_vec();
            if !matches!(m.get(&pre), Some(Ref::Dir(_))) {
                ref_remove(m, &pre);
                m.insert(pre, Ref::Dir(0o40755));
            }
        }
    }

    fn ref_parent_ok(m: &std::collections::BTreeMap<Path, Ref>, path: &[Vec<u8>]) -> bool {
        (1..path.len()).all(|i| matches!(m.get(&path[..i].to_vec()), Some(Ref::Dir(_))))
    }

    fn ref_remove(m: &mut std::collections::BTreeMap<Path, Ref>, path: &[Vec<u8>]) {
        m.retain(|k, _| !(k.len() >= path.len() && k[..path.len()] == *path));
    }

    fn ref_apply(m: &mut std::collections::BTreeMap<Path, Ref>, op: &Op) {
        match op {
            Op::Put { path, node } => {
                ref_parents(m, path);
                ref_remove(m, path);
                m.insert(path.clone(), Ref::File(node.size));
            }
            Op::Dir { path, attrs } => {
                ref_parents(m, path);
                if !matches!(m.get(path), Some(Ref::Dir(_))) {
                    ref_remove(m, path);
                }
                m.insert(path.clone(), Ref::Dir(attrs.mode));
            }
            Op::Remove { path } => {
                if ref_parent_ok(m, path) {
                    ref_remove(m, path);
                }
            }
            Op::Rename { from, to } => {
                if from == to || !ref_parent_ok(m, from) || !m.contains_key(from) {
                    return;
                }
                let moved: Vec<(Path, Ref)> = m
                    .iter()
                    .filter(|(k, _)| k.len() >= from.len() && k[..from.len()] == from[..])
                    .map(|(k, v)| (k[from.len()..].to_vec(), v.clone()))
                    .collect();
                let is_dir = matches!(m.get(from), Some(Ref::Dir(_)));
                if is_dir && to.len() > from.len() && to[..from.len()] == from[..] {
                    return;
                }
                ref_remove(m, from);
                ref_parents(m, to);
                ref_remove(m, to);
                for (rest, v) in moved {
                    let mut k = to.clone();
                    k.extend(rest);
                    m.insert(k, v);
                }
            }
        }
    }

    fn flatten(
        v: &crate::repo::Vault,
        tree: TreeId,
        prefix: &mut Path,
        out: &mut std::collections::BTreeMap<Path, Ref>,
    ) {
        for n in &v.load_tree(tree).unwrap().nodes {
            prefix.push(n.name.clone());
            match n.kind {
                NodeKind::Dir { tree } => {
                    out.insert(prefix.clone(), Ref::Dir(n.mode));
                    flatten(v, tree, prefix, out);
                }
                _ => {
                    out.insert(prefix.clone(), Ref::File(n.size));
                }
            }
            prefix.pop();
        }
    }

    fn arb_path() -> impl proptest::strategy::Strategy<Value = Path> {
        use proptest::prelude::*;
        proptest::collection::vec(prop_oneof![Just(b"a".to_vec()), Just(b"b".to_vec()), Just(b"c".to_vec())], 1..4)
    }

    fn arb_op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (arb_path(), 0u64..4).prop_map(|(path, s)| Op::Put { path, node: file(s) }),
            (arb_path(), 0u32..3).prop_map(|(path, m)| Op::Dir { path, attrs: dir_attrs(0o40700 + m) }),
            arb_path().prop_map(|path| Op::Remove { path }),
            (arb_path(), arb_path()).prop_map(|(from, to)| Op::Rename { from, to }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any sequence of operations, applied in two checkpoints, gives the tree and the
        /// totals the reference model gives.
        #[test]
        fn editor_matches_a_reference_model(
            ops in proptest::collection::vec(arb_op(), 1..40),
            split in 0usize..40,
        ) {
            let store = std::sync::Arc::new(crate::store::memory::MemoryStore::new());
            let secret = crate::crypto::Secret::raw_key_from_hex(&"11".repeat(32)).unwrap();
            crate::repo::Vault::init(store.clone(), &secret, &crate::repo::InitOptions::default()).unwrap();
            let v = crate::repo::Vault::open(store, &secret, &crate::repo::OpenOptions::default()).unwrap();
            let mut w = v.begin_write("test", std::time::Duration::ZERO).unwrap();
            let mut reference = std::collections::BTreeMap::new();
            let (mut root, mut files, mut bytes) = (None, 0, 0);
            let split = split.min(ops.len());
            for part in [&ops[..split], &ops[split..]] {
                let load = |id| w.load_tree(id);
                let mut ed = Editor::new(root, files, bytes, &load);
                for op in part {
                    ed.apply(op).unwrap();
                    ref_apply(&mut reference, op);
                }
                let edited = ed.finish();
                let (r, f, b) = edited.write(&mut w).unwrap();
                root = Some(r);
                files = f;
                bytes = b;
            }
            w.flush().unwrap();
            let mut got = std::collections::BTreeMap::new();
            flatten(&v, root.unwrap(), &mut Vec::new(), &mut got);
            proptest::prop_assert_eq!(&got, &reference);
            let want_files = reference.values().filter(|r| matches!(r, Ref::File(_))).count() as u64;
            let want_bytes: u64 = reference.values().map(|r| match r { Ref::File(s) => *s, _ => 0 }).sum();
            proptest::prop_assert_eq!((files, bytes), (want_files, want_bytes));
        }
    }
}
