//! An in-memory store for tests and for the model-based checks of the engine.

use super::{JournalFile, Journals, ObjKind, Store};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<(ObjKind, String), Vec<u8>>>,
    journals: Arc<Mutex<HashMap<String, MemJournal>>>,
}

/// A journal's bytes and how many of them a `sync` made durable.
#[derive(Default, Clone)]
struct MemJournal {
    data: Vec<u8>,
    durable: usize,
}

struct MemJournalFile {
    name: String,
    all: Arc<Mutex<HashMap<String, MemJournal>>>,
}

impl JournalFile for MemJournalFile {
    fn append(&self, data: &[u8]) -> Result<()> {
        let mut m = self.all.lock().unwrap_or_else(|e| e.into_inner());
        let j = m.get_mut(&self.name).ok_or_else(|| Error::not_found(format!("journal/{}: gone", self.name)))?;
        j.data.extend_from_slice(data);
        Ok(())
    }
    fn sync(&self) -> Result<()> {
        let mut m = self.all.lock().unwrap_or_else(|e| e.into_inner());
        let j = m.get_mut(&self.name).ok_or_else(|| Error::not_found(format!("journal/{}: gone", self.name)))?;
        j.durable = j.data.len();
        Ok(())
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// What a restart after a power loss right now would find: a copy of every object, and
    /// of every journal up to its last `sync`.
    pub fn durable_copy(&self) -> MemoryStore {
        let objects = self.map().clone();
        let journals: HashMap<String, MemJournal> = self
            .journals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, j)| (k.clone(), MemJournal { data: j.data[..j.durable].to_vec(), durable: j.durable }))
            .collect();
        MemoryStore { objects: Mutex::new(objects), journals: Arc::new(Mutex::new(journals)) }
    }
    /// A power loss: every journal loses what was appended after its last `sync`.
    pub fn crash(&self) {
        for j in self.journals.lock().unwrap_or_else(|e| e.into_inner()).values_mut() {
            j.data.truncate(j.durable);
        }
    }
    /// Direct access for tests that damage journals.
    pub fn mutate_journal(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(j) = self.journals.lock().unwrap_or_else(|e| e.into_inner()).get_mut(name) {
            f(&mut j.data);
            j.durable = j.durable.min(j.data.len());
        }
    }
    /// Direct access for tests that damage objects.
    pub fn mutate(&self, kind: ObjKind, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(v) = self.objects.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&(kind, name.to_string())) {
            f(v)
        }
    }
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(ObjKind, String), Vec<u8>>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()> {
        self.map().insert((kind, name.to_string()), data.to_vec());
        Ok(())
    }
    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>> {
        self.map()
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(|| Error::not_found(format!("{}: no such object", kind.path(name))))
    }
    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        let m = self.map();
        let v = m
            .get(&(kind, name.to_string()))
            .ok_or_else(|| Error::not_found(format!("{}: no such object", kind.path(name))))?;
        let end = offset.checked_add(len as u64).filter(|e| *e <= v.len() as u64).ok_or_else(|| {
            Error::corrupt(format!(
                "{}: truncated (wanted {len} bytes at offset {offset}, size {})",
                kind.path(name),
                v.len()
            ))
        })?;
        Ok(v[offset as usize..end as usize].to_vec())
    }
    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>> {
        Ok(self.map().iter().filter(|((k, _), _)| *k == kind).map(|((_, n), v)| (n.clone(), v.len() as u64)).collect())
    }
    fn delete(&self, kind: ObjKind, name: &str) -> Result<()> {
        self.map().remove(&(kind, name.to_string()));
        Ok(())
    }
    fn size(&self, kind: ObjKind, name: &str) -> Result<u64> {
        self.map()
            .get(&(kind, name.to_string()))
            .map(|v| v.len() as u64)
            .ok_or_else(|| Error::not_found(format!("{}: no such object", kind.path(name))))
    }
    fn journals(&self) -> Option<&dyn Journals> {
        Some(self)
    }
}

impl Journals for MemoryStore {
    fn create(&self, name: &str, header: &[u8]) -> Result<Arc<dyn JournalFile>> {
        let mut m = self.journals.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(name) {
            return Err(Error::new(crate::ErrorKind::AlreadyExists, format!("journal/{name} exists")));
        }
        m.insert(name.to_string(), MemJournal { data: header.to_vec(), durable: header.len() });
        Ok(Arc::new(MemJournalFile { name: name.to_string(), all: self.journals.clone() }))
    }
    fn list(&self) -> Result<Vec<String>> {
        Ok(self.journals.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect())
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.journals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|j| j.data.clone())
            .ok_or_else(|| Error::not_found(format!("journal/{name}: no such journal")))
    }
    fn remove(&self, name: &str) -> Result<()> {
        self.journals.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        Ok(())
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut m = self.journals.lock().unwrap_or_else(|e| e.into_inner());
        let j = m.remove(from).ok_or_else(|| Error::not_found(format!("journal/{from}: no such journal")))?;
        m.insert(to.to_string(), j);
        Ok(())
    }
}
