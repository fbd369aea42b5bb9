//! `vaultctl report` of a vault with a known history (faketime days): a good day, a day
//! without a backup, a failed job, a drill with per-collection counts, a sync, a remote that
//! never synced. The same rows in JSON, markdown (parsed by markdown-it-py, linted by
//! pymarkdown) and HTML (rendered to a PNG by headless Chromium).

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn archive() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mongo-archives/dump-w-oplog.archive")
}

fn history() -> Env {
    let e = Env::new();
    let put = |t: &str, extra: &str| {
        let line = format!("{} put today {}{extra}", vaultctl_bin().display(), archive().display());
        e.cmd_at(Some(t), &["run", "--", "sh", "-c", &line]).output().unwrap()
    };
    e.ok_at("2026-03-01 09:00:00", &["init", "--time-zone", "UTC"]);
    assert!(put("2026-03-01 10:00:00", "").status.success());
    // 2026-03-02: nothing. 2026-03-03: the dump fails after writing its file.
    assert_eq!(put("2026-03-03 10:00:00", "; exit 3").status.code(), Some(3));
    assert!(put("2026-03-04 10:00:00", "").status.success());
    e.ok_at("2026-03-04 11:00:00", &["remote", "add", "offsite", &format!("file://{}", e.path("off").display())]);
    e.ok_at("2026-03-04 11:00:00", &["remote", "add", "usb", &format!("file://{}", e.path("usb").display())]);
    e.ok_at("2026-03-04 11:00:00", &["drill", "--snapshot", "2026-03-01"]);
    e.ok_at("2026-03-04 12:00:00", &["sync", "offsite"]);
    e
}

fn report(e: &Env, format: &str) -> String {
    e.ok_at("2026-03-05 08:00:00", &["report", "--since", "2026-03-01", "--format", format])
}

#[test]
fn the_report_holds_the_history_in_all_three_formats() {
    let e = history();
    let j: Value = serde_json::from_str(&report(&e, "json")).unwrap();
    assert_eq!(j["schema"], 1);
    let gaps: Vec<String> =
        j["gaps"].as_array().unwrap().iter().map(|g| format!("{}: {}", g["kind"], g["what"])).collect();
    let has = |s: &str| gaps.iter().any(|g| g.contains(s));
    assert!(has("\"no_backup\": \"no backup in 2026-03-02\""), "{gaps:#?}");
    assert!(has("\"failed_job\": \"2026-03-03: backup job failed (exit 3)"), "{gaps:#?}");
    assert!(has("\"marked_files\": \"2026-03-03: 1 files marked failed"), "{gaps:#?}");
    assert!(has("remote usb lacks the newest backup"), "{gaps:#?}");
    assert!(!has("remote offsite"), "{gaps:#?}");
    assert!(!has("2026-03-05"), "the current period is no gap yet: {gaps:#?}");
    assert_eq!(gaps.len(), 4, "{gaps:#?}");
    let periods: Vec<&str> = j["periods"].as_array().unwrap().iter().map(|p| p["period"].as_str().unwrap()).collect();
    assert_eq!(periods, ["2026-03-01", "2026-03-03", "2026-03-04"]);
    let p1 = &j["periods"][0];
    let size = std::fs::metadata(archive()).unwrap().len();
    assert_eq!(p1["logical_bytes"], size);
    assert_eq!(p1["sealed"], true);
    assert_eq!(p1["jobs"][0]["ok"], true);
    assert_eq!(j["periods"][1]["jobs"][0]["exit_code"], 3);
    assert_eq!(j["periods"][1]["failed_files"], 1);
    // The same dump the next day: deduplicated.
    assert!(j["periods"][2]["new_bytes"].as_u64().unwrap() < size / 10);
    let enc = &j["encryption"];
    assert!(enc["cipher"].as_str().unwrap().starts_with("AES-256-GCM-SIV"));
    assert_eq!(enc["slots"][0]["label"], "initial");
    assert!(enc["slots"][0]["kdf"].as_str().unwrap().starts_with("Argon2id m="));
    let remotes = j["remotes"].as_array().unwrap();
    assert_eq!(remotes[0]["name"], "offsite");
    assert_eq!(remotes[0]["up_to_date"], true);
    assert_eq!(remotes[0]["syncs"][0]["complete"], true);
    assert!(remotes[0]["syncs"][0]["uploaded"].as_u64().unwrap() > 0);
    assert_eq!(remotes[1]["up_to_date"], false);
    let d = &j["drills"][0];
    assert_eq!(d["snapshot"], "2026-03-01");
    assert_eq!(d["result"], "ok");
    let colls = d["collections"].as_array().unwrap();
    assert!(!colls.is_empty() && colls.iter().all(|c| c["crc_ok"] == true), "{colls:?}");
    assert!(d["phases"]["fetch_decrypt"].is_number() && d["rpo_seconds"].as_f64().unwrap() > 3.0 * 86_400.0);
    let docs: u64 = colls.iter().map(|c| c["archive_count"].as_u64().unwrap()).sum();
    assert_eq!(d["counts"]["documents"], docs);
    let first_ns = colls[0]["ns"].as_str().unwrap().to_string();

    // Markdown: a CommonMark parser finds the tables and their rows; the linter finds nothing.
    let md = report(&e, "md");
    let file = e.path("report.md");
    std::fs::write(&file, &md).unwrap();
    let script = r#"
import json, sys
from markdown_it import MarkdownIt
tokens = MarkdownIt("commonmark").enable("table").parse(open(sys.argv[1]).read())
rows, row, cell, heads = [], None, None, []
for i, t in enumerate(tokens):
    if t.type == "tr_open": row = []
    elif t.type == "tr_close": rows.append(row)
    elif t.type == "inline" and row is not None and tokens[i-1].type in ("td_open", "th_open"): row.append(t.content)
    elif t.type == "inline" and tokens[i-1].type == "heading_open": heads.append(t.content)
print(json.dumps({"rows": rows, "heads": heads}))
"#;
    let o = Command::new(venv_bin("python")).arg("-c").arg(script).arg(&file).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let parsed: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows: Vec<Vec<String>> = serde_json::from_value(parsed["rows"].clone()).unwrap();
    let heads: Vec<String> = serde_json::from_value(parsed["heads"].clone()).unwrap();
    assert_eq!(heads[0], format!("Backup evidence: {}", e.repo.display()));
    for h in ["Gaps", "Encryption", "Key slots", "Backups", "Offsite syncs", "Restore drills"] {
        assert!(heads.iter().any(|x| x == h), "{h}: {heads:?}");
    }
    let row = |first: &str| rows.iter().find(|r| r[0] == first).unwrap_or_else(|| panic!("no row {first}: {rows:?}"));
    assert_eq!(row("2026-03-03")[1], "sealed");
    assert!(row("2026-03-03")[7].starts_with("FAILED (exit 3"), "{:?}", row("2026-03-03"));
    assert_eq!(row("2026-03-04")[1], "open");
    assert!(rows.iter().any(|r| r.len() == 5 && r[1] == first_ns), "collection row: {rows:?}");
    assert!(md.contains("- **no_backup**: no backup in 2026-03-02"), "{md}");
    let lint = Command::new(venv_bin("pymarkdown")).args(["-d", "md013", "scan"]).arg(&file).output().unwrap();
    assert!(
        lint.status.success(),
        "pymarkdown: {}{}\n{md}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // HTML: self-contained, three charts, rendered by Chromium to a PNG.
    let out = e.path("report.html");
    e.ok_at("2026-03-05 08:00:00", &["report", "--since", "2026-03-01", "-o", out.to_str().unwrap()]);
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(html.matches("<svg").count(), 3, "size, RPO, RTO");
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="), "self-contained");
    assert!(html.contains("no backup in 2026-03-02") && html.contains(&first_ns));
    let png = e.path("report.png");
    let chromium = require_tool("chromium");
    let o = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2400"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--user-data-dir={}", e.path("chromium").display()))
        .arg(format!("file://{}", out.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium: {}", String::from_utf8_lossy(&o.stderr));
    let img = std::fs::read(&png).unwrap();
    assert_eq!(&img[..8], b"\x89PNG\r\n\x1a\n");
    // Width and height from the IHDR chunk.
    let (w, h) =
        (u32::from_be_bytes(img[16..20].try_into().unwrap()), u32::from_be_bytes(img[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1200, 2400));
    assert!(img.len() > 20_000, "a page with charts and tables, not a blank one: {} bytes", img.len());
}

#[test]
fn since_limits_the_range_and_bad_values_are_refused() {
    let e = history();
    let j: Value =
        serde_json::from_str(&e.ok_at("2026-03-05 08:00:00", &["report", "--since", "2026-03-04", "--format", "json"]))
            .unwrap();
    let periods: Vec<&str> = j["periods"].as_array().unwrap().iter().map(|p| p["period"].as_str().unwrap()).collect();
    assert_eq!(periods, ["2026-03-04"]);
    assert!(j["drills"][0]["snapshot"] == "2026-03-01", "the drill ran on the 4th");
    let err = e.fails(&["report", "--since", "yesterday"], 1);
    assert!(err.contains("--since"), "{err}");
}
