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
        let (snaps, damaged) = v.readable_snapshots()?;
        let mut unreadable = 0;
        for s in snaps {
            // A tree that cannot be read costs its own line's details, not the listing.
            let details = mark::marked_counts(&v, s.snap.root, &mut memo)
                .and_then(|m| Ok((m, stats::expanded_files(&v, s.snap.root, &mut expanded_memo)?)));
            let ((failed, incomplete), x) = match details {
                Ok(d) => d,
                Err(e) => {
                    unreadable += 1;
                    eprintln!("vaultctl: error: {}: {e}", s.snap.period);
                    Default::default()
                }
            };
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
            let bad: Vec<_> =
                damaged.iter().map(|(id, e)| json!({"revision": id.to_hex(), "error": e.to_string()})).collect();
            println!("{}", json!({"schema": 1, "vault": v.store().describe(), "snapshots": list, "damaged": bad}));
        }
        // Named on standard error when the vault is opened (crate::ctx); the exit says so too.
        Ok(if damaged.is_empty() && unreadable == 0 { ExitCode::SUCCESS } else { ExitCode::from(4) })
    }
}
