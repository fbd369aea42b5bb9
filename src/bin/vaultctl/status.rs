//! `vaultctl status`: what monitoring checks; exit 6 when the newest backup is too old, 7
//! when the last backup job failed (with `--json` and `--textfile` too). The text for people
//! is here, the JSON document in status/json.rs, the Prometheus textfile in status/textfile.rs.

mod json;
mod textfile;

use crate::ctx::Ctx;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use vault::commands::status::Status;
use vault::commands::{run as job, stats, status};
use vault::units::human;

/// Newest backup and its age, current period, last sync per remote, last drill, last job.
/// Exits 6 when the newest backup is older than --max-age-hours, 7 when the last backup
/// job (`vaultctl run`) failed (for monitoring).
#[derive(clap::Args)]
pub struct Args {
    /// Oldest acceptable age of the newest backup, in hours.
    #[arg(long, default_value_t = 26.0)]
    max_age_hours: f64,
    /// Print one JSON object instead of text (schema: docs/OPERATIONS.md).
    #[arg(long)]
    json: bool,
    /// Also write the status as a Prometheus node_exporter textfile (PATH ending in .prom,
    /// written under a temporary name and renamed; metrics: docs/OPERATIONS.md).
    #[arg(long, value_name = "PATH")]
    textfile: Option<PathBuf>,
}

/// Why `status` alerts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// The last backup job failed (exit 7).
    JobFailed,
    /// No backup newer than --max-age-hours (exit 6).
    Stale,
}

impl Alert {
    fn of(s: &Status, max_age_hours: f64) -> Option<Alert> {
        if s.last_job_failed() {
            return Some(Alert::JobFailed);
        }
        let stale = s.age_seconds.map(|a| a > max_age_hours * 3600.0).unwrap_or(true);
        stale.then_some(Alert::Stale)
    }

    fn name(self) -> &'static str {
        match self {
            Alert::JobFailed => "last_job_failed",
            Alert::Stale => "stale",
        }
    }

    fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Alert::JobFailed => 7,
            Alert::Stale => 6,
        })
    }
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        if let Some(p) = &self.textfile {
            // The textfile collector reads `*.prom` only: any other name is never scraped.
            if p.extension().is_none_or(|e| e != "prom") {
                anyhow::bail!(
                    "--textfile {}: node_exporter's textfile collector reads only files ending in .prom",
                    p.display()
                );
            }
        }
        let v = ctx.open()?;
        let s = status::status(&v)?;
        let alert = Alert::of(&s, self.max_age_hours);
        let vault = v.store().describe();
        if let Some(path) = &self.textfile {
            let st = stats::stats(&v)?;
            let text = textfile::render(&vault, &s, &st);
            crate::show::write_atomically(path, text.as_bytes())
                .with_context(|| format!("writing the textfile {}", path.display()))?;
        }
        if self.json {
            println!("{}", json::render(&vault, &v.clock().current(), &s, self.max_age_hours, alert));
        } else {
            print_text(&vault, &v.clock().current(), &s, self.max_age_hours, alert);
        }
        Ok(alert.map(Alert::exit_code).unwrap_or(ExitCode::SUCCESS))
    }
}

fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "?".into())
}

fn print_text(vault: &str, current_period: &str, s: &Status, max_age_hours: f64, alert: Option<Alert>) {
    println!("vault:           {vault}");
    match (&s.newest_period, s.age_seconds) {
        (Some(p), Some(a)) => println!("newest backup:   {p}, last write {:.1} h ago", a / 3600.0),
        _ => println!("newest backup:   none"),
    }
    println!("latest sealed:   {}", s.newest_sealed.as_deref().unwrap_or("none"));
    match &s.current {
        Some(c) => println!(
            "current period:  {} ({}, {} files, {})",
            c.period,
            if c.sealed { "sealed" } else { "open" },
            c.files,
            human(c.logical_bytes)
        ),
        None => println!("current period:  {current_period} (nothing written yet)"),
    }
    for (name, last) in &s.syncs {
        match last {
            Some(j) => {
                println!("last sync:       {name} at {} ({} objects uploaded)", when(j.time_unix), j.uploaded)
            }
            None => println!("last sync:       {name} never"),
        }
    }
    for (label, d) in [("last drill:     ", &s.last_drill), ("last file drill:", &s.last_file_drill)] {
        match d {
            Some(d) => {
                println!(
                    "{label} {} at {}: {} (RTO {:.1} s)",
                    d.target(),
                    when(d.started_unix),
                    d.result().label(),
                    d.rto_seconds
                );
                let what = d.summary();
                if !what.is_empty() {
                    println!("                 checked: {what}");
                }
            }
            None if label.starts_with("last drill") => println!("last drill:      never"),
            None => {}
        }
    }
    match &s.last_job {
        Some(j) => {
            println!(
                "last job:        {} at {}: {} ({:.0} s)",
                if j.ok { "OK" } else { "FAILED" },
                when(j.started_unix),
                j.outcome(),
                j.seconds
            );
            println!("  command:       {}", job::shell_words(&j.command));
            if let Some(e) = &j.error {
                println!("  error:         {e}");
            }
            for f in j.files.iter().take(10) {
                println!("  file:          {}/{} ({})", f.period, f.path, human(f.size));
            }
            if j.files.len() > 10 {
                println!("  ... and {} more files", j.files.len() - 10);
            }
            if j.files.is_empty() {
                println!("  files:         none written");
            }
        }
        None => println!("last job:        none recorded (`vaultctl run`)"),
    }
    if s.damaged_log_entries > 0 {
        println!(
            "WARNING: {} log entries cannot be read (damaged; `vaultctl check` names them): what they recorded \
             is missing above",
            s.damaged_log_entries
        );
    }
    match alert {
        Some(Alert::JobFailed) => println!("ALERT: the last backup job failed"),
        Some(Alert::Stale) => println!("ALERT: no backup in the last {max_age_hours} h"),
        None => {}
    }
}
