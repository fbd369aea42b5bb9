//! A vault written just before frames, with a mount journal waiting for replay
//! (tests/fixtures/vault-v1-journal, see its .md): this build reads and checks it, replays the
//! journal, writes frames beside its version-1 packs, prunes it and checks it again
//! (docs/DESIGN.md §7a).

mod common;
use common::*;
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

fn sha256(b: &[u8]) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

const DAY0: &str = "8e97f71d976be9610b1c57a1e8434c3d5f62289782bb46b49127a08313efc1e6";
const DAY1: &str = "83f313ee810aefc078628e0e2ecdd8b420182b4d2f44d8bcc7767f201806b29e";
const JOURNALED: &str = "94667241b3f17c3a15bb270b6867d323623c96a83b9241607e6257471d47bbf9";

fn cat_at(e: &Env, t: &str, args: &[&str]) -> Vec<u8> {
    let o = e.cmd_at(Some(t), args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

fn fixture() -> Env {
    let mut e = Env::new();
    e.secret = ("VAULT_PASSPHRASE".into(), "fixture-passphrase".into());
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault-v1-journal"), &e.repo);
    e
}

/// Bytes of every object of the store, by relative path.
fn objects(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_vault_of_the_previous_format_reads_checks_writes_and_prunes() {
    let e = fixture();
    let t = "2026-11-03 14:00:00";
    // Reading changes nothing.
    let before = objects(&e.repo);
    let out = e.ok_at(t, &["check", "--read-data"]);
    assert!(out.contains("no errors") && out.contains("journal"), "{out}");
    assert_eq!(sha256(&cat_at(&e, t, &["cat", "2026-11-01/dump.archive"])), DAY0);
    assert_eq!(sha256(&cat_at(&e, t, &["cat", "2026-11-02/dump.archive"])), DAY1);
    assert_eq!(cat_at(&e, t, &["cat", "2026-11-01/notes/note.txt"]), b"hello from format version 1\n");
    let mut after = objects(&e.repo);
    after.retain(|k, _| k != "lock");
    assert_eq!(before, after, "reading a vault must not change it");

    // The first writer replays the version-1 journal (blob records), then writes frames.
    let new = {
        let mut d = cat_at(&e, t, &["cat", "2026-11-02/dump.archive"]);
        d.reverse();
        d
    };
    std::fs::write(e.path("new.bin"), &new).unwrap();
    e.ok_at(t, &["put", "new.bin", e.path("new.bin").to_str().unwrap()]);
    assert_eq!(sha256(&cat_at(&e, t, &["cat", "2026-11-03/journaled.bin"])), JOURNALED);
    assert_eq!(cat_at(&e, t, &["cat", "2026-11-03/dir/small.txt"]), b"small\n");
    assert_eq!(cat_at(&e, t, &["cat", "2026-11-03/new.bin"]), new);
    let packs = objects(&e.repo.join("packs"));
    assert!(packs.values().any(|p| p[4] == 1) && packs.values().any(|p| p[4] == 2), "v1 and v2 packs side by side");
    let out = e.ok_at(t, &["check", "--read-data"]);
    assert!(out.contains("no errors") && !out.contains("journal"), "{out}");

    // Prune forgets the two sealed days (version-1 packs partly or wholly dead).
    let t2 = "2026-11-04 09:00:00";
    let out = e.ok_at(t2, &["prune", "--keep-last", "1", "--max-unused", "0"]);
    assert!(out.contains("forgot 2 snapshots"), "{out}");
    let out = e.ok_at(t2, &["check", "--read-data"]);
    assert!(out.contains("no errors") && !out.contains("not in any index"), "{out}");
    assert_eq!(sha256(&cat_at(&e, t2, &["cat", "2026-11-03/journaled.bin"])), JOURNALED);
    assert_eq!(cat_at(&e, t2, &["cat", "2026-11-03/new.bin"]), new);
    assert_eq!(cat_at(&e, t2, &["cat", "2026-11-03/note.txt"]), b"hello from format version 1\n");
    let packs = objects(&e.repo.join("packs"));
    assert!(packs.values().all(|p| p[4] == 2), "prune moved the live version-1 blobs into version-2 packs");
    // The index cache, filled from version-1 and version-2 index files, agrees with a fresh one.
    let with_cache = e.ok_at(t2, &["check", "--read-data"]);
    std::fs::remove_dir_all(&e.cache).unwrap();
    let fresh = e.ok_at(t2, &["check", "--read-data"]);
    assert_eq!(with_cache, fresh);
}
