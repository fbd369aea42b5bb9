//! `vaultctl man DIR`: the man pages (vaultctl.1 and one per command, vaultctl-sync.1, ...),
//! generated from the clap definitions (install step: docs/OPERATIONS.md).

use crate::ctx::Ctx;
use anyhow::Context;
use clap::CommandFactory;
use std::path::PathBuf;
use std::process::ExitCode;

/// Write the man pages into DIR (e.g. /usr/local/share/man/man1).
#[derive(clap::Args)]
pub struct Args {
    dir: PathBuf,
}

impl Args {
    pub fn run(&self, _ctx: &Ctx) -> anyhow::Result<ExitCode> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        clap_mangen::generate_to(crate::Cli::command(), &self.dir)
            .with_context(|| format!("writing the man pages into {}", self.dir.display()))?;
        println!("wrote the man pages into {}", self.dir.display());
        Ok(ExitCode::SUCCESS)
    }
}
