//! Checks before mounting: the mountpoint is a directory, does not overlap the vault or the
//! cache (mounting inside the vault would deadlock), and a stale mount left by a killed daemon
//! ("Transport endpoint is not connected") is cleaned up.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

pub fn prepare(mnt: &Path, vault: Option<&Path>, cache: Option<&Path>) -> anyhow::Result<()> {
    match std::fs::metadata(mnt) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            crate::log(&format!("{} is a stale mount of a dead daemon; cleaning it up", mnt.display()));
            let ok = Command::new("fusermount3").arg("-uz").arg(mnt).status().map(|s| s.success()).unwrap_or(false)
                || Command::new("umount").arg("-l").arg(mnt).status().map(|s| s.success()).unwrap_or(false);
            if !ok {
                bail!("{} is a stale mount; unmount it with `fusermount3 -uz {}`", mnt.display(), mnt.display());
            }
        }
        Err(e) => return Err(e).with_context(|| format!("mountpoint {}", mnt.display())),
        Ok(m) if !m.is_dir() => bail!("mountpoint {} is not a directory", mnt.display()),
        Ok(_) => {}
    }
    if is_mounted(mnt) {
        bail!("{} is already a mount point (unmount it first)", mnt.display());
    }
    let m = canon(mnt);
    if let Some(v) = vault.map(canon) {
        if overlaps(&m, &v) {
            bail!("the mountpoint {} and the vault {} overlap; mount somewhere else", m.display(), v.display());
        }
    }
    if let Some(c) = cache {
        let c = canon(c);
        if overlaps(&m, &c) {
            bail!("the mountpoint {} and the cache {} overlap; mount somewhere else", m.display(), c.display());
        }
    }
    Ok(())
}

fn is_mounted(mnt: &Path) -> bool {
    let m = canon(mnt);
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().any(|l| l.split(' ').nth(4).map(|p| Path::new(p) == m).unwrap_or(false)))
        .unwrap_or(false)
}
