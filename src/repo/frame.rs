//! Frames (docs/DESIGN.md §5): the unit of compression, encryption and I/O. Consecutive new
//! chunks of one write are compressed and sealed together; the index still names every chunk,
//! as a member of its frame. A frame of one member is a blob of format version 1.
//!
//! Owns sealing and opening frames and slicing members out of them. Must never hand out a
//! member's bytes that were not re-hashed against its id (the caller does that with
//! `Vault::verify_content`), nor open a frame under another id than the one it was sealed with.

use crate::crypto::aead::{NONCE_LEN, TAG_LEN};
use crate::crypto::{Domain, Sealer};
use crate::error::{Error, Result};
use crate::format::pack::{Member, PackEntry};
use crate::id::{BlobKind, BlobRef};

pub use crate::format::config::DEFAULT_FRAME_TARGET;

pub const COMP_NONE: u8 = 0;
pub const COMP_ZSTD: u8 = 1;

pub fn domain_of(kind: BlobKind) -> Domain {
    match kind {
        BlobKind::Data => Domain::DataBlob,
        BlobKind::Tree => Domain::TreeBlob,
        BlobKind::List => Domain::ListBlob,
    }
}

/// A frame ready to be packed: `[compression u8 || members' plaintexts]` sealed.
#[derive(Debug, Clone)]
pub struct SealedFrame {
    /// The frame id, for a frame of two or more members (sealed with domain DataFrame).
    pub id: Option<[u8; 32]>,
    /// Members in plaintext order, with their plaintext lengths.
    pub members: Vec<(BlobRef, u32)>,
    pub bytes: Vec<u8>,
    /// Plaintext length of the whole frame.
    pub raw_length: u32,
}

impl SealedFrame {
    /// A lone blob (a one-member frame, sealed as a version-1 blob).
    pub fn single(blob: BlobRef, bytes: Vec<u8>, raw_length: u32) -> Self {
        SealedFrame { id: None, members: vec![(blob, raw_length)], bytes, raw_length }
    }

    /// Pack entries of the members, for a frame stored at `offset`.
    pub fn entries(&self, offset: u32) -> Vec<PackEntry> {
        let mut start = 0u32;
        self.members
            .iter()
            .map(|(blob, len)| {
                let member = self.id.map(|frame| Member { frame, start, len: *len });
                start += len;
                PackEntry { blob: *blob, offset, length: self.bytes.len() as u32, raw_length: self.raw_length, member }
            })
            .collect()
    }

    /// Rebuilds a frame from the entries of its members (all at one offset) and its bytes.
    pub fn from_entries(entries: &[PackEntry], bytes: Vec<u8>) -> Result<Self> {
        let first = entries.first().ok_or_else(|| Error::corrupt("a frame without members"))?;
        let id = first.member.map(|m| m.frame);
        let members = entries.iter().map(|e| (e.blob, e.plain_len())).collect();
        Ok(SealedFrame { id, members, bytes, raw_length: first.raw_length })
    }
}

thread_local! {
    /// One zstd context per thread, reused for every frame (creating one per frame costs more
    /// than compressing a small one).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
    /// Whether the last frame this thread compressed was stored as it is (did not compress):
    /// the next one is then tried on a sample first.
    static LAST_STORED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Bytes of a frame compressed first, as a sample, after a frame that did not compress (a run
/// of incompressible data then costs an eighth of the compression attempts).
const SAMPLE: usize = 8 << 10;

/// Whether `n` compressed bytes of `raw` plaintext bytes are worth storing compressed.
fn saves(n: usize, raw: usize) -> bool {
    n + n / 32 < raw
}

/// `[room || flag || payload]`: `NONCE_LEN` bytes of room for [`Sealer::seal_in_place`], then
/// zstd when it saves at least 1/32 of the size, else the plaintext stored. `joined` is the
/// parts back to back when the caller has them so (consecutive chunks of one batch): they
/// are then compressed without being copied together first. After a frame that did not
/// compress, the thread first compresses the frame's first [`SAMPLE`] bytes; when they do
/// not compress either, the frame is stored as it is without trying the rest.
fn framed_in_room(level: i32, parts: &[&[u8]], joined: Option<&[u8]>) -> Vec<u8> {
    let raw: usize = parts.iter().map(|p| p.len()).sum();
    let room = NONCE_LEN + 1;
    let mut out = Vec::with_capacity(room + zstd::zstd_safe::compress_bound(raw).max(raw) + TAG_LEN);
    out.resize(NONCE_LEN, 0);
    out.push(COMP_ZSTD);
    let compressed = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            *c = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, comp) = c.as_mut()?;
        if raw > 2 * SAMPLE && LAST_STORED.get() {
            let head = joined.filter(|j| j.len() == raw).or(parts.first().copied()).unwrap_or_default();
            let sample = &head[..head.len().min(SAMPLE)];
            let n = comp.compress_to_buffer(sample, spare(&mut out, sample.len())).ok()?;
            out.truncate(room);
            if !saves(n, sample.len()) {
                return None;
            }
        }
        let n = match (parts, joined) {
            ([one], _) => comp.compress_to_buffer(one, spare(&mut out, raw)).ok()?,
            (_, Some(j)) if j.len() == raw => comp.compress_to_buffer(j, spare(&mut out, raw)).ok()?,
            _ => {
                let j = parts.concat();
                comp.compress_to_buffer(&j, spare(&mut out, raw)).ok()?
            }
        };
        out.truncate(room + n);
        Some(n)
    });
    let worth = compressed.is_some_and(|n| saves(n, raw));
    LAST_STORED.set(!worth);
    if worth {
        return out;
    }
    out.truncate(NONCE_LEN);
    out.push(COMP_NONE);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Grows `out` by zstd's bound for `raw` input bytes and returns the new tail to write into.
fn spare(out: &mut Vec<u8>, raw: usize) -> &mut [u8] {
    let start = out.len();
    out.resize(start + zstd::zstd_safe::compress_bound(raw), 0);
    &mut out[start..]
}

/// Compresses (when it helps) and seals one blob as a one-member frame.
pub fn seal_blob(sealer: &Sealer, level: i32, blob: BlobRef, plain: &[u8]) -> SealedFrame {
    let mut buf = framed_in_room(level, &[plain], None);
    sealer.seal_in_place(domain_of(blob.kind), &blob.id, &mut buf);
    SealedFrame::single(blob, buf, plain.len() as u32)
}

/// Compresses and seals data chunks together; one chunk gives a one-member frame.
pub fn seal_frame(sealer: &Sealer, level: i32, members: &[(BlobRef, &[u8])]) -> SealedFrame {
    seal_frame_joined(sealer, level, members, None)
}

/// [`seal_frame`], given the members' plaintexts also back to back in `joined` (when they are
/// consecutive in one buffer), which saves a copy.
pub fn seal_frame_joined(
    sealer: &Sealer,
    level: i32,
    members: &[(BlobRef, &[u8])],
    joined: Option<&[u8]>,
) -> SealedFrame {
    if members.len() == 1 {
        return seal_blob(sealer, level, members[0].0, members[0].1);
    }
    let parts: Vec<&[u8]> = members.iter().map(|(_, p)| *p).collect();
    let raw: usize = parts.iter().map(|p| p.len()).sum();
    let mut buf = framed_in_room(level, &parts, joined);
    let id: [u8; 32] = rand::random();
    sealer.seal_in_place(Domain::DataFrame, &id, &mut buf);
    SealedFrame {
        id: Some(id),
        members: members.iter().map(|(b, p)| (*b, p.len() as u32)).collect(),
        bytes: buf,
        raw_length: raw as u32,
    }
}

fn decompress(body: &[u8], raw_length: usize) -> Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(|e| Error::corrupt(format!("zstd: {e}")))?);
        }
        let d = d.as_mut().ok_or_else(|| Error::corrupt("zstd unavailable"))?;
        d.decompress(body, raw_length).map_err(|e| Error::corrupt(format!("decompression failed: {e}")))
    })
}

/// Opens a sealed frame that `e` (any of its members) describes and undoes compression;
/// checks the length against the recorded raw length. Returns the frame's whole plaintext.
pub fn open_frame(sealer: &Sealer, e: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    open_frame_in_place(sealer, e, &mut sealed.to_vec())
}

/// [`open_frame`], decrypting `sealed` where it lies (it holds garbage afterwards).
pub fn open_frame_in_place(sealer: &Sealer, e: &PackEntry, sealed: &mut [u8]) -> Result<Vec<u8>> {
    let framed = match &e.member {
        None => sealer.open_in_place(domain_of(e.blob.kind), &e.blob.id, sealed)?,
        Some(m) => sealer.open_in_place(Domain::DataFrame, &m.frame, sealed)?,
    };
    let (flag, body) = framed.split_first().ok_or_else(|| Error::corrupt("empty blob"))?;
    let plain = match *flag {
        COMP_NONE => body.to_vec(),
        COMP_ZSTD => decompress(body, e.raw_length as usize)?,
        f => return Err(Error::corrupt(format!("unknown compression {f}"))),
    };
    if plain.len() != e.raw_length as usize {
        return Err(Error::corrupt(format!("length {} differs from the recorded {}", plain.len(), e.raw_length)));
    }
    Ok(plain)
}

/// The member `e` inside its frame's plaintext (not yet verified against its id).
pub fn member_of<'a>(e: &PackEntry, frame: &'a [u8]) -> Result<&'a [u8]> {
    let (s, l) = match &e.member {
        None => (0usize, frame.len()),
        Some(m) => (m.start as usize, m.len as usize),
    };
    frame.get(s..s + l).ok_or_else(|| Error::corrupt(format!("{} lies outside its frame", e.blob.describe())))
}

/// Opens a lone blob or a member of a frame: the member's plaintext, not yet re-hashed.
pub fn open_member(sealer: &Sealer, e: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    let mut frame = open_frame(sealer, e, sealed)?;
    match &e.member {
        None => Ok(frame),
        Some(m) => {
            let (s, l) = (m.start as usize, m.len as usize);
            if s + l > frame.len() {
                return Err(Error::corrupt(format!("{} lies outside its frame", e.blob.describe())));
            }
            frame.truncate(s + l);
            Ok(frame.split_off(s))
        }
    }
}

/// Largest stretch of the file (from the start of a frame's first member to the end of its
/// last) that one frame may cover: new chunks scattered through a file are framed only with
/// new chunks near them, so a sequential read opens each frame once or twice, not once per
/// member.
pub const MAX_SPAN: u64 = 1 << 20;

/// Groups positions `todo` (in file order) of chunks with plaintext lengths `len(i)` at file
/// offsets `at(i)` into frames closed when they reach `target` bytes (0: one chunk per frame)
/// or would cover more than [`MAX_SPAN`] of the file.
pub fn group(
    todo: &[usize],
    len: impl Fn(usize) -> usize,
    at: impl Fn(usize) -> u64,
    target: u32,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut acc = 0usize;
    for (k, &i) in todo.iter().enumerate() {
        if k > start && at(i) + len(i) as u64 - at(todo[start]) > MAX_SPAN {
            out.push(start..k);
            start = k;
            acc = 0;
        }
        acc += len(i);
        if target == 0 || acc >= target as usize || k + 1 - start == u16::MAX as usize {
            out.push(start..k + 1);
            start = k + 1;
            acc = 0;
        }
    }
    if start < todo.len() {
        out.push(start..todo.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Frames cover every position once, in order, within the target and the span.
        #[test]
        fn grouping_partitions_in_order(
            lens in proptest::collection::vec(1usize..20_000, 0..300),
            keep in proptest::collection::vec(any::<bool>(), 300),
            target in prop_oneof![Just(0u32), 1u32..200_000],
        ) {
            let mut at = vec![0u64];
            for l in &lens {
                at.push(at.last().unwrap() + *l as u64);
            }
            let todo: Vec<usize> = (0..lens.len()).filter(|i| keep[*i]).collect();
            let g = group(&todo, |i| lens[i], |i| at[i], target);
            let flat: Vec<usize> = g.iter().flat_map(|r| r.clone()).collect();
            prop_assert_eq!(flat, (0..todo.len()).collect::<Vec<_>>());
            for r in &g {
                prop_assert!(!r.is_empty());
                let (first, last) = (todo[r.start], todo[r.end - 1]);
                if r.len() > 1 {
                    prop_assert!(at[last] + lens[last] as u64 - at[first] <= MAX_SPAN);
                    let raw: usize = todo[r.clone()].iter().map(|&i| lens[i]).sum();
                    prop_assert!(target == 0 || raw - lens[last] < target as usize);
                }
                if target == 0 {
                    prop_assert_eq!(r.len(), 1);
                }
            }
        }
    }

    /// The compression flag of a sealed frame (the byte after its nonce, once opened).
    fn flag_of(s: &Sealer, f: &SealedFrame) -> u8 {
        let mut b = f.bytes.clone();
        let d = match f.id {
            Some(id) => s.open_in_place(Domain::DataFrame, &id, &mut b).unwrap(),
            None => s.open_in_place(Domain::DataBlob, &f.members[0].0.id, &mut b).unwrap(),
        };
        d[0]
    }

    #[test]
    fn after_a_frame_that_did_not_compress_a_sample_decides() {
        let s = Sealer::new(&[3; 32]);
        let mut r = 9u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (r >> 56) as u8
                })
                .collect()
        };
        let text: Vec<u8> =
            (0..60_000u32).flat_map(|i| format!("{{\"n\": {i}}}\n").into_bytes()).take(60_000).collect();
        // Noise first, the rest of the frame compressible: a frame on its own is compressed.
        let mut mixed = noise(SAMPLE);
        mixed.extend_from_slice(&text[..50_000]);
        let id = |k: u8| BlobRef::data(crate::id::ChunkId([k; 32]));
        let check = |f: &SealedFrame, want: &[&[u8]]| {
            let e = f.entries(8);
            let plain = open_frame(&s, &e[0], &f.bytes).unwrap();
            assert_eq!(plain, want.concat());
        };
        let members = [(id(1), &mixed[..30_000]), (id(2), &mixed[30_000..])];
        let alone = std::thread::scope(|sc| sc.spawn(|| seal_frame(&s, 3, &members)).join().unwrap());
        assert_eq!(flag_of(&s, &alone), COMP_ZSTD);
        check(&alone, &[&mixed[..30_000], &mixed[30_000..]]);
        // On one thread: noise is stored; then the mixed frame's sample is noise, so it is
        // stored as it is; compressible text is compressed again, and so is what follows it.
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let n = noise(40_000);
                let one = seal_frame(&s, 3, &[(id(10), &n[..20_000]), (id(11), &n[20_000..])]);
                assert_eq!(flag_of(&s, &one), COMP_NONE);
                let m = seal_frame(&s, 3, &[(id(12), &mixed[..30_000]), (id(13), &mixed[30_000..])]);
                assert_eq!(flag_of(&s, &m), COMP_NONE);
                check(&m, &[&mixed[..30_000], &mixed[30_000..]]);
                let t = seal_frame(&s, 3, &[(id(14), &text[..30_000]), (id(15), &text[30_000..])]);
                assert_eq!(flag_of(&s, &t), COMP_ZSTD);
                let m = seal_frame(&s, 3, &[(id(16), &mixed[..30_000]), (id(17), &mixed[30_000..])]);
                assert_eq!(flag_of(&s, &m), COMP_ZSTD);
                check(&m, &[&mixed[..30_000], &mixed[30_000..]]);
            });
        });
    }

    #[test]
    fn frames_round_trip_and_bind_to_their_id() {
        let s = Sealer::new(&[3; 32]);
        let a: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let b = vec![7u8; 3000];
        let members = [
            (BlobRef::data(crate::id::ChunkId([1; 32])), &a[..]),
            (BlobRef::data(crate::id::ChunkId([2; 32])), &b[..]),
        ];
        let f = seal_frame(&s, 3, &members);
        let e = f.entries(8);
        assert_eq!(e.len(), 2);
        let plain = open_frame(&s, &e[0], &f.bytes).unwrap();
        assert_eq!(member_of(&e[0], &plain).unwrap(), &a[..]);
        assert_eq!(member_of(&e[1], &plain).unwrap(), &b[..]);
        assert_eq!(open_member(&s, &e[1], &f.bytes).unwrap(), b);
        // Another frame id (a frame moved under another name) fails authentication.
        let mut other = e[0];
        other.member.as_mut().unwrap().frame[0] ^= 1;
        assert!(open_frame(&s, &other, &f.bytes).is_err());
        // A single chunk is a version-1 blob: sealed under its own id.
        let one = seal_frame(&s, 3, &members[..1]);
        assert!(one.id.is_none());
        let e1 = one.entries(8);
        assert_eq!(open_member(&s, &e1[0], &one.bytes).unwrap(), a);
    }
}
