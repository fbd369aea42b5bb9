//! The drill report: what was read, what each file turned out to be and hold, the restores,
//! RTO and RPO; as JSON (`--json`, and the drill log entry) and as text. The JSON shape is
//! documented in docs/DESIGN.md ("Drill log entries"); fields are only ever added.

use crate::pgdump::DumpReport;
use crate::verify::tar::TarReport;
use crate::verify::zip::ZipReport;
use crate::verify::Kind;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;

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

/// One table of a PostgreSQL dump.
#[derive(Debug, Clone)]
pub struct TableResult {
    pub file: String,
    /// `schema.table`.
    pub table: String,
    /// Rows of its COPY data in the dump (`None`: not counted, see `note`).
    pub rows: Option<u64>,
    /// Scratch database it was restored into.
    pub restored_to: Option<String>,
    /// Rows counted there after the restore (`None`: the table is missing).
    pub restored: Option<u64>,
    pub note: Option<String>,
}

/// Where and how a drill restored the mongodump archives (with `--mongo-uri`).
#[derive(Debug, Clone, Default)]
pub struct RestoreInfo {
    pub server: String,
    pub database: String,
    pub documents: u64,
    pub kept: bool,
}

/// Where and how a drill restored the PostgreSQL dumps (with `--pg-uri`).
#[derive(Debug, Clone, Default)]
pub struct PgRestoreInfo {
    pub server: String,
    /// One scratch database per dump, in file order.
    pub databases: Vec<String>,
    pub rows: u64,
    pub large_objects: u64,
    pub kept: bool,
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its content was checked (and restored, when asked) without a fault.
    Verified,
    /// Damage, a failed restore, or a failed or incomplete mark: see the report's errors.
    Failed,
    /// A kind the drill knows, but whose content it cannot check (the reason).
    NotVerifiable(String),
    /// A kind the drill does not know: every byte read and authenticated, content unchecked.
    ReadBackOnly,
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::Failed => "failed",
            Outcome::NotVerifiable(_) => "not_verifiable",
            Outcome::ReadBackOnly => "read_back_only",
        }
    }
}

/// What the checker of its kind learned.
#[derive(Debug, Clone)]
pub enum Detail {
    None,
    Mongo { namespaces: u64, documents: u64 },
    Pg(Box<DumpReport>),
    Zip(Box<ZipReport>),
    Tar(TarReport),
    Gzip { bytes: u64 },
}

#[derive(Debug, Clone)]
pub struct FileReport {
    /// Path inside the snapshot.
    pub file: String,
    pub kind: Kind,
    /// A compression around the content (`gzip`), detected by content.
    pub wrapper: Option<&'static str>,
    /// Bytes of the file.
    pub bytes: u64,
    pub outcome: Outcome,
    pub detail: Detail,
    /// A gzip file stored expanded, checked from its stored decompressed content (its gzip
    /// bytes were not recreated: `cat` and reads through the mount do that).
    pub from_content: bool,
}

/// Totals over the files, for the log and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub documents: u64,
    pub tables: u64,
    pub rows: u64,
    pub large_objects: u64,
    pub zip_members: u64,
    pub jsonl_objects: u64,
    pub tar_members: u64,
}

#[derive(Debug, Clone, Default)]
pub struct DrillReport {
    pub ok: bool,
    pub snapshot: String,
    /// The path the drill was limited to (`--path`), if any.
    pub path: Option<String>,
    pub repo: String,
    pub started_unix: i64,
    pub rto_seconds: f64,
    pub rpo_seconds: f64,
    pub bytes_read: u64,
    pub files: u64,
    /// mongodump archives.
    pub archives: u64,
    pub fetch_decrypt_seconds: f64,
    pub parse_seconds: f64,
    pub insert_seconds: f64,
    pub verify_seconds: f64,
    pub restore: Option<RestoreInfo>,
    pub pg_restore: Option<PgRestoreInfo>,
    pub collections: Vec<CollectionResult>,
    pub tables: Vec<TableResult>,
    /// Every file, in snapshot order.
    pub contents: Vec<FileReport>,
    pub errors: Vec<String>,
}

/// Files of unknown kind named in the JSON report (the rest are counted).
const UNKNOWN_LISTED: usize = 20;

fn human(n: u64) -> String {
    crate::units::human(n)
}

impl DrillReport {
    /// `ok`, `failed`, `not_verifiable` (a file of a known kind could not be checked) or
    /// `read_back_only` (no file of a kind the drill checks: every byte was read and
    /// authenticated, no content was checked).
    pub fn result(&self) -> &'static str {
        if !self.errors.is_empty() {
            "failed"
        } else if self.contents.iter().any(|f| matches!(f.outcome, Outcome::NotVerifiable(_))) {
            "not_verifiable"
        } else if !self.contents.iter().any(|f| f.outcome == Outcome::Verified) {
            "read_back_only"
        } else {
            "ok"
        }
    }

    /// Files per kind.
    pub fn kinds(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for f in &self.contents {
            *m.entry(f.kind.name()).or_insert(0) += 1;
        }
        m
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for f in &self.contents {
            match &f.detail {
                Detail::Mongo { documents, .. } => c.documents += documents,
                Detail::Pg(p) => {
                    c.tables += p.tables.len() as u64;
                    c.rows += p.rows();
                    c.large_objects += p.large_objects;
                }
                Detail::Zip(z) => {
                    c.zip_members += z.members;
                    c.jsonl_objects += z.jsonl_objects();
                }
                Detail::Tar(t) => c.tar_members += t.members,
                Detail::None | Detail::Gzip { .. } => {}
            }
        }
        c
    }

    fn file_json(f: &FileReport, full: bool) -> Value {
        let mut o = json!({
            "file": f.file,
            "kind": f.kind.name(),
            "bytes": f.bytes,
            "verdict": f.outcome.name(),
        });
        if let Some(w) = f.wrapper {
            o["compression"] = json!(w);
        }
        if f.from_content {
            o["read"] = json!("stored content");
        }
        if let Outcome::NotVerifiable(why) = &f.outcome {
            o["reason"] = json!(why);
        }
        match &f.detail {
            Detail::None => {}
            Detail::Mongo { namespaces, documents } => {
                o["mongo"] = json!({"namespaces": namespaces, "documents": documents});
            }
            Detail::Pg(p) => {
                o["pg"] = json!({
                    "format": p.format.name(),
                    "archive_version": p.archive_version,
                    "compression": p.compression,
                    "database": p.database,
                    "server_version": p.server_version,
                    "pg_dump_version": p.pg_dump_version,
                    "entries": p.entries,
                    "tables": p.tables.len(),
                    "rows": p.rows(),
                    "large_objects": p.large_objects,
                });
                if let Some(n) = &p.note {
                    o["pg"]["note"] = json!(n);
                }
                if full {
                    o["pg"]["table_data"] = p
                        .tables
                        .iter()
                        .map(|t| {
                            json!({"table": t.name(), "rows": t.rows, "offset": t.offset,
                                   "stored_bytes": t.stored_bytes, "data_bytes": t.data_bytes, "error": t.error})
                        })
                        .collect();
                }
            }
            Detail::Zip(z) => {
                let mut zj = json!({
                    "zip64": z.zip64,
                    "members": z.members,
                    "files": z.files,
                    "directories": z.directories,
                    "uncompressed_bytes": z.bytes,
                    "compressed_bytes": z.compressed_bytes,
                    "directories_top": z.per_directory.iter().map(|(d, (n, b))| {
                        (if d.is_empty() { "(top)".to_string() } else { d.clone() }, json!({"members": n, "bytes": b}))
                    }).collect::<serde_json::Map<String, Value>>(),
                    "jsonl": z.jsonl.iter().map(|j| json!({
                        "member": j.member, "lines": j.lines, "models": j.models, "other": j.other,
                    })).collect::<Vec<_>>(),
                    "models": z.models(),
                    "jsonl_objects": z.jsonl_objects(),
                });
                if full {
                    zj["member_list"] = z
                        .listed
                        .iter()
                        .map(|m| {
                            json!({"name": m.name, "size": m.size, "compressed": m.compressed, "method": m.method,
                                   "encrypted": m.encrypted, "verified": m.verified, "error": m.error})
                        })
                        .collect();
                    zj["members_listed"] = json!(z.listed.len());
                }
                o["zip"] = zj;
            }
            Detail::Tar(t) => {
                o["tar"] = json!({
                    "format": t.format, "members": t.members, "files": t.files, "directories": t.directories,
                    "symlinks": t.symlinks, "hardlinks": t.hardlinks, "other": t.other, "data_bytes": t.data_bytes,
                });
            }
            Detail::Gzip { bytes } => o["gzip"] = json!({"uncompressed_bytes": bytes}),
        }
        o
    }

    /// The full report (`drill --json`).
    pub fn to_json(&self) -> Value {
        self.json(true)
    }

    /// The drill log entry: the report without the per-member and per-table lists of zip and
    /// PostgreSQL files (those can be long; the log is read whole by `status`).
    pub fn to_log_json(&self) -> Value {
        self.json(false)
    }

    /// The drill log entry as a typed record (the same JSON as [`Self::to_log_json`]).
    pub fn to_record(&self) -> crate::format::log::DrillRecord {
        let mut v = self.json(false);
        if let Some(o) = v.as_object_mut() {
            o.remove("type");
        }
        serde_json::from_value(v).expect("a drill report is a valid drill record")
    }

    fn json(&self, full: bool) -> Value {
        let mut phases = json!({"fetch_decrypt": self.fetch_decrypt_seconds, "parse": self.parse_seconds});
        if self.restore.is_some() || self.pg_restore.is_some() {
            phases["insert"] = json!(self.insert_seconds);
            phases["verify"] = json!(self.verify_seconds);
        }
        let c = self.counts();
        let unknown: Vec<&FileReport> = self.contents.iter().filter(|f| f.kind == Kind::Unknown).collect();
        json!({
            "type": "drill",
            "ok": self.ok,
            "result": self.result(),
            "snapshot": self.snapshot,
            "path": self.path,
            "repo": self.repo,
            "started_unix": self.started_unix,
            "rto_seconds": self.rto_seconds,
            "rpo_seconds": self.rpo_seconds,
            "bytes_read": self.bytes_read,
            "files": self.files,
            "archives": self.archives,
            "kinds": self.kinds(),
            "counts": {
                "documents": c.documents, "tables": c.tables, "rows": c.rows, "large_objects": c.large_objects,
                "zip_members": c.zip_members, "jsonl_objects": c.jsonl_objects, "tar_members": c.tar_members,
            },
            "phases": phases,
            "restore": self.restore.as_ref().map(|r| json!({
                "server": r.server,
                "database": r.database,
                "documents": r.documents,
                "docs_per_second": if self.rto_seconds > 0.0 { r.documents as f64 / self.rto_seconds } else { 0.0 },
                "kept": r.kept,
            })),
            "pg_restore": self.pg_restore.as_ref().map(|r| json!({
                "server": r.server,
                "databases": r.databases,
                "rows": r.rows,
                "large_objects": r.large_objects,
                "rows_per_second": if self.rto_seconds > 0.0 { r.rows as f64 / self.rto_seconds } else { 0.0 },
                "kept": r.kept,
            })),
            "contents": self.contents.iter().filter(|f| f.kind != Kind::Unknown)
                .map(|f| Self::file_json(f, full)).collect::<Vec<_>>(),
            "read_back_only": unknown.len(),
            "read_back_only_files": unknown.iter().take(UNKNOWN_LISTED).map(|f| f.file.clone()).collect::<Vec<_>>(),
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
            "tables": self.tables.iter().map(|t| {
                let mut o = json!({
                    "file": t.file, "table": t.table, "archive_count": t.rows, "restored_count": t.restored,
                });
                if let Some(d) = &t.restored_to {
                    o["restored_to"] = json!(d);
                }
                if let Some(n) = &t.note {
                    o["note"] = json!(n);
                }
                o
            }).collect::<Vec<_>>(),
            "errors": self.errors,
        })
    }

    fn file_line(f: &FileReport) -> String {
        let what = match &f.detail {
            Detail::None => String::new(),
            Detail::Mongo { namespaces, documents } => format!("{namespaces} namespaces, {documents} documents"),
            Detail::Pg(p) => {
                let mut s = match p.format {
                    crate::pgdump::DumpFormat::Custom => {
                        format!("archive {} ({}), ", p.archive_version, p.compression)
                    }
                    crate::pgdump::DumpFormat::Plain => String::new(),
                };
                write!(s, "{} tables, {} rows, {} large objects", p.tables.len(), p.rows(), p.large_objects).ok();
                if let Some(n) = &p.note {
                    write!(s, " ({n})").ok();
                }
                s
            }
            Detail::Zip(z) => {
                let mut s = format!(
                    "{} members ({} files, {} directories), {} uncompressed",
                    z.members,
                    z.files,
                    z.directories,
                    human(z.bytes)
                );
                if !z.jsonl.is_empty() {
                    write!(s, ", {} JSON objects in {} models", z.jsonl_objects(), z.models().len()).ok();
                }
                s
            }
            Detail::Tar(t) => format!(
                "{} members ({} files, {} directories, {} links), {} of data, {}",
                t.members,
                t.files,
                t.directories,
                t.symlinks + t.hardlinks,
                human(t.data_bytes),
                t.format
            ),
            Detail::Gzip { bytes } => format!("{} uncompressed", human(*bytes)),
        };
        let verdict = match &f.outcome {
            Outcome::Verified => "verified".to_string(),
            Outcome::Failed => "FAILED".to_string(),
            Outcome::NotVerifiable(why) => format!("NOT VERIFIABLE: {why}"),
            Outcome::ReadBackOnly => "read back only (every byte authenticated, content not checked)".to_string(),
        };
        let kind = match f.wrapper {
            Some(w) => format!("{}+{w}", f.kind.name()),
            None => f.kind.name().to_string(),
        };
        let what = match (f.from_content, what.is_empty()) {
            (false, _) => what,
            (true, true) => "read as its stored decompressed content".to_string(),
            (true, false) => format!("{what} (read as its stored decompressed content)"),
        };
        if what.is_empty() {
            format!("  {kind:<14} {}: {verdict}", f.file)
        } else {
            format!("  {kind:<14} {}: {what}: {verdict}", f.file)
        }
    }

    /// The report as text (what `vaultctl drill` prints).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        match &self.path {
            Some(p) => writeln!(s, "drill of {}/{} in {}", self.snapshot, p.trim_matches('/'), self.repo),
            None => writeln!(s, "drill of {} in {}", self.snapshot, self.repo),
        }
        .ok();
        let mut kinds: Vec<String> =
            self.kinds().iter().filter(|(k, _)| **k != "unknown").map(|(k, n)| format!("{n} {k}")).collect();
        let unknown = self.contents.iter().filter(|f| f.kind == Kind::Unknown).count();
        if unknown > 0 {
            kinds.push(format!("{unknown} read back only"));
        }
        let _ = writeln!(
            s,
            "  files read:      {} ({}){}",
            self.files,
            human(self.bytes_read),
            if kinds.is_empty() { String::new() } else { format!(": {}", kinds.join(", ")) }
        );
        for f in self.contents.iter().filter(|f| f.kind != Kind::Unknown || self.contents.len() <= 20) {
            let _ = writeln!(s, "{}", Self::file_line(f));
            if let Detail::Zip(z) = &f.detail {
                for (model, n) in z.models() {
                    let _ = writeln!(s, "      {model:<40} {n:>10} objects");
                }
            }
        }
        if let Some(r) = &self.restore {
            let _ = writeln!(s, "  restored into:   {} on {}", r.database, r.server);
        }
        for c in &self.collections {
            let restored = match (&c.restored_to, c.restored, &c.note) {
                (Some(_), Some(n), _) => format!("  restored {n:>10}{}", if n == c.docs { "" } else { "  MISMATCH" }),
                (Some(_), None, _) => "  restored          ?  MISMATCH".to_string(),
                (None, _, Some(note)) if self.restore.is_some() => format!("  ({note})"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "  {:40} {:>10} docs  CRC {}{restored}",
                c.ns,
                c.docs,
                if c.crc_ok { "ok" } else { "MISMATCH" }
            );
        }
        if let Some(r) = &self.pg_restore {
            match r.databases.is_empty() {
                true => writeln!(s, "  restored into:   nothing on {} (no PostgreSQL dump to restore)", r.server),
                false => writeln!(s, "  restored into:   {} on {} (PostgreSQL)", r.databases.join(", "), r.server),
            }
            .ok();
        }
        for t in &self.tables {
            let rows = t.rows.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
            let restored = match (&t.restored_to, t.restored) {
                (Some(_), Some(n)) if Some(n) == t.rows => format!("  restored {n:>10}"),
                (Some(_), Some(n)) if t.rows.is_none() => format!("  restored {n:>10}"),
                (Some(_), Some(n)) => format!("  restored {n:>10}  MISMATCH"),
                (Some(_), None) => "  restored          ?  MISSING".to_string(),
                _ => String::new(),
            };
            let _ = writeln!(s, "  {:40} {rows:>10} rows{restored}", format!("{}: {}", t.file, t.table));
        }
        if self.restore.is_some() || self.pg_restore.is_some() {
            let _ = writeln!(
                s,
                "  RTO:             {:.2} s (fetch+decrypt {:.2} s, parse {:.2} s, insert {:.2} s, verify {:.2} s)",
                self.rto_seconds,
                self.fetch_decrypt_seconds,
                self.parse_seconds,
                self.insert_seconds,
                self.verify_seconds
            );
            if let Some(r) = &self.restore {
                let _ = writeln!(
                    s,
                    "  restored:        {} documents, {:.0} documents/s",
                    r.documents,
                    r.documents as f64 / self.rto_seconds.max(1e-9)
                );
            }
            if let Some(r) = &self.pg_restore {
                let _ = writeln!(
                    s,
                    "  restored:        {} rows, {} large objects, {:.0} rows/s",
                    r.rows,
                    r.large_objects,
                    r.rows as f64 / self.rto_seconds.max(1e-9)
                );
            }
        } else {
            let _ = writeln!(
                s,
                "  RTO:             {:.2} s (fetch+decrypt {:.2} s, parse {:.2} s)",
                self.rto_seconds, self.fetch_decrypt_seconds, self.parse_seconds
            );
        }
        let _ = writeln!(s, "  RPO:             {:.0} s (age of the snapshot's newest write)", self.rpo_seconds);
        for e in &self.errors {
            let _ = writeln!(s, "  error: {e}");
        }
        let result = match self.result() {
            "ok" => "OK".to_string(),
            "failed" => "FAILED".to_string(),
            "not_verifiable" => "NOT VERIFIABLE (a file of a known kind could not be checked, see above)".to_string(),
            _ => format!(
                "READ BACK ONLY ({}: every byte read and authenticated, no content checked)",
                if self.files == 0 { "the snapshot holds no files" } else { "no file of a kind the drill checks" }
            ),
        };
        let _ = writeln!(s, "  result:          {result}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::zip::{Member, ZipReport};

    fn report() -> DrillReport {
        let zip = ZipReport {
            members: 2,
            files: 2,
            listed: vec![Member {
                name: "backup.jsonl".into(),
                size: 10,
                compressed: 8,
                method: "deflate".into(),
                encrypted: false,
                verified: true,
                error: None,
            }],
            ..Default::default()
        };
        let mut r = DrillReport { snapshot: "2026-11-20".into(), files: 2, ..Default::default() };
        r.contents.push(FileReport {
            file: "app.zip".into(),
            kind: Kind::Zip,
            wrapper: None,
            bytes: 100,
            outcome: Outcome::Verified,
            detail: Detail::Zip(Box::new(zip)),
            from_content: false,
        });
        r.contents.push(FileReport {
            file: "notes.txt".into(),
            kind: Kind::Unknown,
            wrapper: None,
            bytes: 3,
            outcome: Outcome::ReadBackOnly,
            detail: Detail::None,
            from_content: false,
        });
        r
    }

    #[test]
    fn the_log_entry_keeps_counts_but_not_member_lists() {
        let r = report();
        assert_eq!(r.result(), "ok");
        let full = r.to_json();
        let log = r.to_log_json();
        assert_eq!(full["contents"][0]["zip"]["member_list"][0]["name"], "backup.jsonl");
        assert!(log["contents"][0]["zip"].get("member_list").is_none());
        assert_eq!(log["counts"]["zip_members"], 2);
        assert_eq!(log["kinds"]["zip"], 1);
        assert_eq!(log["read_back_only_files"][0], "notes.txt");
        let rec = r.to_record();
        assert_eq!(rec.summary(), "1 zip, 1 read back only; 2 zip members");
        // The typed record writes back exactly the entry.
        let back = serde_json::to_value(crate::format::log::Record::Drill(Box::new(rec))).unwrap();
        assert_eq!(back, log);
    }

    #[test]
    fn results_never_call_an_unchecked_file_a_success() {
        let mut r = report();
        r.contents.retain(|f| f.kind == Kind::Unknown);
        assert_eq!(r.result(), "read_back_only");
        assert!(r.to_text().contains("READ BACK ONLY"));
        let mut r = report();
        r.contents[0].outcome = Outcome::NotVerifiable("encrypted".into());
        assert_eq!(r.result(), "not_verifiable");
        r.errors.push("x".into());
        assert_eq!(r.result(), "failed");
        let empty = DrillReport::default();
        assert!(empty.to_text().contains("the snapshot holds no files"));
    }
}
