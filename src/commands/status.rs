//! `status`: what a monitoring check needs: the newest backup and its age (the RPO right now),
//! the current period, the last sync of each remote, the last drill, the last backup job
//! (`vaultctl run`) and whether it failed. The last drill is shown with what it checked: its
//! result, the kinds of files and their counts (see [`drill_result`] and [`drill_summary`]).

use crate::error::Result;
use crate::repo::Vault;

#[derive(Debug, Default)]
pub struct Status {
    pub newest_period: Option<String>,
    pub newest_sealed: Option<String>,
    /// Seconds since the newest write of any snapshot.
    pub age_seconds: Option<f64>,
    pub current: Option<(String, bool, u64, u64)>,
    pub syncs: Vec<(String, Option<serde_json::Value>)>,
    /// The newest drill of a whole snapshot.
    pub last_drill: Option<serde_json::Value>,
    /// The newest drill limited to a path (`drill --path`, as the application backup job runs
    /// after each download), when it is newer than `last_drill`.
    pub last_file_drill: Option<serde_json::Value>,
    /// The newest `job` entry of the log (see commands/run.rs).
    pub last_job: Option<serde_json::Value>,
}

impl Status {
    /// Whether the last recorded backup job failed.
    pub fn last_job_failed(&self) -> bool {
        self.last_job.as_ref().is_some_and(|j| j["ok"] != true)
    }
}

pub fn status(v: &Vault) -> Result<Status> {
    let snaps = v.snapshots()?;
    let mut s = Status::default();
    if let Some(newest) = snaps.iter().max_by_key(|x| x.snap.updated_unix_ns) {
        s.newest_period = Some(newest.snap.period.clone());
        s.age_seconds = Some((crate::repo::now_unix_ns() - newest.snap.updated_unix_ns).max(0) as f64 / 1e9);
    }
    s.newest_sealed = snaps.iter().rev().find(|x| x.snap.sealed).map(|x| x.snap.period.clone());
    let cur = v.clock().current();
    s.current = snaps
        .iter()
        .find(|x| x.snap.period == cur)
        .map(|x| (cur.clone(), x.snap.sealed, x.snap.files, x.snap.logical_bytes));
    let log = crate::repo::log::entries(v)?;
    for r in super::remote::list(v)? {
        let last = log.iter().rev().find(|j| j["type"] == "sync" && j["remote"] == r.name.as_str()).cloned();
        s.syncs.push((r.name, last));
    }
    let drills = || log.iter().rev().filter(|j| j["type"] == "drill");
    s.last_drill = drills().find(|j| j["path"].is_null()).cloned();
    let started = |j: &serde_json::Value| j["started_unix"].as_i64().unwrap_or(0);
    s.last_file_drill = drills()
        .find(|j| !j["path"].is_null())
        .filter(|f| s.last_drill.as_ref().is_none_or(|d| started(f) >= started(d)))
        .cloned();
    s.last_job = log
        .iter()
        .filter(|j| j["type"] == "job")
        .max_by_key(|j| (j["time_unix"].as_i64(), j["ended_unix_ns"].as_i64()))
        .cloned();
    Ok(s)
}

/// What a drill log entry drilled: `PERIOD`, or `PERIOD/PATH` for a drill limited to a path.
pub fn drill_target(j: &serde_json::Value) -> String {
    let snap = j["snapshot"].as_str().unwrap_or("?");
    match j["path"].as_str() {
        Some(p) => format!("{snap}/{}", p.trim_matches('/')),
        None => snap.to_string(),
    }
}

/// The result of a drill log entry, as `status` shows it: `OK`, `FAILED`, `NOT VERIFIABLE` or
/// `READ BACK ONLY` (entries written before drills had a `result` field: from `ok`).
pub fn drill_result(j: &serde_json::Value) -> &'static str {
    match j["result"].as_str() {
        Some("ok") => "OK",
        Some("failed") => "FAILED",
        Some("not_verifiable") => "NOT VERIFIABLE",
        Some("read_back_only") => "READ BACK ONLY",
        _ if j["ok"] == true => "OK",
        _ => "FAILED",
    }
}

/// What a drill log entry checked: files per kind and their counts, e.g. `1 pg_custom, 1 zip;
/// 3 tables, 1003 rows, 2 large objects, 12 zip members, 1234 JSON objects`. Empty for entries
/// that carry no kinds (written before drills recorded them).
pub fn drill_summary(j: &serde_json::Value) -> String {
    let Some(kinds) = j["kinds"].as_object() else { return String::new() };
    let mut parts: Vec<String> = kinds
        .iter()
        .filter(|(k, _)| k.as_str() != "unknown")
        .map(|(k, n)| format!("{} {k}", n.as_u64().unwrap_or(0)))
        .collect();
    if let Some(n) = kinds.get("unknown").and_then(|n| n.as_u64()) {
        parts.push(format!("{n} read back only"));
    }
    let c = &j["counts"];
    let counts: Vec<String> = [
        ("documents", "documents"),
        ("tables", "tables"),
        ("rows", "rows"),
        ("large_objects", "large objects"),
        ("zip_members", "zip members"),
        ("jsonl_objects", "JSON objects"),
        ("tar_members", "tar members"),
    ]
    .iter()
    .filter_map(|(key, label)| c[*key].as_u64().filter(|&n| n > 0).map(|n| format!("{n} {label}")))
    .collect();
    match (parts.is_empty(), counts.is_empty()) {
        (true, _) => "no files".into(),
        (false, true) => parts.join(", "),
        (false, false) => format!("{}; {}", parts.join(", "), counts.join(", ")),
    }
}
