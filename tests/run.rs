//! Black-box tests of `vaultctl run` (backup jobs), the failed mark it leaves, and how
//! `ls`, `snapshots`, `drill`, `status` and `mark` show and use it.

mod common;
use common::*;
use std::process::Stdio;

/// A raw key: no passphrase derivation per command, so the many invocations stay fast.
const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn env() -> Env {
    let mut e = Env::new();
    e.secret = ("VAULT_KEY".into(), KEY.into());
    e.init();
    e
}

/// A shell command storing `input` as `name` through an inner `vaultctl put`, which works
/// because `run` holds neither the vault nor its lock while the job runs.
fn put_cmd(e: &Env, name: &str, seed: u64) -> String {
    let input = e.path(&format!("input-{name}"));
    std::fs::write(&input, data(50_000, seed)).unwrap();
    format!("'{}' put {name} '{}'", vaultctl_bin().display(), input.display())
}

fn current_period(e: &Env) -> String {
    e.ok(&["snapshots"]).lines().last().unwrap()[..10].to_string()
}

fn ls_line(ls: &str, name: &str) -> String {
    ls.lines().find(|l| l.split_whitespace().nth(4) == Some(name)).unwrap_or_else(|| panic!("{name}: {ls}")).into()
}

#[test]
fn a_failed_job_marks_its_files_and_status_drill_and_snapshots_show_it() {
    let e = env();
    // Written before the job: never marked.
    e.put_bytes("before.dump", &data(10_000, 9));
    let job = format!("{} && exit 3", put_cmd(&e, "a.dump", 1));
    let o = e.run(&["run", "--", "sh", "-c", &job]);
    let stderr = fails(o, &["run"], 3);
    assert!(stderr.contains("job FAILED (exit 3)"), "{stderr}");
    assert!(stderr.contains("marked") && stderr.contains("a.dump failed"), "{stderr}");

    let ls = e.ok(&["ls", "current"]);
    assert!(ls_line(&ls, "a.dump").ends_with("[failed]"), "{ls}");
    assert!(!ls_line(&ls, "before.dump").contains('['), "{ls}");
    let snaps = e.ok(&["snapshots"]);
    assert!(snaps.contains("2 files") && snaps.contains("[1 failed]"), "{snaps}");
    // The content is kept: the mark is metadata only.
    assert_eq!(e.cat("current/a.dump"), data(50_000, 1));

    let period = current_period(&e);
    let o = e.run(&["drill", "--snapshot", &period]);
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stdout));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("a.dump: marked failed by its backup job") && !out.contains("before.dump: marked"), "{out}");

    let o = e.run(&["status"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(7), "{out}");
    assert!(out.contains("last job:        FAILED") && out.contains("exit 3"), "{out}");
    assert!(out.contains(&format!("{period}/a.dump")) && !out.contains("before.dump"), "{out}");
    assert!(out.contains("ALERT: the last backup job failed"), "{out}");

    // An operator clears the mark; a later successful job clears the alert.
    assert!(e.ok(&["mark", "a.dump", "--complete"]).contains("marked"));
    assert!(!ls_line(&e.ok(&["ls", "current"]), "a.dump").contains('['));
    let o = e.run(&["run", "--", "sh", "-c", &put_cmd(&e, "b.dump", 2)]);
    let stderr = ok_stderr(o);
    assert!(stderr.contains("job ok (1 files written)"), "{stderr}");
    let ls = e.ok(&["ls", "current"]);
    assert!(!ls_line(&ls, "b.dump").contains('['), "{ls}");
    let out = e.ok(&["status"]);
    assert!(out.contains("last job:        OK") && out.contains("/b.dump"), "{out}");
    assert!(!e.ok(&["snapshots"]).contains("failed"));
}

fn ok_stderr(o: std::process::Output) -> String {
    assert!(o.status.success(), "{:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_job_killed_by_a_signal_exits_128_plus_signal() {
    let e = env();
    let job = format!("{}; kill -KILL $$", put_cmd(&e, "k.dump", 3));
    fails(e.run(&["run", "--", "sh", "-c", &job]), &["run"], 137);
    assert!(ls_line(&e.ok(&["ls", "current"]), "k.dump").ends_with("[failed]"));
    let o = e.run(&["status"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(7), "{out}");
    assert!(out.contains("killed by signal 9"), "{out}");
}

#[test]
fn commands_that_cannot_start_exit_127_and_126() {
    let e = env();
    let err = fails(e.run(&["run", "--", "no-such-command-anywhere", "x"]), &["run"], 127);
    assert!(err.contains("no-such-command-anywhere: command not found"), "{err}");
    let o = e.run(&["status"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(7), "{out}");
    assert!(out.contains("exit 127") && out.contains("command not found"), "{out}");

    let script = e.path("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let err = fails(e.run(&["run", "--", script.to_str().unwrap()]), &["run"], 126);
    assert!(err.contains("not-executable.sh"), "{err}");
    // Usage errors stay usage errors.
    fails(e.run(&["run"]), &["run"], 2);
}

#[test]
fn sigterm_to_run_reaches_the_job_and_the_job_is_recorded_failed() {
    let e = env();
    let started = e.path("started");
    let job = format!("{} && touch '{}' && exec sleep 30", put_cmd(&e, "t.dump", 4), started.display());
    let mut c = e.cmd(&["run", "--", "sh", "-c", &job]);
    let child = c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t = std::time::Instant::now();
    while !started.exists() {
        assert!(t.elapsed().as_secs() < 30, "the job did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(t.elapsed().as_secs() < 20, "the job was not ended by the forwarded signal");
    assert_eq!(o.status.code(), Some(143), "{stderr}");
    assert!(ls_line(&e.ok(&["ls", "current"]), "t.dump").ends_with("[failed]"), "{stderr}");
    let out = String::from_utf8_lossy(&e.run(&["status"]).stdout).into_owned();
    assert!(out.contains("killed by signal 15, interrupted by signal 15"), "{out}");
}

#[test]
fn a_job_across_the_end_of_a_period_is_marked_in_the_period_holding_its_files() {
    let e = env();
    // The job writes at 23:59:58 and fails after midnight; `run` records after midnight.
    let job = format!("{} && sleep 2.5 && exit 1", put_cmd(&e, "late.dump", 5));
    let o = e.cmd_at(Some("2026-01-10 23:59:58"), &["run", "--", "sh", "-c", &job]).output().unwrap();
    let stderr = fails(o, &["run"], 1);
    assert!(stderr.contains("marked 2026-01-10/late.dump failed"), "{stderr}");
    assert!(ls_line(&e.ok(&["ls", "2026-01-10"]), "late.dump").ends_with("[failed]"));
    // The ended period was sealed after its mark was written.
    let snaps = e.ok(&["snapshots"]);
    assert!(snaps.contains("2026-01-10  sealed") && snaps.contains("[1 failed]"), "{snaps}");
}

#[test]
fn mark_refuses_what_is_not_there() {
    let e = env();
    e.put_bytes("x.dump", b"x");
    let err = e.fails(&["mark", "nope.dump", "--failed"], 1);
    assert!(err.contains("nope.dump: no such file"), "{err}");
    e.fails(&["mark", "x.dump"], 2);
    assert!(e.ok(&["mark", "x.dump", "--failed"]).contains("x.dump failed"));
    assert!(e.ok(&["mark", "x.dump", "--failed"]).contains("already failed"));
    assert!(e.ok(&["snapshots"]).contains("[1 failed]"));
}
