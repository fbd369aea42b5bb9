//! scripts/nightly.sh end to end: mount, dump into the mount, offsite sync, drill, status.

use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &str = "7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c";

fn bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_vaultfs")).with_file_name(name);
    assert!(p.exists(), "{} is not built (run the workspace's tests: cargo test --workspace)", p.display());
    p
}

fn vaultctl(dir: &Path, faketime: Option<&str>, args: &[&str]) -> String {
    let mut c = match faketime {
        Some(t) => {
            let mut c = Command::new("faketime");
            c.arg(t).arg(bin("vaultctl"));
            c
        }
        None => Command::new(bin("vaultctl")),
    };
    let out = c
        .args(args)
        .env("VAULT_REPO", dir.join("vault"))
        .env("VAULT_KEY", KEY)
        .env("VAULT_CACHE_DIR", dir.join("cache"))
        .env_remove("VAULT_PASSPHRASE")
        .output()
        .unwrap();
    assert!(out.status.success(), "vaultctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_nightly_job_dumps_syncs_drills_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mongo-archives/dump-w-oplog.archive");
    // Yesterday's backup exists (sealed by the first write of today), so the drill has a target.
    vaultctl(d, Some("2026-01-09 02:00:00"), &["init", "--time-zone", "UTC"]);
    vaultctl(d, Some("2026-01-09 02:00:00"), &["put", "old", "/etc/hostname"]);
    vaultctl(d, Some("2026-01-10 02:00:00"), &["put", "today", fixture.to_str().unwrap()]);
    // Retention: keep the last one (plus, always, the current period and the newest sealed).
    vaultctl(d, None, &["policy", "set", "--keep-last", "1"]);
    vaultctl(d, None, &["remote", "add", "offsite", &format!("file://{}", d.join("offsite").display())]);
    std::fs::write(d.join("key"), KEY).unwrap();
    let mnt = d.join("mnt");
    let env = d.join("vault.env");
    let today = chrono::Local::now().format("%d").to_string();
    std::fs::write(
        &env,
        format!(
            "VAULT_REPO={}\nVAULT_KEY_FILE={}\nVAULT_CACHE_DIR={}\nVAULT_MOUNT={}\nVAULT_REMOTE=offsite\n\
             DUMP_CMD='cp {} \"$VAULT_MOUNT/today\"'\nVAULT_DRILL_DAY={today}\nVAULTCTL={}\nVAULTFS={}\n",
            d.join("vault").display(),
            d.join("key").display(),
            d.join("cache").display(),
            mnt.display(),
            fixture.display(),
            bin("vaultctl").display(),
            bin("vaultfs").display(),
        ),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nightly.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&env)
        .env_remove("VAULT_KEY")
        .env_remove("VAULT_PASSPHRASE")
        .output()
        .unwrap();
    let _ = Command::new("fusermount3").arg("-u").arg(&mnt).status();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nightly failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("synced offsite"), "{stdout}");
    assert!(stdout.contains("pruned: forgot 1 snapshots"), "{stdout}");
    assert!(stdout.contains("result:          OK"), "the drill must have run: {stdout}");
    assert!(stdout.contains("last drill:      2026-01-10"), "{stdout}");
    // The dump ran as a recorded job (vaultctl run) and wrote today's file.
    assert!(stdout.contains("last job:        OK"), "{stdout}");
    assert!(stdout.contains("/today ("), "{stdout}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Today's dump is in the vault and in the offsite copy.
    let ls = vaultctl(d, None, &["ls", "current"]);
    assert!(ls.contains("today"), "{ls}");
    let snaps = vaultctl(d, None, &["--repo", &format!("file://{}", d.join("offsite").display()), "snapshots"]);
    assert!(snaps.contains("2026-01-10  sealed"), "{snaps}");
    assert!(!snaps.contains("2026-01-09"), "the forgotten day leaves the offsite copy too: {snaps}");
}
