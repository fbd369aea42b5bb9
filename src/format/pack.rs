//! Pack files: immutable containers of sealed frames with a sealed header at the end, so that
//! the index can be rebuilt from the packs alone (docs/DESIGN.md §6).
//!
//! ```text
//! "VLTP" | version u8 = 2 | 3 zero bytes          (8-byte preamble; version 1 before frames)
//! frame 0 | frame 1 | ...                          (each: sealed [compression u8 || members])
//! sealed header                                    (domain PackHeader, id = pack id)
//! header length u32                                (length of the sealed header)
//! ```
//! Header plaintext, version 2: `version u8 = 2 | frame count u32 | frames`, frame =
//! `offset u32 | length u32 | raw length u32 | count u16 | frame id [32] (count >= 2 only) |
//! count x (kind u8 | id [32] | length u32)`. Version 1: `version u8 = 1 | count u32 | count x
//! (kind u8 | id [32] | offset u32 | length u32 | raw length u32)`, each a one-member frame.
//!
//! In memory a pack's content is a flat list of [`PackEntry`], one per blob; the members of one
//! frame are consecutive entries with the same offset.

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::{BlobKind, BlobRef};

pub const PREAMBLE: &[u8; 8] = b"VLTP\x02\0\0\0";
/// Preamble versions this build reads.
const PACK_VERSIONS: [u8; 2] = [1, 2];
pub const TRAILER_LEN: usize = 4;
const HEADER_V1: u8 = 1;
const HEADER_V2: u8 = 2;
/// Size of a version-1 entry.
pub const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;
/// Smallest encoded frame (one member): offset, length, raw length, count, one member.
const MIN_FRAME_LEN: usize = 4 + 4 + 4 + 2 + MEMBER_LEN;
const MEMBER_LEN: usize = 1 + 32 + 4;

/// Where a member of a frame of several lies: the frame id (its AEAD binding) and the
/// member's place in the frame plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub frame: [u8; 32],
    pub start: u32,
    pub len: u32,
}

/// Where one blob lives inside a pack: its frame's offset, sealed length and plaintext length,
/// and for a member of a frame of several, its place in it (`None`: the frame is this blob
/// alone, sealed under the blob's own id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub blob: BlobRef,
    pub offset: u32,
    pub length: u32,
    /// Plaintext length of the frame.
    pub raw_length: u32,
    pub member: Option<Member>,
}

impl PackEntry {
    /// A lone blob (version-1 layout).
    pub fn single(blob: BlobRef, offset: u32, length: u32, raw_length: u32) -> Self {
        PackEntry { blob, offset, length, raw_length, member: None }
    }

    /// Plaintext length of this blob.
    pub fn plain_len(&self) -> u32 {
        self.member.map(|m| m.len).unwrap_or(self.raw_length)
    }

    /// Whether `other` is a member of the same frame (same pack assumed).
    pub fn same_frame(&self, other: &PackEntry) -> bool {
        self.offset == other.offset && self.member.map(|m| m.frame) == other.member.map(|m| m.frame)
    }
}

/// Splits entries into frames: runs of consecutive entries of one frame.
pub fn frames(entries: &[PackEntry]) -> impl Iterator<Item = &[PackEntry]> {
    let mut rest = entries;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let n = if first.member.is_none() { 1 } else { rest.iter().take_while(|e| e.same_frame(first)).count() };
        let (f, r) = rest.split_at(n);
        rest = r;
        Some(f)
    })
}

/// Encodes entries as version-2 frames: `frame count u32 | frames`.
pub fn encode_frames(w: &mut Writer, entries: &[PackEntry]) {
    let fs: Vec<&[PackEntry]> = frames(entries).collect();
    w.u32(fs.len() as u32);
    for f in fs {
        let e = &f[0];
        w.u32(e.offset).u32(e.length).u32(e.raw_length).u16(f.len() as u16);
        if let Some(m) = &e.member {
            w.raw(&m.frame);
        }
        for m in f {
            w.u8(m.blob.kind as u8).raw(&m.blob.id).u32(m.plain_len());
        }
    }
}

/// Decodes `frame count u32 | frames` into entries (checks member lengths add up).
pub fn decode_frames(r: &mut Reader) -> Result<Vec<PackEntry>> {
    let n = r.count(MIN_FRAME_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (offset, length, raw_length) = (r.u32()?, r.u32()?, r.u32()?);
        let count = r.u16()? as usize;
        if count == 0 {
            return Err(Error::corrupt("a frame without members"));
        }
        let frame: Option<[u8; 32]> = if count >= 2 { Some(r.array()?) } else { None };
        let mut start = 0u64;
        for _ in 0..count {
            let kind = BlobKind::from_u8(r.u8()?)?;
            let blob = BlobRef { kind, id: r.array()? };
            let len = r.u32()?;
            if frame.is_some() && kind != BlobKind::Data {
                return Err(Error::corrupt(format!("{} in a frame of several members", blob.describe())));
            }
            let member = frame.map(|frame| Member { frame, start: start as u32, len });
            if frame.is_none() && len != raw_length {
                return Err(Error::corrupt(format!("{}: length differs from its frame's", blob.describe())));
            }
            start += len as u64;
            out.push(PackEntry { blob, offset, length, raw_length, member });
        }
        if start != raw_length as u64 {
            return Err(Error::corrupt(format!(
                "frame at {offset}: members add up to {start} bytes, the frame has {raw_length}"
            )));
        }
    }
    Ok(out)
}

/// A version-1 entry (pack headers, index files and journal pack records before frames).
pub fn decode_entry_v1(r: &mut Reader) -> Result<PackEntry> {
    let kind = BlobKind::from_u8(r.u8()?)?;
    Ok(PackEntry::single(BlobRef { kind, id: r.array()? }, r.u32()?, r.u32()?, r.u32()?))
}

/// Version-1 entries: `count u32 | entries`.
pub fn decode_entries_v1(r: &mut Reader) -> Result<Vec<PackEntry>> {
    r.items(ENTRY_LEN, decode_entry_v1)
}

pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(HEADER_V2);
    encode_frames(&mut w, entries);
    w.finish()
}

/// Decodes a header (version 1 or 2) and checks every frame lies inside the blob area
/// `[8, blob_end)`.
pub fn decode_header(b: &[u8], blob_end: u64) -> Result<Vec<PackEntry>> {
    let mut r = Reader::new(b, "pack header");
    let out = match r.u8()? {
        HEADER_V1 => decode_entries_v1(&mut r)?,
        HEADER_V2 => decode_frames(&mut r)?,
        v => return Err(Error::unsupported(format!("pack header: format version {v} is not supported"))),
    };
    r.end()?;
    for e in &out {
        if (e.offset as u64) < PREAMBLE.len() as u64 || e.offset as u64 + e.length as u64 > blob_end {
            return Err(Error::corrupt(format!(
                "pack header: {} at {}+{} lies outside the blob area",
                e.blob.describe(),
                e.offset,
                e.length
            )));
        }
    }
    Ok(out)
}

/// Splits a whole pack file into (sealed header, end of blob area).
pub fn split_trailer(file: &[u8]) -> Result<(&[u8], u64)> {
    if file.len() < PREAMBLE.len() + TRAILER_LEN || file[..4] != PREAMBLE[..4] {
        return Err(Error::corrupt("not a pack file (bad preamble or too short)"));
    }
    if !PACK_VERSIONS.contains(&file[4]) {
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

    /// Entries of frames with the given member counts, back to back from offset 8.
    fn layout(counts: &[usize], seed: u8) -> Vec<PackEntry> {
        let mut out = Vec::new();
        let mut offset = 8u32;
        for (f, &n) in counts.iter().enumerate() {
            let frame = if n >= 2 { Some([seed ^ f as u8; 32]) } else { None };
            let lens: Vec<u32> = (0..n).map(|i| 100 + (i as u32 * 37 + f as u32) % 900).collect();
            let raw: u32 = lens.iter().sum();
            let length = raw / 2 + 29;
            let mut start = 0;
            for (i, len) in lens.iter().enumerate() {
                let kind = if n == 1 && f % 3 == 1 { BlobKind::Tree } else { BlobKind::Data };
                let mut id = [seed.wrapping_add(f as u8); 32];
                id[1] = i as u8;
                id[2] = (f >> 8) as u8;
                out.push(PackEntry {
                    blob: BlobRef { kind, id },
                    offset,
                    length,
                    raw_length: raw,
                    member: frame.map(|frame| Member { frame, start, len: *len }),
                });
                start += len;
            }
            offset += length;
        }
        out
    }

    proptest! {
        #[test]
        fn header_round_trip(counts in proptest::collection::vec(1usize..40, 0..30), seed in any::<u8>()) {
            let entries = layout(&counts, seed);
            let end = entries.last().map(|e| e.offset as u64 + e.length as u64).unwrap_or(8);
            let h = encode_header(&entries);
            prop_assert_eq!(decode_header(&h, end).unwrap(), entries.clone());
            prop_assert_eq!(frames(&entries).count(), counts.len());
        }

        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_header(&b, 1 << 20);
            let _ = split_trailer(&b);
        }
    }

    #[test]
    fn reads_version_1_headers() {
        let e = PackEntry::single(BlobRef { kind: BlobKind::Data, id: [3; 32] }, 8, 100, 250);
        let mut w = Writer::new();
        w.u8(1).u32(1).u8(1).raw(&[3; 32]).u32(8).u32(100).u32(250);
        assert_eq!(decode_header(&w.finish(), 108).unwrap(), vec![e]);
    }

    #[test]
    fn rejects_out_of_range_frame_and_bad_member_sums() {
        let e = layout(&[3], 1);
        assert!(decode_header(&encode_header(&e), 20).is_err());
        let mut bad = e.clone();
        bad[0].raw_length += 1;
        bad[1].raw_length += 1;
        bad[2].raw_length += 1;
        assert!(decode_header(&encode_header(&bad), 1 << 20).is_err());
    }

    #[test]
    fn refuses_unknown_versions() {
        let mut p = PREAMBLE.to_vec();
        p[4] = 9;
        p.extend_from_slice(&[0; 8]);
        assert_eq!(split_trailer(&p).unwrap_err().kind(), crate::ErrorKind::Unsupported);
        assert_eq!(decode_header(&[7, 0, 0, 0, 0], 100).unwrap_err().kind(), crate::ErrorKind::Unsupported);
    }
}
