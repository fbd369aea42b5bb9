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
