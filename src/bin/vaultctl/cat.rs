//! `vaultctl cat`: a file's content to standard output.

use crate::ctx::Ctx;
use anyhow::Context;
use std::io::Write;
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
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        browse::cat(&v, &self.spec, &mut out)?;
        out.flush().context("writing to standard output")?;
        Ok(ExitCode::SUCCESS)
    }
}
