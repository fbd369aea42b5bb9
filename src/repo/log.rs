//! The vault's log: one sealed JSON object per event (drills, syncs), under a fresh random
//! name in `logs/`. Appending never touches an existing object, so it needs no lock and cannot
//! disturb a writer; every copy of the vault carries the evidence.

use super::Vault;
use crate::crypto::Domain;
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::store::ObjKind;

/// Appends an entry; returns the name of the new log object.
pub fn append(v: &Vault, entry: &serde_json::Value) -> Result<String> {
    let id = SnapshotId::random();
    let sealed = v.sealer.seal(Domain::Log, id.as_bytes(), entry.to_string().as_bytes());
    v.store.put(ObjKind::Log, &id.to_hex(), &sealed)?;
    Ok(id.to_hex())
}

/// Every entry, oldest first by its `time_unix` (or `started_unix`) field.
pub fn entries(v: &Vault) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for (name, _) in v.store.list(ObjKind::Log)? {
        let id = SnapshotId::from_hex(&name)?;
        let raw = v.store.get(ObjKind::Log, &name)?;
        let plain = v
            .sealer
            .open(Domain::Log, id.as_bytes(), &raw)
            .map_err(|e| e.context(format!("log entry {}", id.short())))?;
        let value: serde_json::Value =
            serde_json::from_slice(&plain).map_err(|e| Error::corrupt(format!("log entry {}: {e}", id.short())))?;
        out.push(value);
    }
    let t = |j: &serde_json::Value| j["time_unix"].as_i64().or_else(|| j["started_unix"].as_i64()).unwrap_or(0);
    out.sort_by_key(t);
    Ok(out)
}
