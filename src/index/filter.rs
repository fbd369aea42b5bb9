//! A Bloom filter over the blob keys of the sled cache: a writer's lookup of a chunk the vault
//! does not have (every chunk of new data) is answered without walking sled's tree, whose
//! leaves a cache much smaller than the tree mostly has to fetch and decode again.
//!
//! Never a false "absent" for a key of the cache: a key's bits are set before the key goes
//! into sled, and a filter is only used for the cache it was built from or saved with
//! ([`Filter::decode`] checks the set of index files the cache had loaded). A false "present"
//! (about 0.3 % per layer) costs the sled lookup it would have cost anyway.
//!
//! Saved next to the cache (`<cache dir>/<vault id>/index-filter`, docs/DESIGN.md §7):
//! `"vault-filter-v1\n" ‖ files digest 32 ‖ layer count u32 ‖` per layer `capacity u64 ‖ count
//! u64 ‖ bit count u64 ‖ bits ‖` then `BLAKE3 of all before 32`, little-endian; the files digest is BLAKE3 of the sorted ids of
//! the index files the cache held when it was saved.

use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 16] = b"vault-filter-v1\n";
/// Bits per key at capacity and probes per key: a false positive rate of about 0.3 % per layer.
const BITS_PER_KEY: u64 = 12;
const PROBES: u64 = 8;
/// Keys of the smallest layer (24 KiB).
pub const MIN_CAPACITY: u64 = 16_384;
/// Each layer added when the last one is full holds this many times more keys.
const GROWTH: u64 = 4;
/// Keys of the largest layer (6 GiB: a cache of 16 TB of 4 KiB chunks); past it, layers of this
/// size are added.
const MAX_CAPACITY: u64 = 1 << 32;

/// 64-bit words of a layer of `capacity` keys.
fn words_for(capacity: u64) -> Option<u64> {
    Some(capacity.checked_mul(BITS_PER_KEY)?.div_ceil(64))
}

/// One Bloom filter of fixed size.
struct Layer {
    bits: Vec<AtomicU64>,
    nbits: u64,
    capacity: u64,
    count: AtomicU64,
}

/// The probe positions of `key` (a blob key: kind byte and a keyed id, uniformly random).
fn probes(key: &[u8; 33], nbits: u64) -> impl Iterator<Item = u64> {
    let mut a = [0u8; 8];
    a.copy_from_slice(&key[1..9]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[9..17]);
    let h1 = u64::from_le_bytes(a) ^ u64::from(key[0]);
    let h2 = u64::from_le_bytes(b) | 1;
    (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % nbits)
}

impl Layer {
    fn with_capacity(capacity: u64) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let words = words_for(capacity).unwrap_or(1);
        Layer {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            nbits: words * 64,
            capacity,
            count: AtomicU64::new(0),
        }
    }

    fn insert(&self, key: &[u8; 33]) {
        for p in probes(key, self.nbits) {
            self.bits[(p / 64) as usize].fetch_or(1 << (p % 64), Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn may_contain(&self, key: &[u8; 33]) -> bool {
        probes(key, self.nbits).all(|p| self.bits[(p / 64) as usize].load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
    }

    fn is_full(&self) -> bool {
        self.count.load(Ordering::Relaxed) >= self.capacity
    }
}

/// A filter that grows without its keys (a scalable Bloom filter): when its newest layer is
/// full, keys go into a new layer [`GROWTH`] times larger; a key may be present when any layer
/// says so (about 0.3 % per layer of false positives; 4 layers from 16,384 to 1 million keys).
pub struct Filter {
    layers: Vec<Layer>,
}

impl Filter {
    /// An empty filter whose first layer holds `capacity` keys (at least [`MIN_CAPACITY`]).
    pub fn with_capacity(capacity: u64) -> Self {
        Filter { layers: vec![Layer::with_capacity(capacity.max(MIN_CAPACITY))] }
    }

    /// Inserts `key` into the newest layer (add one first when [`Filter::needs_layer`]).
    pub fn insert(&self, key: &[u8; 33]) {
        if let Some(l) = self.layers.last() {
            l.insert(key);
        }
    }

    /// The newest layer is full: [`Filter::add_layer`] before the next insert.
    pub fn needs_layer(&self) -> bool {
        self.layers.last().is_none_or(Layer::is_full)
    }

    pub fn add_layer(&mut self) {
        let cap = self.layers.last().map_or(MIN_CAPACITY, |l| l.capacity.saturating_mul(GROWTH).min(MAX_CAPACITY));
        self.layers.push(Layer::with_capacity(cap));
    }

    /// Inserts `key`, adding a layer first when the newest is full (a filter not shared yet).
    pub fn insert_growing(&mut self, key: &[u8; 33]) {
        if self.needs_layer() {
            self.add_layer();
        }
        self.insert(key);
    }

    /// False only for a key never inserted.
    pub fn may_contain(&self, key: &[u8; 33]) -> bool {
        self.layers.iter().rev().any(|l| l.may_contain(key))
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.layers.iter().map(|l| l.count.load(Ordering::Relaxed)).sum()
    }

    #[cfg(test)]
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    pub fn encode(&self, files_digest: &[u8; 32]) -> Vec<u8> {
        let words: usize = self.layers.iter().map(|l| l.bits.len()).sum();
        let mut out = Vec::with_capacity(16 + 32 + 4 + self.layers.len() * 24 + words * 8 + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(files_digest);
        out.extend_from_slice(&(self.layers.len() as u32).to_le_bytes());
        for l in &self.layers {
            out.extend_from_slice(&l.capacity.to_le_bytes());
            out.extend_from_slice(&l.count.load(Ordering::Relaxed).to_le_bytes());
            out.extend_from_slice(&l.nbits.to_le_bytes());
            for w in &l.bits {
                out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// The filter saved in `b`, if it is whole and was saved for the index files whose digest
    /// is `files_digest`.
    pub fn decode(b: &[u8], files_digest: &[u8; 32]) -> Option<Self> {
        let body = b.len().checked_sub(32).map(|n| &b[..n])?;
        if blake3::hash(body).as_bytes() != &b[body.len()..] {
            return None;
        }
        if body.len() < 52 || &body[..16] != MAGIC || &body[16..48] != files_digest {
            return None;
        }
        let word = |at: usize| -> Option<u64> {
            let x: [u8; 8] = body.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(x))
        };
        let n = u32::from_le_bytes(body[48..52].try_into().ok()?) as usize;
        let mut at = 52;
        let mut layers = Vec::new();
        for _ in 0..n {
            let (capacity, count, nbits) = (word(at)?, word(at + 8)?, word(at + 16)?);
            at += 24;
            // The sizes a layer of `capacity` keys has (a forged file must not make the next
            // layer's allocation arbitrary: it is bounded by the file's own size).
            if capacity == 0
                || capacity > MAX_CAPACITY
                || count > capacity + capacity / 16
                || Some(nbits / 64) != words_for(capacity)
                || nbits % 64 != 0
            {
                return None;
            }
            let words = usize::try_from(nbits / 64).ok()?;
            let bits = (0..words).map(|i| word(at + i * 8).map(AtomicU64::new)).collect::<Option<Vec<_>>>()?;
            at += words * 8;
            layers.push(Layer { bits, nbits, capacity, count: AtomicU64::new(count) });
        }
        (at == body.len() && !layers.is_empty()).then_some(Filter { layers })
    }
}

/// The digest a saved filter names: of the sorted ids of the index files a cache holds.
pub fn files_digest(ids: impl IntoIterator<Item = [u8; 32]>) -> [u8; 32] {
    let mut v: Vec<[u8; 32]> = ids.into_iter().collect();
    v.sort_unstable();
    let mut h = blake3::Hasher::new();
    h.update(MAGIC);
    for id in &v {
        h.update(id);
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn keys(n: usize, seed: u64) -> Vec<[u8; 33]> {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut k = [0u8; 33];
                r.fill(&mut k[1..]);
                k[0] = r.gen_range(1..=3);
                k
            })
            .collect()
    }

    /// A filter whose first layer holds `capacity` keys, with `n` random keys inserted.
    fn filled(capacity: u64, n: usize, seed: u64) -> (Filter, Vec<[u8; 33]>) {
        let mut f = Filter::with_capacity(capacity);
        let ins = keys(n, seed);
        for k in &ins {
            f.insert_growing(k);
        }
        (f, ins)
    }

    #[test]
    fn every_key_inserted_is_found_and_few_others_are_as_it_grows() {
        let (f, ins) = filled(0, 400_000, 1);
        // 16,384 + 65,536 + 262,144 + 1,048,576 keys of room.
        assert_eq!(f.layers(), 4);
        assert_eq!(f.count(), 400_000);
        assert!(ins.iter().all(|k| f.may_contain(k)));
        let others = keys(100_000, 2);
        let fp = others.iter().filter(|k| f.may_contain(k)).count();
        assert!(fp < 1_000, "{fp} false positives in 100,000");
    }

    #[test]
    fn a_saved_filter_reads_back_only_whole_and_for_the_same_index_files() {
        let (f, ins) = filled(1_000, 40_000, 4);
        assert_eq!(f.layers(), 2);
        let d = files_digest([[1u8; 32], [2u8; 32]]);
        assert_eq!(d, files_digest([[2u8; 32], [1u8; 32]]), "the order of the ids does not matter");
        let b = f.encode(&d);
        let g = Filter::decode(&b, &d).expect("reads back");
        assert!(ins.iter().all(|k| g.may_contain(k)));
        assert_eq!((g.count(), g.layers()), (40_000, 2));
        assert!(Filter::decode(&b, &files_digest([[1u8; 32]])).is_none(), "another set of index files");
        for at in [0, 20, 50, 60, 100, b.len() - 1] {
            let mut x = b.clone();
            x[at] ^= 1;
            assert!(Filter::decode(&x, &d).is_none(), "a flipped bit at {at}");
        }
        assert!(Filter::decode(&b[..b.len() - 8], &d).is_none());
        assert!(Filter::decode(&[], &d).is_none());
    }

    #[test]
    fn a_forged_filter_whose_sizes_disagree_is_refused() {
        let d = files_digest([[1u8; 32]]);
        // Well-formed and checksummed, but a layer of 2^30 keys in 64 bits, full: its next layer
        // would have been 4 x 2^30 keys (6 GiB).
        let forged = |capacity: u64, count: u64, nbits: u64| {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&d);
            b.extend_from_slice(&1u32.to_le_bytes());
            for x in [capacity, count, nbits] {
                b.extend_from_slice(&x.to_le_bytes());
            }
            b.extend(std::iter::repeat_n(0u8, (nbits / 8) as usize));
            let sum = blake3::hash(&b);
            b.extend_from_slice(sum.as_bytes());
            b
        };
        assert!(Filter::decode(&forged(1 << 30, 1 << 30, 64), &d).is_none());
        assert!(Filter::decode(&forged(u64::MAX, 0, 64), &d).is_none());
        assert!(Filter::decode(&forged(16_384, 1 << 20, 16_384 * 12), &d).is_none(), "more keys than room");
        assert!(Filter::decode(&forged(16_384, 100, 16_384 * 12), &d).is_some(), "a consistent one reads");
    }
}
