//! A vault written by the first format (tests/fixtures/vault-v1, see vault-v1.md): version 1
//! snapshot revisions, trees, packs and index files. The current code opens it, reads every
//! file back bit-exact, checks it, writes to it (version 2 objects, frames among them, beside
//! version 1 ones), and prunes it (moving live version-1 blobs into version-2 packs).

mod common;

use common::{ok, Env};
use std::process::Command;

const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const DAY: &str = "2026-11-22 13:00:00";

fn sha256(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    std::fs::write(&f, data).unwrap();
    let out = Command::new("sha256sum").arg(&f).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

fn fixture() -> Env {
    fixture_named("vault-v1")
}

fn fixture_named(name: &str) -> Env {
    let mut e = Env::new();
    e.secret = ("VAULT_KEY".into(), KEY.into());
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let st = Command::new("cp").arg("-r").arg(&src).arg(&e.repo).status().unwrap();
    assert!(st.success());
    e
}

fn cat_at(e: &Env, spec: &str) -> Vec<u8> {
    let o = e.cmd_at(Some(DAY), &["cat", spec]).output().unwrap();
    assert!(o.status.success(), "cat {spec}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

const DAYS: [(&str, &str); 3] = [
    ("2026-11-20", "6a641193616211b30d45f780525de757580aedf64c74107e9f7dc6133e21a238"),
    ("2026-11-21", "8fed85a8cdacd01a8139abba56506ff0acee4c1a62a754b974099a7b0709672b"),
    ("2026-11-22", "ce0a3b515819bcffa61ec78cfa0e80b9dccebaf81f1328ceffe2f24c4a2b1bad"),
];
const NOTES: &str = "0282548f2f99117c1405c9b269af83d161d793579069a1e2ca58d6306d64db63";

#[test]
fn an_old_vault_reads_checks_writes_and_prunes() {
    let e = fixture();
    let snaps = e.ok_at(DAY, &["snapshots"]);
    assert!(snaps.contains("2026-11-20  sealed") && snaps.contains("2026-11-22  open"), "{snaps}");
    for (day, want) in DAYS {
        assert_eq!(sha256(&cat_at(&e, &format!("{day}/today"))), want, "{day}");
        assert_eq!(sha256(&cat_at(&e, &format!("{day}/docs/notes.txt"))), NOTES, "{day}");
    }
    let ls = e.ok_at(DAY, &["ls", "2026-11-21"]);
    assert!(ls.contains("today") && ls.contains("docs"), "{ls}");
    assert!(e.ok_at(DAY, &["check", "--read-data"]).contains("no errors"));
    // Writing to the open period: new objects in the current format beside the old ones.
    let extra = e.path("extra");
    std::fs::write(&extra, b"written by the current format").unwrap();
    ok(e.cmd_at(Some("2026-11-22 14:00:00"), &["put", "extra", extra.to_str().unwrap()]).output().unwrap(), &["put"]);
    assert_eq!(cat_at(&e, "2026-11-22/extra"), b"written by the current format");
    assert_eq!(sha256(&cat_at(&e, "2026-11-22/today")), DAYS[2].1);
    // A day of new data, written in frames into version-2 packs beside the version-1 ones.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let big_path = e.path("big");
    std::fs::write(&big_path, &big).unwrap();
    ok(e.cmd_at(Some("2026-11-22 14:01:00"), &["put", "big", big_path.to_str().unwrap()]).output().unwrap(), &["put"]);
    assert_eq!(cat_at(&e, "2026-11-22/big"), big);
    let versions = pack_versions(&e);
    assert!(versions.contains(&1) && versions.contains(&2), "{versions:?}");
    assert!(e.ok_at(DAY, &["check", "--read-data"]).contains("no errors"));
    // Restoring the old trees.
    let out = e.path("restored");
    e.ok_at(DAY, &["restore", "2026-11-21", out.to_str().unwrap()]);
    assert_eq!(sha256(&std::fs::read(out.join("today")).unwrap()), DAYS[1].1);
    // Pruning: the oldest day goes, the rest reads back and checks clean; every version-1
    // pack that lost a blob is repacked.
    prune_keeps_the_rest(&e, "1", &DAYS[1..]);
    assert_eq!(cat_at(&e, "2026-11-22/big"), big);
    let c = e.ok_at(DAY, &["check", "--read-data"]);
    assert!(c.contains("no errors"), "{c}");
    assert!(pack_versions(&e).contains(&2));
}

/// Prunes to the last `keep` periods (every pack that lost a blob repacked: --max-unused 0):
/// the oldest day goes, `rest` (period, sha256 of its `today`) reads back.
fn prune_keeps_the_rest(e: &Env, keep: &str, rest: &[(&str, &str)]) {
    let p = e.ok_at(DAY, &["prune", "--keep-last", keep, "--max-unused", "0"]);
    assert!(p.contains("forgotten") || p.contains("forget"), "{p}");
    assert!(!e.ok_at(DAY, &["snapshots"]).contains("2026-11-20"));
    for (day, want) in rest {
        assert_eq!(sha256(&cat_at(e, &format!("{day}/today"))), *want, "{day} after prune");
    }
}

/// The format version byte of every pack file.
fn pack_versions(e: &Env) -> std::collections::BTreeSet<u8> {
    let mut out = std::collections::BTreeSet::new();
    for d in std::fs::read_dir(e.repo.join("packs")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            out.insert(std::fs::read(f.unwrap().path()).unwrap()[4]);
        }
    }
    out
}

const DAYS_V2: [(&str, &str); 3] = [
    ("2026-11-20", "8fd59eab3faf9cea4eea2d45b251a4d9aeea365cfe463679a1dc9321d3ef327e"),
    ("2026-11-21", "f8e4ebed545d67011ed45f5efe6b75a139a75c9b4d5b488b2bba6b6af1779c4d"),
    ("2026-11-22", "332bfb6781ae57c7a6568ddbab0c8f42a43d1d840bf5a7d9e664c7b4b1a5115c"),
];
const NOTES_V2: &str = "1561fc6f3c4763678d8450ad2c7deed633ff46fa9004df6c794027500738bc52";
const NOTES_GZ_V2: &str = "faf813c5b66f4044583fe1c6a063470939054e52f1cf981cc76fc3de2805fce8";

/// A vault of the frame format with version-2 trees (tests/fixtures/vault-v2, see
/// vault-v2.md): read, checked, written with version-3 trees (an expanded gzip file beside
/// the gzip file that format stored as is) and pruned.
#[test]
fn a_vault_of_tree_version_2_reads_checks_writes_expanded_files_and_prunes() {
    let e = fixture_named("vault-v2");
    let check = |e: &Env| {
        for (day, want) in DAYS_V2 {
            assert_eq!(sha256(&cat_at(e, &format!("{day}/today"))), want, "{day}");
            assert_eq!(sha256(&cat_at(e, &format!("{day}/docs/notes.txt"))), NOTES_V2, "{day}");
            assert_eq!(sha256(&cat_at(e, &format!("{day}/docs/notes.txt.gz"))), NOTES_GZ_V2, "{day}");
        }
    };
    check(&e);
    assert!(e.ok_at(DAY, &["check", "--read-data"]).contains("no errors"));
    // The same gzip file put again is stored expanded now, beside the copy stored as is.
    let gz = cat_at(&e, "2026-11-22/docs/notes.txt.gz");
    let f = e.path("again.gz");
    std::fs::write(&f, &gz).unwrap();
    let out = ok(
        e.cmd_at(Some("2026-11-22 14:00:00"), &["put", "again.gz", f.to_str().unwrap()]).output().unwrap(),
        &["put"],
    );
    assert!(out.contains("expanded 1 compressed stream"), "{out}");
    assert_eq!(cat_at(&e, "2026-11-22/again.gz"), gz);
    let stats = e.ok_at(DAY, &["stats"]);
    assert!(stats.contains("expanded files:     1"), "{stats}");
    assert!(e.ok_at(DAY, &["check", "--read-data"]).contains("no errors"));
    prune_keeps_the_rest(&e, "2", &DAYS_V2[1..]);
    assert_eq!(cat_at(&e, "2026-11-22/again.gz"), gz);
    let c = e.ok_at(DAY, &["check", "--read-data"]);
    assert!(c.contains("no errors"), "{c}");
}
