//! `vaultctl remote`: the offsite remotes registered in the vault.

use crate::ctx::Ctx;
use anyhow::bail;
use clap::Subcommand;
use std::process::ExitCode;
use vault::commands::remote;
use vault::format::remotes::{ObjectLock, Remote};
use vault::store::LockMode;

/// Manage offsite remotes.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: RemoteCmd,
}

#[derive(Subcommand)]
enum RemoteCmd {
    /// Add a remote: file:///path (a mounted disk or NAS), s3://bucket/prefix (credentials and
    /// endpoint from the AWS_* variables) or rclone:REMOTE:path (any rclone remote).
    Add {
        name: String,
        url: String,
        /// Never delete anything on this remote.
        #[arg(long)]
        keep_all: bool,
        /// Only ever add objects there: no delete, no replacement (works with credentials
        /// that cannot delete).
        #[arg(long)]
        append_only: bool,
        /// S3 with Object Lock: retain every object sync writes for DAYS, extended while the
        /// vault still uses it (the bucket must have Object Lock enabled).
        #[arg(long, value_name = "DAYS")]
        object_lock: Option<u32>,
        /// Retention mode: governance (an administrator can lift it) or compliance (nobody can).
        #[arg(long, value_name = "MODE", requires = "object_lock", default_value = "governance")]
        object_lock_mode: String,
    },
    /// List remotes.
    List,
    /// Remove a remote (nothing on it is deleted).
    Remove { name: String },
}

impl Args {
    pub fn writes(&self) -> bool {
        !matches!(self.cmd, RemoteCmd::List)
    }

    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        match &self.cmd {
            RemoteCmd::Add { name, url, keep_all, append_only, object_lock, object_lock_mode } => {
                let mode = match object_lock_mode.as_str() {
                    "governance" => LockMode::Governance,
                    "compliance" => LockMode::Compliance,
                    m => bail!("--object-lock-mode {m}: use governance or compliance"),
                };
                let mut r = Remote::new(name, url);
                r.keep_all = *keep_all;
                r.append_only = *append_only;
                r.object_lock = object_lock.map(|days| ObjectLock { days, mode });
                let r = remote::add(&v, r, ctx.wait())?;
                let flags = r.flags();
                println!(
                    "added remote {} -> {}{}",
                    r.name,
                    r.url,
                    if flags.is_empty() { flags } else { format!(" ({flags})") }
                );
            }
            RemoteCmd::List => {
                for r in remote::list(&v)? {
                    let flags = r.flags();
                    println!("{}  {}{}", r.name, r.url, if flags.is_empty() { flags } else { format!("  {flags}") });
                }
            }
            RemoteCmd::Remove { name } => {
                remote::remove(&v, name, ctx.wait())?;
                println!("removed remote {name}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
