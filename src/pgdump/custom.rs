//! Streaming verifier for `pg_dump -Fc` (custom format) archives, as PostgreSQL's own
//! `pg_backup_archiver.c` and `pg_backup_custom.c` read them.
//!
//! Layout: `PGDMP`, version bytes (major, minor, revision), integer size, offset size, format
//! (1 = custom), the compression (an integer level before archive version 1.15, an algorithm
//! byte from 1.15 on: 0 none, 1 gzip, 2 lz4, 3 zstd), the creation time (seven integers), the
//! database name and the server and pg_dump versions (strings). Then the table of contents:
//! an entry count and per entry its dump id, whether it has data, catalog ids, tag, type
//! (`TABLE DATA`, `BLOBS`, ...), section, definition, drop statement, COPY statement, schema,
//! tablespace, table access method (1.14+), relkind (1.16+), owner, a WITH OIDS flag, its
//! dependencies, and (custom format) where its data block is: a flag (1 position not set,
//! 2 set, 3 no data) and an offset. Integers are a sign byte and `intSize` little-endian bytes;
//! strings an integer length (-1 for NULL) and the bytes.
//!
//! The data blocks follow, in the order they were written: a type byte (1 table data, 3 large
//! objects) and the entry's dump id, then for table data one stream, for large objects one
//! stream per object (its OID, then its stream; OID 0 ends the block). A stream is a run of
//! chunks (an integer length and that many bytes) ended by a zero length; compressed, the
//! chunks of one stream form one zlib (gzip setting), zstd or lz4 stream.
//!
//! [`verify`] reads the archive once, front to back (as `pg_restore` reads from a pipe), and
//! keeps only the table of contents and counters. Structural damage (truncation, an impossible
//! length, a block that does not belong to the archive) ends the read with an error naming the
//! byte offset and the entry. Damage inside one stream (a corrupt zlib stream, rows with the
//! wrong number of fields) is recorded for its table and the next block is read, so that one
//! drill lists every damaged table. Data compressed with lz4 (or an unknown method) are walked
//! chunk by chunk but not decompressed: such an archive is reported as not verifiable.

use super::{copy_columns, At, DumpFormat, DumpReport, RowCounter, TableData, CUSTOM_MAGIC};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::{self, BufReader, Read};

/// Oldest archive version read: 1.10 (PostgreSQL 8.0). Newer ones than 1.16 (PostgreSQL 17)
/// are reported as not verifiable.
const MIN_VERSION: (u8, u8) = (1, 10);
const MAX_VERSION: (u8, u8) = (1, 16);
const FORMAT_CUSTOM: u8 = 1;
/// `toc.dat` of a directory-format dump (`pg_dump -Fd`, also inside a `-Ft` tar): the same
/// header and table of contents, each entry naming its data file instead of an offset, and no
/// data blocks. pg_dump writes format 3 (tar) in it; 5 (directory) is accepted too.
const FORMATS_TOC: [u8; 2] = [3, 5];
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
const OFFSET_POS_SET: u8 = 2;
const OFFSET_NO_DATA: u8 = 3;
/// A string longer than this is damage (PostgreSQL's own limit for a value is 1 GiB).
const MAX_STR: i64 = 1 << 30;
/// Strings kept in memory (names, types, COPY statements) are at most this long.
const MAX_KEPT_STR: u64 = 16 << 20;
/// A chunk longer than this is damage (a chunk holds at most one row or one compressor
/// buffer; a row is at most 1 GiB). Chunks are read in pieces, never whole.
const MAX_CHUNK: i64 = 1 << 30;
/// Piece of a chunk handled at once.
const PIECE: usize = 256 << 10;
/// Entries longer than this are damage (no real dump has a million objects per MiB).
const MAX_ENTRIES: i64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    None,
    Gzip,
    Zstd,
    /// lz4 or a method this build does not know: walked, not decompressed.
    Opaque,
}

#[derive(Debug, Clone)]
struct Entry {
    dump_id: i64,
    had_dumper: bool,
    tag: String,
    desc: String,
    namespace: String,
    copy_stmt: String,
    data_state: u8,
    data_pos: u64,
    /// Its data block has been read.
    seen: bool,
}

impl Entry {
    fn label(&self) -> String {
        let name =
            if self.namespace.is_empty() { self.tag.clone() } else { format!("{}.{}", self.namespace, self.tag) };
        format!("{} {name} (entry {})", self.desc, self.dump_id)
    }

    /// Whether the archive must hold a data block for this entry.
    fn expects_data(&self) -> bool {
        self.had_dumper && self.data_state != OFFSET_NO_DATA
    }
}

/// Byte source that knows its position and names it in errors.
struct In<R> {
    r: BufReader<R>,
    pos: u64,
    int_size: usize,
    off_size: usize,
}

impl<R: Read> In<R> {
    fn read_full(&mut self, buf: &mut [u8], what: &dyn Fn() -> String) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(Error::corrupt(format!(
                        "truncated at {} in {}: the archive ends there",
                        At(self.pos + got as u64),
                        what()
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(self.pos + got as u64, e)),
            }
        }
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// One byte, or `None` at a clean end of file.
    fn byte_or_eof(&mut self) -> Result<Option<u8>> {
        let mut b = [0u8; 1];
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.pos += 1;
                    return Ok(Some(b[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(self.pos, e)),
            }
        }
    }

    fn byte(&mut self, what: &dyn Fn() -> String) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read_full(&mut b, what)?;
        Ok(b[0])
    }

    fn int(&mut self, what: &dyn Fn() -> String) -> Result<i64> {
        let at = self.pos;
        let sign = self.byte(what)?;
        let mut buf = [0u8; 8];
        self.read_full(&mut buf[..self.int_size], what)?;
        if sign > 1 {
            return Err(Error::corrupt(format!("bad integer sign byte {sign:#04x} at {} in {}", At(at), what())));
        }
        let v = i64::from_le_bytes(buf);
        if v < 0 {
            return Err(Error::corrupt(format!("integer out of range at {} in {}", At(at), what())));
        }
        Ok(if sign == 1 { -v } else { v })
    }

    fn str_len(&mut self, what: &dyn Fn() -> String) -> Result<Option<u64>> {
        let at = self.pos;
        match self.int(what)? {
            -1 => Ok(None),
            n if (0..=MAX_STR).contains(&n) => Ok(Some(n as u64)),
            n => Err(Error::corrupt(format!("impossible string length {n} at {} in {}", At(at), what()))),
        }
    }

    /// A string (NULL reads as empty). Grows with the data, never by the stated length.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        Ok(self.opt_string(what)?.unwrap_or_default())
    }

    fn opt_string(&mut self, what: &dyn Fn() -> String) -> Result<Option<String>> {
        let at = self.pos;
        let Some(n) = self.str_len(what)? else { return Ok(None) };
        if n > MAX_KEPT_STR {
            return Err(Error::corrupt(format!("implausible string length {n} at {} in {}", At(at), what())));
        }
        let mut out = Vec::new();
        let got = (&mut self.r).take(n).read_to_end(&mut out).map_err(|e| read_error(self.pos, e))?;
        self.pos += got as u64;
        if (got as u64) < n {
            return Err(Error::corrupt(format!(
                "truncated at {} in {}: the archive ends inside a string",
                At(self.pos),
                what()
            )));
        }
        Ok(Some(String::from_utf8_lossy(&out).into_owned()))
    }

    fn skip_string(&mut self, what: &dyn Fn() -> String) -> Result<()> {
        let Some(n) = self.str_len(what)? else { return Ok(()) };
        self.skip(n, what)
    }

    fn skip(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<()> {
        let got = io::copy(&mut (&mut self.r).take(n), &mut io::sink()).map_err(|e| read_error(self.pos, e))?;
        self.pos += got;
        if got < n {
            return Err(Error::corrupt(format!("truncated at {} in {}: the archive ends there", At(self.pos), what())));
        }
        Ok(())
    }

    /// A file offset: flag byte and `off_size` little-endian bytes.
    fn offset(&mut self, what: &dyn Fn() -> String) -> Result<(u8, u64)> {
        let at = self.pos;
        let flag = self.byte(what)?;
        let mut v = 0u64;
        for i in 0..self.off_size {
            let b = self.byte(what)?;
            if i < 8 {
                v |= (b as u64) << (8 * i);
            } else if b != 0 {
                return Err(Error::corrupt(format!("file offset too large at {} in {}", At(at), what())));
            }
        }
        if !(1..=3).contains(&flag) {
            return Err(Error::corrupt(format!("bad data offset flag {flag} at {} in {}", At(at), what())));
        }
        Ok((flag, v))
    }
}

fn read_error(at: u64, e: io::Error) -> Error {
    // Errors of the underlying reader (the vault's authenticated reads) keep their message.
    Error::new(crate::error::ErrorKind::Corrupt, format!("reading at {}: {e}", At(at)))
}

/// Whether the first bytes of a `PGDMP` file are a directory-format `toc.dat` (which cannot be
/// restored from a stream). `None` when the header is too short to tell.
pub fn is_directory_toc(head: &[u8]) -> Option<bool> {
    // PGDMP, major, minor, revision (from 1.0 on), int size, offset size, format.
    let has_rev = head.len() > 6 && (head[5] > 1 || (head[5] == 1 && head[6] > 0));
    head.get(if has_rev { 10 } else { 9 }).map(|f| FORMATS_TOC.contains(f))
}

/// Reads and checks a whole custom-format archive (or a directory-format `toc.dat`) from `r`.
pub fn verify<R: Read>(r: R) -> Result<DumpReport> {
    let mut rep = DumpReport::empty(DumpFormat::Custom);
    let mut inp = In { r: BufReader::with_capacity(256 << 10, r), pos: 0, int_size: 4, off_size: 8 };
    let res = read_all(&mut inp, &mut rep);
    rep.bytes = inp.pos;
    res.map(|_| rep)
}

fn read_all<R: Read>(inp: &mut In<R>, rep: &mut DumpReport) -> Result<()> {
    let hdr = || "the archive header".to_string();
    let mut magic = [0u8; 5];
    inp.read_full(&mut magic, &hdr)?;
    if &magic != CUSTOM_MAGIC {
        return Err(Error::corrupt("not a pg_dump custom-format archive (no PGDMP header)"));
    }
    let vmaj = inp.byte(&hdr)?;
    let vmin = inp.byte(&hdr)?;
    let vrev = if vmaj > 1 || (vmaj == 1 && vmin > 0) { inp.byte(&hdr)? } else { 0 };
    rep.archive_version = format!("{vmaj}.{vmin}");
    let v = (vmaj, vmin);
    if v > MAX_VERSION {
        rep.not_verifiable = Some(format!(
            "archive version {vmaj}.{vmin}.{vrev} is newer than this build reads (up to {}.{}, PostgreSQL 17)",
            MAX_VERSION.0, MAX_VERSION.1
        ));
        return Ok(());
    }
    if v < MIN_VERSION {
        rep.not_verifiable = Some(format!(
            "archive version {vmaj}.{vmin}.{vrev} is older than this build reads (from {}.{}, PostgreSQL 8.0)",
            MIN_VERSION.0, MIN_VERSION.1
        ));
        return Ok(());
    }
    let int_size = inp.byte(&hdr)? as usize;
    let off_size = inp.byte(&hdr)? as usize;
    if !(1..=8).contains(&int_size) || !(1..=16).contains(&off_size) {
        return Err(Error::corrupt(format!(
            "implausible integer size {int_size} or offset size {off_size} in the archive header"
        )));
    }
    inp.int_size = int_size;
    inp.off_size = off_size;
    let fmt = inp.byte(&hdr)?;
    if fmt != FORMAT_CUSTOM && !FORMATS_TOC.contains(&fmt) {
        return Err(Error::corrupt(format!(
            "archive header names format {fmt}, not 1 (custom) or 3 (the toc.dat of a directory or tar dump)"
        )));
    }
    let directory = FORMATS_TOC.contains(&fmt);
    if directory {
        rep.note = Some(
            "the table of contents (toc.dat) of a directory-format dump (pg_dump -Fd): its entries were read; \
             the data are in the files next to it, checked as files of their own; restore the whole directory \
             with pg_restore"
                .into(),
        );
    }
    let method = if v >= (1, 15) {
        match inp.byte(&hdr)? {
            0 => Method::None,
            1 => Method::Gzip,
            2 => {
                rep.compression = "lz4".into();
                Method::Opaque
            }
            3 => Method::Zstd,
            n => {
                rep.compression = format!("unknown ({n})");
                Method::Opaque
            }
        }
    } else {
        match inp.int(&hdr)? {
            0 => Method::None,
            _ => Method::Gzip,
        }
    };
    match method {
        Method::None => rep.compression = "none".into(),
        Method::Gzip => rep.compression = "gzip".into(),
        Method::Zstd => rep.compression = "zstd".into(),
        Method::Opaque => {
            rep.not_verifiable = Some(format!(
                "data compressed with {}, which this build cannot decompress: the structure was checked, the rows \
                 were not counted",
                rep.compression
            ))
        }
    }
    for _ in 0..7 {
        inp.int(&hdr)?;
    }
    rep.database = inp.string(&hdr)?;
    if v >= (1, 10) {
        rep.server_version = inp.string(&hdr)?;
        rep.pg_dump_version = inp.string(&hdr)?;
    }

    // The table of contents.
    let toc_at = inp.pos;
    let count = inp.int(&|| "the table of contents".to_string())?;
    if !(0..=MAX_ENTRIES).contains(&count) {
        return Err(Error::corrupt(format!("impossible TOC entry count {count} at {}", At(toc_at))));
    }
    rep.entries = count as u64;
    let mut entries: Vec<Entry> = Vec::new();
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    for i in 0..count {
        let at = inp.pos;
        let what = move || format!("the table of contents (entry {} of {count}, at {})", i + 1, At(at));
        let dump_id = inp.int(&what)?;
        if dump_id <= 0 {
            return Err(Error::corrupt(format!("entry id {dump_id} out of range in {}", what())));
        }
        let had_dumper = inp.int(&what)? != 0;
        inp.skip_string(&what)?; // table oid
        inp.skip_string(&what)?; // oid
        let tag = inp.string(&what)?;
        let desc = inp.string(&what)?;
        if v >= (1, 11) {
            inp.int(&what)?; // section
        }
        inp.skip_string(&what)?; // definition
        inp.skip_string(&what)?; // drop statement
        let copy_stmt = inp.string(&what)?;
        let namespace = inp.string(&what)?;
        inp.skip_string(&what)?; // tablespace
        if v >= (1, 14) {
            inp.skip_string(&what)?; // table access method
        }
        if v >= (1, 16) {
            inp.int(&what)?; // relkind
        }
        inp.skip_string(&what)?; // owner
        inp.skip_string(&what)?; // "false": WITH OIDS
        let mut deps = 0u64;
        while inp.opt_string(&what)?.is_some() {
            deps += 1;
            if deps > MAX_ENTRIES as u64 {
                return Err(Error::corrupt(format!("endless dependency list in {}", what())));
            }
        }
        let (data_state, data_pos) = if directory {
            // The data file's name ("3349.dat.gz"), or empty for entries without data.
            inp.skip_string(&what)?;
            (OFFSET_NO_DATA, 0)
        } else {
            inp.offset(&what)?
        };
        if by_id.insert(dump_id, entries.len()).is_some() {
            return Err(Error::corrupt(format!("entry id {dump_id} appears twice in the table of contents")));
        }
        entries.push(Entry { dump_id, had_dumper, tag, desc, namespace, copy_stmt, data_state, data_pos, seen: false });
    }

    if directory {
        if let Some(b) = inp.byte_or_eof()? {
            return Err(Error::corrupt(format!(
                "unexpected byte {b:#04x} at {} after the table of contents of a toc.dat (trailing garbage)",
                At(inp.pos - 1)
            )));
        }
        return Ok(());
    }
    // The data blocks.
    let mut blocks = 0u64;
    loop {
        let at = inp.pos;
        let Some(kind) = inp.byte_or_eof()? else { break };
        if kind != BLK_DATA && kind != BLK_BLOBS {
            let expected = entries.iter().filter(|e| e.expects_data() && !e.seen).count();
            return Err(Error::corrupt(if expected == 0 {
                format!("unexpected bytes at {} after the last data block (trailing garbage)", At(at))
            } else {
                format!(
                    "bad data block type {kind:#04x} at {} (after {blocks} blocks; {expected} entries still \
                     expect data)",
                    At(at)
                )
            }));
        }
        let id = inp.int(&|| format!("the data block header at {}", At(at)))?;
        let Some(&ix) = by_id.get(&id) else {
            return Err(Error::corrupt(format!(
                "the data block at {} belongs to entry {id}, which the table of contents does not have",
                At(at)
            )));
        };
        let label = entries[ix].label();
        if entries[ix].seen {
            return Err(Error::corrupt(format!("a second data block for {label} at {}", At(at))));
        }
        entries[ix].seen = true;
        blocks += 1;
        if entries[ix].data_state == OFFSET_POS_SET && entries[ix].data_pos != at {
            rep.damage.push(format!(
                "{label}: the table of contents places its data at {}, the block is at {}",
                At(entries[ix].data_pos),
                At(at)
            ));
        }
        if kind == BLK_DATA {
            let e = &entries[ix];
            let copy = !e.copy_stmt.trim().is_empty();
            let mut rows = RowCounter::new(if copy { copy_columns(&e.copy_stmt) } else { None });
            let s = read_stream(inp, method, &label, at, &mut |d| rows.feed(d))?;
            rows.finish(false);
            let mut error = s.error;
            if error.is_none() && copy {
                if let Some((off, msg)) = rows.problem.take() {
                    error = Some(format!("{msg} (at {} of its decompressed data)", At(off)));
                }
            }
            if e.desc == "TABLE DATA" || copy {
                rep.tables.push(TableData {
                    schema: e.namespace.clone(),
                    table: e.tag.clone(),
                    rows: (copy && method != Method::Opaque && error.is_none()).then_some(rows.rows),
                    offset: at,
                    stored_bytes: inp.pos - at,
                    data_bytes: s.data_bytes,
                    error: error.clone(),
                });
            }
            if let Some(err) = error {
                rep.damage.push(format!("{label}: data block at {}: {err}", At(at)));
            }
        } else {
            loop {
                let oid_at = inp.pos;
                let oid = inp.int(&|| format!("the large objects of {label} (block at {})", At(at)))?;
                if oid == 0 {
                    break;
                }
                if oid < 0 {
                    return Err(Error::corrupt(format!("bad large object OID {oid} at {} in {label}", At(oid_at))));
                }
                let s = read_stream(inp, method, &format!("large object {oid}"), oid_at, &mut |_| {})?;
                rep.large_objects += 1;
                if let Some(err) = s.error {
                    rep.damage.push(format!("{label}: large object {oid} at {}: {err}", At(oid_at)));
                }
            }
        }
    }
    for e in entries.iter().filter(|e| e.expects_data() && !e.seen) {
        rep.damage.push(format!(
            "{}: no data block (the archive ends at {}{})",
            e.label(),
            At(inp.pos),
            if e.data_state == OFFSET_POS_SET {
                format!("; its data should be at {}", At(e.data_pos))
            } else {
                String::new()
            }
        ));
    }
    Ok(())
}

struct Stream {
    data_bytes: u64,
    /// Damage inside the stream (the framing itself was intact).
    error: Option<String>,
}

/// Reads one chunked stream, decompressing it into `out`. Framing damage is an `Err`;
/// damage of the compressed content is returned in [`Stream::error`] (the rest of the chunks
/// are still read, so that the next block can be found).
fn read_stream<R: Read>(
    inp: &mut In<R>,
    method: Method,
    label: &str,
    start: u64,
    out: &mut dyn FnMut(&[u8]),
) -> Result<Stream> {
    let mut dec = Decoder::new(method);
    let mut buf = vec![0u8; PIECE];
    let mut chunks = 0u64;
    loop {
        let at = inp.pos;
        let what = || format!("the data of {label} (stream at {}, chunk {} at {})", At(start), chunks + 1, At(at));
        let len = inp.int(&what)?;
        if len == 0 {
            break;
        }
        if !(1..=MAX_CHUNK).contains(&len) {
            return Err(Error::corrupt(format!("impossible chunk length {len} in {}", what())));
        }
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(PIECE);
            inp.read_full(&mut buf[..n], &what)?;
            dec.feed(&buf[..n], at, out);
            left -= n;
        }
        chunks += 1;
    }
    dec.finish(out);
    Ok(Stream { data_bytes: dec.data_bytes, error: dec.error })
}

/// Decompression of one stream, chunk by chunk; keeps the first error.
struct Decoder {
    method: Method,
    zlib: Option<flate2::Decompress>,
    zstd: Option<zstd::stream::raw::Decoder<'static>>,
    ended: bool,
    /// zstd: the current frame is complete (a new one may follow).
    frame_done: bool,
    out: Vec<u8>,
    data_bytes: u64,
    error: Option<String>,
}

impl Decoder {
    fn new(method: Method) -> Decoder {
        let zstd = match method {
            Method::Zstd => match zstd::stream::raw::Decoder::new() {
                Ok(d) => Some(d),
                Err(e) => {
                    let mut d = Decoder::plain(method);
                    d.error = Some(format!("zstd: {e}"));
                    return d;
                }
            },
            _ => None,
        };
        let mut d = Decoder::plain(method);
        d.zlib = (method == Method::Gzip).then(|| flate2::Decompress::new(true));
        d.zstd = zstd;
        d
    }

    fn plain(method: Method) -> Decoder {
        Decoder {
            method,
            zlib: None,
            zstd: None,
            ended: false,
            frame_done: true,
            out: vec![0u8; 256 << 10],
            data_bytes: 0,
            error: None,
        }
    }

    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    fn feed(&mut self, chunk: &[u8], at: u64, out: &mut dyn FnMut(&[u8])) {
        if self.error.is_some() {
            return;
        }
        match self.method {
            Method::None => {
                self.data_bytes += chunk.len() as u64;
                out(chunk);
            }
            Method::Opaque => {}
            Method::Gzip => {
                let Some(z) = self.zlib.as_mut() else { return };
                let mut input = chunk;
                while !input.is_empty() {
                    if self.ended {
                        let n = input.len();
                        self.fail(format!("{n} bytes after the end of the zlib stream (chunk at {})", At(at)));
                        return;
                    }
                    let (before_in, before_out) = (z.total_in(), z.total_out());
                    let r = z.decompress(input, &mut self.out, flate2::FlushDecompress::None);
                    let used = (z.total_in() - before_in) as usize;
                    let made = (z.total_out() - before_out) as usize;
                    input = &input[used..];
                    self.data_bytes += made as u64;
                    out(&self.out[..made]);
                    match r {
                        Ok(flate2::Status::StreamEnd) => self.ended = true,
                        Ok(_) if used == 0 && made == 0 => {
                            self.fail(format!("the zlib stream makes no progress (chunk at {})", At(at)));
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let msg = format!("zlib: {e} (chunk at {})", At(at));
                            self.fail(msg);
                            return;
                        }
                    }
                }
            }
            Method::Zstd => {
                let Some(z) = self.zstd.as_mut() else { return };
                use zstd::stream::raw::Operation;
                let mut input = zstd::stream::raw::InBuffer::around(chunk);
                while input.pos < chunk.len() {
                    let mut o = zstd::stream::raw::OutBuffer::around(&mut self.out[..]);
                    match z.run(&mut input, &mut o) {
                        Ok(hint) => {
                            self.frame_done = hint == 0;
                            let made = o.pos();
                            self.data_bytes += made as u64;
                            out(&self.out[..made]);
                        }
                        Err(e) => {
                            self.fail(format!("zstd: {e} (chunk at {})", At(at)));
                            return;
                        }
                    }
                }
            }
        }
    }

    fn finish(&mut self, out: &mut dyn FnMut(&[u8])) {
        if self.error.is_some() {
            return;
        }
        match self.method {
            Method::Gzip => {
                // Output zlib still holds back.
                while !self.ended {
                    let Some(z) = self.zlib.as_mut() else { return };
                    let before_out = z.total_out();
                    let r = z.decompress(&[], &mut self.out, flate2::FlushDecompress::Finish);
                    let made = (z.total_out() - before_out) as usize;
                    self.data_bytes += made as u64;
                    out(&self.out[..made]);
                    match r {
                        Ok(flate2::Status::StreamEnd) => self.ended = true,
                        Ok(_) if made > 0 => {}
                        Ok(_) | Err(_) => {
                            self.fail("the zlib stream is cut short (no end of stream)".into());
                            return;
                        }
                    }
                }
            }
            Method::Zstd => {
                let Some(z) = self.zstd.as_mut() else { return };
                use zstd::stream::raw::Operation;
                // Output the decoder still holds back, until its frame is complete.
                while !self.frame_done {
                    let mut o = zstd::stream::raw::OutBuffer::around(&mut self.out[..]);
                    match z.run(&mut zstd::stream::raw::InBuffer::around(&[]), &mut o) {
                        Ok(hint) => {
                            self.frame_done = hint == 0;
                            let made = o.pos();
                            self.data_bytes += made as u64;
                            out(&self.out[..made]);
                            if made == 0 && !self.frame_done {
                                self.fail("the zstd stream is cut short (incomplete frame)".into());
                                return;
                            }
                        }
                        Err(e) => {
                            self.fail(format!("zstd: {e}"));
                            return;
                        }
                    }
                }
            }
            Method::None | Method::Opaque => {}
        }
    }
}
