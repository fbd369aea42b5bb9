//! scripts/nightly.sh end to end: mount, dump into the mount, offsite sync, drill, status;
//! the Prometheus textfile it writes and the pings of a dead man's switch (a small HTTP server
//! on loopback, started by the test).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const KEY: &str = "7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c";

fn bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_vaultfs")).with_file_name(name);
    assert!(p.exists(), "{} is not built (run the workspace's tests: cargo test --workspace)", p.display());
    p
}

fn vaultctl(dir: &Path, faketime: Option<&str>, args: &[&str]) -> String {
    let mut c = match faketime {
        Some(t) => {
            let mut c = Command::new("faketime");
            c.arg(t).arg(bin("vaultctl"));
            c
        }
        None => Command::new(bin("vaultctl")),
    };
    let out = c
        .args(args)
        .env("VAULT_REPO", dir.join("vault"))
        .env("VAULT_KEY", KEY)
        .env("VAULT_CACHE_DIR", dir.join("cache"))
        .env_remove("VAULT_PASSPHRASE")
        .output()
        .unwrap();
    assert!(out.status.success(), "vaultctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every request an HTTP server on loopback received: (method, path, body).
struct PingServer {
    port: u16,
    got: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl PingServer {
    fn start() -> PingServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                if let Some(req) = answer(s) {
                    g.lock().unwrap().push(req);
                }
            }
        });
        let p = PingServer { port, got };
        // It answers a real request before the job starts.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        p
    }

    /// The pings received (the readiness request left out), and forgets them.
    fn take(&self) -> Vec<(String, String, String)> {
        let mut g = self.got.lock().unwrap();
        let all = std::mem::take(&mut *g);
        all.into_iter().filter(|(_, p, _)| p != "/ready").collect()
    }
}

fn answer(s: TcpStream) -> Option<(String, String, String)> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let mut s = s;
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK").ok()?;
    Some((method, path, String::from_utf8_lossy(&body).into_owned()))
}

fn run_nightly(env: &Path, mnt: &Path) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nightly.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(env)
        .env_remove("VAULT_KEY")
        .env_remove("VAULT_PASSPHRASE")
        .output()
        .unwrap();
    let _ = Command::new("fusermount3").arg("-u").arg(mnt).status();
    out
}

/// The value of a sample of the textfile, by its name with labels as written.
fn sample(text: &str, name: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_nightly_job_dumps_syncs_drills_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mongo-archives/dump-w-oplog.archive");
    // Yesterday's backup exists (sealed by the first write of today), so the drill has a target.
    vaultctl(d, Some("2026-01-09 02:00:00"), &["init", "--time-zone", "UTC"]);
    vaultctl(d, Some("2026-01-09 02:00:00"), &["put", "old", "/etc/hostname"]);
    vaultctl(d, Some("2026-01-10 02:00:00"), &["put", "today", fixture.to_str().unwrap()]);
    // Retention: keep the last one (plus, always, the current period and the newest sealed).
    vaultctl(d, None, &["policy", "set", "--keep-last", "1"]);
    vaultctl(d, None, &["remote", "add", "offsite", &format!("file://{}", d.join("offsite").display())]);
    std::fs::write(d.join("key"), KEY).unwrap();
    let mnt = d.join("mnt");
    let env = d.join("vault.env");
    let today = chrono::Local::now().format("%d").to_string();
    let pings = PingServer::start();
    let prom = d.join("textfile/vault.prom");
    std::fs::create_dir(d.join("textfile")).unwrap();
    let write_env = |dump: &str| {
        std::fs::write(
            &env,
            format!(
                "VAULT_REPO={}\nVAULT_KEY_FILE={}\nVAULT_CACHE_DIR={}\nVAULT_MOUNT={}\nVAULT_REMOTE=offsite\n\
                 DUMP_CMD='{dump}'\nVAULT_DRILL_DAY={today}\nVAULTCTL={}\nVAULTFS={}\n\
                 VAULT_PING_URL=http://127.0.0.1:{}/ping/\nVAULT_TEXTFILE={}\n",
                d.join("vault").display(),
                d.join("key").display(),
                d.join("cache").display(),
                mnt.display(),
                bin("vaultctl").display(),
                bin("vaultfs").display(),
                pings.port,
                prom.display(),
            ),
        )
        .unwrap();
    };
    write_env(&format!("cp {} \"$VAULT_MOUNT/today\"", fixture.display()));
    let out = run_nightly(&env, &mnt);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nightly failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("synced offsite"), "{stdout}");
    assert!(stdout.contains("pruned: forgot 1 snapshots"), "{stdout}");
    assert!(stdout.contains("result:          OK"), "the drill must have run: {stdout}");
    assert!(stdout.contains("last drill:      2026-01-10"), "{stdout}");
    // The dump ran as a recorded job (vaultctl run) and wrote today's file.
    assert!(stdout.contains("last job:        OK"), "{stdout}");
    assert!(stdout.contains("/today ("), "{stdout}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Today's dump is in the vault and in the offsite copy.
    let ls = vaultctl(d, None, &["ls", "current"]);
    assert!(ls.contains("today"), "{ls}");
    let snaps = vaultctl(d, None, &["--repo", &format!("file://{}", d.join("offsite").display()), "snapshots"]);
    assert!(snaps.contains("2026-01-10  sealed"), "{snaps}");
    assert!(!snaps.contains("2026-01-09"), "the forgotten day leaves the offsite copy too: {snaps}");

    // Monitoring: the pings at the start and on success, the textfile of the final status.
    let body = |s: &str| s.to_string();
    assert_eq!(
        pings.take(),
        [("POST".into(), "/ping/start".into(), body("")), ("POST".into(), "/ping".into(), body("nightly: ok"))]
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(sample(&text, "vault_last_job_success{"), 1.0, "{text}");
    assert_eq!(sample(&text, "vault_last_drill_success{"), 1.0, "{text}");
    assert_eq!(sample(&text, "vault_last_sync_complete{"), 1.0, "{text}");

    // A failing dump: the job fails (exit 2), the switch hears why, the textfile says so.
    write_env("echo partial > \"$VAULT_MOUNT/today\"; exit 3");
    let out = run_nightly(&env, &mnt);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        pings.take(),
        [
            ("POST".into(), "/ping/start".into(), body("")),
            ("POST".into(), "/ping/fail".into(), body("nightly: exit 2 (dump: exit 3)"))
        ]
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(sample(&text, "vault_last_job_success{"), 0.0, "{text}");
    assert_eq!(sample(&text, "vault_last_job_exit_code{"), 3.0, "{text}");
    assert_eq!(sample(&text, "vault_last_job_files{"), 1.0, "{text}");

    // A later step that fails (a remote that does not exist): the switch hears which.
    write_env(&format!("cp {} \"$VAULT_MOUNT/today\"", fixture.display()));
    let mut e = std::fs::read_to_string(&env).unwrap();
    e.push_str("VAULT_REMOTE=nowhere\n");
    std::fs::write(&env, e).unwrap();
    let out = run_nightly(&env, &mnt);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        pings.take(),
        [
            ("POST".into(), "/ping/start".into(), body("")),
            ("POST".into(), "/ping/fail".into(), body("nightly: exit 1 (sync to nowhere)"))
        ]
    );
}
