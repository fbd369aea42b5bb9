//! `run`: a backup job. Runs a command (usually writing into the mount, or `vaultctl put`),
//! finds the files of the current period that it created or changed by comparing the newest
//! committed revision before and after, records the job in the vault's log, and marks the
//! files of a failed job `Failed` (mark.rs).
//!
//! Must never hold the vault open or the writer lock while the command runs: the command
//! itself writes. Files written by others during the job are indistinguishable from the job's
//! own and are counted as its files.

use super::mark::{self, MarkReport, StateChange};
use crate::error::Result;
use crate::format::log::{JobFileRecord, JobRecord, Record};
use crate::format::tree::{Content, FileState, Node, NodeKind};
use crate::repo::trees::show;
use crate::repo::Vault;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The files of the current period when a job starts.
#[derive(Debug, Clone, Default)]
pub struct Before {
    pub period: String,
    files: HashMap<String, Node>,
}

/// A file the job created or changed.
#[derive(Debug, Clone)]
pub struct JobFile {
    pub period: String,
    pub path: String,
    pub size: u64,
    pub content: Content,
}

/// Waits until no other writer holds the vault (a mount gives the writer lock back only once
/// everything written through it is committed), so that the committed revisions show
/// everything written so far. The session returned holds the lock; ended periods stay open.
pub fn settle<'v>(v: &'v Vault, lock_wait: Duration) -> Result<crate::repo::WriteSession<'v>> {
    v.begin_write_keeping_ended("vaultctl run", lock_wait)
}

/// Every regular file of the current period's newest committed revision.
pub fn before(v: &Vault) -> Result<Before> {
    let period = v.clock().current();
    let mut files = HashMap::new();
    if let Some(s) = v.snapshots()?.into_iter().find(|s| s.snap.period == period) {
        v.walk(s.snap.root, &mut |p, n| {
            if matches!(n.kind, NodeKind::File { .. }) {
                files.insert(show(p), n.clone());
            }
            Ok(())
        })?;
    }
    Ok(Before { period, files })
}

/// The files created or changed (content, size or modification time) since `before`: in the
/// period the job started in, and every file of the periods that began during the job.
pub fn written_since(v: &Vault, before: &Before) -> Result<Vec<JobFile>> {
    let mut out = Vec::new();
    for s in v.snapshots()? {
        if s.snap.period < before.period {
            continue;
        }
        let same = s.snap.period == before.period;
        v.walk(s.snap.root, &mut |p, n| {
            let NodeKind::File { content, .. } = &n.kind else { return Ok(()) };
            let path = show(p);
            let old = if same { before.files.get(&path) } else { None };
            let unchanged = old.is_some_and(|o| {
                o.size == n.size
                    && o.mtime == n.mtime
                    && matches!(&o.kind, NodeKind::File { content: c, .. } if c == content)
            });
            if !unchanged {
                out.push(JobFile { period: s.snap.period.clone(), path, size: n.size, content: content.clone() });
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    /// It could not be started: exit code 127 (not found) or 126 (not executable), as a shell.
    NotStarted {
        code: u8,
        message: String,
    },
}

/// What became of one run of a command.
#[derive(Debug, Clone)]
pub struct Execution {
    pub command: Vec<String>,
    pub started_unix: i64,
    pub ended_unix: i64,
    /// The same in nanoseconds (orders jobs that end within one second).
    pub ended_unix_ns: i64,
    pub seconds: f64,
    pub outcome: Outcome,
    /// A signal that `vaultctl run` itself received (and forwarded) while the command ran.
    pub interrupted_by: Option<i32>,
}

impl Execution {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Exited(0) && self.interrupted_by.is_none()
    }

    /// The exit status to report: the command's, 128 + signal when a signal ended it.
    pub fn exit_code(&self) -> u8 {
        match &self.outcome {
            Outcome::Exited(0) => self.interrupted_by.map(|s| (128 + s).clamp(1, 255) as u8).unwrap_or(0),
            Outcome::Exited(c) => (*c).clamp(0, 255) as u8,
            Outcome::Signaled(s) => (128 + s).clamp(1, 255) as u8,
            Outcome::NotStarted { code, .. } => *code,
        }
    }

    /// `exit 3`, `killed by signal 15 (SIGTERM)`, `not started: ...`.
    pub fn describe(&self) -> String {
        let s = match &self.outcome {
            Outcome::Exited(c) => format!("exit {c}"),
            Outcome::Signaled(s) => format!("killed by signal {s}{}", signal_name(*s)),
            Outcome::NotStarted { message, .. } => format!("not started: {message}"),
        };
        match self.interrupted_by {
            Some(sig) => format!("{s}, interrupted by signal {sig}{}", signal_name(sig)),
            None => s,
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => " (SIGHUP)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGQUIT => " (SIGQUIT)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGABRT => " (SIGABRT)",
        _ => "",
    }
}

/// The job's entry in the vault's log.
pub fn job_entry(e: &Execution, files: &[JobFile]) -> JobRecord {
    let (exit_code, signal, error) = match &e.outcome {
        Outcome::Exited(c) => (Some(*c), None, None),
        Outcome::Signaled(s) => (None, Some(*s), None),
        Outcome::NotStarted { code, message } => (Some(*code as i32), None, Some(message.clone())),
    };
    JobRecord {
        command: e.command.clone(),
        host: crate::repo::writer::hostname(),
        started_unix: e.started_unix,
        time_unix: e.ended_unix,
        ended_unix: e.ended_unix,
        ended_unix_ns: e.ended_unix_ns,
        seconds: e.seconds,
        exit_code,
        signal,
        interrupted_by: e.interrupted_by,
        error,
        ok: e.ok(),
        files: files
            .iter()
            .map(|f| JobFileRecord { period: f.period.clone(), path: f.path.clone(), size: f.size })
            .collect(),
    }
}

/// Appends the job to the vault's log (needs no lock).
pub fn log(v: &Vault, e: &Execution, files: &[JobFile]) -> Result<()> {
    crate::repo::log::append(v, &Record::Job(job_entry(e, files))).map(|_| ())
}

/// Marks the job's files failed, each only while it still has the content the job wrote, in
/// the session taken by [`settle`].
pub fn mark_failed(w: &mut crate::repo::WriteSession<'_>, files: &[JobFile]) -> Result<MarkReport> {
    let changes: Vec<StateChange> = files
        .iter()
        .map(|f| StateChange {
            period: f.period.clone(),
            path: f.path.clone(),
            state: FileState::Failed,
            if_content: Some(f.content.clone()),
        })
        .collect();
    mark::set_states_in(w, &changes)
}

/// The command line as a shell would show it (arguments with special characters quoted).
pub fn shell_words(cmd: &[String]) -> String {
    cmd.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The running child's pid (0: none), for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The last signal received while forwarding (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
static FORWARDED: AtomicBool = AtomicBool::new(false);
const FORWARD: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    RECEIVED.store(sig, Ordering::SeqCst);
    // A signal from the terminal (Ctrl-C) reached the child already, as it is in the same
    // process group: forward only what a process sent to us alone (kill, systemd).
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } > 0;
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 && !from_kernel {
        FORWARDED.store(true, Ordering::SeqCst);
        // SAFETY: kill is async-signal-safe and takes plain integers.
        unsafe { libc::kill(pid, sig) };
    }
}

/// While alive, SIGINT, SIGTERM and SIGHUP do not end this process but are passed on to the
/// running command; dropping it restores the previous handling.
pub struct SignalForwarding {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalForwarding {
    pub fn install() -> Self {
        RECEIVED.store(0, Ordering::SeqCst);
        let mut old = Vec::new();
        for sig in FORWARD {
            // SAFETY: sigaction with a zeroed, then filled struct; the handler only touches
            // atomics and calls kill.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
        }
        SignalForwarding { old }
    }
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        for (sig, prev) in &self.old {
            // SAFETY: restores an action returned by sigaction.
            unsafe { libc::sigaction(*sig, prev, std::ptr::null_mut()) };
        }
    }
}

/// Runs `argv` with this process's standard streams and waits for it. Call with a
/// [`SignalForwarding`] alive so that an interruption reaches the command and is recorded.
pub fn execute(argv: &[OsString]) -> Execution {
    let command: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let started_unix = crate::repo::now_unix();
    let t = Instant::now();
    let outcome = match argv.split_first() {
        None => Outcome::NotStarted { code: 127, message: "no command given".into() },
        Some((prog, args)) => match std::process::Command::new(prog).args(args).spawn() {
            Err(e) => {
                let name = prog.to_string_lossy();
                match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        Outcome::NotStarted { code: 127, message: format!("{name}: command not found") }
                    }
                    _ => Outcome::NotStarted { code: 126, message: format!("{name}: {e}") },
                }
            }
            Ok(mut child) => {
                CHILD.store(child.id() as i32, Ordering::SeqCst);
                FORWARDED.store(false, Ordering::SeqCst);
                // A signal that came before the pid was known is passed on now.
                let early = RECEIVED.load(Ordering::SeqCst);
                if early != 0 && !FORWARDED.swap(true, Ordering::SeqCst) {
                    // SAFETY: plain integers; the child has not been waited for, so its pid is ours.
                    unsafe { libc::kill(child.id() as i32, early) };
                }
                let status = child.wait();
                CHILD.store(0, Ordering::SeqCst);
                match status {
                    Ok(s) => match (s.code(), s.signal()) {
                        (Some(c), _) => Outcome::Exited(c),
                        (None, Some(sig)) => Outcome::Signaled(sig),
                        (None, None) => Outcome::Exited(1),
                    },
                    Err(e) => Outcome::NotStarted { code: 126, message: format!("waiting for the command: {e}") },
                }
            }
        },
    };
    let received = RECEIVED.load(Ordering::SeqCst);
    let ended_unix_ns = crate::repo::now_unix_ns();
    Execution {
        command,
        started_unix,
        ended_unix: ended_unix_ns.div_euclid(1_000_000_000),
        ended_unix_ns,
        seconds: t.elapsed().as_secs_f64(),
        outcome,
        interrupted_by: (received != 0).then_some(received),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        let e = |outcome, interrupted_by| Execution {
            command: vec![],
            started_unix: 0,
            ended_unix: 0,
            ended_unix_ns: 0,
            seconds: 0.0,
            outcome,
            interrupted_by,
        };
        assert_eq!(e(Outcome::Exited(0), None).exit_code(), 0);
        assert!(e(Outcome::Exited(0), None).ok());
        assert_eq!(e(Outcome::Exited(3), None).exit_code(), 3);
        assert_eq!(e(Outcome::Signaled(9), None).exit_code(), 137);
        assert_eq!(e(Outcome::Exited(0), Some(15)).exit_code(), 143);
        assert!(!e(Outcome::Exited(0), Some(15)).ok());
        assert_eq!(e(Outcome::NotStarted { code: 127, message: String::new() }, None).exit_code(), 127);
    }

    #[test]
    fn command_lines_are_shown_quoted() {
        let c = |v: &[&str]| shell_words(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(c(&["mongodump", "--archive=/mnt/vault/today"]), "mongodump --archive=/mnt/vault/today");
        assert_eq!(c(&["sh", "-c", "exit 3"]), "sh -c 'exit 3'");
        assert_eq!(c(&["echo", "it's"]), r"echo 'it'\''s'");
    }
}
