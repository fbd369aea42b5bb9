//! A versioned store as it was at a moment: `--as-of TIME`.
//!
//! After an attack on an object-locked copy (deletes that only added delete markers,
//! overwrites that only added versions), the objects as they were before it still exist as
//! older versions. [`AsOf`] lists every version once (ListObjectVersions), keeps for each name
//! the newest version written at or before the moment (absent if that is a delete marker or
//! if nothing was written yet), and reads exactly those versions. It is read-only.
//!
//! The engine authenticates everything it reads, so a version that is not genuine fails as
//! loudly as it would in the current view; `--as-of` only chooses which bytes to try.

use super::{ObjKind, Store};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;

pub struct AsOf {
    inner: Arc<dyn Store>,
    /// (kind, name) -> (version id, size) current at the moment.
    at: HashMap<(ObjKind, String), (String, u64)>,
    what: String,
}

impl AsOf {
    /// The view of `inner` at `unix_ns` (nanoseconds since the epoch).
    pub fn new(inner: Arc<dyn Store>, unix_ns: i64, label: &str) -> Result<AsOf> {
        let what = format!("{} as of {label}", inner.describe());
        let v = inner.versioned().ok_or_else(|| {
            Error::invalid(format!("{}: --as-of needs a versioned store (an s3:// remote)", inner.describe()))
        })?;
        let mut at: HashMap<(ObjKind, String), (i64, Option<(String, u64)>)> = HashMap::new();
        for ver in v.list_versions()? {
            if ver.modified_ns > unix_ns {
                continue;
            }
            let cur = if ver.delete_marker { None } else { Some((ver.version_id.clone(), ver.size)) };
            let e = at.entry((ver.kind, ver.name.clone())).or_insert((i64::MIN, None));
            if ver.modified_ns >= e.0 {
                *e = (ver.modified_ns, cur);
            }
        }
        let at = at.into_iter().filter_map(|(k, (_, v))| v.map(|v| (k, v))).collect();
        Ok(AsOf { inner, at, what })
    }

    fn version(&self, kind: ObjKind, name: &str) -> Result<&(String, u64)> {
        self.at
            .get(&(kind, name.to_string()))
            .ok_or_else(|| Error::not_found(format!("{}: {} did not exist then", self.what, kind.path(name))))
    }

    fn versioned(&self) -> Result<&dyn super::Versioned> {
        self.inner.versioned().ok_or_else(|| Error::invalid(format!("{}: not versioned", self.what)))
    }
}

impl Store for AsOf {
    fn describe(&self) -> String {
        self.what.clone()
    }
    fn put(&self, kind: ObjKind, name: &str, _: &[u8]) -> Result<()> {
        Err(Error::read_only(format!("writing {}: {} is a view of the past", kind.path(name), self.what)))
    }
    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>> {
        let (id, _) = self.version(kind, name)?;
        self.versioned()?.get_version(kind, name, id)
    }
    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        let (id, size) = self.version(kind, name)?;
        if offset.saturating_add(len as u64) > *size {
            return Err(Error::corrupt(format!(
                "{}: {}: truncated (wanted {len} bytes at offset {offset}, size {size})",
                self.what,
                kind.path(name)
            )));
        }
        self.versioned()?.get_version_range(kind, name, id, offset, len)
    }
    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>> {
        Ok(self.at.iter().filter(|((k, _), _)| *k == kind).map(|((_, n), (_, s))| (n.clone(), *s)).collect())
    }
    fn delete(&self, kind: ObjKind, name: &str) -> Result<()> {
        Err(Error::read_only(format!("deleting {}: {} is a view of the past", kind.path(name), self.what)))
    }
    fn size(&self, kind: ObjKind, name: &str) -> Result<u64> {
        Ok(self.version(kind, name)?.1)
    }
}
