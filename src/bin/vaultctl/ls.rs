//! `vaultctl ls`: the snapshots, or the entries of a snapshot directory.

use crate::ctx::Ctx;
use crate::show::{fmt_time_ns, mode_string};
use std::process::ExitCode;
use vault::commands::browse;
use vault::format::tree::{FileState, NodeKind};

/// List a snapshot directory: PERIOD[/PATH] (PERIOD may be `latest`).
#[derive(clap::Args)]
pub struct Args {
    spec: Option<String>,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        match &self.spec {
            None => {
                for s in v.snapshots()? {
                    println!("{}{}", s.snap.period, if s.snap.sealed { "" } else { "  (open)" });
                }
            }
            Some(spec) => {
                for n in browse::list(&v, spec)? {
                    let mark = match &n.kind {
                        NodeKind::File { state: FileState::Incomplete, .. } => "  [incomplete]".to_string(),
                        NodeKind::File { state: FileState::Failed, .. } => "  [failed]".to_string(),
                        NodeKind::Symlink { target } => format!(" -> {}", String::from_utf8_lossy(target)),
                        _ => String::new(),
                    };
                    println!(
                        "{} {:>12} {} {}{}",
                        mode_string(n.mode, &n.kind),
                        n.size,
                        fmt_time_ns(n.mtime.as_ns()),
                        String::from_utf8_lossy(&n.name),
                        mark
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
