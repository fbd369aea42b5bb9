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
        let quiet = QuietStdout::new();
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
        drop(quiet);
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

/// Standard output sent to /dev/null while a put runs: the deflate analysis (preflate-rs)
/// prints debugging lines on stdout when it gives up on a stream, and stdout of `put` is its
/// report alone. Nothing else writes to stdout meanwhile (the progress bar draws on stderr).
struct QuietStdout(Option<libc::c_int>);

impl QuietStdout {
    fn new() -> Self {
        use std::os::fd::AsRawFd;
        let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else { return QuietStdout(None) };
        // SAFETY: dup and dup2 on the process's own descriptor 1 and a descriptor it owns.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 || unsafe { libc::dup2(null.as_raw_fd(), 1) } < 0 {
            if saved >= 0 {
                // SAFETY: closes the copy made above.
                unsafe { libc::close(saved) };
            }
            return QuietStdout(None);
        }
        QuietStdout(Some(saved))
    }
}

impl Drop for QuietStdout {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if let Some(saved) = self.0.take() {
            // SAFETY: puts the saved descriptor back as 1 and closes the copy.
            unsafe {
                libc::dup2(saved, 1);
                libc::close(saved);
            }
        }
    }
}
