//! `vaultctl snapshots`: one line per snapshot.

use crate::ctx::Ctx;
use std::process::ExitCode;
use vault::commands::mark;
use vault::units::human;

/// One line per snapshot: period, state, files, logical and new bytes, files marked failed
/// or incomplete.
#[derive(clap::Args)]
pub struct Args {}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let mut memo = std::collections::HashMap::new();
        for s in v.snapshots()? {
            let (failed, incomplete) = mark::marked_counts(&v, s.snap.root, &mut memo)?;
            let marks: Vec<String> = [(failed, "failed"), (incomplete, "incomplete")]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            println!(
                "{}  {:6}  {:>6} files  {:>10} logical  {:>10} new{}",
                s.snap.period,
                if s.snap.sealed { "sealed" } else { "open" },
                s.snap.files,
                human(s.snap.logical_bytes),
                human(s.snap.new_bytes),
                if marks.is_empty() { String::new() } else { format!("  [{}]", marks.join(", ")) }
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
