//! Wrapping and unwrapping the master key in key slots.
//!
//! Passphrase slots derive the wrapping key with Argon2id (parameters stored in the slot; new
//! slots use RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes computed in
//! parallel; slots made before keep their 64 MiB, 2 passes, 1 lane); raw-key slots derive it from the
//! 256-bit key and the slot's salt with BLAKE3 (a full-entropy key needs no stretching).
//! The master key is sealed with AES-256-GCM-SIV bound to the vault id and slot id, so a slot
//! file cannot be moved to another vault or renamed.

use super::aead::{Domain, Sealer};
use super::keys::{MasterKey, Secret};
use crate::error::{Error, ErrorKind, Result};
use crate::format::keyslot::{KeySlot, SlotKind};
use crate::id::SlotId;
use rand::RngCore;
use zeroize::Zeroizing;

/// Argon2id parameters of new passphrase slots: RFC 9106 section 4, second recommended option.
/// The 4 lanes are computed on all cores at once, so that a 2-core machine opens a vault
/// faster than with the earlier 2 passes over 1 lane, for 1.5 x the work.
pub const ARGON2_M_KIB: u32 = 64 * 1024;
pub const ARGON2_T: u32 = 3;
pub const ARGON2_P: u32 = 4;
/// Largest Argon2 memory we accept from a slot file (so a forged slot cannot exhaust memory).
const ARGON2_M_MAX_KIB: u32 = 4 * 1024 * 1024;

fn slot_aad_id(vault_id: &[u8; 16], slot: &SlotId) -> Vec<u8> {
    let mut v = vault_id.to_vec();
    v.extend_from_slice(slot.as_bytes());
    v
}

fn wrapping_key(slot: &KeySlot, secret: &Secret) -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    match (slot.kind, secret) {
        (SlotKind::Passphrase, Secret::Passphrase(p)) => {
            if slot.m_cost_kib > ARGON2_M_MAX_KIB || slot.t_cost > 64 || slot.p_cost > 64 {
                return Err(Error::corrupt("key slot: Argon2 parameters out of range"));
            }
            let params = argon2::Params::new(slot.m_cost_kib, slot.t_cost, slot.p_cost, Some(32))
                .map_err(|e| Error::corrupt(format!("key slot: bad Argon2 parameters: {e}")))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(p.as_bytes(), &slot.salt, &mut out[..])
                .map_err(|e| Error::corrupt(format!("key slot: Argon2 failed: {e}")))?;
        }
        (SlotKind::RawKey, Secret::RawKey(k)) => {
            let mut h = blake3::Hasher::new_keyed(k);
            h.update(b"vault v1 raw key slot");
            h.update(&slot.salt);
            out.copy_from_slice(h.finalize().as_bytes());
        }
        _ => return Err(Error::new(ErrorKind::WrongKey, "secret kind does not match slot kind")),
    }
    Ok(out)
}

/// Creates a new slot wrapping `master` under `secret`.
pub fn create(
    master: &MasterKey,
    secret: &Secret,
    label: &str,
    vault_id: &[u8; 16],
    now_unix: i64,
) -> Result<(SlotId, KeySlot)> {
    let id = SlotId::random();
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let (kind, m, t, p) = match secret {
        Secret::Passphrase(_) => (SlotKind::Passphrase, ARGON2_M_KIB, ARGON2_T, ARGON2_P),
        Secret::RawKey(_) => (SlotKind::RawKey, 0, 0, 0),
    };
    let mut slot = KeySlot {
        kind,
        created_unix: now_unix,
        label: label.chars().take(200).collect(),
        m_cost_kib: m,
        t_cost: t,
        p_cost: p,
        salt,
        wrapped: Vec::new(),
    };
    let wk = wrapping_key(&slot, secret)?;
    slot.wrapped = Sealer::new(&wk).seal(Domain::KeySlot, &slot_aad_id(vault_id, &id), master.expose());
    Ok((id, slot))
}

/// Tries to unwrap the master key; `WrongKey` if this secret does not open this slot.
pub fn open(id: &SlotId, slot: &KeySlot, secret: &Secret, vault_id: &[u8; 16]) -> Result<MasterKey> {
    let wk = wrapping_key(slot, secret)?;
    let plain = Zeroizing::new(
        Sealer::new(&wk)
            .open(Domain::KeySlot, &slot_aad_id(vault_id, id), &slot.wrapped)
            .map_err(|_| Error::new(ErrorKind::WrongKey, "wrong passphrase or key"))?,
    );
    if plain.len() != 32 {
        return Err(Error::corrupt("key slot: wrapped key has the wrong length"));
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&plain);
    Ok(MasterKey::from_bytes(k))
}

/// Whether a secret could open a slot of this kind (so we skip the costly mismatches).
pub fn kind_matches(slot: &KeySlot, secret: &Secret) -> bool {
    matches!((slot.kind, secret), (SlotKind::Passphrase, Secret::Passphrase(_)) | (SlotKind::RawKey, Secret::RawKey(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_key_slot_round_trip_and_binding() {
        let m = MasterKey::generate();
        let s = Secret::raw_key_from_hex(&"11".repeat(32)).unwrap();
        let (id, slot) = create(&m, &s, "k", &[1; 16], 0).unwrap();
        assert_eq!(open(&id, &slot, &s, &[1; 16]).unwrap().expose(), m.expose());
        let wrong = Secret::raw_key_from_hex(&"12".repeat(32)).unwrap();
        assert_eq!(open(&id, &slot, &wrong, &[1; 16]).unwrap_err().kind(), ErrorKind::WrongKey);
        assert_eq!(open(&id, &slot, &s, &[2; 16]).unwrap_err().kind(), ErrorKind::WrongKey);
        assert_eq!(open(&SlotId::random(), &slot, &s, &[1; 16]).unwrap_err().kind(), ErrorKind::WrongKey);
    }

    #[test]
    fn passphrase_slot() {
        let m = MasterKey::generate();
        let s = Secret::passphrase("correct horse".into()).unwrap();
        let (id, slot) = create(&m, &s, "", &[1; 16], 0).unwrap();
        assert_eq!(slot.m_cost_kib, ARGON2_M_KIB);
        assert_eq!(open(&id, &slot, &s, &[1; 16]).unwrap().expose(), m.expose());
        let wrong = Secret::passphrase("battery staple".into()).unwrap();
        assert_eq!(open(&id, &slot, &wrong, &[1; 16]).unwrap_err().kind(), ErrorKind::WrongKey);
    }

    /// The wrapping key is the reference implementation's Argon2id output, for the parameters
    /// of new slots and for those of slots made before them (values from Debian's `argon2`
    /// command: `printf 'correct horse battery staple' | argon2 0123456789abcdef -id -t T -m 16
    /// -p P -l 32 -r`).
    #[test]
    fn passphrase_slots_derive_the_reference_argon2id_output() {
        let secret = Secret::passphrase("correct horse battery staple".into()).unwrap();
        for (t, p, want) in [
            (ARGON2_T, ARGON2_P, "efb51f9a76584f6dd6a4f7942a1a2f6ae5a6e4ec5142ff674dfd5d27eb45e446"),
            (2, 1, "cdb454754c3db33d45695237b0a4316be8834f7e7221f65293fca548e4eb68ff"),
        ] {
            let slot = KeySlot {
                kind: SlotKind::Passphrase,
                created_unix: 0,
                label: String::new(),
                m_cost_kib: ARGON2_M_KIB,
                t_cost: t,
                p_cost: p,
                salt: *b"0123456789abcdef",
                wrapped: Vec::new(),
            };
            let got: String = wrapping_key(&slot, &secret).unwrap().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, want, "t={t} p={p}");
        }
    }
}
