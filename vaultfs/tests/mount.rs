//! Real mounts through /dev/fuse. These tests fail (never skip) when FUSE is unusable: CI runs
//! them as root on a machine with /dev/fuse and fuse3 installed by scripts/install-deps.sh.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn vaultfs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vaultfs"))
}

struct Mount {
    _dir: tempfile::TempDir,
    vault: PathBuf,
    mnt: PathBuf,
    cache: PathBuf,
    pid: Option<u32>,
}

const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Waits out the last five minutes of a UTC day: a mount at the real date shows the current
/// day at its root, and a test that ran across midnight would find its files under the
/// previous day's directory instead (the mount's promise, not a failure).
fn away_from_midnight() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let left = 86_400 - now % 86_400;
    if left < 300 {
        std::thread::sleep(std::time::Duration::from_secs(left + 2));
    }
}

fn secret() -> vault::crypto::Secret {
    vault::crypto::Secret::raw_key_from_hex(KEY).unwrap()
}

impl Mount {
    fn new() -> Mount {
        assert!(Path::new("/dev/fuse").exists(), "these tests need /dev/fuse");
        away_from_midnight();
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("vault");
        let mnt = dir.path().join("mnt");
        let cache = dir.path().join("cache");
        fs::create_dir_all(&mnt).unwrap();
        let store = Arc::new(vault::store::local::LocalStore::new(&vault));
        let o = vault::repo::InitOptions { time_zone: "UTC".into(), ..Default::default() };
        vault::repo::Vault::init(store, &secret(), &o).unwrap();
        Mount { _dir: dir, vault, mnt, cache, pid: None }
    }

    /// `vaultfs mount` of this vault with `key`, at the date `faketime` gives (or now).
    fn mount_cmd(&self, faketime: Option<&str>, key: &str) -> Command {
        let mut c = match faketime {
            Some(t) => {
                let mut c = Command::new("faketime");
                c.arg("-f").arg(t).arg(vaultfs_bin());
                c
            }
            None => Command::new(vaultfs_bin()),
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("VAULT_") {
                c.env_remove(k);
            }
        }
        c.arg("mount").arg(&self.vault).arg(&self.mnt).arg("--cache-dir").arg(&self.cache);
        c.env("VAULT_KEY", key).env("TZ", "UTC").stdin(Stdio::null());
        c
    }

    fn mount_at(&mut self, faketime: Option<&str>) {
        let out = self
            .mount_cmd(faketime, KEY)
            .output()
            .expect("running vaultfs (is faketime installed for the dated tests?)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "vaultfs mount failed: {stdout} {} -- a FUSE mount must work here (fuse3 installed, /dev/fuse usable)",
            String::from_utf8_lossy(&out.stderr)
        );
        self.pid =
            stdout.split("daemon pid ").nth(1).and_then(|s| s.split(',').next()).and_then(|s| s.trim().parse().ok());
    }

    fn mount(&mut self) {
        self.mount_at(None)
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Unmounts and waits for the daemon to finish committing.
    fn unmount(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The daemon commits and checkpoints before it exits: a debug build on a busy machine
        // may take a while for tens of MiB.
        if let Some(pid) = self.pid.take() {
            assert!(exited_within_120_s(pid), "the daemon did not exit within 120 s of the unmount\n{}", self.log());
        }
    }

    fn kill9(&mut self) {
        let pid = self.pid.take().expect("daemon pid");
        Command::new("kill").arg("-9").arg(pid.to_string()).status().unwrap();
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Name of the first dated directory at the root.
    fn first_period(&self) -> String {
        fs::read_dir(&self.mnt)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("20"))
            .expect("a dated directory at the root")
    }

    /// Opens the vault in this process (in-memory index: the daemon may hold the cache).
    fn open(&self) -> vault::repo::Vault {
        let store = Arc::new(vault::store::local::LocalStore::new(&self.vault));
        vault::repo::Vault::open(store, &secret(), &vault::repo::OpenOptions::default()).unwrap()
    }

    /// The daemon's log (for failure messages).
    fn log(&self) -> String {
        let mut out = String::new();
        for e in fs::read_dir(&self.cache).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().ends_with(".log") {
                out.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    fn check(&self) -> vault::commands::check::CheckReport {
        vault::commands::check::check(&self.open(), true).unwrap()
    }
}

/// Waits up to 120 s for process `pid` to be gone (or a zombie); whether it is.
fn exited_within_120_s(pid: u32) -> bool {
    (0..2400).any(|_| {
        let gone = !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true);
        if !gone {
            std::thread::sleep(Duration::from_millis(50));
        }
        gone
    })
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.mnt).stderr(Stdio::null()).status();
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// A fast deterministic byte stream.
struct Gen(u64);
impl Gen {
    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let v = self.0.to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

fn sha(path: &Path) -> [u8; 32] {
    let mut f = File::open(path).unwrap();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    *h.finalize().as_bytes()
}

#[test]
fn streaming_write_and_read_back() {
    let mut m = Mount::new();
    m.mount();
    let size: u64 = std::env::var("VAULTFS_TEST_STREAM_MIB").ok().and_then(|s| s.parse().ok()).unwrap_or(2048) << 20;
    let mut g = Gen(7);
    let mut h = blake3::Hasher::new();
    {
        let mut f = File::create(m.p("today")).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            // Half the stream repeats itself, as dumps do, so dedup is exercised too.
            if (left >> 20).is_multiple_of(2) {
                g.fill(&mut buf);
            }
            f.write_all(&buf).unwrap();
            h.update(&buf);
            left -= buf.len() as u64;
        }
        f.sync_all().unwrap();
    }
    let want = *h.finalize().as_bytes();
    assert_eq!(fs::metadata(m.p("today")).unwrap().len(), size);
    assert_eq!(sha(&m.p("today")), want);
    let period = m.first_period();
    m.unmount();
    m.mount();
    assert_eq!(sha(&m.p(&format!("{period}/today"))), want);
    m.unmount();
    assert!(m.check().ok());
}

#[test]
fn random_writes_truncates_and_reads_match_a_reference() {
    let mut m = Mount::new();
    m.mount();
    let dir = tempfile::tempdir().unwrap();
    let refp = dir.path().join("ref");
    let a = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(m.p("db.bin")).unwrap();
    let mut b = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&refp).unwrap();
    let mut rng = Gen(99);
    let mut r = || {
        let mut x = [0u8; 8];
        rng.fill(&mut x);
        u64::from_le_bytes(x)
    };
    let mut size = 0u64;
    for step in 0..3000 {
        match r() % 10 {
            0..=4 => {
                let off = r() % (size + 200_000);
                let len = (r() % 70_000) as usize + 1;
                let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ step) as u8).collect();
                a.write_all_at(&data, off).unwrap();
                b.write_all_at(&data, off).unwrap();
                size = size.max(off + len as u64);
            }
            5 => {
                let s = r() % (size + 50_000);
                a.set_len(s).unwrap();
                b.set_len(s).unwrap();
                size = s;
            }
            6 => {
                a.sync_data().unwrap();
            }
            _ => {
                let off = r() % (size + 10);
                let len = (r() % 200_000) as usize;
                let mut x = vec![0u8; len];
                let mut y = vec![0u8; len];
                let n1 = read_full_at(&a, &mut x, off);
                let n2 = read_full_at(&b, &mut y, off);
                assert_eq!(n1, n2, "step {step}: read length at {off}");
                assert!(x[..n1] == y[..n2], "step {step}: bytes at {off}+{len} differ");
            }
        }
    }
    assert_eq!(a.metadata().unwrap().len(), b.metadata().unwrap().len());
    drop(a);
    b.seek(SeekFrom::Start(0)).unwrap();
    assert_eq!(sha(&m.p("db.bin")), sha(&refp));
    m.unmount();
    m.mount();
    assert_eq!(sha(&m.p("db.bin")), sha(&refp));
}

fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> usize {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read_at(&mut buf[n..], off + n as u64).unwrap();
        if k == 0 {
            break;
        }
        n += k;
    }
    n
}

#[test]
fn tar_of_thousands_of_small_files() {
    let mut m = Mount::new();
    m.mount();
    let src = tempfile::tempdir().unwrap();
    let mut g = Gen(5);
    for d in 0..20 {
        let dir = src.path().join(format!("uploads/{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let mut b = vec![0u8; 100 + (d * 100 + f) * 7 % 9000];
            g.fill(&mut b);
            fs::write(dir.join(format!("report-{f}.pdf")), &b).unwrap();
        }
    }
    std::os::unix::fs::symlink("00/report-1.pdf", src.path().join("uploads/latest.pdf")).unwrap();
    let tar = Command::new("sh")
        .arg("-c")
        .arg(format!("tar -C {} -cf - uploads | tar -C {} -xf -", src.path().display(), m.mnt.display()))
        .status()
        .unwrap();
    assert!(tar.success());
    let diff = Command::new("diff").arg("-r").arg(src.path().join("uploads")).arg(m.p("uploads")).output().unwrap();
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));
    m.unmount();
    m.mount();
    let diff = Command::new("diff").arg("-r").arg(src.path().join("uploads")).arg(m.p("uploads")).output().unwrap();
    assert!(diff.status.success(), "after remount: {}", String::from_utf8_lossy(&diff.stdout));
    assert_eq!(fs::read_link(m.p("uploads/latest.pdf")).unwrap(), Path::new("00/report-1.pdf"));
}

#[test]
fn two_concurrent_writers() {
    let mut m = Mount::new();
    m.mount();
    let paths = [m.p("a.dump"), m.p("b.dump")];
    let hashes: Vec<[u8; 32]> = std::thread::scope(|s| {
        let hs: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                s.spawn(move || {
                    let mut g = Gen(100 + i as u64);
                    let mut h = blake3::Hasher::new();
                    let mut f = File::create(p).unwrap();
                    let mut buf = vec![0u8; 256 << 10];
                    for _ in 0..200 {
                        g.fill(&mut buf);
                        f.write_all(&buf).unwrap();
                        h.update(&buf);
                    }
                    *h.finalize().as_bytes()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (p, h) in paths.iter().zip(&hashes) {
        assert_eq!(&sha(p), h);
    }
    m.unmount();
    m.mount();
    for (p, h) in paths.iter().zip(&hashes) {
        assert_eq!(&sha(p), h);
    }
}

#[test]
fn kill_9_mid_write_keeps_closed_files_and_never_shows_a_short_file() {
    let mut m = Mount::new();
    m.mount();
    let mut g = Gen(3);
    let mut done = vec![0u8; 3 << 20];
    g.fill(&mut done);
    fs::write(m.p("closed.dump"), &done).unwrap();
    // A writer in the middle of a dump when the daemon dies.
    let mut f = File::create(m.p("today")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..20 {
        g.fill(&mut buf);
        f.write_all(&buf).unwrap();
    }
    m.kill9();
    drop(f);
    m.mount();
    assert_eq!(fs::read(m.p("closed.dump")).unwrap(), done);
    let names: Vec<String> =
        fs::read_dir(&m.mnt).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(
        !names.contains(&"today".to_string()),
        "a file that was never closed must not appear under its name: {names:?}"
    );
    m.unmount();
    let r = m.check();
    assert!(r.ok(), "{:?}", r.errors);
}

#[test]
fn a_wrong_key_or_a_clock_behind_the_vault_exits_like_vaultctl_and_mounts_nothing() {
    let mut m = Mount::new();
    let o = m.mount_cmd(None, &"11".repeat(32)).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong"), "{o:?}");
    // A write in a later period than the clock of the next mount says.
    m.mount_at(Some("@2026-11-20 10:00:00"));
    fs::write(m.p("today"), b"x").unwrap();
    m.unmount();
    let o = m.mount_cmd(Some("@2026-11-18 10:00:00"), KEY).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to write into the past"), "{o:?}");
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(m.mnt.to_str().unwrap()), "nothing stays mounted");
}

#[test]
fn sigterm_and_sigint_commit_everything_and_unmount() {
    for sig in ["TERM", "INT"] {
        let mut m = Mount::new();
        m.mount();
        let mut data = vec![0u8; 3 << 20];
        Gen(5).fill(&mut data);
        fs::write(m.p("today"), &data).unwrap();
        let pid = m.pid.take().expect("daemon pid");
        Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
        assert!(exited_within_120_s(pid), "SIG{sig}: the daemon did not exit\n{}", m.log());
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            !mounts.lines().any(|l| l.split(' ').nth(1) == Some(m.mnt.to_str().unwrap())),
            "SIG{sig}: the mount point is still mounted\n{}",
            m.log()
        );
        let log = m.log();
        assert!(log.contains("committing and unmounting") && log.contains("unmounted"), "SIG{sig}: {log}");
        // Committed by the daemon itself: a reader finds the file without any journal replay.
        let mut out = Vec::new();
        vault::commands::browse::cat(&m.open(), "current/today", &mut out)
            .unwrap_or_else(|e| panic!("SIG{sig}: the file was not committed: {e}\n{log}"));
        assert!(out == data, "SIG{sig}: committed content differs");
    }
}

#[test]
fn tampered_pack_gives_eio_and_a_log_line() {
    let mut m = Mount::new();
    m.mount();
    let mut data = vec![0u8; 2 << 20];
    Gen(11).fill(&mut data);
    fs::write(m.p("x.bin"), &data).unwrap();
    m.unmount();
    // Damage every data pack a little (metadata packs are small: leave the largest ones).
    let mut packs: Vec<(PathBuf, u64)> = Vec::new();
    for d in fs::read_dir(m.vault.join("packs")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap();
            packs.push((f.path(), f.metadata().unwrap().len()));
        }
    }
    packs.sort_by_key(|(_, s)| std::cmp::Reverse(*s));
    let (victim, _) = &packs[0];
    let mut b = fs::read(victim).unwrap();
    b[5000] ^= 0x40;
    fs::write(victim, &b).unwrap();
    m.mount();
    let period = m.first_period();
    let mut f = File::open(m.p(&format!("{period}/x.bin"))).unwrap();
    let mut out = Vec::new();
    let err = f.read_to_end(&mut out).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_eio()), "{err}");
    assert!(data.starts_with(&out), "bytes before the damage must be right");
    drop(f);
    m.unmount();
    let log =
        fs::read_dir(&m.cache).unwrap().flatten().find(|e| e.file_name().to_string_lossy().ends_with(".log")).unwrap();
    let text = fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("authentication failed"), "{text}");
    // The line names the file.
    assert!(
        text.lines().any(|l| l.contains("authentication failed") && l.contains(&format!("{period}/x.bin"))),
        "{text}"
    );
}

fn libc_eio() -> i32 {
    5
}

#[test]
fn periods_roll_over_while_mounted_and_sealed_ones_are_read_only() {
    let mut m = Mount::new();
    // The daemon's clock starts 6 s before midnight and runs at normal speed.
    m.mount_at(Some("@2026-11-20 23:59:54"));
    fs::write(m.p("today"), b"day one").unwrap();
    let mut open_across = File::create(m.p("long.dump")).unwrap();
    open_across.write_all(b"begun on day one, ").unwrap();
    std::thread::sleep(Duration::from_secs(8));
    // New period: the root is empty again, day one is in its dated directory.
    let names: Vec<String> =
        fs::read_dir(&m.mnt).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"2026-11-20".to_string()) && names.contains(&"2026-11-21".to_string()), "{names:?}");
    assert!(!names.contains(&"today".to_string()), "{names:?}");
    assert_eq!(fs::read(m.p("2026-11-20/today")).unwrap(), b"day one");
    fs::write(m.p("today"), b"day two").unwrap();
    // A file open across midnight stays in the period where it was created.
    open_across.write_all(b"finished on day two").unwrap();
    drop(open_across);
    assert_eq!(fs::read(m.p("2026-11-20/long.dump")).unwrap(), b"begun on day one, finished on day two");
    // Day one is now sealed: every modifying call fails with EROFS.
    let erofs = Some(30);
    assert_eq!(fs::write(m.p("2026-11-20/today"), b"x").unwrap_err().raw_os_error(), erofs);
    assert_eq!(fs::remove_file(m.p("2026-11-20/today")).unwrap_err().raw_os_error(), erofs);
    assert_eq!(fs::create_dir(m.p("2026-11-20/new")).unwrap_err().raw_os_error(), erofs);
    assert_eq!(File::create(m.p("2026-11-20/new.txt")).unwrap_err().raw_os_error(), erofs);
    // The seal follows the kernel's release of the last descriptor, just after close().
    let sealed = (0..600).any(|_| {
        let there = fs::read_link(m.p("latest")).is_ok();
        if !there {
            std::thread::sleep(Duration::from_millis(50));
        }
        there
    });
    assert!(sealed, "day one was not sealed within 30 s of its last close\n{}", m.log());
    assert_eq!(fs::read_link(m.p("latest")).unwrap(), Path::new("2026-11-20"));
    assert_eq!(fs::read(m.p("latest/today")).unwrap(), b"day one");
    m.unmount();
    let v = m.open();
    let snaps = v.snapshots().unwrap();
    assert!(snaps.iter().any(|s| s.snap.period == "2026-11-20" && s.snap.sealed));
    assert!(snaps.iter().any(|s| s.snap.period == "2026-11-21" && !s.snap.sealed));
}

#[test]
fn refuses_overlapping_mountpoints_and_cleans_stale_mounts() {
    let mut m = Mount::new();
    let inside = m.vault.join("mnt");
    fs::create_dir_all(&inside).unwrap();
    let out = Command::new(vaultfs_bin())
        .arg("mount")
        .arg(&m.vault)
        .arg(&inside)
        .arg("--cache-dir")
        .arg(&m.cache)
        .env("VAULT_KEY", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlap"));
    fs::remove_dir(&inside).unwrap();
    // A killed daemon leaves a stale mount; the next mount cleans it.
    m.mount();
    fs::write(m.p("f"), b"kept").unwrap();
    m.kill9();
    m.mount();
    assert_eq!(fs::read(m.p("f")).unwrap(), b"kept");
}

fn vaultctl_bin() -> PathBuf {
    let p = vaultfs_bin().with_file_name("vaultctl");
    assert!(p.exists(), "{} is not built (run the workspace's tests: cargo test --workspace)", p.display());
    p
}

impl Mount {
    fn vaultctl(&self, faketime: Option<&str>, args: &[&str]) -> String {
        let mut c = match faketime {
            Some(t) => {
                let mut c = Command::new("faketime");
                c.arg(t).arg(vaultctl_bin());
                c
            }
            None => Command::new(vaultctl_bin()),
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("VAULT_") {
                c.env_remove(k);
            }
        }
        let out = c
            .args(args)
            .env("VAULT_REPO", &self.vault)
            .env("VAULT_KEY", KEY)
            .env("VAULT_CACHE_DIR", self._dir.path().join("cache-ctl"))
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vaultctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Writes `mib` MiB of a seeded stream to `path` in 1 MiB writes, pausing between them;
/// returns the hash of what was written.
fn slow_write(path: &Path, seed: u64, mib: usize, pause: Duration) -> [u8; 32] {
    let mut g = Gen(seed);
    let mut h = blake3::Hasher::new();
    let mut f = File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        g.fill(&mut buf);
        f.write_all(&buf).unwrap();
        h.update(&buf);
        std::thread::sleep(pause);
    }
    drop(f);
    *h.finalize().as_bytes()
}

#[test]
fn prune_while_the_mount_is_writing_loses_nothing() {
    let mut m = Mount::new();
    // A week of history before the mount: days of their own data.
    let input = m._dir.path().join("input");
    for d in 1..=6u64 {
        let mut b = vec![0u8; 3 << 20];
        Gen(100 + d).fill(&mut b);
        fs::write(&input, &b).unwrap();
        m.vaultctl(Some(&format!("2026-11-{d:02} 12:00:00")), &["put", "today", input.to_str().unwrap()]);
    }
    m.mount();
    let before = m.open().snapshots().unwrap().len();
    assert_eq!(before, 6);

    // Two writers, one starting while the first prune waits and runs.
    let p1 = m.p("dump-1");
    let p2 = m.p("dump-2");
    let w1 = std::thread::spawn(move || slow_write(&p1, 1, 48, Duration::from_millis(20)));
    std::thread::sleep(Duration::from_millis(300));
    let prune_vault = m.open();
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = started.clone();
    let pruner = std::thread::spawn(move || {
        let o = vault::commands::prune::Options {
            policy: vault::format::policy::Policy { last: 1, ..Default::default() },
            max_unused: 0.25,
        };
        let progress = |_: &str| flag.store(true, std::sync::atomic::Ordering::SeqCst);
        vault::commands::prune::prune(&prune_vault, &o, Duration::from_secs(120), &progress).unwrap()
    });
    // The second writer starts while the prune holds the lock: its writes wait, then go on.
    while !started.load(std::sync::atomic::Ordering::SeqCst) && !pruner.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let w2 = {
        let p2 = p2.clone();
        std::thread::spawn(move || slow_write(&p2, 2, 24, Duration::from_millis(30)))
    };
    let h1 = w1.join().unwrap();
    let report = pruner.join().unwrap();
    let h2 = w2.join().unwrap();
    assert!(report.forgotten >= 4, "forgot {}", report.forgotten);

    // A second prune while nothing writes, then everything is read back.
    let r2 = vault::commands::prune::prune(
        &m.open(),
        &vault::commands::prune::Options {
            policy: vault::format::policy::Policy { last: 1, ..Default::default() },
            max_unused: 0.0,
        },
        Duration::from_secs(60),
        &|_| {},
    )
    .unwrap();
    assert_eq!(r2.forgotten, 0);
    assert_eq!(sha(&m.p("dump-1")), h1);
    assert_eq!(sha(&m.p("dump-2")), h2);
    // The forgotten days are gone from the mount too.
    let names: Vec<String> =
        fs::read_dir(&m.mnt).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.starts_with("2026-11-0") && n.as_str() < "2026-11-05"), "{names:?}");
    m.unmount();
    let c = m.check();
    assert!(c.ok(), "{:?}", c.errors);
    m.mount();
    assert_eq!(sha(&m.p("dump-1")), h1);
    assert_eq!(sha(&m.p("dump-2")), h2);
    m.unmount();
}

#[test]
fn vaultctl_put_works_while_mounted_and_the_mount_keeps_it() {
    let mut m = Mount::new();
    m.mount();
    fs::write(m.p("from-mount-1"), b"one").unwrap();
    let input = m._dir.path().join("input");
    fs::write(&input, b"from vaultctl").unwrap();
    // The mount holds the writer lock only while something is uncommitted.
    m.vaultctl(None, &["put", "from-put", input.to_str().unwrap()]);
    // The mount shows it once the root is listed, and its own next commit keeps it.
    let names: Vec<String> =
        fs::read_dir(&m.mnt).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"from-put".to_string()), "{names:?}");
    fs::write(m.p("from-mount-2"), b"two").unwrap();
    assert_eq!(fs::read(m.p("from-put")).unwrap(), b"from vaultctl");
    m.unmount();
    let ls = m.vaultctl(None, &["ls", "current"]);
    for n in ["from-mount-1", "from-put", "from-mount-2"] {
        assert!(ls.contains(n), "{n} missing: {ls}");
    }
    // A second writable mount of the same vault is refused.
    m.mount();
    let other = m._dir.path().join("mnt2");
    fs::create_dir_all(&other).unwrap();
    let out = Command::new(vaultfs_bin())
        .arg("mount")
        .arg(&m.vault)
        .arg(&other)
        .arg("--cache-dir")
        .arg(m._dir.path().join("cache2"))
        .env("VAULT_KEY", KEY)
        .env_remove("VAULT_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already mounted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.unmount();
}

#[test]
fn a_failed_job_writing_into_the_mount_is_marked_failed() {
    let mut m = Mount::new();
    m.mount();
    fs::write(m.p("before"), b"written before the job").unwrap();
    let job = format!("printf 'half a dump' > {}/today && exit 3", m.mnt.display());
    let out = Command::new(vaultctl_bin())
        .args(["run", "--lock-wait", "60", "--", "sh", "-c", &job])
        .env("VAULT_REPO", &m.vault)
        .env("VAULT_KEY", KEY)
        .env("VAULT_CACHE_DIR", m._dir.path().join("cache-ctl"))
        .env_remove("VAULT_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    // The mark is in the vault at once, and the mount's next commit keeps it.
    let ls = m.vaultctl(None, &["ls", "current"]);
    let line = |n: &str| ls.lines().find(|l| l.contains(n)).unwrap_or_default().to_string();
    assert!(line("today").contains("[failed]"), "{ls}");
    assert!(!line("before").contains("[failed]"), "{ls}");
    fs::write(m.p("after"), b"a later write").unwrap();
    m.unmount();
    let ls = m.vaultctl(None, &["ls", "current"]);
    assert!(ls.lines().any(|l| l.contains("today") && l.contains("[failed]")), "{ls}");
    assert!(ls.contains("after"), "{ls}");
}

#[test]
fn an_offsite_copy_mounts_read_only_and_reads_back() {
    let mut m = Mount::new();
    let input = m._dir.path().join("input");
    let mut b = vec![0u8; 5 << 20];
    Gen(77).fill(&mut b);
    fs::write(&input, &b).unwrap();
    m.vaultctl(None, &["put", "today", input.to_str().unwrap()]);
    let copy = m._dir.path().join("copy");
    m.vaultctl(None, &["remote", "add", "usb", &format!("file://{}", copy.display())]);
    m.vaultctl(None, &["sync", "usb"]);
    // Mount the copy (a sync target: read-only without asking) and read it back.
    m.vault = copy;
    m.mount();
    let period = m.first_period();
    assert_eq!(fs::read(m.p(&format!("{period}/today"))).unwrap(), b);
    let err = fs::write(m.p(&format!("{period}/new")), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()), "{err}");
    m.unmount();
}

fn libc_erofs() -> i32 {
    30
}

/// Writes a file and closes it, reporting an error of `close()` (which `fs::write` ignores):
/// only a successful close promises the content is stored.
fn write_closed(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    close(f)
}

/// [`write_closed`] the way `dd of=` and a shell redirection write: the descriptor is moved
/// (dup) and the first one closed before the first byte, which commits the file empty.
fn write_moved_closed(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let first = File::create(path)?;
    let mut f = first.try_clone()?;
    close(first)?;
    f.write_all(data)?;
    close(f)
}

/// Closes `f`, returning the error of `close()` that dropping a `File` ignores.
fn close(f: File) -> std::io::Result<()> {
    use std::os::unix::io::IntoRawFd;
    let fd = f.into_raw_fd();
    // SAFETY: closes a descriptor we own (taken out of the File).
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The dump of round `round`: 256 blocks of 1 MiB (deterministic).
fn dump_blocks(round: u64) -> impl Iterator<Item = Vec<u8>> {
    let mut g = Gen(round + 77);
    (0..256).map(move |_| {
        let mut b = vec![0u8; 1 << 20];
        g.fill(&mut b);
        b
    })
}

/// The content of small file `i` of round `round` (1 byte to 64 KiB, deterministic).
fn small_content(round: u64, i: u64) -> Vec<u8> {
    let mut g = Gen((round << 32 | i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut len = [0u8; 8];
    g.fill(&mut len);
    let mut b = vec![0u8; 1 + (u64::from_le_bytes(len) % (64 << 10)) as usize];
    g.fill(&mut b);
    b
}

/// Every regular file below `dir`, relative paths.
fn walk_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let r = rel.join(e.file_name());
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk_files(&p, &r, out);
        } else if t.is_file() {
            out.push(r);
        }
    }
}

#[test]
fn kill_9_at_random_moments_while_a_tree_and_a_dump_are_written() {
    // Each round: a tree of small files (each closed before the next) and a big dump stream
    // at once, the daemon killed at a random moment. After the next mount every file whose
    // close returned reads back bit-exact, nothing shows under its name with other content,
    // and check --read-data is clean.
    let mut m = Mount::new();
    let mut closed: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut dumps: Vec<(String, [u8; 32])> = Vec::new();
    let mut rng = Gen(0x5eed);
    for round in 0..3u64 {
        m.mount();
        let mnt = m.mnt.clone();
        let tree = std::thread::spawn(move || {
            let mut ok = Vec::new();
            for i in 0..100_000u64 {
                let dir = mnt.join(format!("r{round}/d{:02}", i % 20));
                if fs::create_dir_all(&dir).is_err() {
                    break;
                }
                let rel = PathBuf::from(format!("r{round}/d{:02}/f{i:06}", i % 20));
                let data = small_content(round, i);
                // Once close() returned, the file is durable.
                if write_closed(&mnt.join(&rel), &data).is_err() {
                    break;
                }
                ok.push((rel, data));
            }
            ok
        });
        let mnt = m.mnt.clone();
        let dump = std::thread::spawn(move || {
            let name = format!("dump{round}");
            let mut f = File::create(mnt.join(&name)).ok()?;
            let mut h = blake3::Hasher::new();
            for buf in dump_blocks(round) {
                f.write_all(&buf).ok()?;
                h.update(&buf);
            }
            f.sync_all().ok()?;
            // Only a close that returned makes the dump complete (an fsync records it as
            // still being written).
            close(f).ok()?;
            Some((name, *h.finalize().as_bytes()))
        });
        let mut r = [0u8; 8];
        rng.fill(&mut r);
        std::thread::sleep(Duration::from_millis(400 + u64::from_le_bytes(r) % 2500));
        m.kill9();
        let files = tree.join().unwrap();
        assert!(!files.is_empty(), "round {round}: nothing was written before the kill");
        closed.extend(files);
        let d = dump.join().unwrap();
        let _ = Command::new("fusermount3").arg("-uz").arg(&m.mnt).stderr(Stdio::null()).status();
        m.mount();
        if let Some(d) = d {
            dumps.push(d);
        }
        for (rel, data) in &closed {
            let got = fs::read(m.p(rel.to_str().unwrap()))
                .unwrap_or_else(|e| panic!("round {round}: {rel:?}: {e}\n{}", m.log()));
            assert!(got == *data, "round {round}: {rel:?} differs after the kill");
        }
        for (name, h) in &dumps {
            assert!(m.p(name).exists(), "round {round}: {name}, closed before the kill, is missing\n{}", m.log());
            assert_eq!(&sha(&m.p(name)), h, "round {round}: {name}");
        }
        // Whatever else is there under a real name is complete: files of the tree have known
        // content, a dump cut short shows only as NAME.incomplete.
        let mut present = Vec::new();
        walk_files(&m.mnt.join(format!("r{round}")), Path::new(&format!("r{round}")), &mut present);
        for rel in present {
            let name = rel.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".incomplete") {
                continue;
            }
            let i: u64 = name.trim_start_matches('f').parse().unwrap();
            assert!(
                fs::read(m.mnt.join(&rel)).unwrap() == small_content(round, i),
                "round {round}: {rel:?} is partial"
            );
        }
        // A dump whose close was cut by the kill after it committed shows complete; one cut
        // short never shows under its name.
        let dump_name = format!("dump{round}");
        if m.p(&dump_name).exists() && !dumps.iter().any(|d| d.0 == dump_name) {
            let mut h = blake3::Hasher::new();
            for buf in dump_blocks(round) {
                h.update(&buf);
            }
            assert_eq!(
                sha(&m.p(&dump_name)),
                *h.finalize().as_bytes(),
                "round {round}: a dump cut short shows under its name"
            );
        }
        m.unmount();
        let c = m.check();
        assert!(c.ok(), "round {round}: {:?}", c.errors);
    }
}

#[test]
fn a_child_closing_its_copy_after_the_writers_close_does_not_undo_it() {
    // A job starts a program while its dump is open: the child gets a copy of the descriptor
    // and closes it later (here: after the writer's own close). The kernel sends that close
    // to the mount as a flush from the child. Killed before the last release, the dump must
    // still be complete under its name.
    use std::os::unix::io::AsRawFd;
    let mut m = Mount::new();
    m.mount();
    let mut data = vec![0u8; 3 << 20];
    Gen(5).fill(&mut data);
    let mut f = File::create(m.p("dump")).unwrap();
    f.write_all(&data).unwrap();
    let fd = f.as_raw_fd();
    let (mut go, mut done) = ([0i32; 2], [0i32; 2]);
    // SAFETY: plain pipe creation into arrays of two descriptors.
    assert!(unsafe { libc::pipe(go.as_mut_ptr()) == 0 && libc::pipe(done.as_mut_ptr()) == 0 });
    // SAFETY: the child only calls async-signal-safe functions (read, dup, close, write,
    // pause, _exit) before it is killed.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        unsafe {
            // Other tests' descriptors are not this child's business: let go of them at once
            // (holding them would keep their mounts busy).
            for other in 3..4096 {
                if other != fd && other != go[0] && other != done[1] {
                    libc::close(other);
                }
            }
            let mut b = [0u8; 1];
            libc::read(go[0], b.as_mut_ptr().cast(), 1);
            // Keep the file referenced, close one copy: a flush from this process.
            let keep = libc::dup(fd);
            let r = libc::close(fd);
            b[0] = if keep >= 0 && r == 0 { 1 } else { 0 };
            libc::write(done[1], b.as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
    }
    // The writer closes first: complete.
    close(f).unwrap();
    let mut b = [0u8; 1];
    // SAFETY: one-byte reads and writes on the pipes made above.
    unsafe {
        libc::write(go[1], b.as_ptr().cast(), 1);
        assert_eq!(libc::read(done[0], b.as_mut_ptr().cast(), 1), 1);
    }
    assert_eq!(b[0], 1, "the child could not close its copy");
    m.kill9();
    // SAFETY: ends the child made above and reaps it.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    let _ = Command::new("fusermount3").arg("-uz").arg(&m.mnt).stderr(Stdio::null()).status();
    m.mount();
    assert!(!m.p("dump.incomplete").exists(), "the child's close undid the writer's\n{}", m.log());
    assert!(fs::read(m.p("dump")).unwrap() == data, "dump differs");
    m.unmount();
}

#[test]
fn disk_full_during_a_tree_copy_keeps_earlier_files_and_the_mount_usable() {
    // A vault on a small tmpfs: the writer gets ENOSPC, every file closed before stays
    // readable, the failed one is not shown, and once space is freed the mount works again.
    let mut m = Mount::new();
    let small = m._dir.path().join("small");
    fs::create_dir_all(&small).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(&small).status().unwrap();
    assert!(st.success(), "mounting a tmpfs needs root (CI runs as root)");
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _small = Umount(small.clone());
    m.vault = small.join("vault");
    let store = Arc::new(vault::store::local::LocalStore::new(&m.vault));
    vault::repo::Vault::init(
        store,
        &secret(),
        &vault::repo::InitOptions { time_zone: "UTC".into(), ..Default::default() },
    )
    .unwrap();
    let filler = small.join("filler");
    fs::write(&filler, vec![7u8; 20 << 20]).unwrap();
    m.mount();
    let mut g = Gen(3);
    let mut a = vec![0u8; 5 << 20];
    g.fill(&mut a);
    write_closed(&m.p("a"), &a).unwrap();
    // A tree of 1 MiB files until the disk is full.
    fs::create_dir(m.p("tree")).unwrap();
    let mut ok = Vec::new();
    let mut err = None;
    for i in 0..200 {
        let mut d = vec![0u8; 1 << 20];
        g.fill(&mut d);
        let name = format!("tree/f{i:03}");
        match write_moved_closed(&m.p(&name), &d) {
            Ok(()) => ok.push((name, d)),
            Err(e) => {
                err = Some((name, e));
                break;
            }
        }
    }
    let (failed, e) = err.unwrap_or_else(|| {
        let df = Command::new("df").arg(&small).output().unwrap();
        panic!("the disk never filled up: {}\n{}", String::from_utf8_lossy(&df.stdout), m.log())
    });
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{failed}: {e}");
    // Dropped at its last release (the kernel may show the name for its 1 s entry timeout).
    let gone = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !m.p(&failed).exists()
    });
    assert!(gone, "{failed}: a file whose write failed is shown\n{}", m.log());
    assert_eq!(fs::read(m.p("a")).unwrap(), a);
    for (n, d) in &ok {
        assert!(fs::read(m.p(n)).unwrap() == *d, "{n}");
    }
    // Space freed: the mount goes on. A checkpoint writes the journaled files into packs
    // before it deletes the journal, so it needs about the journal's size free: removing the
    // filler alone is not always enough (how much the journal holds at the moment the disk
    // fills depends on the timing of the background checkpoints), so the disk grows too.
    fs::remove_file(&filler).unwrap();
    let st = Command::new("mount").args(["-o", "remount,size=256m"]).arg(&small).status().unwrap();
    assert!(st.success());
    let mut c = vec![0u8; 3 << 20];
    g.fill(&mut c);
    // Writes work again once the background commit (retried every 5 s) has moved the
    // journal into packs.
    let mut tries = 0;
    while let Err(e) = write_closed(&m.p("c"), &c) {
        tries += 1;
        assert!(tries < 40, "still failing 20 s after space was freed: {e}\n{}", m.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    m.unmount();
    let r = m.check();
    assert!(
        r.ok() && r.warnings.iter().all(|w| !w.contains("journal")),
        "{:?} {:?}\n{}",
        r.errors,
        r.warnings,
        m.log()
    );
    m.mount();
    assert_eq!(fs::read(m.p("a")).unwrap(), a);
    assert_eq!(fs::read(m.p("c")).unwrap(), c);
    for (n, d) in &ok {
        assert!(fs::read(m.p(n)).unwrap() == *d, "{n} after remount");
    }
    assert!(!m.p(&failed).exists());
    m.unmount();
}

#[test]
fn a_reader_of_a_sealed_snapshot_keeps_reading_during_a_prune_and_a_big_write() {
    let mut m = Mount::new();
    // A sealed day holding 64 MiB.
    let mut old = vec![0u8; 64 << 20];
    Gen(9).fill(&mut old);
    let src = m._dir.path().join("old");
    fs::write(&src, &old).unwrap();
    let put = |t: &str, args: &[&str]| {
        let out = Command::new("faketime")
            .arg("-f")
            .arg(t)
            .arg(vaultctl_bin())
            .args(args)
            .env("VAULT_REPO", &m.vault)
            .env("VAULT_KEY", KEY)
            .env("VAULT_CACHE_DIR", m._dir.path().join("cache-ctl"))
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    put("2026-01-01 10:00:00", &["put", "old", src.to_str().unwrap()]);
    put("2026-01-01 11:00:00", &["seal"]);
    m.mount();
    let want = sha(&src);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (p, stop) = (m.p("2026-01-01/old"), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || n == 0 {
                assert_eq!(sha(&p), want, "read {n} of the sealed file");
                n += 1;
            }
            n
        })
    };
    let prune = {
        let (vault, cache) = (m.vault.clone(), m._dir.path().join("cache-prune"));
        std::thread::spawn(move || {
            Command::new(vaultctl_bin())
                .args(["prune", "--keep-daily", "30", "--lock-wait", "120"])
                .env("VAULT_REPO", &vault)
                .env("VAULT_KEY", KEY)
                .env("VAULT_CACHE_DIR", cache)
                .output()
                .unwrap()
        })
    };
    let mut f = File::create(m.p("big")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut g = Gen(10);
    let mut h = blake3::Hasher::new();
    for _ in 0..1024 {
        g.fill(&mut buf);
        f.write_all(&buf).unwrap();
        h.update(&buf);
    }
    drop(f);
    let out = prune.join().unwrap();
    assert!(out.status.success(), "prune: {}", String::from_utf8_lossy(&out.stderr));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(sha(&m.p("big")), *h.finalize().as_bytes());
    m.unmount();
    assert!(m.check().ok());
}

#[test]
fn a_vault_of_the_first_format_mounts_reads_and_takes_new_files() {
    // tests/fixtures/vault-v1 (see vault-v1.md): version 1 revisions and trees.
    const OLD_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let mut m = Mount::new();
    fs::remove_dir_all(&m.vault).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vault-v1");
    assert!(Command::new("cp").arg("-r").arg(&src).arg(&m.vault).status().unwrap().success());
    let out = Command::new("faketime")
        .arg("-f")
        .arg("2026-11-22 13:00:00")
        .arg(vaultfs_bin())
        .arg("mount")
        .arg(&m.vault)
        .arg(&m.mnt)
        .arg("--cache-dir")
        .arg(&m.cache)
        .env("VAULT_KEY", OLD_KEY)
        .env_remove("VAULT_PASSPHRASE")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    m.pid = String::from_utf8_lossy(&out.stdout)
        .split("daemon pid ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok());
    let notes = fs::read(m.p("2026-11-20/docs/notes.txt")).unwrap();
    assert_eq!(notes, b"a small file kept in every period\n");
    assert_eq!(fs::read(m.p("today")).unwrap().len(), 96 * 1024 + 17);
    assert_eq!(fs::read_link(m.p("latest")).unwrap(), Path::new("2026-11-21"));
    fs::write(m.p("docs/new.txt"), b"written into an old vault").unwrap();
    m.unmount();
    let store = Arc::new(vault::store::local::LocalStore::new(&m.vault));
    let v = vault::repo::Vault::open(
        store,
        &vault::crypto::Secret::raw_key_from_hex(OLD_KEY).unwrap(),
        &vault::repo::OpenOptions::default(),
    )
    .unwrap();
    assert!(vault::commands::check::check(&v, true).unwrap().ok());
    let info = v.resolve("2026-11-22").unwrap();
    let n = v.lookup(info.snap.root, &[b"docs".to_vec(), b"new.txt".to_vec()]).unwrap();
    let mut got = Vec::new();
    v.file_reader(&n).unwrap().copy_to(&mut got).unwrap();
    assert_eq!(got, b"written into an old vault");
}

/// Dump-like JSON lines, 1 % of them changed on day 1 (in runs of 100).
fn json_dump(n: u64, day: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
        x ^= x >> 29;
        let v = if i % 10_000 < 100 * day { day } else { 0 };
        out.extend_from_slice(
            format!("{{\"_id\":{i},\"user\":\"u{:06}\",\"n\":{},\"v\":{v}}}\n", x % 1_000_000, x >> 45).as_bytes(),
        );
    }
    out
}

#[test]
fn a_gzipped_dump_written_through_the_mount_is_stored_expanded_and_reads_at_any_offset() {
    let mut m = Mount::new();
    m.mount();
    let src = m._dir.path().join("dump.json");
    let mut days = Vec::new();
    for day in 0..2 {
        fs::write(&src, json_dump(1_500_000, day)).unwrap();
        // A shell redirect into the mount, as a cron job writes it (O_TRUNC on day 1).
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -6 -nc {} > {}", src.display(), m.p("dump.gz").display()))
            .status()
            .unwrap();
        assert!(st.success());
        let gz = Command::new("gzip").arg("-6").arg("-nc").arg(&src).output().unwrap().stdout;
        assert!(gz.len() > 16 << 20, "{}", gz.len());
        assert_eq!(sha(&m.p("dump.gz")), *blake3::hash(&gz).as_bytes(), "day {day}");
        // Reads at offsets out of order, through one descriptor.
        let f = File::open(m.p("dump.gz")).unwrap();
        for k in [9u64, 2, 7, 0, 5, 11, 3] {
            let off = k * gz.len() as u64 / 12;
            let mut buf = vec![0u8; 300_000];
            let n = read_full_at(&f, &mut buf, off);
            assert!(buf[..n] == gz[off as usize..(off as usize + 300_000).min(gz.len())], "day {day}: read at {off}");
        }
        days.push(gz);
    }
    m.unmount();
    let stats = m.vaultctl(None, &["stats"]);
    assert!(stats.contains("expanded files:     1"), "{stats}");
    m.mount();
    assert_eq!(sha(&m.p("dump.gz")), *blake3::hash(&days[1]).as_bytes());
    m.unmount();
    assert!(m.check().ok());
}

/// Zip writers seek back to fill in each member's local header once its data is written;
/// pg_dump -Fc does the same with its table of contents (tests/pg.rs). Such rewrites of bytes
/// the expansion copies keep the file expanded, and the bytes come back exact.
#[test]
fn zip_files_written_with_seeks_by_python_and_info_zip_are_stored_expanded_and_exact() {
    let mut m = Mount::new();
    m.mount();
    let src = m._dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for day in 0..2 {
        fs::write(src.join(format!("day{day}.json")), json_dump(900_000, day)).unwrap();
    }
    // Python's zipfile, once into the mount and once into a plain directory.
    let script = "import sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED, compresslevel=6) as z:\n\
        \x20   for name in sys.argv[2:]:\n\
        \x20       info = zipfile.ZipInfo(name.rsplit('/', 1)[-1], date_time=(2026, 12, 1, 2, 0, 0))\n\
        \x20       info.compress_type = zipfile.ZIP_DEFLATED\n\
        \x20       with open(name, 'rb') as f, z.open(info, 'w') as out:\n\
        \x20           while b := f.read(1 << 20):\n\
        \x20               out.write(b)\n";
    let inputs = [src.join("day0.json"), src.join("day1.json")];
    let plain = m._dir.path().join("plain");
    fs::create_dir_all(&plain).unwrap();
    for out in [m.p("export.zip"), plain.join("export.zip")] {
        let st = Command::new("python3").arg("-c").arg(script).arg(&out).args(&inputs).status().unwrap();
        assert!(st.success(), "python3 zipfile into {}", out.display());
    }
    // Info-ZIP zip (writes a temporary file next to the archive, then renames it).
    for dir in [m.mnt.clone(), plain.clone()] {
        let st = Command::new("zip")
            .args(["-q", "-6", "-X", "-j"])
            .arg(dir.join("infozip.zip"))
            .args(&inputs)
            .status()
            .unwrap();
        assert!(st.success(), "zip into {}", dir.display());
    }
    for name in ["export.zip", "infozip.zip"] {
        let want = fs::read(plain.join(name)).unwrap();
        assert!(
            want.len() > 12 << 20,
            "{name}: {} bytes (the test wants zips larger than the mount's 8 MiB tail)",
            want.len()
        );
        assert_eq!(sha(&m.p(name)), *blake3::hash(&want).as_bytes(), "{name} through the mount");
    }
    m.unmount();
    let stats = m.vaultctl(None, &["stats"]);
    assert!(stats.contains("expanded files:     2"), "{stats}");
    m.mount();
    for name in ["export.zip", "infozip.zip"] {
        let want = fs::read(plain.join(name)).unwrap();
        assert_eq!(sha(&m.p(name)), *blake3::hash(&want).as_bytes(), "{name} after a remount");
    }
    m.unmount();
    assert!(m.check().ok());
}

#[test]
fn a_file_put_by_vaultctl_is_found_by_its_name_without_a_listing_first() {
    let mut m = Mount::new();
    m.mount();
    let input = m._dir.path().join("input");
    fs::write(&input, b"stored by vaultctl put").unwrap();
    m.vaultctl(None, &["put", "today.dump", input.to_str().unwrap()]);
    // Straight to the name, as `mongorestore --archive=/mnt/vault/today` does after a put.
    assert_eq!(fs::read(m.p("today.dump")).unwrap(), b"stored by vaultctl put");
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(&input, b"and another one").unwrap();
    m.vaultctl(None, &["put", "second.dump", input.to_str().unwrap()]);
    let period = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(fs::read(m.p(&format!("{period}/second.dump"))).unwrap(), b"and another one");
    m.unmount();
}
