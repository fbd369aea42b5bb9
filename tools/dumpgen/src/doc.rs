//! Synthetic "user account" documents, regenerated on demand from
//! (seed, collection, document index, version).
//!
//! Invariants: the same inputs always give the same bytes; version 0 is the inserted
//! document; a higher version keeps `_id` and every field drawn from the base stream and
//! only redraws the mutable fields (`updated_at`, `status`, `visits`, `score`), so an update
//! changes a few bytes in place and the length by at most a few bytes. No state is kept
//! between calls beyond the per-collection constants.

use crate::bson::Encoder;
use crate::rng::{key, Rng};
use crate::words::*;

/// Tags separating independent random streams derived from one seed.
const STREAM_BASE: u64 = 0xBA5E;
const STREAM_VERSION: u64 = 0x7E25;
const STREAM_COLLECTION: u64 = 0xC011;

/// `_id` timestamp (and `created_at`) of document 0: 2020-09-13T12:26:40Z.
const EPOCH_SECS: u64 = 1_600_000_000;
/// Seconds between the creation times of consecutive documents.
const SECS_PER_DOC: u64 = 7;
const DAY_MS: i64 = 86_400_000;

/// Generates the documents of one collection.
#[derive(Clone, Debug)]
pub struct DocGen {
    seed: u64,
    coll: u64,
    /// The 5 "process-unique" bytes of every ObjectId of this collection.
    oid_mid: [u8; 5],
}

impl DocGen {
    pub fn new(seed: u64, coll: u32) -> Self {
        let k = key(&[seed, STREAM_COLLECTION, coll as u64]).to_le_bytes();
        DocGen { seed, coll: coll as u64, oid_mid: [k[0], k[1], k[2], k[3], k[4]] }
    }

    /// A unique, increasing ObjectId: big-endian seconds, 5 fixed bytes, big-endian counter.
    pub fn object_id(&self, idx: u64) -> [u8; 12] {
        let secs = (EPOCH_SECS + idx * SECS_PER_DOC) as u32;
        let mut oid = [0u8; 12];
        oid[..4].copy_from_slice(&secs.to_be_bytes());
        oid[4..9].copy_from_slice(&self.oid_mid);
        oid[9..].copy_from_slice(&(idx as u32).to_be_bytes()[1..]);
        oid
    }

    /// Replaces the content of `buf` with document `idx` at `version`.
    pub fn encode(&self, idx: u64, version: u32, buf: &mut Vec<u8>) {
        buf.clear();
        let mut b = Rng::new(key(&[self.seed, STREAM_BASE, self.coll, idx]));
        let mut m = Rng::new(key(&[self.seed, STREAM_VERSION, self.coll, idx, version as u64]));
        let mut e = Encoder::new(buf);
        let doc = e.begin_doc();

        e.object_id("_id", &self.object_id(idx));

        let r = b.next_u64();
        let first = FIRST[(r & 63) as usize];
        let last = LAST[((r >> 6) & 63) as usize];
        let s = e.begin_string("name");
        e.buf.extend_from_slice(first.as_bytes());
        e.buf.push(b' ');
        e.buf.extend_from_slice(last.as_bytes());
        e.end_string(s);

        let s = e.begin_string("email");
        push_lower(e.buf, first);
        e.buf.push(b'.');
        push_lower(e.buf, last);
        if (r >> 12) & 3 != 0 {
            push_decimal(e.buf, (r >> 14) % 10_000);
        }
        e.buf.push(b'@');
        e.buf.extend_from_slice(DOMAINS[((r >> 28) & 7) as usize].as_bytes());
        e.end_string(s);

        e.int32("age", 18 + ((r >> 31) % 70) as i32);
        e.string("plan", PLANS[((r >> 38) & 3) as usize]);
        e.bool("active", (r >> 40) & 7 != 0);

        let r = b.next_u64();
        e.double("balance", (r % 5_000_000) as f64 / 100.0);
        let created = ((EPOCH_SECS + idx * SECS_PER_DOC) * 1000) as i64 + ((r >> 32) % 1000) as i64;
        e.datetime("created_at", created);

        // Mutable fields: drawn from the version stream.
        let mv = m.next_u64();
        let updated =
            if version == 0 { created } else { created + version as i64 * DAY_MS + (mv % DAY_MS as u64) as i64 };
        e.datetime("updated_at", updated);
        let status = if version == 0 {
            INITIAL_STATUS[match (r >> 42) % 10 {
                0..=6 => 0,
                7 | 8 => 1,
                _ => 2,
            }]
        } else {
            STATUS[((mv >> 40) & 7) as usize]
        };
        e.string("status", status);
        let visits = ((r >> 50) % 500) as i64 + version as i64 * (1 + ((mv >> 44) % 40) as i64);
        e.int64("visits", visits);
        e.double("score", ((mv >> 20) % 100_000) as f64 / 1000.0);

        let r = b.next_u64();
        if r % 100 < 85 {
            let a = e.begin_subdoc("address");
            let s = e.begin_string("street");
            push_decimal(e.buf, 1 + (r >> 8) % 9_999);
            e.buf.push(b' ');
            push_capitalized(e.buf, WORDS[((r >> 24) & 255) as usize]);
            e.buf.push(b' ');
            e.buf.extend_from_slice(STREET_SUFFIXES[((r >> 32) & 7) as usize].as_bytes());
            e.end_string(s);
            e.string("city", CITIES[((r >> 35) & 31) as usize]);
            let s = e.begin_string("zip");
            push_zero_padded(e.buf, (r >> 40) % 100_000, 5);
            e.end_string(s);
            e.string("country", COUNTRIES[((r >> 60) & 15) as usize]);
            e.end_doc(a);
        }

        let r = b.next_u64();
        let ntags = (r % 7) as usize;
        let a = e.begin_array("tags");
        for i in 0..ntags {
            e.array_string(i, TAGS[((r >> (8 + 5 * i)) & 31) as usize]);
        }
        e.end_doc(a);

        let r = b.next_u64();
        if r % 100 < 80 {
            let u = b.unit();
            let nwords = 4 + (u * u * u * u * 340.0) as usize;
            let s = e.begin_string("bio");
            push_sentences(e.buf, &mut b, nwords);
            e.end_string(s);
        }

        e.end_doc(doc);
    }
}

/// Appends `n` words in sentences of 5..=16 words ("Word word word. Word ...").
/// One random draw yields 7 word indices, so there is no RNG call per byte.
fn push_sentences(buf: &mut Vec<u8>, rng: &mut Rng, n: usize) {
    let mut bits = 0u64;
    let mut left = 0;
    let mut sentence_left = 0u64;
    for i in 0..n {
        if left == 0 {
            bits = rng.next_u64();
            left = 7;
        }
        let w = WORDS[(bits & 255) as usize];
        bits >>= 8;
        left -= 1;
        if sentence_left == 0 {
            if i > 0 {
                buf.extend_from_slice(b". ");
            }
            // The top byte of the draw is spare: use it for the sentence length.
            sentence_left = 5 + (bits >> 4) % 12;
            push_capitalized(buf, w);
        } else {
            buf.push(b' ');
            buf.extend_from_slice(w.as_bytes());
        }
        sentence_left -= 1;
    }
    if n > 0 {
        buf.push(b'.');
    }
}

fn push_lower(buf: &mut Vec<u8>, s: &str) {
    buf.extend(s.bytes().map(|c| c.to_ascii_lowercase()));
}

fn push_capitalized(buf: &mut Vec<u8>, s: &str) {
    let start = buf.len();
    buf.extend_from_slice(s.as_bytes());
    buf[start] = buf[start].to_ascii_uppercase();
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut k = digits.len();
    loop {
        k -= 1;
        digits[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[k..]);
}

fn push_zero_padded(buf: &mut Vec<u8>, n: u64, width: usize) {
    let digits = n.checked_ilog10().unwrap_or(0) as usize + 1;
    buf.resize(buf.len() + width.saturating_sub(digits), b'0');
    push_decimal(buf, n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::validate_bson;

    #[test]
    fn documents_are_valid_bson_with_realistic_sizes() {
        let g = DocGen::new(42, 0);
        let mut buf = Vec::new();
        let (mut min, mut max, mut total) = (usize::MAX, 0, 0);
        let n = 20_000;
        for idx in 0..n {
            g.encode(idx, 0, &mut buf);
            validate_bson(&buf).unwrap_or_else(|e| panic!("doc {idx}: {e}"));
            min = min.min(buf.len());
            max = max.max(buf.len());
            total += buf.len();
        }
        let avg = total / n as usize;
        assert!((150..=300).contains(&min), "min {min}");
        assert!((2_000..=3_300).contains(&max), "max {max}");
        assert!((550..=850).contains(&avg), "avg {avg}");
    }

    #[test]
    fn update_keeps_id_and_changes_few_bytes() {
        let g = DocGen::new(1, 3);
        let (mut v0, mut v1) = (Vec::new(), Vec::new());
        for idx in [0u64, 1, 99, 123_456] {
            g.encode(idx, 0, &mut v0);
            g.encode(idx, 1, &mut v1);
            assert_ne!(v0, v1);
            assert_eq!(v0[4..21], v1[4..21], "_id element must be unchanged");
            let dl = v0.len().abs_diff(v1.len());
            assert!(dl <= 8, "length changed by {dl}");
            validate_bson(&v1).unwrap();
            // Everything after the last mutable field (address, tags, bio) is untouched.
            let after_score = |d: &[u8]| d.windows(7).position(|w| w == b"\x01score\0").unwrap() + 15;
            assert_eq!(v0[after_score(&v0)..], v1[after_score(&v1)..]);
        }
    }

    #[test]
    fn object_ids_are_unique_and_increasing() {
        let g = DocGen::new(9, 0);
        let mut prev = g.object_id(0);
        for idx in (1..40_000_000u64).step_by(9_973) {
            let id = g.object_id(idx);
            assert!(id > prev);
            prev = id;
        }
        assert_ne!(DocGen::new(9, 0).object_id(5), DocGen::new(9, 1).object_id(5));
    }

    #[test]
    fn zero_padding() {
        let mut b = Vec::new();
        push_zero_padded(&mut b, 42, 5);
        push_zero_padded(&mut b, 123_456, 5);
        assert_eq!(b, b"00042123456");
    }
}
