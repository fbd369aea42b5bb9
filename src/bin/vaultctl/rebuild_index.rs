//! `vaultctl rebuild-index`: the index files again from the pack headers.

use crate::ctx::Ctx;
use std::process::ExitCode;
use vault::commands::rebuild_index;

/// Rebuild the index files from the pack headers (after index files were lost).
#[derive(clap::Args)]
pub struct Args {}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let r = rebuild_index::rebuild_index(&v, ctx.wait())?;
        for u in &r.unreadable {
            println!("error: {u}");
        }
        println!("indexed {} blobs from {} packs; replaced {} index files", r.blobs, r.packs, r.removed_index_files);
        Ok(if r.unreadable.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(4) })
    }
}
