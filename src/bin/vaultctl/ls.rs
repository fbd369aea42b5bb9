//! `vaultctl ls`: the snapshots, or the entries of a snapshot directory.

use crate::ctx::Ctx;
use crate::show::{fmt_time_ns, mode_string, state_name};
use serde_json::{json, Value};
use std::process::ExitCode;
use vault::commands::browse;
use vault::format::tree::{FileState, Node, NodeKind};

/// List a snapshot directory: PERIOD[/PATH] (PERIOD may be `latest`).
#[derive(clap::Args)]
pub struct Args {
    spec: Option<String>,
    /// Print one JSON object instead of text (schema: docs/OPERATIONS.md).
    #[arg(long)]
    json: bool,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        match &self.spec {
            None if self.json => {
                let list: Vec<Value> = v
                    .readable_snapshots()?
                    .0
                    .iter()
                    .map(|s| json!({"period": s.snap.period, "sealed": s.snap.sealed}))
                    .collect();
                println!("{}", json!({"schema": 1, "snapshots": list}));
            }
            None => {
                for s in v.readable_snapshots()?.0 {
                    println!("{}{}", s.snap.period, if s.snap.sealed { "" } else { "  (open)" });
                }
            }
            Some(spec) if self.json => {
                let entries: Vec<Value> = browse::list(&v, spec)?.iter().map(entry_json).collect();
                println!("{}", json!({"schema": 1, "path": spec, "entries": entries}));
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

/// One directory entry: names and symlink targets as (lossy) UTF-8.
fn entry_json(n: &Node) -> Value {
    let kind = match &n.kind {
        NodeKind::File { .. } => "file",
        NodeKind::Dir { .. } => "dir",
        NodeKind::Symlink { .. } => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::Socket => "socket",
        NodeKind::CharDevice { .. } => "char_device",
        NodeKind::BlockDevice { .. } => "block_device",
    };
    json!({
        "name": String::from_utf8_lossy(&n.name),
        "type": kind,
        "mode": n.mode & 0o7777,
        "uid": n.uid,
        "gid": n.gid,
        "size": n.size,
        "mtime_unix_ns": n.mtime.as_ns(),
        "state": match &n.kind {
            NodeKind::File { state, .. } => Some(state_name(*state)),
            _ => None,
        },
        "target": match &n.kind {
            NodeKind::Symlink { target } => Some(String::from_utf8_lossy(target)),
            _ => None,
        },
    })
}
