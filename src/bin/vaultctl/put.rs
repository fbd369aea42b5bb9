//! `vaultctl put`: store a file or standard input in the current period.

use crate::ctx::Ctx;
use crate::progress::{Bar, Reading};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use vault::commands::put;
use vault::progress::Progress;
use vault::units::human;

/// Store FILE (or standard input) as NAME in the current period.
#[derive(clap::Args)]
pub struct Args {
    name: String,
    file: Option<PathBuf>,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let o = put::PutOptions { path: self.name.clone(), mode: 0o644, mtime_ns: None, lock_wait: ctx.wait() };
        let bar = Bar::new(ctx);
        let report = match &self.file {
            Some(f) => {
                let fh = std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
                bar.phase(&format!("storing {}", self.name), fh.metadata().ok().map(|m| m.len()));
                put::put(&v, &o, &mut Reading { inner: fh, bar: &bar })?
            }
            None => {
                bar.phase(&format!("storing {}", self.name), None);
                put::put(&v, &o, &mut Reading { inner: std::io::stdin(), bar: &bar })?
            }
        };
        bar.finish();
        for p in &report.sealed_periods {
            eprintln!("sealed period {p}");
        }
        println!(
            "stored {}/{}: {} in {} chunks ({} new, {} stored)",
            report.period,
            report.path,
            human(report.size),
            report.chunks,
            report.new_chunks,
            human(report.new_bytes)
        );
        let x = &report.expanded;
        if x.rebuilt() {
            println!(
                "expanded {} compressed stream(s): {} of compressed bytes stored as {} of content and a {} recipe",
                x.streams,
                human(x.deflated),
                human(x.inflated),
                human(x.recipe)
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
