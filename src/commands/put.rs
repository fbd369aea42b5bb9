//! `put`: store one stream as a file of the current period, and `seal`.

use crate::error::{Error, Result};
use crate::format::tree::{FileState, Node, NodeKind};
use crate::period::reserved_at_root;
use crate::repo::trees::split_path;
use crate::repo::{SnapshotInfo, Vault};
use std::io::Read;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PutOptions {
    /// Path inside the period (`today`, `db/app.pgdump`).
    pub path: String,
    pub mode: u32,
    pub mtime_ns: Option<i64>,
    /// How long to wait for another writer.
    pub lock_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct PutReport {
    pub period: String,
    pub path: String,
    pub size: u64,
    pub chunks: usize,
    pub new_chunks: u64,
    pub new_bytes: u64,
    pub sealed_periods: Vec<String>,
    /// What was stored expanded (src/rebuild).
    pub expanded: crate::rebuild::Expanded,
}

/// Checks a path given for the current period: relative, valid components, not a reserved
/// name at the root.
pub fn validate_new_path(path: &str) -> Result<Vec<Vec<u8>>> {
    let comps = split_path(path)?;
    let Some(first) = comps.first() else {
        return Err(Error::invalid("a file needs a name"));
    };
    let first = String::from_utf8_lossy(first);
    if reserved_at_root(&first, comps.len() > 1) {
        return Err(Error::invalid(format!(
            "{first:?} is reserved at the root of a period (period names, `latest`, and `today` as a directory)"
        )));
    }
    Ok(comps)
}

pub fn put(v: &Vault, o: &PutOptions, input: &mut (dyn Read + Send)) -> Result<PutReport> {
    let comps = validate_new_path(&o.path)?;
    // Ended periods are sealed here, not by `begin_write`, to report which.
    let mut w = v.begin_write_keeping_ended("vaultctl put", o.lock_wait)?;
    let sealed_periods = w.seal_ended_periods()?;
    // The period is fixed when the write starts: a put running across midnight stays in the
    // period it began in.
    let period = v.clock().current();
    let snaps = v.snapshots()?;
    crate::repo::snapshots::refuse_backdating(&snaps, &period)?;
    let base = snaps.into_iter().find(|s| s.snap.period == period);
    if let Some(b) = &base {
        if b.snap.sealed {
            return Err(Error::read_only(format!(
                "period {period} has been sealed; new files are accepted from the next period on"
            )));
        }
    }
    let stored = w.store_stream(input)?;
    let now = crate::format::tree::Time::now();
    let mut node = Node::new(
        Vec::new(),
        NodeKind::File { state: FileState::Complete, content: stored.content.clone() },
        0o100000 | (o.mode & 0o7777),
        // SAFETY: getuid/getgid take no arguments and cannot fail.
        unsafe { libc::getuid() },
        unsafe { libc::getgid() },
        now,
        stored.size,
    );
    if let Some(m) = o.mtime_ns {
        node.mtime = crate::format::tree::Time::from_ns(m);
    }
    let (root, old) = w.set_path(base.as_ref().map(|b| b.snap.root), &comps, node)?;
    let (mut files, mut logical) = base.as_ref().map(|b| (b.snap.files, b.snap.logical_bytes)).unwrap_or((0, 0));
    match old {
        Some(old) => logical = logical - old.size.min(logical) + stored.size,
        None => {
            files += 1;
            logical += stored.size;
        }
    }
    let before = base.as_ref().map(|b| b.snap.new_bytes).unwrap_or(0);
    let info = w.commit(&period, base.as_ref(), root, files, logical)?;
    Ok(PutReport {
        period,
        path: o.path.clone(),
        size: stored.size,
        chunks: stored.chunks as usize,
        new_chunks: stored.new_chunks,
        new_bytes: info.snap.new_bytes - before,
        sealed_periods,
        expanded: stored.expanded,
    })
}

/// Seals the current period (and any ended one). Returns what was sealed.
pub fn seal(v: &Vault, lock_wait: Duration) -> Result<Vec<SnapshotInfo>> {
    let mut w = v.begin_write_keeping_ended("vaultctl seal", lock_wait)?;
    let mut out = Vec::new();
    for name in w.seal_ended_periods()? {
        if let Ok(s) = v.resolve(&name) {
            out.push(s);
        }
    }
    let cur = v.clock().current();
    if let Some(info) = v.snapshots()?.into_iter().find(|s| s.snap.period == cur && !s.snap.sealed) {
        out.push(w.seal(&info)?);
    }
    Ok(out)
}
