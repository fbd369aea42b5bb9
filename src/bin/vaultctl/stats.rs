//! `vaultctl stats`: sizes and ratios.

use crate::ctx::Ctx;
use std::process::ExitCode;
use vault::commands::stats;
use vault::units::human;

/// Logical and stored sizes, deduplication and compression ratios.
#[derive(clap::Args)]
pub struct Args {}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let s = stats::stats(&v)?;
        println!("snapshots:          {} ({} sealed)", s.snapshots, s.sealed);
        println!("files:              {}", s.files);
        println!("logical bytes:      {} ({})", s.logical_bytes, human(s.logical_bytes));
        println!("chunked bytes:      {} ({})", s.chunked_bytes(), human(s.chunked_bytes()));
        println!("unique bytes:       {} ({})", s.unique_bytes, human(s.unique_bytes));
        println!("stored bytes:       {} ({})", s.stored_bytes, human(s.stored_bytes));
        println!("dedup ratio:        {:.2}x", s.dedup_ratio());
        println!("compression ratio:  {:.2}x", s.compression_ratio());
        println!("overall ratio:      {:.2}x", s.total_ratio());
        println!("chunks:             {}", s.chunks);
        println!("trees:              {}", s.trees);
        println!("packs:              {}", s.packs);
        let x = &s.expanded;
        if x.files > 0 {
            println!(
                "expanded files:     {} ({} compressed, stored as {} expanded + {} recipes)",
                x.files,
                human(x.original),
                human(x.expanded),
                human(x.recipe)
            );
            let saved = s.expansion_saved();
            println!(
                "expansion saved:    {}{} ({} distinct files: {} as written, {} stored)",
                if saved < 0 { "-" } else { "" },
                human(saved.unsigned_abs()),
                s.expanded_distinct,
                human(s.expanded_distinct_original),
                human(s.expanded_distinct_stored)
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
