//! Offsite sync to the network remote kinds, against real servers on loopback: S3 (moto),
//! rclone with a local-type remote, and rclone with an S3-type remote on the same server. For
//! each: the store conformance suite; a week of daily snapshots synced, then read back from
//! the remote alone with a fresh cache (every file compared) and `check --read-data`; writes
//! to a remote URL refused; syncs killed at several moments and resumed; a damaged remote
//! object found by `--verify` and repaired by the next sync.
//!
//! `AWS_CA_BUNDLE` is set for every process here, as on machines that set it globally: the S3
//! client must cope with it, and Debian's rclone 1.60 refuses its S3 backend while it is set.
//! Tests fail (never skip) when moto (scripts/install-deps.sh) or rclone is missing.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use vault::store::rclone::RcloneStore;
use vault::store::s3::S3Store;
use vault::store::{conformance, ObjKind, Store};

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A remote under test: its URL, the environment that reaches it, and its server.
struct Remote {
    url: String,
    vars: Vec<(String, String)>,
    _server: Option<Server>,
    /// Another location on the same service (for the conformance suite).
    scratch_url: String,
}

fn s3_vars(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_CA_BUNDLE", CA_BUNDLE),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Creates a bucket on moto (which accepts unsigned requests): not the vault's job. Retried
/// only while the connection itself fails.
fn create_bucket(port: u16, bucket: &str) {
    let (status, body) = http_request_retried(port, "PUT", &format!("/{bucket}"), &[], b"");
    assert_eq!(status, 200, "creating bucket {bucket}: {body}");
}

fn moto(dir: &Path) -> Server {
    let server = Server::moto(dir);
    create_bucket(server.port, "vault-test");
    server
}

fn s3_remote(dir: &Path) -> Remote {
    let server = moto(dir);
    Remote {
        url: "s3://vault-test/offsite/main".into(),
        scratch_url: "s3://vault-test/conformance".into(),
        vars: s3_vars(&server.endpoint()),
        _server: Some(server),
    }
}

fn rclone_local_remote(dir: &Path) -> Remote {
    require_tool("rclone");
    let base = dir.join("rclone-target");
    let mut vars = vec![("RCLONE_CONFIG_VTLOCAL_TYPE".to_string(), "local".to_string())];
    vars.push(("AWS_CA_BUNDLE".into(), CA_BUNDLE.into()));
    Remote {
        url: format!("rclone:vtlocal:{}/vault", base.display()),
        scratch_url: format!("rclone:vtlocal:{}/conformance", base.display()),
        vars,
        _server: None,
    }
}

fn rclone_s3_remote(dir: &Path) -> Remote {
    require_tool("rclone");
    let server = moto(dir);
    let mut vars: Vec<(String, String)> = [
        ("RCLONE_CONFIG_VTS3_TYPE", "s3"),
        ("RCLONE_CONFIG_VTS3_PROVIDER", "Other"),
        ("RCLONE_CONFIG_VTS3_ACCESS_KEY_ID", "testing"),
        ("RCLONE_CONFIG_VTS3_SECRET_ACCESS_KEY", "testing"),
        ("RCLONE_CONFIG_VTS3_REGION", "us-east-1"),
        ("AWS_CA_BUNDLE", CA_BUNDLE),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.push(("RCLONE_CONFIG_VTS3_ENDPOINT".into(), server.endpoint()));
    Remote {
        url: "rclone:vts3:vault-test/offsite".into(),
        scratch_url: "rclone:vts3:vault-test/conformance".into(),
        vars,
        _server: Some(server),
    }
}

impl Remote {
    /// The store behind a URL of this remote, as the test process sees it.
    fn store(&self, url: &str) -> Arc<dyn Store> {
        if url.starts_with("s3://") {
            Arc::new(S3Store::with_vars(url, self.vars.clone()).unwrap().checked().unwrap())
        } else {
            Arc::new(RcloneStore::new(url).unwrap().with_env(self.vars.clone()).checked().unwrap())
        }
    }

    /// Adds this remote's environment (and nothing of the caller's AWS_*/RCLONE_* settings).
    fn apply(&self, c: &mut Command) {
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("RCLONE_") {
                c.env_remove(k);
            }
        }
        c.envs(self.vars.iter().map(|(k, v)| (k, v)));
    }
}

fn cmd(e: &Env, r: &Remote, at: Option<&str>, args: &[&str]) -> Command {
    let mut c = e.cmd_at(at, args);
    r.apply(&mut c);
    c
}

fn run_ok(e: &Env, r: &Remote, args: &[&str]) -> String {
    ok(cmd(e, r, None, args).output().unwrap(), args)
}

/// An environment whose `--repo` is the remote URL, with a fresh cache.
fn reader(e: &Env, r: &Remote) -> Env {
    let mut x = Env::new();
    x.secret = e.secret.clone();
    x.repo = r.url.clone().into();
    x
}

fn day(d: u32) -> String {
    format!("2026-11-{d:02} 10:00:00")
}

/// A week of daily snapshots: a dump that changes a little each day, and a new small file.
fn week(e: &Env, r: &Remote) -> Vec<(String, Vec<(String, Vec<u8>)>)> {
    let mut c =
        cmd(e, r, Some(&day(10)), &["init", "--chunk-avg", "4KiB", "--pack-size", "1MiB", "--time-zone", "UTC"]);
    ok(c.output().unwrap(), &["init"]);
    let mut dump = data(1_200_000, 7);
    let mut days = Vec::new();
    for d in 10..17u32 {
        for i in 0..20 {
            let at = (d as usize * 7919 + i * 50_021) % dump.len();
            dump[at] ^= 0x5a;
        }
        let note = format!("note of day {d}\n").repeat(d as usize * 10).into_bytes();
        let f = e.path("in");
        std::fs::write(&f, &dump).unwrap();
        ok(cmd(e, r, Some(&day(d)), &["put", "db/dump.archive", f.to_str().unwrap()]).output().unwrap(), &["put"]);
        std::fs::write(&f, &note).unwrap();
        let name = format!("notes/day-{d}.txt");
        ok(cmd(e, r, Some(&day(d)), &["put", &name, f.to_str().unwrap()]).output().unwrap(), &["put"]);
        days.push((format!("2026-11-{d:02}"), vec![("db/dump.archive".to_string(), dump.clone()), (name, note)]));
    }
    days
}

fn scenario(r: Remote) {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("[{} +{:.1}s] {what}", r.url, t0.elapsed().as_secs_f64());
    // The store itself, on its own prefix.
    let scratch = r.store(&r.scratch_url);
    conformance::run(&*scratch);
    if r.scratch_url.starts_with("s3://") {
        // More objects than one listing page (1000 on S3).
        conformance::run_many(&*r.store("s3://vault-test/many"), 1100);
    }

    phase("conformance done");
    let e = Env::new();
    let days = week(&e, &r);
    phase("week written");
    run_ok(&e, &r, &["remote", "add", "offsite", &r.url]);
    let out = run_ok(&e, &r, &["sync", "offsite", "--jobs", "4"]);
    assert!(out.contains("synced offsite"), "{out}");
    let out = run_ok(&e, &r, &["sync", "offsite"]);
    assert!(out.contains("uploaded 0 objects"), "a second sync sends nothing: {out}");

    phase("synced");
    // The remote alone, with a fresh cache: every file of every day.
    let x = reader(&e, &r);
    let snaps = ok(cmd(&x, &r, None, &["snapshots"]).output().unwrap(), &["snapshots"]);
    for (period, _) in &days {
        assert!(snaps.contains(period.as_str()), "{period} missing from {snaps}");
    }
    for (period, files) in &days {
        let dest = x.path(&format!("restore-{period}"));
        let out =
            ok(cmd(&x, &r, None, &["restore", period, dest.to_str().unwrap()]).output().unwrap(), &["restore", period]);
        assert!(out.contains("restored"), "{out}");
        for (name, content) in files {
            let got = std::fs::read(dest.join(name)).unwrap();
            assert!(got == *content, "{period}/{name} differs after restore from {}", r.url);
        }
    }
    let (last, files) = days.last().unwrap();
    let spec = format!("{last}/{}", files[0].0);
    let o = cmd(&x, &r, None, &["cat", &spec]).output().unwrap();
    assert!(o.status.success() && o.stdout == files[0].1, "cat {spec}: {}", String::from_utf8_lossy(&o.stderr));
    phase("restored every day");
    let out = ok(cmd(&x, &r, None, &["check", "--read-data"]).output().unwrap(), &["check"]);
    assert!(out.contains("no errors"), "{out}");
    phase("checked");
    // A remote is written only by sync.
    let o = cmd(&x, &r, None, &["put", "x", "/etc/hostname"]).output().unwrap();
    let err = fails(o, &["put"], 1);
    assert!(err.contains("written only by `vaultctl sync`"), "{err}");

    // Kill syncs at several moments; the remote stays readable at its previous state.
    let big = data(6_000_000, 11);
    let f = e.path("big");
    std::fs::write(&f, &big).unwrap();
    ok(cmd(&e, &r, Some(&day(17)), &["put", "big", f.to_str().unwrap()]).output().unwrap(), &["put big"]);
    let prev = format!("{last}/{}", files[1].0);
    for delay_ms in [30u64, 250, 700] {
        let mut child =
            cmd(&e, &r, None, &["sync", "offsite"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let out = ok(cmd(&x, &r, None, &["check"]).output().unwrap(), &["check"]);
        assert!(out.contains("no errors"), "after a kill at {delay_ms} ms: {out}");
        let o = cmd(&x, &r, None, &["cat", &prev]).output().unwrap();
        assert!(o.status.success() && o.stdout == files[1].1, "after a kill at {delay_ms} ms: {prev} unreadable");
    }
    phase("killed syncs");
    let plan = run_ok(&e, &r, &["sync", "offsite", "--dry-run"]);
    let planned = number_after(&plan, "upload ", " objects").unwrap_or(0);
    let out = run_ok(&e, &r, &["sync", "offsite"]);
    let uploaded = number_after(&out, "uploaded ", " objects").unwrap();
    let resumed = number_after(&out, "), ", " already there").unwrap();
    // Everything planned went up exactly once: sent now, or found intact from a killed sync.
    // (+1: the sync's own log entry, written after the plan.)
    assert!(uploaded + resumed == planned || uploaded + resumed == planned + 1, "{plan}\n{out}");
    let o = cmd(&x, &r, None, &["cat", "2026-11-17/big"]).output().unwrap();
    assert!(o.status.success() && o.stdout == big, "big after the resumed sync");
    let out = run_ok(&e, &r, &["sync", "offsite", "--verify"]);
    assert!(out.contains("all match"), "{out}");

    phase("resumed");
    // Damage a remote pack through the store itself; --verify finds it, the next sync repairs.
    let dst = r.store(&r.url);
    let (pack, _) = dst.list(ObjKind::Pack).unwrap().into_iter().max_by_key(|(_, s)| *s).unwrap();
    let mut b = dst.get(ObjKind::Pack, &pack).unwrap();
    b[100] ^= 0x01;
    dst.put(ObjKind::Pack, &pack, &b).unwrap();
    let o = cmd(&e, &r, None, &["sync", "offsite", "--verify"]).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&pack[..16]) && out.contains("damaged"), "{out}");
    let out = run_ok(&e, &r, &["sync", "offsite"]);
    assert!(out.contains("uploaded 1 objects"), "{out}");
    assert!(run_ok(&e, &r, &["sync", "offsite", "--verify"]).contains("all match"));
    let fresh = reader(&e, &r);
    let out = ok(cmd(&fresh, &r, None, &["check", "--read-data"]).output().unwrap(), &["check"]);
    assert!(out.contains("no errors"), "{out}");
    phase("repaired");
}

/// The number between `before` and `after` in `s` ("uploaded 3 objects" -> 3).
fn number_after(s: &str, before: &str, after: &str) -> Option<usize> {
    s.split(before).skip(1).find_map(|rest| rest.split(after).next()?.trim().parse().ok())
}

#[test]
fn s3_remote_syncs_reads_resumes_and_repairs() {
    let d = tempfile::tempdir().unwrap();
    scenario(s3_remote(d.path()));
}

#[test]
fn rclone_local_remote_syncs_reads_resumes_and_repairs() {
    let d = tempfile::tempdir().unwrap();
    scenario(rclone_local_remote(d.path()));
}

#[test]
fn rclone_s3_remote_syncs_reads_resumes_and_repairs() {
    let d = tempfile::tempdir().unwrap();
    scenario(rclone_s3_remote(d.path()));
}

#[test]
fn s3_errors_are_clear() {
    let d = tempfile::tempdir().unwrap();
    let server = moto(d.path());
    // A missing bucket.
    let e = S3Store::with_vars("s3://no-such-bucket/x", s3_vars(&server.endpoint())).unwrap().checked().err().unwrap();
    assert!(e.to_string().contains("does not exist"), "{e}");
    // Plain http off loopback is refused unless allowed.
    let e = S3Store::with_vars("s3://vault-test/x", s3_vars("http://192.0.2.1:9000")).err().unwrap();
    assert!(e.to_string().contains("refusing plain http"), "{e}");
    let mut allowed = s3_vars("http://192.0.2.1:9000");
    allowed.push(("AWS_ALLOW_HTTP".into(), "true".into()));
    S3Store::with_vars("s3://vault-test/x", allowed).unwrap();
    // https with an unreadable CA bundle: a clear error; with http the bundle is not needed.
    let mut bad = s3_vars("https://s3.example.com");
    bad.push(("AWS_CA_BUNDLE".into(), "/nonexistent/ca.pem".into()));
    let e = S3Store::with_vars("s3://vault-test/x", bad).err().unwrap();
    assert!(e.to_string().contains("AWS_CA_BUNDLE=/nonexistent/ca.pem"), "{e}");
    let mut http = s3_vars(&server.endpoint());
    http.push(("AWS_CA_BUNDLE".into(), "/nonexistent/ca.pem".into()));
    S3Store::with_vars("s3://vault-test/x", http).unwrap().checked().unwrap();
    // The CLI names the problem too.
    let env = Env::new();
    let r = Remote {
        url: "s3://no-such-bucket/v".into(),
        scratch_url: String::new(),
        vars: s3_vars(&server.endpoint()),
        _server: None,
    };
    let x = reader(&env, &r);
    let o = cmd(&x, &r, None, &["snapshots"]).output().unwrap();
    let err = fails(o, &["snapshots"], 1);
    assert!(err.contains("no-such-bucket") && err.contains("does not exist"), "{err}");
}

// --- protected copies: object lock, append-only, one sync at a time, real sizes ----------

/// A bucket with Object Lock enabled (and so versioning), created unsigned like the others.
fn create_locked_bucket(port: u16, bucket: &str) {
    let (status, body) =
        http_request_retried(port, "PUT", &format!("/{bucket}"), &[("x-amz-bucket-object-lock-enabled", "true")], b"");
    assert_eq!(status, 200, "creating bucket {bucket}: {body}");
}

/// The clock of a moto server started under libfaketime, moved by writing an offset
/// ("+0", "+5d") to a file the library reads again every second: retention dates expire on
/// the server without waiting days.
/// The clock of a moto server started by [`moto_with_clock`]: the file its libfaketime reads,
/// and its port.
struct ServerClock(std::path::PathBuf, u16);

impl ServerClock {
    /// Moves the server's clock `days` ahead of the real one, and waits until the server's own
    /// answers show it (the Date header of a ListBuckets): libfaketime reads the file again only
    /// when its cache time has passed, counted in whole seconds, so a fixed pause can be short.
    fn set_days(&self, days: i64) {
        std::fs::write(&self.0, format!("+{days}d\n")).unwrap();
        let want = unix_now() + days * 86_400 - 3_600;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen = None;
        while std::time::Instant::now() < deadline {
            seen = server_date(self.1);
            if seen.is_some_and(|t| t >= want) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("the server's clock did not move {days} days ahead in 30 s (its Date: {seen:?})");
    }
}

/// The time in the Date header of the server's answer to a ListBuckets (unix seconds).
fn server_date(port: u16) -> Option<i64> {
    let (_, head, _) = common::http_exchange(port, "GET", "/", &[], b"").ok()?;
    let date = head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("date")))?.1;
    chrono::DateTime::parse_from_rfc2822(date.trim()).ok().map(|d| d.timestamp())
}

/// A bucket with Object Lock enabled on `server`, as the remote `s3://locked-bucket/v`.
fn locked_bucket(server: &Server) -> Remote {
    create_locked_bucket(server.port, "locked-bucket");
    Remote {
        url: "s3://locked-bucket/v".into(),
        scratch_url: String::new(),
        vars: s3_vars(&server.endpoint()),
        _server: None,
    }
}

fn moto_with_clock(dir: &Path) -> (Server, ServerClock) {
    require_tool("faketime");
    let lib =
        ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("this test needs libfaketime (package faketime; scripts/install-deps.sh)");
    let file = dir.join("moto-clock");
    std::fs::write(&file, "+0\n").unwrap();
    let file_s = file.to_str().unwrap().to_string();
    let server = Server::moto_with_env(
        dir,
        &[
            ("LD_PRELOAD", lib),
            ("FAKETIME_TIMESTAMP_FILE", &file_s),
            ("FAKETIME_CACHE_DURATION", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let port = server.port;
    (server, ServerClock(file, port))
}

/// vaultctl with its clock moved by `offset` ("+5d"), like the server's.
fn cmd_shifted(e: &Env, r: &Remote, offset: &str, args: &[&str]) -> Command {
    let mut c = Command::new(require_tool("faketime"));
    c.args(["-f", offset]).arg(vaultctl_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("VAULT_") {
            c.env_remove(k);
        }
    }
    c.env("VAULT_REPO", &e.repo).env("VAULT_CACHE_DIR", &e.cache).env("TZ", "UTC").env("DONT_FAKE_MONOTONIC", "1");
    c.env(&e.secret.0, &e.secret.1).args(args).stdin(Stdio::null());
    r.apply(&mut c);
    c
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Every current version of the copy's vault objects has a governance retention ending within
/// two minutes of `until`.
fn assert_retained_until(s3: &S3Store, until: i64, what: &str) {
    let ver = s3.versioned().unwrap();
    let mut n = 0;
    for x in ver.list_versions().unwrap() {
        if !x.latest || x.delete_marker || !ObjKind::ALL.contains(&x.kind) {
            continue;
        }
        let r = ver.retention(x.kind, &x.name, &x.version_id).unwrap();
        let r = r.unwrap_or_else(|| panic!("{what}: {} has no retention", x.kind.path(&x.name)));
        assert_eq!(r.mode, vault::store::LockMode::Governance);
        assert!(
            (r.until - until).abs() < 120,
            "{what}: {} retained until {}, expected {until}",
            x.kind.path(&x.name),
            r.until
        );
        n += 1;
    }
    assert!(n > 5, "{what}: only {n} objects");
}

#[test]
fn s3_object_lock_survives_an_attack_and_follows_the_vault() {
    let d = tempfile::tempdir().unwrap();
    let (server, clock) = moto_with_clock(d.path());
    create_bucket(server.port, "plain-bucket");
    let r = locked_bucket(&server);
    let e = Env::new();
    ok(
        cmd(&e, &r, None, &["init", "--chunk-avg", "4KiB", "--pack-size", "1MiB", "--time-zone", "UTC"])
            .output()
            .unwrap(),
        &["init"],
    );
    let files: Vec<(String, Vec<u8>)> =
        (0..3).map(|i| (format!("f{i}"), data(900_000 + i * 77_777, 40 + i as u64))).collect();
    for (n, b) in &files {
        e.put_bytes(n, b);
    }
    // Refused where it cannot protect anything.
    let o = cmd(&e, &r, None, &["remote", "add", "p", "s3://plain-bucket/v", "--object-lock", "3"]).output().unwrap();
    let err = fails(o, &["remote add --object-lock"], 1);
    assert!(err.contains("has no Object Lock enabled") && err.contains("plain-bucket"), "{err}");
    let o =
        cmd(&e, &r, None, &["remote", "add", "p", &format!("file://{}", e.path("x").display()), "--object-lock", "3"])
            .output()
            .unwrap();
    let err = fails(o, &["remote add file --object-lock"], 1);
    assert!(err.contains("needs an s3:// remote"), "{err}");

    // A copy made before the remote was locked: its objects are kept and get their retention.
    run_ok(&e, &r, &["remote", "add", "pre", &r.url]);
    run_ok(&e, &r, &["sync", "pre"]);
    run_ok(&e, &r, &["remote", "remove", "pre"]);
    run_ok(&e, &r, &["remote", "add", "lk", &r.url, "--object-lock", "3"]);
    assert!(run_ok(&e, &r, &["remote", "list"]).contains("object-lock 3 days (governance)"));
    let out = run_ok(&e, &r, &["sync", "lk"]);
    assert!(out.contains("synced lk") && out.contains("not trusted"), "{out}");
    assert!(number_after(&out, "), ", " already there").unwrap() > 5, "{out}");
    // 3 days, and a margin of one day so that not every sync extends everything.
    let s3 = S3Store::with_vars(&r.url, r.vars.clone()).unwrap();
    assert_retained_until(&s3, unix_now() + 4 * 86_400, "after the first sync");

    std::thread::sleep(std::time::Duration::from_millis(1200));
    let before_attack = format!("@{}", unix_now());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // The attack, with the sync's own credentials: every object deleted or overwritten.
    let mut attacked = 0;
    for k in ObjKind::ALL {
        for (i, (n, _)) in s3.list(k).unwrap().into_iter().enumerate() {
            if i % 2 == 0 {
                s3.delete(k, &n).unwrap();
            } else {
                s3.put(k, &n, b"encrypted by ransomware").unwrap();
            }
            attacked += 1;
        }
    }
    assert!(attacked > 8, "{attacked}");
    let x = reader(&e, &r);
    let o = cmd(&x, &r, None, &["check", "--read-data"]).output().unwrap();
    assert!(!o.status.success(), "the current view is damaged");

    // The copy as it was, from the locked versions.
    for (n, b) in &files {
        let o = cmd(&x, &r, None, &["--as-of", &before_attack, "cat", &format!("current/{n}")]).output().unwrap();
        assert!(o.status.success() && o.stdout == *b, "--as-of cat {n}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let out = ok(
        cmd(&x, &r, None, &["--as-of", &before_attack, "check", "--read-data"]).output().unwrap(),
        &["check --as-of"],
    );
    assert!(out.contains("no errors"), "{out}");
    let o = cmd(&e, &r, None, &["--as-of", &before_attack, "snapshots"]).output().unwrap();
    let err = fails(o, &["--as-of on a directory"], 1);
    assert!(err.contains("--as-of reads the object versions of an s3:// copy"), "{err}");

    // The next sync repairs the current view.
    let out = run_ok(&e, &r, &["sync", "lk"]);
    assert!(out.contains("not trusted") && out.contains("synced lk"), "{out}");
    let fresh = reader(&e, &r);
    let out = ok(cmd(&fresh, &r, None, &["check", "--read-data"]).output().unwrap(), &["check after repair"]);
    assert!(out.contains("no errors"), "{out}");
    for (n, b) in &files {
        let o = cmd(&fresh, &r, None, &["cat", &format!("current/{n}")]).output().unwrap();
        assert!(
            o.status.success() && o.stdout == *b,
            "cat {n} after the repair: {} bytes, stderr {}",
            o.stdout.len(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let out = run_ok(&e, &r, &["sync", "lk"]);
    assert!(out.contains("uploaded 0 objects") && !out.contains("not trusted"), "{out}");
    assert!(run_ok(&e, &r, &["sync", "lk", "--verify"]).contains("all match"));

    // An object the vault stops using stays on the copy while it is retained.
    let snaps_before: Vec<String> = s3.list(ObjKind::Snapshot).unwrap().into_iter().map(|(n, _)| n).collect();
    e.put_bytes("f-new", b"a new revision supersedes the old one");
    let out = run_ok(&e, &r, &["sync", "lk"]);
    assert!(out.contains("1 unused objects retained") && out.contains("deleted 0"), "{out}");
    let old = snaps_before.iter().find(|n| !e.repo.join("snapshots").join(n).exists()).unwrap().clone();
    assert!(s3.size(ObjKind::Snapshot, &old).is_ok(), "a retained object must not be deleted");

    // Five days later (on the server and for vaultctl): everything in use is retained again
    // for 3 days + 1, the unused revision's retention has ended and it is gone, versions and all.
    clock.set_days(5);
    let out = ok(cmd_shifted(&e, &r, "+5d", &["sync", "lk"]).output().unwrap(), &["sync +5d"]);
    assert!(out.contains("0 unused objects retained"), "{out}");
    let pruned =
        out.split("objects retained, ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse::<usize>().unwrap();
    assert!(pruned > attacked, "the expired versions (originals, the attacker's, delete markers) go: {out}");
    assert_retained_until(&s3, unix_now() + 9 * 86_400, "five days later");
    let ver = s3.versioned().unwrap();
    assert!(!ver.list_versions().unwrap().iter().any(|x| x.name == old), "the unused revision is pruned");
    let fresh = reader(&e, &r);
    let out = ok(cmd(&fresh, &r, None, &["check", "--read-data"]).output().unwrap(), &["check +5d"]);
    assert!(out.contains("no errors"), "{out}");
    assert_eq!(
        ok(cmd(&fresh, &r, None, &["cat", "current/f-new"]).output().unwrap(), &["cat"]),
        "a new revision supersedes the old one"
    );
}

/// moto's IAM: an access key allowed to put, get and list in one bucket, and nothing else;
/// from then on the server checks every request's signature and permissions.
fn append_only_key(port: u16, bucket: &str) -> (String, String) {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0";
    let iam = |form: &str| {
        let (status, body) = http_request_retried(
            port,
            "POST",
            "/",
            &[("Authorization", auth), ("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        );
        assert_eq!(status, 200, "{form}: {body}");
        body
    };
    iam("Action=CreateUser&UserName=appender&Version=2010-05-08");
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:PutObject","s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#
    );
    let enc: String = policy
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    iam(&format!(
        "Action=PutUserPolicy&UserName=appender&PolicyName=append-only&PolicyDocument={enc}&Version=2010-05-08"
    ));
    let body = iam("Action=CreateAccessKey&UserName=appender&Version=2010-05-08");
    let tag = |t: &str| body.split(&format!("<{t}>")).nth(1).unwrap().split('<').next().unwrap().to_string();
    let key = (tag("AccessKeyId"), tag("SecretAccessKey"));
    let (status, body) =
        http_request_retried(port, "POST", "/moto-api/reset-auth", &[("Content-Type", "text/plain")], b"0");
    assert_eq!(status, 200, "enforcing authentication: {body}");
    key
}

#[test]
fn s3_append_only_remote_works_with_a_key_that_cannot_delete() {
    let d = tempfile::tempdir().unwrap();
    let server = Server::moto(d.path());
    create_bucket(server.port, "append-only-test");
    let (id, secret) = append_only_key(server.port, "append-only-test");
    let mut vars = s3_vars(&server.endpoint());
    for (k, v) in vars.iter_mut() {
        match k.as_str() {
            "AWS_ACCESS_KEY_ID" => *v = id.clone(),
            "AWS_SECRET_ACCESS_KEY" => *v = secret.clone(),
            _ => {}
        }
    }
    let r = Remote { url: "s3://append-only-test/v".into(), scratch_url: String::new(), vars, _server: None };
    // The server refuses this key a delete.
    let probe = S3Store::with_vars("s3://append-only-test/probe", r.vars.clone()).unwrap().checked().unwrap();
    probe.put(ObjKind::Index, "ab", b"x").unwrap();
    let err = probe.delete(ObjKind::Index, "ab").unwrap_err().to_string();
    assert!(err.contains("AccessDenied") || err.contains("Access Denied"), "{err}");

    let e = Env::new();
    ok(cmd(&e, &r, None, &["init", "--chunk-avg", "4KiB", "--pack-size", "1MiB"]).output().unwrap(), &["init"]);
    let first = data(1_300_000, 61);
    e.put_bytes("first", &first);
    run_ok(&e, &r, &["remote", "add", "ao", &r.url, "--append-only"]);
    run_ok(&e, &r, &["remote", "add", "plain", "s3://append-only-test/plain"]);
    assert!(run_ok(&e, &r, &["sync", "ao"]).contains("synced ao"));
    assert!(run_ok(&e, &r, &["sync", "plain"]).contains("synced plain"));
    // A new revision of the period: the vault deletes the old one.
    e.put_bytes("second", b"the second file");
    let out = run_ok(&e, &r, &["sync", "ao"]);
    assert!(out.contains("synced ao") && out.contains("deleted 0"), "{out}");
    let s3 = S3Store::with_vars(&r.url, r.vars.clone()).unwrap();
    assert_eq!(s3.list(ObjKind::Snapshot).unwrap().len(), 2, "nothing deleted on the append-only copy");
    assert_eq!(s3.list(ObjKind::Manifest).unwrap().len(), 2, "one manifest per sync, none replaced");
    assert!(s3.size(ObjKind::Config, "manifest").is_err());
    let out = run_ok(&e, &r, &["sync", "ao", "--verify"]);
    assert!(out.contains("all match") && out.contains("kept: 1 objects the vault no longer has"), "{out}");
    let x = reader(&e, &r);
    assert!(ok(cmd(&x, &r, None, &["check", "--read-data"]).output().unwrap(), &["check"]).contains("no errors"));
    let o = cmd(&x, &r, None, &["cat", "current/first"]).output().unwrap();
    assert!(o.status.success() && o.stdout == first);
    // The same key on a remote that is not append-only fails where the sync must delete.
    let o = cmd(&e, &r, None, &["sync", "plain"]).output().unwrap();
    let err = fails(o, &["sync plain"], 1);
    assert!(err.contains("Access Denied") || err.contains("AccessDenied"), "{err}");
}

/// A vault of `bytes` of random data (incompressible, no duplicates) in default-size packs.
fn random_vault(e: &Env, bytes: usize) {
    e.ok(&["init", "--time-zone", "UTC"]);
    let f = e.path("random.bin");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&f).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..bytes.div_ceil(block.len()) {
            for c in block.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            w.write_all(&block).unwrap();
        }
    }
    e.ok(&["put", "random.bin", f.to_str().unwrap()]);
    std::fs::remove_file(&f).unwrap();
}

#[test]
fn a_gigabyte_in_default_size_packs_through_rclone() {
    let d = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let e = Env::new();
    random_vault(&e, 1 << 30);
    let packs = packs_by_size(&e.repo);
    assert!(packs.len() >= 60 && packs[0].1 > 15 << 20, "{} packs, largest {}", packs.len(), packs[0].1);
    eprintln!("[+{:.1}s] 1 GiB stored", t0.elapsed().as_secs_f64());
    for r in [rclone_local_remote(d.path()), rclone_s3_remote(d.path())] {
        let name = if r.url.starts_with("rclone:vtlocal") { "local" } else { "s3" };
        run_ok(&e, &r, &["remote", "add", name, &r.url]);
        let out = run_ok(&e, &r, &["sync", name]);
        assert!(out.contains(&format!("synced {name}")) && out.contains("GiB"), "{out}");
        eprintln!("[+{:.1}s] synced to {}: {out}", t0.elapsed().as_secs_f64(), r.url);
        let x = reader(&e, &r);
        let out = ok(cmd(&x, &r, None, &["check", "--read-data"]).output().unwrap(), &["check"]);
        assert!(out.contains("no errors") && out.contains("GiB"), "{out}");
        eprintln!("[+{:.1}s] read back from {}: {out}", t0.elapsed().as_secs_f64(), r.url);
    }
}

#[test]
fn two_syncs_of_one_remote_never_run_at_once() {
    let d = tempfile::tempdir().unwrap();
    let r = rclone_local_remote(d.path());
    let e = Env::new();
    e.init();
    e.put_bytes("f", &data(6_000_000, 71));
    run_ok(&e, &r, &["remote", "add", "rc", &r.url]);
    // A slow sync (about 5 s at 1 MiB/s) holds the remote.
    let slow = cmd(&e, &r, None, &["sync", "rc", "--bwlimit", "1MiB"]).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // From this machine: refused by the machine lock.
    let o = cmd(&e, &r, None, &["--lock-wait", "0", "sync", "rc"]).output().unwrap();
    let err = fails(o, &["second sync"], 5);
    assert!(err.contains("is being synced by") && err.contains("vaultctl sync"), "{err}");
    // As from another machine (its own cache directory): refused by the lock object.
    let mut other = cmd(&e, &r, None, &["--lock-wait", "0", "sync", "rc"]);
    other.env("VAULT_CACHE_DIR", e.path("other-cache"));
    let err = fails(other.output().unwrap(), &["sync from elsewhere"], 5);
    assert!(err.contains("is being synced by") && err.contains("locks/"), "{err}");
    // One that waits runs once the first is done.
    let mut waiting = cmd(&e, &r, None, &["--lock-wait", "120", "sync", "rc"]);
    waiting.env("VAULT_CACHE_DIR", e.path("other-cache"));
    let waited = waiting.output().unwrap();
    let first = slow.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stdout));
    let out = ok(waited, &["waiting sync"]);
    assert!(out.contains("synced rc"), "{out}");
    let x = reader(&e, &r);
    assert!(ok(cmd(&x, &r, None, &["check", "--read-data"]).output().unwrap(), &["check"]).contains("no errors"));
    assert!(run_ok(&e, &r, &["sync", "rc", "--verify"]).contains("all match"));
    let store = r.store(&r.url);
    assert!(store.list(ObjKind::Lock).unwrap().is_empty(), "both syncs removed their lock objects");
}

#[test]
fn a_repaired_locked_copy_reads_past_the_index_files_a_prune_left_retained() {
    // A prune repacks; the copy keeps the old index files and packs while they are retained.
    // An attacker then deletes every pack and replaces the manifest; the next sync repairs what
    // the vault uses. The old index files, still there, name packs that are gone: a reader of
    // the copy must take the current ones.
    let d = tempfile::tempdir().unwrap();
    let server = Server::moto(d.path());
    let r = locked_bucket(&server);
    let e = Env::new();
    let init = ["init", "--chunk-avg", "4KiB", "--pack-size", "1MiB", "--time-zone", "UTC"];
    ok(cmd(&e, &r, Some(&day(20)), &init).output().unwrap(), &init);
    // Day 20 holds a and b in one file (their chunks share packs), day 21 only a.
    let a = data(3_000_000, 61);
    let ab = [a.clone(), data(3_000_000, 62)].concat();
    let (fa, fab) = (e.path("a"), e.path("ab"));
    std::fs::write(&fa, &a).unwrap();
    std::fs::write(&fab, &ab).unwrap();
    for (at, name, f) in [(20, "a", &fab), (21, "a", &fa)] {
        let args = ["put", name, f.to_str().unwrap()];
        ok(cmd(&e, &r, Some(&day(at)), &args).output().unwrap(), &args);
    }
    run_ok(&e, &r, &["remote", "add", "lk", &r.url, "--object-lock", "3"]);
    run_ok(&e, &r, &["sync", "lk"]);
    let args = ["prune", "--keep-last", "1"];
    let out = ok(cmd(&e, &r, Some(&day(22)), &args).output().unwrap(), &args);
    assert!(number_after(&out, "deleted, ", " repacked").unwrap() > 0, "the test needs a repack: {out}");
    run_ok(&e, &r, &["sync", "lk"]);

    let s3 = S3Store::with_vars(&r.url, r.vars.clone()).unwrap();
    for (n, _) in s3.list(ObjKind::Pack).unwrap() {
        s3.delete(ObjKind::Pack, &n).unwrap();
    }
    s3.put(ObjKind::Config, "manifest", b"replaced by the attacker").unwrap();
    run_ok(&e, &r, &["sync", "lk"]);
    let fresh = reader(&e, &r);
    let o = cmd(&fresh, &r, None, &["cat", "2026-11-21/a"]).output().unwrap();
    assert!(o.status.success() && o.stdout == a, "cat after the repair: {}", String::from_utf8_lossy(&o.stderr));
    let out = ok(cmd(&fresh, &r, None, &["check", "--read-data"]).output().unwrap(), &["check after repair"]);
    assert!(out.contains("no errors"), "{out}");
}
