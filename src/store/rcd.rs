//! A long-lived `rclone rcd` for one rclone store, and the small HTTP client that talks to it.
//!
//! One rclone process per operation costs a Go start-up (50-300 ms of CPU) for every object;
//! this daemon serves every operation of the store instead: JSON calls to its remote-control
//! API (`operations/copyfile`, `movefile`, `deletefile`, `list`, `stat`, `fsinfo`) and object
//! reads, ranged or whole, through its `--rc-serve` file server (`GET /[REMOTE:path]/file`
//! with a `Range` header). See docs/PERFORMANCE.md for the measurements behind the choice.
//!
//! Security: the daemon listens on 127.0.0.1 on a port the kernel picks, and requires HTTP
//! basic authentication with a random 128-bit password. User and password reach rclone
//! through its environment (`RCLONE_RC_USER`, `RCLONE_RC_PASS`), never its argv, so other
//! local users can neither read them from the process list nor use the daemon.
//!
//! Lifetime: the daemon is started on first use by a keeper thread that lives as long as the
//! store. The child gets `PR_SET_PDEATHSIG` = SIGKILL, which the kernel ties to the thread that
//! forked it: a killed vault process (or a dropped store) takes its daemon with it. A daemon
//! that died on its own is started again on the next request.
//!
//! Uploads are staged in a private temporary directory (`$TMPDIR/vault-rclone-<pid>-<hex>`,
//! mode 0700) and copied from there with `operations/copyfile`, so that rclone knows each
//! object's size up front: it then sends one plain upload, streaming from the file with bounded
//! memory. (`rclone rcat --streaming-upload-cutoff N` buffered a 13 MB object into 13 GB of
//! memory; streaming uploads of unknown size become multipart uploads on object stores.)
//! Staging directories of dead processes are removed when a daemon starts.

use crate::error::{Error, ErrorKind, Result};
use rand::RngCore;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one request may take (a copy of a large object over a slow link included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long the daemon may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the daemon's log kept for error messages.
const LOG_LINES: usize = 20;

/// How to start the daemon: the binary, its extra arguments and environment.
#[derive(Clone)]
pub struct RcdConfig {
    pub binary: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
    /// What the messages call the store (its URL).
    pub what: String,
}

/// A running daemon.
struct Running {
    port: u16,
    auth: String,
    staging: PathBuf,
    log: Arc<Mutex<VecDeque<String>>>,
    /// Dropping it tells the keeper thread to stop the daemon.
    stop: Mutex<Option<mpsc::Sender<()>>>,
    keeper: Mutex<Option<std::thread::JoinHandle<()>>>,
}

pub struct Rcd {
    config: RcdConfig,
    running: Mutex<Option<Arc<Running>>>,
}

/// An answer of the daemon.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// The `error` field of a failed call, or the body as text.
    pub fn error_text(&self) -> String {
        match self.json()["error"].as_str() {
            Some(e) => e.to_string(),
            None => String::from_utf8_lossy(&self.body).trim().chars().take(300).collect(),
        }
    }
}

impl Rcd {
    pub fn new(config: RcdConfig) -> Rcd {
        Rcd { config, running: Mutex::new(None) }
    }

    fn running(&self) -> Result<Arc<Running>> {
        let mut g = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = g.as_ref() {
            return Ok(r.clone());
        }
        let r = Arc::new(self.start()?);
        *g = Some(r.clone());
        Ok(r)
    }

    /// Forgets a daemon that stopped answering (the next request starts a new one).
    fn forget(&self, dead: &Arc<Running>) {
        let mut g = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if g.as_ref().is_some_and(|r| Arc::ptr_eq(r, dead)) {
            *g = None;
        }
    }

    /// Starts the daemon (see the module doc); returns once it listens.
    fn start(&self) -> Result<Running> {
        remove_dead_staging_dirs();
        let mut r = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut r);
        let pass = hex::encode(r);
        rand::rngs::OsRng.fill_bytes(&mut r[..8]);
        let staging =
            std::env::temp_dir().join(format!("vault-rclone-{}-{}", std::process::id(), hex::encode(&r[..8])));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&staging)
                .map_err(|e| Error::io(format!("{}: staging directory {}", self.config.what, staging.display()), e))?;
        }
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (port_tx, port_rx) = mpsc::channel::<Result<u16>>();
        let config = self.config.clone();
        let (keeper_log, keeper_staging, keeper_pass) = (log.clone(), staging.clone(), pass.clone());
        let handle = std::thread::Builder::new()
            .name("vault-rcd".into())
            .spawn(move || keeper(config, keeper_pass, keeper_log, keeper_staging, port_tx, stop_rx))
            .map_err(|e| Error::io("starting the rclone keeper thread", e))?;
        let port = match port_rx.recv_timeout(START_TIMEOUT) {
            Ok(r) => r?,
            Err(_) => {
                let tail = log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>().join("; ");
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("{}: rclone rcd did not start listening within 60 s: {tail}", self.config.what),
                ));
            }
        };
        Ok(Running {
            port,
            auth: super::base64(format!("vault:{pass}").as_bytes()),
            staging,
            log,
            stop: Mutex::new(Some(stop_tx)),
            keeper: Mutex::new(Some(handle)),
        })
    }

    /// A file in the daemon's staging directory, for `copyfile` from it: (directory, name).
    pub fn stage(&self, data: &[u8]) -> Result<(Staged, String)> {
        let run = self.running()?;
        let mut r = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut r);
        let name = hex::encode(r);
        let path = run.staging.join(&name);
        let res =
            std::fs::OpenOptions::new().write(true).create_new(true).open(&path).and_then(|mut f| f.write_all(data));
        let staged = Staged(path.clone());
        res.map_err(|e| Error::io(format!("{}: staging an upload in {}", self.config.what, path.display()), e))?;
        Ok((staged, run.staging.display().to_string()))
    }

    /// A remote-control call: POST `/<call>` with a JSON body.
    pub fn call(&self, call: &str, params: &serde_json::Value) -> Result<Response> {
        let body = serde_json::to_vec(params).unwrap_or_default();
        self.request("POST", &format!("/{call}"), &[("Content-Type", "application/json".into())], &body)
    }

    /// Reads `rel` below the rclone path `fs` through the file server; `range` = (offset, len).
    pub fn read(&self, fs: &str, rel: &str, range: Option<(u64, u32)>) -> Result<Response> {
        let path = format!("/{}/{}", encode(&format!("[{fs}]")), encode(rel));
        let mut headers = Vec::new();
        if let Some((o, n)) = range {
            headers.push(("Range", format!("bytes={o}-{}", o + n as u64 - 1)));
        }
        self.request("GET", &path, &headers, b"")
    }

    /// One request; a daemon that refuses the connection is replaced once.
    fn request(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let run = self.running()?;
            match http(&run, method, path, headers, body) {
                Ok(r) => return Ok(r),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && attempt == 0 => {
                    self.forget(&run);
                    attempt += 1;
                }
                Err(e) => {
                    let tail = {
                        let l = run.log.lock().unwrap_or_else(|e| e.into_inner());
                        l.iter().rev().take(3).rev().cloned().collect::<Vec<_>>().join("; ")
                    };
                    return Err(Error::io(format!("{}: rclone rcd {method} {path} ({tail})", self.config.what), e));
                }
            }
        }
    }
}

impl Drop for Rcd {
    /// Stops the daemon and waits for it (and for its staging directory to go).
    fn drop(&mut self) {
        let run = self.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(run) = run {
            drop(run.stop.lock().unwrap_or_else(|e| e.into_inner()).take());
            if let Some(k) = run.keeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = k.join();
            }
        }
    }
}

/// A staged upload, removed when dropped.
pub struct Staged(PathBuf);

impl Staged {
    pub fn name(&self) -> String {
        self.0.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The keeper thread: starts the daemon, reports its port, keeps its log, and stops it (and
/// removes the staging directory) when the store lets go.
fn keeper(
    config: RcdConfig,
    pass: String,
    log: Arc<Mutex<VecDeque<String>>>,
    staging: PathBuf,
    port_tx: mpsc::Sender<Result<u16>>,
    stop_rx: mpsc::Receiver<()>,
) {
    let child = spawn(&config, &pass);
    let mut child: Child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = port_tx.send(Err(e));
            let _ = std::fs::remove_dir_all(&staging);
            return;
        }
    };
    if let Some(stderr) = child.stderr.take() {
        let what = config.what.clone();
        let _ = std::thread::Builder::new().name("vault-rcd-log".into()).spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(port) = listening_port(&line) {
                        let _ = port_tx.send(Ok(port));
                        sent = true;
                        continue;
                    }
                }
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                if l.len() == LOG_LINES {
                    l.pop_front();
                }
                l.push_back(line);
            }
            if !sent {
                let tail = log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>().join("; ");
                let _ = port_tx.send(Err(Error::new(ErrorKind::Io, format!("{what}: rclone rcd exited: {tail}"))));
            }
        });
    }
    // Until the store is dropped (or the process ends, which kills the daemon through
    // PDEATHSIG).
    let _ = stop_rx.recv();
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&staging);
}

fn spawn(config: &RcdConfig, pass: &str) -> Result<Child> {
    let mut c = Command::new(&config.binary);
    c.arg("rcd").args(["--rc-addr", "127.0.0.1:0", "--rc-serve"]).args(&config.args);
    // The remote-control settings are ours alone (an inherited RCLONE_RC_ADDR or
    // RCLONE_RC_NO_AUTH must not open the daemon to others).
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RCLONE_RC_") {
            c.env_remove(k);
        }
    }
    for k in &config.env_remove {
        c.env_remove(k);
    }
    c.envs(config.env.iter().filter(|(k, _)| !k.starts_with("RCLONE_RC_")).map(|(k, v)| (k, v)));
    c.env("RCLONE_RC_USER", "vault").env("RCLONE_RC_PASS", pass);
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: prctl in the child before exec; no memory is shared or allocated.
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    c.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(format!(
                "{}: the `{}` program is not installed (apt-get install rclone)",
                config.what, config.binary
            ))
        } else {
            Error::io(format!("{}: starting {}", config.what, config.binary), e)
        }
    })
}

/// The port of "NOTICE: Serving remote control on http://127.0.0.1:PORT/".
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("Serving remote control on http://127.0.0.1:").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

/// Removes `$TMPDIR/vault-rclone-<pid>-*` directories whose process is gone (a killed vault
/// process cannot remove its own).
fn remove_dead_staging_dirs() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("vault-rclone-").and_then(|r| r.split('-').next()) else { continue };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone =
            unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// One HTTP/1.0 request to the daemon (one connection each: loopback, and the answer ends
/// when the connection closes). The body of a `Content-Length` answer must be complete.
fn http(run: &Running, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", run.port))?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {}\r\nContent-Length: {}\r\n",
        run.port,
        run.auth,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::with_capacity(1 << 16, s);
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("rclone rcd: {what}"));
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(&format!("not an HTTP answer: {:?}", line.trim())))?;
    let mut length: Option<usize> = None;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("answer cut short in its headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            }
        }
    }
    let mut body = Vec::with_capacity(length.unwrap_or(0).min(256 << 20));
    r.read_to_end(&mut body)?;
    if let Some(n) = length {
        if body.len() != n {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("rclone rcd: answer cut short ({} of {n} bytes)", body.len()),
            ));
        }
    }
    Ok(Response { status, body })
}

/// Percent-encodes everything but unreserved characters, `/` and `:`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(encode("[vts3:bucket/x y]"), "%5Bvts3:bucket/x%20y%5D");
        assert_eq!(
            listening_port("2026/12/03 07:11:06 NOTICE: Serving remote control on http://127.0.0.1:41005/"),
            Some(41005)
        );
    }
}
