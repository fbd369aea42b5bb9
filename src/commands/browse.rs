//! `ls` and `cat`: reading snapshots.

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::repo::snapshots::split_spec;
use crate::repo::trees::split_path;
use crate::repo::Vault;
use std::io::Write;

/// Resolves `PERIOD[/PATH]` to the period name and the node there.
pub fn resolve_node(v: &Vault, spec: &str) -> Result<(String, Node)> {
    let (period, path) = split_spec(spec);
    let info = v.resolve(period)?;
    let node = v.lookup(info.snap.root, &split_path(path)?).map_err(|e| e.context(&info.snap.period))?;
    Ok((info.snap.period, node))
}

/// Entries of a directory (or the single node for a file).
pub fn list(v: &Vault, spec: &str) -> Result<Vec<Node>> {
    let (_, node) = resolve_node(v, spec)?;
    match node.kind {
        NodeKind::Dir { tree } => Ok(v.load_tree(tree)?.nodes.clone()),
        _ => Ok(vec![node]),
    }
}

/// Writes a file's content to `out`. Bytes are written only after they were authenticated.
pub fn cat(v: &Vault, spec: &str, out: &mut dyn Write) -> Result<u64> {
    let (period, node) = resolve_node(v, spec)?;
    if !matches!(node.kind, NodeKind::File { .. }) {
        return Err(Error::invalid(format!("{spec}: not a regular file")));
    }
    v.file_reader(&node)?.copy_to(out).map_err(|e| e.context(format!("{period}/{}", split_spec(spec).1)))
}
