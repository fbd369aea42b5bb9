//! `key add|list|remove|passwd`: managing the slots that wrap the master key.
//!
//! A new slot is written (durably) before any old one is removed, and the last slot can never
//! be removed, so no sequence of these commands can lock everyone out.

use crate::crypto::{slot, Secret};
use crate::error::{Error, ErrorKind, Result};
use crate::format::keyslot::SlotKind;
use crate::id::SlotId;
use crate::repo::{now_unix, Vault};
use crate::store::ObjKind;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub id: SlotId,
    pub kind: &'static str,
    pub label: String,
    pub created_unix: i64,
    pub current: bool,
    /// Argon2id parameters of a passphrase slot (memory in KiB, passes, lanes); 0 for a raw key.
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

pub fn list(v: &Vault) -> Result<Vec<SlotInfo>> {
    let mut out = Vec::new();
    for (id, s) in v.key_slots()? {
        let s = s?;
        out.push(SlotInfo {
            id,
            kind: match s.kind {
                SlotKind::Passphrase => "passphrase",
                SlotKind::RawKey => "raw-key",
            },
            label: s.label,
            created_unix: s.created_unix,
            current: id == v.unlocked_slot(),
            m_cost_kib: s.m_cost_kib,
            t_cost: s.t_cost,
            p_cost: s.p_cost,
        });
    }
    Ok(out)
}

pub fn add(v: &Vault, new: &Secret, label: &str, lock_wait: Duration) -> Result<SlotId> {
    let _w = v.begin_write("vaultctl key add", lock_wait)?;
    add_locked(v, new, label)
}

fn add_locked(v: &Vault, new: &Secret, label: &str) -> Result<SlotId> {
    let master = unwrap_current(v)?;
    let (id, s) = slot::create(&master, new, label, &v.vault_id, now_unix())?;
    v.store.put(ObjKind::Key, &id.to_hex(), &s.encode())?;
    Ok(id)
}

/// Re-opens the slot used to unlock, to get the master key for wrapping (the open vault keeps
/// only derived subkeys).
fn unwrap_current(v: &Vault) -> Result<crate::crypto::MasterKey> {
    v.master.clone().ok_or_else(|| Error::new(ErrorKind::WrongKey, "the master key is not available"))
}

/// Finds one slot by a unique prefix of its id.
pub fn find(v: &Vault, prefix: &str) -> Result<SlotId> {
    let p = prefix.to_ascii_lowercase();
    let matches: Vec<SlotId> =
        v.key_slots()?.into_iter().map(|(id, _)| id).filter(|id| id.to_hex().starts_with(&p)).collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::not_found(format!("no key slot with id {prefix:?} (see `vaultctl key list`)"))),
        _ => Err(Error::invalid(format!("{prefix:?} matches several key slots; give more of the id"))),
    }
}

pub fn remove(v: &Vault, prefix: &str, lock_wait: Duration) -> Result<SlotId> {
    if prefix.len() < 4 {
        return Err(Error::invalid("give at least 4 hex digits of the slot id"));
    }
    let _w = v.begin_write("vaultctl key remove", lock_wait)?;
    let id = find(v, prefix)?;
    if v.key_slots()?.len() <= 1 {
        return Err(Error::invalid("refusing to remove the last key slot: the vault could never be opened again"));
    }
    v.store.delete(ObjKind::Key, &id.to_hex())?;
    Ok(id)
}

/// Replaces the secret of the slot used to unlock: new slot first, then the old one goes.
pub fn passwd(v: &Vault, new: &Secret, lock_wait: Duration) -> Result<SlotId> {
    let _w = v.begin_write("vaultctl key passwd", lock_wait)?;
    let old = v.unlocked_slot();
    let label = v
        .key_slots()?
        .into_iter()
        .find(|(id, _)| *id == old)
        .and_then(|(_, s)| s.ok())
        .map(|s| s.label)
        .unwrap_or_default();
    let id = add_locked(v, new, &label)?;
    v.store.delete(ObjKind::Key, &old.to_hex())?;
    Ok(id)
}
