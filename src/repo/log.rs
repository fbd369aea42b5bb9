//! The vault's log: one sealed JSON object per event (format/log.rs: jobs, syncs, drills,
//! prunes), under a fresh random name in `logs/`. Appending never touches an existing object,
//! so it needs no lock and cannot disturb a writer; every copy of the vault carries the
//! evidence.

use super::Vault;
use crate::crypto::Domain;
use crate::error::{Error, Result};
use crate::format::log::Record;
use crate::id::SnapshotId;
use crate::store::ObjKind;

/// Appends an entry; returns the name of the new log object.
pub fn append(v: &Vault, entry: &Record) -> Result<String> {
    let id = SnapshotId::random();
    let sealed = v.sealer.seal(Domain::Log, id.as_bytes(), entry.to_json().as_bytes());
    v.store.put(ObjKind::Log, &id.to_hex(), &sealed)?;
    Ok(id.to_hex())
}

/// Every entry of a type this build knows, oldest first (see [`Record::time_unix`]).
pub fn entries(v: &Vault) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (name, _) in v.store.list(ObjKind::Log)? {
        let id = SnapshotId::from_hex(&name)?;
        let raw = v.store.get(ObjKind::Log, &name)?;
        let plain = v
            .sealer
            .open(Domain::Log, id.as_bytes(), &raw)
            .map_err(|e| e.context(format!("log entry {}", id.short())))?;
        if let Some(r) = Record::parse(&plain).map_err(|e| Error::corrupt(format!("log entry {}: {e}", id.short())))? {
            out.push(r);
        }
    }
    out.sort_by_key(Record::time_unix);
    Ok(out)
}
