//! `vaultctl`: the command line over the vault engine. Parses arguments, reads secrets from
//! the environment or a prompt (never from argv), prints reports, maps errors to exit codes:
//! 0 ok, 1 error, 2 usage, 3 wrong passphrase or key, 4 damage found or drill failed, 5 vault
//! (or, for `sync`, remote) locked, 6 newest backup older than `status --max-age-hours`, 7
//! (`status`) the last backup job failed; `run` exits with its command's status (126/127 when
//! it cannot be started, 128 + signal when a signal ended it).

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use vault::commands::{
    browse, check, drill, keys, mark, prune, put, rebuild_index, remote, restore, run as job, stats, status, sync,
};
use vault::crypto::Secret;
use vault::format::config::PeriodKind;
use vault::format::policy::Policy;
use vault::format::tree::{FileState, NodeKind};
use vault::mongo::restore::{RestoreOptions, Restorer};
use vault::pgdump::restore::{PgRestoreOptions, PgRestorer};
use vault::repo::{InitOptions, OpenOptions, Vault};
use vault::store::{local::LocalStore, ObjKind, Store};
use vault::units::{human, parse_size};
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
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new vault in an empty directory.
    Init {
        /// Average chunk size (min = avg/4, max = avg*4).
        #[arg(long, default_value = "4KiB")]
        chunk_avg: String,
        /// Target pack file size.
        #[arg(long, default_value = "16MiB")]
        pack_size: String,
        /// Plaintext size that closes a frame of new chunks compressed and sealed together
        /// (0: one chunk per blob).
        #[arg(long, default_value = "64KiB")]
        frame_size: String,
        /// Snapshot period: day or hour.
        #[arg(long, default_value = "day")]
        period: String,
        /// IANA time zone naming the periods (default: TZ, else the system's zone).
        #[arg(long)]
        time_zone: Option<String>,
        /// zstd compression level.
        #[arg(long, default_value_t = 3)]
        zstd_level: i32,
        /// Label of the first key slot.
        #[arg(long, default_value = "initial")]
        label: String,
    },
    /// Store FILE (or standard input) as NAME in the current period.
    Put { name: String, file: Option<PathBuf> },
    /// Seal the current period now (it becomes immutable).
    Seal,
    /// One line per snapshot: period, state, files, logical and new bytes, files marked failed
    /// or incomplete.
    Snapshots,
    /// List a snapshot directory: PERIOD[/PATH] (PERIOD may be `latest`).
    Ls { spec: Option<String> },
    /// Write a file's content to standard output: PERIOD/PATH.
    Cat { spec: String },
    /// Restore PERIOD[/PATH] to DEST.
    Restore {
        spec: String,
        dest: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        overwrite: bool,
    },
    /// Verify the vault's structure; with --read-data, every stored byte.
    Check {
        #[arg(long)]
        read_data: bool,
    },
    /// Logical and stored sizes, deduplication and compression ratios.
    Stats,
    /// Manage key slots.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Rebuild the index files from the pack headers (after index files were lost).
    RebuildIndex,
    /// Prove a snapshot restores: read every byte back, check every mongodump archive, pg_dump
    /// dump, zip and tar archive by content, report RTO/RPO.
    #[command(group(clap::ArgGroup::new("server").multiple(true).args(["mongo_uri", "pg_uri"])))]
    Drill {
        /// PERIOD, `latest` (the newest sealed snapshot) or `current` (the current period).
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// Only the file at PATH in the snapshot (or the files below it).
        #[arg(long, value_name = "PATH")]
        path: Option<String>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Also restore every mongodump archive into a scratch database on this server
        /// (mongodb://...) and compare the counts per collection.
        #[arg(long, value_name = "URI", requires = "restore_db")]
        mongo_uri: Option<String>,
        /// Also restore every pg_dump dump into a scratch database on this server
        /// (postgresql://...; the password goes to psql/pg_restore through their environment)
        /// and compare the rows per table.
        #[arg(long, value_name = "URI", requires = "restore_db")]
        pg_uri: Option<String>,
        /// The scratch database: must not exist (see --drop-existing); dropped at the end.
        /// Further PostgreSQL dumps of the snapshot go to NAME_2, NAME_3, ...
        #[arg(long, value_name = "NAME", requires = "server")]
        restore_db: Option<String>,
        /// Keep the scratch database after the drill.
        #[arg(long, requires = "server")]
        keep: bool,
        /// Drop the scratch database first if it exists.
        #[arg(long, requires = "server")]
        drop_existing: bool,
    },
    /// Newest backup and its age, current period, last sync per remote, last drill, last job.
    /// Exits 6 when the newest backup is older than --max-age-hours, 7 when the last backup
    /// job (`vaultctl run`) failed (for monitoring).
    Status {
        /// Oldest acceptable age of the newest backup, in hours.
        #[arg(long, default_value_t = 26.0)]
        max_age_hours: f64,
    },
    /// Run a backup job: `vaultctl run -- CMD ARGS...`. Records its exit status and the files
    /// of the current period it wrote in the vault's log; if it fails, marks those files
    /// failed. Exits with the command's status.
    Run {
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Set the state of files of the current period: PATH... --failed|--complete|--incomplete.
    #[command(group(clap::ArgGroup::new("state").required(true).args(["failed", "complete", "incomplete"])))]
    Mark {
        #[arg(required = true)]
        paths: Vec<String>,
        /// Mark failed (a drill of them fails).
        #[arg(long)]
        failed: bool,
        /// Mark complete (clears a failed or incomplete mark).
        #[arg(long)]
        complete: bool,
        /// Mark incomplete.
        #[arg(long)]
        incomplete: bool,
    },
    /// Manage offsite remotes.
    Remote {
        #[command(subcommand)]
        cmd: RemoteCmd,
    },
    /// Copy to a remote what it lacks (packs, index, snapshots, then the manifest last).
    Sync {
        /// Remote name (see `vaultctl remote list`).
        name: String,
        /// Check every object of the remote against its manifest (no upload); damaged objects
        /// are sent again by the next sync.
        #[arg(long)]
        verify: bool,
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Parallel uploads (and reads for --verify).
        #[arg(long, default_value_t = sync::DEFAULT_JOBS)]
        jobs: usize,
        /// Upload bandwidth limit per second, e.g. 10MiB (default: unlimited).
        #[arg(long)]
        bwlimit: Option<String>,
    },
    /// Forget snapshots by the retention policy (flags, or the stored policy) and reclaim
    /// their space. Never removes the current period or the newest sealed snapshot.
    Prune {
        #[command(flatten)]
        keep: KeepArgs,
        /// Print which snapshots go and how much space is freed, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Repack a pack when more than this percentage of it is unused.
        #[arg(long, default_value_t = 25.0)]
        max_unused: f64,
    },
    /// The retention policy stored in the vault.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
}

/// Retention rules, as in restic's `forget`: a snapshot is kept when any rule keeps it.
#[derive(clap::Args, Debug, Clone, Default)]
struct KeepArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours (hourly vaults).
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
}

impl KeepArgs {
    fn policy(&self) -> Option<Policy> {
        let p = Policy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
        };
        let given =
            [self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly]
                .iter()
                .any(Option::is_some);
        given.then_some(p)
    }
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Store the retention policy in the vault (`prune` without flags uses it).
    Set {
        #[command(flatten)]
        keep: KeepArgs,
    },
    /// Show the stored retention policy.
    Show,
    /// Remove the stored retention policy.
    Clear,
}

#[derive(Subcommand)]
enum RemoteCmd {
    /// Add a remote: file:///path (a mounted disk or NAS), s3://bucket/prefix (credentials and
    /// endpoint from the AWS_* variables) or rclone:REMOTE:path (any rclone remote).
    Add {
        name: String,
        url: String,
        /// Never delete anything on this remote.
        #[arg(long)]
        keep_all: bool,
        /// Only ever add objects there: no delete, no replacement (works with credentials
        /// that cannot delete).
        #[arg(long)]
        append_only: bool,
        /// S3 with Object Lock: retain every object sync writes for DAYS, extended while the
        /// vault still uses it (the bucket must have Object Lock enabled).
        #[arg(long, value_name = "DAYS")]
        object_lock: Option<u32>,
        /// Retention mode: governance (an administrator can lift it) or compliance (nobody can).
        #[arg(long, value_name = "MODE", requires = "object_lock", default_value = "governance")]
        object_lock_mode: String,
    },
    /// List remotes.
    List,
    /// Remove a remote (nothing on it is deleted).
    Remove { name: String },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Add a key slot; the new secret comes from VAULT_NEW_PASSPHRASE[_FILE], VAULT_NEW_KEY[_FILE] or a prompt.
    Add {
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List key slots.
    List,
    /// Remove a key slot by (a unique prefix of) its id.
    Remove { id: String },
    /// Replace the secret of the slot you unlock with.
    Passwd,
}

fn main() -> ExitCode {
    vault::tune_allocator();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vaultctl: error: {e:#}");
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

/// When `repo` is not a path or URL but may name a remote of the vault given by VAULT_REPO
/// (letters, digits, '-', '_'; no such file here), the URL of that vault.
fn home_of_remote_name(repo: &str) -> Option<String> {
    let is_name = !repo.is_empty()
        && repo.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !std::path::Path::new(repo).exists();
    let home = std::env::var("VAULT_REPO").ok().filter(|h| is_name && !h.is_empty() && h != repo)?;
    if home.contains("://") || home.starts_with("rclone:") {
        return Some(home);
    }
    Some(format!("file://{}", std::path::absolute(&home).ok()?.display()))
}

/// `--repo NAME`, when NAME is a remote of the vault given by VAULT_REPO: that remote's URL,
/// read from the vault, so that the command works on the remote's copy alone (opening it
/// needs only the key). Anything else, and the location given to `init`, is returned as it is.
fn remote_by_name(cli: &Cli, repo: &str) -> anyhow::Result<String> {
    let home = home_of_remote_name(repo).filter(|_| !matches!(cli.cmd, Cmd::Init { .. }));
    let Some(home) = home else { return Ok(repo.to_string()) };
    let v = Vault::open(
        remote::open_store(&home)?,
        &read_secret("VAULT_", false)?,
        &OpenOptions { cache_dir: cache_dir(cli) },
    )
    .with_context(|| format!("--repo {repo}: opening the vault {home} (VAULT_REPO) to look up its remote {repo:?}"))?;
    Ok(remote::find(&v, repo)
        .with_context(|| format!("--repo {repo}: not a directory or URL, nor a remote of {home}"))?
        .url)
}

fn open_store(cli: &Cli) -> anyhow::Result<Arc<dyn Store>> {
    let repo = cli.repo.as_deref().ok_or_else(|| anyhow!("no vault given: use --repo DIR or set VAULT_REPO"))?;
    let repo = &remote_by_name(cli, repo)?;
    if remote::is_remote_url(repo) {
        if let Some(t) = &cli.as_of {
            let at = remote::parse_moment(t).with_context(|| format!("--as-of {t}"))?;
            return Ok(remote::open_for_reading_as_of(repo, cache_dir(cli).as_deref(), Some((at, t)))?);
        }
        if cli.cmd.writes() {
            bail!(
                "{repo} is a remote copy: it is written only by `vaultctl sync` from the vault it copies \
                 (run this command on that vault; a remote URL can be read: snapshots, ls, cat, restore, check, drill)"
            );
        }
        return Ok(remote::open_for_reading(repo, cache_dir(cli).as_deref())?);
    }
    if cli.as_of.is_some() {
        bail!("--as-of reads the object versions of an s3:// copy; {repo} is not one");
    }
    let path = repo.strip_prefix("file://").unwrap_or(repo);
    if path.contains("://") {
        bail!("unsupported vault location {repo:?} (use a directory, file:///path, s3://bucket/prefix or rclone:REMOTE:path)");
    }
    let store = LocalStore::new(path);
    let copy = store.size(ObjKind::Config, "manifest").is_ok() || !store.list(ObjKind::Manifest)?.is_empty();
    if cli.cmd.writes() && !matches!(cli.cmd, Cmd::Init { .. }) && copy {
        bail!(
            "{path} is an offsite copy (it has a sync manifest): it is written only by `vaultctl sync`, or it \
             would disagree with its manifest. To make it a vault of its own (disaster recovery), copy it and \
             delete the copy's `manifest` file first"
        );
    }
    Ok(Arc::new(store))
}

impl Cmd {
    /// Commands that change the vault (refused on a remote URL, which only `sync` writes).
    fn writes(&self) -> bool {
        match self {
            Cmd::Init { .. } | Cmd::Put { .. } | Cmd::Seal | Cmd::RebuildIndex | Cmd::Sync { .. } => true,
            Cmd::Key { cmd } => !matches!(cmd, KeyCmd::List),
            Cmd::Remote { cmd } => !matches!(cmd, RemoteCmd::List),
            Cmd::Prune { dry_run, .. } => !dry_run,
            Cmd::Policy { cmd } => !matches!(cmd, PolicyCmd::Show),
            Cmd::Run { .. } | Cmd::Mark { .. } => true,
            _ => false,
        }
    }
}

fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    cli.cache_dir.clone().or_else(vault::repo::default_cache_dir)
}

/// Reads a secret from `<prefix>PASSPHRASE`, `<prefix>PASSPHRASE_FILE`, `<prefix>KEY`,
/// `<prefix>KEY_FILE` (exactly one), or prompts on the terminal.
fn read_secret(prefix: &str, confirm: bool) -> anyhow::Result<Secret> {
    let var = |n: &str| std::env::var(format!("{prefix}{n}")).ok().filter(|v| !v.is_empty());
    let set: Vec<&str> =
        ["PASSPHRASE", "PASSPHRASE_FILE", "KEY", "KEY_FILE"].into_iter().filter(|n| var(n).is_some()).collect();
    if set.len() > 1 {
        bail!(
            "several secrets are set ({}); set only one",
            set.iter().map(|n| format!("{prefix}{n}")).collect::<Vec<_>>().join(", ")
        );
    }
    let read_file = |p: String| -> anyhow::Result<String> {
        let s = std::fs::read_to_string(&p).with_context(|| format!("reading secret file {p}"))?;
        Ok(s.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&s).to_string())
    };
    let secret = match set.first().copied() {
        Some("PASSPHRASE") => Secret::passphrase(var("PASSPHRASE").unwrap_or_default())?,
        Some("PASSPHRASE_FILE") => Secret::passphrase(read_file(var("PASSPHRASE_FILE").unwrap_or_default())?)?,
        Some("KEY") => Secret::raw_key_from_hex(&var("KEY").unwrap_or_default()).context(format!("{prefix}KEY"))?,
        Some(_) => Secret::raw_key_from_hex(&read_file(var("KEY_FILE").unwrap_or_default())?)
            .context(format!("{prefix}KEY_FILE"))?,
        None => {
            if !std::io::stderr().is_terminal() {
                bail!("no secret given: set {prefix}PASSPHRASE, {prefix}PASSPHRASE_FILE, {prefix}KEY or {prefix}KEY_FILE (or run on a terminal to be asked)");
            }
            let what = if prefix.contains("NEW") { "new passphrase" } else { "passphrase" };
            let p = rpassword::prompt_password(format!("{what}: "))?;
            if confirm && rpassword::prompt_password(format!("repeat {what}: "))? != p {
                bail!("the passphrases do not match");
            }
            Secret::passphrase(p)?
        }
    };
    Ok(secret)
}

fn open(cli: &Cli) -> anyhow::Result<Vault> {
    let store = open_store(cli)?;
    let secret = read_secret("VAULT_", false)?;
    Ok(Vault::open(store, &secret, &OpenOptions { cache_dir: cache_dir(cli) })?)
}

fn print_prune_plan(p: &prune::Plan, policy: &Policy) {
    println!("policy: {policy}");
    for d in &p.snapshots {
        let s = &d.info.snap;
        let what = if d.keep() { format!("keep    ({})", d.reasons.join(", ")) } else { "forget".to_string() };
        println!("  {:<13} {:>6} files {:>10}  {what}", s.period, s.files, human(s.logical_bytes));
    }
    let forgotten = p.forgotten().count();
    println!(
        "snapshots: {} kept, {} forgotten; packs: {} of {} deleted, {} repacked ({} live copied), {} unindexed",
        p.snapshots.len() - forgotten,
        forgotten,
        p.delete.len(),
        p.packs_before,
        p.repack.len(),
        human(p.repack_bytes()),
        p.orphans.len()
    );
    println!("space: {} stored, about {} freed", human(p.stored_before), human(p.freed_bytes()));
}

fn mode_string(mode: u32, kind: &NodeKind) -> String {
    let t = match kind {
        NodeKind::Dir { .. } => 'd',
        NodeKind::Symlink { .. } => 'l',
        NodeKind::File { .. } => '-',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
        NodeKind::CharDevice { .. } => 'c',
        NodeKind::BlockDevice { .. } => 'b',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    // Set-id and sticky bits, as ls shows them.
    let special = [(0o4000, 3, 's'), (0o2000, 6, 's'), (0o1000, 9, 't')];
    for (bit, pos, c) in special {
        if mode & bit != 0 {
            let exec = s.as_bytes()[pos] == b'x';
            let ch = if exec { c } else { c.to_ascii_uppercase() };
            s.replace_range(pos..pos + 1, &ch.to_string());
        }
    }
    s
}

fn fmt_time_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let wait = Duration::from_secs(cli.lock_wait.unwrap_or(30));
    match &cli.cmd {
        Cmd::Init { chunk_avg, pack_size, frame_size, period, time_zone, zstd_level, label } => {
            let store = open_store(&cli)?;
            let period = match period.as_str() {
                "day" => PeriodKind::Day,
                "hour" => PeriodKind::Hour,
                p => bail!("unknown period {p:?} (use day or hour)"),
            };
            let o = InitOptions {
                chunk_avg: u32::try_from(parse_size(chunk_avg)?).context("chunk size")?,
                pack_target: u32::try_from(parse_size(pack_size)?).context("pack size")?,
                frame_target: u32::try_from(parse_size(frame_size)?).context("frame size")?,
                zstd_level: *zstd_level,
                period,
                time_zone: time_zone.clone().unwrap_or_else(vault::period::default_time_zone),
                label: label.clone(),
            };
            if let Some(p) = store.local_path() {
                if p.exists() && !p.is_dir() {
                    bail!("{} exists and is not a directory", p.display());
                }
            }
            let secret = read_secret("VAULT_", true)?;
            Vault::init(store.clone(), &secret, &o)?;
            println!(
                "created vault in {} (periods: {}, time zone {}, chunks ~{})",
                store.describe(),
                if period == PeriodKind::Day { "days" } else { "hours" },
                o.time_zone,
                human(o.chunk_avg as u64)
            );
        }
        Cmd::Put { name, file } => {
            let v = open(&cli)?;
            let o = put::PutOptions { path: name.clone(), mode: 0o644, mtime_ns: None, lock_wait: wait };
            let report = match file {
                Some(f) => {
                    let mut fh = std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
                    put::put(&v, &o, &mut fh)?
                }
                None => put::put(&v, &o, &mut std::io::stdin())?,
            };
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
        }
        Cmd::Seal => {
            let v = open(&cli)?;
            let sealed = put::seal(&v, wait)?;
            if sealed.is_empty() {
                println!("nothing to seal: the current period {} has no open snapshot", v.clock().current());
            }
            for s in sealed {
                println!("sealed {} ({} files, {})", s.snap.period, s.snap.files, human(s.snap.logical_bytes));
            }
        }
        Cmd::Snapshots => {
            let v = open(&cli)?;
            let mut memo = std::collections::HashMap::new();
            for s in v.snapshots()? {
                let (failed, incomplete) = mark::marked_counts(&v, s.snap.root, &mut memo)?;
                let marks: Vec<String> = [(failed, "failed"), (incomplete, "incomplete")]
                    .iter()
                    .filter(|(n, _)| *n > 0)
                    .map(|(n, what)| format!("{n} {what}"))
                    .collect();
                println!(
                    "{}  {:6}  {:>6} files  {:>10} logical  {:>10} new{}",
                    s.snap.period,
                    if s.snap.sealed { "sealed" } else { "open" },
                    s.snap.files,
                    human(s.snap.logical_bytes),
                    human(s.snap.new_bytes),
                    if marks.is_empty() { String::new() } else { format!("  [{}]", marks.join(", ")) }
                );
            }
        }
        Cmd::Ls { spec } => {
            let v = open(&cli)?;
            match spec {
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
        }
        Cmd::Cat { spec } => {
            let v = open(&cli)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            browse::cat(&v, spec, &mut out)?;
            out.flush().context("writing to standard output")?;
        }
        Cmd::Restore { spec, dest, overwrite } => {
            let v = open(&cli)?;
            let r = restore::restore(&v, spec, dest, *overwrite)?;
            println!(
                "restored {} files, {} directories, {} symlinks, {} hard links, {} special files, {}",
                r.files,
                r.dirs,
                r.symlinks,
                r.links,
                r.special,
                human(r.bytes)
            );
            for m in r.marked {
                eprintln!("warning: {m} is marked incomplete or failed");
            }
            for w in r.warnings {
                eprintln!("warning: {w}");
            }
        }
        Cmd::Check { read_data } => {
            let v = open(&cli)?;
            let r = check::check(&v, *read_data)?;
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
                if *read_data { format!(", read {}", human(r.bytes_read)) } else { String::new() },
                if r.ok() { "no errors".to_string() } else { format!("{} errors", r.errors.len()) }
            );
            if !r.ok() {
                return Ok(ExitCode::from(4));
            }
        }
        Cmd::Stats => {
            let v = open(&cli)?;
            let s = stats::stats(&v)?;
            println!("snapshots:          {} ({} sealed)", s.snapshots, s.sealed);
            println!("files:              {}", s.files);
            println!("logical bytes:      {} ({})", s.logical_bytes, human(s.logical_bytes));
            println!("unique bytes:       {} ({})", s.unique_bytes, human(s.unique_bytes));
            println!("stored bytes:       {} ({})", s.stored_bytes, human(s.stored_bytes));
            println!("dedup ratio:        {:.2}x", s.dedup_ratio());
            println!("compression ratio:  {:.2}x", s.compression_ratio());
            println!("overall ratio:      {:.2}x", s.total_ratio());
            println!("chunks:             {}", s.chunks);
            println!("trees:              {}", s.trees);
            println!("packs:              {}", s.packs);
        }
        Cmd::Key { cmd } => {
            let v = open(&cli)?;
            match cmd {
                KeyCmd::Add { label } => {
                    let new = read_secret("VAULT_NEW_", true)?;
                    let id = keys::add(&v, &new, label, wait)?;
                    println!("added key slot {} ({})", &id.to_hex()[..12], new.kind_name());
                }
                KeyCmd::List => {
                    for s in keys::list(&v)? {
                        println!(
                            "{}  {:10}  {}  {}{}",
                            &s.id.to_hex()[..12],
                            s.kind,
                            chrono::DateTime::from_timestamp(s.created_unix, 0)
                                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                                .unwrap_or_default(),
                            s.label,
                            if s.current { "  (used now)" } else { "" }
                        );
                    }
                }
                KeyCmd::Remove { id } => {
                    let id = keys::remove(&v, id, wait)?;
                    println!("removed key slot {}", &id.to_hex()[..12]);
                }
                KeyCmd::Passwd => {
                    let new = read_secret("VAULT_NEW_", true)?;
                    let id = keys::passwd(&v, &new, wait)?;
                    println!("replaced the key slot; new slot {}", &id.to_hex()[..12]);
                }
            }
        }
        Cmd::Drill { snapshot, path, json, mongo_uri, pg_uri, restore_db, keep, drop_existing } => {
            let v = open(&cli)?;
            // Connect first: an unreachable server or an existing scratch database stops the
            // drill before anything is read (exit 1), and is not a failed drill.
            let mut restorer = match (mongo_uri, restore_db) {
                (Some(uri), Some(db)) => {
                    let mut o = RestoreOptions::new(uri, db);
                    o.keep = *keep;
                    o.drop_existing = *drop_existing;
                    Some(Restorer::connect(o)?)
                }
                _ => None,
            };
            let mut pg = match (pg_uri, restore_db) {
                (Some(uri), Some(db)) => {
                    let mut o = PgRestoreOptions::new(uri, db);
                    o.keep = *keep;
                    o.drop_existing = *drop_existing;
                    Some(PgRestorer::connect(o)?)
                }
                _ => None,
            };
            let restorers = drill::Restorers { mongo: restorer.as_mut(), pg: pg.as_mut() };
            let mut rep = drill::drill_all(&v, snapshot, path.as_deref(), restorers)?;
            if let Some(r) = restorer {
                let what = format!("{} on {}", r.database(), r.server());
                match r.close() {
                    Ok(true) => eprintln!("dropped the scratch database {what}"),
                    Ok(false) => eprintln!("kept the scratch database {what}"),
                    Err(e) => {
                        rep.errors.push(format!("restore: {e}"));
                        rep.ok = false;
                    }
                }
            }
            if let Some(r) = pg {
                let (server, kept) = (r.server().to_string(), r.databases().to_vec());
                match r.close() {
                    Ok(d) if !d.is_empty() => eprintln!("dropped the scratch database(s) {} on {server}", d.join(", ")),
                    Ok(_) if !kept.is_empty() => {
                        eprintln!("kept the scratch database(s) {} on {server}", kept.join(", "))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        rep.errors.push(format!("restore: {e}"));
                        rep.ok = false;
                    }
                }
            }
            // A drill of a remote named by --repo is logged in the vault that names it: `status`
            // shows it there, and the next sync carries it to every copy under its manifest.
            let logged = match cli.repo.as_deref().and_then(home_of_remote_name) {
                Some(home) => {
                    drop(v);
                    remote::open_store(&home).map_err(anyhow::Error::from).and_then(|s| {
                        let h = Vault::open(
                            s,
                            &read_secret("VAULT_", false)?,
                            &OpenOptions { cache_dir: cache_dir(&cli) },
                        )?;
                        Ok(drill::log(&h, &rep)?)
                    })
                }
                None => drill::log(&v, &rep).map_err(anyhow::Error::from),
            };
            if let Err(e) = logged {
                eprintln!("warning: could not append to the drill log: {e:#}");
            }
            if *json {
                println!("{}", rep.to_json());
            } else {
                print!("{}", rep.to_text());
            }
            if !rep.ok {
                return Ok(ExitCode::from(4));
            }
        }
        Cmd::Status { max_age_hours } => {
            let v = open(&cli)?;
            let s = status::status(&v)?;
            let when = |t: Option<i64>| {
                t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "?".into())
            };
            println!("vault:           {}", v.store().describe());
            match (&s.newest_period, s.age_seconds) {
                (Some(p), Some(a)) => println!("newest backup:   {p}, last write {:.1} h ago", a / 3600.0),
                _ => println!("newest backup:   none"),
            }
            println!("latest sealed:   {}", s.newest_sealed.as_deref().unwrap_or("none"));
            match &s.current {
                Some((p, sealed, files, bytes)) => println!(
                    "current period:  {p} ({}, {files} files, {})",
                    if *sealed { "sealed" } else { "open" },
                    human(*bytes)
                ),
                None => println!("current period:  {} (nothing written yet)", v.clock().current()),
            }
            for (name, last) in &s.syncs {
                match last {
                    Some(j) => println!(
                        "last sync:       {name} at {} ({} objects uploaded)",
                        when(j["time_unix"].as_i64()),
                        j["uploaded"].as_u64().unwrap_or(0)
                    ),
                    None => println!("last sync:       {name} never"),
                }
            }
            for (label, d) in [("last drill:     ", &s.last_drill), ("last file drill:", &s.last_file_drill)] {
                match d {
                    Some(j) => {
                        println!(
                            "{label} {} at {}: {} (RTO {:.1} s)",
                            status::drill_target(j),
                            when(j["started_unix"].as_i64()),
                            status::drill_result(j),
                            j["rto_seconds"].as_f64().unwrap_or(0.0)
                        );
                        let what = status::drill_summary(j);
                        if !what.is_empty() {
                            println!("                 checked: {what}");
                        }
                    }
                    None if label.starts_with("last drill") => println!("last drill:      never"),
                    None => {}
                }
            }
            match &s.last_job {
                Some(j) => {
                    let cmd: Vec<String> = j["command"]
                        .as_array()
                        .map(|a| a.iter().map(|x| x.as_str().unwrap_or("?").to_string()).collect())
                        .unwrap_or_default();
                    let outcome = match (j["exit_code"].as_i64(), j["signal"].as_i64()) {
                        (_, Some(sig)) => format!("killed by signal {sig}"),
                        (Some(c), _) => format!("exit {c}"),
                        _ => "?".into(),
                    };
                    println!(
                        "last job:        {} at {}: {outcome}{} ({:.0} s)",
                        if j["ok"] == true { "OK" } else { "FAILED" },
                        when(j["started_unix"].as_i64()),
                        match j["interrupted_by"].as_i64() {
                            Some(sig) => format!(", interrupted by signal {sig}"),
                            None => String::new(),
                        },
                        j["seconds"].as_f64().unwrap_or(0.0)
                    );
                    println!("  command:       {}", job::shell_words(&cmd));
                    if let Some(e) = j["error"].as_str() {
                        println!("  error:         {e}");
                    }
                    let files = j["files"].as_array().cloned().unwrap_or_default();
                    for f in files.iter().take(10) {
                        println!(
                            "  file:          {}/{} ({})",
                            f["period"].as_str().unwrap_or("?"),
                            f["path"].as_str().unwrap_or("?"),
                            human(f["size"].as_u64().unwrap_or(0))
                        );
                    }
                    if files.len() > 10 {
                        println!("  ... and {} more files", files.len() - 10);
                    }
                    if files.is_empty() {
                        println!("  files:         none written");
                    }
                }
                None => println!("last job:        none recorded (`vaultctl run`)"),
            }
            if s.last_job_failed() {
                println!("ALERT: the last backup job failed");
                return Ok(ExitCode::from(7));
            }
            let stale = s.age_seconds.map(|a| a > max_age_hours * 3600.0).unwrap_or(true);
            if stale {
                println!("ALERT: no backup in the last {max_age_hours} h");
                return Ok(ExitCode::from(6));
            }
        }
        Cmd::Run { command } => {
            return run_job(&cli, command, Duration::from_secs(cli.lock_wait.unwrap_or(600)));
        }
        Cmd::Mark { paths, failed, complete, .. } => {
            let v = open(&cli)?;
            let state = match (*failed, *complete) {
                (true, _) => FileState::Failed,
                (_, true) => FileState::Complete,
                _ => FileState::Incomplete,
            };
            let period = v.clock().current();
            let changes: Vec<mark::StateChange> = paths
                .iter()
                .map(|p| mark::StateChange { period: period.clone(), path: p.clone(), state, if_content: None })
                .collect();
            let r = mark::set_states(&v, &changes, "vaultctl mark", wait)?;
            for p in &r.sealed_periods {
                eprintln!("sealed period {p}");
            }
            for c in &r.changed {
                println!("marked {c} {}", state_name(state));
            }
            for c in &r.unchanged {
                println!("{c} is already {}", state_name(state));
            }
            for (c, why) in &r.skipped {
                eprintln!("vaultctl: error: {c}: {why}");
            }
            if !r.skipped.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Remote { cmd } => {
            let v = open(&cli)?;
            match cmd {
                RemoteCmd::Add { name, url, keep_all, append_only, object_lock, object_lock_mode } => {
                    let mode = match object_lock_mode.as_str() {
                        "governance" => vault::store::LockMode::Governance,
                        "compliance" => vault::store::LockMode::Compliance,
                        m => bail!("--object-lock-mode {m}: use governance or compliance"),
                    };
                    let mut r = vault::format::remotes::Remote::new(name, url);
                    r.keep_all = *keep_all;
                    r.append_only = *append_only;
                    r.object_lock = object_lock.map(|days| vault::format::remotes::ObjectLock { days, mode });
                    let r = remote::add(&v, r, wait)?;
                    let flags = r.flags();
                    println!(
                        "added remote {} -> {}{}",
                        r.name,
                        r.url,
                        if flags.is_empty() { flags } else { format!(" ({flags})") }
                    );
                }
                RemoteCmd::List => {
                    for r in remote::list(&v)? {
                        let flags = r.flags();
                        println!(
                            "{}  {}{}",
                            r.name,
                            r.url,
                            if flags.is_empty() { flags } else { format!("  {flags}") }
                        );
                    }
                }
                RemoteCmd::Remove { name } => {
                    remote::remove(&v, name, wait)?;
                    println!("removed remote {name}");
                }
            }
        }
        Cmd::Sync { name, verify, dry_run, jobs, bwlimit } => {
            if *jobs == 0 {
                bail!("--jobs must be at least 1");
            }
            let bwlimit = match bwlimit {
                Some(b) => match parse_size(b).with_context(|| format!("--bwlimit {b}"))? {
                    0 => bail!("--bwlimit must be more than 0"),
                    n => Some(n),
                },
                None => None,
            };
            let o = sync::SyncOptions {
                jobs: *jobs,
                bwlimit,
                state_dir: cache_dir(&cli).map(|d| d.join("sync")),
                lock_wait: wait,
            };
            let v = open(&cli)?;
            let r = remote::find(&v, name)?;
            let dst = remote::open_store(&r.url)?;
            if *verify {
                let rep = sync::verify(Some(&v), &r, &dst, &o)?;
                for b in &rep.bad {
                    println!("damaged: {b}");
                }
                for x in &rep.extra {
                    println!("extra: {x} (on the copy, not in its manifest)");
                }
                if rep.not_in_vault > 0 {
                    println!("kept: {} objects the vault no longer has are still on the copy", rep.not_in_vault);
                }
                if rep.not_synced > 0 {
                    println!(
                        "missing: {} objects of the vault are not on the copy yet (the next sync sends them)",
                        rep.not_synced
                    );
                }
                println!(
                    "verified {} objects ({}) on {}: {}",
                    rep.checked,
                    human(rep.bytes),
                    r.name,
                    if rep.bad.is_empty() {
                        "all match the manifest".to_string()
                    } else {
                        format!("{} missing or damaged; the next sync sends them again", rep.bad.len())
                    }
                );
                if !rep.bad.is_empty() {
                    return Ok(ExitCode::from(4));
                }
            } else if *dry_run {
                let p = sync::plan(&v, &r, &*dst, &o)?;
                if let Some(why) = &p.manifest_untrusted {
                    println!(
                        "note: the copy's manifest is not trusted ({why}): every object is checked against the vault"
                    );
                }
                for (k, n, s) in &p.upload {
                    println!("upload {} ({})", k.path(n), human(*s));
                }
                for (k, n) in &p.repair {
                    println!("repair {} (deleted or replaced on the copy since the last sync)", k.path(n));
                }
                for (k, n) in &p.delete {
                    println!("delete {}", k.path(n));
                }
                for (k, n, until) in &p.held {
                    println!(
                        "keep {} (unused, retained until {})",
                        k.path(n),
                        fmt_time_ns(until.saturating_mul(1_000_000_000))
                    );
                }
                if !p.extend.is_empty() {
                    println!("extend the retention of {} objects", p.extend.len());
                }
                for n in &p.not_replaced {
                    println!("not replaced (append-only): {n}");
                }
                println!(
                    "plan for {}: upload {} objects ({}), delete {}, {} already there",
                    r.name,
                    p.upload.len(),
                    human(p.upload_bytes()),
                    p.delete.len(),
                    p.unchanged
                );
            } else {
                let tty = std::io::stderr().is_terminal();
                let progress = |done: u64, total: u64| {
                    if tty && total > 0 {
                        eprint!(
                            "\r{} / {} ({:.0} %)   ",
                            human(done),
                            human(total),
                            done as f64 * 100.0 / total as f64
                        );
                    }
                };
                let rep = sync::sync(&v, &r, &dst, &o, &progress)?;
                if tty {
                    eprintln!();
                }
                if let Some(why) = &rep.plan.manifest_untrusted {
                    println!(
                        "note: the copy's manifest was not trusted ({why}): every object was checked against the vault"
                    );
                }
                if !rep.plan.repair.is_empty() {
                    println!(
                        "repaired {} objects deleted or replaced on the copy since the last sync",
                        rep.plan.repair.len()
                    );
                }
                if r.object_lock.is_some() {
                    println!(
                        "object lock: {} retention dates extended, {} unused objects retained, {} expired versions deleted",
                        rep.extended,
                        rep.plan.held.len(),
                        rep.pruned_versions
                    );
                }
                for n in &rep.not_replaced {
                    println!("not replaced (append-only remote): {n}");
                }
                // Config files change (the remotes registry, the policy); anything else that
                // differs on the copy is damage the sync cannot repair there.
                let damaged: Vec<&String> = rep.not_replaced.iter().filter(|n| n.contains('/')).collect();
                println!(
                    "synced {}: uploaded {} objects ({}), {} already there from an interrupted sync, {} unchanged, deleted {}, in {:.1} s",
                    r.name,
                    rep.uploaded,
                    human(rep.uploaded_bytes),
                    rep.resumed,
                    rep.plan.unchanged,
                    rep.deleted,
                    rep.elapsed.as_secs_f64()
                );
                if !damaged.is_empty() {
                    eprintln!(
                        "vaultctl: error: {} objects differ on the append-only copy and cannot be replaced there; \
                         check it with `vaultctl --repo {} check --read-data`",
                        damaged.len(),
                        r.url
                    );
                    return Ok(ExitCode::from(4));
                }
            }
        }
        Cmd::Policy { cmd } => {
            let v = open(&cli)?;
            match cmd {
                PolicyCmd::Set { keep } => {
                    let p = keep.policy().ok_or_else(|| anyhow!("give at least one --keep-* rule"))?;
                    prune::save_policy(&v, &p, wait)?;
                    println!("policy: {p}");
                }
                PolicyCmd::Show => match prune::load_policy(&v)? {
                    Some(p) => println!("policy: {p}"),
                    None => println!("policy: none (prune needs --keep-* flags)"),
                },
                PolicyCmd::Clear => {
                    prune::save_policy(&v, &Policy::default(), wait)?;
                    println!("policy removed");
                }
            }
        }
        Cmd::Prune { keep, dry_run, max_unused } => {
            let v = open(&cli)?;
            let policy = match keep.policy() {
                Some(p) => p,
                None => prune::load_policy(&v)?.ok_or_else(|| {
                    anyhow!("no retention policy: give --keep-* flags or store one with `vaultctl policy set`")
                })?,
            };
            if !(0.0..=100.0).contains(max_unused) {
                bail!("--max-unused is a percentage (0-100)");
            }
            let o = prune::Options { policy, max_unused: max_unused / 100.0 };
            let p = if *dry_run {
                prune::plan(&v, &o)?
            } else {
                let tty = std::io::stderr().is_terminal();
                let progress = |m: &str| {
                    if tty {
                        eprintln!("{m}");
                    }
                };
                let r = prune::prune(&v, &o, wait, &progress)?;
                print_prune_plan(&r.plan, &policy);
                println!(
                    "pruned: forgot {} snapshots, deleted {} packs, wrote {}; stored {} -> {} in {:.1} s",
                    r.forgotten,
                    r.packs_deleted,
                    r.packs_written,
                    human(r.plan.stored_before),
                    human(r.stored_after),
                    r.elapsed.as_secs_f64()
                );
                return Ok(ExitCode::SUCCESS);
            };
            print_prune_plan(&p, &policy);
            println!("dry run: nothing was changed");
        }
        Cmd::RebuildIndex => {
            let v = open(&cli)?;
            let r = rebuild_index::rebuild_index(&v, wait)?;
            for u in &r.unreadable {
                println!("error: {u}");
            }
            println!(
                "indexed {} blobs from {} packs; replaced {} index files",
                r.blobs, r.packs, r.removed_index_files
            );
            if !r.unreadable.is_empty() {
                return Ok(ExitCode::from(4));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn state_name(s: FileState) -> &'static str {
    match s {
        FileState::Complete => "complete",
        FileState::Incomplete => "incomplete",
        FileState::Failed => "failed",
    }
}

/// `vaultctl run`: note the current period's files, run the command with the vault closed
/// (it writes through the mount or `vaultctl put`), then record the job and mark the files of
/// a failed one. The exit status is the command's, whatever happens in the recording.
fn run_job(cli: &Cli, command: &[OsString], lock_wait: Duration) -> anyhow::Result<ExitCode> {
    let before = {
        let v = open(cli)?;
        // Whatever a mount wrote before the job is committed first, so it is not counted as
        // the job's.
        let w = job::settle(&v, lock_wait).context("waiting for other writers before the job")?;
        let b = job::before(&v).context("reading the current period before the job")?;
        drop(w);
        b
    };
    let forwarding = job::SignalForwarding::install();
    let exec = job::execute(command);
    if let job::Outcome::NotStarted { message, .. } = &exec.outcome {
        eprintln!("vaultctl run: {message}");
    }
    let code = exec.exit_code();
    let record = || -> anyhow::Result<()> {
        let v = open(cli)?;
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
