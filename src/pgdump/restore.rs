//! Restoring pg_dump output into scratch databases, for restore drills.
//!
//! This is the only part of the engine that talks to a PostgreSQL server, and it does so
//! through PostgreSQL's own client programs: `psql` for the few statements it runs (is the
//! server there, does the scratch database exist, create and drop it, count the restored rows)
//! and for plain dumps, `pg_restore` for custom archives. Both read the dump on their standard
//! input while the verifier reads the same bytes: nothing is written to disk in plaintext. The
//! connection URI's password reaches them only through `PGPASSWORD` in their environment.
//!
//! Each dump of a drill gets a database of its own: the first the name given (`--restore-db`),
//! the next ones that name with `_2`, `_3`, ... Each must not exist beforehand, unless the
//! caller asks to drop it (`drop_existing`); databases the drill created are dropped at the end
//! unless kept. Names are restricted to letters, digits, `_` and `-`, and the server's own
//! databases (`postgres`, `template0`, `template1`, the one the URI names) are refused. Must
//! never: run a statement in any database but a scratch one (plain dumps that create or switch
//! databases are refused by the verifier before anything is sent), or show the password.

use super::conninfo::ConnInfo;
use super::{DumpFormat, DumpReport};
use crate::error::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the restore runs.
#[derive(Debug, Clone)]
pub struct PgRestoreOptions {
    pub uri: String,
    pub database: String,
    /// Keep the scratch databases after the drill.
    pub keep: bool,
    /// Drop a scratch database first if it exists (otherwise an existing one is refused).
    pub drop_existing: bool,
    /// Connection timeout, unless the URI sets `connect_timeout`.
    pub timeout: Duration,
}

impl PgRestoreOptions {
    pub fn new(uri: &str, database: &str) -> Self {
        PgRestoreOptions {
            uri: uri.to_string(),
            database: database.to_string(),
            keep: false,
            drop_existing: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The outcome for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRestore {
    pub schema: String,
    pub table: String,
    /// Rows counted in the scratch database (`None`: the table is not there).
    pub restored: Option<u64>,
}

/// What happened to one dump.
#[derive(Debug, Clone, Default)]
pub struct DumpRestore {
    pub database: String,
    pub tables: Vec<TableRestore>,
    pub large_objects: Option<u64>,
    /// Rows counted in the restored tables.
    pub rows: u64,
    pub errors: Vec<String>,
}

/// What `pg_restore --no-owner --no-privileges` leaves out, for a plain SQL dump on its way
/// to psql: the lines `ALTER ... OWNER TO ...;`, `GRANT ...;`, `REVOKE ...;` and `SET SESSION
/// AUTHORIZATION ...;` that pg_dump writes one per line outside `COPY` data. Without it a
/// role that may only create databases cannot restore a dump whose objects belong to another
/// role, and the drill would fail on ownership rather than on the data.
#[derive(Default)]
pub struct NoOwner {
    /// The start of a line not yet complete.
    partial: Vec<u8>,
    /// Inside the rows of a `COPY ... FROM stdin;` (up to the line `\.`).
    in_copy: bool,
}

impl NoOwner {
    /// The bytes of `data` to send on (complete lines, the ones to leave out dropped).
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + self.partial.len());
        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(nl + 1);
            rest = after;
            if self.partial.is_empty() {
                self.line(line, &mut out);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, &mut out);
            }
        }
        self.partial.extend_from_slice(rest);
        out
    }

    /// The last line when the dump does not end with a newline.
    pub fn finish(&mut self) -> Vec<u8> {
        let last = std::mem::take(&mut self.partial);
        let mut out = Vec::new();
        if !last.is_empty() {
            self.line(&last, &mut out);
        }
        out
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if self.in_copy {
            self.in_copy = text != b"\\.";
        } else if text.starts_with(b"COPY ") && text.ends_with(b"FROM stdin;") {
            self.in_copy = true;
        } else if Self::left_out(text) {
            return;
        }
        out.extend_from_slice(line);
    }

    fn left_out(text: &[u8]) -> bool {
        let statement = text.ends_with(b";");
        let owner = text.starts_with(b"ALTER ") && memchr::memmem::find(text, b" OWNER TO ").is_some();
        statement
            && (owner
                || text.starts_with(b"GRANT ")
                || text.starts_with(b"REVOKE ")
                || text.starts_with(b"SET SESSION AUTHORIZATION "))
    }
}

/// A dump being fed to `pg_restore` or `psql`.
pub struct Load {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    database: String,
    tool: &'static str,
    /// Time spent blocked writing into the tool.
    waited: Duration,
    /// The tool stopped reading (it exited); the rest is not sent.
    broken: bool,
    /// For a plain SQL dump: drops its ownership and privilege statements on the way.
    filter: Option<NoOwner>,
}

impl Load {
    /// Sends bytes of the dump (ignored once the tool has stopped reading).
    pub fn write(&mut self, data: &[u8]) {
        if self.broken {
            return;
        }
        let filtered;
        let data = match self.filter.as_mut() {
            Some(f) => {
                filtered = f.feed(data);
                &filtered[..]
            }
            None => data,
        };
        self.send(data);
    }

    fn send(&mut self, data: &[u8]) {
        let Some(w) = self.stdin.as_mut() else { return };
        let t = Instant::now();
        if w.write_all(data).is_err() {
            self.broken = true;
        }
        self.waited += t.elapsed();
    }

    /// What the filter still holds (a last line without its newline).
    fn finish_input(&mut self) {
        if let Some(rest) = self.filter.as_mut().map(NoOwner::finish) {
            if !self.broken {
                self.send(&rest);
            }
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// Time spent so far blocked writing into the tool.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stdin.take();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct PgRestorer {
    conn: ConnInfo,
    opts: PgRestoreOptions,
    server: String,
    psql: PathBuf,
    pg_restore: PathBuf,
    /// Databases created by this drill, in order.
    created: Vec<String>,
    insert_wait: Duration,
    verify: Duration,
    rows: u64,
    errors: Vec<String>,
    closed: bool,
}

/// Finds a PostgreSQL client program on PATH.
fn tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("{name} is not on PATH: a PostgreSQL restore drill needs the PostgreSQL client programs (Debian: postgresql-client)"),
        )
    })
}

/// Double-quoted SQL identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn check_db_name(name: &str, maintenance: &str) -> Result<()> {
    if name.is_empty() || name.len() > 60 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(Error::invalid(format!(
            "--restore-db {name:?}: a scratch database name is 1-60 letters, digits, _ or -"
        )));
    }
    if ["postgres", "template0", "template1", maintenance].contains(&name) {
        return Err(Error::invalid(format!(
            "--restore-db {name}: a drill never restores into the server's own databases or the one it connects to"
        )));
    }
    Ok(())
}

/// The last lines of a tool's error output, for a message.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(6);
    lines[from..].join(" | ")
}

impl PgRestorer {
    /// Finds the client programs, checks that the server answers (within the timeout), and
    /// that the scratch database does not exist (or drops it with `drop_existing`).
    pub fn connect(opts: PgRestoreOptions) -> Result<PgRestorer> {
        let conn = ConnInfo::parse(&opts.uri)?;
        check_db_name(&opts.database, conn.maintenance_db())?;
        let psql = tool("psql")?;
        let pg_restore = tool("pg_restore")?;
        let server = conn.server();
        let mut r = PgRestorer {
            conn,
            opts,
            server,
            psql,
            pg_restore,
            created: Vec::new(),
            insert_wait: Duration::ZERO,
            verify: Duration::ZERO,
            rows: 0,
            errors: Vec::new(),
            closed: false,
        };
        let maint = r.conn.maintenance_db().to_string();
        r.sql(&maint, "SELECT 1").map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot reach the PostgreSQL server {} (database {maint}): {e}", r.server),
            )
        })?;
        let name = r.opts.database.clone();
        r.prepare(&name)?;
        Ok(r)
    }

    /// The server, named by its hosts (never the URI, which may hold a password).
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn database(&self) -> &str {
        &self.opts.database
    }

    pub fn keeps(&self) -> bool {
        self.opts.keep
    }

    /// Scratch databases created so far.
    pub fn databases(&self) -> &[String] {
        &self.created
    }

    /// Time spent waiting for the server: creating the databases, blocked writes, the tools
    /// finishing.
    pub fn insert_wait(&self) -> Duration {
        self.insert_wait
    }

    /// Time spent counting restored rows.
    pub fn verify_time(&self) -> Duration {
        self.verify
    }

    /// Rows counted in all restored tables.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Errors not tied to one dump (dropping databases).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    fn command(&self, program: &PathBuf) -> Command {
        let mut c = Command::new(program);
        for (k, v) in self.conn.env(self.opts.timeout.as_secs()) {
            c.env(k, v);
        }
        c
    }

    /// Runs one statement in `db` with psql; returns its unaligned output.
    fn sql(&self, db: &str, statement: &str) -> Result<String> {
        let out = self
            .command(&self.psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.conn.uri_for(db))
            .args(["-c", statement])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running psql", e))?;
        if !out.status.success() {
            return Err(Error::new(ErrorKind::Io, tail(&String::from_utf8_lossy(&out.stderr))));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes sure `name` does not exist (dropping it with `drop_existing`).
    fn prepare(&mut self, name: &str) -> Result<()> {
        let maint = self.conn.maintenance_db().to_string();
        let exists = self.sql(&maint, &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"))?;
        if exists.trim() == "1" {
            if !self.opts.drop_existing {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "the scratch database {name} exists already on {}; a drill restores only into a database it \
                         creates and drops: choose another --restore-db, or pass --drop-existing to drop it first",
                        self.server
                    ),
                ));
            }
            self.sql(&maint, &format!("DROP DATABASE {}", ident(name)))
                .map_err(|e| e.context(format!("dropping the existing database {name} on {}", self.server)))?;
        }
        Ok(())
    }

    /// Creates the scratch database for the next dump of the drill (`file`) and starts the
    /// tool that restores into it, reading from its standard input.
    pub fn begin(&mut self, format: DumpFormat) -> Result<Load> {
        let t = Instant::now();
        let r = self.begin_inner(format);
        self.insert_wait += t.elapsed();
        r
    }

    fn begin_inner(&mut self, format: DumpFormat) -> Result<Load> {
        let name = match self.created.len() {
            0 => self.opts.database.clone(),
            n => format!("{}_{}", self.opts.database, n + 1),
        };
        if !self.created.is_empty() {
            self.prepare(&name)?;
        }
        let maint = self.conn.maintenance_db().to_string();
        self.sql(&maint, &format!("CREATE DATABASE {} TEMPLATE template0", ident(&name)))
            .map_err(|e| e.context(format!("creating the scratch database {name} on {}", self.server)))?;
        self.created.push(name.clone());
        let (program, tool_name) = match format {
            DumpFormat::Custom => (self.pg_restore.clone(), "pg_restore"),
            DumpFormat::Plain => (self.psql.clone(), "psql"),
        };
        let mut c = self.command(&program);
        match format {
            DumpFormat::Custom => {
                // Roles and grants of the source server may not exist here: restore the data
                // and schema as the connecting user.
                c.args(["--no-owner", "--no-privileges", "-d"]).arg(self.conn.uri_for(&name));
            }
            DumpFormat::Plain => {
                c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"]).arg(self.conn.uri_for(&name)).args(["-f", "-"]);
            }
        }
        c.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| Error::io(format!("starting {tool_name}"), e))?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                // Keep the start and the end of what the tool says.
                let mut all = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    all.extend_from_slice(&buf[..n]);
                    if all.len() > 256 << 10 {
                        let cut = all.len() - (128 << 10);
                        all.drain(4096..cut);
                    }
                }
                String::from_utf8_lossy(&all).into_owned()
            })
        });
        Ok(Load {
            child: Some(child),
            stdin,
            stderr,
            database: name,
            tool: tool_name,
            waited: Duration::ZERO,
            broken: false,
            filter: matches!(format, DumpFormat::Plain).then(NoOwner::default),
        })
    }

    /// Ends the load of one dump: closes the tool's input, waits for it, and counts the rows of
    /// every table the dump holds in the scratch database. `abort` stops the tool instead (the
    /// dump was refused or unreadable).
    pub fn end(&mut self, mut load: Load, rep: &DumpReport, abort: Option<&str>) -> DumpRestore {
        let mut out = DumpRestore { database: load.database.clone(), ..Default::default() };
        if abort.is_none() {
            load.finish_input();
        }
        load.stdin.take();
        let t = Instant::now();
        let status = match (load.child.take(), abort) {
            (Some(mut c), Some(_)) => {
                let _ = c.kill();
                c.wait().ok()
            }
            (Some(mut c), None) => c.wait().ok(),
            (None, _) => None,
        };
        let stderr = load.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        self.insert_wait += load.waited + t.elapsed();
        match abort {
            Some(why) => out.errors.push(format!("not restored into {}: {why}", load.database)),
            None => match status {
                Some(s) if s.success() => {}
                Some(s) => {
                    out.errors.push(format!("{} into {} failed ({s}): {}", load.tool, load.database, tail(&stderr)))
                }
                None => out.errors.push(format!("{} into {}: could not wait for it", load.tool, load.database)),
            },
        }
        let t = Instant::now();
        match self.counts(&load.database) {
            Ok((counts, los)) => {
                for td in &rep.tables {
                    let restored = counts.get(&(td.schema.clone(), td.table.clone())).copied();
                    out.rows += restored.unwrap_or(0);
                    out.tables.push(TableRestore { schema: td.schema.clone(), table: td.table.clone(), restored });
                }
                out.large_objects = Some(los);
            }
            Err(e) => out.errors.push(format!("counting the rows restored into {}: {e}", load.database)),
        }
        self.verify += t.elapsed();
        self.rows += out.rows;
        out
    }

    /// Rows of every ordinary table of `db`, and its large objects.
    fn counts(&self, db: &str) -> Result<(HashMap<(String, String), u64>, u64)> {
        let q = "SELECT n.nspname || E'\\t' || c.relname || E'\\t' || \
                 (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, \
                 c.relname), false, true, '')))[1]::text \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg_toast%' \
                 UNION ALL SELECT E'\\t\\t' || count(*) FROM pg_largeobject_metadata";
        let out = self.sql(db, q)?;
        let mut counts = HashMap::new();
        let mut los = 0;
        for line in out.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 3 {
                continue;
            }
            let Ok(n) = f[2].trim().parse::<u64>() else { continue };
            if f[0].is_empty() && f[1].is_empty() {
                los = n;
            } else {
                counts.insert((f[0].to_string(), f[1].to_string()), n);
            }
        }
        Ok((counts, los))
    }

    /// Drops the scratch databases unless they are to be kept. Returns those dropped.
    pub fn close(mut self) -> Result<Vec<String>> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<Vec<String>> {
        if self.closed || self.opts.keep {
            self.closed = true;
            return Ok(Vec::new());
        }
        self.closed = true;
        let maint = self.conn.maintenance_db().to_string();
        let mut dropped = Vec::new();
        let mut failed = Vec::new();
        for db in std::mem::take(&mut self.created) {
            match self.sql(&maint, &format!("DROP DATABASE IF EXISTS {}", ident(&db))) {
                Ok(_) => dropped.push(db),
                Err(e) => failed.push(format!("{db}: {e}")),
            }
        }
        if !failed.is_empty() {
            return Err(Error::new(
                ErrorKind::Io,
                format!("dropping the scratch database(s) on {}: {}", self.server, failed.join("; ")),
            ));
        }
        Ok(dropped)
    }
}

impl Drop for PgRestorer {
    /// A drill that stops early (an error, a panic) still drops its scratch databases.
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_database_names_are_checked() {
        for bad in ["", "postgres", "template0", "template1", "prod", "a b", "x;y", "a\"b", "é"] {
            assert!(check_db_name(bad, "prod").is_err(), "{bad:?}");
        }
        check_db_name("drill_scratch-1", "postgres").unwrap();
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}

#[cfg(test)]
mod no_owner_tests {
    use super::NoOwner;

    #[test]
    fn ownership_and_privileges_go_and_copy_rows_stay_whatever_the_pieces() {
        let dump = "SET client_encoding = 'UTF8';\n\
                    CREATE TABLE public.t (a text);\n\
                    ALTER TABLE public.t OWNER TO postgres;\n\
                    COPY public.t (a) FROM stdin;\n\
                    ALTER TABLE x OWNER TO y;\n\
                    GRANT ALL;\n\
                    \\.\n\
                    GRANT SELECT ON TABLE public.t TO app;\n\
                    REVOKE ALL ON SCHEMA public FROM PUBLIC;\n\
                    SET SESSION AUTHORIZATION 'alice';\n\
                    ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (a);\n\
                    ALTER SCHEMA s OWNER TO bob;";
        let want = "SET client_encoding = 'UTF8';\n\
                    CREATE TABLE public.t (a text);\n\
                    COPY public.t (a) FROM stdin;\n\
                    ALTER TABLE x OWNER TO y;\n\
                    GRANT ALL;\n\
                    \\.\n\
                    ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (a);\n";
        for piece in [1, 2, 7, 64, dump.len()] {
            let mut f = NoOwner::default();
            let mut out = Vec::new();
            for part in dump.as_bytes().chunks(piece) {
                out.extend(f.feed(part));
            }
            out.extend(f.finish());
            assert_eq!(String::from_utf8(out).unwrap(), want, "pieces of {piece}");
        }
    }
}
