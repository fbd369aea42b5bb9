//! `vaultctl seal`: seal the current period now.

use crate::ctx::Ctx;
use std::process::ExitCode;
use vault::commands::put;
use vault::units::human;

/// Seal the current period now (it becomes immutable).
#[derive(clap::Args)]
pub struct Args {}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let sealed = put::seal(&v, ctx.wait())?;
        if sealed.is_empty() {
            println!("nothing to seal: the current period {} has no open snapshot", v.clock().current());
        }
        for s in sealed {
            println!("sealed {} ({} files, {})", s.snap.period, s.snap.files, human(s.snap.logical_bytes));
        }
        Ok(ExitCode::SUCCESS)
    }
}
