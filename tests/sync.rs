//! Offsite sync to file:// remotes: a complete copy, incremental, verified without the key,
//! repaired, resumable after a kill at any moment, deletions only where allowed.

mod common;
use common::*;
use std::process::Stdio;

fn remote_env(e: &Env, remote: &std::path::Path) -> Env {
    let mut r = Env::new();
    r.repo = remote.to_path_buf();
    r.secret = e.secret.clone();
    r
}

#[test]
fn sync_makes_a_complete_copy_that_opens_on_its_own() {
    let e = Env::new();
    e.ok_at("2026-11-20 10:00:00", &["init", "--chunk-avg", "4KiB", "--pack-size", "1MiB", "--time-zone", "UTC"]);
    let day1 = data(2_000_000, 1);
    let mut day2 = day1.clone();
    day2[1000] ^= 1;
    let f = e.path("in");
    std::fs::write(&f, &day1).unwrap();
    e.ok_at("2026-11-20 10:00:00", &["put", "today", f.to_str().unwrap()]);
    std::fs::write(&f, &day2).unwrap();
    e.ok_at("2026-11-21 10:00:00", &["put", "today", f.to_str().unwrap()]);
    e.ok_at("2026-11-21 10:00:00", &["put", "uploads/a.pdf", f.to_str().unwrap()]);
    let remote = e.path("usb/vault");
    let url = format!("file://{}", remote.display());
    e.ok(&["remote", "add", "offsite", &url]);
    assert!(e.ok(&["remote", "list"]).contains("offsite"));
    let plan = e.ok(&["sync", "offsite", "--dry-run"]);
    assert!(plan.contains("plan for offsite: upload"), "{plan}");
    assert!(!remote.join("manifest").exists(), "a dry run must not write");
    let out = e.ok(&["sync", "offsite"]);
    assert!(out.contains("uploaded"), "{out}");
    // Nothing new: nothing sent.
    let out = e.ok(&["sync", "offsite"]);
    assert!(out.contains("uploaded 0 objects"), "{out}");

    // The copy alone, with a fresh cache.
    let r = remote_env(&e, &remote);
    assert_eq!(r.cat("2026-11-20/today"), day1);
    assert_eq!(r.cat("2026-11-21/today"), day2);
    assert_eq!(r.cat("2026-11-21/uploads/a.pdf"), day2);
    assert!(r.ok(&["check", "--read-data"]).contains("no errors"));
    let mut by_url = r.cmd(&["snapshots"]);
    by_url.env("VAULT_REPO", &url);
    assert!(ok(by_url.output().unwrap(), &["snapshots"]).contains("2026-11-20  sealed"));
}

#[test]
fn verify_finds_damage_and_the_next_sync_repairs_it() {
    let e = Env::new();
    e.init();
    e.put_bytes("f", &data(1_500_000, 2));
    let remote = e.path("nas");
    e.ok(&["remote", "add", "nas", &format!("file://{}", remote.display())]);
    e.ok(&["sync", "nas"]);
    assert!(e.ok(&["sync", "nas", "--verify"]).contains("all match"));
    let (pack, _) = packs_by_size(&remote)[0].clone();
    let mut b = std::fs::read(&pack).unwrap();
    // By URL, without the key and without the vault: the copy against its own manifest,
    // nothing changed on it.
    let url = format!("file://{}", remote.display());
    let keyless = |args: &[&str]| {
        let mut c = e.cmd(args);
        c.env_remove(&e.secret.0).env_remove("VAULT_REPO");
        c.output().unwrap()
    };
    let o = keyless(&["sync", &url, "--verify"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("all match"), "{o:?}");
    let manifest = std::fs::read(remote.join("manifest")).unwrap();
    b[200] ^= 0x10;
    std::fs::write(&pack, &b).unwrap();
    let o = keyless(&["sync", &url, "--verify"]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&pack.file_name().unwrap().to_string_lossy()[..16]) && out.contains("without the key"),
        "{out}"
    );
    assert_eq!(std::fs::read(remote.join("manifest")).unwrap(), manifest);
    let err = fails(keyless(&["sync", &url]), &["sync", &url], 1);
    assert!(err.contains("only for --verify"), "{err}");
    // Nothing there, or no manifest: not a copy that checks out.
    let nowhere = format!("file://{}", e.path("nothing-here").display());
    let err = fails(keyless(&["sync", &nowhere, "--verify"]), &["sync", "--verify", "nothing"], 4);
    assert!(err.contains("no manifest"), "{err}");
    let o = e.run(&["sync", "nas", "--verify"]);
    assert_eq!(o.status.code(), Some(4));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&pack.file_name().unwrap().to_string_lossy()[..16]) && out.contains("damaged"), "{out}");
    let out = e.ok(&["sync", "nas"]);
    assert!(out.contains("uploaded 1 objects"), "{out}");
    assert!(e.ok(&["sync", "nas", "--verify"]).contains("all match"));
    let manifest = std::fs::read(remote.join("manifest")).unwrap();
    std::fs::remove_file(remote.join("manifest")).unwrap();
    let err = e.fails(&["sync", "nas", "--verify"], 4);
    assert!(err.contains("no manifest") && err.contains("the next sync sends"), "{err}");
    std::fs::write(remote.join("manifest"), manifest).unwrap();
    let r = remote_env(&e, &remote);
    assert!(r.ok(&["check", "--read-data"]).contains("no errors"));
}

#[test]
fn deletions_follow_except_on_keep_all_remotes() {
    let e = Env::new();
    e.init();
    e.put_bytes("f", b"one");
    let (a, b) = (e.path("a"), e.path("b"));
    e.ok(&["remote", "add", "a", &format!("file://{}", a.display())]);
    e.ok(&["remote", "add", "b", &format!("file://{}", b.display()), "--keep-all"]);
    e.ok(&["sync", "a"]);
    e.ok(&["sync", "b"]);
    // A new revision of the period supersedes (and deletes) the old one locally.
    e.put_bytes("g", b"two");
    let out = e.ok(&["sync", "a"]);
    assert!(out.contains("deleted 1"), "{out}");
    let out = e.ok(&["sync", "b"]);
    assert!(out.contains("deleted 0"), "{out}");
    assert_eq!(std::fs::read_dir(a.join("snapshots")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(b.join("snapshots")).unwrap().count(), 2);
    for dir in [&a, &b] {
        let r = remote_env(&e, dir);
        assert_eq!(r.cat("current/g"), b"two");
    }
    let err = e.fails(&["remote", "add", "a", "file:///elsewhere"], 1);
    assert!(err.contains("exists"), "{err}");
    let err = e.fails(&["remote", "add", "x", "ftp://host/prefix"], 1);
    assert!(err.contains("not a remote URL") && err.contains("s3://bucket/prefix"), "{err}");
    e.ok(&["remote", "remove", "b"]);
    assert!(!e.ok(&["remote", "list"]).contains("keep-all"));
}

#[test]
fn a_sync_killed_at_any_moment_leaves_a_readable_copy_and_resumes() {
    let e = Env::new();
    e.init();
    let first = data(1_000_000, 3);
    e.put_bytes("first", &first);
    let remote = e.path("offsite");
    e.ok(&["remote", "add", "offsite", &format!("file://{}", remote.display())]);
    e.ok(&["sync", "offsite"]);
    let big = data(24_000_000, 4);
    e.put_bytes("big", &big);
    let r = remote_env(&e, &remote);
    for delay_ms in [5u64, 40, 120, 300] {
        let mut child = e.cmd(&["sync", "offsite"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        // The copy is at its previous state (or already complete), and consistent.
        let out = r.ok(&["check"]);
        assert!(out.contains("no errors"), "after a kill at {delay_ms} ms: {out}");
        assert_eq!(r.cat("current/first"), first);
    }
    let out = e.ok(&["sync", "offsite"]);
    assert!(out.contains("synced offsite"), "{out}");
    assert_eq!(r.cat("current/big"), big);
    assert!(r.ok(&["check", "--read-data"]).contains("no errors"));
    assert!(e.ok(&["sync", "offsite", "--verify"]).contains("all match"));
}

#[test]
fn jobs_and_bandwidth_limit_are_honoured() {
    let e = Env::new();
    e.init();
    // About 2 MB of packs after compression: at 1 MiB/s, with one second of tokens to start
    // with, about a second (unlimited: a few hundredths).
    e.put_bytes("f", &data(3_000_000, 9));
    let remote = e.path("slow");
    e.ok(&["remote", "add", "slow", &format!("file://{}", remote.display())]);
    let t = std::time::Instant::now();
    let out = e.ok(&["sync", "slow", "--jobs", "3", "--bwlimit", "1MiB"]);
    assert!(out.contains("synced slow"), "{out}");
    assert!(t.elapsed().as_secs_f64() >= 0.8, "--bwlimit 1MiB took only {:?}", t.elapsed());
    let r = remote_env(&e, &remote);
    assert!(r.ok(&["check", "--read-data"]).contains("no errors"));
    let err = e.fails(&["sync", "slow", "--bwlimit", "0"], 1);
    assert!(err.contains("--bwlimit"), "{err}");
    let err = e.fails(&["sync", "slow", "--jobs", "0"], 1);
    assert!(err.contains("--jobs"), "{err}");
}

#[test]
fn an_offsite_copy_is_written_only_by_sync_until_it_becomes_a_vault_of_its_own() {
    let e = Env::new();
    e.init();
    e.put_bytes("a", b"first");
    let remote = e.path("offsite");
    e.ok(&["remote", "add", "offsite", &format!("file://{}", remote.display())]);
    e.ok(&["sync", "offsite"]);
    let r = remote_env(&e, &remote);
    let f = e.path("more");
    std::fs::write(&f, b"more").unwrap();
    for args in [vec!["put", "b", f.to_str().unwrap()], vec!["prune", "--keep-last", "1"], vec!["seal"]] {
        let err = r.fails(&args, 1);
        assert!(err.contains("offsite copy"), "{args:?}: {err}");
    }
    // Reading works; after the manifest is removed (disaster recovery), it is a vault.
    assert_eq!(r.cat("current/a"), b"first");
    std::fs::remove_file(remote.join("manifest")).unwrap();
    r.ok(&["put", "b", f.to_str().unwrap()]);
    assert_eq!(r.cat("current/b"), b"more");
}

/// A store that only ever accepts new names: a delete or a put over an existing object fails,
/// as an append-only server (or credentials without delete rights on a versioned bucket,
/// where a replacement is the first step of a deletion) would refuse them.
struct AddOnly(vault::store::local::LocalStore);

impl vault::store::Store for AddOnly {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn put(&self, kind: vault::store::ObjKind, name: &str, data: &[u8]) -> vault::Result<()> {
        if self.0.size(kind, name).is_ok() {
            return Err(vault::Error::read_only(format!("append-only: {} exists", kind.path(name))));
        }
        self.0.put(kind, name, data)
    }
    fn get(&self, kind: vault::store::ObjKind, name: &str) -> vault::Result<Vec<u8>> {
        self.0.get(kind, name)
    }
    fn get_range(&self, kind: vault::store::ObjKind, name: &str, offset: u64, len: u32) -> vault::Result<Vec<u8>> {
        self.0.get_range(kind, name, offset, len)
    }
    fn list(&self, kind: vault::store::ObjKind) -> vault::Result<Vec<(String, u64)>> {
        self.0.list(kind)
    }
    fn delete(&self, kind: vault::store::ObjKind, name: &str) -> vault::Result<()> {
        Err(vault::Error::read_only(format!("append-only: no delete of {}", kind.path(name))))
    }
    fn size(&self, kind: vault::store::ObjKind, name: &str) -> vault::Result<u64> {
        self.0.size(kind, name)
    }
    fn remove_temporaries(&self) -> vault::Result<usize> {
        Err(vault::Error::read_only("append-only: no delete of temporaries"))
    }
}

#[test]
fn an_append_only_remote_only_ever_gets_new_objects() {
    use std::sync::Arc;
    use vault::commands::{remote, sync};
    use vault::store::{local::LocalStore, ObjKind, Store};
    let e = Env::new();
    e.init();
    let a = data(800_000, 5);
    e.put_bytes("a", &a);
    let copy = e.path("copy");
    e.ok(&["remote", "add", "ao", &format!("file://{}", copy.display()), "--append-only"]);
    assert!(e.ok(&["remote", "list"]).contains("append-only"));
    let open = || {
        let secret = vault::crypto::Secret::passphrase(e.secret.1.clone()).unwrap();
        let o = vault::repo::OpenOptions { cache_dir: Some(e.cache.clone()), ..Default::default() };
        vault::repo::Vault::open(Arc::new(LocalStore::new(&e.repo)), &secret, &o).unwrap()
    };
    let dst: Arc<dyn Store> = Arc::new(AddOnly(LocalStore::new(&copy)));
    let o = sync::SyncOptions { state_dir: Some(e.path("sync-state")), ..Default::default() };
    let v = open();
    let r = remote::find(&v, "ao").unwrap();
    let rep = sync::sync(&v, &r, &dst, &o, &|_, _| {}).unwrap();
    assert!(rep.uploaded > 5 && rep.not_replaced.is_empty(), "{rep:?}");
    drop(v);
    // A new revision of the period (the vault deletes the old one) and a changed config file.
    e.put_bytes("b", b"second");
    e.ok(&["remote", "add", "other", "file:///elsewhere"]);
    let v = open();
    let rep = sync::sync(&v, &r, &dst, &o, &|_, _| {}).unwrap();
    assert_eq!(rep.deleted, 0);
    assert_eq!(rep.not_replaced, vec!["remotes".to_string()], "{rep:?}");
    let copy_store = LocalStore::new(&copy);
    assert_eq!(copy_store.list(ObjKind::Snapshot).unwrap().len(), 2, "the superseded revision stays");
    assert_eq!(copy_store.list(ObjKind::Manifest).unwrap().len(), 2);
    assert!(!copy.join("manifest").exists());
    // The copy reads as the newest state; verify reports what the vault no longer has.
    let c = remote_env(&e, &copy);
    assert_eq!(c.cat("current/a"), a);
    assert_eq!(c.cat("current/b"), b"second");
    assert!(c.ok(&["check", "--read-data"]).contains("no errors"));
    let out = e.ok(&["sync", "ao", "--verify"]);
    assert!(out.contains("all match") && out.contains("kept: 1 objects the vault no longer has"), "{out}");
    // Writes to the copy are refused (it has journal manifests, not `manifest`).
    let err = c.fails(&["put", "x", "/etc/hostname"], 1);
    assert!(err.contains("offsite copy"), "{err}");
    // A plain sync through the real directory store agrees: nothing to send but the log.
    let out = e.ok(&["sync", "ao"]);
    assert!(out.contains("uploaded 0 objects") && out.contains("not replaced (append-only remote): remotes"), "{out}");
}
