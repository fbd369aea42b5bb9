//! The machine's limit for the vault's per-byte work, with no I/O, on the data of a real file.
//!
//! Read limit: every frame of the file is opened (AES-256-GCM-SIV), decompressed (zstd) and
//! every chunk re-hashed (keyed BLAKE3), on all threads at once: what `cat` or a read through
//! the mount could reach if reading packs, the index, the output and everything else were free.
//! Write limit: the file is chunked (seeded FastCDC), every chunk hashed, framed, compressed and
//! sealed, on all threads at once (each thread a share of the file, all chunks new): what
//! `put` could reach on all-new data. scripts/bench.sh prints each measured path as a share of
//! these. Never used by the vault itself.

use anyhow::{bail, Context, Result};
use clap::Parser;
use rayon::prelude::*;
use std::io::Read;
use std::time::Instant;
use vault::chunker::{ChunkBatch, ChunkerParams, StreamChunker};
use vault::crypto::{Keys, MasterKey, Sealer};
use vault::id::BlobRef;
use vault::repo::frame::{group, member_of, open_frame, seal_frame, SealedFrame};

#[derive(Parser)]
#[command(about = "Measures the machine's limit for the vault's per-byte work on a file (no I/O)")]
struct Args {
    /// The data: the first --max-mib MiB of this file are read into memory.
    input: std::path::PathBuf,
    #[arg(long, default_value_t = 256)]
    max_mib: u64,
    /// Average chunk size (min avg/4, max 4 avg), as the vault's default.
    #[arg(long, default_value_t = 4096)]
    chunk_avg: u32,
    /// Frame target in bytes (0: one chunk per blob, the layout before frames).
    #[arg(long, default_value_t = 64 << 10)]
    frame_target: u32,
    #[arg(long, default_value_t = vault::repo::DEFAULT_ZSTD_LEVEL)]
    zstd_level: i32,
    /// Runs of each measurement; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

/// Frames opened and verified by one task of a read (as `Vault::read_run` groups them).
const FRAMES_PER_TASK: usize = 8;

/// Pieces of the input given to one thread at a time (as `put` hands batches to its workers).
const PIECE: usize = 8 << 20;

fn main() -> Result<()> {
    let a = Args::parse();
    let mut data = Vec::new();
    std::fs::File::open(&a.input)
        .with_context(|| format!("opening {}", a.input.display()))?
        .take(a.max_mib << 20)
        .read_to_end(&mut data)?;
    if data.is_empty() {
        bail!("{} is empty", a.input.display());
    }
    let keys = Keys::derive(&MasterKey::from_bytes([7; 32]));
    let sealer = Sealer::new(keys.aead_key());
    let params =
        ChunkerParams { min: a.chunk_avg / 4, avg: a.chunk_avg, max: a.chunk_avg * 4, seed: keys.chunker_seed() };
    let threads = rayon::current_num_threads();
    let mb = data.len() as f64 / 1e6;

    // Write: chunk, hash, frame, compress and seal each piece on its own thread.
    let write_piece = |piece: &[u8]| -> Vec<SealedFrame> {
        let mut batch = ChunkBatch::default();
        let mut c = StreamChunker::new(params);
        c.push(piece, &mut batch);
        c.finish(&mut batch);
        let all: Vec<&[u8]> = batch.iter().collect();
        let ids: Vec<BlobRef> = keys.chunk_ids(&all).into_iter().map(BlobRef::data).collect();
        let todo: Vec<usize> = (0..batch.len()).collect();
        let mut at = vec![0u64];
        for x in batch.iter() {
            at.push(at[at.len() - 1] + x.len() as u64);
        }
        group(&todo, |i| batch.get(i).len(), |i| at[i], a.frame_target)
            .into_iter()
            .map(|r| {
                let members: Vec<(BlobRef, &[u8])> = r.map(|i| (ids[i], batch.get(i))).collect();
                seal_frame(&sealer, a.zstd_level, &members)
            })
            .collect()
    };
    let mut frames = Vec::new();
    let mut write_s = f64::MAX;
    for _ in 0..a.runs {
        let t = Instant::now();
        let f: Vec<Vec<SealedFrame>> = data.par_chunks(PIECE).map(write_piece).collect();
        write_s = write_s.min(t.elapsed().as_secs_f64());
        frames = f.into_iter().flatten().collect();
    }
    let stored: usize = frames.iter().map(|f| f.bytes.len()).sum();
    let chunks: usize = frames.iter().map(|f| f.members.len()).sum();

    // Read: open, decompress and verify every frame, a few frames per task with their chunks
    // hashed together (as reads do).
    let read_frames = |fs: &[SealedFrame]| -> Result<usize> {
        let mut opened = Vec::new();
        for f in fs {
            let entries = f.entries(0);
            let plain = open_frame(&sealer, &entries[0], &f.bytes)?;
            opened.push((entries, plain));
        }
        let mut members = Vec::new();
        let mut want = Vec::new();
        for (entries, plain) in &opened {
            for e in entries {
                members.push(member_of(e, plain)?);
                want.push(e.blob.id);
            }
        }
        if keys.chunk_ids(&members).iter().zip(&want).any(|(id, w)| id.0 != *w) {
            bail!("a chunk does not match its id");
        }
        Ok(opened.iter().map(|(_, p)| p.len()).sum())
    };
    let mut read_s = f64::MAX;
    for _ in 0..a.runs {
        let t = Instant::now();
        let n: usize =
            frames.par_chunks(FRAMES_PER_TASK).map(read_frames).collect::<Result<Vec<_>>>()?.into_iter().sum();
        read_s = read_s.min(t.elapsed().as_secs_f64());
        if n != data.len() {
            bail!("read back {n} bytes of {}", data.len());
        }
    }

    // Where one core's time goes when reading (the same work, one stage at a time).
    let t = Instant::now();
    let opened: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let e = f.entries(0);
            sealer_open(&sealer, &e[0], &f.bytes)
        })
        .collect::<Result<_>>()?;
    let aead_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let plains: Vec<Vec<u8>> =
        frames.iter().map(|f| open_frame(&sealer, &f.entries(0)[0], &f.bytes)).collect::<vault::Result<_>>()?;
    let open_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (f, p) in frames.iter().zip(&plains) {
        let members: Vec<&[u8]> = f.entries(0).iter().map(|e| member_of(e, p)).collect::<vault::Result<_>>()?;
        std::hint::black_box(keys.chunk_ids(&members));
    }
    let hash_s = t.elapsed().as_secs_f64();
    drop(opened);

    println!(
        "input {mb:.1} MB, {chunks} chunks in {} frames (frame target {} B), stored {:.1} MB, {threads} threads",
        frames.len(),
        a.frame_target,
        stored as f64 / 1e6
    );
    println!(
        "one core, read: AES-GCM-SIV {:.0} MB/s, AES + zstd {:.0} MB/s, BLAKE3 {:.0} MB/s",
        mb / aead_s,
        mb / open_s,
        mb / hash_s
    );
    println!("read_limit_mb_s {:.1}", mb / read_s);
    println!("write_limit_mb_s {:.1}", mb / write_s);
    Ok(())
}

/// AES-GCM-SIV alone (no decompression), to show its share.
fn sealer_open(sealer: &Sealer, e: &vault::format::pack::PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    let (domain, id): (vault::crypto::Domain, &[u8]) = match &e.member {
        None => (vault::crypto::Domain::DataBlob, &e.blob.id),
        Some(m) => (vault::crypto::Domain::DataFrame, &m.frame),
    };
    Ok(sealer.open(domain, id, sealed)?)
}
