//! `report`: the evidence an auditor asks for, from what the vault itself holds (its
//! snapshots, key slots, settings and log), so that it works on an offsite copy alone: every
//! backup period with its jobs, sizes and dedup; the encryption in use (never a secret); every
//! sync per remote; every drill with its counts, RTO phases and RPO; prunes; and the gaps
//! (a period without a backup, a failed job, a stale remote, a failed drill) first.
//! Rendering (HTML, markdown) belongs to the binary; this returns a typed, serializable report.

use super::{keys, mark, remote};
use crate::error::Result;
use crate::format::config::PeriodKind;
use crate::format::log::{DrillRecord, DrillResult, JobRecord, PruneRecord, Record, SyncRecord};
use crate::repo::Vault;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub schema: u32,
    pub vault: String,
    pub vault_id: String,
    pub generated_unix: i64,
    /// The report covers events from this time on (periods that end after it).
    pub since_unix: i64,
    pub period_kind: &'static str,
    pub time_zone: String,
    pub gaps: Vec<Gap>,
    pub encryption: Encryption,
    pub periods: Vec<PeriodRow>,
    pub remotes: Vec<RemoteRow>,
    pub drills: Vec<DrillRecord>,
    pub prunes: Vec<PruneRecord>,
    /// Every job of the log in the range that belongs to no snapshot listed (its period was
    /// forgotten since, or it wrote nothing).
    pub other_jobs: Vec<JobRecord>,
}

/// Something an auditor must see first.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Gap {
    /// `no_backup`, `failed_job`, `marked_files`, `stale_remote`, `failed_drill`, `no_drill`.
    pub kind: &'static str,
    pub what: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct Encryption {
    pub cipher: &'static str,
    pub chunk_ids: &'static str,
    pub key_derivation: &'static str,
    pub compression: String,
    pub chunk_avg_bytes: u32,
    pub slots: Vec<Slot>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Slot {
    pub id: String,
    pub kind: &'static str,
    pub label: String,
    pub created_unix: i64,
    /// Argon2id parameters (passphrase slots).
    pub kdf: Option<String>,
}

#[derive(Serialize, Debug, Clone)]
pub struct PeriodRow {
    pub period: String,
    pub sealed: bool,
    pub files: u64,
    pub logical_bytes: u64,
    /// Stored bytes of blobs first written in this period: what it added.
    pub new_bytes: u64,
    /// Logical bytes per new stored byte (how much deduplication and compression saved).
    pub dedup_ratio: f64,
    pub failed_files: u64,
    pub incomplete_files: u64,
    pub last_write_unix: i64,
    /// Hours between the previous snapshot's last write and this one's: the data a loss just
    /// before this backup would have cost.
    pub rpo_hours: Option<f64>,
    pub jobs: Vec<JobRecord>,
}

#[derive(Serialize, Debug, Clone)]
pub struct RemoteRow {
    pub name: String,
    pub url: String,
    pub flags: String,
    pub syncs: Vec<SyncRecord>,
    /// Whether the newest complete sync came after the newest backup.
    pub up_to_date: bool,
}

pub struct Options {
    pub since_unix: i64,
}

pub fn report(v: &Vault, o: &Options) -> Result<Report> {
    let now = Utc::now();
    let settings = v.settings();
    let (whole_log, damaged_log) = crate::repo::log::readable_entries(v)?;
    let log: Vec<&Record> = whole_log.iter().filter(|r| r.time_unix() >= o.since_unix).collect();
    let since = DateTime::from_timestamp(o.since_unix, 0).unwrap_or(now);
    let first_period = v.clock().name_at(since);
    let snaps = v.readable_snapshots()?.0;
    let mut memo = HashMap::new();
    let mut periods = Vec::new();
    let mut prev_write: Option<i64> = None;
    let mut jobs_by_period: BTreeMap<String, Vec<JobRecord>> = BTreeMap::new();
    let mut other_jobs = Vec::new();
    let listed: BTreeSet<String> = snaps.iter().map(|s| s.snap.period.clone()).collect();
    for r in &log {
        if let Record::Job(j) = *r {
            // A job belongs to the period its files went into, else to the period it ended in.
            let p = j
                .files
                .first()
                .map(|f| f.period.clone())
                .unwrap_or_else(|| v.clock().name_at(DateTime::from_timestamp(j.ended_unix, 0).unwrap_or(now)));
            if listed.contains(&p) {
                jobs_by_period.entry(p).or_default().push(j.clone());
            } else {
                other_jobs.push(j.clone());
            }
        }
    }
    for s in &snaps {
        let write = s.snap.updated_unix_ns.div_euclid(1_000_000_000);
        let rpo = prev_write.map(|p| (write - p) as f64 / 3600.0);
        prev_write = Some(write);
        if s.snap.period < first_period {
            continue;
        }
        let (failed, incomplete) = mark::marked_counts(v, s.snap.root, &mut memo)?;
        periods.push(PeriodRow {
            period: s.snap.period.clone(),
            sealed: s.snap.sealed,
            files: s.snap.files,
            logical_bytes: s.snap.logical_bytes,
            new_bytes: s.snap.new_bytes,
            dedup_ratio: if s.snap.new_bytes == 0 {
                0.0
            } else {
                s.snap.logical_bytes as f64 / s.snap.new_bytes as f64
            },
            failed_files: failed,
            incomplete_files: incomplete,
            last_write_unix: write,
            rpo_hours: rpo,
            jobs: jobs_by_period.remove(&s.snap.period).unwrap_or_default(),
        });
    }
    let newest_write = snaps.iter().map(|s| s.snap.updated_unix_ns.div_euclid(1_000_000_000)).max();
    let mut remotes = Vec::new();
    for r in remote::list(v)? {
        let syncs: Vec<SyncRecord> = log
            .iter()
            .filter_map(|e| match e {
                Record::Sync(x) if x.remote == r.name => Some(x.clone()),
                _ => None,
            })
            .collect();
        // The newest complete sync, from the whole log (it may be older than the range).
        let last_complete = whole_log
            .iter()
            .filter_map(|e| match e {
                Record::Sync(x) if x.remote == r.name && x.complete => Some(x.time_unix),
                _ => None,
            })
            .max();
        let up_to_date = match (last_complete, newest_write) {
            (Some(t), Some(w)) => t >= w,
            (Some(_), None) => true,
            (None, _) => false,
        };
        remotes.push(RemoteRow { name: r.name.clone(), url: r.url.clone(), flags: r.flags(), syncs, up_to_date });
    }
    let drills: Vec<DrillRecord> = log
        .iter()
        .filter_map(|e| match e {
            Record::Drill(d) => Some((**d).clone()),
            _ => None,
        })
        .collect();
    let prunes: Vec<PruneRecord> = log
        .iter()
        .filter_map(|e| match e {
            Record::Prune(p) => Some(p.clone()),
            _ => None,
        })
        .collect();

    let mut gaps = Vec::new();
    // Periods a prune forgot (at any time) are not gaps: retention removed them.
    let forgotten: BTreeSet<&String> = whole_log
        .iter()
        .filter_map(|e| match e {
            Record::Prune(p) => Some(p.forgotten.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let all_periods = period_names(settings.period, v, since, now);
    let mut run: Vec<&String> = Vec::new();
    let current = v.clock().current();
    let flush = |run: &mut Vec<&String>, gaps: &mut Vec<Gap>| {
        match run.len() {
            0 => {}
            1 => gaps.push(Gap { kind: "no_backup", what: format!("no backup in {}", run[0]) }),
            n => gaps.push(Gap {
                kind: "no_backup",
                what: format!("no backup from {} to {} ({n} periods)", run[0], run[n - 1]),
            }),
        }
        run.clear();
    };
    for p in &all_periods {
        // The current period may still get its backup.
        if listed.contains(p) || forgotten.contains(p) || *p == current {
            flush(&mut run, &mut gaps);
        } else {
            run.push(p);
        }
    }
    flush(&mut run, &mut gaps);
    if !damaged_log.is_empty() {
        gaps.push(Gap {
            kind: "damaged_log",
            what: format!(
                "{} log entries cannot be read (damaged; `vaultctl check` names them): the jobs, syncs, drills or \
                 prunes they recorded are missing from this report",
                damaged_log.len()
            ),
        });
    }
    for p in &periods {
        for j in p.jobs.iter().filter(|j| !j.ok) {
            gaps.push(Gap {
                kind: "failed_job",
                what: format!("{}: backup job failed ({}): {}", p.period, j.outcome(), j.command.join(" ")),
            });
        }
        if p.failed_files + p.incomplete_files > 0 {
            gaps.push(Gap {
                kind: "marked_files",
                what: format!(
                    "{}: {} files marked failed, {} incomplete",
                    p.period, p.failed_files, p.incomplete_files
                ),
            });
        }
    }
    for j in other_jobs.iter().filter(|j| !j.ok) {
        gaps.push(Gap {
            kind: "failed_job",
            what: format!("backup job failed ({}): {}", j.outcome(), j.command.join(" ")),
        });
    }
    for r in &remotes {
        if !r.up_to_date {
            gaps.push(Gap {
                kind: "stale_remote",
                what: format!("remote {} lacks the newest backup (no complete sync since)", r.name),
            });
        }
        for x in r.syncs.iter().filter(|x| !x.complete) {
            gaps.push(Gap {
                kind: "stale_remote",
                what: format!("remote {}: a sync did not complete: {}", r.name, x.error.as_deref().unwrap_or("?")),
            });
        }
    }
    for d in &drills {
        if matches!(d.result(), DrillResult::Failed | DrillResult::NotVerifiable) {
            gaps.push(Gap { kind: "failed_drill", what: format!("drill of {}: {}", d.target(), d.result().label()) });
        }
    }
    if drills.is_empty() {
        gaps.push(Gap { kind: "no_drill", what: "no restore drill in the range".into() });
    }

    let slots = keys::list(v)?
        .into_iter()
        .map(|s| Slot {
            id: s.id.to_hex()[..12].to_string(),
            kind: s.kind,
            label: s.label,
            created_unix: s.created_unix,
            kdf: (s.kind == "passphrase")
                .then(|| format!("Argon2id m={} KiB, t={}, p={}", s.m_cost_kib, s.t_cost, s.p_cost)),
        })
        .collect();
    Ok(Report {
        schema: 1,
        vault: v.store().describe(),
        vault_id: v.vault_id_hex(),
        generated_unix: now.timestamp(),
        since_unix: o.since_unix,
        period_kind: match settings.period {
            PeriodKind::Day => "day",
            PeriodKind::Hour => "hour",
        },
        time_zone: settings.time_zone.clone(),
        gaps,
        encryption: Encryption {
            cipher: "AES-256-GCM-SIV (every blob, tree, snapshot, index and log entry; AAD binds kind and id)",
            chunk_ids: "keyed BLAKE3; FastCDC with a secret seed",
            key_derivation: "random 256-bit master key wrapped in key slots (passphrase: Argon2id; raw 256-bit key)",
            compression: format!("zstd level {}", settings.zstd_level),
            chunk_avg_bytes: settings.chunk_avg,
            slots,
        },
        periods,
        remotes,
        drills,
        prunes,
        other_jobs,
    })
}

/// Every period name from `since` to `now`, in order.
fn period_names(kind: PeriodKind, v: &Vault, since: DateTime<Utc>, now: DateTime<Utc>) -> Vec<String> {
    let step = match kind {
        PeriodKind::Day => Duration::hours(1),
        PeriodKind::Hour => Duration::minutes(30),
    };
    let mut out: Vec<String> = Vec::new();
    let mut t = since;
    while t <= now {
        let n = v.clock().name_at(t);
        if out.last() != Some(&n) {
            out.push(n);
        }
        t += step;
    }
    let last = v.clock().name_at(now);
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// Parses `--since`: `30d`, `12h`, `2w`, or a date `2026-11-01`; returns seconds since the epoch.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<i64> {
    let bad = || crate::error::Error::invalid(format!("--since {s:?}: use 30d, 12h, 2w or a date (2026-11-01)"));
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc().timestamp());
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    Ok(now.timestamp() - n.checked_mul(secs).ok_or_else(bad)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_dates() {
        let now = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        assert_eq!(parse_since("30d", now).unwrap(), 1_000_000_000 - 30 * 86_400);
        assert_eq!(parse_since("12h", now).unwrap(), 1_000_000_000 - 12 * 3600);
        assert_eq!(parse_since("2w", now).unwrap(), 1_000_000_000 - 14 * 86_400);
        assert_eq!(parse_since("2001-09-09", now).unwrap(), 999_993_600);
        for bad in ["", "d", "30", "30m", "x1d", "2026-13-01"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
