//! `vaultctl drill` of PostgreSQL dumps made by the real pg_dump of Debian's PostgreSQL
//! (custom format compressed and `-Z 0`, plain SQL, plain gzip): row counts per table and large
//! objects without a server; damage (a cut, a flipped byte in a compressed data block) named by
//! table and offset; with `--pg-uri` every dump restored into a scratch database of its own
//! (pg_restore or psql reading from the vault, no plaintext copy on disk), counts compared,
//! the scratch-database rules, dumps that would leave the scratch database refused, and an
//! unreachable server. Fails, never skips, without PostgreSQL.

mod common;
use common::*;
use serde_json::Value;

const T0: &str = "2026-11-20 10:00:00";
const T2: &str = "2026-11-20 12:00:00";

/// Source tables and their row counts.
const TABLES: [(&str, u64); 6] = [
    ("public.pgbench_accounts", 100_000),
    ("public.pgbench_branches", 1),
    ("public.pgbench_tellers", 10),
    ("public.pgbench_history", 0),
    ("public.uploads", 3000),
    ("audit.Évent Log ☕", 250),
];

fn setup_source(pg: &Pg) {
    run_ok(pg.cmd("createdb").arg("app"));
    run_ok(pg.cmd("pgbench").args(["-i", "-q", "-s", "1", "app"]));
    pg.sql(
        "app",
        "CREATE TABLE uploads(id serial primary key, name text, body bytea, note text);
         INSERT INTO uploads(name, body, note) SELECT 'report-' || g, decode(repeat(md5(g::text), 20), 'hex'),
           E'line one\\nline\\ttwo \\\\ end' FROM generate_series(1, 3000) g;
         CREATE SCHEMA audit;
         CREATE TABLE audit.\"Évent Log ☕\"(at timestamptz default now(), what jsonb);
         INSERT INTO audit.\"Évent Log ☕\"(what) SELECT jsonb_build_object('n', g, 's', 'x' || g) FROM generate_series(1, 250) g;
         SELECT lo_from_bytea(0, 'small');
         SELECT lo_from_bytea(0, decode(repeat('ab', 300000), 'hex'));
         SELECT lo_from_bytea(0, '');",
    );
    for (t, n) in TABLES {
        let (schema, table) = t.split_once('.').unwrap();
        let got = pg.sql("app", &format!("SELECT count(*) FROM \"{schema}\".\"{table}\""));
        assert_eq!(got.trim(), n.to_string(), "{t}");
    }
}

/// Dumps of `db` in each format, as (vault name, bytes).
fn dumps(pg: &Pg, dir: &std::path::Path, db: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, args) in [
        ("app.pgdump", vec!["-Fc"]),
        ("app-z0.pgdump", vec!["-Fc", "-Z", "0"]),
        ("app.sql", vec![]),
        ("app.sql.gz", vec!["-Z", "6"]),
    ] {
        let f = dir.join(format!("dump-{db}-{name}"));
        run_ok(pg.cmd("pg_dump").args(&args).arg("-f").arg(&f).arg(db));
        out.push((name.to_string(), std::fs::read(&f).unwrap()));
    }
    out
}

fn put_at(e: &Env, t: &str, name: &str, data: &[u8]) {
    let f = e.path(&format!("in-{}", name.replace('/', "_")));
    std::fs::write(&f, data).unwrap();
    e.ok_at(t, &["put", name, f.to_str().unwrap()]);
}

fn drill_json(e: &Env, args: &[&str], code: i32) -> Value {
    let mut a = vec!["drill", "--json"];
    a.extend_from_slice(args);
    let o = e.cmd_at(Some(T2), &a).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(code),
        "drill {args:?}: stdout {} stderr {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn content<'a>(j: &'a Value, file: &str) -> &'a Value {
    j["contents"].as_array().unwrap().iter().find(|c| c["file"] == file).unwrap_or_else(|| panic!("no {file} in {j}"))
}

fn table<'a>(j: &'a Value, file: &str, t: &str) -> &'a Value {
    j["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["file"] == file && x["table"] == t)
        .unwrap_or_else(|| panic!("no {file} {t} in {}", j["tables"]))
}

fn vault_with(pg: &Pg, dir: &std::path::Path) -> (Env, Vec<(String, Vec<u8>)>) {
    let d = dumps(pg, dir, "app");
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    for (name, bytes) in &d {
        put_at(&e, T0, name, bytes);
    }
    e.ok_at(T2, &["seal"]);
    (e, d)
}

#[test]
fn dumps_of_every_format_are_verified_with_row_counts_and_large_objects() {
    require_tool("pg_dump");
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg::start(dir.path());
    setup_source(&pg);
    let (e, d) = vault_with(&pg, dir.path());
    assert_eq!(&d[0].1[..5], b"PGDMP");
    let j = drill_json(&e, &[], 0);
    assert_eq!(j["result"], "ok", "{j}");
    assert_eq!(j["kinds"]["pg_custom"], 2);
    assert_eq!(j["kinds"]["pg_plain"], 2);
    for (file, kind, compression) in [
        ("app.pgdump", "pg_custom", "gzip"),
        ("app-z0.pgdump", "pg_custom", "none"),
        ("app.sql", "pg_plain", "none"),
        ("app.sql.gz", "pg_plain", "none"),
    ] {
        let c = content(&j, file);
        assert_eq!(c["kind"], kind, "{c}");
        assert_eq!(c["verdict"], "verified", "{c}");
        assert_eq!(c["pg"]["compression"], compression, "{c}");
        assert_eq!(c["pg"]["large_objects"], 3, "{c}");
        assert_eq!(c["pg"]["tables"], 6, "{c}");
        assert_eq!(c["pg"]["rows"], TABLES.iter().map(|t| t.1).sum::<u64>(), "{c}");
        for (t, n) in TABLES {
            assert_eq!(table(&j, file, t)["archive_count"], n, "{file} {t}");
        }
    }
    assert_eq!(content(&j, "app.pgdump")["pg"]["archive_version"], "1.14");
    assert_eq!(content(&j, "app.sql.gz")["compression"], "gzip");
    // The log entry and status carry the kinds and counts.
    let out = e.ok_at(T2, &["status"]);
    assert!(out.contains("checked: 2 pg_custom, 2 pg_plain; 24 tables, 413044 rows, 12 large objects"), "{out}");
}

#[test]
fn a_cut_or_a_flipped_byte_in_a_compressed_block_fails_naming_table_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg::start(dir.path());
    setup_source(&pg);
    let d = dumps(&pg, dir.path(), "app");
    let (custom, plain) = (&d[0].1, &d[2].1);
    // Where pgbench_accounts' data block is, from a drill of the good dump.
    let probe = Env::new();
    probe.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&probe, T0, "app.pgdump", custom);
    probe.ok_at(T2, &["seal"]);
    let j = drill_json(&probe, &[], 0);
    let blocks = content(&j, "app.pgdump")["pg"]["table_data"].as_array().unwrap().clone();
    let acc = blocks.iter().find(|b| b["table"] == "public.pgbench_accounts").unwrap();
    let (at, len) = (acc["offset"].as_u64().unwrap(), acc["stored_bytes"].as_u64().unwrap());
    assert!(len > 100_000, "{acc}");

    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    let mut flipped = custom.clone();
    flipped[(at + len / 2) as usize] ^= 0x20;
    put_at(&e, T0, "flipped.pgdump", &flipped);
    put_at(&e, T0, "cut.pgdump", &custom[..(at + len / 3) as usize]);
    put_at(&e, T0, "cut.sql", &plain[..plain.len() / 2]);
    put_at(&e, T0, "good.pgdump", custom);
    e.ok_at(T2, &["seal"]);
    let j = drill_json(&e, &[], 4);
    assert_eq!(j["result"], "failed");
    let errors: Vec<String> = j["errors"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    let find = |file: &str| errors.iter().find(|x| x.contains(file)).cloned().unwrap_or_else(|| panic!("{errors:?}"));
    let f = find("/flipped.pgdump");
    assert!(f.contains("public.pgbench_accounts") && f.contains(&format!("offset {at}")) && f.contains("zlib"), "{f}");
    let c = find("/cut.pgdump");
    assert!(c.contains("truncated") && c.contains("pgbench_accounts"), "{c}");
    let p = find("/cut.sql");
    assert!(p.contains("truncated"), "{p}");
    assert_eq!(content(&j, "flipped.pgdump")["verdict"], "failed");
    // The tables after the damaged block were still read.
    assert_eq!(table(&j, "flipped.pgdump", "audit.Évent Log ☕")["archive_count"], 250);
    assert_eq!(content(&j, "good.pgdump")["verdict"], "verified");
    let text = String::from_utf8(e.cmd_at(Some(T2), &["drill"]).output().unwrap().stdout).unwrap();
    assert!(text.contains("result:          FAILED") && text.contains("flipped.pgdump"), "{text}");
}

#[test]
fn restore_drills_count_every_table_in_scratch_databases_and_follow_the_rules() {
    require_tool("psql");
    require_tool("pg_restore");
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg::start(dir.path());
    setup_source(&pg);
    let (e, _) = vault_with(&pg, dir.path());
    let uri = pg.uri("postgres");
    let before = pg.databases();
    let j = drill_json(&e, &["--pg-uri", &uri, "--restore-db", "drill_scratch"], 0);
    assert_eq!(j["result"], "ok", "{j}");
    let r = &j["pg_restore"];
    assert_eq!(r["server"], format!("127.0.0.1:{}", pg.port));
    assert_eq!(r["databases"].as_array().unwrap().len(), 4, "{r}");
    assert_eq!(r["databases"][0], "drill_scratch");
    assert_eq!(r["large_objects"], 12);
    assert_eq!(r["rows"], 4 * TABLES.iter().map(|t| t.1).sum::<u64>());
    assert!(j["phases"]["insert"].as_f64().unwrap() > 0.0 && j["phases"]["verify"].as_f64().unwrap() > 0.0, "{j}");
    for file in ["app.pgdump", "app-z0.pgdump", "app.sql", "app.sql.gz"] {
        for (t, n) in TABLES {
            let x = table(&j, file, t);
            assert_eq!((x["archive_count"].as_u64(), x["restored_count"].as_u64()), (Some(n), Some(n)), "{x}");
        }
    }
    // Dropped afterwards; the password never shows.
    assert_eq!(pg.databases(), before);
    assert!(!j.to_string().contains(&pg.password), "the password leaked into the report");

    // A role that may only create databases (what docs/OPERATIONS.md asks for): the source's
    // ownership and grants are left out, of the plain dumps too.
    pg.sql("postgres", "CREATE ROLE drill LOGIN CREATEDB PASSWORD 'drill-pass'");
    let role_uri = format!("postgresql://drill:drill-pass@127.0.0.1:{}/postgres", pg.port);
    let j = drill_json(&e, &["--pg-uri", &role_uri, "--restore-db", "drill_role"], 0);
    assert_eq!(j["result"], "ok", "{j}");
    assert_eq!(j["pg_restore"]["rows"], 4 * TABLES.iter().map(|t| t.1).sum::<u64>(), "{j}");
    assert_eq!(pg.databases(), before);

    // --keep keeps them; a second drill then refuses the existing one before reading anything.
    let logs = std::fs::read_dir(e.repo.join("logs")).unwrap().count();
    let o =
        e.cmd_at(Some(T2), &["drill", "--pg-uri", &uri, "--restore-db", "drill_scratch", "--keep"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("kept the scratch database(s) drill_scratch"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("restored     100000") && out.contains("result:          OK"), "{out}");
    assert_eq!(pg.sql("drill_scratch", "SELECT count(*) FROM pgbench_accounts").trim(), "100000");
    assert_eq!(pg.sql("drill_scratch_2", "SELECT count(*) FROM pg_largeobject_metadata").trim(), "3");
    let logs = logs + 1;
    let err = e.fails(&["drill", "--pg-uri", &uri, "--restore-db", "drill_scratch"], 1);
    assert!(err.contains("exists already") && err.contains("--drop-existing"), "{err}");
    assert_eq!(std::fs::read_dir(e.repo.join("logs")).unwrap().count(), logs, "a refused drill is not logged");
    // --drop-existing replaces them, and drops them at the end.
    let j = drill_json(&e, &["--pg-uri", &uri, "--restore-db", "drill_scratch", "--drop-existing"], 0);
    assert_eq!(j["result"], "ok");
    assert_eq!(pg.databases(), before);
    // The server's own databases are refused.
    let err = e.fails(&["drill", "--pg-uri", &uri, "--restore-db", "postgres"], 1);
    assert!(err.contains("never restores into the server's own databases"), "{err}");
    let err = e.fails(&["drill", "--restore-db", "x"], 2);
    assert!(err.contains("--mongo-uri") || err.contains("--pg-uri"), "{err}");
}

#[test]
fn dumps_that_would_leave_the_scratch_database_are_refused_and_damage_is_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg::start(dir.path());
    run_ok(pg.cmd("createdb").arg("srconly"));
    pg.sql("srconly", "CREATE TABLE t(x int); INSERT INTO t SELECT generate_series(1, 10);");
    let f = dir.path().join("create.sql");
    run_ok(pg.cmd("pg_dump").args(["--create", "-f"]).arg(&f).arg("srconly"));
    let all = run_ok(pg.cmd("pg_dumpall").arg("--roles-only"));
    run_ok(pg.cmd("dropdb").arg("srconly"));
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "create.sql", &std::fs::read(&f).unwrap());
    put_at(&e, T0, "roles.sql", all.as_bytes());
    e.ok_at(T2, &["seal"]);
    let before = pg.databases();
    // Offline, both are fine dumps.
    let j = drill_json(&e, &[], 0);
    assert_eq!(table(&j, "create.sql", "public.t")["archive_count"], 10, "{j}");
    // Restoring them is refused before any statement leaves the scratch database.
    let j = drill_json(&e, &["--pg-uri", &pg.uri("postgres"), "--restore-db", "scratch"], 4);
    let errors = j["errors"].to_string();
    assert!(
        errors.contains("create.sql: restore: not restored into scratch") && errors.contains("CREATE DATABASE"),
        "{errors}"
    );
    assert!(errors.contains("roles.sql") && errors.contains("ROLE"), "{errors}");
    assert_eq!(pg.databases(), before, "srconly must not come back");
}

#[test]
fn a_directory_format_dump_is_checked_file_by_file_and_not_restored_from_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg::start(dir.path());
    run_ok(pg.cmd("createdb").arg("small"));
    pg.sql(
        "small",
        "CREATE TABLE t(x int); INSERT INTO t SELECT generate_series(1, 1000); SELECT lo_from_bytea(0, 'x');",
    );
    let d = dir.path().join("small.dir");
    run_ok(pg.cmd("pg_dump").args(["-Fd", "-f"]).arg(&d).arg("small"));
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    let mut names = Vec::new();
    for f in std::fs::read_dir(&d).unwrap().flatten() {
        let name = format!("small.dir/{}", f.file_name().to_string_lossy());
        put_at(&e, T0, &name, &std::fs::read(f.path()).unwrap());
        names.push(name);
    }
    e.ok_at(T2, &["seal"]);
    let j = drill_json(&e, &["--pg-uri", &pg.uri("postgres"), "--restore-db", "scratch"], 0);
    assert_eq!(j["result"], "ok", "{j}");
    let toc = content(&j, "small.dir/toc.dat");
    assert_eq!(toc["kind"], "pg_custom");
    assert!(toc["pg"]["note"].as_str().unwrap().contains("directory-format"), "{toc}");
    assert!(toc["pg"]["entries"].as_u64().unwrap() >= 3);
    // The data files are gzip streams, checked as such.
    assert!(j["kinds"]["gzip"].as_u64().unwrap() >= 2, "{j}");
    assert_eq!(j["pg_restore"]["databases"].as_array().unwrap().len(), 0);
    assert!(!pg.databases().contains(&"scratch".to_string()));
}

#[test]
fn an_unreachable_server_or_a_bad_uri_is_a_clear_error_before_anything_is_read() {
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "notes.txt", b"x");
    e.ok_at(T2, &["seal"]);
    let port = free_port();
    let t = std::time::Instant::now();
    let err = e.fails(
        &["drill", "--pg-uri", &format!("postgresql://u:hunter2@127.0.0.1:{port}/postgres"), "--restore-db", "s"],
        1,
    );
    assert!(err.contains(&format!("cannot reach the PostgreSQL server 127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(t.elapsed().as_secs() < 30);
    let err = e.fails(&["drill", "--pg-uri", "host=x dbname=y", "--restore-db", "s"], 1);
    assert!(err.contains("postgresql:// URI"), "{err}");
    assert!(!e.repo.join("logs").exists() || std::fs::read_dir(e.repo.join("logs")).unwrap().count() == 0);
    // The drill without a server still runs, and says a text file is only read back.
    let out = e.ok_at(T2, &["drill"]);
    assert!(out.contains("READ BACK ONLY"), "{out}");
}
