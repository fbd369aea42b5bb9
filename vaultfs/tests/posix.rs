//! The writable period as a real file system: pjdfstest and fsx through a real mount, and a
//! round trip of a tree with every node type (tar -x into the mount, seal, `vaultctl restore`
//! and the sealed snapshot read back, compared with the source field by field).
//!
//! These tests need root, /dev/fuse and the `pjdfstest` and `fsx` binaries that
//! scripts/install-deps.sh installs; they fail, never skip, when something is missing.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const KEY: &str = "7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b";

fn bin(name: &str) -> PathBuf {
    match name {
        "vaultfs" => PathBuf::from(env!("CARGO_BIN_EXE_vaultfs")),
        _ => {
            let mut p = PathBuf::from(env!("CARGO_BIN_EXE_vaultfs"));
            p.pop();
            p.join(name)
        }
    }
}

/// A tool installed by scripts/install-deps.sh (on PATH or in ~/.cargo/bin).
fn tool(name: &str) -> PathBuf {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !p.is_empty() {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = PathBuf::from(home).join(".cargo/bin").join(name);
    assert!(p.exists(), "{name} is missing: run scripts/install-deps.sh (it installs it with cargo install)");
    p
}

struct Env {
    dir: tempfile::TempDir,
    vault: PathBuf,
    mnt: PathBuf,
    pid: std::cell::Cell<Option<u32>>,
}

impl Env {
    fn new() -> Env {
        assert!(Path::new("/dev/fuse").exists(), "these tests need /dev/fuse");
        // SAFETY: geteuid takes no arguments and cannot fail.
        assert_eq!(unsafe { libc::geteuid() }, 0, "these tests run as root (CI does)");
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("vault");
        let mnt = dir.path().join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        // World-searchable, so that pjdfstest's unprivileged users reach the mount.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let e = Env { dir, vault, mnt, pid: std::cell::Cell::new(None) };
        e.ctl(&["init"]);
        e
    }

    fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars() {
            if k.starts_with("VAULT_") {
                c.env_remove(k);
            }
        }
        c.env("VAULT_KEY", KEY).env("VAULT_REPO", &self.vault).env("VAULT_CACHE_DIR", self.dir.path().join("cache"));
        c.env("TZ", "UTC").stdin(Stdio::null());
        c
    }

    fn ctl(&self, args: &[&str]) -> String {
        let out = self.cmd(&bin("vaultctl")).args(args).output().unwrap();
        assert!(out.status.success(), "vaultctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn mount(&self, extra: &[&str]) {
        let out = self
            .cmd(&bin("vaultfs"))
            .arg("mount")
            .arg(&self.vault)
            .arg(&self.mnt)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache-fs"))
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "vaultfs mount: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pid =
            stdout.split("daemon pid ").nth(1).and_then(|s| s.split(',').next()).and_then(|s| s.trim().parse().ok());
        self.pid.set(pid);
    }

    fn unmount(&self) {
        for _ in 0..100 {
            let ok = Command::new("fusermount3").arg("-u").arg(&self.mnt).stderr(Stdio::null()).status().unwrap();
            if ok.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The daemon commits after the unmount: wait until it is gone.
        let Some(pid) = self.pid.take() else { return };
        for _ in 0..2400 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon did not stop within 120 s of the unmount");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.mnt).stderr(Stdio::null()).status();
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let ts =
        [libc::timespec { tv_sec: atime.0, tv_nsec: atime.1 }, libc::timespec { tv_sec: mtime.0, tv_nsec: mtime.1 }];
    let c = cpath(p);
    // SAFETY: valid path and two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {}: {}", p.display(), std::io::Error::last_os_error());
}

fn mknod(p: &Path, mode: u32, dev: u64) {
    let c = cpath(p);
    // SAFETY: valid path, plain integers.
    let r = unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, dev as libc::dev_t) };
    assert_eq!(r, 0, "mknod {}: {}", p.display(), std::io::Error::last_os_error());
}

/// A tree with every node type: hard links across directories, a sparse file, a 255-byte
/// name, a name that is not UTF-8, set-id and sticky modes, other owners, odd timestamps.
fn make_source(src: &Path) {
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::create_dir_all(src.join("sticky")).unwrap();
    let mut data = vec![0u8; 100 << 10];
    let mut x = 7u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    fs::write(src.join("plain"), &data).unwrap();
    let sparse = fs::File::create(src.join("sparse")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    sparse.write_all_at(b"in the middle", 32 << 20).unwrap();
    sparse.write_all_at(b"at the end", (64 << 20) - 10).unwrap();
    drop(sparse);
    fs::write(src.join("n".repeat(255)), b"a name of 255 bytes").unwrap();
    fs::write(src.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), b"not utf-8").unwrap();
    fs::write(src.join("hl1"), b"one file, three names").unwrap();
    fs::hard_link(src.join("hl1"), src.join("sub/hl2")).unwrap();
    fs::hard_link(src.join("hl1"), src.join("sub/deeper/hl3")).unwrap();
    std::os::unix::fs::symlink("plain", src.join("sym")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", src.join("dangling")).unwrap();
    mknod(&src.join("fifo"), libc::S_IFIFO | 0o640, 0);
    mknod(&src.join("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    mknod(&src.join("loopdev"), libc::S_IFBLK | 0o660, libc::makedev(7, 200));
    for (name, mode) in [("plain", 0o4755), ("hl1", 0o2750), ("sparse", 0o600)] {
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(src.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::lchown(src.join("sparse"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(src.join("sym"), Some(4321), Some(8765)).unwrap();
    set_times(&src.join("plain"), (1_000_000_000, 1), (-2_000_000_000, 5));
    // (ext4, where the source and the restore live, keeps times from 1901 to 2446.)
    set_times(&src.join("sparse"), (0, 0), (1 << 33, 999_999_999));
    set_times(&src.join("sym"), (5, 5), (1_234_567_890, 123_456_789));
    set_times(&src.join("fifo"), (6, 6), (2_000_000_000, 42));
    for d in ["sub/deeper", "sub", "sticky"] {
        set_times(&src.join(d), (7, 7), (1_500_000_000, 777));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    atime: Option<(i64, i64)>,
    rdev: u64,
    nlink: u64,
    content: Option<[u8; 32]>,
    target: Option<Vec<u8>>,
    /// The first path (in order) of the same inode, for hard links.
    same_as: Option<Vec<u8>>,
}

/// Every node below `root` by relative path, with what stat shows and a hash of the content.
fn snapshot(root: &Path, with_atime: bool) -> BTreeMap<Vec<u8>, Meta> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(root.join(&rel)).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let p = root.join(&r);
            let md = fs::symlink_metadata(&p).unwrap();
            let kind = md.mode() & libc::S_IFMT;
            let key = r.as_os_str().as_bytes().to_vec();
            // Hashed after every stat: reading a file can change the access time of its
            // other names.
            let content = md.is_file().then_some([0u8; 32]);
            let same_as =
                (md.nlink() > 1 && !md.is_dir()).then(|| inodes.entry(md.ino()).or_insert_with(|| key.clone()).clone());
            out.insert(
                key,
                Meta {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    size: if md.is_dir() { 0 } else { md.size() },
                    mtime: (md.mtime(), md.mtime_nsec()),
                    atime: (with_atime && !md.is_dir()).then(|| (md.atime(), md.atime_nsec())),
                    rdev: md.rdev(),
                    nlink: if md.is_dir() { 0 } else { md.nlink() },
                    content,
                    target: md
                        .file_type()
                        .is_symlink()
                        .then(|| fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()),
                    same_as,
                },
            );
            if md.is_dir() {
                stack.push(r);
            }
        }
    }
    for (k, m) in out.iter_mut() {
        if m.content.is_some() {
            let mut h = blake3::Hasher::new();
            let mut f = fs::File::open(root.join(OsStr::from_bytes(k))).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            m.content = Some(*h.finalize().as_bytes());
        }
    }
    out
}

fn assert_same(want: &BTreeMap<Vec<u8>, Meta>, got: &BTreeMap<Vec<u8>, Meta>, what: &str) {
    let names =
        |m: &BTreeMap<Vec<u8>, Meta>| m.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: names differ");
    for (k, w) in want {
        assert_eq!(&got[k], w, "{what}: {}", String::from_utf8_lossy(k));
    }
}

#[test]
fn a_tree_of_every_node_type_round_trips_through_the_mount_a_seal_and_a_restore() {
    let e = Env::new();
    let src = e.dir.path().join("src");
    make_source(&src);
    let tar = e.dir.path().join("tree.tar");
    let st =
        Command::new("tar").args(["--format=posix", "-C"]).arg(&src).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(st.success());
    // tar records everything but access times; they are set through the mount below.
    e.mount(&[]);
    let st = Command::new("tar").arg("-C").arg(&e.mnt).arg("-xpf").arg(&tar).status().unwrap();
    assert!(st.success(), "tar -x into the mount");
    // tar does not archive sockets: one made in both places.
    mknod(&src.join("sock"), libc::S_IFSOCK | 0o600, 0);
    mknod(&e.mnt.join("sock"), libc::S_IFSOCK | 0o600, 0);
    for p in [src.join("sock"), e.mnt.join("sock")] {
        set_times(&p, (9, 9), (9, 9));
    }
    let mut want = snapshot(&src, false);
    let got = snapshot(&e.mnt, false);
    let periods: Vec<Vec<u8>> = got.keys().filter(|k| k.starts_with(b"20") && !k.contains(&b'/')).cloned().collect();
    assert_eq!(periods.len(), 1);
    let period = String::from_utf8(periods[0].clone()).unwrap();
    let live: BTreeMap<Vec<u8>, Meta> = got.into_iter().filter(|(k, _)| !k.starts_with(b"20")).collect();
    assert_same(&want, &live, "in the writable period");
    // Access times: exact, whatever their range.
    set_times(&e.mnt.join("plain"), (-2_000_000_123, 123_456_789), (-2_000_000_000, 5));
    set_times(&e.mnt.join("sparse"), (1 << 33, 1), (1 << 33, 999_999_999));
    let with_atime = snapshot(&e.mnt, true);
    assert_eq!(with_atime[&b"plain".to_vec()].atime, Some((-2_000_000_123, 123_456_789)));
    for (k, m) in want.iter_mut() {
        m.atime = with_atime[k].atime;
    }
    e.unmount();
    e.ctl(&["seal"]);
    // Restored by vaultctl, as root: owners, modes, devices and times come back.
    let dest = e.dir.path().join("restored");
    e.ctl(&["restore", &period, dest.to_str().unwrap()]);
    assert_same(&want, &snapshot(&dest, true), "restored");
    // Read through the sealed snapshot.
    e.mount(&["--read-only"]);
    assert_same(&want, &snapshot(&e.mnt.join(&period), true), "the sealed snapshot through the mount");
    let ls = e.ctl(&["ls", &period]);
    assert!(ls.contains("prw-r-----") && ls.contains("srw-------"), "{ls}");
    assert!(ls.lines().any(|l| l.starts_with('c')) && ls.lines().any(|l| l.starts_with('b')), "{ls}");
    assert!(ls.contains("-rwsr-xr-x") && ls.contains("drwxrwxrwt"), "{ls}");
    e.unmount();
    let out = e.cmd(&bin("vaultctl")).args(["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "check: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn restore_of_a_name_of_250_bytes() {
    // A temporary name beside the target must fit the file system's limit too.
    let e = Env::new();
    e.mount(&[]);
    let name = "r".repeat(250);
    fs::write(e.mnt.join(&name), b"restored under its own long name").unwrap();
    e.unmount();
    let dest = e.dir.path().join("out");
    e.ctl(&["restore", "current", dest.to_str().unwrap()]);
    assert_eq!(fs::read(dest.join(&name)).unwrap(), b"restored under its own long name");
}

/// pjdfstest's counts: (passed, failed, skipped).
fn summary(out: &str) -> (usize, usize, usize) {
    let line = out.lines().rev().find(|l| l.starts_with("Summary")).unwrap_or_else(|| panic!("no summary:\n{out}"));
    let num = |word: &str| -> usize {
        let i = line.find(word).unwrap_or_else(|| panic!("{word} in {line}"));
        line[..i].trim_end().rsplit(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (num(" passed"), num(" failed"), num(" skipped"))
}

#[test]
fn pjdfstest_and_fsx_pass_in_the_writable_period() {
    let e = Env::new();
    // --allow-other: pjdfstest switches to unprivileged users, which the kernel's permission
    // checks (default_permissions) then govern, as on a local file system.
    e.mount(&["--allow-other"]);
    let dir = e.mnt.join("pjdfstest");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pjdfstest.toml");
    // A directory on another file system, for the EXDEV tests.
    let other = e.dir.path().join("other-fs");
    fs::create_dir(&other).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(tool("pjdfstest"))
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&dir)
        .arg("-s")
        .arg(&other)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (passed, failed, skipped) = summary(&text);
    let failures: Vec<&str> =
        text.lines().filter(|l| l.contains("FAILED") || l.contains("PASSED UNEXPECTEDLY")).collect();
    let recorded: usize = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pjdfstest.passed"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eprintln!("pjdfstest: {passed} passed, {failed} failed, {skipped} skipped");
    assert!(
        failed == 0 && passed >= recorded,
        "pjdfstest: {passed} passed (recorded: {recorded}), {failed} failed outside the documented list:\n{}\n{}",
        failures.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    // fsx: 20,000 random operations on one file, fixed seed, every read checked.
    let fsx = Command::new(tool("fsx"))
        .args(["-N", "20000", "-S", "7"])
        .arg(e.mnt.join("fsx.data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        fsx.status.success(),
        "fsx: {}\n{}",
        String::from_utf8_lossy(&fsx.stdout),
        String::from_utf8_lossy(&fsx.stderr)
    );
    e.unmount();
    let out = e.cmd(&bin("vaultctl")).args(["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "check: {}", String::from_utf8_lossy(&out.stdout));
}
