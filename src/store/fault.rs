//! Fault injection: a wrapper that stops persisting at the N-th `put` (a simulated crash or a
//! full disk), so tests can assert the write order keeps every earlier snapshot intact.

use super::{ObjKind, Store};
use crate::error::{Error, ErrorKind, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct FaultStore {
    inner: Arc<dyn Store>,
    puts_left: AtomicU64,
    kind: ErrorKind,
}

impl FaultStore {
    /// Lets `ok_puts` puts through, then fails every later put with `kind` (NoSpace or Io).
    pub fn fail_after(inner: Arc<dyn Store>, ok_puts: u64, kind: ErrorKind) -> Self {
        FaultStore { inner, puts_left: AtomicU64::new(ok_puts), kind }
    }
}

impl Store for FaultStore {
    fn describe(&self) -> String {
        format!("fault({})", self.inner.describe())
    }
    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()> {
        let ok = self.puts_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if !ok {
            return Err(Error::new(self.kind, format!("writing {}: injected fault", kind.path(name))));
        }
        self.inner.put(kind, name, data)
    }
    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        self.inner.get_range(kind, name, offset, len)
    }
    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: ObjKind, name: &str) -> Result<()> {
        self.inner.delete(kind, name)
    }
    fn size(&self, kind: ObjKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
}
