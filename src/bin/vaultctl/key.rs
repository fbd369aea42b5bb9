//! `vaultctl key`: key slots.

use crate::ctx::{read_secret, Ctx};
use clap::Subcommand;
use std::process::ExitCode;
use vault::commands::keys;

/// Manage key slots.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Add a key slot; the new secret comes from VAULT_NEW_PASSPHRASE[_FILE], VAULT_NEW_KEY[_FILE] or a prompt.
    Add {
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List key slots.
    List,
    /// Remove a key slot by (a unique prefix of) its id.
    Remove { id: String },
    /// Replace the secret of the slot you unlock with.
    Passwd,
}

impl Args {
    pub fn writes(&self) -> bool {
        !matches!(self.cmd, KeyCmd::List)
    }

    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let wait = ctx.wait();
        match &self.cmd {
            KeyCmd::Add { label } => {
                let new = read_secret("VAULT_NEW_", true)?;
                let id = keys::add(&v, &new, label, wait)?;
                println!("added key slot {} ({})", &id.to_hex()[..12], new.kind_name());
            }
            KeyCmd::List => {
                for s in keys::list(&v)? {
                    // A passphrase slot's cost, so that slots made with older parameters show.
                    let kdf = if s.m_cost_kib > 0 {
                        format!("  [Argon2id {} MiB, {} passes, {} lanes]", s.m_cost_kib / 1024, s.t_cost, s.p_cost)
                    } else {
                        String::new()
                    };
                    println!(
                        "{}  {:10}  {}  {}{}{}",
                        &s.id.to_hex()[..12],
                        s.kind,
                        chrono::DateTime::from_timestamp(s.created_unix, 0)
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default(),
                        s.label,
                        kdf,
                        if s.current { "  (used now)" } else { "" }
                    );
                }
            }
            KeyCmd::Remove { id } => {
                let id = keys::remove(&v, id, wait)?;
                println!("removed key slot {}", &id.to_hex()[..12]);
            }
            KeyCmd::Passwd => {
                let new = read_secret("VAULT_NEW_", true)?;
                let id = keys::passwd(&v, &new, wait)?;
                println!("replaced the key slot; new slot {}", &id.to_hex()[..12]);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
