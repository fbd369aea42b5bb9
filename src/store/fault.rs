//! Fault injection: a wrapper that stops persisting at the N-th write step (a simulated crash
//! or a full disk), so tests can assert the write order keeps every earlier snapshot intact.
//! Write steps are object `put`s and, for the mount's journal, journal creations, appends and
//! syncs.

use super::{JournalFile, Journals, ObjKind, Store};
use crate::error::{Error, ErrorKind, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct FaultStore {
    inner: Arc<dyn Store>,
    steps_left: Arc<AtomicU64>,
    kind: ErrorKind,
}

fn take(left: &AtomicU64, kind: ErrorKind, what: impl std::fmt::Display) -> Result<()> {
    if left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        Ok(())
    } else {
        Err(Error::new(kind, format!("{what}: injected fault")))
    }
}

impl FaultStore {
    /// Lets `ok_steps` write steps through, then fails every later one with `kind` (NoSpace
    /// or Io).
    pub fn fail_after(inner: Arc<dyn Store>, ok_steps: u64, kind: ErrorKind) -> Self {
        FaultStore { inner, steps_left: Arc::new(AtomicU64::new(ok_steps)), kind }
    }

    /// Lets `n` more write steps through from now on (`u64::MAX`: space was freed).
    pub fn allow(&self, n: u64) {
        self.steps_left.store(n, Ordering::SeqCst);
    }

    /// Write steps left before the fault.
    pub fn left(&self) -> u64 {
        self.steps_left.load(Ordering::SeqCst)
    }
}

impl Store for FaultStore {
    fn describe(&self) -> String {
        format!("fault({})", self.inner.describe())
    }
    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()> {
        take(&self.steps_left, self.kind, format_args!("writing {}", kind.path(name)))?;
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
    fn journals(&self) -> Option<&dyn Journals> {
        self.inner.journals().map(|_| self as &dyn Journals)
    }
}

struct FaultJournal {
    inner: Arc<dyn JournalFile>,
    steps_left: Arc<AtomicU64>,
    kind: ErrorKind,
}

impl JournalFile for FaultJournal {
    fn append(&self, data: &[u8]) -> Result<()> {
        take(&self.steps_left, self.kind, "appending to the journal")?;
        self.inner.append(data)
    }
    fn sync(&self) -> Result<()> {
        take(&self.steps_left, self.kind, "syncing the journal")?;
        self.inner.sync()
    }
}

impl Journals for FaultStore {
    fn create(&self, name: &str, header: &[u8]) -> Result<Arc<dyn JournalFile>> {
        let j = self.inner.journals().ok_or_else(|| Error::read_only("no journals here"))?;
        take(&self.steps_left, self.kind, format_args!("creating journal/{name}"))?;
        let f = j.create(name, header)?;
        Ok(Arc::new(FaultJournal { inner: f, steps_left: self.steps_left.clone(), kind: self.kind }))
    }
    fn list(&self) -> Result<Vec<String>> {
        self.inner.journals().map(|j| j.list()).unwrap_or_else(|| Ok(Vec::new()))
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.inner.journals().ok_or_else(|| Error::not_found("no journals here"))?.read(name)
    }
    fn remove(&self, name: &str) -> Result<()> {
        self.inner.journals().ok_or_else(|| Error::read_only("no journals here"))?.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.journals().ok_or_else(|| Error::read_only("no journals here"))?.rename(from, to)
    }
}
