//! `restore`: write a snapshot (or part of it) back to the local file system.
//!
//! Every node type comes back: regular files, directories, symlinks, hard links (files of one
//! period with the same link id are linked to the first one restored), fifos, sockets and,
//! as root, character and block devices. Owner (as root), permission bits (set-id bits
//! included), and access and modification times to the nanosecond are set; a change time
//! cannot be set by anyone and is the time of the restore.
//!
//! Each file is written to a short temporary name beside its destination (`.vr-` and 16 hex
//! digits, whatever the length of the real name) and renamed only when its every byte was
//! authenticated, so a failed restore never leaves a short file under the real name. Existing
//! files are not overwritten unless asked.

use super::browse::resolve_node;
use crate::error::{Error, Result};
use crate::format::tree::{FileState, Node, NodeKind, Time};
use crate::repo::Vault;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Hard links made to a file restored before.
    pub links: u64,
    /// Fifos, sockets and devices.
    pub special: u64,
    pub bytes: u64,
    /// Files restored although marked incomplete or failed.
    pub marked: Vec<String>,
    /// What could not be restored as it was (a device without root), with the reason.
    pub warnings: Vec<String>,
}

pub fn restore(v: &Vault, spec: &str, dest: &Path, overwrite: bool) -> Result<RestoreReport> {
    restore_with(v, spec, dest, overwrite, &crate::progress::Silent)
}

/// [`restore`], reporting each file and the bytes written to `progress`.
pub fn restore_with(
    v: &Vault,
    spec: &str,
    dest: &Path,
    overwrite: bool,
    progress: &dyn crate::progress::Progress,
) -> Result<RestoreReport> {
    let (period, node) = resolve_node(v, spec)?;
    let total = match &node.kind {
        NodeKind::Dir { tree } => {
            let mut sum = 0;
            v.walk(*tree, &mut |_, n| {
                if matches!(n.kind, NodeKind::File { .. }) {
                    sum += n.size;
                }
                Ok(())
            })?;
            sum
        }
        _ => node.size,
    };
    progress.phase("restoring", Some(total));
    let mut r = RestoreReport::default();
    let target = match node.kind {
        NodeKind::Dir { .. } => dest.to_path_buf(),
        _ if dest.is_dir() => dest.join(OsStr::from_bytes(&node.name)),
        _ => dest.to_path_buf(),
    };
    let mut ctx = Ctx { v, overwrite, links: HashMap::new(), root: is_root(), progress };
    ctx.node(&node, &target, &period, &mut r, true)?;
    Ok(r)
}

struct Ctx<'a> {
    v: &'a Vault,
    overwrite: bool,
    /// Link id -> the path its first node was restored to.
    links: HashMap<u64, PathBuf>,
    root: bool,
    progress: &'a dyn crate::progress::Progress,
}

/// Counts what goes through into the progress.
struct Counting<'a, W> {
    w: W,
    progress: &'a dyn crate::progress::Progress,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = self.w.write_vectored(bufs)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::invalid(format!("{}: NUL in path", p.display())))
}

fn last_os_error(what: &Path) -> Error {
    Error::io(what.display(), std::io::Error::last_os_error())
}

impl Ctx<'_> {
    /// Makes room for `target`: refuses an existing one unless overwriting.
    fn clear(&self, target: &Path) -> Result<()> {
        let Ok(md) = target.symlink_metadata() else { return Ok(()) };
        if !self.overwrite {
            return Err(Error::new(
                crate::ErrorKind::AlreadyExists,
                format!("{} exists (use --overwrite)", target.display()),
            ));
        }
        if !md.is_dir() {
            fs::remove_file(target).map_err(|e| Error::io(target.display(), e))?;
        }
        Ok(())
    }

    fn node(&mut self, node: &Node, target: &Path, label: &str, r: &mut RestoreReport, top: bool) -> Result<()> {
        if node.link != 0 && !matches!(node.kind, NodeKind::Dir { .. }) {
            if let Some(first) = self.links.get(&node.link).cloned() {
                self.clear(target)?;
                fs::hard_link(&first, target).map_err(|e| Error::io(target.display(), e))?;
                r.links += 1;
                return Ok(());
            }
        }
        match &node.kind {
            NodeKind::Dir { tree } => {
                if !top || !target.is_dir() {
                    if target.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                        self.clear(target)?;
                    }
                    fs::create_dir_all(target).map_err(|e| Error::io(target.display(), e))?;
                }
                for child in &self.v.load_tree(*tree)?.nodes {
                    let name = String::from_utf8_lossy(&child.name).into_owned();
                    self.node(
                        child,
                        &target.join(OsStr::from_bytes(&child.name)),
                        &format!("{label}/{name}"),
                        r,
                        false,
                    )?;
                }
                set_meta(target, node, self.root)?;
                r.dirs += 1;
            }
            NodeKind::File { state, .. } => {
                self.clear(target)?;
                let tmp = partial_name(target);
                let res = (|| -> Result<u64> {
                    let mut f = fs::File::create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
                    self.progress.item(label);
                    let mut w =
                        Counting { w: std::io::BufWriter::with_capacity(1 << 20, &mut f), progress: self.progress };
                    let n = self.v.file_reader(node)?.copy_to(&mut w).map_err(|e| e.context(label))?;
                    w.flush().map_err(|e| Error::io(tmp.display(), e))?;
                    drop(w);
                    f.sync_all().map_err(|e| Error::io(tmp.display(), e))?;
                    Ok(n)
                })();
                match res {
                    Ok(n) => {
                        fs::rename(&tmp, target).map_err(|e| Error::io(target.display(), e))?;
                        set_meta(target, node, self.root)?;
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
                self.clear(target)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(link), target)
                    .map_err(|e| Error::io(target.display(), e))?;
                set_meta(target, node, self.root)?;
                r.symlinks += 1;
            }
            NodeKind::Fifo | NodeKind::Socket | NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. } => {
                let device = matches!(node.kind, NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. });
                if device && !self.root {
                    r.warnings.push(format!("{label}: a device node can only be made by root; not restored"));
                    return Ok(());
                }
                self.clear(target)?;
                let c = cpath(target)?;
                let mode = node.kind.type_bits() | (node.mode & 0o7777);
                // SAFETY: `c` is a valid NUL-terminated path; mknod takes plain integers.
                if unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, node.kind.rdev() as libc::dev_t) } != 0 {
                    return Err(last_os_error(target));
                }
                set_meta(target, node, self.root)?;
                r.special += 1;
            }
        }
        if node.link != 0 {
            self.links.entry(node.link).or_insert_with(|| target.to_path_buf());
        }
        Ok(())
    }
}

/// A temporary name beside `target` that fits any file system's name limit.
fn partial_name(target: &Path) -> PathBuf {
    let r: u64 = rand::random();
    target.with_file_name(format!(".vr-{r:016x}"))
}

fn timespec(t: Time) -> libc::timespec {
    libc::timespec { tv_sec: t.sec as libc::time_t, tv_nsec: t.nsec as libc::c_long }
}

/// Owner (as root; before the mode, which chown would clear set-id bits of), permission bits
/// (not on symlinks), then access and modification times to the nanosecond.
fn set_meta(path: &Path, node: &Node, root: bool) -> Result<()> {
    let c = cpath(path)?;
    let symlink = matches!(node.kind, NodeKind::Symlink { .. });
    if root {
        // SAFETY: valid path; lchown does not follow symlinks.
        if unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) } != 0 {
            return Err(last_os_error(path));
        }
    }
    if !symlink {
        // SAFETY: valid path and plain mode bits.
        if unsafe { libc::chmod(c.as_ptr(), (node.mode & 0o7777) as libc::mode_t) } != 0 {
            return Err(last_os_error(path));
        }
    }
    let times = [timespec(node.atime), timespec(node.mtime)];
    // SAFETY: valid path, two timespecs, AT_FDCWD for a relative or absolute path.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(last_os_error(path));
    }
    Ok(())
}
