//! Content-defined chunking: FastCDC (2020 variant) with a gear table seeded from the vault's
//! secret, so chunk boundaries depend on the key and not only on the data.
//!
//! [`StreamChunker`] accepts bytes in pieces of any size and yields exactly the chunks a
//! one-shot run over the whole input would yield: a boundary is only decided once `max` bytes
//! of look-ahead are buffered (or the input has ended). Sizes come from the vault settings,
//! never from build configuration.

use fastcdc::v2020::{FastCDC, Normalization};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    pub seed: u64,
}

/// Chunks stored back to back in one buffer (one allocation per batch, not per chunk).
#[derive(Debug, Default, Clone)]
pub struct ChunkBatch {
    pub data: Vec<u8>,
    ends: Vec<usize>,
}

impl ChunkBatch {
    pub fn push(&mut self, chunk: &[u8]) {
        self.data.extend_from_slice(chunk);
        self.ends.push(self.data.len());
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    /// Total bytes of all chunks.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl ChunkBatch {
    /// An empty batch whose buffer holds `capacity` bytes before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        ChunkBatch { data: Vec::with_capacity(capacity), ends: Vec::new() }
    }
}

/// Buffers of chunk batches handed back once stored, for the next batches of the same stream:
/// a long stream then reuses a few buffers instead of faulting in fresh pages for every batch.
/// Shared by the producing and the storing thread; dropped with the stream.
#[derive(Debug, Clone, Default)]
pub struct BatchPool(std::sync::Arc<std::sync::Mutex<Vec<ChunkBatch>>>);

/// Batches a pool keeps (the producer has one in hand, the channel holds two).
const POOL_KEEP: usize = 3;

impl BatchPool {
    /// An empty batch, reusing a handed-back buffer when there is one of at least `capacity`.
    pub fn batch(&self, capacity: usize) -> ChunkBatch {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some(mut b) if b.data.capacity() >= capacity => {
                b.data.clear();
                b.ends.clear();
                b
            }
            _ => ChunkBatch::with_capacity(capacity),
        }
    }

    /// Hands a stored batch back.
    pub fn give(&self, b: ChunkBatch) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < POOL_KEEP {
            kept.push(b);
        }
    }
}

/// Buffer this much before cutting, to amortise the chunker's set-up.
const BATCH: usize = 1 << 20;

pub struct StreamChunker {
    p: ChunkerParams,
    buf: Vec<u8>,
}

impl StreamChunker {
    pub fn new(p: ChunkerParams) -> Self {
        StreamChunker { p, buf: Vec::new() }
    }

    /// Bytes buffered and not yet emitted.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Adds input and appends every chunk that is now final to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut ChunkBatch) {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BATCH.max(2 * self.p.max as usize) {
            self.cut(false, out);
        }
    }

    /// Gives back the buffered bytes that no boundary has been decided for.
    pub fn into_pending(self) -> Vec<u8> {
        self.buf
    }

    /// Ends the input: the remaining bytes become the last chunks.
    pub fn finish(&mut self, out: &mut ChunkBatch) {
        self.cut(true, out);
    }

    fn cut(&mut self, eof: bool, out: &mut ChunkBatch) {
        let ends = final_ends(self.p, &self.buf, eof);
        let mut start = 0;
        for &e in &ends {
            out.push(&self.buf[start..e]);
            start = e;
        }
        self.buf.drain(..start);
    }
}

/// Ends of the chunks of `buf` that are final: every one when the input has ended (`eof`),
/// else those a one-shot run over the whole input would cut the same way (the chunker saw
/// `max` bytes from the chunk's start).
fn final_ends(p: ChunkerParams, buf: &[u8], eof: bool) -> Vec<usize> {
    let max = p.max as usize;
    let mut ends = Vec::with_capacity(buf.len() / p.avg.max(1) as usize + 1);
    for c in FastCDC::with_level_and_seed(buf, p.min, p.avg, p.max, Normalization::Level1, p.seed) {
        if !eof && c.offset + max > buf.len() {
            break;
        }
        ends.push(c.offset + c.length);
    }
    ends
}

/// [`StreamChunker`] over a buffer it may keep: the final chunks at the front of `buf` become
/// a batch that owns `buf` (no copy), and the bytes after them (fewer than `max`, none with
/// `eof`) are returned, to go before the next input.
pub fn cut_owned(p: ChunkerParams, mut buf: Vec<u8>, eof: bool) -> (ChunkBatch, Vec<u8>) {
    let ends = final_ends(p, &buf, eof);
    let used = ends.last().copied().unwrap_or(0);
    let rest = buf[used..].to_vec();
    buf.truncate(used);
    (ChunkBatch { data: buf, ends }, rest)
}

/// Chunk boundaries of a whole buffer (used by tests and tools).
pub fn chunk_lengths(p: ChunkerParams, data: &[u8]) -> Vec<usize> {
    FastCDC::with_level_and_seed(data, p.min, p.avg, p.max, Normalization::Level1, p.seed).map(|c| c.length).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn params(seed: u64) -> ChunkerParams {
        ChunkerParams { min: 256, avg: 1024, max: 4096, seed }
    }

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| r.gen()).collect()
    }

    proptest! {
        #[test]
        fn streaming_equals_one_shot(len in 0usize..300_000, pieces in proptest::collection::vec(1usize..70_000, 1..20), seed in any::<u64>()) {
            let d = data(len, seed);
            let p = params(seed | 1);
            let mut c = StreamChunker::new(p);
            let mut out = ChunkBatch::default();
            let mut pos = 0;
            for s in pieces.iter().cycle() {
                if pos >= d.len() { break; }
                let e = (pos + s).min(d.len());
                c.push(&d[pos..e], &mut out);
                pos = e;
            }
            c.finish(&mut out);
            let lens: Vec<usize> = out.iter().map(|c| c.len()).collect();
            prop_assert_eq!(lens, chunk_lengths(p, &d));
            prop_assert_eq!(out.data, d);
        }

        #[test]
        fn cut_owned_in_pieces_equals_one_shot(len in 0usize..300_000, pieces in proptest::collection::vec(1usize..70_000, 1..20), seed in any::<u64>()) {
            // What the mount's background store does: the rest of each cut goes before the
            // next piece; the last piece is cut with `eof`.
            let d = data(len, seed);
            let p = params(seed | 1);
            let (mut lens, mut all, mut rest) = (Vec::new(), Vec::new(), Vec::new());
            let mut pos = 0;
            for s in pieces.iter().cycle() {
                let e = (pos + s).min(d.len());
                rest.extend_from_slice(&d[pos..e]);
                pos = e;
                let (batch, r) = cut_owned(p, std::mem::take(&mut rest), pos == d.len());
                lens.extend(batch.iter().map(|c| c.len()));
                all.extend_from_slice(&batch.data);
                prop_assert!(r.len() < p.max as usize);
                rest = r;
                if pos == d.len() { break; }
            }
            prop_assert!(rest.is_empty());
            prop_assert_eq!(lens, chunk_lengths(p, &d));
            prop_assert_eq!(all, d);
        }
    }

    #[test]
    fn seed_changes_boundaries() {
        let d = data(200_000, 1);
        assert_ne!(chunk_lengths(params(3), &d), chunk_lengths(params(5), &d));
    }

    #[test]
    fn edit_in_the_middle_keeps_most_chunks() {
        let d = data(400_000, 2);
        let mut e = d.clone();
        e[200_000] ^= 0xff;
        e.insert(100_000, 7);
        let p = params(9);
        let set = |v: &[u8]| {
            let mut s = std::collections::HashSet::new();
            let mut off = 0;
            for l in chunk_lengths(p, v) {
                s.insert(v[off..off + l].to_vec());
                off += l;
            }
            s
        };
        let (a, b) = (set(&d), set(&e));
        let shared = a.intersection(&b).count();
        assert!(shared * 10 >= a.len() * 9, "only {shared} of {} chunks shared", a.len());
    }
}
