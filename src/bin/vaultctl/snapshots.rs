//! `vaultctl snapshots`: one line per snapshot.

use crate::ctx::Ctx;
use serde_json::json;
use std::process::ExitCode;
use vault::commands::{mark, stats};
use vault::units::human;

/// One line per snapshot: period, state, files, logical and new bytes, files marked failed
/// or incomplete.
#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object instead of text (schema: docs/OPERATIONS.md).
    #[arg(long)]
    json: bool,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let mut memo = std::collections::HashMap::new();
        let mut expanded_memo = std::collections::HashMap::new();
        let mut list = Vec::new();
        for s in v.snapshots()? {
            let (failed, incomplete) = mark::marked_counts(&v, s.snap.root, &mut memo)?;
            let x = stats::expanded_files(&v, s.snap.root, &mut expanded_memo)?;
            if self.json {
                list.push(json!({
                    "period": s.snap.period,
                    "sealed": s.snap.sealed,
                    "files": s.snap.files,
                    "logical_bytes": s.snap.logical_bytes,
                    "new_bytes": s.snap.new_bytes,
                    "failed": failed,
                    "incomplete": incomplete,
                    "expanded_files": x.files,
                    "expanded_original_bytes": x.original,
                    "expanded_bytes": x.expanded,
                    "recipe_bytes": x.recipe,
                    "created_unix": s.snap.created_unix,
                    "last_write_unix": s.snap.updated_unix_ns.div_euclid(1_000_000_000),
                    "host": s.snap.host,
                }));
                continue;
            }
            let marks: Vec<String> = [(failed, "failed"), (incomplete, "incomplete")]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            let expanded = match x.files {
                0 => String::new(),
                n => format!("  ({n} expanded: {} compressed as {})", human(x.original), human(x.expanded + x.recipe)),
            };
            println!(
                "{}  {:6}  {:>6} files  {:>10} logical  {:>10} new{}{expanded}",
                s.snap.period,
                if s.snap.sealed { "sealed" } else { "open" },
                s.snap.files,
                human(s.snap.logical_bytes),
                human(s.snap.new_bytes),
                if marks.is_empty() { String::new() } else { format!("  [{}]", marks.join(", ")) }
            );
        }
        if self.json {
            println!("{}", json!({"schema": 1, "vault": v.store().describe(), "snapshots": list}));
        }
        Ok(ExitCode::SUCCESS)
    }
}
