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
//! files are not overwritten unless asked. The restore is made durable once, at its end, by
//! a `syncfs` of the destination's file system: a restore that reported success is on disk.

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
    let root = is_root();
    let (tx, rx) = std::sync::mpsc::sync_channel::<FileJob>(JOBS_QUEUED);
    let rx = Mutex::new(rx);
    let shared = Shared::default();
    let (walked, links, dirs) = std::thread::scope(|s| {
        for _ in 0..RESTORE_WORKERS {
            s.spawn(|| work(v, root, progress, &rx, &shared));
        }
        let mut ctx = Ctx {
            overwrite,
            links: HashMap::new(),
            jobs: tx,
            shared: &shared,
            seq: 0,
            deferred_links: Vec::new(),
            dirs: Vec::new(),
            v,
            root,
        };
        let walked = ctx.node(&node, &target, &period, &mut r, true);
        if walked.is_err() {
            shared.stop.store(true, Ordering::Relaxed);
        }
        // Dropping the sender ends the workers once the queue is empty.
        (walked, ctx.deferred_links, ctx.dirs)
    });
    walked?;
    let done = shared.done.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = done.error {
        return Err(e);
    }
    r.files += done.files;
    r.bytes += done.bytes;
    let mut marked = done.marked;
    marked.sort_unstable();
    r.marked.extend(marked.into_iter().map(|(_, label)| label));
    // Every file is in place: the hard links to them, then the directories' own metadata
    // (children first; adding an entry would change a directory's times).
    for (first, link) in &links {
        clear(link, overwrite)?;
        fs::hard_link(first, link).map_err(|e| Error::io(link.display(), e))?;
        r.links += 1;
    }
    for (path, node) in &dirs {
        set_meta(path, node, root)?;
    }
    // Durable before it reports success: one flush of the file system for the whole restore
    // (a flush per file cost more than the rest of a restore of many small files).
    let top = if target.is_dir() {
        target.clone()
    } else {
        target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()
    };
    sync_file_system(&top)?;
    Ok(r)
}

/// `syncfs(2)` of the file system holding `dir`: everything written to it is on disk after.
fn sync_file_system(dir: &Path) -> Result<()> {
    let d = fs::File::open(dir).map_err(|e| Error::io(dir.display(), e))?;
    // SAFETY: `d` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)) } != 0 {
        return Err(last_os_error(dir));
    }
    Ok(())
}

/// Files restored at once: most of a small file's restore is system calls and waits (create,
/// write, rename, metadata), which overlap; a large file's reads use both cores on their own.
const RESTORE_WORKERS: usize = 4;
/// Files above this size are restored one at a time (see [`work`]).
const LARGE_FILE: u64 = 8 << 20;
/// Files queued for the workers ahead of the walk.
const JOBS_QUEUED: usize = 64;

/// A regular file to restore: the walk queues it, a worker writes it.
struct FileJob {
    node: Node,
    target: PathBuf,
    label: String,
    /// Its place in the walk (the order of the report's lists).
    seq: usize,
}

#[derive(Default)]
struct Shared {
    /// Set at the first failure: the walk and the workers stop taking new files.
    stop: AtomicBool,
    done: Mutex<Done>,
    /// Held while a file larger than [`LARGE_FILE`] is restored.
    large: Mutex<()>,
}

#[derive(Default)]
struct Done {
    files: u64,
    bytes: u64,
    marked: Vec<(usize, String)>,
    error: Option<Error>,
}

/// A worker: restores queued files until the queue closes.
fn work(
    v: &Vault,
    root: bool,
    progress: &dyn crate::progress::Progress,
    rx: &Mutex<std::sync::mpsc::Receiver<FileJob>>,
    shared: &Shared,
) {
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        if shared.stop.load(Ordering::Relaxed) {
            continue;
        }
        // Large files one at a time: each reads ahead on both cores with its own buffers.
        let one = (job.node.size > LARGE_FILE).then(|| shared.large.lock().unwrap_or_else(|e| e.into_inner()));
        let res = restore_file(v, &job, root, progress);
        drop(one);
        let mut d = shared.done.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(n) => {
                d.files += 1;
                d.bytes += n;
                if matches!(job.node.kind, NodeKind::File { state, .. } if state != FileState::Complete) {
                    d.marked.push((job.seq, job.label));
                }
            }
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                d.error.get_or_insert(e);
            }
        }
    }
}

/// Writes one file under a temporary name, renames it once every byte was authenticated,
/// then sets its metadata; the bytes written.
fn restore_file(v: &Vault, job: &FileJob, root: bool, progress: &dyn crate::progress::Progress) -> Result<u64> {
    let tmp = partial_name(&job.target);
    let res = (|| -> Result<u64> {
        let mut f = fs::File::create(&tmp).map_err(|e| match job.target.parent() {
            // Name what the user gave, not the temporary name beside it.
            Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => {
                Error::not_found(format!("{}: no such directory", dir.display()))
            }
            _ => Error::io(job.target.display(), e),
        })?;
        progress.item(&job.label);
        let mut w = Counting { w: std::io::BufWriter::with_capacity(1 << 20, &mut f), progress };
        let n = v.file_reader(&job.node)?.copy_to(&mut w).map_err(|e| e.context(&job.label))?;
        w.flush().map_err(|e| Error::io(job.target.display(), e))?;
        Ok(n)
    })();
    match res {
        Ok(n) => {
            fs::rename(&tmp, &job.target).map_err(|e| Error::io(job.target.display(), e))?;
            set_meta(&job.target, &job.node, root)?;
            Ok(n)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

struct Ctx<'a> {
    v: &'a Vault,
    overwrite: bool,
    /// Link id -> the path its first node was restored to.
    links: HashMap<u64, PathBuf>,
    root: bool,
    jobs: std::sync::mpsc::SyncSender<FileJob>,
    shared: &'a Shared,
    seq: usize,
    /// Hard links to make once every file is written: (first node's path, link's path).
    deferred_links: Vec<(PathBuf, PathBuf)>,
    /// Directories whose metadata is set once everything in them is written (children first).
    dirs: Vec<(PathBuf, Node)>,
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

/// Makes room for `target`: refuses an existing one unless overwriting.
fn clear(target: &Path, overwrite: bool) -> Result<()> {
    let Ok(md) = target.symlink_metadata() else { return Ok(()) };
    if !overwrite {
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

impl Ctx<'_> {
    fn clear(&self, target: &Path) -> Result<()> {
        clear(target, self.overwrite)
    }
    /// Walks `node`: makes directories, symlinks and special files, queues regular files for
    /// the workers, and defers hard links and directory metadata. Stops early (without an
    /// error of its own) once a worker failed.
    fn node(&mut self, node: &Node, target: &Path, label: &str, r: &mut RestoreReport, top: bool) -> Result<()> {
        if self.shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if node.link != 0 && !matches!(node.kind, NodeKind::Dir { .. }) {
            if let Some(first) = self.links.get(&node.link).cloned() {
                self.deferred_links.push((first, target.to_path_buf()));
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
                // A period's root (no name) has no metadata of its own to give the destination.
                if !node.name.is_empty() {
                    self.dirs.push((target.to_path_buf(), node.clone()));
                }
                r.dirs += 1;
            }
            NodeKind::File { .. } => {
                self.clear(target)?;
                self.seq += 1;
                let job = FileJob {
                    node: node.clone(),
                    target: target.to_path_buf(),
                    label: label.to_string(),
                    seq: self.seq,
                };
                self.jobs
                    .send(job)
                    .map_err(|_| Error::new(crate::ErrorKind::Io, "restore: the writing threads stopped"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Secret;
    use crate::format::tree::Content;
    use crate::repo::{InitOptions, OpenOptions};
    use crate::store::memory::MemoryStore;
    use crate::store::{ObjKind, Store};
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;
    use std::time::Duration;

    fn file_node(content: Content, size: u64) -> Node {
        let t = Time { sec: 1_700_000_000, nsec: 123_456_789 };
        Node::new(Vec::new(), NodeKind::File { state: FileState::Complete, content }, 0o100640, 0, 0, t, size)
    }

    /// A vault holding, in period 2026-11-20, `small` files of a few KB spread over five
    /// directories and two files larger than [`LARGE_FILE`]; their paths and contents.
    fn vault_with_a_tree(small: usize) -> (Arc<MemoryStore>, Vault, Vec<(String, Vec<u8>)>) {
        let m = Arc::new(MemoryStore::new());
        let secret = Secret::raw_key_from_hex(&"42".repeat(32)).unwrap();
        let o = InitOptions { chunk_avg: 1024, pack_target: 1 << 20, ..Default::default() };
        Vault::init(m.clone(), &secret, &o).unwrap();
        let v = Vault::open(m.clone(), &secret, &OpenOptions::default()).unwrap();
        let mut r = rand::rngs::StdRng::seed_from_u64(7);
        let mut files: Vec<(String, Vec<u8>)> = (0..small)
            .map(|i| {
                let n = r.gen_range(0..20_000);
                (format!("d{}/sub/f{i}", i % 5), (0..n).map(|_| r.gen()).collect())
            })
            .collect();
        for i in 0..2 {
            files.push((format!("big{i}"), (0..LARGE_FILE as usize + 300_000).map(|_| r.gen()).collect()));
        }
        let mut w = v.begin_write("test", Duration::ZERO).unwrap();
        let mut root = None;
        let mut logical = 0;
        for (path, content) in &files {
            let st = w.store_stream(&mut &content[..]).unwrap();
            let comps = crate::repo::trees::split_path(path).unwrap();
            root = Some(w.set_path(root, &comps, file_node(st.content, st.size)).unwrap().0);
            logical += st.size;
        }
        w.commit("2026-11-20", None, root.unwrap(), files.len() as u64, logical).unwrap();
        drop(w);
        (m, v, files)
    }

    /// Every path under `dir` whose name starts with `.vr-` (a temporary name left behind).
    fn partials(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(partials(&p));
            } else if p.file_name().unwrap().to_string_lossy().starts_with(".vr-") {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn a_tree_of_many_files_comes_back_exactly_with_its_metadata() {
        let (_m, v, files) = vault_with_a_tree(400);
        let dest = tempfile::tempdir().unwrap();
        let out = dest.path().join("out");
        let r = restore(&v, "2026-11-20", &out, false).unwrap();
        assert_eq!(r.files, files.len() as u64);
        assert_eq!(r.bytes, files.iter().map(|f| f.1.len() as u64).sum::<u64>());
        for (path, content) in &files {
            let p = out.join(path);
            assert!(fs::read(&p).unwrap() == *content, "{path}");
            let md = fs::metadata(&p).unwrap();
            assert_eq!(
                (md.mode() & 0o7777, md.mtime(), md.mtime_nsec()),
                (0o640, 1_700_000_000, 123_456_789),
                "{path}"
            );
        }
        assert!(partials(&out).is_empty());
        // The destination keeps its own times (a period's root has none to give it).
        use std::os::unix::fs::MetadataExt;
        assert!(fs::metadata(&out).unwrap().mtime() > 1_700_000_000);
        // A second restore into the same place is refused, then replaces every file.
        assert_eq!(restore(&v, "2026-11-20", &out, false).unwrap_err().kind(), crate::ErrorKind::AlreadyExists);
        assert_eq!(restore(&v, "2026-11-20", &out, true).unwrap().files, files.len() as u64);
        assert!(fs::read(out.join(&files[17].0)).unwrap() == files[17].1);
    }

    #[test]
    fn a_damaged_pack_stops_the_restore_and_no_file_is_left_short() {
        let (m, v, files) = vault_with_a_tree(400);
        let packs = m.list(ObjKind::Pack).unwrap();
        let (name, size) = packs.iter().max_by_key(|p| p.1).unwrap().clone();
        m.mutate(ObjKind::Pack, &name, |b| b[size as usize / 2] ^= 1);
        let dest = tempfile::tempdir().unwrap();
        let out = dest.path().join("out");
        let err = restore(&v, "2026-11-20", &out, false).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        assert!(partials(&out).is_empty(), "{:?}", partials(&out));
        // What was restored is whole; what was not is absent.
        let mut restored = 0;
        for (path, content) in &files {
            if let Ok(b) = fs::read(out.join(path)) {
                assert!(b == *content, "{path} restored short or wrong");
                restored += 1;
            }
        }
        assert!(restored < files.len());
    }
}
