//! The bytes-only object store: named objects of a few kinds, nothing else.
//!
//! Every backend (local directory, memory, and the remote kinds) implements [`Store`] and
//! passes the shared conformance suite in `conformance`. Retry, fault injection and caching are
//! wrappers around a `Store`, never special cases inside the engine. A store knows nothing of
//! encryption or of what the bytes mean.
//!
//! Contract: `put` is atomic and durable when it returns (readers see the old object or the
//! new one, never a prefix; a crash after `put` returned keeps the object). `list` never shows
//! an object that a concurrent `put` has not finished.

pub mod cache;
pub mod fault;
pub mod local;
pub mod location;
pub mod memory;
mod rcd;
pub mod rclone;
pub mod remote_lock;
pub mod s3;
mod s3_versions;
pub mod versions;

/// The shared backend tests; public so that the integration tests can run them against
/// servers they start (S3, rclone).
#[doc(hidden)]
pub mod conformance;

use crate::error::Result;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum ObjKind {
    #[default]
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Log,
    /// Offsite bookkeeping, never part of a vault (not in [`ObjKind::ALL`]): a sync's lock
    /// object on a remote (`locks/<id>`).
    Lock,
    /// Offsite bookkeeping: the manifests of an append-only remote, one new object per sync
    /// (`manifests/<time>-<id>`), where `manifest` cannot be replaced.
    Manifest,
}

/// Top-level objects of kind `Config`: the vault config, the remotes registry, the retention
/// policy, and (in an offsite copy) the sync manifest.
pub const CONFIG_NAMES: [&str; 4] = ["config", "remotes", "policy", "manifest"];

impl ObjKind {
    /// The kinds that make up a vault.
    pub const ALL: [ObjKind; 6] =
        [ObjKind::Config, ObjKind::Key, ObjKind::Pack, ObjKind::Index, ObjKind::Snapshot, ObjKind::Log];

    pub fn code(self) -> u8 {
        match self {
            ObjKind::Config => 0,
            ObjKind::Key => 1,
            ObjKind::Pack => 2,
            ObjKind::Index => 3,
            ObjKind::Snapshot => 4,
            ObjKind::Log => 5,
            ObjKind::Lock => 6,
            ObjKind::Manifest => 7,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        ObjKind::ALL.into_iter().find(|k| k.code() == c)
    }

    /// Directory (or key prefix) of the kind; `Config` lives at the top as the file `config`.
    pub fn dir(self) -> &'static str {
        match self {
            ObjKind::Config => "",
            ObjKind::Key => "keys",
            ObjKind::Pack => "packs",
            ObjKind::Index => "index",
            ObjKind::Snapshot => "snapshots",
            ObjKind::Log => "logs",
            ObjKind::Lock => "locks",
            ObjKind::Manifest => "manifests",
        }
    }

    /// Relative path of an object: packs are fanned out by the first two hex digits.
    pub fn path(self, name: &str) -> String {
        match self {
            ObjKind::Config => name.to_string(),
            ObjKind::Pack if name.len() > 2 => format!("packs/{}/{}", &name[..2], name),
            _ => format!("{}/{}", self.dir(), name),
        }
    }
}

/// The object at a path relative to a vault's root (`packs/ab/abcd…`, `index/…`, `config`),
/// if the path is one the layout names.
pub fn parse_rel(rel: &str) -> Option<(ObjKind, String)> {
    let parts: Vec<&str> = rel.split('/').collect();
    let (kind, name) = match parts.as_slice() {
        [n] if CONFIG_NAMES.contains(n) => (ObjKind::Config, *n),
        [d, fan, n] if *d == "packs" && n.len() > 2 && n.starts_with(fan) => (ObjKind::Pack, *n),
        [d, n] if *d == "packs" && n.len() <= 2 => (ObjKind::Pack, *n),
        [d, n] => {
            let kind =
                [ObjKind::Key, ObjKind::Index, ObjKind::Snapshot, ObjKind::Log, ObjKind::Lock, ObjKind::Manifest]
                    .into_iter()
                    .find(|k| k.dir() == *d)?;
            (kind, *n)
        }
        _ => return None,
    };
    local::check_name(kind, name).ok()?;
    Some((kind, name.to_string()))
}

/// Object Lock retention modes (S3): governance retention can be lifted by an account holding
/// `s3:BypassGovernanceRetention`, compliance retention by nobody before it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }
}

/// A retention date on one object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    /// Unix seconds.
    pub until: i64,
}

/// One version of an object in a versioned store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjVersion {
    pub kind: ObjKind,
    pub name: String,
    pub version_id: String,
    /// The current version of its name.
    pub latest: bool,
    /// A delete marker: the name did not exist from this version on.
    pub delete_marker: bool,
    /// When the version was written (unix nanoseconds).
    pub modified_ns: i64,
    pub size: u64,
}

/// What a versioned store with Object Lock (S3) adds to [`Store`]: its history, and retention
/// dates on versions. Implemented by `s3::S3Store`.
pub trait Versioned: Send + Sync {
    /// Whether the bucket has Object Lock enabled (then it is versioned too).
    fn lock_enabled(&self) -> Result<bool>;
    /// Every version and delete marker below the store's prefix whose path the layout names,
    /// oldest first within a name.
    fn list_versions(&self) -> Result<Vec<ObjVersion>>;
    /// Stores a new version, with a retention date if given; returns its version id.
    fn put_version(&self, kind: ObjKind, name: &str, data: &[u8], retention: Option<Retention>) -> Result<String>;
    fn get_version(&self, kind: ObjKind, name: &str, version: &str) -> Result<Vec<u8>>;
    fn get_version_range(&self, kind: ObjKind, name: &str, version: &str, offset: u64, len: u32) -> Result<Vec<u8>>;
    /// The retention of a version (`None`: none set).
    fn retention(&self, kind: ObjKind, name: &str, version: &str) -> Result<Option<Retention>>;
    /// Sets a later retention date on a version (extending is always allowed).
    fn set_retention(&self, kind: ObjKind, name: &str, version: &str, r: Retention) -> Result<()>;
    /// Deletes one version for good (refused by the server while it is retained).
    fn delete_version(&self, kind: ObjKind, name: &str, version: &str) -> Result<()>;
}

pub trait Store: Send + Sync {
    /// Where this store is, for messages ("/srv/vault", "memory").
    fn describe(&self) -> String;
    /// Stores `data` under (kind, name) atomically and durably, replacing any old object.
    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()>;
    /// Like `put`, for an object whose bytes are also the content of the local file `file`
    /// (sync from a local vault): a store that uploads from files may read `file` instead of
    /// copying `data` first. Only for files that never change once written (packs).
    fn put_file(&self, kind: ObjKind, name: &str, data: &[u8], file: &Path) -> Result<()> {
        let _ = file;
        self.put(kind, name, data)
    }
    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>>;
    /// `len` bytes at `offset`; an object shorter than `offset + len` is `Corrupt`.
    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>>;
    /// [`Store::get_range`] into `buf` (replacing its content), so that a reader can reuse one
    /// buffer's memory for many ranges.
    fn get_range_into(&self, kind: ObjKind, name: &str, offset: u64, len: u32, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.get_range(kind, name, offset, len)?;
        Ok(())
    }
    /// Names and sizes of every object of a kind, in no particular order.
    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>>;
    /// Removes an object; removing a missing object is not an error.
    fn delete(&self, kind: ObjKind, name: &str) -> Result<()>;
    /// Size of one object, `NotFound` if it does not exist.
    fn size(&self, kind: ObjKind, name: &str) -> Result<u64>;
    /// The local directory behind this store, if any (used for the writer lock and to refuse
    /// overlapping paths).
    fn local_path(&self) -> Option<&Path> {
        None
    }
    /// Removes leftovers of interrupted `put`s. Called only by the holder of the write lock.
    fn remove_temporaries(&self) -> Result<usize> {
        Ok(0)
    }
    /// The append-only journal files of a writable mount (docs/DESIGN.md §10b); only stores
    /// that a mount can write have them.
    fn journals(&self) -> Option<&dyn Journals> {
        None
    }
    /// The versioned face of this store, if it has one (S3).
    fn versioned(&self) -> Option<&dyn Versioned> {
        None
    }
}

/// One journal file, appended to by one writer.
pub trait JournalFile: Send + Sync {
    /// Appends `data` at the end. On error the file is cut back to its previous length, so a
    /// failed append never leaves part of a record behind.
    fn append(&self, data: &[u8]) -> Result<()>;
    /// Makes everything appended so far durable (`fdatasync`).
    fn sync(&self) -> Result<()>;
}

/// The journal files of a vault: local only, never part of an offsite copy. Names are 32 hex
/// digits, or that followed by `.damaged` for a journal kept after damage was found.
pub trait Journals: Send + Sync {
    /// Creates a new journal holding `header`, durable (file and directory) when it returns.
    fn create(&self, name: &str, header: &[u8]) -> Result<std::sync::Arc<dyn JournalFile>>;
    fn list(&self) -> Result<Vec<String>>;
    fn read(&self, name: &str) -> Result<Vec<u8>>;
    fn remove(&self, name: &str) -> Result<()>;
    fn rename(&self, from: &str, to: &str) -> Result<()>;
}

/// Valid journal file names: 32 hex digits, optionally followed by `.damaged`.
pub fn journal_name_ok(name: &str) -> bool {
    let base = name.strip_suffix(".damaged").unwrap_or(name);
    base.len() == 32 && base.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_name_objects() {
        assert_eq!(parse_rel("config"), Some((ObjKind::Config, "config".into())));
        assert_eq!(parse_rel("packs/ab/abcd"), Some((ObjKind::Pack, "abcd".into())));
        assert_eq!(parse_rel("packs/ac/abcd"), None);
        assert_eq!(parse_rel("index/ff00"), Some((ObjKind::Index, "ff00".into())));
        assert_eq!(parse_rel("locks/x1"), Some((ObjKind::Lock, "x1".into())));
        assert_eq!(parse_rel("other/x1"), None);
        assert_eq!(parse_rel("index/.tmp-1"), None);
        assert_eq!(parse_rel("nonsense"), None);
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"vault:pw"), "dmF1bHQ6cHc=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
