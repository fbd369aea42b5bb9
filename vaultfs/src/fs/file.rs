//! The content of one file of the writable period, while it may still change.
//!
//! Layout: `chunks` cover `[0, chunked_len)` and are already stored (sealed, packed);
//! `tail` holds `[tail_start, size)` in memory and is handed to the file's storing thread
//! (src/fs/flow.rs) once it grows past [`TAIL_LIMIT`], which cuts and stores it while the
//! writer goes on (`[chunked_len, tail_start)` is in its hands until its chunks are taken in);
//! writes that land inside the chunked part go to `overlay` (sorted,
//! non-overlapping extents) until [`OVERLAY_LIMIT`] or a commit, when only the affected chunks
//! are re-chunked: from the first dirty chunk until a new boundary coincides with an old one
//! past the last dirty byte (content-defined boundaries depend only on the bytes since the
//! previous boundary, so from there on the old chunks are exactly right). Memory is thus
//! bounded by the two limits whatever the file size; nothing plaintext is written to disk.
//!
//! Chunks are stored through the mount's [`Live`] writer; reading them back never needs a
//! flush, because this process reads its own not yet indexed blobs from the writer's memory.
//! A write that fails (a full disk) leaves the file failed: later writes and the close report
//! the error, and the last close drops the staged content (docs/SEMANTICS.md).

use super::flow::{Flow, Taken};
use std::collections::BTreeMap;
use std::sync::Arc;
use vault::chunker::{ChunkBatch, StreamChunker};
use vault::format::tree::{ChunkRef, Content, FileState, PageRef, Recipe, INLINE_CHUNKS, PAGE_CHUNKS};
use vault::id::BlobRef;
use vault::rebuild::{Job, Piece};
use vault::repo::live::Live;
use vault::repo::{FileReader, Vault};
use vault::{Error, ErrorKind, Result};

/// Tail bytes kept in memory before they are chunked and stored.
pub const TAIL_LIMIT: usize = 8 << 20;
/// Room for the write that fills a tail past [`TAIL_LIMIT`] (the kernel sends at most 1 MiB).
const TAIL_ROOM: usize = TAIL_LIMIT + (1 << 20);
/// A compressed file that stays under [`TAIL_LIMIT`] is expanded at its commit from this size
/// on (smaller ones gain little, and an expanded file takes a bulk pack of its own).
pub const EXPAND_AT_CLOSE: usize = 1 << 20;
/// Overlay bytes kept in memory before the affected chunks are rewritten.
pub const OVERLAY_LIMIT: usize = 16 << 20;
/// Bytes rewritten behind the end of a file being expanded that are kept until it ends
/// (each rewrite counted with [`PATCH_OVERHEAD`] more, for its bookkeeping).
pub const PATCH_LIMIT: usize = 16 << 20;
const PATCH_OVERHEAD: usize = 64;
const ZERO_BLOCK: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct FileData {
    /// Created by this mount and never closed with any content: a failed write drops it
    /// whole, even when a close before its first byte (`dd`, a shell redirection: the file
    /// descriptor moved, the first one closed) journaled it empty.
    pub fresh: bool,
    /// Committed content not expanded into `chunks` (files nobody is writing): only the page
    /// references stay in memory.
    lazy: Option<Content>,
    /// Stored prefix of the chunk table: pages written as the file grew. `chunks` and
    /// `starts` continue from `paged_len`, so the table in memory stays under two pages.
    paged: Vec<PageRef>,
    paged_len: u64,
    chunks: Vec<ChunkRef>,
    /// `starts[i]` = absolute offset of `chunks[i]`; one extra entry = `chunked_len`.
    starts: Vec<u64>,
    tail: Vec<u8>,
    /// Full tails being stored by the file's storing thread: they cover
    /// `[chunked_len, tail_start)` until their chunks are taken in.
    flow: Option<Flow>,
    overlay: BTreeMap<u64, Vec<u8>>,
    overlay_bytes: usize,
    /// The last chunk was cut at the end of the file by a commit, not by the chunker.
    finalized: bool,
    /// Content as of the last commit (what a commit of another file records for this one).
    pub committed: Option<Committed>,
    /// The last committed content whose journal record was appended: what a failed commit
    /// falls back to.
    pub journaled: Option<Committed>,
    /// Changed since the last commit.
    pub dirty: bool,
    /// Open handles that may write.
    pub writers: u32,
    /// Bumped whenever the content changes (lets readers keep a chunk table while valid).
    pub generation: u64,
    /// A write, truncate or commit failed: the staged content is not trustworthy.
    pub failed: Option<ErrorKind>,
    /// The file outgrew the memory limits: its chunks went to the bulk packs.
    pub bulk: bool,
    /// A compressed file written in order from its start, being stored expanded: `chunks`
    /// (and `paged`) then hold its expanded stream, not its bytes.
    expanding: Option<Box<Expanding>>,
    /// Ending an expansion failed: nothing staged is the file's bytes any more.
    lost: bool,
    /// A reader of committed expanded content, kept between reads (it recreates the
    /// compressed stream in order: a new one per read would start it over each time).
    rebuilt: Option<KeptReader>,
}

/// A reader of `lazy` content as of `generation`.
struct KeptReader {
    generation: u64,
    reader: FileReader<'static>,
}

impl std::fmt::Debug for KeptReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeptReader(generation {})", self.generation)
    }
}

/// The expansion of a file as it is written (src/rebuild).
#[derive(Debug)]
struct Expanding {
    job: Job,
    /// Recipe chunks not yet in a page, and the pages written.
    recipe: Vec<ChunkRef>,
    recipe_pages: Vec<PageRef>,
    /// Writes behind the bytes already fed (`pg_dump -Fc` rewriting its table of contents,
    /// a zip writer filling in a local header), in order: applied when the expansion ends,
    /// to the expanded stream when they change only copied bytes (docs/DESIGN.md §14).
    patches: Vec<(u64, Vec<u8>)>,
    patch_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Committed {
    pub content: Content,
    pub size: u64,
    pub state: FileState,
}

impl FileData {
    pub fn new() -> Self {
        FileData { starts: vec![0], ..Default::default() }
    }

    /// A file created through the mount (see `fresh`).
    pub fn created() -> Self {
        FileData { fresh: true, ..Self::new() }
    }

    /// A file loaded from a snapshot: only its page references are kept until it is written.
    pub fn from_content(content: Content, state: FileState) -> Self {
        let mut f = FileData::new();
        let size = content.size();
        f.finalized = true;
        f.committed = Some(Committed { content: content.clone(), size, state });
        f.journaled = f.committed.clone();
        f.lazy = Some(content);
        f
    }

    /// Turns lazy content back into a writable chunk table: its pages stay stored.
    fn load(&mut self, w: &Arc<Live>) -> Result<()> {
        let v = w.vault();
        let Some(content) = self.lazy.take() else { return Ok(()) };
        if content.recipe.is_some() {
            return self.load_rebuilt(w, &content).inspect_err(|_| self.lazy = Some(content.clone()));
        }
        self.paged = content.pages;
        self.paged_len = self.paged.iter().map(|p| p.bytes).sum();
        self.chunks.clear();
        self.starts = vec![self.paged_len];
        if !content.inline.is_empty() {
            // Inline chunks come before pages: expand everything (only for foreign content).
            let pages = std::mem::take(&mut self.paged);
            self.paged_len = 0;
            self.starts = vec![0];
            let mut all = content.inline;
            all.extend(Self::load_pages(v, &pages)?);
            self.push_chunks(&all);
        }
        self.finalized = true;
        Ok(())
    }

    /// A file stored expanded (src/rebuild) that is written to: its original bytes are
    /// chunked again into a chunk table of their own.
    fn load_rebuilt(&mut self, w: &Arc<Live>, content: &Content) -> Result<()> {
        let v = w.vault();
        let r = FileReader::new(v, content)?;
        let size = r.size();
        self.clear_table();
        self.bulk = size > TAIL_LIMIT as u64;
        let mut chunker = StreamChunker::new(v.chunker_params());
        let mut off = 0u64;
        while off < size {
            let b = r.read_at(off, TAIL_LIMIT)?;
            if b.is_empty() {
                return Err(Error::corrupt("file shorter than its size"));
            }
            off += b.len() as u64;
            let mut batch = ChunkBatch::default();
            chunker.push(&b, &mut batch);
            let refs = w.add_chunks(&batch, self.bulk)?;
            self.append_chunks(w, &refs)?;
        }
        let mut batch = ChunkBatch::default();
        chunker.finish(&mut batch);
        let refs = w.add_chunks(&batch, self.bulk)?;
        self.append_chunks(w, &refs)?;
        self.finalized = true;
        Ok(())
    }

    /// Hands written bytes to the expansion and stores the chunks it has ready.
    fn feed(&mut self, w: &Arc<Live>, data: Vec<u8>) -> Result<()> {
        let mut e = self.expanding.take().ok_or_else(|| Error::invalid("file is not being expanded"))?;
        let r = e.job.feed(data, &mut |p| self.store_piece(w, &mut e.recipe, &mut e.recipe_pages, p));
        self.expanding = Some(e);
        r
    }

    fn store_piece(
        &mut self,
        w: &Arc<Live>,
        recipe: &mut Vec<ChunkRef>,
        pages: &mut Vec<PageRef>,
        p: &Piece,
    ) -> Result<()> {
        match p {
            Piece::Expanded(b) => {
                let refs = w.add_chunks(b, true)?;
                self.append_chunks(w, &refs)
            }
            Piece::Recipe(b) => {
                recipe.extend(w.add_chunks(b, true)?);
                while recipe.len() >= 2 * PAGE_CHUNKS {
                    pages.push(w.write_list(&recipe[..PAGE_CHUNKS])?);
                    recipe.drain(..PAGE_CHUNKS);
                }
                Ok(())
            }
            Piece::Done(_) => Ok(()),
        }
    }

    /// Ends the expansion: the file becomes its committed-to-be content (expanded stream and
    /// recipe, or its bytes when nothing was worth expanding), held like a loaded snapshot
    /// file.
    fn finish_expanding(&mut self, w: &Arc<Live>) -> Result<Content> {
        let r = self.finish_expanding_inner(w);
        self.clear_table();
        match &r {
            Ok(content) => {
                self.finalized = true;
                self.lazy = Some(content.clone());
            }
            // What was staged is part of an expanded stream, not the file's bytes: none of it
            // may be read as the file.
            Err(_) => self.lose_staged(),
        }
        r
    }

    fn finish_expanding_inner(&mut self, w: &Arc<Live>) -> Result<Content> {
        let Some(e) = self.expanding.take() else { return Err(Error::invalid("file is not being expanded")) };
        let Expanding { job, mut recipe, mut recipe_pages, .. } = *e;
        let fed = job.fed;
        let x = job.finish(&mut |p| self.store_piece(w, &mut recipe, &mut recipe_pages, p))?;
        let mut content = Self::content(w, &self.paged, &self.chunks)?;
        if content.chunk_bytes() != x.expanded || x.original != fed {
            return Err(Error::corrupt("expanded file: sizes do not add up"));
        }
        if x.rebuilt() {
            let r = Self::content(w, &recipe_pages, &recipe)?;
            content.recipe = Some(Box::new(Recipe { size: x.original, inline: r.inline, pages: r.pages }));
        }
        Ok(content)
    }

    /// Empties the chunk table (stored pages stay stored).
    fn clear_table(&mut self) {
        (self.paged, self.paged_len, self.chunks, self.starts) = (Vec::new(), 0, Vec::new(), vec![0]);
    }

    /// Drops everything staged after an error that leaves none of it the file's bytes: reads
    /// fail and the last close drops the file.
    fn lose_staged(&mut self) {
        self.clear_table();
        (self.overlay, self.overlay_bytes) = (BTreeMap::new(), 0);
        (self.lazy, self.tail, self.lost) = (None, Vec::new(), true);
        self.flow = None;
    }

    /// Ends the expansion and applies the rewrites kept meanwhile. With `keep_expanded` and
    /// only copied bytes rewritten (or none), the file stays expanded: `lazy` holds its
    /// content. Otherwise its bytes are chunked again as they are, rewrites included (a dirty
    /// chunk table; `lazy` is `None`).
    fn end_expansion(&mut self, w: &Arc<Live>, keep_expanded: bool) -> Result<()> {
        let patches = self.expanding.as_mut().map(|e| std::mem::take(&mut e.patches)).unwrap_or_default();
        let content = self.finish_expanding(w)?;
        if patches.is_empty() {
            return Ok(());
        }
        let r = (|| -> Result<()> {
            if keep_expanded {
                if let Some(c) = self.patch_expanded(w, &content, &patches)? {
                    self.lazy = Some(c);
                    return Ok(());
                }
                // `lazy` is still the content before the rewrites.
            }
            self.load(w)?;
            for (off, data) in &patches {
                self.generation += 1;
                self.write_bytes(w, *off, data, false)?;
            }
            Ok(())
        })();
        if r.is_err() {
            // Neither what is staged nor the content before the rewrites is the file now.
            self.lose_staged();
        }
        r
    }

    /// The content of an expanded file after `patches`, when they rewrite only bytes that the
    /// recipe copies from the expanded stream (`None`, with nothing changed, otherwise): the
    /// same rewrites of the expanded stream, with the same recipe. Leaves the chunk table
    /// empty.
    fn patch_expanded(
        &mut self,
        w: &Arc<Live>,
        content: &Content,
        patches: &[(u64, Vec<u8>)],
    ) -> Result<Option<Content>> {
        let v = w.vault();
        let mut moved = Vec::new();
        match FileReader::new(v, content)?.plan() {
            Some(plan) => {
                for (off, data) in patches {
                    let Some(pieces) = plan.copied_range(*off, data.len() as u64) else { return Ok(None) };
                    for (p, at, n) in pieces {
                        moved.push((p, data[at as usize..(at + n) as usize].to_vec()));
                    }
                }
            }
            None => moved.extend(patches.iter().cloned()),
        }
        let expanded = Content { recipe: None, ..content.clone() };
        let size = expanded.chunk_bytes();
        self.lazy = Some(expanded);
        self.load(w)?;
        for (p, data) in moved {
            self.generation += 1;
            self.write_bytes(w, p, &data, false)?;
        }
        let mut patched = self.chunk_all(w)?;
        self.clear_table();
        if patched.chunk_bytes() != size {
            return Err(Error::corrupt("expanded file: sizes do not add up after a rewrite"));
        }
        patched.recipe = content.recipe.clone();
        Ok(Some(patched))
    }

    /// Ends the expansion of a file that is about to be changed other than by appending:
    /// its bytes are chunked again as they are.
    fn stop_expanding(&mut self, w: &Arc<Live>) -> Result<()> {
        self.end_expansion(w, false)?;
        self.load(w)
    }

    fn load_pages(v: &Vault, pages: &[PageRef]) -> Result<Vec<ChunkRef>> {
        let mut out = Vec::new();
        for p in pages {
            out.extend(v.load_list(p)?);
        }
        Ok(out)
    }

    /// Brings the stored pages holding `off` and everything after it back into the table.
    fn unpage_from(&mut self, v: &Vault, off: u64) -> Result<()> {
        if off >= self.paged_len || self.paged.is_empty() {
            return Ok(());
        }
        let mut start = 0u64;
        let mut k = 0;
        while k < self.paged.len() && start + self.paged[k].bytes <= off {
            start += self.paged[k].bytes;
            k += 1;
        }
        let back = self.paged.split_off(k);
        let mut all = Self::load_pages(v, &back)?;
        all.extend_from_slice(&self.chunks);
        self.paged_len = start;
        self.chunks.clear();
        self.starts = vec![start];
        self.push_chunks(&all);
        Ok(())
    }

    /// Writes the oldest full page of the table out once the table holds two.
    fn page_out(&mut self, w: &Arc<Live>) -> Result<()> {
        while self.chunks.len() >= 2 * PAGE_CHUNKS {
            let page = w.write_list(&self.chunks[..PAGE_CHUNKS])?;
            self.paged_len += page.bytes;
            self.paged.push(page);
            self.chunks.drain(..PAGE_CHUNKS);
            self.starts.drain(..PAGE_CHUNKS);
        }
        Ok(())
    }

    /// Drops the chunk table of a committed, unchanged file nobody is writing.
    pub fn unload(&mut self) {
        if self.dirty
            || self.writers > 0
            || !self.tail.is_empty()
            || self.flow.is_some()
            || !self.overlay.is_empty()
            || self.expanding.is_some()
        {
            return;
        }
        if let Some(c) = &self.committed {
            self.lazy = Some(c.content.clone());
            self.paged = Vec::new();
            self.paged_len = 0;
            self.chunks = Vec::new();
            self.starts = vec![0];
            self.finalized = true;
        }
    }

    fn push_chunks(&mut self, refs: &[ChunkRef]) {
        for c in refs {
            let last = *self.starts.last().unwrap_or(&0);
            self.chunks.push(*c);
            self.starts.push(last + c.len as u64);
        }
    }

    fn append_chunks(&mut self, w: &Arc<Live>, refs: &[ChunkRef]) -> Result<()> {
        self.push_chunks(refs);
        self.page_out(w)
    }

    fn chunked_len(&self) -> u64 {
        *self.starts.last().unwrap_or(&0)
    }

    pub fn size(&self) -> u64 {
        if let Some(c) = &self.lazy {
            return c.size();
        }
        if let Some(e) = &self.expanding {
            return e.job.fed;
        }
        if self.lost {
            return 0;
        }
        self.tail_start() + self.tail.len() as u64
    }

    /// Where `tail` starts: after the stored chunks and the bytes the storing thread has.
    fn tail_start(&self) -> u64 {
        self.chunked_len() + self.flow.as_ref().map_or(0, |f| f.inflight())
    }

    /// Takes in what the storing thread has done; with `wait`, all of it, and the thread
    /// ends (the chunk table and tail are then as if everything had been stored in place).
    /// A failure loses what is staged (the bytes the thread had are gone, so the tail no longer
    /// starts where the table ends): reads fail and the last close drops the file.
    fn take_in(&mut self, w: &Arc<Live>, wait: bool) -> Result<()> {
        let Some(flow) = self.flow.as_mut() else { return Ok(()) };
        let mut got = Vec::new();
        let r = flow.take(wait, &mut got);
        if wait {
            self.flow = None;
        }
        let r = r.and_then(|()| {
            for t in got {
                match t {
                    Taken::Chunks(refs) => self.append_chunks(w, &refs)?,
                    Taken::Rest(mut rest) => {
                        rest.extend_from_slice(&self.tail);
                        self.tail = rest;
                    }
                }
            }
            Ok(())
        });
        if r.is_err() {
            self.lose_staged();
        }
        r
    }

    /// Waits for the storing thread to store everything handed to it.
    fn drain(&mut self, w: &Arc<Live>) -> Result<()> {
        self.take_in(w, true)
    }

    /// Index in `chunks` of the chunk holding `off` (which must be at or after `paged_len`).
    fn chunk_at(&self, off: u64) -> usize {
        match self.starts.binary_search(&off) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    fn read_chunk(v: &Vault, c: &ChunkRef) -> Result<Vec<u8>> {
        v.read_blob(BlobRef::data(c.id))
    }

    /// Bytes of the file. A file being stored expanded is first turned back into chunks of
    /// its bytes (needs the writer: it is only expanding while written through it).
    pub fn read(&mut self, live: Option<&Arc<Live>>, v: &'static Vault, off: u64, len: usize) -> Result<Vec<u8>> {
        if self.expanding.is_some() {
            let w = live.ok_or_else(|| Error::read_only("the vault is mounted read-only"))?;
            self.guarded(|f| f.stop_expanding(w))?;
        }
        if self.flow.is_some() {
            let w = live.ok_or_else(|| Error::read_only("the vault is mounted read-only"))?;
            self.guarded(|f| f.drain(w))?;
        }
        if self.lost {
            return Err(Error::new(ErrorKind::Io, "an earlier error lost this file's staged bytes; write it again"));
        }
        if let Some(c) = &self.lazy {
            if c.recipe.is_none() {
                return FileReader::new(v, c)?.read_at(off, len);
            }
            if self.rebuilt.as_ref().is_none_or(|k| k.generation != self.generation) {
                self.rebuilt = Some(KeptReader { generation: self.generation, reader: FileReader::new(v, c)? });
            }
            if let Some(k) = &self.rebuilt {
                return k.reader.read_at(off, len);
            }
        }
        let size = self.size();
        let end = off.saturating_add(len as u64).min(size);
        if off >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - off) as usize);
        let cl = self.chunked_len();
        if off < cl {
            let cend = end.min(cl);
            if off < self.paged_len {
                // The stored pages: read through a reader over them.
                let pe = cend.min(self.paged_len);
                let content = Content { inline: Vec::new(), pages: self.paged.clone(), recipe: None };
                out.extend(FileReader::new(v, &content)?.read_at(off, (pe - off) as usize)?);
            }
            let fs = off.max(self.paged_len);
            if fs < cend {
                let (first, last) = (self.chunk_at(fs), self.chunk_at(cend - 1));
                use rayon::prelude::*;
                let blobs: Vec<Vec<u8>> =
                    self.chunks[first..=last].par_iter().map(|c| Self::read_chunk(v, c)).collect::<Result<_>>()?;
                for (i, b) in (first..=last).zip(blobs) {
                    let s = self.starts[i];
                    let from = fs.saturating_sub(s) as usize;
                    let to = ((cend - s) as usize).min(b.len());
                    out.extend_from_slice(&b[from..to]);
                }
            }
            // Apply overlay extents intersecting [off, cend).
            for (&o, data) in self.overlay.range(..cend) {
                let oe = o + data.len() as u64;
                if oe <= off {
                    continue;
                }
                let s = o.max(off);
                let e = oe.min(cend);
                out[(s - off) as usize..(e - off) as usize].copy_from_slice(&data[(s - o) as usize..(e - o) as usize]);
            }
        }
        if end > cl {
            let s = off.max(cl) - cl;
            out.extend_from_slice(&self.tail[s as usize..(end - cl) as usize]);
        }
        Ok(out)
    }

    /// Undoes the end-of-file cut of a commit before the file changes again.
    fn unfinalize(&mut self, v: &Vault) -> Result<()> {
        if !self.finalized {
            return Ok(());
        }
        self.finalized = false;
        if self.chunks.is_empty() && self.paged_len > 0 {
            self.unpage_from(v, self.paged_len - 1)?;
        }
        if let Some(last) = self.chunks.pop() {
            self.starts.pop();
            let mut bytes = Self::read_chunk(v, &last)?;
            bytes.extend_from_slice(&self.tail);
            self.tail = bytes;
        }
        Ok(())
    }

    /// The committed content, when the file is not being changed (for per-handle readers).
    pub fn lazy_content(&self) -> Option<&Content> {
        self.lazy.as_ref()
    }

    /// Runs `f`; an error marks the file failed.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if let Some(k) = self.failed {
            return Err(Error::new(k, "an earlier write to this file failed; close it and write it again"));
        }
        f(self).inspect_err(|e| self.failed = Some(e.kind()))
    }

    pub fn write(&mut self, w: &Arc<Live>, off: u64, data: &[u8]) -> Result<()> {
        self.guarded(|f| f.write_inner(w, off, data))
    }

    fn write_inner(&mut self, w: &Arc<Live>, off: u64, data: &[u8]) -> Result<()> {
        self.generation += 1;
        if let Some(e) = self.expanding.as_mut() {
            self.dirty = true;
            let fed = e.job.fed;
            if off == fed {
                return self.feed(w, data.to_vec());
            }
            let behind = fed.saturating_sub(off).min(data.len() as u64) as usize;
            if off < fed && e.patch_bytes + behind + PATCH_OVERHEAD <= PATCH_LIMIT {
                // A rewrite of bytes already fed: kept until the expansion ends.
                if behind > 0 {
                    e.patches.push((off, data[..behind].to_vec()));
                    e.patch_bytes += behind + PATCH_OVERHEAD;
                }
                if behind < data.len() {
                    return self.feed(w, data[behind..].to_vec());
                }
                return Ok(());
            }
            // A hole, or too much rewritten: stored as it is from here on (docs/SEMANTICS.md).
            self.stop_expanding(w)?;
        }
        self.write_bytes(w, off, data, true)
    }

    /// Writes `data` at `off` into the staged content (never into an expansion); `may_start`:
    /// a compressed file written from its start may start being expanded.
    fn write_bytes(&mut self, w: &Arc<Live>, off: u64, data: &[u8], may_start: bool) -> Result<()> {
        let v = w.vault();
        self.load(w)?;
        self.unfinalize(v)?;
        self.dirty = true;
        if self.flow.is_some() {
            // Appends go on while the storing thread works; anything behind the tail needs
            // the chunk table as it is.
            let behind = off < self.tail_start();
            self.take_in(w, behind)?;
        }
        if off > self.size() {
            self.append_zeros(w, off - self.size())?;
        }
        let cl = self.chunked_len();
        let ts = self.tail_start();
        let end = off + data.len() as u64;
        if off < cl {
            let e = end.min(cl);
            self.overlay_insert(off, &data[..(e - off) as usize]);
        }
        if end > ts {
            let s = off.max(ts);
            let part = &data[(s - off) as usize..];
            let t = (s - ts) as usize;
            let overlap = (self.tail.len() - t).min(part.len());
            self.tail[t..t + overlap].copy_from_slice(&part[..overlap]);
            self.tail.extend_from_slice(&part[overlap..]);
        }
        if may_start && self.tail.len() >= TAIL_LIMIT && self.may_expand() {
            // A large compressed file written from its start: stored expanded as it comes.
            return self.start_expanding(w);
        }
        self.settle(w)
    }

    /// Whether the whole file is the tail, starting with a container the expansion reads.
    fn may_expand(&self) -> bool {
        self.expanding.is_none()
            && self.flow.is_none()
            && self.lazy.is_none()
            && self.chunked_len() == 0
            && self.paged.is_empty()
            && self.overlay.is_empty()
            && vault::rebuild::starts_with_container(&self.tail)
    }

    /// Hands the tail (the whole file so far) to a new expansion; its chunks go to the bulk
    /// packs.
    fn start_expanding(&mut self, w: &Arc<Live>) -> Result<()> {
        self.bulk = true;
        self.expanding = Some(Box::new(Expanding {
            job: Job::start(w.vault().chunker_params()),
            recipe: Vec::new(),
            recipe_pages: Vec::new(),
            patches: Vec::new(),
            patch_bytes: 0,
        }));
        let tail = std::mem::take(&mut self.tail);
        self.feed(w, tail)
    }

    fn append_zeros(&mut self, w: &Arc<Live>, mut n: u64) -> Result<()> {
        while n > 0 {
            let k = n.min(ZERO_BLOCK as u64) as usize;
            self.tail.resize(self.tail.len() + k, 0);
            n -= k as u64;
            self.settle(w)?;
        }
        Ok(())
    }

    /// Keeps memory bounded: chunks a long tail, rewrites chunks under a large overlay.
    fn settle(&mut self, w: &Arc<Live>) -> Result<()> {
        if self.overlay_bytes > OVERLAY_LIMIT {
            // Past the memory limits the file is a large one: its chunks stream into the bulk
            // packs, written as pack files at its close rather than copied into the journal.
            self.bulk = true;
            self.materialize(w)?;
        }
        if self.tail.len() >= TAIL_LIMIT {
            // A large file: its tails are stored by a thread of its own while the writer goes
            // on (src/fs/flow.rs), into the bulk packs.
            self.bulk = true;
            if self.flow.is_none() {
                self.flow = Some(Flow::start(w.clone(), w.vault().chunker_params())?);
            }
            self.take_in(w, false)?;
            let Some(flow) = self.flow.as_mut() else { return Err(Error::invalid("no storing thread")) };
            // Room for the bytes of the tail before that follow its last chunk boundary, which
            // the storing thread puts in front (fewer than two maximal chunks).
            let next = flow.spare(TAIL_ROOM + (1 << 20));
            let full = std::mem::replace(&mut self.tail, next);
            if let Err(e) = flow.hand_over(full) {
                self.lose_staged();
                return Err(e);
            }
        }
        Ok(())
    }

    fn overlay_insert(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = off + data.len() as u64;
        let mut start = off;
        let mut merged: Vec<u8> = Vec::new();
        // Extents overlapping or touching [off, end) are merged into one.
        let keys: Vec<u64> =
            self.overlay.range(..=end).filter(|(o, d)| *o + d.len() as u64 >= off).map(|(o, _)| *o).collect();
        let mut parts: Vec<(u64, Vec<u8>)> = Vec::new();
        for k in keys {
            if let Some(d) = self.overlay.remove(&k) {
                self.overlay_bytes -= d.len();
                parts.push((k, d));
            }
        }
        let mut new_end = end;
        for (k, d) in &parts {
            start = start.min(*k);
            new_end = new_end.max(k + d.len() as u64);
        }
        merged.resize((new_end - start) as usize, 0);
        for (k, d) in &parts {
            let s = (k - start) as usize;
            merged[s..s + d.len()].copy_from_slice(d);
        }
        let s = (off - start) as usize;
        merged[s..s + data.len()].copy_from_slice(data);
        self.overlay_bytes += merged.len();
        self.overlay.insert(start, merged);
    }

    /// Rewrites the chunks under the overlay (see the module doc).
    fn materialize(&mut self, w: &Arc<Live>) -> Result<()> {
        let v = w.vault();
        if self.overlay.is_empty() {
            return Ok(());
        }
        self.drain(w)?;
        let (Some((&first, _)), Some((&lo, ld))) = (self.overlay.iter().next(), self.overlay.iter().next_back()) else {
            return Ok(());
        };
        let dirty_end = lo + ld.len() as u64;
        self.unpage_from(v, first)?;
        let i0 = self.chunk_at(first);
        let overlay = std::mem::take(&mut self.overlay);
        self.overlay_bytes = 0;
        let mut chunker = StreamChunker::new(w.vault().chunker_params());
        let mut new_refs: Vec<ChunkRef> = Vec::new();
        let base = self.starts[i0];
        let mut emitted_end = base;
        let mut resync: Option<usize> = None;
        let old_chunks = self.chunks.clone();
        'outer: for (i, c) in old_chunks.iter().enumerate().skip(i0) {
            let s = self.starts[i];
            let mut bytes = Self::read_chunk(v, c)?;
            let e = s + bytes.len() as u64;
            for (&o, d) in overlay.range(..e) {
                let oe = o + d.len() as u64;
                if oe <= s {
                    continue;
                }
                let (a, b) = (o.max(s), oe.min(e));
                bytes[(a - s) as usize..(b - s) as usize].copy_from_slice(&d[(a - o) as usize..(b - o) as usize]);
            }
            let mut batch = ChunkBatch::default();
            chunker.push(&bytes, &mut batch);
            if batch.is_empty() {
                continue;
            }
            let refs = w.add_chunks(&batch, self.bulk)?;
            for r in refs {
                emitted_end += r.len as u64;
                new_refs.push(r);
                if emitted_end >= dirty_end {
                    if let Ok(j) = self.starts.binary_search(&emitted_end) {
                        if j > i0 && j < self.starts.len() {
                            resync = Some(j);
                            break 'outer;
                        }
                    }
                }
            }
        }
        let rest: Vec<ChunkRef> = match resync {
            Some(j) => old_chunks[j..].to_vec(),
            None => Vec::new(),
        };
        let pending = if resync.is_some() { Vec::new() } else { chunker.into_pending() };
        self.chunks.truncate(i0);
        self.starts.truncate(i0 + 1);
        self.push_chunks(&new_refs);
        self.push_chunks(&rest);
        if resync.is_none() {
            let mut t = pending;
            t.extend_from_slice(&self.tail);
            self.tail = t;
        }
        self.page_out(w)
    }

    pub fn truncate(&mut self, w: &Arc<Live>, size: u64) -> Result<()> {
        self.guarded(|f| f.truncate_inner(w, size))
    }

    fn truncate_inner(&mut self, w: &Arc<Live>, size: u64) -> Result<()> {
        let v = w.vault();
        self.generation += 1;
        if size == 0 {
            // `O_TRUNC` of yesterday's dump: nothing of the old content is needed (an expanded
            // one is not recreated only to be cut).
            self.expanding = None;
            self.flow = None;
            self.lazy = None;
            self.clear_table();
            self.tail = Vec::new();
            self.overlay.clear();
            self.overlay_bytes = 0;
            (self.finalized, self.bulk, self.dirty, self.lost) = (false, false, true, false);
            return Ok(());
        }
        if let Some(fed) = self.expanding.as_ref().map(|e| e.job.fed) {
            if fed == size {
                return Ok(());
            }
            self.stop_expanding(w)?;
        }
        self.drain(w)?;
        self.load(w)?;
        self.unfinalize(v)?;
        self.dirty = true;
        let cur = self.size();
        if size >= cur {
            return self.append_zeros(w, size - cur);
        }
        self.materialize(w)?;
        let cl = self.chunked_len();
        if size >= cl {
            self.tail.truncate((size - cl) as usize);
            return Ok(());
        }
        self.unpage_from(v, size)?;
        let k = self.chunk_at(size);
        let keep = (size - self.starts[k]) as usize;
        let c = self.chunks[k];
        let mut bytes = Self::read_chunk(v, &c)?;
        bytes.truncate(keep);
        self.chunks.truncate(k);
        self.starts.truncate(k + 1);
        self.tail = bytes;
        Ok(())
    }

    /// Cuts the whole content into stored chunks and records it as committed with `state`.
    pub fn finalize(&mut self, w: &Arc<Live>, state: FileState) -> Result<Committed> {
        self.guarded(|f| f.finalize_inner(w, state))
    }

    fn finalize_inner(&mut self, w: &Arc<Live>, state: FileState) -> Result<Committed> {
        self.drain(w)?;
        if self.dirty && self.tail.len() >= EXPAND_AT_CLOSE && self.may_expand() {
            // A compressed file smaller than the tail limit, whole in memory: expanded now.
            self.start_expanding(w)?;
        }
        if self.expanding.is_some() {
            self.end_expansion(w, true)?;
            if let Some(content) = self.lazy.clone() {
                self.dirty = false;
                self.committed = Some(Committed { size: content.size(), content, state });
            }
        }
        if self.lazy.is_none() && (self.dirty || self.committed.is_none()) {
            let size = self.size();
            let content = self.chunk_all(w)?;
            self.committed = Some(Committed { content, size, state });
        } else if let Some(c) = &mut self.committed {
            c.state = state;
        }
        self.committed.clone().ok_or_else(|| Error::new(ErrorKind::Io, "file content not committed"))
    }

    /// Cuts the whole staged content into stored chunks: its content record.
    fn chunk_all(&mut self, w: &Arc<Live>) -> Result<Content> {
        self.drain(w)?;
        self.materialize(w)?;
        if !self.tail.is_empty() {
            let mut c = StreamChunker::new(w.vault().chunker_params());
            let mut batch = ChunkBatch::default();
            c.push(&std::mem::take(&mut self.tail), &mut batch);
            c.finish(&mut batch);
            let refs = w.add_chunks(&batch, self.bulk)?;
            self.append_chunks(w, &refs)?;
        }
        self.finalized = !self.chunks.is_empty() || !self.paged.is_empty();
        self.dirty = false;
        Self::content(w, &self.paged, &self.chunks)
    }

    /// The content record of stored pages followed by `chunks` (pages written as they fill).
    fn content(w: &Arc<Live>, pages: &[PageRef], chunks: &[ChunkRef]) -> Result<Content> {
        if pages.is_empty() && chunks.len() <= INLINE_CHUNKS {
            return Ok(Content::inline(chunks.to_vec()));
        }
        let mut pages = pages.to_vec();
        for part in chunks.chunks(PAGE_CHUNKS) {
            pages.push(w.write_list(part)?);
        }
        Ok(Content { inline: Vec::new(), pages, recipe: None })
    }

    /// What a close must make durable: `None` for a large file (all of its bulk packs), else
    /// the chunks of the file.
    pub fn small_chunks(&self) -> Option<Vec<ChunkRef>> {
        if self.bulk {
            return None;
        }
        Some(self.chunks.clone())
    }

    /// Drops staged changes after a failure: back to the last content whose commit was
    /// journaled (none: the file never had any).
    pub fn reset_to_journaled(&mut self) {
        let journaled = self.journaled.take();
        let (writers, generation) = (self.writers, self.generation + 1);
        *self = FileData::new();
        self.writers = writers;
        self.generation = generation;
        if let Some(c) = journaled {
            self.finalized = true;
            self.lazy = Some(c.content.clone());
            self.committed = Some(c.clone());
            self.journaled = Some(c);
        }
    }
}
