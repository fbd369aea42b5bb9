//! Pack files: immutable containers of sealed blobs with a sealed header at the end, so that
//! the index can be rebuilt from the packs alone.
//!
//! ```text
//! "VLTP" | version u8 = 1 | 3 zero bytes          (8-byte preamble)
//! blob 0 | blob 1 | ...                            (each: sealed [compression u8 || payload])
//! sealed header                                    (domain PackHeader, id = pack id)
//! header length u32                                (length of the sealed header)
//! ```
//! Header plaintext: `version u8 = 1 | count u32 | count x entry`, entry =
//! `kind u8 | id [32] | offset u32 | length u32 | raw length u32` (offset from file start).

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::{BlobKind, BlobRef};

pub const PREAMBLE: &[u8; 8] = b"VLTP\x01\0\0\0";
pub const TRAILER_LEN: usize = 4;
const HEADER_VERSION: u8 = 1;
pub const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;

/// Where one blob lives inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub blob: BlobRef,
    pub offset: u32,
    pub length: u32,
    /// Plaintext length before compression.
    pub raw_length: u32,
}

pub fn encode_entry(w: &mut Writer, e: &PackEntry) {
    w.u8(e.blob.kind as u8).raw(&e.blob.id).u32(e.offset).u32(e.length).u32(e.raw_length);
}

pub fn decode_entry(r: &mut Reader) -> Result<PackEntry> {
    let kind = BlobKind::from_u8(r.u8()?)?;
    Ok(PackEntry { blob: BlobRef { kind, id: r.array()? }, offset: r.u32()?, length: r.u32()?, raw_length: r.u32()? })
}

pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(HEADER_VERSION).u32(entries.len() as u32);
    for e in entries {
        encode_entry(&mut w, e);
    }
    w.finish()
}

/// Decodes a header and checks every entry lies inside the blob area `[8, blob_end)`.
pub fn decode_header(b: &[u8], blob_end: u64) -> Result<Vec<PackEntry>> {
    let mut r = Reader::new(b, "pack header");
    r.version(HEADER_VERSION)?;
    let n = r.count(ENTRY_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let e = decode_entry(&mut r)?;
        if (e.offset as u64) < PREAMBLE.len() as u64 || e.offset as u64 + e.length as u64 > blob_end {
            return Err(Error::corrupt(format!(
                "pack header: {} at {}+{} lies outside the blob area",
                e.blob.describe(),
                e.offset,
                e.length
            )));
        }
        out.push(e);
    }
    r.end()?;
    Ok(out)
}

/// Splits a whole pack file into (sealed header, end of blob area).
pub fn split_trailer(file: &[u8]) -> Result<(&[u8], u64)> {
    if file.len() < PREAMBLE.len() + TRAILER_LEN || file[..5] != PREAMBLE[..5] {
        return Err(Error::corrupt("not a pack file (bad preamble or too short)"));
    }
    if file[4] != PREAMBLE[4] {
        return Err(Error::unsupported(format!("pack format version {} is not supported", file[4])));
    }
    let tl = file.len() - TRAILER_LEN;
    let hlen = u32::from_le_bytes([file[tl], file[tl + 1], file[tl + 2], file[tl + 3]]) as usize;
    if hlen > tl - PREAMBLE.len() {
        return Err(Error::corrupt("pack trailer: header length exceeds the file"));
    }
    let start = tl - hlen;
    Ok((&file[start..tl], start as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_round_trip(n in 0usize..50, seed in any::<u8>()) {
            let entries: Vec<PackEntry> = (0..n).map(|i| PackEntry {
                blob: BlobRef { kind: if i % 2 == 0 { BlobKind::Data } else { BlobKind::Tree }, id: [seed.wrapping_add(i as u8); 32] },
                offset: 8 + 100 * i as u32,
                length: 100,
                raw_length: 1000,
            }).collect();
            let h = encode_header(&entries);
            prop_assert_eq!(decode_header(&h, 8 + 100 * n as u64).unwrap(), entries);
        }

        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_header(&b, 1 << 20);
            let _ = split_trailer(&b);
        }
    }

    #[test]
    fn rejects_out_of_range_entry() {
        let e =
            PackEntry { blob: BlobRef { kind: BlobKind::Data, id: [0; 32] }, offset: 8, length: 100, raw_length: 5 };
        assert!(decode_header(&encode_header(&[e]), 50).is_err());
    }
}
