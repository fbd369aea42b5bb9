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

/// Every entry of a type this build knows, oldest first (see [`Record::time_unix`]); an
/// entry that cannot be read is an error.
pub fn entries(v: &Vault) -> Result<Vec<Record>> {
    let (out, damaged) = readable_entries(v)?;
    match damaged.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// [`entries`], and apart the entries that cannot be read (damaged: `check` names them,
/// `status` and `report` say how many), each as an error naming `logs/<name>`.
pub fn readable_entries(v: &Vault) -> Result<(Vec<Record>, Vec<Error>)> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    for (name, _) in v.store.list(ObjKind::Log)? {
        let Ok(id) = SnapshotId::from_hex(&name) else { continue };
        let raw = match v.store.get(ObjKind::Log, &name) {
            Ok(r) => r,
            Err(e) if e.kind() == crate::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let parsed = v
            .sealer
            .open(Domain::Log, id.as_bytes(), &raw)
            .and_then(|plain| Record::parse(&plain).map_err(Error::corrupt))
            .map_err(|e| e.context(format!("log entry logs/{name}")));
        match parsed {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => damaged.push(e),
        }
    }
    out.sort_by_key(Record::time_unix);
    Ok((out, damaged))
}
