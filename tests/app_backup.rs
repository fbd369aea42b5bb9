//! scripts/app-backup.sh, the application backup job, against a small HTTP server on loopback
//! that answers `POST /api/v1/utils/backup/` as the application documents it (a JSON body with
//! the backup key, a session cookie, a zip back). A good run stores and drills the zip, with
//! neither secret ever in a process's arguments; a wrong key (403) and a connection cut in the
//! middle of the download fail the job and store nothing, leaving the earlier backup as it
//! was; a cut the client cannot see (no Content-Length) is caught by the drill, which fails
//! the job and marks the zip failed.

mod common;
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KEY: &str = "k3y-with \"quotes\" and \\ backslash 0123456789";
const SESSION: &str = "sessionid=abc123sessionSECRET; csrftoken=tokTOKEN42";

/// The application's backup endpoint. Argv: port, key file, cookie file (the valid session and
/// CSRF token), zip file, mode file, log file (no secret in its own arguments either).
/// Modes: `ok` (Content-Length, sent in two halves with a pause between), `cut` (Content-Length,
/// the connection closed after half), `cut-nolength` (no Content-Length, closed after half).
const SERVER: &str = r#"
import http.server, json, sys, time
port, key_file, cookie_file, zip_file, mode_file, log_file = sys.argv[1:7]
KEY = open(key_file).read()
VALID = dict(kv.strip().split("=", 1) for kv in open(cookie_file).read().split(";"))
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def do_GET(self):
        self.reply(200 if self.path == "/health" else 404, {"ok": True})
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cookie = self.headers.get("Cookie", "")
        with open(log_file, "a") as log:
            log.write(json.dumps({"path": self.path, "cookie": cookie, "csrf": self.headers.get("X-CSRFToken"),
                                  "type": self.headers.get("Content-Type"), "body": body.decode()}) + "\n")
        if self.path != "/api/v1/utils/backup/":
            return self.reply(404, {"detail": "Not found."})
        if "sessionid=" + VALID["sessionid"] not in cookie or self.headers.get("X-CSRFToken") != VALID["csrftoken"]:
            return self.reply(403, {"detail": "Authentication credentials were not provided."})
        try:
            key = json.loads(body)["key"]
        except Exception:
            return self.reply(400, {"detail": "bad request"})
        if key != KEY:
            return self.reply(403, {"detail": "Wrong backup key."})
        data = open(zip_file, "rb").read()
        mode = open(mode_file).read().strip()
        half = len(data) // 2
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        if mode == "cut-nolength":
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:half])
        self.wfile.flush()
        if mode == "ok":
            time.sleep(1.5)
            self.wfile.write(data[half:])
        else:
            self.close_connection = True
http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H).serve_forever()
"#;

const MAKE_ZIP: &str = r#"
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", compression=zipfile.ZIP_DEFLATED) as z:
    lines = [json.dumps({"model": m, "pk": i, "fields": {"n": i}}) for m, n in (("auth.user", 5), ("reporting.report", 70)) for i in range(n)]
    z.writestr("backup.jsonl", "\n".join(lines) + "\n")
    for d in ("uploadedassets/", "uploadedimages/", "uploadedfiles/"):
        z.writestr(zipfile.ZipInfo(d), b"")
    z.writestr("uploadedfiles/report.pdf", bytes(range(256)) * 4000)
"#;

struct App {
    _server: Server,
    dir: PathBuf,
    env_file: PathBuf,
    zip: Vec<u8>,
}

impl App {
    fn start(e: &Env) -> App {
        let dir = e.path("app");
        std::fs::create_dir_all(&dir).unwrap();
        let zip_path = dir.join("served.zip");
        run_ok(Command::new(venv_bin("python")).arg("-c").arg(MAKE_ZIP).arg(&zip_path));
        std::fs::write(dir.join("server.key"), KEY).unwrap();
        std::fs::write(dir.join("server.cookie"), SESSION).unwrap();
        std::fs::write(dir.join("mode"), "ok").unwrap();
        let port = free_port();
        let mut c = Command::new(venv_bin("python"));
        c.arg("-c").arg(SERVER).arg(port.to_string());
        for f in ["server.key", "server.cookie", "served.zip", "mode", "requests.log"] {
            c.arg(dir.join(f));
        }
        // Ready once it answers a real request, not only once its port is open.
        let server = Server::start(c, port, dir.join("server.log"), |port| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            s.write_all(b"GET /health HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200") {
                Ok(())
            } else {
                Err(format!("answered {r:?}"))
            }
        });
        // The job's secrets and configuration.
        std::fs::write(dir.join("backup.key"), format!("{KEY}\n")).unwrap();
        std::fs::write(dir.join("session"), format!("{SESSION}\n")).unwrap();
        let env_file = dir.join("app-backup.env");
        let mut conf = format!(
            "VAULT_REPO={}\nVAULT_CACHE_DIR={}\nAPP_URL=http://127.0.0.1:{port}\nAPP_BACKUP_KEY_FILE={}\nAPP_SESSION_FILE={}\n\
             VAULTCTL={}\nAPP_BACKUP_TIMEOUT=60\n",
            e.repo.display(),
            e.cache.display(),
            dir.join("backup.key").display(),
            dir.join("session").display(),
            vaultctl_bin().display()
        );
        conf.push_str(&format!("VAULT_PASSPHRASE_FILE={}\n", dir.join("passphrase").display()));
        std::fs::write(dir.join("passphrase"), &e.secret.1).unwrap();
        std::fs::write(&env_file, conf).unwrap();
        let zip = std::fs::read(&zip_path).unwrap();
        App { _server: server, dir, env_file, zip }
    }

    fn mode(&self, m: &str) {
        std::fs::write(self.dir.join("mode"), m).unwrap();
    }

    /// The job, as cron runs it: a clean environment (only PATH and HOME).
    fn job(&self) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/app-backup.sh");
        let mut c = Command::new("bash");
        c.arg(script).arg(&self.env_file);
        c.env_clear().env("PATH", std::env::var("PATH").unwrap()).env("HOME", self.dir.as_os_str()).env("TZ", "UTC");
        c.stdin(Stdio::null());
        c
    }

    fn run(&self) -> Output {
        self.job().output().unwrap()
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every process's arguments, as `ps` shows them.
fn all_cmdlines() -> String {
    let mut out = String::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
            out.push_str(&String::from_utf8_lossy(&b).replace('\0', " "));
            out.push('\n');
        }
    }
    out
}

#[test]
fn a_good_run_streams_the_zip_into_the_vault_and_drills_it_without_secrets_in_argv() {
    require_tool("curl");
    let e = Env::new();
    e.init();
    let app = App::start(&e);
    let child = app.job().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // While the download pauses half-way, look at every process's arguments.
    let mut seen_curl = false;
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_millis(1400) {
        let all = all_cmdlines();
        assert!(!all.contains("abc123sessionSECRET") && !all.contains("0123456789"), "a secret is in argv:\n{all}");
        seen_curl |= all.contains("/api/v1/utils/backup/");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(seen_curl, "curl was never seen running");
    let out = text(&o);
    assert!(
        out.contains("reporting.report") && out.contains("70 objects") && out.contains("result:          OK"),
        "{out}"
    );
    // What the server got: the key in the JSON body, the cookie, the CSRF token.
    let r = app.requests();
    assert_eq!(r.len(), 1);
    let body: serde_json::Value = serde_json::from_str(r[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["key"], KEY);
    assert!(body.get("aes_key").is_none());
    assert_eq!(r[0]["cookie"], SESSION);
    assert_eq!(r[0]["type"], "application/json");
    // Stored as served, recorded as a good job, drilled.
    assert_eq!(e.cat("current/app-backup.zip"), app.zip);
    let status = e.ok(&["status"]);
    assert!(status.contains("last job:        OK"), "{status}");
    assert!(
        status.contains("/app-backup.zip at") && status.contains("checked: 1 zip; 5 zip members, 75 JSON objects"),
        "{status}"
    );
}

#[test]
fn a_wrong_key_or_a_cut_download_fails_the_job_and_stores_nothing() {
    require_tool("curl");
    let e = Env::new();
    e.init();
    let app = App::start(&e);
    let o = app.run();
    assert!(o.status.success(), "{}", text(&o));
    let good = e.cat("current/app-backup.zip");
    let fp = e.fingerprint();

    // A wrong key: 403.
    std::fs::write(app.dir.join("backup.key"), "another key of more than twenty characters\n").unwrap();
    let o = app.run();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("403") && out.contains("nothing was stored"), "{out}");
    assert_eq!(e.cat("current/app-backup.zip"), good);
    let s = e.cmd(&["status"]).output().unwrap();
    assert_eq!(s.status.code(), Some(7), "{}", text(&s));
    assert!(String::from_utf8_lossy(&s.stdout).contains("last job:        FAILED"));

    // A key too short never leaves the machine.
    std::fs::write(app.dir.join("backup.key"), "short\n").unwrap();
    let o = app.run();
    assert!(text(&o).contains("shorter than 20 characters"), "{}", text(&o));

    // The connection cut half-way (Content-Length known): curl sees it.
    std::fs::write(app.dir.join("backup.key"), format!("{KEY}\n")).unwrap();
    app.mode("cut");
    let o = app.run();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("curl failed") && out.contains("nothing was stored"), "{out}");
    assert_eq!(e.cat("current/app-backup.zip"), good, "the earlier backup is untouched");
    let after: Vec<_> = e.fingerprint().into_iter().filter(|(p, ..)| !p.contains("/logs/")).collect();
    let before: Vec<_> = fp.into_iter().filter(|(p, ..)| !p.contains("/logs/")).collect();
    assert_eq!(after, before, "a failed download changes nothing but the log");

    // Cut without a Content-Length: curl cannot tell, the drill of the stored zip can.
    app.mode("cut-nolength");
    let o = app.run();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("no end-of-central-directory record") && out.contains("marked failed"), "{out}");
    let d = e.cmd(&["drill", "--snapshot", "current"]).output().unwrap();
    assert_eq!(d.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&d.stdout).contains("marked failed by its backup job"));

    // The next good run replaces it.
    app.mode("ok");
    let o = app.run();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(e.cat("current/app-backup.zip"), good);
    assert!(e.ok(&["status"]).contains("last job:        OK"));
}
