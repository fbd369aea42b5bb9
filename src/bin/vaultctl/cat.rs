//! `vaultctl cat`: a file's content to standard output.

use crate::ctx::Ctx;
use anyhow::Context;
use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;
use vault::commands::browse;

/// Write a file's content to standard output: PERIOD/PATH.
#[derive(clap::Args)]
pub struct Args {
    spec: String,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        // Straight to the descriptor: the file is written in large vectored writes, which
        // standard output's line buffering would split and copy.
        let fd = std::io::stdout().as_fd().try_clone_to_owned().context("standard output")?;
        let mut out = std::fs::File::from(fd);
        browse::cat(&v, &self.spec, &mut out)?;
        out.flush().context("writing to standard output")?;
        Ok(ExitCode::SUCCESS)
    }
}
