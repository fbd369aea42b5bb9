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
pub mod memory;
mod rcd;
pub mod rclone;
pub mod s3;

/// The shared backend tests; public so that the integration tests can run them against
/// servers they start (S3, rclone).
#[doc(hidden)]
pub mod conformance;

use crate::error::Result;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjKind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Log,
}

/// Top-level objects of kind `Config`: the vault config, the remotes registry, the retention
/// policy, and (in an offsite copy) the sync manifest.
pub const CONFIG_NAMES: [&str; 4] = ["config", "remotes", "policy", "manifest"];

impl ObjKind {
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

pub trait Store: Send + Sync {
    /// Where this store is, for messages ("/srv/vault", "memory").
    fn describe(&self) -> String;
    /// Stores `data` under (kind, name) atomically and durably, replacing any old object.
    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()>;
    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>>;
    /// `len` bytes at `offset`; an object shorter than `offset + len` is `Corrupt`.
    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>>;
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
}
