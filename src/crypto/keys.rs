//! The master key and the per-purpose subkeys derived from it with BLAKE3 `derive_key`.
//!
//! One random 256-bit master key per vault, wrapped in key slots (see `slot`). Every purpose
//! has its own subkey so that no key is used for two things: chunk ids, tree ids, encryption,
//! the chunker seed. All of them are zeroized on drop and print as `<redacted>`.

use crate::id::{ChunkId, TreeId};
use rand::RngCore;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The vault's 256-bit master key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        MasterKey(k)
    }
    pub fn from_bytes(b: [u8; 32]) -> Self {
        MasterKey(b)
    }
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// A secret given by the user to unlock a vault.
pub enum Secret {
    Passphrase(Zeroizing<String>),
    RawKey(Zeroizing<[u8; 32]>),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Passphrase(_) => f.write_str("Secret::Passphrase(<redacted>)"),
            Secret::RawKey(_) => f.write_str("Secret::RawKey(<redacted>)"),
        }
    }
}

impl Secret {
    /// Parses a raw key given as exactly 64 hex characters (surrounding white space ignored).
    pub fn raw_key_from_hex(s: &str) -> crate::Result<Self> {
        let t = s.trim();
        let mut k = Zeroizing::new([0u8; 32]);
        if t.len() != 64 || hex::decode_to_slice(t, &mut k[..]).is_err() {
            return Err(crate::Error::invalid("a raw key must be exactly 64 hexadecimal characters (256 bits)"));
        }
        Ok(Secret::RawKey(k))
    }
    pub fn passphrase(s: String) -> crate::Result<Self> {
        let s = Zeroizing::new(s);
        if s.is_empty() {
            return Err(crate::Error::invalid("the passphrase is empty"));
        }
        Ok(Secret::Passphrase(s))
    }
    pub fn kind_name(&self) -> &'static str {
        match self {
            Secret::Passphrase(_) => "passphrase",
            Secret::RawKey(_) => "raw key",
        }
    }
}

/// Subkeys of one unlocked vault.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Keys {
    chunk_id: [u8; 32],
    tree_id: [u8; 32],
    aead: [u8; 32],
    chunker_seed: u64,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

const CTX_CHUNK_ID: &str = "vault v1 2026-11 chunk id";
const CTX_TREE_ID: &str = "vault v1 2026-11 tree id";
const CTX_AEAD: &str = "vault v1 2026-11 blob and metadata encryption";
const CTX_CHUNKER: &str = "vault v1 2026-11 chunker seed";

impl Keys {
    pub fn derive(master: &MasterKey) -> Self {
        let seed = Zeroizing::new(blake3::derive_key(CTX_CHUNKER, master.expose()));
        let mut s = [0u8; 8];
        s.copy_from_slice(&seed[..8]);
        Keys {
            chunk_id: blake3::derive_key(CTX_CHUNK_ID, master.expose()),
            tree_id: blake3::derive_key(CTX_TREE_ID, master.expose()),
            aead: blake3::derive_key(CTX_AEAD, master.expose()),
            chunker_seed: u64::from_le_bytes(s) | 1,
        }
    }
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.chunk_id, data).as_bytes())
    }
    /// [`Keys::chunk_id`] of every input, hashed together (several times faster for chunks
    /// of a few KiB: see [`super::many`]).
    pub fn chunk_ids(&self, data: &[&[u8]]) -> Vec<ChunkId> {
        super::many::keyed_hash_many(&self.chunk_id, data).into_iter().map(ChunkId).collect()
    }
    pub fn tree_id(&self, encoded: &[u8]) -> TreeId {
        TreeId(*blake3::keyed_hash(&self.tree_id, encoded).as_bytes())
    }
    pub fn aead_key(&self) -> &[u8; 32] {
        &self.aead
    }
    /// Never zero (a zero seed would mean the public, unseeded gear table).
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subkeys_differ_and_debug_is_redacted() {
        let m = MasterKey::generate();
        let k = Keys::derive(&m);
        assert_ne!(k.chunk_id(b"x").0, k.tree_id(b"x").0);
        assert_ne!(k.chunker_seed(), 0);
        assert!(!format!("{k:?}{m:?}").contains(&hex::encode(m.expose())));
        assert_eq!(format!("{m:?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn raw_key_parsing() {
        assert!(Secret::raw_key_from_hex(&"ab".repeat(32)).is_ok());
        assert!(Secret::raw_key_from_hex(&"ab".repeat(31)).is_err());
        assert!(Secret::raw_key_from_hex(&"zz".repeat(32)).is_err());
    }
}
