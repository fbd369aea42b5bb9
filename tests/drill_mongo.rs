//! `vaultctl drill --mongo-uri`: every archive of a snapshot restored into a scratch database
//! on a real MongoDB wire-compatible server (SecantusDB, from the test venv), counts compared per
//! collection, the scratch database refused when it exists and dropped at the end; a drill from
//! a file:// remote with a fresh cache. These tests fail, never skip, without the server.

mod common;
use common::*;
use mongodb::bson::{doc, Document};
use serde_json::Value;
use std::future::IntoFuture;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mongo-archives").join(name))
        .unwrap()
}

/// An archive of `docs` documents over `collections` interleaved collections (64 KiB
/// segments), plain or gzip, and its summary (counts per namespace).
fn generated(seed: u64, docs: u64, collections: u32, gzip: bool) -> (Vec<u8>, dumpgen::Summary) {
    let evolution = dumpgen::Evolution { seed, docs, collections, churn: 0.01, delete: 0.001, append: 0.002 };
    let layout = dumpgen::Layout { segment_bytes: 64 << 10, ..dumpgen::Layout::default() };
    let mut raw = Vec::new();
    let summary = dumpgen::write_day(evolution, 1, &layout, &mut raw).unwrap();
    assert!(summary.collections.iter().all(|c| c.segments > 1), "segments must interleave");
    if !gzip {
        return (raw, summary);
    }
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), summary)
}

fn put_at(e: &Env, t: &str, name: &str, data: &[u8]) {
    let f = e.path(&format!("in-{}", name.replace('/', "_")));
    std::fs::write(&f, data).unwrap();
    e.ok_at(t, &["put", name, f.to_str().unwrap()]);
}

const T0: &str = "2026-11-20 10:00:00";
const T1: &str = "2026-11-21 10:00:00";
const T2: &str = "2026-11-22 12:00:00";

/// A small synchronous view of the server for the checks.
struct Mongo {
    rt: tokio::runtime::Runtime,
    client: mongodb::Client,
    uri: String,
}

impl Mongo {
    fn new(server: &Server) -> Mongo {
        let uri = format!("mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=5000", server.port);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = rt.block_on(mongodb::Client::with_uri_str(&uri).into_future()).unwrap();
        Mongo { rt, client, uri }
    }
    fn databases(&self) -> Vec<String> {
        self.rt.block_on(self.client.list_database_names().into_future()).unwrap()
    }
    fn count(&self, db: &str, coll: &str) -> u64 {
        self.rt
            .block_on(self.client.database(db).collection::<Document>(coll).count_documents(doc! {}).into_future())
            .unwrap()
    }
    fn collections(&self, db: &str) -> Vec<String> {
        let mut v = self.rt.block_on(self.client.database(db).list_collection_names().into_future()).unwrap();
        v.sort();
        v
    }
}

fn drill_json(e: &Env, t: &str, args: &[&str], code: i32) -> Value {
    let mut a = vec!["drill", "--json"];
    a.extend_from_slice(args);
    let o = e.cmd_at(Some(t), &a).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(code),
        "drill {args:?}: stdout {} stderr {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn coll<'a>(j: &'a Value, file: &str, ns: &str) -> &'a Value {
    j["collections"].as_array().unwrap().iter().find(|c| c["file"] == file && c["ns"] == ns).unwrap_or_else(|| {
        panic!("no {file} {ns} in {j}");
    })
}

#[test]
fn the_driver_talks_to_secantusdb() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::mongo(dir.path());
    let m = Mongo::new(&server);
    let c = m.client.database("probe").collection::<Document>("c");
    let docs: Vec<Document> = (0..2500).map(|i| doc! {"_id": i, "v": format!("x{i}")}).collect();
    let r = m.rt.block_on(c.insert_many(&docs).ordered(false).into_future()).unwrap();
    assert_eq!(r.inserted_ids.len(), 2500);
    // Unordered: a duplicate is refused alone, the rest goes in.
    let again: Vec<Document> = vec![doc! {"_id": 1}, doc! {"_id": 99999}];
    let err = m.rt.block_on(c.insert_many(&again).ordered(false).into_future()).unwrap_err();
    assert!(matches!(*err.kind, mongodb::error::ErrorKind::InsertMany(_)), "{err}");
    assert_eq!(m.count("probe", "c"), 2501);
    assert!(m.databases().contains(&"probe".to_string()));
    m.rt.block_on(m.client.database("probe").drop().into_future()).unwrap();
    assert!(!m.databases().contains(&"probe".to_string()));
}

#[test]
fn fixture_archives_restore_with_matching_counts_and_the_scratch_db_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::mongo(dir.path());
    let m = Mongo::new(&server);
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "today", &fixture("dump-w-oplog.archive"));
    put_at(&e, T0, "ts/today", &fixture("timeseries_tests-dump.archive"));
    put_at(&e, T0, "bar.gz", &fixture("derived/test.bar.archive.gz"));
    put_at(&e, T0, "notes.txt", b"not an archive");
    e.ok_at(T2, &["seal"]);
    let j = drill_json(&e, T2, &["--mongo-uri", &m.uri, "--restore-db", "capstone_db_restore_test"], 0);
    assert_eq!(j["ok"], true, "{j}");
    let foo = coll(&j, "today", "test.foo");
    assert_eq!((foo["archive_count"].as_u64(), foo["restored_count"].as_u64()), (Some(25), Some(25)), "{j}");
    assert_eq!(foo["restored_to"], "foo");
    assert_eq!(foo["crc_ok"], true);
    let bar = coll(&j, "bar.gz", "test.bar");
    assert_eq!((bar["archive_count"].as_u64(), bar["restored_count"].as_u64()), (Some(1), Some(1)), "{j}");
    // Counted and checked, not restored.
    let oplog = coll(&j, "today", ".oplog");
    assert_eq!((oplog["archive_count"].as_u64(), oplog["restored_count"].is_null()), (Some(18), true));
    assert!(oplog["note"].as_str().unwrap().contains("oplog"), "{j}");
    assert!(coll(&j, "today", "admin.system.version")["restored_count"].is_null());
    let ts = coll(&j, "ts/today", "timeseries_test.system.buckets.foo_ts");
    assert_eq!(ts["archive_count"], 10);
    assert!(ts["note"].as_str().unwrap().contains("time-series"), "{j}");
    for p in ["fetch_decrypt", "parse", "insert", "verify"] {
        assert!(j["phases"][p].as_f64().unwrap() >= 0.0, "{j}");
    }
    assert_eq!(j["restore"]["database"], "capstone_db_restore_test");
    assert_eq!(j["restore"]["documents"], 26);
    assert!(j["rto_seconds"].as_f64().unwrap() > 0.0);
    assert!(!m.databases().contains(&"capstone_db_restore_test".to_string()), "dropped at the end");
    // As on the product's first page, without a scratch name: a new one is made up.
    let j = drill_json(&e, T2, &["--mongo-uri", &m.uri], 0);
    let db = j["restore"]["database"].as_str().unwrap().to_string();
    assert!(db.starts_with("vault_drill_") && db.len() == 20, "{j}");
    assert_eq!(j["restore"]["documents"], 26);
    assert!(!m.databases().contains(&db), "dropped at the end");

    // The same namespace from two archives of one snapshot cannot share the scratch database:
    // refused, by name, and the drill fails.
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "a", &fixture("dump-w-oplog.archive"));
    put_at(&e, T0, "b.gz", &fixture("derived/dump-w-oplog.archive.gz"));
    e.ok_at(T2, &["seal"]);
    let j = drill_json(&e, T2, &["--mongo-uri", &m.uri, "--restore-db", "scratch"], 4);
    let errors = j["errors"].to_string();
    assert!(errors.contains("b.gz: test.foo: not restored: collection foo of scratch is already filled"), "{j}");
    assert_eq!(coll(&j, "a", "test.foo")["restored_count"], 25);
    assert!(!m.databases().contains(&"scratch".to_string()), "dropped on failure too");
}

#[test]
fn generated_archives_plain_and_gzip_restore_and_rpo_follows_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::mongo(dir.path());
    let m = Mongo::new(&server);
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    let (plain, s1) = generated(7, 24_000, 4, false);
    put_at(&e, T0, "mongo/today", &plain);
    let (gz, s2) = generated(8, 16_000, 3, true);
    put_at(&e, T1, "mongo/today.gz", &gz);
    e.ok_at(T2, &["seal"]);
    for (day, file, s, rpo) in
        [("2026-11-20", "mongo/today", &s1, 50.0 * 3600.0), ("2026-11-21", "mongo/today.gz", &s2, 26.0 * 3600.0)]
    {
        let j = drill_json(&e, T2, &["--snapshot", day, "--mongo-uri", &m.uri, "--restore-db", "scratch", "--keep"], 0);
        assert_eq!(j["ok"], true, "{j}");
        assert_eq!(j["snapshot"], day);
        let r = j["rpo_seconds"].as_f64().unwrap();
        assert!((rpo - 10.0..rpo + 120.0).contains(&r), "RPO {r}, expected about {rpo}");
        let total: u64 = s.collections.iter().map(|c| c.docs).sum();
        assert!(total > 15_000, "{total}");
        assert_eq!(j["restore"]["documents"], total);
        for c in &s.collections {
            let r = coll(&j, file, &c.ns);
            assert_eq!(r["archive_count"], c.docs, "{j}");
            assert_eq!(r["restored_count"], c.docs, "{j}");
            let name = c.ns.split_once('.').unwrap().1;
            assert_eq!(m.count("scratch", name), c.docs);
        }
        assert_eq!(m.collections("scratch").len(), s.collections.len());
        // Kept: the next drill needs --drop-existing.
        let o = e.cmd_at(Some(T2), &["drill", "--mongo-uri", &m.uri, "--restore-db", "scratch"]).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("scratch database scratch exists already") && err.contains("--drop-existing"), "{err}");
        assert!(m.databases().contains(&"scratch".to_string()), "a refused database is never dropped");
        let text = e.ok_at(
            T2,
            &["drill", "--snapshot", day, "--mongo-uri", &m.uri, "--restore-db", "scratch", "--drop-existing"],
        );
        assert!(text.contains("result:          OK") && text.contains("insert"), "{text}");
        assert!(!m.databases().contains(&"scratch".to_string()), "dropped at the end");
    }
}

#[test]
fn a_corrupted_document_or_a_truncated_archive_fails_the_drill() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::mongo(dir.path());
    let m = Mongo::new(&server);
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    let (mut bad, s) = generated(11, 12_000, 2, false);
    // A byte in the middle of the archive is inside some document's string: the document is
    // still well-formed BSON, so it restores, but its namespace's CRC no longer matches.
    let at = bad.len() / 2;
    let pos = at + bad[at..].iter().position(|b| b.is_ascii_lowercase()).unwrap();
    bad[pos] = if bad[pos] == b'z' { b'y' } else { bad[pos] + 1 };
    put_at(&e, T0, "crc", &bad);
    e.ok_at(T2, &["seal"]);
    let j = drill_json(&e, T2, &["--mongo-uri", &m.uri, "--restore-db", "scratch"], 4);
    assert_eq!(j["ok"], false);
    let damaged: Vec<&Value> = j["collections"].as_array().unwrap().iter().filter(|c| c["crc_ok"] == false).collect();
    assert_eq!(damaged.len(), 1, "{j}");
    assert!(j["errors"].to_string().contains("CRC mismatch"), "{j}");
    let total: u64 = s.collections.iter().map(|c| c.docs).sum();
    assert_eq!(j["restore"]["documents"], total);
    assert!(!m.databases().contains(&"scratch".to_string()));

    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    let (good, _) = generated(12, 12_000, 2, true);
    put_at(&e, T0, "cut.gz", &good[..good.len() * 2 / 3]);
    e.ok_at(T2, &["seal"]);
    let j = drill_json(&e, T2, &["--mongo-uri", &m.uri, "--restore-db", "scratch"], 4);
    let errors = j["errors"].to_string();
    assert!(errors.contains("truncated") && errors.contains("the restore of this archive is incomplete"), "{j}");
    assert!(!m.databases().contains(&"scratch".to_string()));
}

#[test]
fn an_unreachable_server_is_a_clear_error_not_a_failed_drill() {
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "today", &fixture("test.bar.archive"));
    e.ok_at(T2, &["seal"]);
    let port = free_port();
    let uri = format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=1500");
    let t = std::time::Instant::now();
    let o = e.cmd_at(Some(T2), &["drill", "--mongo-uri", &uri, "--restore-db", "scratch"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("cannot reach the MongoDB server 127.0.0.1:{port}")), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
    // No drill happened, so none is logged.
    assert!(!e.repo.join("logs").exists() || std::fs::read_dir(e.repo.join("logs")).unwrap().count() == 0);
    // Half of the restore options is a usage error.
    let o = e.cmd_at(Some(T2), &["drill", "--restore-db", "scratch"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn drill_from_a_file_remote_alone_with_a_fresh_cache() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::mongo(dir.path());
    let m = Mongo::new(&server);
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    let (plain, s) = generated(21, 10_000, 3, false);
    put_at(&e, T0, "today", &plain);
    e.ok_at(T0, &["remote", "add", "offsite", &format!("file://{}", e.path("off").display())]);
    e.ok_at(T2, &["seal"]);
    e.ok_at(T2, &["sync", "offsite"]);
    // The local copy loses its data: only the offsite copy can serve the drill.
    std::fs::rename(e.repo.join("packs"), e.path("packs-away")).unwrap();
    let fresh = e.path("fresh-cache");
    let o = e
        .cmd_at(
            Some(T2),
            &[
                "--repo",
                "offsite",
                "--cache-dir",
                fresh.to_str().unwrap(),
                "drill",
                "--json",
                "--mongo-uri",
                &m.uri,
                "--restore-db",
                "scratch",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["ok"], true, "{j}");
    assert!(j["repo"].as_str().unwrap().contains("off"), "{j}");
    for c in &s.collections {
        assert_eq!(coll(&j, "today", &c.ns)["restored_count"], c.docs);
    }
    // The evidence is in the vault that names the remote (and goes offsite with the next sync).
    assert!(e.ok_at(T2, &["status", "--max-age-hours", "100"]).contains("last drill:      2026-11-20"));
    // An unknown name says what it looked for.
    let o = e.cmd_at(Some(T2), &["--repo", "nearsite", "drill"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no remote named \"nearsite\""));
    assert!(!m.databases().contains(&"scratch".to_string()));
}
