//! `status --textfile PATH`: the status as a Prometheus node_exporter textfile (text
//! exposition format 0.0.4). Timestamps are `*_timestamp_seconds` gauges, 0 for "never", so
//! that `time() - metric` alerts on a backup, sync or drill that never happened too. The
//! file is written under a temporary name in the same directory (not ending in `.prom`, so
//! the collector never reads it half-written), synced, and renamed over PATH.

use std::fmt::Write as _;
use vault::commands::stats::Stats;
use vault::commands::status::Status;

/// Metric families in the order they are written: name, help.
const HELP: &[(&str, &str)] = &[
    ("vault_status_timestamp_seconds", "When vaultctl status wrote this file."),
    ("vault_last_backup_timestamp_seconds", "Newest write into any snapshot (0: none)."),
    ("vault_latest_sealed_timestamp_seconds", "Newest write of the newest sealed snapshot (0: none)."),
    ("vault_latest_sealed_info", "The period of the newest sealed snapshot."),
    ("vault_rpo_seconds", "Age of the newest sealed snapshot's newest write: what a restore of latest loses now."),
    ("vault_snapshots", "Snapshots in the vault."),
    ("vault_sealed_snapshots", "Sealed snapshots in the vault."),
    ("vault_logical_bytes", "Sum of the sizes of every file of every snapshot."),
    ("vault_stored_bytes", "Bytes of every object of the vault as stored (compressed, encrypted)."),
    ("vault_last_job_timestamp_seconds", "End of the last backup job run by vaultctl run (0: none)."),
    ("vault_last_job_success", "1 when the last backup job exited 0, else 0."),
    ("vault_last_job_exit_code", "Exit status of the last backup job (128 + signal when killed)."),
    ("vault_last_job_duration_seconds", "Duration of the last backup job."),
    ("vault_last_job_files", "Files the last backup job wrote."),
    ("vault_last_sync_timestamp_seconds", "Last sync to the remote (0: never)."),
    ("vault_last_sync_complete", "1 when the last sync to the remote wrote its manifest, else 0."),
    ("vault_last_sync_uploaded_bytes", "Bytes the last sync to the remote uploaded."),
    ("vault_last_drill_timestamp_seconds", "Start of the last restore drill of a whole snapshot (0: never)."),
    ("vault_last_drill_success", "1 when the last drill passed (exit 0: result ok or read_back_only), else 0."),
    ("vault_last_drill_result", "The last drill's result: ok, failed, not_verifiable or read_back_only."),
    ("vault_last_drill_rto_seconds", "Measured restore time of the last drill."),
    ("vault_last_drill_rpo_seconds", "Age of the drilled snapshot when the last drill ran."),
];

struct Out {
    vault: String,
    samples: Vec<(&'static str, String, f64)>,
}

impl Out {
    fn add(&mut self, name: &'static str, extra: &[(&str, &str)], value: f64) {
        let mut labels = format!("vault=\"{}\"", escape(&self.vault));
        for (k, v) in extra {
            let _ = write!(labels, ",{k}=\"{}\"", escape(v));
        }
        self.samples.push((name, labels, value));
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn secs(ns: Option<i64>) -> f64 {
    ns.map(|n| n as f64 / 1e9).unwrap_or(0.0)
}

pub fn render(vault: &str, s: &Status, st: &Stats) -> String {
    let now = s.now_unix_ns as f64 / 1e9;
    let mut o = Out { vault: vault.to_string(), samples: Vec::new() };
    o.add("vault_status_timestamp_seconds", &[], now.floor());
    o.add("vault_last_backup_timestamp_seconds", &[], secs(s.newest_write_unix_ns));
    o.add("vault_latest_sealed_timestamp_seconds", &[], secs(s.newest_sealed_write_unix_ns));
    if let Some(p) = &s.newest_sealed {
        o.add("vault_latest_sealed_info", &[("period", p)], 1.0);
        o.add("vault_rpo_seconds", &[], (now - secs(s.newest_sealed_write_unix_ns)).max(0.0));
    }
    o.add("vault_snapshots", &[], st.snapshots as f64);
    o.add("vault_sealed_snapshots", &[], st.sealed as f64);
    o.add("vault_logical_bytes", &[], st.logical_bytes as f64);
    o.add("vault_stored_bytes", &[], st.stored_bytes as f64);
    match &s.last_job {
        Some(j) => {
            o.add("vault_last_job_timestamp_seconds", &[], j.ended_unix as f64);
            o.add("vault_last_job_success", &[], if j.ok { 1.0 } else { 0.0 });
            o.add("vault_last_job_exit_code", &[], j.exit_status() as f64);
            o.add("vault_last_job_duration_seconds", &[], j.seconds);
            o.add("vault_last_job_files", &[], j.files.len() as f64);
        }
        None => o.add("vault_last_job_timestamp_seconds", &[], 0.0),
    }
    for (name, last) in &s.syncs {
        let r = [("remote", name.as_str())];
        match last {
            Some(x) => {
                o.add("vault_last_sync_timestamp_seconds", &r, x.time_unix as f64);
                o.add("vault_last_sync_complete", &r, if x.complete { 1.0 } else { 0.0 });
                o.add("vault_last_sync_uploaded_bytes", &r, x.uploaded_bytes as f64);
            }
            None => o.add("vault_last_sync_timestamp_seconds", &r, 0.0),
        }
    }
    match &s.last_drill {
        Some(d) => {
            o.add("vault_last_drill_timestamp_seconds", &[], d.started_unix as f64);
            o.add("vault_last_drill_success", &[], if d.ok { 1.0 } else { 0.0 });
            o.add("vault_last_drill_result", &[("result", d.result().name())], 1.0);
            o.add("vault_last_drill_rto_seconds", &[], d.rto_seconds);
            o.add("vault_last_drill_rpo_seconds", &[], d.rpo_seconds);
        }
        None => o.add("vault_last_drill_timestamp_seconds", &[], 0.0),
    }
    let mut text = String::new();
    for (name, help) in HELP {
        let mine: Vec<&(&str, String, f64)> = o.samples.iter().filter(|(n, _, _)| n == name).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        for (_, labels, value) in mine {
            let _ = writeln!(text, "{name}{{{labels}}} {value}");
        }
    }
    text
}
