//! Keyed BLAKE3 of many short inputs at once: the content ids of a batch of chunks.
//!
//! BLAKE3 hashes the 1 KiB chunks of its tree in parallel SIMD lanes (16 with AVX-512), but
//! one 4 KiB input has only 4 of them, so hashing chunks one by one runs at about a quarter
//! of the speed of long inputs. Here the k-th 1 KiB piece of every input of a batch is
//! compressed in one call (same chunk counter, so the lanes are full), the partial last pieces
//! are grouped by chunk counter and block count the same way, and the tree of each input is
//! then merged with the public `hazmat` functions. The result is exactly
//! `blake3::keyed_hash` of each input (property-tested below against it).
//!
//! Uses `blake3::platform::Platform::hash_many` and `compress_in_place`, which the crate
//! exports for its benchmarks without a stability promise: Cargo.toml pins the crate's version,
//! so a change of them is a build error, never a wrong id. Inputs of 1 KiB or less (a single
//! chunk is the root) and longer than [`MAX_BATCHED`] go through `blake3::keyed_hash`.

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, Mode};
use blake3::platform::Platform;
use blake3::IncrementCounter;

const CHUNK: usize = 1024;
const BLOCK: usize = 64;
/// Longest input hashed in a batch: 16 pieces fill the 16 lanes alone.
pub const MAX_BATCHED: usize = 16 * CHUNK;
/// Pieces of a batched input (chunk counters 0 ..= 15).
const COUNTERS: usize = MAX_BATCHED / CHUNK;
/// Whole blocks before the last block of a partial piece: 0 ..= 15.
const HEADS: usize = CHUNK / BLOCK;

// Flag bits of the BLAKE3 specification (section 2.1).
const CHUNK_START: u8 = 1 << 0;
const CHUNK_END: u8 = 1 << 1;
const KEYED_HASH: u8 = 1 << 4;

fn words(bytes: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|i| u32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]))
}

fn bytes(words: &[u32; 8]) -> ChainingValue {
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(words) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// `hash_many` over the first `N` bytes at `at` of each of `inputs[k]`, into `out` (32 bytes
/// each).
#[allow(clippy::too_many_arguments)]
fn many<const N: usize>(
    platform: Platform,
    inputs: &[&[u8]],
    which: &[(usize, usize)],
    key: &[u32; 8],
    counter: u64,
    flags_end: u8,
    out: &mut Vec<u8>,
) {
    let parts: Vec<&[u8; N]> =
        which.iter().map(|&(k, at)| inputs[k][at..at + N].try_into().expect("a piece of N bytes")).collect();
    out.clear();
    out.resize(parts.len() * 32, 0);
    platform.hash_many(&parts, key, counter, IncrementCounter::No, KEYED_HASH, CHUNK_START, flags_end, out);
}

/// The chaining value after the first `blocks` whole blocks of a piece (1 ..= 15), for each of
/// `which`.
fn heads(
    platform: Platform,
    blocks: usize,
    inputs: &[&[u8]],
    which: &[(usize, usize)],
    key: &[u32; 8],
    counter: u64,
    out: &mut Vec<u8>,
) {
    macro_rules! by_blocks {
        ($($n:literal)*) => {
            match blocks {
                $($n => many::<{ $n * BLOCK }>(platform, inputs, which, key, counter, 0, out),)*
                _ => unreachable!("a partial piece has at most 15 whole blocks before its last"),
            }
        };
    }
    by_blocks!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
}

/// The chaining value of a subtree of whole-tree pieces `cvs` (not the root).
fn subtree(cvs: &[ChainingValue], key: &[u8; 32]) -> ChainingValue {
    match cvs {
        [one] => *one,
        _ => {
            let left = split(cvs.len());
            merge_subtrees_non_root(&subtree(&cvs[..left], key), &subtree(&cvs[left..], key), Mode::KeyedHash(key))
        }
    }
}

/// Pieces in the left subtree of `n` >= 2: the largest power of two below `n`.
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// `blake3::keyed_hash(key, input)` of every input, in order.
pub fn keyed_hash_many(key: &[u8; 32], inputs: &[&[u8]]) -> Vec<[u8; 32]> {
    let platform = Platform::detect();
    let kw = words(key);
    let batched = |len: usize| len > CHUNK && len <= MAX_BATCHED;
    // Chaining values of each batched input's pieces, in order.
    let mut cvs: Vec<Vec<ChainingValue>> = inputs
        .iter()
        .map(|i| if batched(i.len()) { Vec::with_capacity(i.len().div_ceil(CHUNK)) } else { Vec::new() })
        .collect();
    let mut which: Vec<(usize, usize)> = Vec::new();
    let mut out = Vec::new();
    // Whole pieces: the j-th of every input at once.
    for j in 0..COUNTERS {
        which.clear();
        which.extend(
            inputs
                .iter()
                .enumerate()
                .filter(|(_, i)| batched(i.len()) && (j + 1) * CHUNK <= i.len())
                .map(|(k, _)| (k, j * CHUNK)),
        );
        if which.is_empty() {
            break;
        }
        many::<CHUNK>(platform, inputs, &which, &kw, j as u64, CHUNK_END, &mut out);
        for (&(k, _), cv) in which.iter().zip(out.chunks_exact(32)) {
            cvs[k].push(cv.try_into().expect("32 bytes"));
        }
    }
    // Partial last pieces, grouped by chunk counter and whole blocks before their last block.
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); COUNTERS * HEADS];
    for (k, i) in inputs.iter().enumerate() {
        if batched(i.len()) && i.len() % CHUNK != 0 {
            let (j, rest) = (i.len() / CHUNK, i.len() % CHUNK);
            groups[j * HEADS + (rest - 1) / BLOCK].push(k);
        }
    }
    for (g, ks) in groups.iter().enumerate().filter(|(_, ks)| !ks.is_empty()) {
        let (j, blocks) = (g / HEADS, g % HEADS);
        which.clear();
        which.extend(ks.iter().map(|&k| (k, j * CHUNK)));
        if blocks > 0 {
            heads(platform, blocks, inputs, &which, &kw, j as u64, &mut out);
        }
        for (n, &k) in ks.iter().enumerate() {
            let mut cv = if blocks > 0 { words(out[32 * n..32 * n + 32].try_into().expect("32 bytes")) } else { kw };
            let last = &inputs[k][j * CHUNK + blocks * BLOCK..];
            let mut block = [0u8; BLOCK];
            block[..last.len()].copy_from_slice(last);
            let start = if blocks == 0 { CHUNK_START } else { 0 };
            platform.compress_in_place(&mut cv, &block, last.len() as u8, j as u64, KEYED_HASH | start | CHUNK_END);
            cvs[k].push(bytes(&cv));
        }
    }
    inputs
        .iter()
        .zip(cvs)
        .map(|(i, cvs)| {
            if !batched(i.len()) {
                return *blake3::keyed_hash(key, i).as_bytes();
            }
            let left = split(cvs.len());
            let root =
                merge_subtrees_root(&subtree(&cvs[..left], key), &subtree(&cvs[left..], key), Mode::KeyedHash(key));
            *root.as_bytes()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
    }

    #[test]
    fn every_length_around_the_piece_and_block_boundaries() {
        let key = [9u8; 32];
        let mut lens = vec![0, 1, 63, 64, 65];
        for k in 1..=17 {
            for d in [-65i64, -64, -63, -1, 0, 1, 63, 64, 65] {
                lens.push((k * CHUNK as i64 + d) as usize);
            }
        }
        let inputs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(n, &l)| data(l, n as u8)).collect();
        let refs: Vec<&[u8]> = inputs.iter().map(|v| &v[..]).collect();
        let got = keyed_hash_many(&key, &refs);
        for (i, g) in refs.iter().zip(&got) {
            assert_eq!(g, blake3::keyed_hash(&key, i).as_bytes(), "length {}", i.len());
        }
    }

    proptest! {
        /// Any batch of inputs (lengths as chunks have them, and beyond) gets the ids that
        /// hashing each input alone gives.
        #[test]
        fn batches_hash_as_each_input_alone(
            lens in proptest::collection::vec(prop_oneof![0usize..2_100, 1_000usize..17_000, 17_000usize..40_000], 0..80),
            key in proptest::array::uniform32(any::<u8>()),
            seed in any::<u8>(),
        ) {
            let inputs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(n, &l)| data(l, seed.wrapping_add(n as u8))).collect();
            let refs: Vec<&[u8]> = inputs.iter().map(|v| &v[..]).collect();
            let got = keyed_hash_many(&key, &refs);
            prop_assert_eq!(got.len(), refs.len());
            for (i, g) in refs.iter().zip(&got) {
                prop_assert_eq!(*g, *blake3::keyed_hash(&key, i).as_bytes());
            }
        }
    }
}
