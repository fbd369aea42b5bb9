//! The one place where engine errors become errno values.
//!
//! Corruption is EIO, a sealed snapshot EROFS, a full disk ENOSPC: never ENOENT or ENOSYS for
//! those, so that a backup job sees a real failure.

use vault::ErrorKind;

pub fn errno(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::NotFound => libc::ENOENT,
        ErrorKind::AlreadyExists => libc::EEXIST,
        ErrorKind::WrongKey => libc::EACCES,
        ErrorKind::Corrupt => libc::EIO,
        ErrorKind::Unsupported => libc::EOPNOTSUPP,
        ErrorKind::Locked => libc::EBUSY,
        ErrorKind::NoSpace => libc::ENOSPC,
        ErrorKind::ReadOnly => libc::EROFS,
        ErrorKind::InvalidInput => libc::EINVAL,
        ErrorKind::Io => libc::EIO,
        ErrorKind::NotDir => libc::ENOTDIR,
        ErrorKind::IsDir => libc::EISDIR,
        ErrorKind::NotEmpty => libc::ENOTEMPTY,
        ErrorKind::NotPermitted => libc::EPERM,
        ErrorKind::NameTooLong => libc::ENAMETOOLONG,
        ErrorKind::CrossDevice => libc::EXDEV,
        ErrorKind::TooManyLinks => libc::EMLINK,
    }
}

/// Whether a failure deserves a log line (expected misses such as ENOENT on lookup do not).
pub fn worth_logging(kind: ErrorKind) -> bool {
    !matches!(
        kind,
        ErrorKind::NotFound
            | ErrorKind::AlreadyExists
            | ErrorKind::NotEmpty
            | ErrorKind::NameTooLong
            | ErrorKind::CrossDevice
            | ErrorKind::TooManyLinks
            | ErrorKind::NotDir
            | ErrorKind::IsDir
            | ErrorKind::NotPermitted
            | ErrorKind::InvalidInput
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn storage_failures_are_never_enoent() {
        assert_eq!(errno(ErrorKind::Corrupt), libc::EIO);
        assert_eq!(errno(ErrorKind::ReadOnly), libc::EROFS);
        assert_eq!(errno(ErrorKind::NoSpace), libc::ENOSPC);
    }
}
