//! `vaultctl drill` of zip files written by Python's zipfile, as a web application's backup API
//! hands them out (`backup.jsonl` and the upload directories): every member's CRC-32 and sizes,
//! JSON-lines objects counted per model; stored and deflated; a bad CRC, a cut, trailing
//! garbage and an application-encrypted zip; zip64 with over 4 GiB of entries, streamed from
//! Python straight into the vault (never a file on disk).

mod common;
use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};

const T0: &str = "2026-11-20 10:00:00";
const T2: &str = "2026-11-20 12:00:00";

/// Writes an application backup zip to argv[1] (compression argv[2]); prints per-model counts.
const MAKE_BACKUP: &str = r#"
import json, os, random, sys, zipfile
path, method = sys.argv[1], {"deflated": zipfile.ZIP_DEFLATED, "stored": zipfile.ZIP_STORED}[sys.argv[2]]
rnd = random.Random(7)
models = {"auth.user": 40, "reporting.report": 300, "reporting.finding": 1500, "reporting.evidence": 900, "api.apikey": 3}
lines = []
for model, n in models.items():
    for pk in range(1, n + 1):
        lines.append(json.dumps({"model": model, "pk": pk, "fields": {"title": f"{model} {pk}", "body": "x\ny\t\"q\" é" * rnd.randint(0, 20)}}))
rnd.shuffle(lines)
with zipfile.ZipFile(path, "w", compression=method) as z:
    z.writestr("backup.jsonl", "\n".join(lines) + "\n")
    for d in ("uploadedassets/", "uploadedimages/", "uploadedfiles/"):
        z.writestr(zipfile.ZipInfo(d), b"")
    z.writestr("uploadedimages/logo.png", rnd.randbytes(50_000))
    z.writestr("uploadedfiles/report.pdf", b"%PDF-1.7 " + rnd.randbytes(200_000))
    z.writestr("uploadedassets/style.css", "body { color: red }\n" * 500)
print(json.dumps(models))
"#;

/// Patches argv[1] in place: sets general-purpose flag bit 0 (encrypted) on every member, in
/// the local headers and the central directory.
const MARK_ENCRYPTED: &str = r#"
import struct, sys, zipfile
path = sys.argv[1]
with zipfile.ZipFile(path) as z:
    infos, start = z.infolist(), z.start_dir
b = bytearray(open(path, "rb").read())
for i in infos:
    b[i.header_offset + 6] |= 1
p = start
for _ in infos:
    b[p + 8] |= 1
    n, m, k = struct.unpack("<HHH", b[p + 28:p + 34])
    p += 46 + n + m + k
open(path, "wb").write(b)
"#;

/// Streams a zip64 archive to stdout: a JSON-lines member, 4 GiB + 100 MiB of zeros stored
/// (written in 1 MiB pieces), and a member after it (its offset needs zip64 too).
const STREAM_ZIP64: &str = r#"
import sys, zipfile
with zipfile.ZipFile(sys.stdout.buffer, "w", compression=zipfile.ZIP_STORED) as z:
    z.writestr("backup.jsonl", '{"model": "auth.user", "pk": 1, "fields": {}}\n')
    with z.open("uploadedfiles/huge.bin", "w", force_zip64=True) as f:
        block = bytes(1 << 20)
        for _ in range(4 * 1024 + 100):
            f.write(block)
    z.writestr("uploadedfiles/after.txt", "after the big one")
"#;

fn python(script: &str, args: &[&str]) -> String {
    let mut c = Command::new(venv_bin("python"));
    c.arg("-c").arg(script).args(args);
    run_ok(&mut c)
}

fn put_at(e: &Env, t: &str, name: &str, data: &[u8]) {
    let f = e.path(&format!("in-{}", name.replace('/', "_")));
    std::fs::write(&f, data).unwrap();
    e.ok_at(t, &["put", name, f.to_str().unwrap()]);
}

fn drill_json(e: &Env, code: i32) -> Value {
    let o = e.cmd_at(Some(T2), &["drill", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(code), "{}", String::from_utf8_lossy(&o.stdout));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn content<'a>(j: &'a Value, file: &str) -> &'a Value {
    j["contents"].as_array().unwrap().iter().find(|c| c["file"] == file).unwrap_or_else(|| panic!("no {file} in {j}"))
}

fn backup(dir: &std::path::Path, method: &str) -> (Vec<u8>, Value) {
    let p = dir.join(format!("backup-{method}.zip"));
    let models: Value = serde_json::from_str(&python(MAKE_BACKUP, &[p.to_str().unwrap(), method])).unwrap();
    (std::fs::read(&p).unwrap(), models)
}

#[test]
fn application_backups_are_verified_member_by_member_with_objects_per_model() {
    let dir = tempfile::tempdir().unwrap();
    let (deflated, models) = backup(dir.path(), "deflated");
    let (stored, _) = backup(dir.path(), "stored");
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "app-backup.zip", &deflated);
    put_at(&e, T0, "stored/app-backup.zip", &stored);
    e.ok_at(T2, &["seal"]);
    let j = drill_json(&e, 0);
    assert_eq!(j["result"], "ok", "{j}");
    assert_eq!(j["kinds"]["zip"], 2);
    for file in ["app-backup.zip", "stored/app-backup.zip"] {
        let c = content(&j, file);
        assert_eq!(c["verdict"], "verified", "{c}");
        let z = &c["zip"];
        assert_eq!(
            (z["members"].as_u64(), z["files"].as_u64(), z["directories"].as_u64()),
            (Some(7), Some(4), Some(3))
        );
        assert_eq!(z["models"], models, "{z}");
        assert_eq!(z["jsonl_objects"], 2743);
        assert_eq!(z["jsonl"][0]["member"], "backup.jsonl");
        assert_eq!(z["directories_top"]["uploadedfiles/"]["members"], 2);
        let list = z["member_list"].as_array().unwrap();
        let pdf = list.iter().find(|m| m["name"] == "uploadedfiles/report.pdf").unwrap();
        assert_eq!(pdf["size"], 200_009);
        assert_eq!(pdf["verified"], true);
        assert_eq!(pdf["method"], if file.starts_with("stored") { "stored" } else { "deflate" });
    }
    let text = e.ok_at(T2, &["drill"]);
    assert!(text.contains("reporting.finding") && text.contains("1500 objects"), "{text}");
    let status = e.ok_at(T2, &["status"]);
    assert!(status.contains("checked: 2 zip; 14 zip members, 5486 JSON objects"), "{status}");
}

#[test]
fn a_bad_crc_a_cut_trailing_garbage_and_application_encryption_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (stored, _) = backup(dir.path(), "stored");
    let (deflated, _) = backup(dir.path(), "deflated");
    // A flipped byte inside the stored PDF.
    let mut bad = stored.clone();
    let at = bad.windows(9).position(|w| w == b"%PDF-1.7 ").unwrap();
    bad[at + 1000] ^= 0x04;
    let enc_path = dir.path().join("backup-deflated.zip");
    python(MARK_ENCRYPTED, &[enc_path.to_str().unwrap()]);
    let encrypted = std::fs::read(&enc_path).unwrap();
    let mut garbage = deflated.clone();
    garbage.extend_from_slice(b"<html>502 Bad Gateway</html>");

    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "crc.zip", &bad);
    put_at(&e, T0, "cut.zip", &deflated[..deflated.len() * 2 / 3]);
    put_at(&e, T0, "garbage.zip", &garbage);
    e.ok_at(T2, &["seal"]);
    let j = drill_json(&e, 4);
    assert_eq!(j["result"], "failed");
    let errors = j["errors"].to_string();
    assert!(errors.contains("crc.zip: member \\\"uploadedfiles/report.pdf\\\": CRC-32 mismatch"), "{errors}");
    assert!(errors.contains("cut.zip: no end-of-central-directory record"), "{errors}");
    assert!(errors.contains("garbage.zip: 28 bytes of trailing garbage"), "{errors}");
    for f in ["crc.zip", "cut.zip", "garbage.zip"] {
        assert_eq!(content(&j, f)["verdict"], "failed");
    }

    // Encrypted by the application: not verifiable, never a success, and not called damaged.
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "encrypted.zip", &encrypted);
    e.ok_at(T2, &["seal"]);
    let j = drill_json(&e, 4);
    assert_eq!(j["result"], "not_verifiable", "{j}");
    assert_eq!(j["errors"].as_array().unwrap().len(), 0, "{j}");
    let c = content(&j, "encrypted.zip");
    assert_eq!(c["verdict"], "not_verifiable");
    assert!(c["reason"].as_str().unwrap().contains("encrypted"), "{c}");
    let text = String::from_utf8(e.cmd_at(Some(T2), &["drill"]).output().unwrap().stdout).unwrap();
    assert!(text.contains("result:          NOT VERIFIABLE"), "{text}");
    assert!(e.ok_at(T2, &["status"]).contains(": NOT VERIFIABLE"));
}

#[test]
fn a_zip64_archive_over_4_gib_streamed_into_the_vault_is_verified() {
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    let t = std::time::Instant::now();
    let mut py = Command::new(venv_bin("python")).arg("-c").arg(STREAM_ZIP64).stdout(Stdio::piped()).spawn().unwrap();
    let mut put = e.cmd_at(Some(T0), &["put", "big.zip"]);
    put.stdin(py.stdout.take().unwrap());
    let out = put.output().unwrap();
    assert!(py.wait().unwrap().success());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("zip64: generated and stored in {:.1} s", t.elapsed().as_secs_f64());
    e.ok_at(T2, &["seal"]);
    let t = std::time::Instant::now();
    let j = drill_json(&e, 0);
    eprintln!("zip64: drilled in {:.1} s", t.elapsed().as_secs_f64());
    let z = &content(&j, "big.zip")["zip"];
    assert_eq!(z["zip64"], true, "{z}");
    assert_eq!(z["members"], 3);
    let huge = z["member_list"].as_array().unwrap().iter().find(|m| m["name"] == "uploadedfiles/huge.bin").unwrap();
    assert_eq!(huge["size"], (4u64 * 1024 + 100) << 20);
    assert_eq!(huge["verified"], true);
    assert_eq!(z["models"]["auth.user"], 1);
    assert!(j["bytes_read"].as_u64().unwrap() >= (4u64 << 30));
}
