//! Index files (`index/<id>`): which blobs each pack holds, so that readers need not open every
//! pack header.
//!
//! Plaintext: `version u8 = 1 | pack count u32 | per pack: pack id [32] | pack size u64 |
//! entry count u32 | entries` (entry layout as in pack headers). Sealed with domain IndexFile,
//! id = index file id.

use super::codec::{Reader, Writer};
use super::pack::{decode_entry, encode_entry, PackEntry, ENTRY_LEN};
use crate::error::Result;
use crate::id::PackId;

const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    pub pack: PackId,
    pub size: u64,
    pub entries: Vec<PackEntry>,
}

pub fn encode(packs: &[IndexPack]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(VERSION).u32(packs.len() as u32);
    for p in packs {
        w.raw(p.pack.as_bytes()).u64(p.size).u32(p.entries.len() as u32);
        for e in &p.entries {
            encode_entry(&mut w, e);
        }
    }
    w.finish()
}

pub fn decode(b: &[u8]) -> Result<Vec<IndexPack>> {
    let mut r = Reader::new(b, "index file");
    r.version(VERSION)?;
    let out = r.items(44, |r| {
        let pack = PackId(r.array()?);
        let size = r.u64()?;
        let entries = r.items(ENTRY_LEN, decode_entry)?;
        Ok(IndexPack { pack, size, entries })
    })?;
    r.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{BlobKind, BlobRef};
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let p = IndexPack {
            pack: PackId([1; 32]),
            size: 12345,
            entries: vec![PackEntry {
                blob: BlobRef { kind: BlobKind::Tree, id: [2; 32] },
                offset: 8,
                length: 10,
                raw_length: 20,
            }],
        };
        assert_eq!(decode(&encode(&[p.clone(), p.clone()])).unwrap(), vec![p.clone(), p]);
    }

    proptest! {
        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&b);
        }
    }
}
