//! Typed 32-byte ids. An API that takes an id says which kind it is, so a tree id can never
//! be passed where a chunk id is expected. Ids print as lowercase hex; `short()` gives the
//! first 8 hex digits for messages.

use crate::error::{Error, Result};
use rand::RngCore;
use std::fmt;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn from_bytes(b: [u8; 32]) -> Self {
                $name(b)
            }
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// A fresh random id (for objects named at random: packs, index files, revisions).
            pub fn random() -> Self {
                let mut b = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut b);
                $name(b)
            }
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut b = [0u8; 32];
                hex::decode_to_slice(s, &mut b).map_err(|_| {
                    Error::invalid(format!("not a {}: {s:?}", stringify!($name)))
                })?;
                Ok($name(b))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

typed_id!(
    /// Keyed BLAKE3 of a chunk's plaintext.
    ChunkId
);
typed_id!(
    /// Keyed BLAKE3 (tree key) of an encoded directory listing.
    TreeId
);
typed_id!(
    /// Keyed BLAKE3 (tree key) of an encoded chunk-list page.
    ListId
);
typed_id!(
    /// Random name of a pack file.
    PackId
);
typed_id!(
    /// Random name of an index file.
    IndexId
);
typed_id!(
    /// Random name of one snapshot revision object.
    SnapshotId
);
typed_id!(
    /// Random name of a key slot.
    SlotId
);

/// Kinds of blobs stored inside packs. The byte value is part of the format (pack headers,
/// index files, AAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    Data = 1,
    Tree = 2,
    List = 3,
}

impl BlobKind {
    pub fn from_u8(b: u8) -> Result<Self> {
        match b {
            1 => Ok(BlobKind::Data),
            2 => Ok(BlobKind::Tree),
            3 => Ok(BlobKind::List),
            _ => Err(Error::corrupt(format!("unknown blob kind {b}"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Data => "data",
            BlobKind::Tree => "tree",
            BlobKind::List => "chunk list",
        }
    }
}

/// A blob address: its kind and 32-byte id (a [`ChunkId`] or a [`TreeId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobRef {
    pub kind: BlobKind,
    pub id: [u8; 32],
}

impl BlobRef {
    pub fn data(id: ChunkId) -> Self {
        BlobRef { kind: BlobKind::Data, id: id.0 }
    }
    pub fn tree(id: TreeId) -> Self {
        BlobRef { kind: BlobKind::Tree, id: id.0 }
    }
    pub fn list(id: ListId) -> Self {
        BlobRef { kind: BlobKind::List, id: id.0 }
    }
    /// 33-byte key: kind byte then id (the index's key layout).
    pub fn key(&self) -> [u8; 33] {
        let mut k = [0u8; 33];
        k[0] = self.kind as u8;
        k[1..].copy_from_slice(&self.id);
        k
    }
    pub fn describe(&self) -> String {
        format!("{} blob {}", self.kind.name(), hex::encode(&self.id[..4]))
    }
}

/// A hasher for maps keyed by ids: keyed BLAKE3 outputs (chunk, tree and list ids) and random
/// pack, frame and index ids, alone or with a kind byte or an offset. Their bytes are already
/// uniform, and nobody without the vault's key can choose a content id, so the hash is the
/// last eight bytes of each write folded together (shorter writes byte by byte): SipHash's
/// rounds would buy nothing, and they were a few per cent of a write of new data. Not for keys
/// that are not ids.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, b: &[u8]) {
        match b.last_chunk::<8>() {
            Some(tail) => self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(*tail),
            None => {
                for &x in b {
                    self.0 = self.0.rotate_left(8) ^ u64::from(x);
                }
            }
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A hash map keyed by ids (see [`IdHasher`]).
pub type IdMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;
/// A hash set of ids (see [`IdHasher`]).
pub type IdSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PackId::random();
        assert_eq!(PackId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(PackId::from_hex("zz").is_err());
    }

    #[test]
    fn id_maps_spread_ids_and_their_offsets() {
        use std::hash::BuildHasher;
        let ids: Vec<ChunkId> = (0..20_000).map(|_| ChunkId::random()).collect();
        let set: IdSet<ChunkId> = ids.iter().copied().collect();
        assert_eq!(set.len(), ids.len());
        assert!(ids.iter().all(|id| set.contains(id)));
        // The bucket bits of the hashes of random ids are spread evenly.
        let h = std::hash::BuildHasherDefault::<IdHasher>::default();
        let mut buckets = [0u32; 64];
        for id in &ids {
            buckets[(h.hash_one(id) & 63) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 200 && n < 450), "{buckets:?}");
        // One pack id at many offsets: distinct hashes.
        let pack = PackId::random();
        let offsets: std::collections::HashSet<u64> = (0..1000u32).map(|o| h.hash_one((pack, o * 4096))).collect();
        assert_eq!(offsets.len(), 1000);
    }
}
