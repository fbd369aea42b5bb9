//! `vaultctl`: the command line over the vault engine. Parses arguments, reads secrets from
//! the environment or a prompt (never from argv), prints reports, maps errors to exit codes:
//! 0 ok, 1 error, 2 usage, 3 wrong passphrase or key, 4 damage found or drill failed, 5 vault
//! (or, for `sync`, remote) locked, 6 newest backup older than `status --max-age-hours`, 7
//! (`status`) the last backup job failed; `run` exits with its command's status (126/127 when
//! it cannot be started, 128 + signal when a signal ended it).
//!
//! One module per command: its arguments (a `clap::Args` struct), its `run`, and the printing
//! of the report the engine returns. `ctx` opens the vault the global options name; `show`
//! holds the formatting several commands share.

mod cat;
mod check;
mod completions;
mod ctx;
mod drill;
mod init;
mod key;
mod ls;
mod man;
mod mark;
mod policy;
mod progress;
mod prune;
mod put;
mod rebuild_index;
mod remote;
mod report;
mod restore;
mod run;
mod seal;
mod show;
mod snapshots;
mod stats;
mod status;
mod sync;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vault::ErrorKind;

#[derive(Parser)]
#[command(name = "vaultctl", version, about = "Encrypted, deduplicating vault of dated backup snapshots")]
struct Cli {
    /// Vault directory (or file:///path); a remote copy can be read directly through its URL
    /// (s3://bucket/prefix, rclone:REMOTE:path).
    #[arg(long, global = true, env = "VAULT_REPO")]
    repo: Option<String>,
    /// Local cache directory (default: $XDG_CACHE_HOME/vault or ~/.cache/vault).
    #[arg(long, global = true, env = "VAULT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Seconds to wait for another writer to release the vault [default: 30; `run`: 600].
    #[arg(long, global = true)]
    lock_wait: Option<u64>,
    /// Read an s3:// copy as it was at TIME (the object versions current then): after an
    /// attack on an object-locked copy. TIME: 2026-11-20T10:00:00Z, "2026-11-20 10:00" (local
    /// time), 2026-11-20 or @UNIX-SECONDS.
    #[arg(long, global = true, value_name = "TIME")]
    as_of: Option<String>,
    /// Draw no progress bar (one is drawn on standard error, and only when it is a terminal).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Init(init::Args),
    Put(put::Args),
    Seal(seal::Args),
    Snapshots(snapshots::Args),
    Ls(ls::Args),
    Cat(cat::Args),
    Restore(restore::Args),
    Check(check::Args),
    Stats(stats::Args),
    Key(key::Args),
    RebuildIndex(rebuild_index::Args),
    Drill(drill::Args),
    Status(status::Args),
    Run(run::Args),
    Mark(mark::Args),
    Remote(remote::Args),
    Sync(sync::Args),
    Prune(prune::Args),
    Policy(policy::Args),
    Report(report::Args),
    Completions(completions::Args),
    Man(man::Args),
}

impl Cmd {
    /// What the command does to the vault it opens (a remote URL or an offsite copy is
    /// refused to writers: only `sync` writes there, from the vault it copies).
    fn access(&self) -> ctx::Access {
        use ctx::Access::{Create, Read, Write};
        let writes = |w: bool| if w { Write } else { Read };
        match self {
            Cmd::Init(_) => Create,
            Cmd::Put(_) | Cmd::Seal(_) | Cmd::RebuildIndex(_) | Cmd::Sync(_) | Cmd::Run(_) | Cmd::Mark(_) => Write,
            Cmd::Key(a) => writes(a.writes()),
            Cmd::Remote(a) => writes(a.writes()),
            Cmd::Prune(a) => writes(a.writes()),
            Cmd::Policy(a) => writes(a.writes()),
            Cmd::Snapshots(_)
            | Cmd::Ls(_)
            | Cmd::Cat(_)
            | Cmd::Restore(_)
            | Cmd::Check(_)
            | Cmd::Stats(_)
            | Cmd::Drill(_)
            | Cmd::Status(_)
            | Cmd::Report(_)
            | Cmd::Completions(_)
            | Cmd::Man(_) => Read,
        }
    }
}

/// jemalloc for `vaultctl`: chunks, frames and pack buffers move between threads all the
/// time, and glibc's malloc spent a fifth of a write of new data on its arena locks and
/// consolidation (docs/PERFORMANCE.md). The daemon keeps glibc's: with jemalloc its peak while
/// writing through the mount was higher and its writes not faster.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (read by jemalloc itself at its start: a NUL-terminated C string under
/// the prefixed name of `malloc_conf`): freed pages go back to the system after about two
/// seconds, also while the process waits (one background thread purges them).
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_CONF: &[u8; 85] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:2000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    vault::tune_allocator();
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Drill(_)) {
        // Like any Unix tool: output into a pipe whose reader went away (`vaultctl snapshots |
        // head -1`) ends the process quietly instead of a panic at the next print. Not for
        // `drill`, which writes into restore tools and reports their failures itself.
        // SAFETY: sets the disposition of one signal before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let ctx = ctx::Ctx {
        repo: cli.repo,
        cache_dir: cli.cache_dir,
        lock_wait: cli.lock_wait,
        as_of: cli.as_of,
        quiet: cli.quiet,
        access: cli.cmd.access(),
    };
    let result = match &cli.cmd {
        Cmd::Init(a) => a.run(&ctx),
        Cmd::Put(a) => a.run(&ctx),
        Cmd::Seal(a) => a.run(&ctx),
        Cmd::Snapshots(a) => a.run(&ctx),
        Cmd::Ls(a) => a.run(&ctx),
        Cmd::Cat(a) => a.run(&ctx),
        Cmd::Restore(a) => a.run(&ctx),
        Cmd::Check(a) => a.run(&ctx),
        Cmd::Stats(a) => a.run(&ctx),
        Cmd::Key(a) => a.run(&ctx),
        Cmd::RebuildIndex(a) => a.run(&ctx),
        Cmd::Drill(a) => a.run(&ctx),
        Cmd::Status(a) => a.run(&ctx),
        Cmd::Run(a) => a.run(&ctx),
        Cmd::Mark(a) => a.run(&ctx),
        Cmd::Remote(a) => a.run(&ctx),
        Cmd::Sync(a) => a.run(&ctx),
        Cmd::Prune(a) => a.run(&ctx),
        Cmd::Policy(a) => a.run(&ctx),
        Cmd::Report(a) => a.run(&ctx),
        Cmd::Completions(a) => a.run(&ctx),
        Cmd::Man(a) => a.run(&ctx),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vaultctl: error: {}", vault::error::chain_text(&*e));
            let kind = e.chain().find_map(|c| c.downcast_ref::<vault::Error>()).map(|v| v.kind());
            ExitCode::from(match kind {
                Some(ErrorKind::WrongKey) => 3,
                Some(ErrorKind::Corrupt) => 4,
                Some(ErrorKind::Locked) => 5,
                _ => 1,
            })
        }
    }
}
