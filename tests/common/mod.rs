//! Helpers for black-box tests of the binaries: a temp vault, a clean environment (no
//! `VAULT_*` variable of the caller leaks in), and checks that fail loudly when a tool the
//! test needs (faketime, mount) is missing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub cache: PathBuf,
    pub secret: (String, String),
}

pub fn vaultctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vaultctl"))
}

/// Fails (never skips) when a required external tool is missing.
pub fn require_tool(name: &str) -> PathBuf {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    assert!(out.status.success(), "this test needs `{name}`; install it with scripts/install-deps.sh");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("vault");
        let cache = dir.path().join("cache");
        Env { dir, repo, cache, secret: ("VAULT_PASSPHRASE".into(), "test passphrase".into()) }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A command with a clean environment; `faketime` prefixes it with a fake date.
    pub fn cmd_at(&self, faketime: Option<&str>, args: &[&str]) -> Command {
        let mut c = match faketime {
            Some(t) => {
                let mut c = Command::new(require_tool("faketime"));
                c.arg(t).arg(vaultctl_bin());
                c
            }
            None => Command::new(vaultctl_bin()),
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("VAULT_") {
                c.env_remove(k);
            }
        }
        c.env("VAULT_REPO", &self.repo).env("VAULT_CACHE_DIR", &self.cache).env("TZ", "UTC");
        c.env(&self.secret.0, &self.secret.1);
        c.args(args);
        c.stdin(Stdio::null());
        c
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_at(None, args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.run(args), args)
    }

    pub fn ok_at(&self, t: &str, args: &[&str]) -> String {
        ok(self.cmd_at(Some(t), args).output().unwrap(), args)
    }

    /// Runs, expects failure with `code`, returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        fails(o, args, code)
    }

    pub fn init(&self) {
        self.ok(&["init", "--chunk-avg", "4KiB", "--pack-size", "1MiB"]);
    }

    pub fn put_bytes(&self, name: &str, data: &[u8]) -> String {
        let f = self.path(&format!("input-{}", name.replace('/', "_")));
        std::fs::write(&f, data).unwrap();
        self.ok(&["put", name, f.to_str().unwrap()])
    }

    pub fn cat(&self, spec: &str) -> Vec<u8> {
        let o = self.run(&["cat", spec]);
        assert!(o.status.success(), "cat {spec}: {}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    }

    /// Every file below the vault dir with size and content hash (to prove nothing changed).
    pub fn fingerprint(&self) -> Vec<(String, u64, [u8; 32])> {
        let mut out = Vec::new();
        walk(&self.repo, &mut out);
        out.sort();
        out
    }
}

fn walk(p: &Path, out: &mut Vec<(String, u64, [u8; 32])>) {
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        if path.is_dir() {
            walk(&path, out);
        } else if e.file_name() != "lock" {
            let b = std::fs::read(&path).unwrap();
            out.push((path.display().to_string(), b.len() as u64, *blake3::hash(&b).as_bytes()));
        }
    }
}

pub fn ok(o: Output, args: &[&str]) -> String {
    assert!(
        o.status.success(),
        "vaultctl {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn fails(o: Output, args: &[&str], code: i32) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(code),
        "vaultctl {args:?}: stdout {} stderr {stderr}",
        String::from_utf8_lossy(&o.stdout)
    );
    stderr
}

/// Deterministic test data: random-looking with compressible stretches.
pub fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (out.len() / 8192) % 3 == 0 {
            out.extend_from_slice(b"lorem ipsum dolor ");
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(n);
    out
}

/// Pack files of the vault, largest first.
pub fn packs_by_size(repo: &Path) -> Vec<(PathBuf, u64)> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(repo.join("packs")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap();
            v.push((f.path(), f.metadata().unwrap().len()));
        }
    }
    v.sort_by_key(|(_, s)| std::cmp::Reverse(*s));
    v
}

/// A program from the test venv (`.venv`, made by scripts/install-deps.sh). Fails, never
/// skips, when it is missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = root.join(".venv/bin").join(name);
    assert!(p.exists(), "this test needs {}; run scripts/install-deps.sh", p.display());
    p
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process on loopback, killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    /// Starts `cmd` (which must listen on `port`) and waits up to 60 s until `ready` succeeds
    /// against it: a real request answered, not only an open port (a server may accept
    /// connections before it can serve them, and reset the first ones). Fails with the
    /// server's log otherwise.
    pub fn start(mut cmd: Command, port: u16, log: PathBuf, ready: impl Fn(u16) -> Result<(), String>) -> Server {
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(f.try_clone().unwrap()).stderr(f).stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut s = Server { child, port, log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let last = match ready(port) {
                Ok(()) => return s,
                Err(e) => e,
            };
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("server exited ({st}): {}", std::fs::read_to_string(&s.log).unwrap_or_default());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server on port {port} not ready after 60 s (last attempt: {last}): {}",
                std::fs::read_to_string(&s.log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// An S3-compatible server (moto) on loopback, ready once it answers a ListBuckets request.
    pub fn moto(dir: &Path) -> Server {
        Server::moto_with_env(dir, &[])
    }

    /// Like `moto`, with extra environment for the server process.
    pub fn moto_with_env(dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut c = Command::new(venv_bin("moto_server"));
        c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        c.envs(env.iter().copied());
        Server::start(c, port, dir.join(format!("moto-{port}.log")), |port| {
            let (status, body) = http_request(port, "GET", "/", &[], b"")?;
            if status == 200 && body.contains("ListAllMyBucketsResult") {
                Ok(())
            } else {
                Err(format!("ListBuckets answered {status}: {body}"))
            }
        })
    }

    /// A MongoDB wire-compatible server (SecantusDB) on loopback, in memory, ready once it
    /// answers a `hello` command.
    pub fn mongo(dir: &Path) -> Server {
        let port = free_port();
        let mut c = Command::new(venv_bin("secantusd-py"));
        c.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--storage-path", ":memory:", "--standalone"]);
        c.current_dir(dir);
        Server::start(c, port, dir.join(format!("secantus-{port}.log")), mongo_hello)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// One HTTP/1.1 request to loopback (`Connection: close`): status and body. Errors are the
/// transport's (refused, reset, cut short), for callers that retry them.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    http_exchange(port, method, path, headers, body).map(|(status, _, body)| (status, body))
}

/// `http_request` that also gives the response's header lines (status line first).
pub fn http_exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String, String), String> {
    use std::io::{Read, Write};
    let timeout = Some(std::time::Duration::from_secs(10));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(timeout).and_then(|()| s.set_write_timeout(timeout)).map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).and_then(|()| s.write_all(body)).map_err(|e| format!("send: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("receive: {e}"))?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {text:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((status, head.to_string(), body.to_string()))
}

/// `http_request`, retried while the transport fails (a server that has just started may
/// reset a connection), for at most 30 s; an HTTP answer of any status is returned at once.
pub fn http_request_retried(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match http_request(port, method, path, headers, body) {
            Ok(r) => return r,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("{method} {path} on port {port}: {e}; retrying");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => panic!("{method} {path} on port {port}: {e} (for 30 s)"),
        }
    }
}

/// Sends `{hello: 1}` as an OP_MSG and checks that the reply is an OP_MSG answering it with
/// `ok: 1`.
fn mongo_hello(port: u16) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut doc = Vec::new();
    doc.extend_from_slice(&[0; 4]);
    doc.push(0x10);
    doc.extend_from_slice(b"hello\0");
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.push(0x02);
    doc.extend_from_slice(b"$db\0");
    doc.extend_from_slice(&6i32.to_le_bytes());
    doc.extend_from_slice(b"admin\0");
    doc.push(0);
    let n = doc.len() as i32;
    doc[..4].copy_from_slice(&n.to_le_bytes());
    let mut msg = Vec::new();
    let total = 16 + 4 + 1 + doc.len();
    for v in [total as i32, 7, 0, 2013] {
        msg.extend_from_slice(&v.to_le_bytes());
    }
    msg.extend_from_slice(&0u32.to_le_bytes());
    msg.push(0);
    msg.extend_from_slice(&doc);
    let timeout = Some(std::time::Duration::from_secs(10));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    s.write_all(&msg).map_err(|e| format!("send: {e}"))?;
    let mut head = [0u8; 16];
    s.read_exact(&mut head).map_err(|e| format!("receive: {e}"))?;
    let word = |i: usize| i32::from_le_bytes(head[i..i + 4].try_into().unwrap());
    let (len, response_to, op) = (word(0), word(8), word(12));
    if op != 2013 || response_to != 7 || !(21..=48_000_000).contains(&len) {
        return Err(format!("unexpected reply header: length {len}, responseTo {response_to}, opCode {op}"));
    }
    let mut rest = vec![0u8; len as usize - 16];
    s.read_exact(&mut rest).map_err(|e| format!("receive: {e}"))?;
    // `ok` as a double 1.0 (or an int32 1) somewhere in the reply document.
    let has = |pat: &[u8]| rest.windows(pat.len()).any(|w| w == pat);
    let ok_double = [&[0x01][..], b"ok\0", &1.0f64.to_le_bytes()].concat();
    let ok_int = [&[0x10][..], b"ok\0", &1i32.to_le_bytes()].concat();
    if has(&ok_double) || has(&ok_int) {
        Ok(())
    } else {
        Err(format!("hello not answered with ok: 1 ({} bytes)", rest.len()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program of the newest PostgreSQL server installed from Debian's packages
/// (`/usr/lib/postgresql/N/bin`). Fails, never skips, when PostgreSQL is missing.
pub fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter().rev().map(|d| d.join(name)).find(|p| p.exists()).unwrap_or_else(|| {
        panic!("this test needs PostgreSQL's {name} (apt-get install postgresql; scripts/install-deps.sh does it)")
    })
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PostgreSQL server of its own (Debian's, started as the `postgres` user with runuser, so
/// the test runs as root) listening on a loopback port, where TCP clients need the password
/// (SCRAM), and on a private socket for the test's own setup (trust). Stopped when dropped.
pub struct Pg {
    data: PathBuf,
    pub sock: PathBuf,
    pub port: u16,
    pub password: String,
}

impl Pg {
    /// Starts a server under `dir` (made accessible to the `postgres` user) and waits until
    /// it answers a query over TCP with the password.
    pub fn start(dir: &Path) -> Pg {
        let root = dir.join("pg");
        let data = root.join("data");
        let sock = root.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        let password = "s3cret-p4ss word".to_string();
        std::fs::write(root.join("pwfile"), &password).unwrap();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        run_ok(Command::new("chown").arg("-R").arg("postgres:postgres").arg(&root));
        run_ok(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin("initdb"))
                .args(["--auth-local=trust", "--auth-host=scram-sha-256", "-U", "postgres", "--pwfile"])
                .arg(root.join("pwfile"))
                .arg("-D")
                .arg(&data),
        );
        let port = free_port();
        run_ok(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(format!("-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off", sock.display()))
                .args(["-w", "-t", "60", "-l"])
                .arg(root.join("server.log"))
                .arg("start"),
        );
        let pg = Pg { data, sock, port, password };
        // A real query over TCP, with the password: what the drill will do.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let out = Command::new(pg_bin("psql"))
                .args(["-X", "-At", "-d", &pg.uri("postgres"), "-c", "SELECT 42"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "42" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL not answering after 60 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        pg
    }

    /// A URI for `db` over TCP, with the password.
    pub fn uri(&self, db: &str) -> String {
        format!("postgresql://postgres:{}@127.0.0.1:{}/{db}", self.password.replace(' ', "%20"), self.port)
    }

    /// A client program connected through the private socket as `postgres`.
    pub fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(pg_bin(bin));
        c.arg("-h").arg(&self.sock).arg("-p").arg(self.port.to_string()).arg("-U").arg("postgres");
        c
    }

    /// Runs SQL in `db`; returns the unaligned output.
    pub fn sql(&self, db: &str, q: &str) -> String {
        run_ok(self.cmd("psql").args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", q]))
    }

    pub fn databases(&self) -> Vec<String> {
        self.sql("postgres", "SELECT datname FROM pg_database ORDER BY 1").lines().map(String::from).collect()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
