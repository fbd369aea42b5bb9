//! `drill`: prove that a snapshot restores. Every file is read back through the engine (every
//! byte authenticated); files that are mongodump archives (recognised by content, plain or
//! gzip) are parsed and verified per collection (framing, CRC-64/XZ, document counts). With a
//! [`Restorer`], every archive is also restored into a scratch database while it is read, and
//! each restored collection's document count is compared with the archive's. The report carries
//! RTO (measured time to a verified restore, by phase) and RPO (age of the snapshot's newest
//! write), and is appended to the vault's drill log, an encrypted object per drill, so that the
//! evidence travels with every copy of the vault.
//!
//! A drill only reads the vault; writing its log entry adds one fresh object under a random
//! name, which cannot disturb a writer, so it takes no lock.

use crate::error::{Error, Result};
use crate::format::tree::{FileState, NodeKind};
use crate::mongo;
use crate::mongo::restore::{Placement, Restorer};
use crate::repo::trees::show;
use crate::repo::{FileReader, Vault};
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct CollectionResult {
    pub file: String,
    pub ns: String,
    pub docs: u64,
    pub crc_ok: bool,
    /// Collection of the scratch database it was restored into.
    pub restored_to: Option<String>,
    /// Documents counted there after the restore.
    pub restored: Option<u64>,
    /// Why it was not restored.
    pub note: Option<String>,
}

/// Where and how a drill restored the archives (with `--mongo-uri`).
#[derive(Debug, Clone, Default)]
pub struct RestoreInfo {
    pub server: String,
    pub database: String,
    pub documents: u64,
    pub kept: bool,
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
    pub insert_seconds: f64,
    pub verify_seconds: f64,
    pub restore: Option<RestoreInfo>,
    pub collections: Vec<CollectionResult>,
    pub errors: Vec<String>,
}

impl DrillReport {
    pub fn to_json(&self) -> serde_json::Value {
        let mut phases = json!({"fetch_decrypt": self.fetch_decrypt_seconds, "parse": self.parse_seconds});
        if self.restore.is_some() {
            phases["insert"] = json!(self.insert_seconds);
            phases["verify"] = json!(self.verify_seconds);
        }
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
            "phases": phases,
            "restore": self.restore.as_ref().map(|r| json!({
                "server": r.server,
                "database": r.database,
                "documents": r.documents,
                "docs_per_second": if self.rto_seconds > 0.0 { r.documents as f64 / self.rto_seconds } else { 0.0 },
                "kept": r.kept,
            })),
            "collections": self.collections.iter().map(|c| {
                let mut o = json!({
                    "file": c.file, "ns": c.ns, "archive_count": c.docs, "restored_count": c.restored,
                    "crc_ok": c.crc_ok,
                });
                if let Some(t) = &c.restored_to {
                    o["restored_to"] = json!(t);
                }
                if let Some(n) = &c.note {
                    o["note"] = json!(n);
                }
                o
            }).collect::<Vec<_>>(),
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

/// Reads and verifies snapshot `spec` (a period or `latest`).
pub fn drill(v: &Vault, spec: &str) -> Result<DrillReport> {
    drill_with(v, spec, None)
}

/// [`drill`], restoring every archive through `restore` when given. The restorer is left
/// open: the caller closes it (dropping the scratch database unless kept).
pub fn drill_with(v: &Vault, spec: &str, mut restore: Option<&mut Restorer>) -> Result<DrillReport> {
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
    let (mut fetch, mut total_read) = (Duration::ZERO, Duration::ZERO);
    let insert_wait_before = |r: &Option<&mut Restorer>| r.as_ref().map(|r| r.insert_wait()).unwrap_or_default();
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
        let waited_before = insert_wait_before(&restore);
        let mut tr = TimedReader { r: &reader, off: 0, busy: Duration::ZERO, bytes: 0 };
        let placements = RefCell::new(BTreeMap::<String, Placement>::new());
        let result = match head_len {
            Ok(4) if mongo::is_archive(&head) => {
                rep.archives += 1;
                let sink = RefCell::new(restore.as_deref_mut());
                let r = mongo::verify_with(
                    &mut tr,
                    &mut |prelude| {
                        if let Some(r) = sink.borrow_mut().as_deref_mut() {
                            *placements.borrow_mut() = r.begin_archive(&label, prelude);
                        }
                        Ok(())
                    },
                    &mut |ns, doc| match sink.borrow_mut().as_deref_mut() {
                        Some(r) => r.on_doc(ns, doc),
                        None => Ok(()),
                    },
                );
                if let Some(r) = sink.borrow_mut().as_deref_mut() {
                    r.flush_all();
                }
                r.map(Some)
            }
            Ok(_) => {
                std::io::copy(&mut tr, &mut std::io::sink()).map(|_| None).map_err(|e| Error::corrupt(e.to_string()))
            }
            Err(e) => Err(e),
        };
        // Time blocked on the server while reading this file belongs to the insert phase.
        let waited = insert_wait_before(&restore).saturating_sub(waited_before);
        total_read += t.elapsed().saturating_sub(waited);
        fetch += tr.busy;
        rep.bytes_read += tr.bytes;
        let placements = placements.into_inner();
        match result {
            Ok(Some(a)) => {
                for n in &a.namespaces {
                    if !n.crc_ok {
                        rep.errors.push(format!("{label}: {}: CRC mismatch", n.ns));
                    }
                    if !n.metadata_json_ok {
                        rep.errors.push(format!("{label}: {}: collection metadata is not valid JSON", n.ns));
                    }
                    // The prelude names a time-series collection by its logical name; its data
                    // (and the report) use the bucket namespace.
                    let p = placements
                        .get(&n.ns)
                        .or_else(|| placements.get(&format!("{}.{}", n.db, n.collection)))
                        .cloned();
                    rep.collections.push(CollectionResult {
                        file: path.clone(),
                        ns: n.ns.clone(),
                        docs: n.docs,
                        crc_ok: n.crc_ok,
                        restored_to: p.as_ref().and_then(|p| p.target.clone()),
                        restored: None,
                        note: p.and_then(|p| p.note),
                    });
                }
            }
            Ok(None) => {}
            Err(e) => {
                rep.errors.push(format!("{label}: {e}"));
                if placements.values().any(|p| p.target.is_some()) {
                    rep.errors.push(format!("{label}: the restore of this archive is incomplete"));
                }
            }
        }
    }
    rep.fetch_decrypt_seconds = fetch.as_secs_f64();
    rep.parse_seconds = (total_read - fetch.min(total_read)).as_secs_f64();
    if let Some(r) = restore {
        let sum = r.finish();
        rep.insert_seconds = sum.insert_wait.as_secs_f64();
        rep.verify_seconds = sum.verify.as_secs_f64();
        for c in &mut rep.collections {
            let Some(t) = &c.restored_to else { continue };
            c.restored = sum.counts.get(t).copied().flatten();
            if c.restored != Some(c.docs) {
                rep.errors.push(format!(
                    "{}/{}: {}: the archive has {} documents, {}.{t} has {}",
                    rep.snapshot,
                    c.file,
                    c.ns,
                    c.docs,
                    r.database(),
                    c.restored.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
                ));
            }
        }
        rep.errors.extend(r.errors().iter().cloned());
        rep.restore = Some(RestoreInfo {
            server: r.server().to_string(),
            database: r.database().to_string(),
            documents: sum.inserted,
            kept: r.keeps(),
        });
    }
    rep.rto_seconds = start.elapsed().as_secs_f64();
    rep.ok = rep.errors.is_empty();
    Ok(rep)
}

/// Appends a drill report to the vault's log.
pub fn log(v: &Vault, rep: &DrillReport) -> Result<()> {
    crate::repo::log::append(v, &rep.to_json()).map(|_| ())
}
