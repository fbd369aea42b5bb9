//! pg_dump -Fc into the mount (it seeks back to rewrite its table of contents) and pg_restore
//! from it into a new database, with a real PostgreSQL server from Debian started here on a
//! private socket. Fails (never skips) when PostgreSQL or FUSE is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

const KEY: &str = "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";

fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    let p = dirs.into_iter().rev().map(|d| d.join(name)).find(|p| p.exists());
    p.unwrap_or_else(|| {
        panic!("this test needs PostgreSQL's {name} (apt-get install postgresql; scripts/install-deps.sh does it)")
    })
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Pg {
    data: PathBuf,
    sock: PathBuf,
    port: u16,
}

impl Pg {
    fn start(dir: &Path) -> Pg {
        let data = dir.join("pgdata");
        let sock = dir.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        run(Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir));
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data));
        let port = 20000 + (std::process::id() % 20000) as u16;
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(format!("-k {} -p {port} -c listen_addresses=''", sock.display()))
            .args(["-w", "-l"])
            .arg(dir.join("pg.log"))
            .arg("start"));
        let pg = Pg { data, sock, port };
        pg.wait_ready();
        pg
    }

    /// `pg_ctl -w` returns once the server accepts connections; wait (at most 60 s) until it
    /// answers a query too.
    fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let out = self.cmd("psql").args(["-X", "-A", "-t", "-q", "-d", "postgres", "-c", "SELECT 1"]).output();
            let last = match out {
                Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "1" => return,
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(std::time::Instant::now() < deadline, "PostgreSQL does not answer after 60 s: {last}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(pg_bin(bin));
        c.arg("-h").arg(&self.sock).arg("-p").arg(self.port.to_string()).arg("-U").arg("postgres");
        c
    }

    fn sql(&self, db: &str, q: &str) -> String {
        run(self.cmd("psql").args(["-X", "-A", "-t", "-q", "-d", db, "-c", q]))
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
            .status();
    }
}

#[test]
fn pg_dump_custom_format_into_the_mount_and_pg_restore_from_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pgdir = dir.path().join("pg");
    std::fs::create_dir_all(&pgdir).unwrap();
    let pg = Pg::start(&pgdir);
    run(pg.cmd("createdb").arg("app"));
    run(pg.cmd("pgbench").args(["-i", "-q", "-s", "4", "app"]));
    pg.sql("app", "CREATE TABLE uploads(id serial primary key, name text, body bytea); INSERT INTO uploads(name, body) SELECT 'report-' || g, decode(repeat(md5(g::text), 40), 'hex') FROM generate_series(1, 20000) g;");
    // Text that compresses about 2:1, so that the archive outgrows the mount's 8 MiB tail and
    // the rewrite of its table of contents lands behind what was already expanded.
    pg.sql("app", "CREATE TABLE notes(id int primary key, body text); INSERT INTO notes SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) FROM generate_series(1, 250000) g;");

    // Vault and mount.
    let vault = dir.path().join("vault");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let secret = vault::crypto::Secret::raw_key_from_hex(KEY).unwrap();
    vault::repo::Vault::init(Arc::new(vault::store::local::LocalStore::new(&vault)), &secret, &Default::default())
        .unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_vaultfs"))
        .arg("mount")
        .arg(&vault)
        .arg(&mnt)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("VAULT_KEY", KEY));
    assert!(out.contains("mounted"));
    let dump = mnt.join("app.pgdump");
    let result = std::panic::catch_unwind(|| {
        run(pg.cmd("pg_dump").args(["-Fc", "-f"]).arg(&dump).arg("app"));
        run(pg.cmd("createdb").arg("app_restored"));
        run(pg.cmd("pg_restore").args(["-d", "app_restored"]).arg(&dump));
        for t in ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "uploads", "notes"] {
            let q = format!("SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM {t} t");
            assert_eq!(pg.sql("app", &q), pg.sql("app_restored", &q), "table {t} differs after restore");
        }
        let n = pg.sql("app_restored", "SELECT count(*) FROM pgbench_accounts");
        assert_eq!(n.trim(), "400000");
        // pg_restore's listing reads the table of contents pg_dump rewrote at the start.
        let list = run(pg.cmd("pg_restore").arg("-l").arg(&dump));
        assert!(list.contains("TABLE DATA public uploads"), "{list}");
        let size = std::fs::metadata(&dump).unwrap().len();
        assert!(size > 12 << 20, "the archive is {size} bytes");
    });
    let _ = Command::new("fusermount3").arg("-u").arg(&mnt).status();
    std::thread::sleep(std::time::Duration::from_millis(500));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    let v =
        vault::repo::Vault::open(Arc::new(vault::store::local::LocalStore::new(&vault)), &secret, &Default::default())
            .unwrap();
    assert!(vault::commands::check::check(&v, true).unwrap().ok());
    // pg_dump rewrote its table of contents at the start once the data was written: bytes
    // the expansion copies, so the archive stays stored expanded (docs/DESIGN.md §14).
    let info = v.resolve("current").unwrap();
    let node = v.lookup(info.snap.root, &[b"app.pgdump".to_vec()]).unwrap();
    assert!(
        matches!(&node.kind, vault::format::tree::NodeKind::File { content, .. } if content.recipe.is_some()),
        "app.pgdump is not stored expanded"
    );
}
