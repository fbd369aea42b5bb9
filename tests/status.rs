//! `vaultctl status --textfile` (read back by Prometheus' own text-format parser from the
//! test venv), its atomic replacement, and the `--json` outputs of status, snapshots and ls
//! against the schema in docs/OPERATIONS.md.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Each command starts its clock at one of these instants with `faketime` (UTC; the test
/// vaults use UTC periods).
const DAY1: &str = "2026-03-01 10:00:00";
const DAY2: &str = "2026-03-02 12:00:00";

/// A time a command run at `t` recorded: `t` plus however long that command had run (the
/// fake clock runs on). The bound only says "during that command", never how fast it was.
fn at(t: &str, value: f64) -> bool {
    let t = unix(t) as f64;
    (t..t + 3600.0).contains(&value)
}

fn unix(t: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp()
}

/// (name, labels) -> value, as prometheus_client's parser reads the file.
fn parse_textfile(path: &Path) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    assert fam.type == "gauge", (fam.name, fam.type)
    assert fam.documentation, fam.name
    for s in fam.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let o = std::process::Command::new(venv_bin("python")).arg("-c").arg(script).arg(path).output().unwrap();
    assert!(o.status.success(), "prometheus_client rejects the file: {}", String::from_utf8_lossy(&o.stderr));
    let samples: Vec<(String, BTreeMap<String, String>, f64)> = serde_json::from_slice(&o.stdout).unwrap();
    let mut m = BTreeMap::new();
    for (name, labels, value) in samples {
        assert!(m.insert((name.clone(), labels), value).is_none(), "{name} twice");
    }
    m
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A vault with a day of history: a backup on day 1; on day 2 a backup job, a sync to
/// `offsite` and a drill of day 1; a second remote that never synced.
fn vault_with_history() -> Env {
    let e = Env::new();
    e.ok_at(DAY1, &["init", "--time-zone", "UTC"]);
    e.ok_at(DAY1, &["put", "today", "/etc/hostname"]);
    let src = e.path("dump");
    std::fs::write(&src, data(300_000, 7)).unwrap();
    let put = format!("{} put today {}", vaultctl_bin().display(), src.display());
    e.ok_at(DAY2, &["run", "--", "sh", "-c", &put]);
    let off = format!("file://{}", e.path("offsite").display());
    e.ok_at(DAY2, &["remote", "add", "offsite", &off]);
    e.ok_at(DAY2, &["remote", "add", "usb", &format!("file://{}", e.path("usb").display())]);
    e.ok_at(DAY2, &["sync", "offsite"]);
    e.ok_at(DAY2, &["drill"]);
    e
}

#[test]
fn textfile_holds_every_metric_for_prometheus_and_is_replaced_atomically() {
    let e = vault_with_history();
    let dir = e.path("textfile");
    std::fs::create_dir(&dir).unwrap();
    let prom = dir.join("vault.prom");
    // An older file, hard-linked: replacing it by rename leaves the old inode untouched.
    std::fs::write(&prom, "# old\n").unwrap();
    std::fs::hard_link(&prom, e.path("old.prom")).unwrap();
    // A name the collector would never read is refused, before anything is written.
    let txt = dir.join("vault.txt");
    let o = e.cmd_at(Some(DAY2), &["status", "--textfile", txt.to_str().unwrap()]).output().unwrap();
    let err = fails(o, &["status", "--textfile"], 1);
    assert!(err.contains(".prom"), "{err}");
    assert!(!txt.exists());
    let out = e.ok_at(DAY2, &["status", "--textfile", prom.to_str().unwrap()]);
    assert!(out.contains("last job:        OK"), "{out}");
    assert_eq!(std::fs::read_to_string(e.path("old.prom")).unwrap(), "# old\n", "written in place");
    let meta = std::fs::metadata(&prom).unwrap();
    assert_ne!(meta.ino(), std::fs::metadata(e.path("old.prom")).unwrap().ino());
    assert_eq!(meta.mode() & 0o777, 0o644, "node_exporter must be able to read it");
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|d| d.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["vault.prom"], "no temporary file is left behind");

    let m = parse_textfile(&prom);
    let vault = e.repo.to_str().unwrap();
    let get = |name: &str, extra: &[(&str, &str)]| {
        let mut l = labels(extra);
        l.insert("vault".into(), vault.into());
        *m.get(&(name.to_string(), l)).unwrap_or_else(|| panic!("{name} {extra:?} missing: {m:?}"))
    };
    let (d1, d2) = (unix(DAY1) as f64, unix(DAY2) as f64);
    assert!(at(DAY2, get("vault_status_timestamp_seconds", &[])));
    assert!(at(DAY2, get("vault_last_backup_timestamp_seconds", &[])));
    assert!(at(DAY1, get("vault_latest_sealed_timestamp_seconds", &[])));
    assert_eq!(get("vault_latest_sealed_info", &[("period", "2026-03-01")]), 1.0);
    let rpo = get("vault_rpo_seconds", &[]);
    assert!((d2 - d1 - 3600.0..d2 - d1 + 3600.0).contains(&rpo), "{rpo}");
    assert_eq!(get("vault_snapshots", &[]), 2.0);
    assert_eq!(get("vault_sealed_snapshots", &[]), 1.0);
    assert!(get("vault_logical_bytes", &[]) >= 300_000.0);
    assert!(get("vault_stored_bytes", &[]) > 0.0);
    assert!(at(DAY2, get("vault_last_job_timestamp_seconds", &[])));
    assert_eq!(get("vault_last_job_success", &[]), 1.0);
    assert_eq!(get("vault_last_job_exit_code", &[]), 0.0);
    assert_eq!(get("vault_last_job_files", &[]), 1.0);
    assert!(at(DAY2, get("vault_last_sync_timestamp_seconds", &[("remote", "offsite")])));
    assert_eq!(get("vault_last_sync_complete", &[("remote", "offsite")]), 1.0);
    assert!(get("vault_last_sync_uploaded_bytes", &[("remote", "offsite")]) > 1000.0);
    assert_eq!(get("vault_last_sync_timestamp_seconds", &[("remote", "usb")]), 0.0, "never synced");
    assert!(at(DAY2, get("vault_last_drill_timestamp_seconds", &[])));
    assert_eq!(get("vault_last_drill_success", &[]), 1.0);
    // Nothing of a kind the drill checks content of: read back only.
    assert_eq!(get("vault_last_drill_result", &[("result", "read_back_only")]), 1.0);
    let rpo = get("vault_last_drill_rpo_seconds", &[]);
    assert!((d2 - d1 - 3600.0..d2 - d1 + 3600.0).contains(&rpo), "{rpo}");
    assert!(get("vault_last_drill_rto_seconds", &[]) >= 0.0);

    // A failed job: exit 7, and the file says so (written before the exit).
    // (An hour later: every command's fake clock starts at the instant given.)
    let later = "2026-03-02 13:00:00";
    let o = e.cmd_at(Some(later), &["run", "--", "sh", "-c", "exit 3"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let o = e.cmd_at(Some(later), &["status", "--textfile", prom.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", String::from_utf8_lossy(&o.stdout));
    let m2 = parse_textfile(&prom);
    let key = |n: &str| (n.to_string(), labels(&[("vault", vault)]));
    assert_eq!(m2[&key("vault_last_job_success")], 0.0);
    assert_eq!(m2[&key("vault_last_job_exit_code")], 3.0);

    // A directory that does not exist: an error, exit 1, nothing written.
    let missing = e.path("nowhere/vault.prom");
    let err = e.fails(&["status", "--textfile", missing.to_str().unwrap()], 1);
    assert!(err.contains("writing the textfile") && err.contains("nowhere"), "{err}");
}

fn json_of(e: &Env, args: &[&str]) -> Value {
    let o = e.cmd_at(Some(DAY2), args).output().unwrap();
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|err| panic!("{args:?}: not JSON ({err}): {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn json_outputs_follow_the_documented_schema() {
    let e = vault_with_history();
    let s = json_of(&e, &["status", "--json"]);
    assert_eq!(s["schema"], 1);
    assert_eq!(s["vault"], e.repo.to_str().unwrap());
    assert!(at(DAY2, s["now_unix"].as_f64().unwrap()));
    assert_eq!(s["newest_backup"]["period"], "2026-03-02");
    assert!(at(DAY2, s["newest_backup"]["last_write_unix"].as_f64().unwrap()));
    assert!(s["newest_backup"]["age_seconds"].as_f64().unwrap() < 3600.0);
    assert_eq!(s["latest_sealed"]["period"], "2026-03-01");
    assert!(at(DAY1, s["latest_sealed"]["last_write_unix"].as_f64().unwrap()));
    let cur = &s["current_period"];
    assert_eq!(
        (cur["period"].as_str(), cur["written"].as_bool(), cur["sealed"].as_bool()),
        (Some("2026-03-02"), Some(true), Some(false))
    );
    assert_eq!(cur["files"], 1);
    assert_eq!(cur["logical_bytes"], 300_000);
    let remotes = s["remotes"].as_array().unwrap();
    assert_eq!(remotes.len(), 2);
    let off = remotes.iter().find(|r| r["name"] == "offsite").unwrap();
    assert!(at(DAY2, off["last_sync"]["time_unix"].as_f64().unwrap()));
    assert_eq!(off["last_sync"]["complete"], true);
    assert!(off["last_sync"]["uploaded"].as_u64().unwrap() > 0);
    assert!(remotes.iter().find(|r| r["name"] == "usb").unwrap()["last_sync"].is_null());
    let d = &s["last_drill"];
    assert_eq!(d["snapshot"], "2026-03-01");
    assert!(d["path"].is_null());
    assert_eq!(d["result"], "read_back_only");
    assert!(at(DAY2, d["started_unix"].as_f64().unwrap()));
    let (rpo, day) = (d["rpo_seconds"].as_f64().unwrap(), (unix(DAY2) - unix(DAY1)) as f64);
    assert!((day - 3600.0..day + 3600.0).contains(&rpo), "{rpo}");
    assert_eq!(d["errors"], 0);
    assert_eq!(d["checked"], "1 read back only");
    assert!(s["last_file_drill"].is_null());
    let j = &s["last_job"];
    assert_eq!(j["ok"], true);
    assert_eq!(j["exit_code"], 0);
    assert!(j["signal"].is_null() && j["interrupted_by"].is_null() && j["error"].is_null());
    assert_eq!(j["command"][0], "sh");
    assert_eq!(j["files"][0]["path"], "today");
    assert_eq!(j["files"][0]["period"], "2026-03-02");
    assert_eq!(j["files"][0]["size"], 300_000);
    assert_eq!(s["max_age_hours"], 26.0);
    assert!(s["alert"].is_null());
    // Stale: the alert is named, and the exit code is 6 as without --json.
    let o = e.cmd_at(Some("2026-03-05 12:00:00"), &["status", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(6));
    let stale: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stale["alert"], "stale");
    assert_eq!(stale["current_period"]["written"], false);
    assert_eq!(stale["current_period"]["period"], "2026-03-05");

    let snaps = json_of(&e, &["snapshots", "--json"]);
    assert_eq!(snaps["schema"], 1);
    let list = snaps["snapshots"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["period"], "2026-03-01");
    assert_eq!(list[0]["sealed"], true);
    assert_eq!(list[1]["period"], "2026-03-02");
    assert_eq!(list[1]["sealed"], false);
    assert_eq!(list[1]["files"], 1);
    assert_eq!(list[1]["logical_bytes"], 300_000);
    assert!(list[1]["new_bytes"].as_u64().unwrap() > 0);
    assert_eq!((list[1]["failed"].as_u64(), list[1]["incomplete"].as_u64()), (Some(0), Some(0)));
    assert!(at(DAY1, list[0]["created_unix"].as_f64().unwrap()));
    assert!(at(DAY2, list[1]["last_write_unix"].as_f64().unwrap()));

    let periods = json_of(&e, &["ls", "--json"]);
    assert_eq!(periods["snapshots"][1]["period"], "2026-03-02");
    assert_eq!(periods["snapshots"][1]["sealed"], false);
    e.ok_at(DAY2, &["mark", "today", "--failed"]);
    let ls = json_of(&e, &["ls", "--json", "current"]);
    assert_eq!(ls["schema"], 1);
    assert_eq!(ls["path"], "current");
    let f = &ls["entries"][0];
    assert_eq!(f["name"], "today");
    assert_eq!(f["type"], "file");
    assert_eq!(f["mode"], 0o644);
    assert_eq!(f["size"], 300_000);
    assert_eq!(f["state"], "failed");
    assert!(f["target"].is_null());
    assert!(f["mtime_unix_ns"].as_i64().is_some() && f["uid"].as_u64().is_some() && f["gid"].as_u64().is_some());
}
