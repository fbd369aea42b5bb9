//! Retention: `prune` forgets by policy, really frees space, keeps every kept byte readable,
//! and survives being killed at any moment.

mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

fn day(d: u32) -> String {
    format!("2026-11-{d:02} 12:00:00")
}

fn stored(e: &Env) -> u64 {
    packs_by_size(&e.repo).iter().map(|(_, s)| s).sum()
}

/// A month of nightly dumps: each day a file of its own plus a file shared by all days.
fn month(e: &Env, days: u32) -> Vec<Vec<u8>> {
    e.ok_at(&day(1), &["init", "--chunk-avg", "4KiB", "--pack-size", "1MiB", "--time-zone", "UTC"]);
    let shared = data(300_000, 999);
    let sf = e.path("shared");
    std::fs::write(&sf, &shared).unwrap();
    let mut out = Vec::new();
    for d in 1..=days {
        let own = data(600_000, d as u64);
        let f = e.path("own");
        std::fs::write(&f, &own).unwrap();
        e.ok_at(&day(d), &["put", "today", f.to_str().unwrap()]);
        e.ok_at(&day(d), &["put", "shared", sf.to_str().unwrap()]);
        out.push(own);
    }
    out
}

#[test]
fn keep_daily_on_a_month_frees_the_space_of_forgotten_days() {
    let e = Env::new();
    let days = month(&e, 30);
    let at = day(30);
    let before = stored(&e);

    let plan = e.ok_at(&at, &["prune", "--keep-daily", "7", "--dry-run"]);
    assert!(plan.contains("23 forgotten"), "{plan}");
    assert!(plan.contains("dry run"), "{plan}");
    assert_eq!(stored(&e), before, "a dry run changes nothing");
    assert_eq!(e.ok_at(&at, &["snapshots"]).lines().filter(|l| l.starts_with("2026-")).count(), 30);

    let out = e.ok_at(&at, &["prune", "--keep-daily", "7"]);
    assert!(out.contains("forgot 23 snapshots"), "{out}");
    let after = stored(&e);
    // 23 of 30 days' own files (600 kB each, barely compressible) are gone.
    assert!(after * 2 < before, "stored {before} -> {after}: {out}");
    let snaps = e.ok_at(&at, &["snapshots"]);
    let periods: Vec<&str> = snaps.lines().filter(|l| l.starts_with("2026-")).map(|l| &l[..10]).collect();
    assert_eq!(periods, (24..=30).map(|d| format!("2026-11-{d}")).collect::<Vec<_>>(), "{snaps}");
    for d in 24..=30u32 {
        assert_eq!(e.cat(&format!("2026-11-{d}/today")), days[d as usize - 1]);
    }
    assert!(e.ok_at(&at, &["check", "--read-data"]).contains("no errors"));

    // A second prune finds nothing more to forget.
    let again = e.ok_at(&at, &["prune", "--keep-daily", "7"]);
    assert!(again.contains("forgot 0 snapshots"), "{again}");
    assert_eq!(e.cat("2026-11-24/shared"), data(300_000, 999));
}

#[test]
fn the_stored_policy_is_used_without_flags() {
    let e = Env::new();
    month(&e, 6);
    let at = day(6);
    let err = fails(e.cmd_at(Some(&at), &["prune"]).output().unwrap(), &["prune"], 1);
    assert!(err.contains("no retention policy"), "{err}");
    assert!(e.ok_at(&at, &["policy", "show"]).contains("none"));
    assert!(e.ok_at(&at, &["policy", "set", "--keep-last", "2", "--keep-monthly", "6"]).contains("--keep-last 2"));
    assert!(e.ok_at(&at, &["policy", "show"]).contains("--keep-last 2 --keep-monthly 6"));
    let out = e.ok_at(&at, &["prune"]);
    // keep-last 2 keeps days 6 and 5; monthly keeps day 6 (newest of November).
    assert!(out.contains("forgot 4 snapshots"), "{out}");
    e.ok_at(&at, &["policy", "clear"]);
    assert!(e.ok_at(&at, &["policy", "show"]).contains("none"));
}

#[test]
fn never_forgets_the_current_period_or_the_newest_sealed() {
    let e = Env::new();
    month(&e, 3);
    let out = e.ok_at(&day(3), &["prune", "--keep-last", "1"]);
    assert!(out.contains("forgot 1 snapshots"), "{out}");
    let snaps = e.ok_at(&day(3), &["snapshots"]);
    assert!(snaps.contains("2026-11-02") && snaps.contains("2026-11-03"), "{snaps}");
}

#[test]
fn a_prune_killed_at_any_moment_leaves_a_good_vault_and_finishes_next_time() {
    let e = Env::new();
    let days = month(&e, 20);
    let at = day(20);
    for delay_ms in [30u64, 120, 300, 700, 1500] {
        // faketime runs vaultctl as its child: the whole process group is killed, and the
        // check starts only once no process of it is left.
        let mut child = e
            .cmd_at(Some(&at), &["prune", "--keep-daily", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let pgid = child.id() as libc::pid_t;
        // SAFETY: signals a process group this test created; no memory is passed.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        child.wait().unwrap();
        // SAFETY: as above, signal 0 only tests whether the group still exists.
        let t = std::time::Instant::now();
        while unsafe { libc::kill(-pgid, 0) } == 0 {
            assert!(t.elapsed().as_secs() < 60, "the killed prune's processes are still there after 60 s");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // A killed faketime leaves its semaphore and shared memory named after its pid; a
        // later faketime given the same pid would fail on them.
        for f in std::fs::read_dir("/dev/shm").into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.contains("faketime_") && name.ends_with(&format!("_{pgid}")) {
                let _ = std::fs::remove_file(f.path());
            }
        }
        let out = e.ok_at(&at, &["check"]);
        assert!(out.contains("no errors"), "after a kill at {delay_ms} ms: {out}");
        for d in 16..=20u32 {
            assert_eq!(e.cat(&format!("2026-11-{d}/today")), days[d as usize - 1], "after a kill at {delay_ms} ms");
        }
    }
    e.ok_at(&at, &["prune", "--keep-daily", "5"]);
    let out = e.ok_at(&at, &["check", "--read-data"]);
    assert!(out.contains("no errors") && !out.contains("not in any index"), "{out}");
    let plan = e.ok_at(&at, &["prune", "--keep-daily", "5", "--dry-run"]);
    assert!(plan.contains("0 forgotten") && plan.contains("0 unindexed"), "{plan}");
    for d in 16..=20u32 {
        assert_eq!(e.cat(&format!("2026-11-{d}/today")), days[d as usize - 1]);
    }
}
