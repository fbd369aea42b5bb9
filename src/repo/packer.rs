//! Building pack files from sealed blobs.
//!
//! Data blobs are spread at random over several open packs (restic 0.18's mitigation: which
//! chunks share a pack no longer reveals their order in the file); tree blobs go to their own
//! pack so that metadata stays small and quick to fetch. A pack is written whole with one
//! atomic, durable `put`; its entries become visible to readers only through an index file
//! written after it.

use crate::crypto::{Domain, Sealer};
use crate::error::{Error, Result};
use crate::format::codec::Writer;
use crate::format::index::IndexPack;
use crate::format::pack::{encode_header, PackEntry, PREAMBLE};
use crate::id::{BlobKind, BlobRef, PackId};
use crate::store::{ObjKind, Store};
use rand::Rng;
use std::sync::Arc;

/// How many data packs are filled at once.
pub const OPEN_DATA_PACKS: usize = 4;

/// A blob ready to be packed: `[compression u8 || payload]` sealed.
pub struct SealedBlob {
    pub blob: BlobRef,
    pub bytes: Vec<u8>,
    pub raw_length: u32,
}

pub const COMP_NONE: u8 = 0;
pub const COMP_ZSTD: u8 = 1;

pub fn domain_of(kind: BlobKind) -> Domain {
    match kind {
        BlobKind::Data => Domain::DataBlob,
        BlobKind::Tree => Domain::TreeBlob,
        BlobKind::List => Domain::ListBlob,
    }
}

/// Compresses (when it helps) and seals one blob.
pub fn seal_blob(sealer: &Sealer, level: i32, blob: BlobRef, plain: &[u8]) -> SealedBlob {
    let mut framed = Vec::with_capacity(plain.len() + 1);
    let compressed = compress(plain, level).filter(|c| c.len() + c.len() / 32 < plain.len());
    match compressed {
        Some(c) => {
            framed.push(COMP_ZSTD);
            framed.extend_from_slice(&c);
        }
        None => {
            framed.push(COMP_NONE);
            framed.extend_from_slice(plain);
        }
    }
    SealedBlob { blob, bytes: sealer.seal(domain_of(blob.kind), &blob.id, &framed), raw_length: plain.len() as u32 }
}

thread_local! {
    /// One zstd context per thread, reused for every blob (creating one per chunk costs more
    /// than compressing a small chunk).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
}

fn compress(plain: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            *c = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        c.as_mut()?.1.compress(plain).ok()
    })
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
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

/// Opens a sealed blob and undoes compression; checks the length against `raw_length`.
pub fn open_blob(sealer: &Sealer, blob: BlobRef, sealed: &[u8], raw_length: u32) -> Result<Vec<u8>> {
    let framed = sealer.open(domain_of(blob.kind), &blob.id, sealed)?;
    let (flag, body) = framed.split_first().ok_or_else(|| Error::corrupt("empty blob"))?;
    let plain = match *flag {
        COMP_NONE => body.to_vec(),
        COMP_ZSTD => decompress(body, raw_length as usize)?,
        f => return Err(Error::corrupt(format!("unknown compression {f}"))),
    };
    if plain.len() != raw_length as usize {
        return Err(Error::corrupt(format!("length {} differs from the recorded {raw_length}", plain.len())));
    }
    Ok(plain)
}

struct Builder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl Builder {
    fn new() -> Self {
        Builder { buf: PREAMBLE.to_vec(), entries: Vec::new() }
    }
    fn add(&mut self, b: SealedBlob) {
        self.entries.push(PackEntry {
            blob: b.blob,
            offset: self.buf.len() as u32,
            length: b.bytes.len() as u32,
            raw_length: b.raw_length,
        });
        self.buf.extend_from_slice(&b.bytes);
    }
}

/// Writes full packs on a background thread, so sealing goes on while a pack is being
/// written and fsynced. At most one pack waits in the queue.
struct Uploader {
    tx: std::sync::mpsc::SyncSender<Builder>,
    done: std::thread::JoinHandle<Result<Vec<IndexPack>>>,
}

impl Uploader {
    fn start(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Builder>(1);
        let done = std::thread::spawn(move || {
            let mut out = Vec::new();
            for b in rx {
                out.push(write_pack(&*store, &sealer, b)?);
            }
            Ok(out)
        });
        Uploader { tx, done }
    }

    /// Waits for every queued pack; the first write error is returned.
    fn finish(self) -> Result<Vec<IndexPack>> {
        drop(self.tx);
        self.done.join().map_err(|_| Error::new(crate::ErrorKind::Io, "pack writer thread panicked"))?
    }
}

pub struct Packer {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    data: Vec<Builder>,
    tree: Builder,
    target: usize,
    uploader: Option<Uploader>,
    /// Packs written (durable) and not yet covered by an index file.
    written: Vec<IndexPack>,
    stored_bytes: u64,
}

impl Packer {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>, target: u32) -> Self {
        Packer {
            store,
            sealer,
            data: (0..OPEN_DATA_PACKS).map(|_| Builder::new()).collect(),
            tree: Builder::new(),
            target: target as usize,
            uploader: None,
            written: Vec::new(),
            stored_bytes: 0,
        }
    }

    /// Adds a blob; hands a pack to the writer thread when one reaches the target size.
    pub fn add(&mut self, b: SealedBlob) -> Result<()> {
        self.stored_bytes += b.bytes.len() as u64;
        let builder = match b.blob.kind {
            BlobKind::Tree | BlobKind::List => &mut self.tree,
            BlobKind::Data => {
                let i = rand::thread_rng().gen_range(0..self.data.len());
                &mut self.data[i]
            }
        };
        builder.add(b);
        if builder.buf.len() >= self.target {
            let full = std::mem::replace(builder, Builder::new());
            let up = self.uploader.get_or_insert_with(|| Uploader::start(self.store.clone(), self.sealer.clone()));
            if up.tx.send(full).is_err() {
                // The writer stopped after an error; collect it.
                let up = self.uploader.take().ok_or_else(|| Error::new(crate::ErrorKind::Io, "pack writer lost"))?;
                up.finish()?;
                return Err(Error::new(crate::ErrorKind::Io, "pack writer stopped"));
            }
        }
        Ok(())
    }

    /// Writes every non-empty open pack and waits until all packs are durable.
    pub fn flush(&mut self) -> Result<()> {
        let mut all: Vec<Builder> = self.data.iter_mut().map(|b| std::mem::replace(b, Builder::new())).collect();
        all.push(std::mem::replace(&mut self.tree, Builder::new()));
        if let Some(up) = self.uploader.take() {
            self.written.extend(up.finish()?);
        }
        for b in all {
            if !b.entries.is_empty() {
                let p = write_pack(&*self.store, &self.sealer, b)?;
                self.written.push(p);
            }
        }
        Ok(())
    }

    /// Takes the list of packs written since the last call (to put in an index file).
    pub fn take_written(&mut self) -> Vec<IndexPack> {
        std::mem::take(&mut self.written)
    }

    /// Sealed bytes of every blob added so far.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    /// Bytes buffered in open packs (bounded by OPEN_DATA_PACKS + 1 times the target, plus
    /// two packs on their way to the store).
    pub fn buffered(&self) -> usize {
        self.data.iter().map(|b| b.buf.len()).sum::<usize>() + self.tree.buf.len()
    }
}

fn write_pack(store: &dyn Store, sealer: &Sealer, mut b: Builder) -> Result<IndexPack> {
    let id = PackId::random();
    let header = sealer.seal(Domain::PackHeader, id.as_bytes(), &encode_header(&b.entries));
    let mut w = Writer { buf: std::mem::take(&mut b.buf) };
    w.raw(&header).u32(header.len() as u32);
    let bytes = w.finish();
    store.put(ObjKind::Pack, &id.to_hex(), &bytes).map_err(|e| e.context(format!("writing pack {}", id.short())))?;
    Ok(IndexPack { pack: id, size: bytes.len() as u64, entries: b.entries })
}

/// Reads and authenticates a whole pack's header (used by check and index rebuild).
pub fn read_pack_header(store: &dyn Store, sealer: &Sealer, id: &PackId) -> Result<(u64, Vec<PackEntry>)> {
    let bytes = store.get(ObjKind::Pack, &id.to_hex())?;
    let (entries, _) = parse_pack(sealer, id, &bytes)?;
    Ok((bytes.len() as u64, entries))
}

/// Parses a whole pack file: header entries and the file length.
pub fn parse_pack(sealer: &Sealer, id: &PackId, bytes: &[u8]) -> Result<(Vec<PackEntry>, u64)> {
    let (sealed_header, blob_end) = crate::format::pack::split_trailer(bytes)?;
    let plain = sealer.open(Domain::PackHeader, id.as_bytes(), sealed_header).map_err(|e| e.context("pack header"))?;
    let entries = crate::format::pack::decode_header(&plain, blob_end)?;
    Ok((entries, bytes.len() as u64))
}
