//! The progress bar of long commands: drawn on standard error, only when it is a terminal and
//! `--quiet` is not given (never into a pipe, a cron mail or `--json` output on stdout). Bytes
//! done, rate and ETA when the total is known; the phase and the current file or pack.

use crate::ctx::Ctx;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub struct Bar {
    pb: ProgressBar,
}

impl Bar {
    pub fn new(ctx: &Ctx) -> Bar {
        let pb = if ctx.quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            pb.enable_steady_tick(Duration::from_millis(200));
            pb
        };
        let bar = Bar { pb };
        bar.style(None);
        bar
    }

    fn style(&self, total: Option<u64>) {
        let template = match total {
            Some(_) => "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_msg}",
            None => "{spinner} {prefix} {bytes} {binary_bytes_per_sec} {elapsed} {wide_msg}",
        };
        if let Ok(s) = ProgressStyle::with_template(template) {
            self.pb.set_style(s.progress_chars("=> "));
        }
        match total {
            Some(t) => self.pb.set_length(t),
            None => self.pb.unset_length(),
        }
    }

    /// Sync's progress: objects' bytes done of the total.
    pub fn set(&self, done: u64, total: u64) {
        if self.pb.length() != Some(total) {
            self.style(Some(total));
        }
        self.pb.set_position(done);
    }

    /// A phase without a byte count (prune's steps).
    pub fn message(&self, m: &str) {
        self.pb.set_prefix(m.to_string());
        self.pb.tick();
    }

    /// Removes the bar before the command prints its report.
    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.pb.finish_and_clear();
    }
}

impl vault::progress::Progress for Bar {
    fn phase(&self, name: &str, total_bytes: Option<u64>) {
        self.style(total_bytes);
        self.pb.set_position(0);
        self.pb.set_prefix(name.to_string());
    }

    fn item(&self, name: &str) {
        self.pb.set_message(name.to_string());
    }

    fn advance(&self, bytes: u64) {
        self.pb.inc(bytes);
    }
}

/// A reader that reports what is read through it (`put` from a file or standard input).
pub struct Reading<'a, R> {
    pub inner: R,
    pub bar: &'a Bar,
}

impl<R: std::io::Read> std::io::Read for Reading<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        vault::progress::Progress::advance(self.bar, n as u64);
        Ok(n)
    }
}
