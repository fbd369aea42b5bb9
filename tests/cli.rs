//! Black-box tests of `vaultctl`: every command, every user-facing error.

mod common;
use common::*;

#[test]
fn round_trip_of_every_read_command() {
    let e = Env::new();
    e.init();
    let a = data(700_000, 1);
    let out = e.put_bytes("today", &a);
    assert!(out.contains("/today"), "{out}");
    // put from standard input, into a sub directory.
    let mut c = e.cmd(&["put", "uploads/report.pdf"]);
    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"pdf bytes").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    let snaps = e.ok(&["snapshots"]);
    let line = snaps.lines().next().unwrap();
    assert!(line.starts_with("20") && line.contains("open") && line.contains("2 files"), "{snaps}");
    let period = &line[..10];

    assert_eq!(e.cat(&format!("{period}/today")), a);
    assert_eq!(e.cat("current/uploads/report.pdf"), b"pdf bytes");
    let ls = e.ok(&["ls", "current"]);
    assert!(ls.contains("today") && ls.contains("uploads"), "{ls}");
    assert!(e.ok(&["ls", "current/uploads"]).contains("report.pdf"));
    assert!(e.ok(&["ls"]).contains(period));

    let dest = e.path("restored");
    e.ok(&["restore", period, dest.to_str().unwrap()]);
    assert_eq!(std::fs::read(dest.join("today")).unwrap(), a);
    assert_eq!(std::fs::read(dest.join("uploads/report.pdf")).unwrap(), b"pdf bytes");
    // Restore refuses to overwrite unless asked.
    let err = e.fails(&["restore", &format!("{period}/today"), dest.to_str().unwrap()], 1);
    assert!(err.contains("exists"), "{err}");
    e.ok(&["restore", "--overwrite", &format!("{period}/today"), dest.to_str().unwrap()]);
    // A destination whose directory does not exist is named as such.
    let nowhere = e.path("no/such/dir/today");
    let err = e.fails(&["restore", &format!("{period}/today"), nowhere.to_str().unwrap()], 1);
    assert!(err.contains("no/such/dir: no such directory") && !err.contains(".vr-"), "{err}");

    let stats = e.ok(&["stats"]);
    assert!(stats.contains("dedup ratio") && stats.contains("packs:"), "{stats}");
    assert!(e.ok(&["check", "--read-data"]).contains("no errors"));

    // Unknown names are clear errors.
    let err = e.fails(&["cat", &format!("{period}/nope")], 1);
    assert!(err.contains("no such file"), "{err}");
    let err = e.fails(&["cat", "1999-01-01/today"], 1);
    assert!(err.contains("no snapshot for period"), "{err}");
    let err = e.fails(&["cat", "latest/today"], 1);
    assert!(err.contains("no sealed snapshot"), "{err}");
    let err = e.fails(&["put", "latest", "/dev/null"], 1);
    assert!(err.contains("reserved"), "{err}");
    let err = e.fails(&["put", "x", e.path("missing-file").to_str().unwrap()], 1);
    assert!(err.contains("missing-file"), "{err}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let e = Env::new();
    e.init();
    e.put_bytes("f", &data(300_000, 2));
    for args in [&["snapshots"][..], &["cat", "current/f"], &["ls", "current"], &["status"], &["stats"]] {
        let mut c = e.cmd(args);
        c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        // The reader goes away before the command prints (it is still unlocking the vault).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        use std::os::unix::process::ExitStatusExt;
        // Ended by SIGPIPE (13) like any Unix tool, or done before the reader left.
        assert!(out.status.signal() == Some(13) || out.status.success(), "{args:?}: {:?} {err}", out.status);
    }
}

/// Flips one byte in the middle of `path`; returns its original bytes.
fn flip_middle(path: &std::path::Path) -> Vec<u8> {
    let orig = std::fs::read(path).unwrap();
    let mut b = orig.clone();
    let at = b.len() / 2;
    b[at] ^= 1;
    std::fs::write(path, &b).unwrap();
    orig
}

/// The largest file of a vault sub directory.
fn largest_in(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir).unwrap().flatten().max_by_key(|e| e.metadata().unwrap().len()).unwrap().path()
}

#[test]
fn a_damaged_snapshot_or_index_file_costs_only_what_it_names() {
    let e = Env::new();
    e.init();
    let (a, b) = (data(400_000, 5), data(300_000, 6));
    let (fa, fb) = (e.path("a"), e.path("b"));
    std::fs::write(&fa, &a).unwrap();
    std::fs::write(&fb, &b).unwrap();
    e.ok_at("2026-11-18 10:00:00", &["put", "a", fa.to_str().unwrap()]);
    e.ok_at("2026-11-19 10:00:00", &["put", "b", fb.to_str().unwrap()]);
    e.ok_at("2026-11-20 10:00:00", &["put", "a", fa.to_str().unwrap()]);
    let periods = |out: &str| out.lines().filter(|l| l.starts_with("2026-")).count();

    // One snapshot revision damaged: the other periods read as before, `snapshots` and
    // `check` name it and exit 4, writes refuse.
    let snap = largest_in(&e.repo.join("snapshots"));
    let orig = flip_middle(&snap);
    let hex = snap.file_name().unwrap().to_string_lossy().into_owned();
    let o = e.run(&["snapshots"]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(4), "{out}{err}");
    assert_eq!(periods(&out), 2, "{out}");
    assert!(err.contains(&hex) && err.contains("offsite copy"), "{err}");
    let mut read = 0;
    for (spec, want) in [("2026-11-18/a", &a), ("2026-11-19/b", &b), ("2026-11-20/a", &a)] {
        let o = e.run(&["cat", spec]);
        if o.status.success() {
            assert!(o.stdout == *want, "{spec}");
            read += 1;
        }
    }
    assert_eq!(read, 2, "the two intact periods read back");
    let o = e.run(&["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains(&hex) && out.contains("checked 2 snapshots"), "{out}");
    let err = e.fails(&["put", "c", fa.to_str().unwrap()], 4);
    assert!(err.contains("offsite copy"), "{err}");
    // Monitoring still works: the age of the newest backup is known from the others.
    let o = e.run(&["status", "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"newest_backup\":{"), "{o:?}");
    assert!(e.run(&["stats"]).status.success());
    std::fs::write(&snap, orig).unwrap();
    assert_eq!(periods(&e.ok(&["snapshots"])), 3);

    // A damaged log entry: status and report say so, check names it.
    e.ok(&["run", "--", "true"]);
    let log = largest_in(&e.repo.join("logs"));
    let orig = flip_middle(&log);
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    let o = e.run(&["status"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 log entries cannot be read"), "{o:?}");
    let report = e.ok(&["report", "--format", "md"]);
    assert!(report.contains("log entries cannot be read"), "{report}");
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&name));
    std::fs::write(&log, orig).unwrap();

    // The largest index file damaged (and the local cache gone, as on a new machine): every
    // command still opens the vault and says what to do; rebuild-index mends it.
    flip_middle(&largest_in(&e.repo.join("index")));
    std::fs::remove_dir_all(&e.cache).unwrap();
    let o = e.run(&["ls"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rebuild-index"));
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(4));
    let err = e.fails(&["prune", "--keep-last", "1"], 4);
    assert!(err.contains("rebuild-index"), "{err}");
    e.ok(&["rebuild-index"]);
    assert_eq!(e.cat("2026-11-18/a"), a);
    assert_eq!(e.cat("2026-11-19/b"), b);
    assert_eq!(e.cat("2026-11-20/a"), a);
    let o = e.run(&["check", "--read-data"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).is_empty(), "{o:?}");
}

#[test]
fn a_clock_behind_the_vault_cannot_backdate_a_snapshot() {
    let e = Env::new();
    e.init();
    let f = e.path("f");
    std::fs::write(&f, b"the newest backup").unwrap();
    e.ok_at("2026-11-20 10:00:00", &["put", "today", f.to_str().unwrap()]);
    let o = e.cmd_at(Some("2026-11-18 10:00:00"), &["put", "today", f.to_str().unwrap()]).output().unwrap();
    let err = fails(o, &["put"], 1);
    assert!(err.contains("2026-11-20") && err.contains("refusing to write into the past"), "{err}");
    let snaps = e.ok_at("2026-11-20 11:00:00", &["snapshots"]);
    assert!(!snaps.contains("2026-11-18") && snaps.contains("2026-11-20"), "{snaps}");
}

#[test]
fn stats_counts_what_the_expansion_of_a_gzip_file_saved() {
    let e = Env::new();
    e.init();
    let text: Vec<u8> = (0..40_000u32)
        .flat_map(|i| {
            format!("{{\"_id\": {i}, \"name\": \"user{}\", \"score\": {}}}\n", i * 7919 % 1000, i % 97).into_bytes()
        })
        .collect();
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&text).unwrap();
    let gz = gz.finish().unwrap();
    e.put_bytes("dump.json", &text);
    let out = e.put_bytes("dump.json.gz", &gz);
    assert!(out.contains("expanded"), "{out}");
    let stats = e.ok(&["stats"]);
    let line = stats.lines().find(|l| l.starts_with("expansion saved:")).unwrap_or_else(|| panic!("{stats}"));
    // The expanded content is the plain file's: the whole gzip file is saved (less its recipe).
    assert!(!line.contains(" -"), "{line}");
    let saved = line.split_whitespace().nth(2).unwrap().parse::<f64>().unwrap();
    let unit = line.split_whitespace().nth(3).unwrap();
    let saved_bytes = saved
        * if unit.starts_with("KiB") {
            1024.0
        } else if unit.starts_with("MiB") {
            1048576.0
        } else {
            1.0
        };
    assert!(saved_bytes > gz.len() as f64 * 0.8, "{line} (gzip file {} bytes)", gz.len());
}

#[test]
fn init_refuses_non_empty_directory() {
    let e = Env::new();
    std::fs::create_dir_all(&e.repo).unwrap();
    std::fs::write(e.repo.join("precious"), b"x").unwrap();
    let err = e.fails(&["init"], 1);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(e.repo.join("precious")).unwrap(), b"x");
}

#[test]
fn wrong_secret_exits_3_and_writes_nothing() {
    let mut e = Env::new();
    e.init();
    e.put_bytes("f", b"hello");
    let before = e.fingerprint();
    e.secret.1 = "not the passphrase".into();
    for args in [&["snapshots"][..], &["put", "g", "/dev/null"], &["seal"], &["key", "list"], &["check"]] {
        let err = e.fails(args, 3);
        assert!(err.contains("wrong passphrase"), "{err}");
    }
    e.secret = ("VAULT_KEY".into(), "ab".repeat(32));
    let err = e.fails(&["snapshots"], 3);
    assert!(err.contains("wrong raw key"), "{err}");
    assert_eq!(before, e.fingerprint());
}

#[test]
fn secrets_come_only_from_the_environment() {
    let mut e = Env::new();
    e.secret = ("VAULT_KEY".into(), "0123456789abcdef".repeat(4));
    e.init();
    e.put_bytes("f", b"raw key vault");
    // The same key from a file, with a trailing newline.
    let kf = e.path("key.txt");
    std::fs::write(&kf, format!("{}\n", "0123456789abcdef".repeat(4))).unwrap();
    e.secret = ("VAULT_KEY_FILE".into(), kf.display().to_string());
    assert_eq!(e.cat("current/f"), b"raw key vault");
    e.secret = ("VAULT_KEY".into(), "xyz".into());
    let err = e.fails(&["snapshots"], 1);
    assert!(err.contains("64 hexadecimal"), "{err}");
    // Two secrets at once are ambiguous.
    let mut c = e.cmd(&["snapshots"]);
    c.env("VAULT_PASSPHRASE", "p");
    let err = fails(c.output().unwrap(), &["snapshots"], 1);
    assert!(err.contains("set only one"), "{err}");
    // No secret and no terminal.
    let mut c = e.cmd(&["snapshots"]);
    c.env_remove("VAULT_KEY");
    let err = fails(c.output().unwrap(), &["snapshots"], 1);
    assert!(err.contains("no secret given"), "{err}");
}

#[test]
fn garbage_config_and_unknown_version() {
    let e = Env::new();
    e.init();
    let cfg = e.repo.join("config");
    let good = std::fs::read(&cfg).unwrap();
    std::fs::write(&cfg, b"this is not a vault config").unwrap();
    let err = e.fails(&["snapshots"], 4);
    assert!(err.contains("not a vault"), "{err}");
    let mut future = good.clone();
    future[8] = 7;
    std::fs::write(&cfg, &future).unwrap();
    let err = e.fails(&["snapshots"], 1);
    assert!(err.contains("format version 7 is not supported"), "{err}");
    std::fs::remove_file(&cfg).unwrap();
    let err = e.fails(&["snapshots"], 1);
    assert!(err.contains("not a vault"), "{err}");
    std::fs::write(&cfg, &good).unwrap();
    e.ok(&["snapshots"]);
}

/// Two files in separate packs: the big one (damaged in the tests) and a small one.
fn two_files(e: &Env) -> (Vec<u8>, Vec<u8>, std::path::PathBuf) {
    e.init();
    let big = data(1_500_000, 3);
    e.put_bytes("big", &big);
    let packs_before: Vec<_> = packs_by_size(&e.repo).into_iter().map(|(p, _)| p).collect();
    // No repeated text in it (`data` has some): no chunk of it can be one of `big`'s, so no
    // damage to `big`'s packs may reach it, whatever chunk boundaries the vault's seed gives.
    let mut x = 0x2545F4914F6CDD1Du64;
    let small: Vec<u8> = (0..20_000 / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    e.put_bytes("small", &small);
    let big_pack = packs_before[0].clone();
    (big, small, big_pack)
}

#[test]
fn flipped_byte_in_a_pack() {
    let e = Env::new();
    let (big, small, pack) = two_files(&e);
    let mut b = std::fs::read(&pack).unwrap();
    b[100] ^= 0x01;
    std::fs::write(&pack, &b).unwrap();
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();

    let o = e.run(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(4));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&name[..8]), "check must name the pack: {out}");
    assert!(out.contains("/big"), "check must name the affected file: {out}");
    assert!(!out.contains("/small"), "{out}");

    let o = e.run(&["cat", "current/big"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("authentication failed"));
    assert!(big.starts_with(&o.stdout), "cat printed bytes that are not the file's");
    assert!(o.stdout.len() < big.len());
    assert_eq!(e.cat("current/small"), small);
}

#[test]
fn truncated_and_missing_packs() {
    let e = Env::new();
    let (_, small, pack) = two_files(&e);
    let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
    f.set_len(1000).unwrap();
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(4));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("truncated or damaged") && out.contains("/big"), "{out}");
    e.fails(&["cat", "current/big"], 4);
    assert_eq!(e.cat("current/small"), small);

    std::fs::remove_file(&pack).unwrap();
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(4));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("is missing") && out.contains("/big"), "{out}");
    let err = e.fails(&["cat", "current/big"], 4);
    assert!(err.contains("missing"), "{err}");
    assert_eq!(e.cat("current/small"), small);
}

#[test]
fn damaged_metadata_files() {
    let e = Env::new();
    let (_, _, _) = two_files(&e);
    let flip = |p: &std::path::Path| {
        let mut b = std::fs::read(p).unwrap();
        let n = b.len();
        b[n / 2] ^= 0x80;
        std::fs::write(p, &b).unwrap();
        b
    };
    let first = |d: &str| std::fs::read_dir(e.repo.join(d)).unwrap().next().unwrap().unwrap().path();

    // Snapshot revision: reading commands fail clearly, check names it.
    let snap = first("snapshots");
    let mut b = flip(&snap);
    let err = e.fails(&["snapshots"], 4);
    assert!(err.contains("snapshot") && err.contains("authentication failed"), "{err}");
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stdout).contains("snapshot revision"));
    let n = b.len();
    b[n / 2] ^= 0x80;
    std::fs::write(&snap, &b).unwrap();

    // Index file.
    let idx = first("index");
    flip(&idx);
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(4));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("index file"), "{out}");
}

#[test]
fn cache_and_index_are_rebuildable() {
    let e = Env::new();
    e.init();
    let d = data(300_000, 5);
    e.put_bytes("f", &d);
    std::fs::remove_dir_all(&e.cache).unwrap();
    assert_eq!(e.cat("current/f"), d);
    // Garbage in the cache is thrown away.
    let idx_dir = std::fs::read_dir(&e.cache).unwrap().next().unwrap().unwrap().path().join("index");
    for f in std::fs::read_dir(&idx_dir).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    assert_eq!(e.cat("current/f"), d);
    // Index files lost: rebuilt from the packs.
    std::fs::remove_dir_all(e.repo.join("index")).unwrap();
    std::fs::remove_dir_all(&e.cache).unwrap();
    let err = e.fails(&["cat", "current/f"], 4);
    assert!(err.contains("rebuild-index"), "{err}");
    assert!(e.ok(&["rebuild-index"]).contains("indexed"));
    assert_eq!(e.cat("current/f"), d);
    assert!(e.ok(&["check", "--read-data"]).contains("no errors"));
}

#[test]
fn key_commands() {
    let e = Env::new();
    e.init();
    e.put_bytes("f", b"x");
    let mut c = e.cmd(&["key", "add", "--label", "backup-operator"]);
    c.env("VAULT_NEW_PASSPHRASE", "second passphrase");
    let out = ok(c.output().unwrap(), &["key", "add"]);
    assert!(out.contains("added key slot"), "{out}");
    let list = e.ok(&["key", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains("backup-operator") && list.contains("(used now)"), "{list}");
    let operator = list.lines().find(|l| l.contains("backup-operator")).unwrap();
    assert!(operator.contains("[Argon2id 64 MiB, 3 passes, 4 lanes]"), "{list}");

    let mut other = Env { secret: ("VAULT_PASSPHRASE".into(), "second passphrase".into()), ..Env::new() };
    other.repo = e.repo.clone();
    other.cache = e.cache.clone();
    assert_eq!(other.cat("current/f"), b"x");

    // passwd on the first slot.
    let mut c = e.cmd(&["key", "passwd"]);
    c.env("VAULT_NEW_PASSPHRASE", "third passphrase");
    ok(c.output().unwrap(), &["key", "passwd"]);
    e.fails(&["snapshots"], 3);
    let mut third = Env { secret: ("VAULT_PASSPHRASE".into(), "third passphrase".into()), ..Env::new() };
    third.repo = e.repo.clone();
    third.cache = e.cache.clone();
    let list = third.ok(&["key", "list"]);
    let other_id = list.lines().find(|l| l.contains("backup-operator")).unwrap()[..12].to_string();
    third.ok(&["key", "remove", &other_id]);
    other.fails(&["snapshots"], 3);
    let mine = third.ok(&["key", "list"]).lines().next().unwrap()[..12].to_string();
    let err = third.fails(&["key", "remove", &mine], 1);
    assert!(err.contains("last key slot"), "{err}");
    assert_eq!(third.cat("current/f"), b"x");
}

#[test]
fn periods_roll_over_and_seal_by_the_vault_clock() {
    let e = Env::new();
    let day1 = "2026-11-20 10:00:00";
    let day2 = "2026-11-21 09:00:00";
    e.ok_at(day1, &["init", "--chunk-avg", "4KiB", "--time-zone", "UTC"]);
    let f = e.path("in");
    std::fs::write(&f, data(100_000, 1)).unwrap();
    let out = e.ok_at(day1, &["put", "today", f.to_str().unwrap()]);
    assert!(out.contains("2026-11-20/today"), "{out}");
    assert!(e.ok_at(day1, &["snapshots"]).contains("2026-11-20  open"));
    let mut d2 = data(100_000, 1);
    d2[500] ^= 1;
    std::fs::write(&f, &d2).unwrap();
    let o = e.cmd_at(Some(day2), &["put", "today", f.to_str().unwrap()]).output().unwrap();
    let out = ok(o.clone(), &["put"]);
    assert!(out.contains("2026-11-21/today"), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sealed period 2026-11-20"), "{err}");
    let snaps = e.ok_at(day2, &["snapshots"]);
    assert!(snaps.contains("2026-11-20  sealed") && snaps.contains("2026-11-21  open"), "{snaps}");
    assert_eq!(e.cat("latest/today"), data(100_000, 1));
    assert_eq!(e.cat("2026-11-21/today"), d2);
    // Sealing now makes the current period immutable until the next one.
    assert!(e.ok_at(day2, &["seal"]).contains("sealed 2026-11-21"));
    let err = fails(e.cmd_at(Some(day2), &["put", "more", "/dev/null"]).output().unwrap(), &["put"], 1);
    assert!(err.contains("sealed"), "{err}");
    assert!(e.ok_at(day2, &["seal"]).contains("nothing to seal"));
    assert_eq!(e.cat("latest/today"), d2);
    // A period left open when it ended is sealed by the next `seal`, which says so.
    e.ok_at("2026-11-22 09:00:00", &["put", "today", f.to_str().unwrap()]);
    let out = e.ok_at("2026-11-24 09:00:00", &["seal"]);
    assert!(out.contains("sealed 2026-11-22") && !out.contains("nothing to seal"), "{out}");
}

#[test]
fn hourly_periods_in_the_vault_time_zone() {
    let e = Env::new();
    let t = "2026-11-20 23:30:00";
    e.ok_at(t, &["init", "--period", "hour", "--time-zone", "Europe/Paris"]);
    let out = e.ok_at(t, &["put", "db.archive", "/dev/null"]);
    assert!(out.contains("2026-11-21T00/db.archive"), "{out}");
}
