//! `stats`: logical vs stored bytes, deduplication and compression ratios.

use crate::error::Result;
use crate::id::{BlobKind, IndexId};
use crate::repo::Vault;
use crate::store::ObjKind;
use std::collections::HashSet;

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub snapshots: usize,
    pub sealed: usize,
    pub files: u64,
    /// Sum of the sizes of every file of every snapshot.
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct chunks.
    pub unique_bytes: u64,
    /// Sealed bytes of the distinct chunks (after compression and encryption).
    pub chunk_stored_bytes: u64,
    /// Every object of the vault, as stored.
    pub stored_bytes: u64,
    pub chunks: u64,
    pub trees: u64,
    pub packs: u64,
}

impl Stats {
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.unique_bytes)
    }
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.unique_bytes, self.chunk_stored_bytes)
    }
    pub fn total_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.stored_bytes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

pub fn stats(v: &Vault) -> Result<Stats> {
    let mut s = Stats::default();
    for snap in v.snapshots()? {
        s.snapshots += 1;
        s.sealed += snap.snap.sealed as usize;
        s.files += snap.snap.files;
        s.logical_bytes += snap.snap.logical_bytes;
    }
    let mut seen = HashSet::new();
    for (name, _) in v.store().list(ObjKind::Index)? {
        let Ok(id) = IndexId::from_hex(&name) else { continue };
        for p in v.read_index_file(&id)? {
            for e in p.entries {
                if !seen.insert(e.blob.key()) {
                    continue;
                }
                match e.blob.kind {
                    BlobKind::Data => {
                        s.chunks += 1;
                        s.unique_bytes += e.raw_length as u64;
                        s.chunk_stored_bytes += e.length as u64;
                    }
                    BlobKind::Tree | BlobKind::List => s.trees += 1,
                }
            }
        }
    }
    for k in ObjKind::ALL {
        for (_, size) in v.store().list(k)? {
            s.stored_bytes += size;
            if k == ObjKind::Pack {
                s.packs += 1;
            }
        }
    }
    Ok(s)
}
