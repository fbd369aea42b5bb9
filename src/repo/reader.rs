//! Reading blobs and files back: index lookup, ranged pack read, authenticate, decompress,
//! verify the content id. Nothing unverified ever reaches a caller: a damaged or missing blob
//! is an error naming the blob and its pack.

use super::packer::open_blob;
use super::Vault;
use crate::error::{Error, Result};
use crate::format::tree::{ChunkRef, Node, NodeKind};
use crate::id::{BlobKind, BlobRef};
use crate::store::ObjKind;
use rayon::prelude::*;
use std::io::Write;

/// Chunks fetched in parallel ahead of the one being written out.
const READ_AHEAD: usize = 64;

impl Vault {
    /// Fetches, authenticates and verifies one blob.
    pub fn read_blob(&self, blob: BlobRef) -> Result<Vec<u8>> {
        let e = self.index.get(&blob)?.ok_or_else(|| {
            Error::corrupt(format!(
                "{} is not in the index (missing data; if index files were lost, run `vaultctl rebuild-index`)",
                blob.describe()
            ))
        })?;
        let what = || format!("{} in pack {}", blob.describe(), e.pack.short());
        let sealed =
            self.store.get_range(ObjKind::Pack, &e.pack.to_hex(), e.offset as u64, e.length).map_err(|err| {
                if err.kind() == crate::ErrorKind::NotFound {
                    Error::corrupt(format!("{}: pack file is missing", what()))
                } else {
                    err.context(what())
                }
            })?;
        let plain = open_blob(&self.sealer, blob, &sealed, e.raw_length).map_err(|err| err.context(what()))?;
        self.verify_content(blob, &plain).map_err(|err| err.context(what()))?;
        Ok(plain)
    }

    pub(crate) fn verify_content(&self, blob: BlobRef, plain: &[u8]) -> Result<()> {
        let actual = match blob.kind {
            BlobKind::Data => self.keys.chunk_id(plain).0,
            BlobKind::Tree => self.keys.tree_id(plain).0,
        };
        if actual != blob.id {
            return Err(Error::corrupt("content does not match its id"));
        }
        Ok(())
    }

    /// A reader over a file node's content.
    pub fn file_reader(&self, node: &Node) -> Result<FileReader<'_>> {
        match &node.kind {
            NodeKind::File { chunks, .. } => Ok(FileReader::new(self, chunks.clone())),
            _ => Err(Error::invalid(format!("{} is not a regular file", String::from_utf8_lossy(&node.name)))),
        }
    }
}

/// Bytes fetched ahead of a sequential reader (served by later `read_at` calls).
const READ_AHEAD_BYTES: u64 = 2 << 20;

/// Random and streaming access to one file's bytes.
pub struct FileReader<'v> {
    vault: &'v Vault,
    chunks: Vec<ChunkRef>,
    /// `starts[i]` = offset of chunk i; one extra entry = file size.
    starts: Vec<u64>,
    /// Decrypted chunks fetched ahead, by chunk index (bounded by READ_AHEAD_BYTES).
    ahead: std::sync::Mutex<std::collections::BTreeMap<usize, std::sync::Arc<Vec<u8>>>>,
}

impl<'v> FileReader<'v> {
    pub fn new(vault: &'v Vault, chunks: Vec<ChunkRef>) -> Self {
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut off = 0u64;
        for c in &chunks {
            starts.push(off);
            off += c.len as u64;
        }
        starts.push(off);
        FileReader { vault, chunks, starts, ahead: Default::default() }
    }

    pub fn size(&self) -> u64 {
        *self.starts.last().unwrap_or(&0)
    }

    /// Index of the chunk holding byte `off` (binary search).
    fn chunk_at(&self, off: u64) -> usize {
        match self.starts.binary_search(&off) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    /// Up to `len` bytes at `off` (fewer only at end of file). Chunks after the range are
    /// fetched in the same parallel batch and kept for the next call, so a sequential reader
    /// (the kernel's 128 KiB requests) finds them decrypted already.
    pub fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let end = (off + len as u64).min(self.size());
        if off >= end {
            return Ok(Vec::new());
        }
        let (first, last) = (self.chunk_at(off), self.chunk_at(end - 1));
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what lies behind the reader.
        *ahead = ahead.split_off(&first);
        let mut want: Vec<usize> = (first..=last).filter(|i| !ahead.contains_key(i)).collect();
        if !want.is_empty() {
            // A miss: fetch the range and read ahead of it.
            let limit = self.starts[last + 1] + READ_AHEAD_BYTES;
            let mut i = last + 1;
            while i < self.chunks.len() && self.starts[i] < limit {
                if !ahead.contains_key(&i) {
                    want.push(i);
                }
                i += 1;
            }
            let got: Vec<(usize, Result<Vec<u8>>)> =
                want.par_iter().map(|&i| (i, self.vault.read_blob(BlobRef::data(self.chunks[i].id)))).collect();
            for (i, b) in got {
                match b {
                    Ok(b) => {
                        ahead.insert(i, std::sync::Arc::new(b));
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
            let s = self.starts[i];
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
        for window in self.chunks.chunks(READ_AHEAD) {
            let blobs: Vec<Result<Vec<u8>>> =
                window.par_iter().map(|c| self.vault.read_blob(BlobRef::data(c.id))).collect();
            for b in blobs {
                let b = b?;
                w.write_all(&b).map_err(|e| Error::io("writing output", e))?;
                written += b.len() as u64;
            }
        }
        Ok(written)
    }
}
