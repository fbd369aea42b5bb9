//! `status`: what a monitoring check needs: the newest backup and its age (the RPO right now),
//! the current period, the last sync of each remote, the last drill, the last backup job
//! (`vaultctl run`) and whether it failed. The last drill is shown with what it checked: its
//! result, the kinds of files and their counts (see [`DrillRecord::summary`]).

use crate::error::Result;
use crate::format::log::{DrillRecord, JobRecord, Record, SyncRecord};
use crate::repo::Vault;

#[derive(Debug, Default)]
pub struct Status {
    /// When the status was taken (ns since the epoch): the ages are relative to it.
    pub now_unix_ns: i64,
    pub newest_period: Option<String>,
    pub newest_sealed: Option<String>,
    /// When the newest write of any snapshot happened (ns since the epoch).
    pub newest_write_unix_ns: Option<i64>,
    /// When the newest write of the newest sealed snapshot happened (ns since the epoch).
    pub newest_sealed_write_unix_ns: Option<i64>,
    /// Seconds since the newest write of any snapshot.
    pub age_seconds: Option<f64>,
    pub current: Option<Current>,
    /// Every remote with its newest sync, if any.
    pub syncs: Vec<(String, Option<SyncRecord>)>,
    /// The newest drill of a whole snapshot.
    pub last_drill: Option<DrillRecord>,
    /// The newest drill limited to a path (`drill --path`, as the application backup job runs
    /// after each download), when it is newer than `last_drill`.
    pub last_file_drill: Option<DrillRecord>,
    /// The newest backup job (see commands/run.rs).
    pub last_job: Option<JobRecord>,
    /// Log entries that cannot be read (`check` names them): what they recorded is missing
    /// from the figures above.
    pub damaged_log_entries: usize,
}

/// The snapshot of the current period, when something was written in it.
#[derive(Debug, Clone)]
pub struct Current {
    pub period: String,
    pub sealed: bool,
    pub files: u64,
    pub logical_bytes: u64,
}

impl Status {
    /// Whether the last recorded backup job failed.
    pub fn last_job_failed(&self) -> bool {
        self.last_job.as_ref().is_some_and(|j| !j.ok)
    }
}

pub fn status(v: &Vault) -> Result<Status> {
    // A damaged revision is for `check` to report (and is named when the vault is opened);
    // the age of the newest backup is still known from the others.
    let snaps = v.readable_snapshots()?.0;
    let mut s = Status { now_unix_ns: crate::repo::now_unix_ns(), ..Status::default() };
    if let Some(newest) = snaps.iter().max_by_key(|x| x.snap.updated_unix_ns) {
        s.newest_period = Some(newest.snap.period.clone());
        s.newest_write_unix_ns = Some(newest.snap.updated_unix_ns);
        s.age_seconds = Some((s.now_unix_ns - newest.snap.updated_unix_ns).max(0) as f64 / 1e9);
    }
    let sealed = snaps.iter().rev().find(|x| x.snap.sealed);
    s.newest_sealed = sealed.map(|x| x.snap.period.clone());
    s.newest_sealed_write_unix_ns = sealed.map(|x| x.snap.updated_unix_ns);
    let cur = v.clock().current();
    s.current = snaps.iter().find(|x| x.snap.period == cur).map(|x| Current {
        period: cur.clone(),
        sealed: x.snap.sealed,
        files: x.snap.files,
        logical_bytes: x.snap.logical_bytes,
    });
    let (log, damaged) = crate::repo::log::readable_entries(v)?;
    s.damaged_log_entries = damaged.len();
    for r in super::remote::list(v)? {
        let last = log.iter().rev().find_map(|e| match e {
            Record::Sync(x) if x.remote == r.name => Some(x.clone()),
            _ => None,
        });
        s.syncs.push((r.name, last));
    }
    let drills = || {
        log.iter().rev().filter_map(|e| match e {
            Record::Drill(d) => Some(&**d),
            _ => None,
        })
    };
    s.last_drill = drills().find(|d| d.path.is_none()).cloned();
    s.last_file_drill = drills()
        .find(|d| d.path.is_some())
        .filter(|f| s.last_drill.as_ref().is_none_or(|d| f.started_unix >= d.started_unix))
        .cloned();
    s.last_job = log
        .iter()
        .filter_map(|e| match e {
            Record::Job(j) => Some(j),
            _ => None,
        })
        .max_by_key(|j| (j.time_unix, j.ended_unix_ns))
        .cloned();
    Ok(s)
}
