//! `vaultctl drill`: every byte read back, mongodump archives verified, RTO/RPO reported,
//! non-zero exit on any mismatch, evidence appended to the vault's drill log.

mod common;
use common::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mongo-archives").join(name))
        .unwrap()
}

fn put_at(e: &Env, t: &str, name: &str, data: &[u8]) {
    let f = e.path(&format!("in-{}", name.replace('/', "_")));
    std::fs::write(&f, data).unwrap();
    e.ok_at(t, &["put", name, f.to_str().unwrap()]);
}

const T0: &str = "2026-11-20 10:00:00";
const T2: &str = "2026-11-20 12:00:00";

#[test]
fn drill_of_good_archives_reports_counts_rto_rpo_and_logs_evidence() {
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "today", &fixture("dump-w-oplog.archive"));
    put_at(&e, T0, "ts/today", &fixture("timeseries_tests-dump.archive"));
    put_at(&e, T0, "gz/today", &fixture("derived/dump-w-oplog.multimember.archive.gz"));
    put_at(&e, T0, "notes.txt", b"not an archive");
    e.ok_at(T2, &["seal"]);
    let out = e.ok_at(T2, &["drill"]);
    assert!(out.contains("result:          OK"), "{out}");
    let o = e.cmd_at(Some(T2), &["drill", "--json"]).output().unwrap();
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["ok"], true);
    assert_eq!(j["snapshot"], "2026-11-20");
    assert_eq!(j["archives"], 3);
    assert_eq!(j["files"], 4);
    let rpo = j["rpo_seconds"].as_f64().unwrap();
    assert!((7190.0..7260.0).contains(&rpo), "RPO {rpo}");
    assert!(j["rto_seconds"].as_f64().unwrap() >= 0.0);
    let colls = j["collections"].as_array().unwrap();
    let count = |file: &str, ns: &str| {
        colls.iter().find(|c| c["file"] == file && c["ns"] == ns).map(|c| c["archive_count"].as_u64().unwrap())
    };
    assert_eq!(count("today", "test.foo"), Some(25));
    assert_eq!(count("today", ".oplog"), Some(18));
    assert_eq!(count("gz/today", "test.foo"), Some(25));
    assert_eq!(count("ts/today", "timeseries_test.system.buckets.foo_ts"), Some(10));
    // Two drills, two entries in the vault's drill log.
    assert_eq!(std::fs::read_dir(e.repo.join("logs")).unwrap().count(), 2);
}

#[test]
fn drill_fails_on_crc_mismatch_truncation_bad_metadata_and_damaged_data() {
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    let mut bad = fixture("test.bar.archive");
    bad[800] ^= 0x01; // inside the test.bar document
    put_at(&e, T0, "crc", &bad);
    let good = fixture("dump-w-oplog.archive");
    put_at(&e, T0, "cut", &good[..3000]);
    put_at(&e, T0, "meta", &fixture("bad-format.archive"));
    e.ok_at(T2, &["seal"]);
    let o = e.cmd_at(Some(T2), &["drill"]).output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("crc: test.bar: CRC mismatch"), "{out}");
    assert!(out.contains("2026-11-20/cut:"), "{out}");
    assert!(out.contains("not valid JSON"), "{out}");
    assert!(out.contains("FAILED"), "{out}");

    // Damaged storage: the drill reports the unreadable bytes.
    let e2 = Env::new();
    e2.ok_at(T0, &["init", "--time-zone", "UTC", "--pack-size", "1MiB"]);
    put_at(&e2, T0, "big", &data(1_500_000, 9));
    e2.ok_at(T2, &["seal"]);
    let (pack, _) = packs_by_size(&e2.repo)[0].clone();
    let mut b = std::fs::read(&pack).unwrap();
    b[300] ^= 1;
    std::fs::write(&pack, &b).unwrap();
    let o = e2.cmd_at(Some(T2), &["drill", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["ok"], false);
    assert!(j["errors"][0].as_str().unwrap().contains("authentication failed"), "{j}");
}

#[test]
fn status_shows_age_last_sync_and_last_drill_and_alerts_when_stale() {
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "today", &fixture("test.bar.archive"));
    let out = e.ok_at(T0, &["status"]);
    assert!(out.contains("last drill:      never") && out.contains("newest backup:   2026-11-20"), "{out}");
    e.ok_at(T0, &["remote", "add", "offsite", &format!("file://{}", e.path("off").display())]);
    e.ok_at(T0, &["seal"]);
    e.ok_at(T2, &["sync", "offsite"]);
    e.ok_at(T2, &["drill"]);
    let out = e.ok_at(T2, &["status"]);
    assert!(out.contains("last write 2.0 h ago"), "{out}");
    assert!(out.contains("last sync:       offsite at"), "{out}");
    assert!(out.contains("last drill:      2026-11-20 at") && out.contains(": OK"), "{out}");
    let o = e.cmd_at(Some(T2), &["status", "--max-age-hours", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ALERT"));
    // The offsite copy carries the evidence too, from the next sync on.
    e.ok_at(T2, &["sync", "offsite"]);
    let mut r = Env::new();
    r.repo = e.path("off");
    r.secret = e.secret.clone();
    assert!(r.ok_at(T2, &["status"]).contains("last drill:      2026-11-20"));
}
