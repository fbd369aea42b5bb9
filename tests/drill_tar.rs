//! `vaultctl drill` of tar archives written by GNU tar in its default (GNU), POSIX pax and
//! ustar formats, plain and gzip: every header checksum, sizes and the end-of-archive blocks;
//! a flipped header byte, a cut and trailing garbage are named with their offset.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const T0: &str = "2026-11-20 10:00:00";
const T2: &str = "2026-11-20 12:00:00";

fn put_at(e: &Env, t: &str, name: &str, data: &[u8]) {
    let f = e.path(&format!("in-{}", name.replace('/', "_")));
    std::fs::write(&f, data).unwrap();
    e.ok_at(t, &["put", name, f.to_str().unwrap()]);
}

/// An upload tree: small and large files, a name over 100 bytes, a symlink, a hard link, an
/// empty directory. Returns the number of members `tar -tf` lists.
fn tree(root: &Path) {
    let up = root.join("uploads");
    std::fs::create_dir_all(up.join("empty")).unwrap();
    for i in 0..200 {
        std::fs::write(up.join(format!("report-{i:03}.txt")), format!("report {i}\n").repeat(i)).unwrap();
    }
    std::fs::write(up.join("big.bin"), data(3_000_000, 5)).unwrap();
    let deep = up.join("a-rather-long-directory-name-for-the-customer-uploads").join("and-another-level-below-it");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("a-file-whose-path-is-longer-than-one-hundred-bytes-in-total.txt"), "deep").unwrap();
    std::os::unix::fs::symlink("big.bin", up.join("latest.bin")).unwrap();
    std::fs::hard_link(up.join("report-001.txt"), up.join("hardlink.txt")).unwrap();
}

fn gnu_tar(root: &Path, out: &Path, args: &[&str]) -> Vec<u8> {
    run_ok(Command::new(require_tool("tar")).arg("-C").arg(root).args(args).arg("-f").arg(out).arg("uploads"));
    std::fs::read(out).unwrap()
}

fn listed(archive: &Path) -> u64 {
    let out = run_ok(Command::new("tar").arg("-tf").arg(archive));
    out.lines().count() as u64
}

fn content<'a>(j: &'a Value, file: &str) -> &'a Value {
    j["contents"].as_array().unwrap().iter().find(|c| c["file"] == file).unwrap_or_else(|| panic!("no {file} in {j}"))
}

#[test]
fn gnu_pax_ustar_and_gzip_tars_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    let mut expect = Vec::new();
    for (name, args, format) in [
        ("gnu.tar", vec!["-c"], "gnu"),
        ("pax.tar", vec!["--format=pax", "-c"], "pax"),
        ("ustar.tar", vec!["--format=ustar", "-c"], "ustar"),
        ("gnu.tar.gz", vec!["-cz"], "gnu"),
    ] {
        let p = dir.path().join(name);
        let bytes = gnu_tar(dir.path(), &p, &args);
        put_at(&e, T0, name, &bytes);
        expect.push((name, listed(&p), format));
    }
    e.ok_at(T2, &["seal"]);
    let o = e.cmd_at(Some(T2), &["drill", "--json"]).output().unwrap();
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["result"], "ok", "{j}");
    for (name, members, format) in expect {
        let c = content(&j, name);
        assert_eq!(c["kind"], "tar", "{c}");
        assert_eq!(c["verdict"], "verified", "{c}");
        assert_eq!(c["tar"]["members"], members, "{name}: {c}");
        assert_eq!(c["tar"]["format"], format, "{c}");
        assert_eq!(c["tar"]["symlinks"], 1);
        assert_eq!(c["tar"]["hardlinks"], 1);
        assert!(c["tar"]["data_bytes"].as_u64().unwrap() > 3_000_000);
    }
    assert_eq!(content(&j, "gnu.tar.gz")["compression"], "gzip");
    let status = e.ok_at(T2, &["status"]);
    assert!(status.contains("checked: 4 tar; "), "{status}");
}

#[test]
fn a_flipped_header_byte_a_cut_and_trailing_garbage_are_named() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let good = gnu_tar(dir.path(), &dir.path().join("a.tar"), &["-c"]);
    // The header of big.bin: its name is at the start of a 512-byte block.
    let at = (0..good.len()).step_by(512).find(|&i| good[i..].starts_with(b"uploads/big.bin\0")).unwrap();
    let mut flipped = good.clone();
    flipped[at + 20] ^= 0x01;
    // Cut inside big.bin's data.
    let cut = &good[..at + 512 + 1_000_000];
    let mut garbage = good.clone();
    garbage.extend_from_slice(b"garbage after the end");
    let e = Env::new();
    e.ok_at(T0, &["init", "--time-zone", "UTC"]);
    put_at(&e, T0, "flipped.tar", &flipped);
    put_at(&e, T0, "cut.tar", cut);
    put_at(&e, T0, "garbage.tar", &garbage);
    e.ok_at(T2, &["seal"]);
    let o = e.cmd_at(Some(T2), &["drill", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors: Vec<&str> = j["errors"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    let find = |f: &str| *errors.iter().find(|x| x.contains(f)).unwrap_or_else(|| panic!("{f}: {errors:?}"));
    let f = find("/flipped.tar");
    assert!(f.contains(&format!("offset {at}")) && f.contains("checksum mismatch"), "{f}");
    let c = find("/cut.tar");
    assert!(c.contains("cut short") && c.contains("uploads/big.bin"), "{c}");
    let g = find("/garbage.tar");
    assert!(g.contains("trailing garbage at offset"), "{g}");
}
