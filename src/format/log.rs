//! The records of the vault's log (repo/log.rs stores one sealed JSON object per event): a
//! backup job (`vaultctl run`), a sync, a drill, a prune. Pure serde: no I/O. The field tables
//! are in docs/DESIGN.md §12. Readers are lenient the same way everywhere: a field an older
//! build did not write takes its default, a field this build does not know is ignored (a
//! drill keeps the rest of its report in [`DrillRecord::rest`]), and a record of a type this
//! build does not know is skipped by [`Record::parse`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One entry of the log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Job(JobRecord),
    Sync(SyncRecord),
    Drill(Box<DrillRecord>),
    Prune(PruneRecord),
}

impl Record {
    /// Parses an entry: `Ok(None)` for a type this build does not know (written by a newer
    /// one), an error for JSON that is not an object or a known type with a malformed field.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Option<Record>, String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let known = ["job", "sync", "drill", "prune"];
        match v.get("type").and_then(|t| t.as_str()) {
            Some(t) if known.contains(&t) => serde_json::from_value(v).map(Some).map_err(|e| e.to_string()),
            Some(_) => Ok(None),
            None => Err("no \"type\" field".into()),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("log records always serialize")
    }

    /// When the event happened (its end, or a drill's start), in seconds since the epoch: the
    /// order of the log.
    pub fn time_unix(&self) -> i64 {
        match self {
            Record::Job(j) => j.time_unix,
            Record::Sync(s) => s.time_unix,
            Record::Drill(d) => d.started_unix,
            Record::Prune(p) => p.time_unix,
        }
    }
}

/// A backup job run by `vaultctl run`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct JobRecord {
    /// The command and its arguments (lossy UTF-8).
    pub command: Vec<String>,
    pub host: String,
    pub started_unix: i64,
    /// The end of the job (the log's order).
    pub time_unix: i64,
    pub ended_unix: i64,
    /// The end in nanoseconds: orders jobs that end within one second.
    pub ended_unix_ns: i64,
    pub seconds: f64,
    /// The command's exit status (126/127 when it could not be started); null when a signal
    /// ended it.
    pub exit_code: Option<i32>,
    /// The signal that ended the command.
    pub signal: Option<i32>,
    /// A signal `vaultctl run` itself received (and forwarded) while the command ran.
    pub interrupted_by: Option<i32>,
    /// Why the command could not be started.
    pub error: Option<String>,
    /// Exit status 0 and not interrupted.
    pub ok: bool,
    /// The files of the current period the job wrote.
    pub files: Vec<JobFileRecord>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct JobFileRecord {
    pub period: String,
    pub path: String,
    pub size: u64,
}

/// A sync to a remote. `complete: false` records a sync whose last step (the manifest) failed.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct SyncRecord {
    pub remote: String,
    pub time_unix: i64,
    pub complete: bool,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A prune.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct PruneRecord {
    pub time_unix: i64,
    /// The policy, as `--keep-*` flags.
    pub policy: String,
    /// The periods forgotten.
    pub forgotten: Vec<String>,
    pub packs_deleted: u64,
    pub packs_written: u64,
    pub stored_before: u64,
    pub stored_after: u64,
    pub seconds: f64,
}

/// A restore drill: the fields readers use, typed; the rest of the drill's report (the
/// `contents` of each file, the restore summaries, ...) kept as written.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct DrillRecord {
    pub ok: bool,
    /// `ok`, `failed`, `not_verifiable` or `read_back_only`; absent in entries written before
    /// drills had it (see [`DrillRecord::result`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    pub snapshot: String,
    pub path: Option<String>,
    pub repo: String,
    pub started_unix: i64,
    pub rto_seconds: f64,
    pub rpo_seconds: f64,
    pub bytes_read: u64,
    pub files: u64,
    pub archives: u64,
    /// Files per kind (`mongodump`, `pg_custom`, ..., `unknown`).
    pub kinds: BTreeMap<String, u64>,
    pub counts: DrillCounts,
    /// Seconds per phase: `fetch_decrypt`, `parse`, with a restore `insert` and `verify`.
    pub phases: BTreeMap<String, f64>,
    pub collections: Vec<CollectionCount>,
    pub tables: Vec<TableCount>,
    pub errors: Vec<String>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct DrillCounts {
    pub documents: u64,
    pub tables: u64,
    pub rows: u64,
    pub large_objects: u64,
    pub zip_members: u64,
    pub jsonl_objects: u64,
    pub tar_members: u64,
}

/// A mongodump collection: documents in the archive, and restored when the drill restored.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct CollectionCount {
    pub file: String,
    pub ns: String,
    pub archive_count: u64,
    pub restored_count: Option<u64>,
    pub crc_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A pg_dump table: rows in the dump (null when not counted), and restored.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct TableCount {
    pub file: String,
    pub table: String,
    pub archive_count: Option<u64>,
    pub restored_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a drill concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillResult {
    Ok,
    Failed,
    NotVerifiable,
    ReadBackOnly,
}

impl DrillResult {
    /// As `status` shows it.
    pub fn label(self) -> &'static str {
        match self {
            DrillResult::Ok => "OK",
            DrillResult::Failed => "FAILED",
            DrillResult::NotVerifiable => "NOT VERIFIABLE",
            DrillResult::ReadBackOnly => "READ BACK ONLY",
        }
    }

    /// As the log and the JSON outputs write it.
    pub fn name(self) -> &'static str {
        match self {
            DrillResult::Ok => "ok",
            DrillResult::Failed => "failed",
            DrillResult::NotVerifiable => "not_verifiable",
            DrillResult::ReadBackOnly => "read_back_only",
        }
    }
}

impl DrillRecord {
    /// The result; for entries written before drills had a `result` field, from `ok`.
    pub fn result(&self) -> DrillResult {
        match self.result.as_deref() {
            Some("ok") => DrillResult::Ok,
            Some("failed") => DrillResult::Failed,
            Some("not_verifiable") => DrillResult::NotVerifiable,
            Some("read_back_only") => DrillResult::ReadBackOnly,
            _ if self.ok => DrillResult::Ok,
            _ => DrillResult::Failed,
        }
    }

    /// What was drilled: `PERIOD`, or `PERIOD/PATH` for a drill limited to a path.
    pub fn target(&self) -> String {
        match &self.path {
            Some(p) => format!("{}/{}", self.snapshot, p.trim_matches('/')),
            None => self.snapshot.clone(),
        }
    }

    /// What it checked: files per kind and their counts, e.g. `1 pg_custom, 1 zip; 3 tables,
    /// 1003 rows, 2 large objects, 12 zip members, 1234 JSON objects`. Empty for entries that
    /// carry no kinds (written before drills recorded them).
    pub fn summary(&self) -> String {
        if self.kinds.is_empty() {
            return String::new();
        }
        let mut parts: Vec<String> =
            self.kinds.iter().filter(|(k, _)| k.as_str() != "unknown").map(|(k, n)| format!("{n} {k}")).collect();
        if let Some(n) = self.kinds.get("unknown") {
            parts.push(format!("{n} read back only"));
        }
        let c = &self.counts;
        let counts: Vec<String> = [
            (c.documents, "documents"),
            (c.tables, "tables"),
            (c.rows, "rows"),
            (c.large_objects, "large objects"),
            (c.zip_members, "zip members"),
            (c.jsonl_objects, "JSON objects"),
            (c.tar_members, "tar members"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, label)| format!("{n} {label}"))
        .collect();
        match (parts.is_empty(), counts.is_empty()) {
            (true, _) => "no files".into(),
            (false, true) => parts.join(", "),
            (false, false) => format!("{}; {}", parts.join(", "), counts.join(", ")),
        }
    }
}

impl JobRecord {
    /// `exit N`, `killed by signal N`, with the signal that interrupted `vaultctl run`.
    pub fn outcome(&self) -> String {
        let s = match (self.exit_code, self.signal) {
            (_, Some(sig)) => format!("killed by signal {sig}"),
            (Some(c), _) => format!("exit {c}"),
            _ => "?".into(),
        };
        match self.interrupted_by {
            Some(sig) => format!("{s}, interrupted by signal {sig}"),
            None => s,
        }
    }

    /// The status a shell would give: the exit code, or 128 + the signal.
    pub fn exit_status(&self) -> i32 {
        match (self.exit_code, self.signal) {
            (_, Some(sig)) => 128 + sig,
            (Some(c), _) => c,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_round_trips_with_its_type_tag() {
        let recs = vec![
            Record::Job(JobRecord {
                command: vec!["mongodump".into(), "--archive=x".into()],
                exit_code: Some(0),
                ok: true,
                files: vec![JobFileRecord { period: "2026-11-20".into(), path: "today".into(), size: 7 }],
                ..Default::default()
            }),
            Record::Sync(SyncRecord { remote: "offsite".into(), complete: true, uploaded: 3, ..Default::default() }),
            Record::Prune(PruneRecord { forgotten: vec!["2026-11-01".into()], ..Default::default() }),
            Record::Drill(Box::new(DrillRecord {
                snapshot: "2026-11-20".into(),
                result: Some("ok".into()),
                ..Default::default()
            })),
        ];
        for r in recs {
            let j = r.to_json();
            let v: serde_json::Value = serde_json::from_str(&j).unwrap();
            assert!(v["type"].is_string(), "{j}");
            assert_eq!(Record::parse(j.as_bytes()).unwrap(), Some(r));
        }
    }

    #[test]
    fn old_and_unknown_entries() {
        // A drill from before `result` and `kinds`: its result comes from `ok`.
        let old = br#"{"type":"drill","ok":false,"snapshot":"2026-01-01","started_unix":5,"extra":1}"#;
        let Some(Record::Drill(d)) = Record::parse(old).unwrap() else { panic!() };
        assert_eq!(d.result(), DrillResult::Failed);
        assert_eq!(d.summary(), "");
        assert_eq!(d.rest["extra"], 1);
        // A job that a signal ended.
        let j = br#"{"type":"job","signal":15,"interrupted_by":2,"ok":false}"#;
        let Some(Record::Job(j)) = Record::parse(j).unwrap() else { panic!() };
        assert_eq!(j.outcome(), "killed by signal 15, interrupted by signal 2");
        assert_eq!(j.exit_status(), 143);
        // A type written by a newer build is skipped; garbage is an error.
        assert_eq!(Record::parse(br#"{"type":"rotation","x":1}"#).unwrap(), None);
        assert!(Record::parse(b"[1]").is_err());
        assert!(Record::parse(br#"{"type":"job","ok":"yes"}"#).is_err());
    }
}
