//! `restore`: write a snapshot (or part of it) back to the local file system.
//!
//! Each file is written to a temporary name beside its destination and renamed only when its
//! every byte was authenticated, so a failed restore never leaves a short file under the real
//! name. Existing files are not overwritten unless asked.

use super::browse::resolve_node;
use crate::error::{Error, Result};
use crate::format::tree::{FileState, Node, NodeKind};
use crate::repo::Vault;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Files restored although marked incomplete or failed.
    pub marked: Vec<String>,
}

pub fn restore(v: &Vault, spec: &str, dest: &Path, overwrite: bool) -> Result<RestoreReport> {
    let (period, node) = resolve_node(v, spec)?;
    let mut r = RestoreReport::default();
    let target = match node.kind {
        NodeKind::Dir { .. } => dest.to_path_buf(),
        _ if dest.is_dir() => dest.join(String::from_utf8_lossy(&node.name).as_ref()),
        _ => dest.to_path_buf(),
    };
    restore_node(v, &node, &target, overwrite, &period, &mut r)?;
    Ok(r)
}

fn restore_node(
    v: &Vault,
    node: &Node,
    target: &Path,
    overwrite: bool,
    label: &str,
    r: &mut RestoreReport,
) -> Result<()> {
    match &node.kind {
        NodeKind::Dir { tree } => {
            fs::create_dir_all(target).map_err(|e| Error::io(target.display(), e))?;
            for child in &v.load_tree(*tree)?.nodes {
                let name = String::from_utf8_lossy(&child.name).into_owned();
                restore_node(v, child, &target.join(&name), overwrite, &format!("{label}/{name}"), r)?;
            }
            set_meta(target, node, false);
            r.dirs += 1;
        }
        NodeKind::File { state, .. } => {
            if target.exists() && !overwrite {
                return Err(Error::new(
                    crate::ErrorKind::AlreadyExists,
                    format!("{} exists (use --overwrite)", target.display()),
                ));
            }
            let tmp = partial_name(target);
            let res = (|| -> Result<u64> {
                let mut f = fs::File::create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
                let n = v.file_reader(node)?.copy_to(&mut w).map_err(|e| e.context(label))?;
                w.flush().map_err(|e| Error::io(tmp.display(), e))?;
                drop(w);
                f.sync_all().map_err(|e| Error::io(tmp.display(), e))?;
                Ok(n)
            })();
            match res {
                Ok(n) => {
                    fs::rename(&tmp, target).map_err(|e| Error::io(target.display(), e))?;
                    set_meta(target, node, true);
                    r.bytes += n;
                    r.files += 1;
                    if *state != FileState::Complete {
                        r.marked.push(label.to_string());
                    }
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        NodeKind::Symlink { target: link } => {
            if target.symlink_metadata().is_ok() {
                if !overwrite {
                    return Err(Error::new(
                        crate::ErrorKind::AlreadyExists,
                        format!("{} exists (use --overwrite)", target.display()),
                    ));
                }
                let _ = fs::remove_file(target);
            }
            use std::os::unix::ffi::OsStrExt;
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(link), target)
                .map_err(|e| Error::io(target.display(), e))?;
            r.symlinks += 1;
        }
    }
    Ok(())
}

fn partial_name(target: &Path) -> PathBuf {
    let mut name = target.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".vault-partial");
    target.with_file_name(name)
}

/// Best effort: permissions, times, and ownership when running as root.
fn set_meta(path: &Path, node: &Node, is_file: bool) {
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(node.mode & 0o7777));
    let secs = node.mtime_ns.div_euclid(1_000_000_000);
    let nanos = node.mtime_ns.rem_euclid(1_000_000_000);
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs.max(0) as u64, nanos as u32);
    if let Ok(f) = fs::File::options().read(true).open(path) {
        let _ = f.set_modified(t);
    }
    // SAFETY: geteuid takes no arguments and cannot fail.
    if is_file && unsafe { libc::geteuid() } == 0 {
        let _ = std::os::unix::fs::chown(path, Some(node.uid), Some(node.gid));
    }
}
