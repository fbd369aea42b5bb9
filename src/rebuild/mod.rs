//! Compressed files stored by their content (docs/DESIGN.md §14).
//!
//! A gzip file, a zlib stream or a zip member changes everywhere after its first changed byte,
//! so content-defined chunking finds nothing to share between two days of a compressed dump.
//! At ingest, [`expand`] finds the deflate streams of a file (gzip members, a zlib stream at
//! the start, deflated zip members) and splits the file into two streams:
//!
//! - the *expanded* stream: the file with every deflate stream replaced by its decompressed
//!   content (headers, trailers and everything else stay as they are). It goes through the
//!   normal chunker, so it deduplicates against earlier days and against uncompressed copies;
//! - the *recipe*: which byte ranges of the expanded stream are copied as they are and which
//!   are compressed again, with the small correction data that makes the `preflate-rs`
//!   compressor produce exactly the original deflate bytes, and a BLAKE3 hash of every window
//!   of original bytes it recreates.
//!
//! Every window is recompressed and compared with the original at ingest (a window that does
//! not come back exact ends the stream there; the rest of the stream is copied as it is and
//! the scan for further streams goes on after it), and
//! every window recreated on read is checked against its hash before a byte of it is returned.
//! A file in which nothing was worth expanding is stored as it is: the expanded stream is then
//! the file itself and no recipe is written.

use crate::error::{Error, Result};
use preflate_rs::{ExitCode, PreflateConfig, PreflateStreamProcessor, RecreateStreamProcessor};
use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

mod pipe;
mod read;
#[cfg(test)]
mod tests;

pub use pipe::{chunk_expanded, Job, Piece};
pub use read::{GzContent, Plan, Rebuilder, Source};

/// First bytes of a recipe: the format (version 1) and the correction codec (preflate-rs 0.7).
pub const MAGIC: &[u8; 4] = b"VRB1";
const OP_END: u8 = 0;
const OP_RAW: u8 = 1;
const OP_BEGIN: u8 = 2;
const OP_WINDOW: u8 = 3;
const OP_SPLICE: u8 = 4;
/// Bytes of a `pg_dump -Fc` chunk length: a sign byte and a 4-byte little-endian integer.
const PG_LEN: usize = 5;

/// Compressed bytes handed to the deflate analysis at once (a block that does not fit is
/// retried with a window twice as large, up to [`MAX_WINDOW`]). The analysis estimates the
/// compressor's parameters from a stream's first window, so a window holds a good sample
/// (4 MiB is 12-20 MB of dump text); its decompressed bytes are held in memory while it is
/// analysed and checked, which bounds it from above.
const WINDOW: usize = 4 << 20;
const MAX_WINDOW: usize = 32 << 20;
/// Most decompressed bytes one window may expand to (bounds memory on a zip bomb).
const PLAIN_LIMIT: usize = 96 << 20;
/// Bytes looked at per scan for the start of a compressed stream.
const SCAN: usize = 1 << 20;
/// Header bytes a container signature may need to be recognised (gzip names, zip extras).
const HEADER_MAX: usize = 1 << 17;
/// Compressed streams shorter than this are copied as they are.
const MIN_STREAM: usize = 64;

/// Receives the two streams of an expanded file.
pub trait Sink {
    /// Bytes of the expanded stream, in order.
    fn expanded(&mut self, b: &[u8]) -> Result<()>;
    /// Bytes of the recipe, in order (only once a stream was worth expanding).
    fn recipe(&mut self, b: &[u8]) -> Result<()>;
}

/// What [`expand`] did with one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expanded {
    /// Bytes read: the original file.
    pub original: u64,
    /// Bytes of the expanded stream.
    pub expanded: u64,
    /// Deflate streams expanded (whole or in part).
    pub streams: u64,
    /// Original (compressed) bytes that the recipe recreates.
    pub deflated: u64,
    /// Their decompressed bytes (in the expanded stream).
    pub inflated: u64,
    /// Bytes of the recipe (correction data, hashes and layout).
    pub recipe: u64,
}

impl Expanded {
    /// Whether a recipe was written (at least one window is recreated).
    pub fn rebuilt(&self) -> bool {
        self.streams > 0
    }
}

/// Reads `input` to its end and writes its expanded stream and recipe to `sink`. When nothing
/// was expanded ([`Expanded::rebuilt`] false) the expanded stream is exactly the input and
/// nothing was written to the recipe.
pub fn expand(input: &mut dyn Read, sink: &mut dyn Sink) -> Result<Expanded> {
    let mut e = Expander {
        input,
        sink,
        buf: Vec::new(),
        start: 0,
        end: 0,
        eof: false,
        raw: 0,
        recipe_head: Some(MAGIC.to_vec()),
        stats: Expanded { recipe: MAGIC.len() as u64, ..Default::default() },
        at_start: true,
        pg: false,
        framing: false,
        chunk_left: 0,
    };
    e.run()?;
    Ok(e.stats)
}

/// A container recognised at the scan position.
enum Found {
    /// A gzip member with a header of this many bytes.
    Gzip(usize),
    /// A zlib stream (2 header bytes).
    Zlib,
    /// A deflated zip member with a local header of this many bytes.
    Zip(usize),
    /// The first chunk of a zlib stream of a `pg_dump -Fc` data block: its length.
    PgChunk(usize),
}

struct Expander<'a> {
    input: &'a mut dyn Read,
    sink: &'a mut dyn Sink,
    /// Bytes read and not yet passed on: `buf[start..end]` (the buffer past `end` is
    /// initialised, and reads go there without zeroing it again).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Copied bytes not yet recorded in the recipe.
    raw: u64,
    /// The recipe until its first window: nothing is written unless something is expanded.
    recipe_head: Option<Vec<u8>>,
    stats: Expanded,
    at_start: bool,
    /// A `pg_dump -Fc` archive (its integers 4 bytes): its compressed data blocks are zlib
    /// streams cut into chunks, each after a 5-byte length.
    pg: bool,
    /// Inside a framed stream, and the bytes left of its current chunk at the scan position.
    framing: bool,
    chunk_left: usize,
}

impl Expander<'_> {
    fn avail(&self) -> usize {
        self.end - self.start
    }

    /// Reads until `want` bytes are available or the input ends; returns what is available.
    fn fill(&mut self, want: usize) -> Result<usize> {
        if self.avail() >= want || self.eof {
            return Ok(self.avail());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let target = want.max(SCAN);
        if self.buf.len() < target {
            self.buf.resize(target, 0);
        }
        while self.end < target {
            match self.input.read(&mut self.buf[self.end..target]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading input", e)),
            }
        }
        Ok(self.avail())
    }

    fn recipe(&mut self, b: &[u8]) -> Result<()> {
        self.stats.recipe += b.len() as u64;
        match &mut self.recipe_head {
            Some(head) => {
                head.extend_from_slice(b);
                Ok(())
            }
            None => self.sink.recipe(b),
        }
    }

    /// Passes `n` bytes on unchanged.
    fn copy(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (s, e) = (self.start, self.start + n);
        self.sink.expanded(&self.buf[s..e])?;
        self.start = e;
        self.raw += n as u64;
        self.stats.original += n as u64;
        self.stats.expanded += n as u64;
        self.at_start = false;
        Ok(())
    }

    fn end_copy(&mut self) -> Result<()> {
        if self.raw > 0 {
            let mut op = vec![OP_RAW];
            op.extend_from_slice(&self.raw.to_le_bytes());
            self.raw = 0;
            self.recipe(&op)?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        loop {
            let avail = self.fill(SCAN)?;
            if avail == 0 {
                break;
            }
            let at_start = self.at_start;
            if at_start {
                // pg_dump -Fc: "PGDMP", three version bytes, the integer size.
                let head = &self.buf[self.start..self.start + avail];
                self.pg = pg_archive(head);
            }
            let hit = find_signature(&self.buf[self.start..self.start + avail], at_start, self.pg);
            let Some(i) = hit else {
                // Keep the last bytes: a signature may continue in the next read.
                let n = if self.eof { avail } else { avail.saturating_sub(8).max(1) };
                self.copy(n)?;
                continue;
            };
            self.copy(i)?;
            self.fill(HEADER_MAX)?;
            let here = &self.buf[self.start..self.end];
            let found = match here.first() {
                Some(0x1f) => gzip_header(here).map(Found::Gzip),
                Some(b'P') => zip_header(here).map(Found::Zip),
                Some(0) if self.pg => pg_chunk(here).map(Found::PgChunk),
                _ if at_start && zlib_header(here) => Some(Found::Zlib),
                _ => None,
            };
            match found {
                Some(Found::Gzip(h)) => {
                    self.copy(h)?;
                    if self.deflate()? {
                        let t = self.fill(8)?.min(8);
                        self.copy(t)?;
                    }
                }
                Some(Found::Zlib) => {
                    self.copy(2)?;
                    if self.deflate()? {
                        let t = self.fill(4)?.min(4);
                        self.copy(t)?;
                    }
                }
                Some(Found::Zip(h)) => {
                    self.copy(h)?;
                    self.deflate()?;
                }
                Some(Found::PgChunk(len)) => {
                    // The chunk length and the zlib header are copied; the rest of the block
                    // (the Adler-32, the zero length that ends it) is scanned like any bytes.
                    self.copy(PG_LEN + 2)?;
                    (self.framing, self.chunk_left) = (true, len - 2);
                    let r = self.deflate();
                    (self.framing, self.chunk_left) = (false, 0);
                    r?;
                }
                None => self.copy(1)?,
            }
        }
        self.end_copy()?;
        if self.recipe_head.is_none() {
            let mut end = vec![OP_END];
            end.extend_from_slice(&self.stats.original.to_le_bytes());
            end.extend_from_slice(&self.stats.expanded.to_le_bytes());
            self.recipe(&end)?;
        } else {
            self.stats.recipe = 0;
        }
        Ok(())
    }

    /// Expands the deflate stream starting at the scan position, window by window, for as long
    /// as each window recompresses exactly and its corrections are worth it. Returns whether
    /// the stream was expanded to its end (the bytes after it are a container trailer).
    ///
    /// The analysis of a window runs here while a second thread recompresses the one before
    /// and checks it against the original bytes; a window is passed on only once checked.
    fn deflate(&mut self) -> Result<bool> {
        let (jobs, jobs_rx) = sync_channel::<Arc<Window>>(1);
        let (results_tx, results) = sync_channel::<bool>(4);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut rec = Recreate::new();
                for w in jobs_rx {
                    let ok = rec.window(&w.plain, &w.corrections, &w.splices, w.comp.len() as u64, &w.hash).is_ok();
                    if results_tx.send(ok).is_err() || !ok {
                        break;
                    }
                }
            });
            let r = self.analyse(&jobs, &results);
            drop(jobs);
            r
        })
    }

    fn analyse(&mut self, jobs: &SyncSender<Arc<Window>>, results: &Receiver<bool>) -> Result<bool> {
        let config = PreflateConfig { verify_compression: false, plain_text_limit: PLAIN_LIMIT, ..Default::default() };
        let mut p = PreflateStreamProcessor::new(&config);
        let mut pending: VecDeque<Arc<Window>> = VecDeque::new();
        let (mut emitted, mut analysed) = (0u64, 0u64);
        let mut want = WINDOW;
        let (mut done, mut stop) = (false, false);
        loop {
            // Pass checked windows on: the oldest once two are in flight, all at the end.
            while pending.len() >= 2 || ((done || stop) && !pending.is_empty()) {
                let ok = results.recv().unwrap_or(false);
                let Some(w) = pending.pop_front() else { break };
                if !ok {
                    // Not recreated exactly: this window and the ones after it are copied.
                    self.copy_bytes(&w.comp)?;
                    for w in pending.drain(..) {
                        self.copy_bytes(&w.comp)?;
                    }
                    return Ok(false);
                }
                self.emit_window(&w, emitted == 0)?;
                emitted += 1;
            }
            if done {
                return Ok(true);
            }
            if stop {
                return Ok(false);
            }
            let avail = self.fill(want + want / 64 + PG_LEN)?;
            // The compressed bytes, without the chunk lengths of a framed stream (kept aside
            // with their offsets, to be put back).
            let framed = self.framed(want);
            let (data, splices, more) = match &framed {
                Some((d, sp, more)) => (&d[..], &sp[..], *more),
                None => {
                    let len = avail.min(want);
                    (&self.buf[self.start..self.start + len], &[][..], avail > len)
                }
            };
            let len = data.len();
            if len == 0 {
                stop = true;
                continue;
            }
            // Arbitrary input may make the analysis panic: then the stream ends here.
            let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.decompress(data))) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) if e.exit_code() == ExitCode::ShortRead && more && want < MAX_WINDOW => {
                    want *= 2;
                    continue;
                }
                // Not deflate after all, damaged or truncated: what was expanded stands.
                _ => {
                    stop = true;
                    continue;
                }
            };
            let comp = r.compressed_size;
            // Too short to be worth it, or corrections that cost more than half of what they
            // replace.
            let tiny = analysed == 0 && p.is_done() && comp < MIN_STREAM;
            if comp == 0 || comp > len || tiny || r.corrections.len() > comp / 2 {
                stop = true;
                continue;
            }
            // The chunk lengths inside the window go back where they were.
            let splices: Vec<(u64, Vec<u8>)> =
                splices.iter().filter(|(o, _)| (*o as usize) < comp).map(|(o, b)| (*o, b.to_vec())).collect();
            let original = splice(&data[..comp], &splices);
            let used = original.len();
            let w = Arc::new(Window {
                hash: *blake3::hash(&original).as_bytes(),
                comp: original,
                deflated: comp,
                plain: p.plain_text().text().to_vec(),
                corrections: r.corrections,
                splices,
            });
            if framed.is_some() {
                self.chunk_left = self.chunk_left_after(used);
            }
            self.start += used;
            p.shrink_to_dictionary();
            analysed += 1;
            want = WINDOW;
            done = p.is_done();
            if jobs.send(w.clone()).is_err() {
                // The checker stopped at a window that did not come back exact.
                stop = true;
            }
            pending.push_back(w);
        }
    }

    /// For a framed stream: up to `want` deflate bytes from the scan position, the chunk
    /// lengths between them (offset in the deflate bytes, the 5 bytes), and whether more may
    /// follow. Stops at a zero length (the end of the block) or where the buffer ends.
    fn framed(&self, want: usize) -> Option<(Vec<u8>, Vec<(u64, [u8; PG_LEN])>, bool)> {
        if !self.framing {
            return None;
        }
        let b = &self.buf[self.start..self.end];
        let (mut out, mut splices) = (Vec::with_capacity(want), Vec::new());
        let (mut at, mut left) = (0usize, self.chunk_left);
        while out.len() < want {
            if left == 0 {
                let Some(head) = b.get(at..at + PG_LEN) else { return Some((out, splices, !self.eof)) };
                let len = u32::from_le_bytes(head[1..5].try_into().unwrap_or_default()) as usize;
                if head[0] != 0 || len == 0 {
                    return Some((out, splices, false));
                }
                splices.push((out.len() as u64, head.try_into().unwrap_or_default()));
                at += PG_LEN;
                left = len;
            }
            let n = left.min(want - out.len()).min(b.len() - at);
            if n == 0 {
                return Some((out, splices, !self.eof));
            }
            out.extend_from_slice(&b[at..at + n]);
            at += n;
            left -= n;
        }
        Some((out, splices, true))
    }

    /// Bytes left of the current chunk after `used` original bytes of a framed stream.
    fn chunk_left_after(&self, used: usize) -> usize {
        let b = &self.buf[self.start..self.end];
        let (mut at, mut left) = (0usize, self.chunk_left);
        while at < used {
            if left == 0 {
                left = u32::from_le_bytes(b[at + 1..at + PG_LEN].try_into().unwrap_or_default()) as usize;
                at += PG_LEN;
                continue;
            }
            let n = left.min(used - at);
            at += n;
            left -= n;
        }
        left
    }

    /// Passes on bytes that were taken out of the buffer for a window that is not expanded.
    fn copy_bytes(&mut self, b: &[u8]) -> Result<()> {
        self.sink.expanded(b)?;
        self.raw += b.len() as u64;
        self.stats.original += b.len() as u64;
        self.stats.expanded += b.len() as u64;
        Ok(())
    }

    /// Writes a checked window: its step in the recipe, its content in the expanded stream.
    fn emit_window(&mut self, w: &Window, first: bool) -> Result<()> {
        if first {
            self.end_copy()?;
            self.recipe(&[OP_BEGIN])?;
            self.stats.streams += 1;
        }
        if !w.splices.is_empty() {
            let mut sp = vec![OP_SPLICE];
            sp.extend_from_slice(&(w.splices.len() as u32).to_le_bytes());
            for (o, b) in &w.splices {
                sp.extend_from_slice(&o.to_le_bytes());
                sp.push(b.len() as u8);
                sp.extend_from_slice(b);
            }
            self.recipe(&sp)?;
        }
        let mut op = Vec::with_capacity(53 + w.corrections.len());
        op.push(OP_WINDOW);
        op.extend_from_slice(&(w.plain.len() as u64).to_le_bytes());
        op.extend_from_slice(&(w.comp.len() as u64).to_le_bytes());
        op.extend_from_slice(&w.hash);
        op.extend_from_slice(&(w.corrections.len() as u32).to_le_bytes());
        op.extend_from_slice(&w.corrections);
        self.recipe(&op)?;
        if let Some(head) = self.recipe_head.take() {
            self.sink.recipe(&head)?;
        }
        self.sink.expanded(&w.plain)?;
        self.stats.original += w.comp.len() as u64;
        self.stats.deflated += w.deflated as u64;
        self.stats.inflated += w.plain.len() as u64;
        self.stats.expanded += w.plain.len() as u64;
        self.at_start = false;
        Ok(())
    }
}

/// A window analysed and waiting for its check.
struct Window {
    /// The original bytes (chunk lengths of a framed stream included).
    comp: Vec<u8>,
    /// Deflate bytes among them.
    deflated: usize,
    plain: Vec<u8>,
    corrections: Vec<u8>,
    /// Bytes put back between the deflate bytes: (offset in the deflate bytes, bytes).
    splices: Vec<(u64, Vec<u8>)>,
    hash: [u8; 32],
}

/// The deflate bytes `d` with `splices` put back.
fn splice(d: &[u8], splices: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.len() + splices.iter().map(|(_, b)| b.len()).sum::<usize>());
    let mut at = 0usize;
    for (o, b) in splices {
        let o = (*o as usize).min(d.len());
        out.extend_from_slice(&d[at.min(o)..o]);
        out.extend_from_slice(b);
        at = o;
    }
    out.extend_from_slice(&d[at..]);
    out
}

/// The length of a `pg_dump -Fc` chunk at `b[0]` whose bytes start with a zlib header.
fn pg_chunk(b: &[u8]) -> Option<usize> {
    if b.len() < PG_LEN + 3 || b[0] != 0 || !zlib_header(&b[PG_LEN..]) {
        return None;
    }
    let len = u32::from_le_bytes(b[1..5].try_into().ok()?) as usize;
    (len > 2 && len <= 1 << 24).then_some(len)
}

/// Whether `b` (the first bytes of a file) starts with a container [`expand`] looks into.
pub fn starts_with_container(b: &[u8]) -> bool {
    zlib_header(b) || gzip_header(b).is_some() || zip_header(b).is_some() || pg_archive(b)
}

/// A `pg_dump -Fc` archive: "PGDMP", three version bytes, an integer size of 4.
fn pg_archive(b: &[u8]) -> bool {
    b.len() > 8 && b.starts_with(b"PGDMP") && b[8] == 4
}

/// Offset of the first byte in `b` where a container may start (with `pg`, also the chunk
/// length before a zlib header in a `pg_dump -Fc` archive): a gzip member header's first four
/// bytes, a zip local header signature, or, in the last three bytes, a byte that may begin
/// either (the caller keeps those for the next read).
fn find_signature(b: &[u8], at_start: bool, pg: bool) -> Option<usize> {
    if at_start && zlib_header(b) {
        return Some(0);
    }
    if pg {
        return find_signature_pg(b);
    }
    // Whole signatures are searched for as byte strings (a vectorised search that random
    // data rarely stops), not byte by byte from each 0x1f or 'P'.
    let zip = memchr::memmem::find(b, b"PK\x03\x04");
    let before = zip.unwrap_or(b.len());
    let gzip = memchr::memmem::find_iter(&b[..(before + 3).min(b.len())], b"\x1f\x8b\x08")
        .find(|&p| b.get(p + 3).is_none_or(|f| f & 0xe0 == 0));
    let tail = b.len().saturating_sub(3);
    let partial = memchr::memchr2(0x1f, b'P', &b[tail..]).map(|j| tail + j);
    [zip, gzip, partial].into_iter().flatten().min()
}

/// [`find_signature`] in a `pg_dump -Fc` archive, where a zlib header after a chunk length
/// is looked for too.
fn find_signature_pg(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let j = memchr::memchr3(0x1f, b'P', 0x78, rest)?;
        let at = &rest[j..];
        if at[0] == 0x78 {
            let k = i + j;
            if k >= PG_LEN && pg_chunk(&b[k - PG_LEN..]).is_some() {
                return Some(k - PG_LEN);
            }
        } else if signature_at(at) {
            return Some(i + j);
        }
        i += j + 1;
    }
    None
}

/// Whether a gzip or zip signature starts at `at[0]`, or may (fewer than four bytes left).
fn signature_at(at: &[u8]) -> bool {
    at.len() < 4 || (at[0] == 0x1f && at[1] == 0x8b && at[2] == 8 && at[3] & 0xe0 == 0) || at.starts_with(b"PK\x03\x04")
}

fn cstr_end(b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?.iter().position(|&c| c == 0).map(|n| from + n + 1)
}

/// The header length of a gzip member starting at `b[0]` (RFC 1952), if it is one and data
/// follows it.
fn gzip_header(b: &[u8]) -> Option<usize> {
    gzip_header_end(b).filter(|&p| p < b.len())
}

/// The length of the whole gzip member header at the start of `b` (RFC 1952: magic, method 8,
/// flags, optional extra field, name, comment and header CRC), if `b` holds one.
pub(crate) fn gzip_header_end(b: &[u8]) -> Option<usize> {
    if b.len() < 10 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 || b[3] & 0xe0 != 0 {
        return None;
    }
    let flg = b[3];
    let mut p = 10;
    if flg & 4 != 0 {
        let x = u16::from_le_bytes([*b.get(p)?, *b.get(p + 1)?]) as usize;
        p += 2 + x;
    }
    if flg & 8 != 0 {
        p = cstr_end(b, p)?;
    }
    if flg & 16 != 0 {
        p = cstr_end(b, p)?;
    }
    if flg & 2 != 0 {
        p += 2;
    }
    (p <= b.len()).then_some(p)
}

/// Whether `b` starts with a zlib header for a deflate stream without preset dictionary.
fn zlib_header(b: &[u8]) -> bool {
    b.len() >= 3
        && b[0] & 0x0f == 8
        && b[0] >> 4 <= 7
        && (u16::from(b[0]) << 8 | u16::from(b[1])) % 31 == 0
        && b[1] & 0x20 == 0
}

/// The local header length of a deflated, unencrypted zip member at `b[0]`, if it is one.
fn zip_header(b: &[u8]) -> Option<usize> {
    if b.len() < 30 || !b.starts_with(b"PK\x03\x04") {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let (flags, method) = (u16_at(6), u16_at(8));
    if method != 8 || flags & 1 != 0 {
        return None;
    }
    let h = 30 + u16_at(26) + u16_at(28);
    (h < b.len()).then_some(h)
}

/// One step of a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Copy this many bytes of the expanded stream.
    Raw(u64),
    /// A new deflate stream starts.
    Begin,
    /// Compress `plain` bytes of the expanded stream with the corrections at `corr_at` (offset
    /// in the recipe, `corr_len` bytes), put back the bytes of the splice list at `splice_at`
    /// (`splice_len` bytes, none when 0), giving `comp` bytes whose BLAKE3 hash is `hash`.
    Window { plain: u64, comp: u64, hash: [u8; 32], corr_at: u64, corr_len: u32, splice_at: u64, splice_len: u32 },
    /// The end, with the sizes of the original and the expanded stream.
    End { original: u64, expanded: u64 },
}

/// Reads a recipe's fields, counting the offset.
struct Fields<'a> {
    r: &'a mut dyn Read,
    pos: u64,
}

impl Fields<'_> {
    fn take(&mut self, buf: &mut [u8]) -> Result<()> {
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::corrupt("recipe: truncated"),
            _ => Error::io("reading a recipe", e),
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }
    fn u8(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        self.take(&mut b)?;
        Ok(b[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.take(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        let got = std::io::copy(&mut (&mut *self.r).take(n), &mut std::io::sink())
            .map_err(|e| Error::io("reading a recipe", e))?;
        if got != n {
            return Err(Error::corrupt("recipe: truncated"));
        }
        self.pos += n;
        Ok(())
    }
}

/// Reads the steps of a recipe, skipping the correction bytes.
pub(crate) fn read_steps(r: &mut dyn Read) -> Result<Vec<Step>> {
    let mut f = Fields { r, pos: 0 };
    let mut magic = [0u8; 4];
    f.take(&mut magic)?;
    if &magic != MAGIC {
        return Err(Error::unsupported("recipe: unknown format (this build reads VRB1)"));
    }
    let mut steps = Vec::new();
    let mut splice: Option<(u64, u32)> = None;
    loop {
        match f.u8()? {
            OP_RAW => steps.push(Step::Raw(f.u64()?)),
            OP_BEGIN => steps.push(Step::Begin),
            OP_SPLICE => {
                if splice.is_some() {
                    return Err(Error::corrupt("recipe: two splice steps in a row"));
                }
                let at = f.pos;
                let count = f.u32()?;
                for _ in 0..count {
                    f.u64()?;
                    let n = f.u8()?;
                    f.skip(n as u64)?;
                }
                splice = Some((at, (f.pos - at) as u32));
            }
            OP_WINDOW => {
                let (plain, comp) = (f.u64()?, f.u64()?);
                let mut hash = [0u8; 32];
                f.take(&mut hash)?;
                let corr_len = f.u32()?;
                let corr_at = f.pos;
                f.skip(corr_len as u64)?;
                let (splice_at, splice_len) = splice.take().unwrap_or((0, 0));
                steps.push(Step::Window { plain, comp, hash, corr_at, corr_len, splice_at, splice_len });
            }
            OP_END => {
                if splice.is_some() {
                    return Err(Error::corrupt("recipe: a splice step without its window"));
                }
                let (original, expanded) = (f.u64()?, f.u64()?);
                steps.push(Step::End { original, expanded });
                let mut extra = [0u8; 1];
                if f.r.read(&mut extra).map_err(|e| Error::io("reading a recipe", e))? != 0 {
                    return Err(Error::corrupt("recipe: bytes after its end"));
                }
                return Ok(steps);
            }
            x => return Err(Error::corrupt(format!("recipe: unknown step {x}"))),
        }
    }
}

/// Recreates deflate streams window by window.
pub(crate) struct Recreate(RecreateStreamProcessor);

// SAFETY: the processor owns plain heap data only (vectors, and hash chains boxed as a trait
// object without a `Send` bound: the implementations in preflate-rs 0.7.6, built from
// tools/preflate-rs, are tables of integers); nothing in it refers to thread-local state or
// is shared. A reader keeps it behind a mutex and moves it between the threads that serve
// its reads.
unsafe impl Send for Recreate {}

impl Recreate {
    pub(crate) fn new() -> Self {
        Recreate(RecreateStreamProcessor::new())
    }

    /// The original bytes of one window, checked against the recipe's hash.
    pub(crate) fn window(
        &mut self,
        plain: &[u8],
        corrections: &[u8],
        splices: &[(u64, Vec<u8>)],
        comp: u64,
        hash: &[u8; 32],
    ) -> Result<Vec<u8>> {
        // The predictor may panic on correction data it did not write; the recipe is
        // authenticated, so that means a bug, reported as damage rather than a crash.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.0.recompress(&mut std::io::Cursor::new(plain), corrections)
        }));
        let (out, _) = match r {
            Ok(r) => {
                r.map_err(|e| Error::corrupt(format!("recipe: the compressed bytes cannot be recreated ({e})")))?
            }
            Err(_) => return Err(Error::corrupt("recipe: the compressed bytes cannot be recreated (decoder failure)")),
        };
        let out = if splices.is_empty() { out } else { splice(&out, splices) };
        if out.len() as u64 != comp || blake3::hash(&out).as_bytes() != hash {
            return Err(Error::corrupt("recipe: recreated bytes differ from the original (hash mismatch)"));
        }
        Ok(out)
    }
}

/// Parses the splice list of a recipe (`count u32 ‖ count × (offset u64 ‖ n u8 ‖ n bytes)`).
pub(crate) fn parse_splices(b: &[u8]) -> Result<Vec<(u64, Vec<u8>)>> {
    let bad = || Error::corrupt("recipe: bad splice list");
    let count = u32::from_le_bytes(b.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
    let (mut at, mut out) = (4usize, Vec::with_capacity(count.min(b.len() / 9)));
    let mut last = 0u64;
    for _ in 0..count {
        let o = u64::from_le_bytes(b.get(at..at + 8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        let n = *b.get(at + 8).ok_or_else(bad)? as usize;
        let bytes = b.get(at + 9..at + 9 + n).ok_or_else(bad)?.to_vec();
        if o < last {
            return Err(bad());
        }
        last = o;
        out.push((o, bytes));
        at += 9 + n;
    }
    if at != b.len() {
        return Err(bad());
    }
    Ok(out)
}
