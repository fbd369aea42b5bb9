//! `vaultctl policy`: the retention policy stored in the vault.

use crate::ctx::Ctx;
use crate::prune::KeepArgs;
use anyhow::anyhow;
use clap::Subcommand;
use std::process::ExitCode;
use vault::commands::prune;
use vault::format::policy::Policy;

/// The retention policy stored in the vault.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: PolicyCmd,
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Store the retention policy in the vault (`prune` without flags uses it).
    Set {
        #[command(flatten)]
        keep: KeepArgs,
    },
    /// Show the stored retention policy.
    Show,
    /// Remove the stored retention policy.
    Clear,
}

impl Args {
    pub fn writes(&self) -> bool {
        !matches!(self.cmd, PolicyCmd::Show)
    }

    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        match &self.cmd {
            PolicyCmd::Set { keep } => {
                let p = keep.policy().ok_or_else(|| anyhow!("give at least one --keep-* rule"))?;
                prune::save_policy(&v, &p, ctx.wait())?;
                println!("policy: {p}");
            }
            PolicyCmd::Show => match prune::load_policy(&v)? {
                Some(p) => println!("policy: {p}"),
                None => println!("policy: none (prune needs --keep-* flags)"),
            },
            PolicyCmd::Clear => {
                prune::save_policy(&v, &Policy::default(), ctx.wait())?;
                println!("policy removed");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
