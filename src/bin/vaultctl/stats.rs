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
        println!("unique bytes:       {} ({})", s.unique_bytes, human(s.unique_bytes));
        println!("stored bytes:       {} ({})", s.stored_bytes, human(s.stored_bytes));
        println!("dedup ratio:        {:.2}x", s.dedup_ratio());
        println!("compression ratio:  {:.2}x", s.compression_ratio());
        println!("overall ratio:      {:.2}x", s.total_ratio());
        println!("chunks:             {}", s.chunks);
        println!("trees:              {}", s.trees);
        println!("packs:              {}", s.packs);
        Ok(ExitCode::SUCCESS)
    }
}
