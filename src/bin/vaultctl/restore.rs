//! `vaultctl restore`: a snapshot, a directory or a file back to the local disk.

use crate::ctx::Ctx;
use crate::progress::Bar;
use std::path::PathBuf;
use std::process::ExitCode;
use vault::commands::restore;
use vault::units::human;

/// Restore PERIOD[/PATH] to DEST.
#[derive(clap::Args)]
pub struct Args {
    spec: String,
    dest: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    overwrite: bool,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let bar = Bar::new(ctx);
        let r = restore::restore_with(&v, &self.spec, &self.dest, self.overwrite, &bar)?;
        bar.finish();
        println!(
            "restored {} files, {} directories, {} symlinks, {} hard links, {} special files, {}",
            r.files,
            r.dirs,
            r.symlinks,
            r.links,
            r.special,
            human(r.bytes)
        );
        for m in r.marked {
            eprintln!("warning: {m} is marked incomplete or failed");
        }
        for w in r.warnings {
            eprintln!("warning: {w}");
        }
        Ok(ExitCode::SUCCESS)
    }
}
