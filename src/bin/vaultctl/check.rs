//! `vaultctl check`: verify the vault; exit 4 on damage.

use crate::ctx::Ctx;
use crate::progress::Bar;
use std::process::ExitCode;
use vault::commands::check;
use vault::units::human;

/// Verify the vault's structure; with --read-data, every stored byte.
#[derive(clap::Args)]
pub struct Args {
    /// Also read every pack whole and authenticate every stored byte.
    #[arg(long)]
    read_data: bool,
    /// Also rebuild the original bytes of every file stored expanded (gzip, zlib, zip, pg_dump
    /// -Fc inputs), every window checked against its hash, as `cat` of it would: proves the
    /// exact compressed bytes come back (about 6 MB/s of compressed file per core).
    #[arg(long)]
    recreate: bool,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let bar = Bar::new(ctx);
        let r = check::check_all(&v, self.read_data, self.recreate, &bar)?;
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
            "checked {} snapshots, {} packs, {} blobs{}{}: {}",
            r.snapshots,
            r.packs,
            r.blobs,
            if self.read_data { format!(", read {}", human(r.bytes_read)) } else { String::new() },
            if self.recreate {
                format!(", recreated {} expanded files ({})", r.recreated_files, human(r.recreated_bytes))
            } else {
                String::new()
            },
            if r.ok() { "no errors".to_string() } else { format!("{} errors", r.errors.len()) }
        );
        Ok(if r.ok() { ExitCode::SUCCESS } else { ExitCode::from(4) })
    }
}
