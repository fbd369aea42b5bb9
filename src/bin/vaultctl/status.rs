//! `vaultctl status`: what monitoring checks; exit 6 when the newest backup is too old, 7
//! when the last backup job failed.

use crate::ctx::Ctx;
use std::process::ExitCode;
use vault::commands::{run as job, status};
use vault::units::human;

/// Newest backup and its age, current period, last sync per remote, last drill, last job.
/// Exits 6 when the newest backup is older than --max-age-hours, 7 when the last backup
/// job (`vaultctl run`) failed (for monitoring).
#[derive(clap::Args)]
pub struct Args {
    /// Oldest acceptable age of the newest backup, in hours.
    #[arg(long, default_value_t = 26.0)]
    max_age_hours: f64,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let max_age_hours = self.max_age_hours;
        let v = ctx.open()?;
        let s = status::status(&v)?;
        let when = |t: Option<i64>| {
            t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "?".into())
        };
        println!("vault:           {}", v.store().describe());
        match (&s.newest_period, s.age_seconds) {
            (Some(p), Some(a)) => println!("newest backup:   {p}, last write {:.1} h ago", a / 3600.0),
            _ => println!("newest backup:   none"),
        }
        println!("latest sealed:   {}", s.newest_sealed.as_deref().unwrap_or("none"));
        match &s.current {
            Some((p, sealed, files, bytes)) => println!(
                "current period:  {p} ({}, {files} files, {})",
                if *sealed { "sealed" } else { "open" },
                human(*bytes)
            ),
            None => println!("current period:  {} (nothing written yet)", v.clock().current()),
        }
        for (name, last) in &s.syncs {
            match last {
                Some(j) => println!(
                    "last sync:       {name} at {} ({} objects uploaded)",
                    when(j["time_unix"].as_i64()),
                    j["uploaded"].as_u64().unwrap_or(0)
                ),
                None => println!("last sync:       {name} never"),
            }
        }
        for (label, d) in [("last drill:     ", &s.last_drill), ("last file drill:", &s.last_file_drill)] {
            match d {
                Some(j) => {
                    println!(
                        "{label} {} at {}: {} (RTO {:.1} s)",
                        status::drill_target(j),
                        when(j["started_unix"].as_i64()),
                        status::drill_result(j),
                        j["rto_seconds"].as_f64().unwrap_or(0.0)
                    );
                    let what = status::drill_summary(j);
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
                let cmd: Vec<String> = j["command"]
                    .as_array()
                    .map(|a| a.iter().map(|x| x.as_str().unwrap_or("?").to_string()).collect())
                    .unwrap_or_default();
                let outcome = match (j["exit_code"].as_i64(), j["signal"].as_i64()) {
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(c), _) => format!("exit {c}"),
                    _ => "?".into(),
                };
                println!(
                    "last job:        {} at {}: {outcome}{} ({:.0} s)",
                    if j["ok"] == true { "OK" } else { "FAILED" },
                    when(j["started_unix"].as_i64()),
                    match j["interrupted_by"].as_i64() {
                        Some(sig) => format!(", interrupted by signal {sig}"),
                        None => String::new(),
                    },
                    j["seconds"].as_f64().unwrap_or(0.0)
                );
                println!("  command:       {}", job::shell_words(&cmd));
                if let Some(e) = j["error"].as_str() {
                    println!("  error:         {e}");
                }
                let files = j["files"].as_array().cloned().unwrap_or_default();
                for f in files.iter().take(10) {
                    println!(
                        "  file:          {}/{} ({})",
                        f["period"].as_str().unwrap_or("?"),
                        f["path"].as_str().unwrap_or("?"),
                        human(f["size"].as_u64().unwrap_or(0))
                    );
                }
                if files.len() > 10 {
                    println!("  ... and {} more files", files.len() - 10);
                }
                if files.is_empty() {
                    println!("  files:         none written");
                }
            }
            None => println!("last job:        none recorded (`vaultctl run`)"),
        }
        if s.last_job_failed() {
            println!("ALERT: the last backup job failed");
            return Ok(ExitCode::from(7));
        }
        let stale = s.age_seconds.map(|a| a > max_age_hours * 3600.0).unwrap_or(true);
        if stale {
            println!("ALERT: no backup in the last {max_age_hours} h");
            return Ok(ExitCode::from(6));
        }
        Ok(ExitCode::SUCCESS)
    }
}
