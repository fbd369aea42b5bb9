//! Loading directory trees and resolving paths inside a snapshot.

use super::Vault;
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::{BlobRef, TreeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A small cache of decoded trees (trees are immutable, so entries never go stale).
pub struct TreeCache {
    map: Mutex<HashMap<TreeId, Arc<Tree>>>,
    cap: usize,
}

impl TreeCache {
    pub fn new(cap: usize) -> Self {
        TreeCache { map: Mutex::new(HashMap::new()), cap }
    }
    fn get(&self, id: &TreeId) -> Option<Arc<Tree>> {
        self.map.lock().ok()?.get(id).cloned()
    }
    fn put(&self, id: TreeId, t: Arc<Tree>) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= self.cap {
                m.clear();
            }
            m.insert(id, t);
        }
    }
}

/// Splits a relative path into validated components (no empty, `.`, `..` or NUL parts).
pub fn split_path(p: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in p.split('/') {
        if c.is_empty() {
            continue;
        }
        if c == "." || c == ".." || c.contains('\0') || c.len() > 255 {
            return Err(Error::invalid(format!("invalid path component {c:?} in {p:?}")));
        }
        out.push(c.as_bytes().to_vec());
    }
    Ok(out)
}

/// A synthetic node standing for a snapshot's root directory.
pub fn root_node(root: TreeId) -> Node {
    Node::new(Vec::new(), NodeKind::Dir { tree: root }, 0o40755, 0, 0, Default::default(), 0)
}

impl Vault {
    pub fn load_tree(&self, id: TreeId) -> Result<Arc<Tree>> {
        if let Some(t) = self.tree_cache.get(&id) {
            return Ok(t);
        }
        let plain = self.read_blob(BlobRef::tree(id))?;
        let t = Arc::new(Tree::decode(&plain).map_err(|e| e.context(format!("tree {}", id.short())))?);
        self.tree_cache.put(id, t.clone());
        Ok(t)
    }

    /// The node at `path` below `root` (the root itself for an empty path).
    pub fn lookup(&self, root: TreeId, path: &[Vec<u8>]) -> Result<Node> {
        let mut node = root_node(root);
        for (i, comp) in path.iter().enumerate() {
            let NodeKind::Dir { tree } = node.kind else {
                return Err(Error::not_found(format!("{}: not a directory", show(&path[..i]))));
            };
            let t = self.load_tree(tree)?;
            node = t
                .get(comp)
                .cloned()
                .ok_or_else(|| Error::not_found(format!("{}: no such file or directory", show(&path[..=i]))))?;
        }
        Ok(node)
    }

    /// Calls `f(path, node)` for every node below `root`, depth first, parents first.
    pub fn walk(&self, root: TreeId, f: &mut dyn FnMut(&[Vec<u8>], &Node) -> Result<()>) -> Result<()> {
        fn rec(
            v: &Vault,
            tree: TreeId,
            prefix: &mut Vec<Vec<u8>>,
            f: &mut dyn FnMut(&[Vec<u8>], &Node) -> Result<()>,
        ) -> Result<()> {
            let t = v.load_tree(tree)?;
            for n in &t.nodes {
                prefix.push(n.name.clone());
                f(prefix, n)?;
                if let NodeKind::Dir { tree } = n.kind {
                    rec(v, tree, prefix, f)?;
                }
                prefix.pop();
            }
            Ok(())
        }
        rec(self, root, &mut Vec::new(), f)
    }
}

/// `a/b/c` for messages.
pub fn show(path: &[Vec<u8>]) -> String {
    path.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("/")
}
