//! Index files (`index/<id>`): which blobs each pack holds, so that readers need not open every
//! pack header (docs/DESIGN.md §7).
//!
//! Plaintext, version 2: `version u8 = 2 | pack count u32 | per pack: pack id [32] | pack size
//! u64 | frames` (frames as in pack headers). Version 1 (before frames, still read): the same
//! with `entry count u32 | version-1 entries` per pack. Sealed with domain IndexFile, id =
//! index file id.

use super::codec::{Reader, Writer};
use super::pack::{decode_entries_v1, decode_frames, encode_frames, PackEntry};
use crate::error::{Error, Result};
use crate::id::PackId;

const V1: u8 = 1;
const V2: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    pub pack: PackId,
    pub size: u64,
    pub entries: Vec<PackEntry>,
}

pub fn encode(packs: &[IndexPack]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(V2).u32(packs.len() as u32);
    for p in packs {
        w.raw(p.pack.as_bytes()).u64(p.size);
        encode_frames(&mut w, &p.entries);
    }
    w.finish()
}

pub fn decode(b: &[u8]) -> Result<Vec<IndexPack>> {
    let mut r = Reader::new(b, "index file");
    let version = r.u8()?;
    if version != V1 && version != V2 {
        return Err(Error::unsupported(format!(
            "index file: format version {version} is not supported (this build reads versions 1 and 2)"
        )));
    }
    let out = r.items(44, |r| {
        let pack = PackId(r.array()?);
        let size = r.u64()?;
        let entries = if version == V1 { decode_entries_v1(r)? } else { decode_frames(r)? };
        Ok(IndexPack { pack, size, entries })
    })?;
    r.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::Member;
    use crate::id::{BlobKind, BlobRef};
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let single = PackEntry::single(BlobRef { kind: BlobKind::Tree, id: [2; 32] }, 8, 10, 20);
        let m = |i: u8, start, len| PackEntry {
            blob: BlobRef { kind: BlobKind::Data, id: [i; 32] },
            offset: 18,
            length: 50,
            raw_length: 300,
            member: Some(Member { frame: [9; 32], start, len }),
        };
        let p = IndexPack { pack: PackId([1; 32]), size: 12345, entries: vec![single, m(3, 0, 100), m(4, 100, 200)] };
        assert_eq!(decode(&encode(&[p.clone(), p.clone()])).unwrap(), vec![p.clone(), p]);
    }

    #[test]
    fn reads_version_1() {
        let mut w = Writer::new();
        w.u8(1).u32(1).raw(&[1; 32]).u64(99).u32(1).u8(2).raw(&[2; 32]).u32(8).u32(10).u32(20);
        let p = IndexPack {
            pack: PackId([1; 32]),
            size: 99,
            entries: vec![PackEntry::single(BlobRef { kind: BlobKind::Tree, id: [2; 32] }, 8, 10, 20)],
        };
        assert_eq!(decode(&w.finish()).unwrap(), vec![p]);
        assert_eq!(decode(&[3, 0, 0, 0, 0]).unwrap_err().kind(), crate::ErrorKind::Unsupported);
    }

    proptest! {
        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&b);
        }
    }
}
