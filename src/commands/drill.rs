//! `drill`: prove that a snapshot restores. Every file is read back through the engine (every
//! byte authenticated); files that are mongodump archives (recognised by content, plain or
//! gzip) are parsed and verified per collection (framing, CRC-64/XZ, document counts). The
//! report carries RTO (measured time, by phase) and RPO (age of the snapshot's newest write),
//! and is appended to the vault's drill log, an encrypted object per drill, so that the
//! evidence travels with every copy of the vault.
//!
//! A drill only reads; writing its log entry adds one fresh object under a random name, which
//! cannot disturb a writer, so it takes no lock.

use crate::error::{Error, Result};
use crate::format::tree::{FileState, NodeKind};
use crate::mongo;
use crate::repo::trees::show;
use crate::repo::{FileReader, Vault};
use serde_json::json;
use std::io::Read;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct CollectionResult {
    pub file: String,
    pub ns: String,
    pub docs: u64,
    pub crc_ok: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DrillReport {
    pub ok: bool,
    pub snapshot: String,
    pub repo: String,
    pub started_unix: i64,
    pub rto_seconds: f64,
    pub rpo_seconds: f64,
    pub bytes_read: u64,
    pub files: u64,
    pub archives: u64,
    pub fetch_decrypt_seconds: f64,
    pub parse_seconds: f64,
    pub collections: Vec<CollectionResult>,
    pub errors: Vec<String>,
}

impl DrillReport {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "type": "drill",
            "ok": self.ok,
            "snapshot": self.snapshot,
            "repo": self.repo,
            "started_unix": self.started_unix,
            "rto_seconds": self.rto_seconds,
            "rpo_seconds": self.rpo_seconds,
            "bytes_read": self.bytes_read,
            "files": self.files,
            "archives": self.archives,
            "phases": {"fetch_decrypt": self.fetch_decrypt_seconds, "parse": self.parse_seconds},
            "collections": self.collections.iter().map(|c| json!({
                "file": c.file, "ns": c.ns, "archive_count": c.docs, "crc_ok": c.crc_ok
            })).collect::<Vec<_>>(),
            "errors": self.errors,
        })
    }
}

/// Sequential reading of a file through its reader, timing the fetch+decrypt part.
struct TimedReader<'a, 'v> {
    r: &'a FileReader<'v>,
    off: u64,
    busy: std::time::Duration,
    bytes: u64,
}

impl Read for TimedReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let t = Instant::now();
        let b = self.r.read_at(self.off, buf.len().min(1 << 20)).map_err(std::io::Error::other)?;
        self.busy += t.elapsed();
        buf[..b.len()].copy_from_slice(&b);
        self.off += b.len() as u64;
        self.bytes += b.len() as u64;
        Ok(b.len())
    }
}

pub fn drill(v: &Vault, spec: &str) -> Result<DrillReport> {
    let start = Instant::now();
    let info = v.resolve(spec)?;
    let mut rep = DrillReport {
        snapshot: info.snap.period.clone(),
        repo: v.store().describe(),
        started_unix: crate::repo::now_unix(),
        ..Default::default()
    };
    rep.rpo_seconds = (crate::repo::now_unix_ns() - info.snap.updated_unix_ns).max(0) as f64 / 1e9;
    let mut files = Vec::new();
    v.walk(info.snap.root, &mut |path, node| {
        if let NodeKind::File { state, .. } = &node.kind {
            files.push((show(path), node.clone(), *state));
        }
        Ok(())
    })?;
    let (mut fetch, mut total_read) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for (path, node, state) in files {
        rep.files += 1;
        let label = format!("{}/{path}", rep.snapshot);
        match state {
            FileState::Complete => {}
            FileState::Incomplete => rep.errors.push(format!("{label}: marked incomplete (its writer never finished)")),
            FileState::Failed => rep.errors.push(format!("{label}: marked failed by its backup job")),
        }
        let reader = v.file_reader(&node)?;
        let mut head = [0u8; 4];
        let head_len = reader.read_at(0, 4).map(|b| {
            head[..b.len()].copy_from_slice(&b);
            b.len()
        });
        let t = Instant::now();
        let mut tr = TimedReader { r: &reader, off: 0, busy: std::time::Duration::ZERO, bytes: 0 };
        let result = match head_len {
            Ok(4) if mongo::is_archive(&head) => {
                rep.archives += 1;
                mongo::verify(&mut tr, &mut |_, _| Ok(())).map(Some)
            }
            Ok(_) => {
                std::io::copy(&mut tr, &mut std::io::sink()).map(|_| None).map_err(|e| Error::corrupt(e.to_string()))
            }
            Err(e) => Err(e),
        };
        total_read += t.elapsed();
        fetch += tr.busy;
        rep.bytes_read += tr.bytes;
        match result {
            Ok(Some(a)) => {
                for n in &a.namespaces {
                    if !n.crc_ok {
                        rep.errors.push(format!("{label}: {}: CRC mismatch", n.ns));
                    }
                    if !n.metadata_json_ok {
                        rep.errors.push(format!("{label}: {}: collection metadata is not valid JSON", n.ns));
                    }
                    rep.collections.push(CollectionResult {
                        file: path.clone(),
                        ns: n.ns.clone(),
                        docs: n.docs,
                        crc_ok: n.crc_ok,
                    });
                }
            }
            Ok(None) => {}
            Err(e) => rep.errors.push(format!("{label}: {e}")),
        }
    }
    rep.fetch_decrypt_seconds = fetch.as_secs_f64();
    rep.parse_seconds = (total_read - fetch.min(total_read)).as_secs_f64();
    rep.rto_seconds = start.elapsed().as_secs_f64();
    rep.ok = rep.errors.is_empty();
    Ok(rep)
}

/// Appends a drill report to the vault's log.
pub fn log(v: &Vault, rep: &DrillReport) -> Result<()> {
    crate::repo::log::append(v, &rep.to_json()).map(|_| ())
}
