//! `vaultctl completions SHELL`: the shell completion script, generated from the clap
//! definitions (install step: docs/OPERATIONS.md).

use crate::ctx::Ctx;
use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;
use std::process::ExitCode;

/// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell).
#[derive(clap::Args)]
pub struct Args {
    shell: Shell,
}

impl Args {
    pub fn run(&self, _ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let mut cmd = crate::Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut cmd, "vaultctl", &mut script);
        std::io::stdout().write_all(&script).context("writing to standard output")?;
        Ok(ExitCode::SUCCESS)
    }
}
