//! `vaultctl report`: the evidence document (gaps first, encryption, backups, syncs, drills,
//! prunes) from the vault's own records, as HTML (with inline SVG charts, nothing loaded from
//! elsewhere), markdown or JSON. The document is built by the engine (commands/report.rs);
//! report/html.rs and report/md.rs only render it.

mod html;
mod md;

use crate::ctx::Ctx;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use vault::commands::report;

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Md,
    Json,
}

/// Evidence report for auditors: every backup period with its jobs and sizes, the encryption
/// in use, every sync per remote, every drill with its counts, RTO and RPO, gaps listed first.
/// Built from the vault's own log: works on an offsite copy alone.
#[derive(clap::Args)]
pub struct Args {
    /// How far back: 30d, 12h, 2w or a date (2026-11-01).
    #[arg(long, default_value = "30d")]
    since: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "html")]
    format: Format,
    /// Write the report to FILE (written under a temporary name, then renamed) instead of
    /// standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let since = report::parse_since(&self.since, chrono::Utc::now())?;
        let v = ctx.open()?;
        let r = report::report(&v, &report::Options { since_unix: since })?;
        let text = match self.format {
            Format::Html => html::render(&r),
            Format::Md => md::render(&r),
            Format::Json => serde_json::to_string_pretty(&r).context("encoding the report")? + "\n",
        };
        match &self.output {
            Some(path) => {
                crate::show::write_atomically(path, text.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {} ({} gaps)", path.display(), r.gaps.len());
            }
            None => {
                use std::io::Write;
                std::io::stdout().write_all(text.as_bytes()).context("writing to standard output")?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A time, UTC, to the minute.
pub fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}
