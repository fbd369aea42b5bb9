//! `vaultctl run`: note the current period's files, run the command with the vault closed
//! (it writes through the mount or `vaultctl put`), then record the job and mark the files of
//! a failed one. The exit status is the command's, whatever happens in the recording.

use crate::ctx::Ctx;
use anyhow::Context;
use std::ffi::OsString;
use std::process::ExitCode;
use vault::commands::run as job;

/// Run a backup job: `vaultctl run -- CMD ARGS...`. Records its exit status and the files
/// of the current period it wrote in the vault's log; if it fails, marks those files
/// failed. Exits with the command's status.
#[derive(clap::Args)]
pub struct Args {
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    command: Vec<OsString>,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let lock_wait = ctx.wait_or(600);
        let before = {
            let v = ctx.open()?;
            // Whatever a mount wrote before the job is committed first, so it is not counted as
            // the job's.
            let w = job::settle(&v, lock_wait).context("waiting for other writers before the job")?;
            let b = job::before(&v).context("reading the current period before the job")?;
            drop(w);
            b
        };
        let forwarding = job::SignalForwarding::install();
        let exec = job::execute(&self.command);
        if let job::Outcome::NotStarted { message, .. } = &exec.outcome {
            eprintln!("vaultctl run: {message}");
        }
        let code = exec.exit_code();
        let record = || -> anyhow::Result<()> {
            let v = ctx.open()?;
            // Waits for a mount the job wrote into to commit what it wrote.
            let mut w = job::settle(&v, lock_wait).context("waiting for the job's writes to be committed")?;
            let files = job::written_since(&v, &before).context("finding the files the job wrote")?;
            job::log(&v, &exec, &files).context("recording the job in the vault's log")?;
            // The job is on record: from here on a signal ends this process as usual.
            drop(forwarding);
            let names = |fs: &[job::JobFile]| fs.iter().map(|f| format!("{}/{}", f.period, f.path)).collect::<Vec<_>>();
            if exec.ok() {
                eprintln!("vaultctl run: job ok ({} files written)", files.len());
                return Ok(());
            }
            eprintln!("vaultctl run: job FAILED ({}); files written: {}", exec.describe(), files.len());
            if files.is_empty() {
                return Ok(());
            }
            let r = job::mark_failed(&mut w, &files)
                .with_context(|| format!("marking the job's files failed ({})", names(&files).join(", ")))?;
            for c in &r.changed {
                eprintln!("vaultctl run: marked {c} failed");
            }
            for (c, why) in &r.skipped {
                eprintln!("vaultctl run: warning: not marked failed: {c}: {why}");
            }
            Ok(())
        };
        if let Err(e) = record() {
            eprintln!("vaultctl run: error: {e:#}");
            return Ok(ExitCode::from(if code == 0 { 1 } else { code }));
        }
        Ok(ExitCode::from(code))
    }
}
