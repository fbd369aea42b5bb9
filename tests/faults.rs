//! Faults of the environment: a writer killed with SIGKILL, a disk that fills up.

mod common;
use common::*;
use std::io::Write;
use std::process::Stdio;

#[test]
fn put_killed_with_sigkill_leaves_the_vault_intact() {
    let e = Env::new();
    e.init();
    let keep = data(400_000, 1);
    e.put_bytes("keep", &keep);
    for round in 0..3 {
        let mut child = e.cmd(&["put", "victim"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Enough to have written packs (1 MiB each) before the kill.
        let chunk = data(1 << 20, 10 + round);
        for _ in 0..(3 + 3 * round) {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(300 * (round + 1)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        drop(stdin);

        let out = e.ok(&["check", "--read-data"]);
        assert!(out.contains("no errors"), "{out}");
        assert!(!e.ok(&["ls", "current"]).contains("victim"), "a killed put must not show a file");
        assert_eq!(e.cat("current/keep"), keep);
    }
    // The next writer takes the lock and removes leftovers of the killed one.
    e.put_bytes("after", b"fine");
    assert_eq!(e.cat("current/after"), b"fine");
    let leftovers = walk_names(&e.repo).into_iter().filter(|n| n.starts_with(".tmp-")).count();
    assert_eq!(leftovers, 0);
}

fn walk_names(p: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.path().is_dir() {
            out.extend(walk_names(&e.path()));
        }
    }
    out
}

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            o.status.success(),
            "this test mounts a small tmpfs to fill the disk and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_during_put_keeps_earlier_snapshots() {
    let mut e = Env::new();
    let mnt = e.path("small-disk");
    let _fs = Tmpfs::mount(&mnt, "6m");
    e.repo = mnt.join("vault");
    e.init();
    let keep = data(1_000_000, 2);
    e.put_bytes("keep", &keep);
    // Incompressible input larger than the disk.
    let mut child = e.cmd(&["put", "too-big"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut buf = vec![0u8; 1 << 16];
        for _ in 0..(12 << 4) {
            for b in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes());
            }
            if stdin.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let err = fails(o, &["put"], 1);
    assert!(err.contains("no space left on device"), "{err}");

    let out = e.ok(&["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    assert_eq!(e.cat("current/keep"), keep);
    assert!(!e.ok(&["ls", "current"]).contains("too-big"));
    assert_eq!(walk_names(&e.repo).into_iter().filter(|n| n.starts_with(".tmp-")).count(), 0);
}
