//! `ls` and `cat`: reading snapshots.

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::repo::snapshots::split_spec;
use crate::repo::trees::split_path;
use crate::repo::Vault;
use std::io::{Read, Write};

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

/// Writes the decompressed content of a gzip file (one or more members) to `out`: the content
/// as stored when the file was stored expanded (docs/DESIGN.md §14: nothing is recreated or
/// inflated, each member's CRC-32 is checked against its trailer), else the file's bytes
/// inflated. Returns the bytes written. Not a gzip file: an error, nothing written.
pub fn cat_gunzip(v: &Vault, spec: &str, out: &mut dyn Write) -> Result<u64> {
    let (period, node) = resolve_node(v, spec)?;
    let name = format!("{period}/{}", split_spec(spec).1);
    if !matches!(node.kind, NodeKind::File { .. }) {
        return Err(Error::invalid(format!("{spec}: not a regular file")));
    }
    let reader = v.file_reader(&node)?;
    let fail = |e: Copy| -> Error {
        match e {
            Copy::Write(e) => Error::io("writing output", e),
            Copy::Read(e) => match e.into_inner().map(|b| b.downcast::<Error>()) {
                Some(Ok(e)) => e.context(&name),
                Some(Err(b)) => Error::corrupt(format!("{name}: {b}")),
                None => Error::corrupt(format!("{name}: damaged gzip data")),
            },
        }
    };
    if let Some(mut content) = reader.gzip_content() {
        // A second thread fetches and verifies the next chunks while these are written.
        return reader.with_read_ahead(|kick| copy_in_blocks(&mut content, out, Some(&kick))).map_err(fail);
    }
    if reader.read_at(0, 2)? != [0x1f, 0x8b] {
        return Err(Error::invalid(format!("{name}: not a gzip file")));
    }
    let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, reader.sequential()));
    let copied = copy_in_blocks(&mut gz, out, None);
    copied.map_err(fail)
}

/// Where a copy failed: reading the file (damage) or writing the output (a closed pipe, a full
/// disk).
enum Copy {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copies `r` to `out`; after each read, wakes the reading-ahead thread of `kick`, if any.
fn copy_in_blocks(
    r: &mut dyn Read,
    out: &mut dyn Write,
    kick: Option<&crate::repo::reader::Kick>,
) -> std::result::Result<u64, Copy> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        if let Some(kick) = kick {
            kick.kick();
        }
        out.write_all(&buf[..k]).map_err(Copy::Write)?;
        n += k as u64;
    }
}
