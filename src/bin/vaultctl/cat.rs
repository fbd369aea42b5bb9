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
    /// Write the decompressed content of a gzip file (mongodump --gzip, gzip -c), checked
    /// against each member's CRC-32: what `vaultctl cat ... | gzip -dc` gives. A gzip file
    /// stored expanded is read as its stored content, without recreating or inflating it.
    #[arg(long)]
    gunzip: bool,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        // Straight to the descriptor: the file is written in large vectored writes, which
        // standard output's line buffering would split and copy.
        let fd = std::io::stdout().as_fd().try_clone_to_owned().context("standard output")?;
        let mut out = std::fs::File::from(fd);
        if self.gunzip {
            browse::cat_gunzip(&v, &self.spec, &mut out)?;
        } else {
            browse::cat(&v, &self.spec, &mut out)?;
        }
        out.flush().context("writing to standard output")?;
        Ok(ExitCode::SUCCESS)
    }
}
