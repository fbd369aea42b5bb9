//! `vaultctl mark`: set the state of files of the current period.

use crate::ctx::Ctx;
use crate::show::state_name;
use std::process::ExitCode;
use vault::commands::mark;
use vault::format::tree::FileState;

/// Set the state of files of the current period: PATH... --failed|--complete|--incomplete.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("state").required(true).args(["failed", "complete", "incomplete"])))]
pub struct Args {
    #[arg(required = true)]
    paths: Vec<String>,
    /// Mark failed (a drill of them fails).
    #[arg(long)]
    failed: bool,
    /// Mark complete (clears a failed or incomplete mark).
    #[arg(long)]
    complete: bool,
    /// Mark incomplete.
    #[arg(long)]
    incomplete: bool,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let state = match (self.failed, self.complete) {
            (true, _) => FileState::Failed,
            (_, true) => FileState::Complete,
            _ => FileState::Incomplete,
        };
        let period = v.clock().current();
        let changes: Vec<mark::StateChange> = self
            .paths
            .iter()
            .map(|p| mark::StateChange { period: period.clone(), path: p.clone(), state, if_content: None })
            .collect();
        let r = mark::set_states(&v, &changes, "vaultctl mark", ctx.wait())?;
        for p in &r.sealed_periods {
            eprintln!("sealed period {p}");
        }
        for c in &r.changed {
            println!("marked {c} {}", state_name(state));
        }
        for c in &r.unchanged {
            println!("{c} is already {}", state_name(state));
        }
        for (c, why) in &r.skipped {
            eprintln!("vaultctl: error: {c}: {why}");
        }
        Ok(if r.skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
    }
}
