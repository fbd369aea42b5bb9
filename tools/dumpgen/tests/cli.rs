//! Black-box tests of the `dumpgen` binary: output targets, gzip wrapping, summaries.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output};

fn dumpgen(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dumpgen")).args(args).output().expect("run dumpgen");
    assert!(out.status.success(), "dumpgen {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dumpgen-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const BASE: [&str; 8] = ["--seed", "3", "--docs", "2000", "--day", "2", "--collections", "2"];

#[test]
fn stdout_file_and_gzip_carry_the_same_archive() {
    let dir = scratch("targets");
    let plain = dir.join("plain.archive");
    let gz = dir.join("archive.gz");
    let stdout = dumpgen(&BASE).stdout;
    dumpgen(&[&BASE[..], &["-o", plain.to_str().unwrap()]].concat());
    dumpgen(&[&BASE[..], &["--gzip", "yes", "-o", gz.to_str().unwrap()]].concat());
    let file = std::fs::read(&plain).unwrap();
    assert_eq!(stdout, file);
    assert_eq!(&file[..4], &[0x6d, 0xe2, 0x99, 0x81]);

    let compressed = std::fs::read(&gz).unwrap();
    // One gzip member, no file name, mtime 0, OS "unknown" (as Go's compress/gzip writes it).
    assert_eq!(&compressed[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut unzipped = Vec::new();
    flate2::read::MultiGzDecoder::new(&compressed[..]).read_to_end(&mut unzipped).unwrap();
    assert_eq!(unzipped, file);
    assert!(compressed.len() * 2 < file.len(), "the data should compress 2-4x");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn stats_and_summary_describe_the_archive() {
    let dir = scratch("summary");
    let summary = dir.join("s.json");
    let out = dumpgen(&[&BASE[..], &["--stats", "--summary", summary.to_str().unwrap()]].concat());
    let json = std::fs::read_to_string(&summary).unwrap();
    assert!(json.ends_with("}\n") && json.lines().count() == 1, "{json}");
    assert!(json.starts_with(&format!("{{\"day\":2,\"bytes\":{},\"collections\":[", out.stdout.len())), "{json}");
    assert!(json.contains("{\"ns\":\"appdb.coll0\",\"docs\":1002,"), "{json}");
    assert!(json.contains("{\"ns\":\"appdb.coll1\",\"docs\":"), "{json}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("appdb.coll0") && stderr.contains("crc 0x"), "{stderr}");
    // The CRC printed in the summary is the one in the stream's EOF header.
    let crc_hex = json.split("\"crc\":\"0x").nth(1).unwrap().split('"').next().unwrap();
    let crc = u64::from_str_radix(crc_hex, 16).unwrap() as i64;
    let needle = [&b"\x12CRC\x00"[..], &crc.to_le_bytes()].concat();
    assert!(out.stdout.windows(needle.len()).any(|w| w == needle));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_arguments_are_refused() {
    for bad in [
        &["--seed", "1", "--docs", "10", "--churn", "1.5"][..],
        &["--seed", "1", "--docs", "10", "--collections", "0"],
        &["--seed", "1", "--docs", "10", "--gzip", "maybe"],
        &["--docs", "10"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dumpgen")).args(bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(out.stdout.is_empty());
    }
}
