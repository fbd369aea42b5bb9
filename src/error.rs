//! The one error type of the engine.
//!
//! Policy: every fallible engine function returns [`Error`], whose [`ErrorKind`] says what kind
//! of failure it is (so that the mount can map it to one errno and the CLI to one exit code)
//! and whose message says, in words an operator understands, what failed and on which object.
//! Corruption is always [`ErrorKind::Corrupt`], never "not found"; a full disk is
//! [`ErrorKind::NoSpace`]. Binaries add context with `anyhow`; the library never panics on
//! bad input.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A named object, snapshot or path does not exist.
    NotFound,
    /// The object or name already exists (init into a non-empty dir, duplicate name).
    AlreadyExists,
    /// No key slot opens with the given passphrase or key.
    WrongKey,
    /// Stored bytes failed authentication, decoding or a consistency check.
    Corrupt,
    /// A format version or feature this build does not know.
    Unsupported,
    /// Another process holds the vault's write lock.
    Locked,
    /// The disk (or quota) is full.
    NoSpace,
    /// The target is sealed (immutable) or the vault is opened read-only.
    ReadOnly,
    /// The caller passed something invalid (a bad name, size, option).
    InvalidInput,
    /// Any other I/O failure.
    Io,
    /// A path component is not a directory.
    NotDir,
    /// The operation needs a non-directory.
    IsDir,
    /// A directory to remove or replace is not empty.
    NotEmpty,
    /// The operation is refused by design (reserved names).
    NotPermitted,
    /// A name longer than 255 bytes, or a symlink target longer than 4095.
    NameTooLong,
    /// A rename or link between two periods (they are separate trees).
    CrossDevice,
    /// A file has the most hard links it may have.
    TooManyLinks,
}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    msg: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error { kind, msg: msg.into(), source: None }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// A copy of the kind and message (without the source), to report one failure twice.
    pub fn clone_shallow(&self) -> Self {
        Error { kind: self.kind, msg: self.msg.clone(), source: None }
    }
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, msg)
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, msg)
    }
    pub fn read_only(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::ReadOnly, msg)
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, msg)
    }
    /// An I/O error on `what`; ENOSPC/EDQUOT become [`ErrorKind::NoSpace`], ENOENT
    /// [`ErrorKind::NotFound`].
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        let kind = match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorKind::NoSpace,
            Some(libc::EROFS) => ErrorKind::ReadOnly,
            _ if e.kind() == std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        let msg = match kind {
            ErrorKind::NoSpace => format!("{what}: no space left on device"),
            _ => format!("{what}: {e}"),
        };
        Error { kind, msg, source: Some(Box::new(e)) }
    }
    /// Prefix the message with what was being done, keeping the kind.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Adds `.ctx("what")` to results of the engine's own error type.
pub trait ResultExt<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_no_space() {
        let e = Error::io("writing pack", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        assert_eq!(e.to_string(), "writing pack: no space left on device");
    }

    #[test]
    fn context_keeps_kind() {
        let e = Error::corrupt("bad tag").context("pack 00ff");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(e.to_string(), "pack 00ff: bad tag");
    }
}

/// An error and its causes on one line, `outer: inner: ...`, leaving out a cause whose text
/// the line already holds (the engine's errors name their cause in their own message).
pub fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        // "No space left on device (os error 28)" is named by "…: no space left on device".
        let bare = s.split(" (os error").next().unwrap_or(&s).to_lowercase();
        if !out.to_lowercase().contains(&bare) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[test]
    fn a_cause_already_named_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::new(Error::io("reading secret file /x", io)).context("opening the vault");
        assert_eq!(
            chain_text(&*e),
            "opening the vault: reading secret file /x: No such file or directory (os error 2)"
        );
        let full = Error::io("writing pack 1234", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(chain_text(&full), "writing pack 1234: no space left on device");
    }
}
