//! `status`: what a monitoring check needs: the newest backup and its age (the RPO right now),
//! the current period, the last sync of each remote, the last drill, the last backup job
//! (`vaultctl run`) and whether it failed.

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
    pub last_drill: Option<serde_json::Value>,
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
    s.last_drill = log.iter().rev().find(|j| j["type"] == "drill").cloned();
    s.last_job = log
        .iter()
        .filter(|j| j["type"] == "job")
        .max_by_key(|j| (j["time_unix"].as_i64(), j["ended_unix_ns"].as_i64()))
        .cloned();
    Ok(s)
}
