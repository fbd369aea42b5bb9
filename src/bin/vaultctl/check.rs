//! `vaultctl check`: verify the vault; exit 4 on damage.

use crate::ctx::Ctx;
use crate::progress::Bar;
use std::process::ExitCode;
use vault::commands::check;
use vault::units::human;

/// Verify the vault's structure; with --read-data, every stored byte.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    read_data: bool,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let bar = Bar::new(ctx);
        let r = check::check_with(&v, self.read_data, &bar)?;
        bar.finish();
        for w in &r.warnings {
            println!("warning: {w}");
        }
        for e in &r.errors {
            println!("error: {e}");
        }
        if !r.affected.is_empty() {
            println!("damaged or unreadable files:");
            for a in &r.affected {
                println!("  {a}");
            }
        }
        println!(
            "checked {} snapshots, {} packs, {} blobs{}: {}",
            r.snapshots,
            r.packs,
            r.blobs,
            if self.read_data { format!(", read {}", human(r.bytes_read)) } else { String::new() },
            if r.ok() { "no errors".to_string() } else { format!("{} errors", r.errors.len()) }
        );
        Ok(if r.ok() { ExitCode::SUCCESS } else { ExitCode::from(4) })
    }
}
