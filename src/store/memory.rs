//! An in-memory store for tests and for the model-based checks of the engine.

use super::{ObjKind, Store};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<(ObjKind, String), Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
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
}
