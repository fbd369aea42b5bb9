//! Translation between fuser's callbacks and [`crate::fs::VaultFs`]. Nothing here decides
//! filesystem behaviour: every callback calls one method of the model and replies. Callbacks
//! run on several threads at once; the model does its own locking. No panics (a panic in a
//! callback would take the mount down): errors go through `errno.rs` and are logged once per
//! failed request.

use crate::errno::{errno, worth_logging};
use crate::fs::{Attr, Fh, Ino, Kind, SetAttr, VaultFs};
use crate::log;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner, OpenAccMode,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vault::format::tree::Time;

const TTL: Duration = Duration::from_secs(1);

pub struct FuseFs {
    inner: Arc<VaultFs>,
}

impl FuseFs {
    pub fn new(inner: Arc<VaultFs>) -> Self {
        FuseFs { inner }
    }
    fn fs(&self) -> &VaultFs {
        &self.inner
    }
}

fn time(t: Time) -> SystemTime {
    let d = Duration::new(t.sec.unsigned_abs(), 0);
    let base = if t.sec >= 0 { UNIX_EPOCH.checked_add(d) } else { UNIX_EPOCH.checked_sub(d) };
    base.and_then(|b| b.checked_add(Duration::from_nanos(t.nsec as u64))).unwrap_or(UNIX_EPOCH)
}

/// A time the kernel sent. fuser 0.18 turns the kernel's (seconds, nanoseconds) of a time
/// before 1970 into `EPOCH - (|seconds| s + nanoseconds ns)` instead of adding the
/// nanoseconds; this undoes that, so times before 1970 are kept exactly too.
fn from_request(t: TimeOrNow) -> Time {
    match t {
        TimeOrNow::SpecificTime(t) => match UNIX_EPOCH.duration_since(t) {
            Ok(before) if !before.is_zero() => Time { sec: -(before.as_secs() as i64), nsec: before.subsec_nanos() },
            _ => Time::from_system(t),
        },
        TimeOrNow::Now => Time::now(),
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
        crtime: time(a.ctime),
        kind: file_type(a.kind),
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: 128 * 1024,
        flags: 0,
    }
}

/// The process (thread group) a request comes from: FUSE reports the calling thread.
fn process_of(tid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Tgid:").map(|v| v.trim().parse().ok())))
        .flatten()
        .unwrap_or(tid)
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

/// Logs a failed request once and converts it.
fn fail(op: &str, what: impl std::fmt::Display, e: &vault::Error) -> Errno {
    if worth_logging(e.kind()) {
        log(&format!("{op} {what}: {e}"));
    }
    Errno::from_i32(errno(e.kind()))
}

macro_rules! reply_or {
    ($reply:ident, $op:expr, $what:expr, $res:expr, |$v:ident| $ok:expr) => {
        match $res {
            Ok($v) => $ok,
            Err(e) => $reply.error(fail($op, $what, &e)),
        }
    };
}

impl fuser::Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.fs().shutdown() {
            log(&format!("unmount: committing failed: {e}"));
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.fs().lookup(Ino(parent.0), name.as_bytes());
        match r {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(fail("lookup", name.to_string_lossy(), &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_or!(reply, "getattr", ino.0, self.fs().getattr(Ino(ino.0)), |a| reply.attr(&TTL, &file_attr(&a)))
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let s = SetAttr { mode, uid, gid, size, atime: atime.map(from_request), mtime: mtime.map(from_request) };
        reply_or!(reply, "setattr", ino.0, self.fs().setattr(Ino(ino.0), &s), |a| reply.attr(&TTL, &file_attr(&a)))
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        reply_or!(reply, "readlink", ino.0, self.fs().readlink(Ino(ino.0)), |t| reply.data(&t))
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let r = self.fs().mkdir(Ino(parent.0), name.as_bytes(), mode & !umask, req.uid(), req.gid());
        reply_or!(reply, "mkdir", name.to_string_lossy(), r, |a| reply.entry(&TTL, &file_attr(&a), Generation(0)))
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_or!(reply, "unlink", name.to_string_lossy(), self.fs().unlink(Ino(parent.0), name.as_bytes()), |_v| reply
            .ok())
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_or!(reply, "rmdir", name.to_string_lossy(), self.fs().rmdir(Ino(parent.0), name.as_bytes()), |_v| reply
            .ok())
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let r =
            self.fs().symlink(Ino(parent.0), link_name.as_bytes(), target.as_os_str().as_bytes(), req.uid(), req.gid());
        reply_or!(reply, "symlink", link_name.to_string_lossy(), r, |a| reply.entry(
            &TTL,
            &file_attr(&a),
            Generation(0)
        ))
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let r = self.fs().rename(Ino(parent.0), name.as_bytes(), Ino(newparent.0), newname.as_bytes(), noreplace);
        reply_or!(reply, "rename", name.to_string_lossy(), r, |_v| reply.ok())
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let r = self.fs().link(Ino(ino.0), Ino(newparent.0), newname.as_bytes());
        reply_or!(reply, "link", newname.to_string_lossy(), r, |a| reply.entry(&TTL, &file_attr(&a), Generation(0)))
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let r = self.fs().mknod(Ino(parent.0), name.as_bytes(), mode & !umask, rdev as u64, req.uid(), req.gid());
        reply_or!(reply, "mknod", name.to_string_lossy(), r, |a| reply.entry(&TTL, &file_attr(&a), Generation(0)))
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_or!(reply, "fallocate", ino.0, self.fs().fallocate(Fh(fh.0), offset, length, mode), |_v| reply.ok())
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        let truncate = flags.0 & libc::O_TRUNC != 0;
        let owner = if write { process_of(req.pid()) } else { 0 };
        let r = self.fs().open(Ino(ino.0), write, truncate, owner);
        reply_or!(reply, "open", ino.0, r, |fh| reply.opened(FileHandle(fh.0), FopenFlags::empty()))
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = self.fs().read_fh(Fh(fh.0), offset, size as usize);
        reply_or!(reply, "read", format!("inode {} at {offset}", ino.0), r, |d| reply.data(&d))
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let r = self.fs().write(Fh(fh.0), offset, data);
        reply_or!(reply, "write", format!("inode {} at {offset}", ino.0), r, |n| reply.written(n as u32))
    }

    fn flush(&self, req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let caller = process_of(req.pid());
        reply_or!(reply, "close", ino.0, self.fs().flush(Fh(fh.0), caller), |_v| reply.ok())
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply_or!(reply, "release", ino.0, self.fs().release(Fh(fh.0)), |_v| reply.ok())
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_or!(reply, "fsync", ino.0, self.fs().fsync(Fh(fh.0)), |_v| reply.ok())
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty())
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = match self.fs().readdir(Ino(ino.0)) {
            Ok(e) => e,
            Err(e) => return reply.error(fail("readdir", ino.0, &e)),
        };
        let mut all: Vec<(u64, FileType, Vec<u8>)> =
            vec![(ino.0, FileType::Directory, b".".to_vec()), (ino.0, FileType::Directory, b"..".to_vec())];
        all.extend(entries.into_iter().map(|e| (e.ino.0, file_type(e.kind), e.name)));
        for (i, (ino, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok()
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_or!(reply, "fsyncdir", ino.0, self.fs().sync_dirs(), |_v| reply.ok())
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (total, free, bsize) = self.fs().statfs();
        let b = bsize.max(512) as u64;
        reply.statfs(total / b, free / b, free / b, 0, 0, bsize.max(512), 255, bsize.max(512))
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let owner = process_of(req.pid());
        let r = self.fs().create(Ino(parent.0), name.as_bytes(), mode & !umask, req.uid(), req.gid(), owner);
        match r {
            Ok((a, fh)) => reply.created(&TTL, &file_attr(&a), Generation(0), FileHandle(fh.0), FopenFlags::empty()),
            Err(e) => reply.error(fail("create", name.to_string_lossy(), &e)),
        }
    }
}
