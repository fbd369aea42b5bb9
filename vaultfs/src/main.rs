//! `vaultfs mount VAULT MOUNTPOINT`: the vault as a directory.
//!
//! Without `--foreground` the command starts the daemon, waits until the mount is ready (or
//! reports why it failed) and returns. The secret is checked before anything is mounted and
//! handed to the daemon through a pipe, never through argv. SIGTERM, SIGINT or
//! `fusermount3 -u` unmount cleanly: everything written is committed first.

mod errno;
mod fs;
mod fuse_adapter;
mod mountpoint;

use anyhow::{anyhow, bail, Context};
use clap::{CommandFactory, Parser, Subcommand};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use vault::crypto::source::{self, SecretText};
use vault::repo::{OpenOptions, Vault};
use vault::store::local::LocalStore;
use vault::store::location::Location;
use vault::store::Store;
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(name = "vaultfs", version, about = "Mount a vault: today's backup as a directory, with the past beside it")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Unlock and mount VAULT (a directory or file:///path) at MOUNTPOINT; a remote copy
    /// (s3://bucket/prefix, rclone:REMOTE:path) is mounted read-only.
    Mount(MountArgs),
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (vaultfs.1, vaultfs-mount.1) into DIR, e.g. /usr/local/share/man/man1.
    Man { dir: PathBuf },
}

#[derive(clap::Args, Clone)]
struct MountArgs {
    vault: String,
    mountpoint: PathBuf,
    /// Stay attached to the terminal (logs to stderr unless --log).
    #[arg(long)]
    foreground: bool,
    /// Log file (default for the daemon: <cache dir>/vaultfs-<vault id>.log).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    allow_other: bool,
    /// Mount read-only: browse and restore, no writer lock taken.
    #[arg(long)]
    read_only: bool,
    /// Local cache directory (default: $XDG_CACHE_HOME/vault or ~/.cache/vault).
    #[arg(long, env = "VAULT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Mount an s3:// copy as it was at TIME (the object versions current then), e.g. after
    /// an attack on an object-locked copy: 2026-11-20T10:00:00Z, "2026-11-20 10:00", @UNIX.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
}

/// One log line with a timestamp, to stderr (the log file when running as a daemon).
pub fn log(msg: &str) {
    eprintln!("{} vaultfs: {msg}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f"));
}

fn main() -> ExitCode {
    vault::tune_allocator();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Mount(a) => mount(a),
        Cmd::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vaultfs", &mut script);
            std::io::stdout().write_all(&script).context("writing to standard output")
        }
        Cmd::Man { dir } => std::fs::create_dir_all(&dir)
            .and_then(|_| clap_mangen::generate_to(Cli::command(), &dir))
            .with_context(|| format!("writing the man pages into {}", dir.display()))
            .map(|_| println!("wrote the man pages into {}", dir.display())),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vaultfs: error: {}", vault::error::chain_text(&*e));
            ExitCode::from(exit_code(&e))
        }
    }
}

fn cache_dir(a: &MountArgs) -> Option<PathBuf> {
    a.cache_dir.clone().or_else(vault::repo::default_cache_dir)
}

/// The local vault directory, or `None` for a remote URL.
fn vault_dir(a: &MountArgs) -> anyhow::Result<Option<PathBuf>> {
    Ok(match Location::parse(&a.vault)? {
        Location::Local(p) => Some(p),
        Location::Remote(_) => None,
    })
}

fn mount(mut a: MountArgs) -> anyhow::Result<()> {
    let vdir = vault_dir(&a)?;
    // A remote copy is written only by `vaultctl sync`: its mount is read-only.
    if vdir.is_none() {
        a.read_only = true;
    }
    // So is an offsite copy on a local disk (it has a sync manifest).
    if vdir.as_ref().is_some_and(|d| d.join("manifest").exists()) && !a.read_only {
        if !a.foreground && std::env::var_os("VAULTFS_DAEMON").is_none() {
            eprintln!(
                "vaultfs: {} is an offsite copy (written only by `vaultctl sync`): mounting it read-only",
                a.vault
            );
        }
        a.read_only = true;
    }
    let cache = cache_dir(&a);
    let daemon_child = std::env::var_os("VAULTFS_DAEMON").is_some();
    if a.foreground || daemon_child {
        // Before any thread exists (opening the vault starts some: key derivation, the index
        // cache): a thread started with the signals unblocked would take a SIGTERM and die
        // of it, with nothing committed and the mount left dangling. Signals that arrive
        // before the signal thread waits for them stay pending until it does.
        block_signals();
    }
    mountpoint::prepare(&a.mountpoint, vdir.as_deref(), cache.as_deref())?;
    let given = if daemon_child {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut s).context("reading the secret from the parent")?;
        let (k, v) = s.split_once(':').ok_or_else(|| anyhow!("malformed secret from the parent"))?;
        SecretText::from_parts(k, v.trim_end_matches('\n').to_string(), "the parent")?
    } else {
        source::read("VAULT_", false)?
    };
    let secret = given.to_secret()?;
    let store: Arc<dyn Store> = match &vdir {
        Some(d) => Arc::new(LocalStore::new(d)),
        None => {
            let at = match &a.as_of {
                Some(t) => Some((
                    vault::commands::remote::parse_moment(t).with_context(|| format!("--as-of {t}"))?,
                    t.as_str(),
                )),
                None => None,
            };
            vault::commands::remote::open_for_reading_as_of(&a.vault, cache.as_deref(), at)?
        }
    };
    if vdir.is_some() && a.as_of.is_some() {
        bail!("--as-of reads the object versions of an s3:// copy; {} is a directory", a.vault);
    }
    let open = OpenOptions { cache_dir: cache.clone(), low_memory: true };

    if !a.foreground && !daemon_child {
        // Check the secret (and that the vault opens) before starting anything.
        let v = Vault::open(store, &secret, &open)?;
        let id = v.vault_id_hex();
        drop(v);
        return spawn_daemon(&a, given.kind(), given.text(), cache.as_deref(), &id);
    }

    let v: &'static Vault = Box::leak(Box::new(Vault::open(store, &secret, &open)?));
    drop(secret);
    // SAFETY: getuid/getgid take no arguments and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let fs = Arc::new(fs::VaultFs::new(v, !a.read_only, uid, gid)?);
    // What opening found (journals of a mount that was killed, replayed now) comes first.
    for m in fs.take_notices() {
        log(&m);
    }
    for (_, e) in v.damaged_index_files() {
        log(&format!("warning: {e}; what only it names reads as missing until `vaultctl rebuild-index`"));
    }
    if let Ok((_, damaged)) = v.readable_snapshots() {
        for (id, e) in damaged {
            log(&format!("warning: snapshots/{}: {e}; not shown (restore it from an offsite copy)", id.to_hex()));
        }
    }

    let mut options = vec![fuser::MountOption::FSName("vault".into()), fuser::MountOption::Subtype("vaultfs".into())];
    if a.read_only {
        options.push(fuser::MountOption::RO);
    }
    let mut config = fuser::Config::default();
    config.mount_options = options;
    // Requests are served by several threads: reads of snapshots never wait behind a write.
    config.n_threads = Some(FUSE_THREADS);
    if a.allow_other {
        config.mount_options.push(fuser::MountOption::DefaultPermissions);
        config.acl = fuser::SessionACL::All;
    }
    let mut session = fuser::Session::new(fuse_adapter::FuseFs::new(fs.clone()), &a.mountpoint, &config)
        .with_context(|| format!("mounting at {}", a.mountpoint.display()))?;
    let unmounter = session.unmount_callable();
    spawn_maintenance_thread(fs.clone());
    spawn_signal_thread(fs, unmounter, a.mountpoint.clone());
    log(&format!(
        "mounted {} at {}{} (period {})",
        v.store().describe(),
        a.mountpoint.display(),
        if a.read_only { " read-only" } else { "" },
        v.clock().current()
    ));
    if daemon_child {
        // Tell the parent we are ready, then let go of its pipe.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
        redirect_stdout_to_null();
    }
    session.run().context("serving the mount")?;
    log("unmounted");
    Ok(())
}

/// vaultctl's exit codes (docs/OPERATIONS.md): 3 wrong passphrase or key, 4 damage, 5 locked,
/// else 1; a daemon that did not start passes its own on.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(DaemonExit(code)) = e.downcast_ref::<DaemonExit>() {
        return *code;
    }
    match e.chain().find_map(|c| c.downcast_ref::<vault::Error>()).map(|v| v.kind()) {
        Some(vault::ErrorKind::WrongKey) => 3,
        Some(vault::ErrorKind::Corrupt) => 4,
        Some(vault::ErrorKind::Locked) => 5,
        _ => 1,
    }
}

/// The exit code of a daemon that did not start (its message is in the error's text).
#[derive(Debug)]
struct DaemonExit(u8);

impl std::fmt::Display for DaemonExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the daemon exited with status {}", self.0)
    }
}

impl std::error::Error for DaemonExit {}

fn spawn_daemon(a: &MountArgs, kind: &str, value: &str, cache: Option<&Path>, vault_id: &str) -> anyhow::Result<()> {
    let log_path = match &a.log {
        Some(p) => p.clone(),
        None => {
            let dir = cache.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join(format!("vaultfs-{}.log", &vault_id[..8]))
        }
    };
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening log file {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding the vaultfs binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount").arg(&a.vault).arg(&a.mountpoint).arg("--foreground");
    if a.allow_other {
        cmd.arg("--allow-other");
    }
    if a.read_only {
        cmd.arg("--read-only");
    }
    if let Some(c) = cache {
        cmd.arg("--cache-dir").arg(c);
    }
    if let Some(t) = &a.as_of {
        cmd.arg("--as-of").arg(t);
    }
    for v in ["VAULT_PASSPHRASE", "VAULT_PASSPHRASE_FILE", "VAULT_KEY", "VAULT_KEY_FILE"] {
        cmd.env_remove(v);
    }
    cmd.env("VAULTFS_DAEMON", "1").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(logf);
    // SAFETY: setsid is async-signal-safe and only detaches the child from the terminal.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            // Inherit nothing but stdio: a descriptor left open here would keep whoever
            // started us waiting for its pipe to close.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the daemon")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{kind}:{value}").as_bytes()).context("passing the secret to the daemon")?;
    }
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() == "ready" {
        println!("mounted at {} (daemon pid {}, log {})", a.mountpoint.display(), child.id(), log_path.display());
        return Ok(());
    }
    let status = child.wait().ok();
    let mut tail = String::new();
    if let Ok(mut f) = std::fs::File::open(&log_path) {
        let _ = f.read_to_string(&mut tail);
    }
    let last: Vec<&str> = tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
    let code = status.and_then(|s| s.code()).and_then(|c| u8::try_from(c).ok()).filter(|c| *c != 0).unwrap_or(1);
    Err(anyhow::Error::new(DaemonExit(code)).context(format!("the daemon did not start:\n{}", last.join("\n"))))
}

fn redirect_stdout_to_null() {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::unix::io::AsRawFd;
        // SAFETY: dup2 onto fd 1 of a descriptor we own.
        unsafe {
            libc::dup2(f.as_raw_fd(), 1);
        }
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks the termination signals in this thread and every thread started after it, so
/// that only the signal thread receives them. Called before the process starts any thread.
fn block_signals() {
    let set = signal_set();
    // SAFETY: masks signals of the calling thread with a valid set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Threads serving FUSE requests.
const FUSE_THREADS: usize = 4;

/// Checkpoints, syncs of directory changes, period rollover and giving the writer lock back
/// when idle (docs/DESIGN.md §10b).
fn spawn_maintenance_thread(fs: Arc<fs::VaultFs>) {
    if !fs.is_writable() {
        return;
    }
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if fs.is_stopped() {
            return;
        }
        for m in fs.maintain(false) {
            log(&m);
        }
    });
}

fn spawn_signal_thread(fs: Arc<fs::VaultFs>, mut unmounter: fuser::SessionUnmounter, mnt: PathBuf) {
    std::thread::spawn(move || loop {
        let set = signal_set();
        let mut sig: libc::c_int = 0;
        // SAFETY: waits for one of the blocked signals in `set`.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        log(&format!("signal {sig}: committing and unmounting"));
        if let Err(e) = fs.commit_all() {
            log(&format!("commit before unmount failed: {e}"));
        }
        if unmounter.unmount().is_err() {
            // Busy (files still open): detach now; the session ends when they are closed.
            let _ = Command::new("fusermount3").arg("-uz").arg(&mnt).status();
        }
    });
}
