//! Reading blobs and files back: index lookup, ranged pack read, authenticate, decompress,
//! verify the content id. Nothing unverified ever reaches a caller: a damaged or missing blob
//! is an error naming the blob and its pack.

use super::packer::open_blob;
use super::Vault;
use crate::error::{Error, Result};
use crate::format::tree::{decode_list, ChunkRef, Content, Node, NodeKind, PageRef};
use crate::id::{BlobKind, BlobRef};
use crate::store::ObjKind;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Chunks fetched in parallel ahead of the one being written out.
const READ_AHEAD: usize = 64;

impl Vault {
    /// Fetches, authenticates and verifies one blob.
    pub fn read_blob(&self, blob: BlobRef) -> Result<Vec<u8>> {
        match self.try_read_blob(blob)? {
            Ok(plain) => Ok(plain),
            Err(_) => {
                // Not where the index said (or not in it): a prune may have moved it since the
                // index was loaded. Reload the index files and look once more.
                self.sync_index()?;
                self.try_read_blob(blob)?
            }
        }
    }

    /// The inner error is a blob the index does not know or whose pack is gone.
    fn try_read_blob(&self, blob: BlobRef) -> Result<Result<Vec<u8>>> {
        let pending = self.pending.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(p) = pending {
            if let Some(r) = p.sealed(&*self.store, &blob) {
                let (sealed, raw) = r?;
                let what = || format!("{} (written by this process, not yet indexed)", blob.describe());
                let plain = open_blob(&self.sealer, blob, &sealed, raw).map_err(|err| err.context(what()))?;
                self.verify_content(blob, &plain).map_err(|err| err.context(what()))?;
                return Ok(Ok(plain));
            }
        }
        let Some(e) = self.index.get(&blob)? else {
            return Ok(Err(Error::corrupt(format!(
                "{} is not in the index (missing data; if index files were lost, run `vaultctl rebuild-index`)",
                blob.describe()
            ))));
        };
        let what = || format!("{} in pack {}", blob.describe(), e.pack.short());
        let sealed = match self.store.get_range(ObjKind::Pack, &e.pack.to_hex(), e.offset as u64, e.length) {
            Ok(b) => b,
            Err(err) if err.kind() == crate::ErrorKind::NotFound => {
                return Ok(Err(Error::corrupt(format!("{}: pack file is missing", what()))))
            }
            Err(err) => return Err(err.context(what())),
        };
        let plain = open_blob(&self.sealer, blob, &sealed, e.raw_length).map_err(|err| err.context(what()))?;
        self.verify_content(blob, &plain).map_err(|err| err.context(what()))?;
        Ok(Ok(plain))
    }

    pub(crate) fn verify_content(&self, blob: BlobRef, plain: &[u8]) -> Result<()> {
        let actual = match blob.kind {
            BlobKind::Data => self.keys.chunk_id(plain).0,
            BlobKind::Tree | BlobKind::List => self.keys.tree_id(plain).0,
        };
        if actual != blob.id {
            return Err(Error::corrupt("content does not match its id"));
        }
        Ok(())
    }

    /// Loads one page of a chunk list and checks it against its reference.
    pub fn load_list(&self, page: &PageRef) -> Result<Vec<ChunkRef>> {
        let plain = self.read_blob(BlobRef::list(page.id))?;
        let list = decode_list(&plain).map_err(|e| e.context(format!("chunk list {}", page.id.short())))?;
        let bytes: u64 = list.iter().map(|c| c.len as u64).sum();
        if list.len() != page.chunks as usize || bytes != page.bytes {
            return Err(Error::corrupt(format!("chunk list {} does not match its reference", page.id.short())));
        }
        Ok(list)
    }

    /// A reader over a file node's content.
    pub fn file_reader(&self, node: &Node) -> Result<FileReader<'_>> {
        match &node.kind {
            NodeKind::File { content, .. } => Ok(FileReader::new(self, content)),
            _ => Err(Error::invalid(format!("{} is not a regular file", String::from_utf8_lossy(&node.name)))),
        }
    }
}

/// Bytes fetched ahead of a sequential reader (served by later `read_at` calls).
const READ_AHEAD_BYTES: u64 = 2 << 20;
/// Chunk-list pages kept decoded per reader.
const PAGES_KEPT: usize = 4;

/// One page (or the inline list) with offsets relative to the page start.
struct Loaded {
    chunks: Vec<ChunkRef>,
    starts: Vec<u64>,
}

impl Loaded {
    fn new(chunks: Vec<ChunkRef>) -> Self {
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut off = 0u64;
        for c in &chunks {
            starts.push(off);
            off += c.len as u64;
        }
        starts.push(off);
        Loaded { chunks, starts }
    }
    fn chunk_at(&self, off: u64) -> usize {
        match self.starts.binary_search(&off) {
            Ok(i) => i.min(self.chunks.len().saturating_sub(1)),
            Err(i) => i - 1,
        }
    }
}

enum Seg {
    Inline(Arc<Loaded>),
    Page(PageRef),
}

/// Random and streaming access to one file's bytes. Offsets are found by binary search over
/// the pages, then within the page; only a few pages are decoded at a time, so memory does
/// not depend on the file size.
pub struct FileReader<'v> {
    vault: &'v Vault,
    segs: Vec<Seg>,
    /// Byte offset of each segment; one extra entry = file size.
    seg_starts: Vec<u64>,
    /// Global index of each segment's first chunk.
    seg_first: Vec<usize>,
    pages: Mutex<Vec<(usize, Arc<Loaded>)>>,
    /// Decrypted chunks fetched ahead, by global chunk index (bounded by READ_AHEAD_BYTES).
    ahead: Mutex<BTreeMap<usize, Arc<Vec<u8>>>>,
}

impl<'v> FileReader<'v> {
    pub fn new(vault: &'v Vault, content: &Content) -> Self {
        let mut segs = Vec::new();
        if !content.inline.is_empty() {
            segs.push(Seg::Inline(Arc::new(Loaded::new(content.inline.clone()))));
        }
        segs.extend(content.pages.iter().map(|p| Seg::Page(*p)));
        let (mut seg_starts, mut seg_first) = (Vec::new(), Vec::new());
        let (mut off, mut first) = (0u64, 0usize);
        for s in &segs {
            seg_starts.push(off);
            seg_first.push(first);
            let (n, b) = match s {
                Seg::Inline(l) => (l.chunks.len(), *l.starts.last().unwrap_or(&0)),
                Seg::Page(p) => (p.chunks as usize, p.bytes),
            };
            off += b;
            first += n;
        }
        seg_starts.push(off);
        seg_first.push(first);
        FileReader { vault, segs, seg_starts, seg_first, pages: Mutex::new(Vec::new()), ahead: Default::default() }
    }

    pub fn size(&self) -> u64 {
        *self.seg_starts.last().unwrap_or(&0)
    }

    fn chunk_count(&self) -> usize {
        *self.seg_first.last().unwrap_or(&0)
    }

    fn seg(&self, k: usize) -> Result<Arc<Loaded>> {
        match &self.segs[k] {
            Seg::Inline(l) => Ok(l.clone()),
            Seg::Page(p) => {
                let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, l)) = pages.iter().find(|(i, _)| *i == k) {
                    return Ok(l.clone());
                }
                let l = Arc::new(Loaded::new(self.vault.load_list(p)?));
                if pages.len() >= PAGES_KEPT {
                    pages.remove(0);
                }
                pages.push((k, l.clone()));
                Ok(l)
            }
        }
    }

    fn seg_of_offset(&self, off: u64) -> usize {
        match self.seg_starts.binary_search(&off) {
            Ok(i) => i.min(self.segs.len().saturating_sub(1)),
            Err(i) => i - 1,
        }
    }

    fn seg_of_chunk(&self, i: usize) -> usize {
        match self.seg_first.binary_search(&i) {
            Ok(k) => k.min(self.segs.len().saturating_sub(1)),
            Err(k) => k - 1,
        }
    }

    /// Global index of the chunk holding byte `off` (< size).
    fn chunk_index(&self, off: u64) -> Result<usize> {
        let k = self.seg_of_offset(off);
        let l = self.seg(k)?;
        Ok(self.seg_first[k] + l.chunk_at(off - self.seg_starts[k]))
    }

    /// (chunk, absolute start) of global chunk `i`.
    fn chunk(&self, i: usize) -> Result<(ChunkRef, u64)> {
        let k = self.seg_of_chunk(i);
        let l = self.seg(k)?;
        let j = i - self.seg_first[k];
        Ok((l.chunks[j], self.seg_starts[k] + l.starts[j]))
    }

    /// Up to `len` bytes at `off` (fewer only at end of file). Chunks after the range are
    /// fetched in the same parallel batch and kept for the next call, so a sequential reader
    /// (the kernel's 128 KiB requests) finds them decrypted already.
    pub fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let end = (off + len as u64).min(self.size());
        if off >= end {
            return Ok(Vec::new());
        }
        let (first, last) = (self.chunk_index(off)?, self.chunk_index(end - 1)?);
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        *ahead = ahead.split_off(&first);
        let mut want: Vec<(usize, ChunkRef)> = Vec::new();
        for i in first..=last {
            if !ahead.contains_key(&i) {
                want.push((i, self.chunk(i)?.0));
            }
        }
        if !want.is_empty() {
            // A miss: fetch the range and read ahead of it.
            let (_, last_start) = self.chunk(last)?;
            let limit = last_start + READ_AHEAD_BYTES;
            let mut i = last + 1;
            while i < self.chunk_count() {
                let (c, s) = self.chunk(i)?;
                if s >= limit {
                    break;
                }
                if !ahead.contains_key(&i) {
                    want.push((i, c));
                }
                i += 1;
            }
            let got: Vec<(usize, Result<Vec<u8>>)> =
                want.par_iter().map(|(i, c)| (*i, self.vault.read_blob(BlobRef::data(c.id)))).collect();
            for (i, b) in got {
                match b {
                    Ok(b) => {
                        ahead.insert(i, Arc::new(b));
                    }
                    // Errors beyond the requested range are reported when that range is read.
                    Err(e) if i <= last => return Err(e),
                    Err(_) => {}
                }
            }
        }
        let mut out = Vec::with_capacity((end - off) as usize);
        for i in first..=last {
            let b = ahead.get(&i).ok_or_else(|| Error::corrupt("chunk vanished from the read-ahead"))?;
            let (_, s) = self.chunk(i)?;
            let from = off.saturating_sub(s) as usize;
            let to = ((end - s) as usize).min(b.len());
            out.extend_from_slice(&b[from..to]);
        }
        Ok(out)
    }

    /// Writes the whole content to `w`, fetching chunks in parallel ahead of the writer.
    /// Stops at the first damaged chunk: bytes before it have been written, none after.
    pub fn copy_to(&self, w: &mut dyn Write) -> Result<u64> {
        let mut written = 0u64;
        for k in 0..self.segs.len() {
            let l = self.seg(k)?;
            for window in l.chunks.chunks(READ_AHEAD) {
                let blobs: Vec<Result<Vec<u8>>> =
                    window.par_iter().map(|c| self.vault.read_blob(BlobRef::data(c.id))).collect();
                for b in blobs {
                    let b = b?;
                    w.write_all(&b).map_err(|e| Error::io("writing output", e))?;
                    written += b.len() as u64;
                }
            }
        }
        Ok(written)
    }

    /// Every chunk of the file in order (loads the pages one after another).
    pub fn for_each_chunk(&self, f: &mut dyn FnMut(&ChunkRef) -> Result<()>) -> Result<()> {
        for k in 0..self.segs.len() {
            for c in &self.seg(k)?.chunks {
                f(c)?;
            }
        }
        Ok(())
    }
}
