//! Streaming verifier for `mongodump --archive` output, plain or gzip-wrapped.
//!
//! Layout (all little-endian): `MAGIC prelude body`. MAGIC is `6d e2 99 81`. The prelude is one
//! block: the archive header document, one collection-metadata document per namespace, then a
//! terminator (TERM, `ff ff ff ff`). The body is a run of segments (namespace header with
//! `EOF=false`, data documents, TERM) and EOF blocks (namespace header with `EOF=true` and the
//! namespace's CRC, TERM) up to a clean end of stream. Segments of different namespaces may
//! interleave. The CRC is CRC-64/XZ (Go's `crc64.ECMA`) over the raw bytes of every data
//! document of the namespace, in stream order. Gzip is detected by content, and concatenated
//! gzip members are read as one stream, as mongorestore does.
//!
//! [`verify`] reads the stream once, front to back. It enforces every rule that mongorestore's
//! demultiplexer enforces, and completeness at the end of the stream. Structural damage
//! (truncation, bad framing, malformed header documents, ordering violations) is an error that
//! names the byte offset. A CRC mismatch is not an error: it is recorded for its namespace, so
//! that a drill can list every damaged namespace in one pass. Memory: one document buffer (at
//! most [`MAX_DOC`] bytes, checked before allocating) plus a few small values per namespace.
//! Header documents are checked against the BSON size rules. Data documents are checked only
//! for their length and final NUL and are never decoded.

use crate::error::{Error, Result};
use crc::{Crc, Digest, Table, CRC_64_XZ};
use flate2::bufread::MultiGzDecoder;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader, Read};

/// First four bytes of a plain archive (`0x8199e26d` little-endian).
pub const MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];
/// First two bytes of every gzip member.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The smallest BSON document: a length and the final NUL.
pub const MIN_DOC: usize = 5;
/// The server's limit for user documents. Larger documents (up to [`MAX_DOC`]) are accepted
/// with a warning, since oplog entries may be that large.
pub const MAX_USER_DOC: usize = 16 << 20;
/// The server's internal document limit (16 MiB + 16 KiB); any larger length is corruption.
pub const MAX_DOC: usize = (16 << 20) + (16 << 10);

const TERMINATOR: u32 = 0xFFFF_FFFF;
/// Nesting limit for embedded documents in header documents (they have none in practice).
const MAX_DEPTH: usize = 100;
/// How many namespace names an error message lists before "and N more".
const LIST_LIMIT: usize = 10;
/// The archive format version every known mongodump writes.
const FORMAT_VERSION: &str = "0.1";

static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_XZ);

/// CRC-64/XZ of `bytes`: the checksum an archive's EOF header carries.
pub fn crc64(bytes: &[u8]) -> u64 {
    CRC64.checksum(bytes)
}

/// The archive header: the first document after the magic number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveHeader {
    /// mongodump's `--numParallelCollections`; 0 if absent.
    pub concurrent_collections: i32,
    /// Archive format version; `"0.1"` in every known release.
    pub version: String,
    /// Version of the source server, e.g. `"5.0.0-rc0"`; may be empty.
    pub server_version: String,
    /// Version of mongodump, e.g. `"100.3.1-9-g6903606e-dirty"`; may be empty.
    pub tool_version: String,
}

/// The verdict for one namespace of the prelude.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceReport {
    /// The namespace its data was written under in the body (`db.collection`; `.oplog` for the
    /// oplog). For a time-series collection from a server older than 8.3 this is
    /// `db.system.buckets.X`, while `collection` is the prelude's logical name `X`.
    pub ns: String,
    /// Database, as named in the prelude (`""` for the oplog).
    pub db: String,
    /// Logical collection name, as named in the prelude.
    pub collection: String,
    /// The prelude's `type` as written: `"collection"`, `"view"`, `"timeseries"`, or `""` (the
    /// oplog, special namespaces, and every archive older than mongodump 100.4.0).
    pub kind: String,
    /// Number of data documents.
    pub docs: u64,
    /// Total size of the data documents in bytes.
    pub body_bytes: u64,
    /// CRC-64/XZ computed over the data documents, in stream order.
    pub crc: u64,
    /// The CRC the EOF header states (its int64 bits read as unsigned).
    pub expected_crc: Option<u64>,
    /// `expected_crc == Some(crc)`.
    pub crc_ok: bool,
    /// The prelude's `metadata` string is empty (no metadata, as for the oplog) or a JSON
    /// object. mongorestore cannot restore a namespace whose metadata does not parse.
    pub metadata_json_ok: bool,
}

/// Everything [`verify`] learned from one complete, structurally valid archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The stream was gzip (detected by content, not by name).
    pub compressed: bool,
    pub header: ArchiveHeader,
    /// One entry per prelude namespace, in prelude order. Every body namespace must belong to
    /// a prelude entry (anything else is an error), so there are no others.
    pub namespaces: Vec<NamespaceReport>,
    /// Bytes of the (decompressed) archive stream, magic number included.
    pub bytes: u64,
    /// Oddities that do not make the archive unusable: an unknown format version, documents
    /// over the 16 MiB user limit.
    pub warnings: Vec<String>,
}

impl ArchiveReport {
    /// The report for the namespace written as `ns` in the body.
    pub fn namespace(&self, ns: &str) -> Option<&NamespaceReport> {
        self.namespaces.iter().find(|n| n.ns == ns)
    }

    /// Namespaces whose data does not match the CRC of their EOF header.
    pub fn crc_failures(&self) -> impl Iterator<Item = &NamespaceReport> {
        self.namespaces.iter().filter(|n| !n.crc_ok)
    }

    /// Every CRC matches and every metadata string parses.
    pub fn ok(&self) -> bool {
        self.namespaces.iter().all(|n| n.crc_ok && n.metadata_json_ok)
    }
}

/// Whether a stream starting with `first_bytes` may be a mongodump archive: the plain magic
/// number (pass at least 4 bytes) or the gzip magic. For gzip this only says "gzip": whether
/// the compressed content is an archive is known only after decompressing, which [`verify`]
/// does.
pub fn is_archive(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(&MAGIC) || first_bytes.starts_with(&GZIP_MAGIC)
}

/// Detects plain or gzip by content and verifies the whole archive from `r`.
///
/// `on_doc(ns, raw)` is called for every data document, in stream order, after it has been
/// counted and added to its namespace's CRC; `ns` is the namespace as written in the body. An
/// error from `on_doc` stops verification and is returned with context added.
///
/// Returns `Err` (kind [`Corrupt`](crate::ErrorKind::Corrupt), message naming the byte offset in
/// the decompressed stream) for anything that makes the archive unreadable or incomplete:
/// not an archive, truncation anywhere (including a cut between blocks, caught by the
/// completeness check), bad framing, malformed header documents, and ordering violations.
/// Returns `Ok` with `crc_ok == false` for namespaces whose data does not match their EOF CRC,
/// and with `metadata_json_ok == false` for unparseable metadata. Reader failures are
/// [`Error::io`]. Never holds more than one document (at most [`MAX_DOC`] bytes) at a time.
pub fn verify<R: Read>(r: R, on_doc: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<ArchiveReport> {
    verify_with(r, &mut |_| Ok(()), on_doc)
}

/// [`verify`], and `on_prelude(namespaces)` once the prelude has been read, before the first
/// body document: one entry per prelude namespace (its `ns`, `db`, `collection` and `kind`
/// as the prelude names them; counts and CRCs are still zero). A consumer that restores the
/// data decides there where each namespace goes. An error from `on_prelude` stops
/// verification and is returned as it is.
pub fn verify_with<R: Read>(
    r: R,
    on_prelude: &mut dyn FnMut(&[NamespaceReport]) -> Result<()>,
    on_doc: &mut dyn FnMut(&str, &[u8]) -> Result<()>,
) -> Result<ArchiveReport> {
    let mut input = BufReader::with_capacity(1 << 20, r);
    let mut head = [0u8; 4];
    let n = fill(&mut input, &mut head).map_err(|e| Error::io("reading mongodump archive at byte 0", e))?;
    let head = &head[..n];
    if head.starts_with(&GZIP_MAGIC) {
        // The bytes already read go back in front of the rest of the stream.
        let source = Source::new(MultiGzDecoder::new(head.chain(input)), true);
        run(source, true, on_prelude, on_doc)
    } else if head == MAGIC {
        let mut source = Source::new(input, false);
        source.pos = 4;
        run(source, false, on_prelude, on_doc)
    } else if n == 0 {
        Err(Error::corrupt("mongodump archive: the stream is empty"))
    } else if n < MAGIC.len() && (MAGIC.starts_with(head) || GZIP_MAGIC.starts_with(head)) {
        Err(bad(false, n as u64, "stream ends inside the magic number (truncated archive)"))
    } else {
        Err(Error::corrupt(format!(
            "stream does not appear to be a mongodump archive (starts with {}, expected {} or gzip)",
            hex::encode(head),
            hex::encode(MAGIC)
        )))
    }
}

/// A Corrupt error at byte offset `at` of the (decompressed) stream.
fn bad(compressed: bool, at: u64, msg: impl fmt::Display) -> Error {
    let place = if compressed { "decompressed byte" } else { "byte" };
    Error::corrupt(format!("mongodump archive, {place} {at}: {msg}"))
}

/// Reads until `out` is full or the stream ends; returns how many bytes were read.
fn fill<S: Read>(r: &mut S, out: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < out.len() {
        match r.read(&mut out[got..]) {
            Ok(0) => break,
            Ok(n) => got += n.min(out.len() - got),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// One unit of the stream.
enum Item {
    /// Clean end of stream, between items.
    End,
    Term {
        at: u64,
    },
    /// A document of `len` bytes, now in `Source::buf[..len]`.
    Doc {
        at: u64,
        len: usize,
    },
}

/// The (decompressed) stream with its byte position and the one reusable document buffer.
struct Source<S> {
    inner: S,
    pos: u64,
    compressed: bool,
    buf: Vec<u8>,
}

impl<S: Read> Source<S> {
    fn new(inner: S, compressed: bool) -> Self {
        Source { inner, pos: 0, compressed, buf: Vec::new() }
    }

    fn io_error(&self, at: u64, e: io::Error) -> Error {
        let place = if self.compressed { "decompressed byte" } else { "byte" };
        // The decoder reports damaged or cut gzip data with these kinds; errors of the
        // underlying reader pass through with their own kinds.
        if self.compressed
            && matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            )
        {
            Error::corrupt(format!("mongodump archive: gzip stream damaged or truncated (near {place} {at}): {e}"))
        } else {
            Error::io(format!("reading mongodump archive at {place} {at}"), e)
        }
    }

    fn next_item(&mut self) -> Result<Item> {
        let at = self.pos;
        let mut len = [0u8; 4];
        let n = fill(&mut self.inner, &mut len).map_err(|e| self.io_error(at, e))?;
        self.pos += n as u64;
        if n == 0 {
            return Ok(Item::End);
        }
        if n < len.len() {
            return Err(bad(
                self.compressed,
                at,
                format!("stream ends after {n} of the 4 length bytes of an item (truncated archive)"),
            ));
        }
        let raw = u32::from_le_bytes(len);
        if raw == TERMINATOR {
            return Ok(Item::Term { at });
        }
        let l = raw as usize;
        if !(MIN_DOC..=MAX_DOC).contains(&l) {
            return Err(bad(
                self.compressed,
                at,
                format!("{raw} is neither a valid BSON document length ({MIN_DOC}..={MAX_DOC}) nor a terminator"),
            ));
        }
        if self.buf.len() < l {
            self.buf.resize(l, 0);
        }
        self.buf[..4].copy_from_slice(&len);
        let got = fill(&mut self.inner, &mut self.buf[4..l]).map_err(|e| self.io_error(at, e))?;
        self.pos += got as u64;
        if got < l - 4 {
            return Err(bad(
                self.compressed,
                at,
                format!("stream ends {} bytes into a document of {l} bytes (truncated archive)", got + 4),
            ));
        }
        if self.buf[l - 1] != 0 {
            return Err(bad(self.compressed, at, format!("document of {l} bytes does not end with a NUL byte")));
        }
        Ok(Item::Doc { at, len: l })
    }
}

/// Where the parser is in the body.
#[derive(Clone, Copy)]
enum Block {
    /// Between blocks: a namespace header or a clean end of stream may come.
    Start,
    /// Inside a segment of entry `i`: data documents or its TERM.
    Segment(usize),
    /// After the EOF header of entry `i`: only its TERM.
    AfterEof(usize),
}

/// Per prelude entry: its report so far and its place in the stream.
struct Entry {
    report: NamespaceReport,
    prelude_ns: String,
    timeseries: bool,
    /// A body namespace has been matched to this entry (it is `report.ns`).
    bound: bool,
    had_segment: bool,
    eof: bool,
    digest: Digest<'static, u64, Table<16>>,
    oversize: u64,
}

struct State {
    compressed: bool,
    /// Source server 8.3 or newer: time-series data is under the collection's own name.
    viewless_timeseries: bool,
    entries: Vec<Entry>,
    by_prelude: HashMap<String, usize>,
    by_body: HashMap<String, usize>,
}

impl State {
    /// The entry that body namespace `db.coll` belongs to (section "special namespaces": data
    /// of a time-series collection from a server older than 8.3 is under `system.buckets.X`).
    /// Each entry is fed by one body namespace only.
    fn resolve(&mut self, db: &str, coll: &str) -> std::result::Result<usize, String> {
        let ns = format!("{db}.{coll}");
        if let Some(&i) = self.by_body.get(&ns) {
            return Ok(i);
        }
        let logical = coll.strip_prefix("system.buckets.").map(|view| format!("{db}.{view}"));
        let ts_entry =
            logical.as_ref().and_then(|l| self.by_prelude.get(l).copied()).filter(|&i| self.entries[i].timeseries);
        let target = if self.viewless_timeseries { None } else { ts_entry };
        let Some(i) = target.or_else(|| self.by_prelude.get(&ns).copied()) else {
            let hint = match (ts_entry, self.viewless_timeseries) {
                (Some(_), true) => {
                    " (the source server is 8.3 or newer, so time-series data must be under the \
                                    collection's own name, not system.buckets.*)"
                }
                _ => "",
            };
            return Err(format!("no intent for namespace {ns}: the prelude does not list it{hint}"));
        };
        let e = &mut self.entries[i];
        if e.bound {
            return Err(format!(
                "namespaces {} and {ns} both belong to the prelude entry {}",
                e.report.ns, e.prelude_ns
            ));
        }
        e.bound = true;
        e.report.ns.clone_from(&ns);
        self.by_body.insert(ns, i);
        Ok(i)
    }
}

fn run<S: Read>(
    mut src: Source<S>,
    read_magic: bool,
    on_prelude: &mut dyn FnMut(&[NamespaceReport]) -> Result<()>,
    on_doc: &mut dyn FnMut(&str, &[u8]) -> Result<()>,
) -> Result<ArchiveReport> {
    let c = src.compressed;
    if read_magic {
        let mut m = [0u8; 4];
        let n = fill(&mut src.inner, &mut m).map_err(|e| src.io_error(0, e))?;
        src.pos = n as u64;
        if m[..n] != MAGIC[..n] {
            return Err(bad(c, 0, "the gzip content is not a mongodump archive (no magic number)"));
        }
        if n < MAGIC.len() {
            return Err(bad(c, n as u64, "stream ends inside the magic number (truncated archive)"));
        }
    }

    // Prelude: archive header, collection metadata documents, TERM.
    let header = match src.next_item()? {
        Item::Doc { at, len } => {
            parse_archive_header(&src.buf[..len]).map_err(|m| bad(c, at, format!("archive header: {m}")))?
        }
        Item::Term { at } => return Err(bad(c, at, "the prelude starts with a terminator, not the archive header")),
        Item::End => return Err(bad(c, src.pos, "stream ends before the archive header (truncated archive)")),
    };
    let mut warnings = Vec::new();
    if header.version != FORMAT_VERSION {
        warnings.push(format!("archive format version {:?}, expected {FORMAT_VERSION:?}", header.version));
    }
    let mut st = State {
        compressed: c,
        viewless_timeseries: viewless_timeseries(&header.server_version),
        entries: Vec::new(),
        by_prelude: HashMap::new(),
        by_body: HashMap::new(),
    };
    loop {
        match src.next_item()? {
            Item::Doc { at, len } => {
                let m = parse_collection_metadata(&src.buf[..len])
                    .map_err(|m| bad(c, at, format!("collection metadata in the prelude: {m}")))?;
                let ns = format!("{}.{}", m.db, m.collection);
                let timeseries = m.kind == "timeseries";
                if st.by_prelude.contains_key(&ns) {
                    return Err(bad(c, at, format!("the prelude lists namespace {ns} twice")));
                }
                st.by_prelude.insert(ns.clone(), st.entries.len());
                st.entries.push(Entry {
                    report: NamespaceReport {
                        ns: ns.clone(),
                        db: m.db,
                        collection: m.collection,
                        kind: m.kind,
                        docs: 0,
                        body_bytes: 0,
                        crc: 0,
                        expected_crc: None,
                        crc_ok: false,
                        metadata_json_ok: m.metadata_json_ok,
                    },
                    prelude_ns: ns,
                    timeseries,
                    bound: false,
                    had_segment: false,
                    eof: false,
                    digest: CRC64.digest(),
                    oversize: 0,
                });
            }
            Item::Term { .. } => break,
            Item::End => return Err(bad(c, src.pos, "stream ends inside the prelude (truncated archive)")),
        }
    }
    let prelude: Vec<NamespaceReport> = st.entries.iter().map(|e| e.report.clone()).collect();
    on_prelude(&prelude)?;

    // Body: segments and EOF blocks until a clean end of stream.
    let mut block = Block::Start;
    loop {
        let item = src.next_item()?;
        match (item, block) {
            (Item::End, Block::Start) => break,
            (Item::End, Block::Segment(i)) => {
                let ns = &st.entries[i].report.ns;
                return Err(bad(c, src.pos, format!("stream ends inside a segment of {ns} (truncated archive)")));
            }
            (Item::End, Block::AfterEof(i)) => {
                let ns = &st.entries[i].report.ns;
                return Err(bad(
                    c,
                    src.pos,
                    format!("stream ends between the EOF header of {ns} and its terminator (truncated archive)"),
                ));
            }
            (Item::Term { at }, Block::Start) => {
                return Err(bad(
                    c,
                    at,
                    "terminator where a block header must start (consecutive terminators / headerless blocks \
                     are not allowed)",
                ));
            }
            (Item::Term { .. }, Block::Segment(_) | Block::AfterEof(_)) => block = Block::Start,
            (Item::Doc { at, len }, Block::Start) => {
                let h = parse_namespace_header(&src.buf[..len])
                    .map_err(|m| bad(c, at, format!("invalid namespace header: {m}")))?;
                let i = st.resolve(&h.db, &h.collection).map_err(|m| bad(c, at, m))?;
                let e = &mut st.entries[i];
                if h.eof {
                    if e.eof {
                        return Err(bad(c, at, format!("second EOF header for namespace {}", e.report.ns)));
                    }
                    e.eof = true;
                    let crc = std::mem::replace(&mut e.digest, CRC64.digest()).finalize();
                    e.report.crc = crc;
                    e.report.expected_crc = Some(h.crc);
                    e.report.crc_ok = crc == h.crc;
                    block = Block::AfterEof(i);
                } else {
                    if e.eof {
                        return Err(bad(
                            c,
                            at,
                            format!("segment header for namespace {}, which already had its EOF block", e.report.ns),
                        ));
                    }
                    e.had_segment = true;
                    block = Block::Segment(i);
                }
            }
            (Item::Doc { at, len }, Block::Segment(i)) => {
                let doc = &src.buf[..len];
                let e = &mut st.entries[i];
                e.report.docs += 1;
                e.report.body_bytes += len as u64;
                e.digest.update(doc);
                if len > MAX_USER_DOC {
                    e.oversize += 1;
                }
                let place = if st.compressed { "decompressed byte" } else { "byte" };
                on_doc(&e.report.ns, doc)
                    .map_err(|err| err.context(format!("document of {} at {place} {at}", e.report.ns)))?;
            }
            (Item::Doc { at, .. }, Block::AfterEof(i)) => {
                let ns = &st.entries[i].report.ns;
                return Err(bad(
                    c,
                    at,
                    format!("collection data without a collection header: a document follows the EOF header of {ns}"),
                ));
            }
        }
    }

    // Completeness: only a namespace's EOF block proves that its producer finished.
    let unfinished: Vec<&str> =
        st.entries.iter().filter(|e| e.had_segment && !e.eof).map(|e| e.report.ns.as_str()).collect();
    if !unfinished.is_empty() {
        return Err(bad(
            c,
            src.pos,
            format!("archive finished but contained namespaces were unfinished (no EOF block): {}", list(&unfinished)),
        ));
    }
    let unseen: Vec<&str> = st.entries.iter().filter(|e| !e.eof).map(|e| e.prelude_ns.as_str()).collect();
    if !unseen.is_empty() {
        return Err(bad(
            c,
            src.pos,
            format!("archive finished before all collections were seen: no EOF block for {}", list(&unseen)),
        ));
    }

    for e in &st.entries {
        if e.oversize > 0 {
            warnings.push(format!(
                "{}: {} document(s) larger than the 16 MiB user document limit",
                e.report.ns, e.oversize
            ));
        }
    }
    Ok(ArchiveReport {
        compressed: c,
        header,
        namespaces: st.entries.into_iter().map(|e| e.report).collect(),
        bytes: src.pos,
        warnings,
    })
}

fn list(names: &[&str]) -> String {
    let mut s = names.iter().take(LIST_LIMIT).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    if names.len() > LIST_LIMIT {
        s.push_str(&format!(" and {} more", names.len() - LIST_LIMIT));
    }
    s
}

/// Whether `server_version` (e.g. `"8.3.0-rc1"`) is 8.3 or newer. The version is cut at the
/// first `-` or `+` and read as `major.minor[.patch]`; anything unparseable counts as older.
fn viewless_timeseries(server_version: &str) -> bool {
    let core = server_version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    if !(2..=3).contains(&parts.len()) {
        return false;
    }
    let mut nums = [0u32; 3];
    for (n, p) in nums.iter_mut().zip(&parts) {
        match p.parse::<u32>() {
            Ok(v) if p.bytes().all(|b| b.is_ascii_digit()) => *n = v,
            _ => return false,
        }
    }
    (nums[0], nums[1]) >= (8, 3)
}

// ---- header documents ----

struct CollectionMetadata {
    db: String,
    collection: String,
    kind: String,
    metadata_json_ok: bool,
}

struct NamespaceHeader {
    db: String,
    collection: String,
    eof: bool,
    crc: u64,
}

fn once(seen: &mut bool, key: &str) -> std::result::Result<(), String> {
    if std::mem::replace(seen, true) {
        return Err(format!("field {key:?} appears twice"));
    }
    Ok(())
}

fn string_field(v: Field<'_>, key: &str) -> std::result::Result<String, String> {
    match v {
        Field::Str(s) => Ok(String::from_utf8_lossy(s).into_owned()),
        other => Err(format!("field {key:?} is {}, expected a string", other.type_name())),
    }
}

/// A database or collection name: a string that must be UTF-8.
fn name_field(v: Field<'_>, key: &str) -> std::result::Result<String, String> {
    match v {
        Field::Str(s) => match std::str::from_utf8(s) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(format!("field {key:?} is not valid UTF-8")),
        },
        other => Err(format!("field {key:?} is {}, expected a string", other.type_name())),
    }
}

/// The archive header. Unknown fields are ignored and missing ones left empty, as mongorestore does.
fn parse_archive_header(doc: &[u8]) -> std::result::Result<ArchiveHeader, String> {
    let mut h = ArchiveHeader::default();
    let mut seen = [false; 4];
    for (key, v) in top_level_fields(doc)? {
        match key {
            b"concurrent_collections" => {
                once(&mut seen[0], "concurrent_collections")?;
                let bad_value = || format!("field \"concurrent_collections\" has a bad value ({})", v.type_name());
                h.concurrent_collections = match v {
                    Field::I32(n) => n,
                    Field::I64(n) => i32::try_from(n).map_err(|_| bad_value())?,
                    Field::Double(d) if d.fract() == 0.0 && d.abs() <= i32::MAX as f64 => d as i32,
                    _ => return Err(bad_value()),
                };
            }
            b"version" => {
                once(&mut seen[1], "version")?;
                h.version = string_field(v, "version")?;
            }
            b"server_version" => {
                once(&mut seen[2], "server_version")?;
                h.server_version = string_field(v, "server_version")?;
            }
            b"tool_version" => {
                once(&mut seen[3], "tool_version")?;
                h.tool_version = string_field(v, "tool_version")?;
            }
            _ => {}
        }
    }
    Ok(h)
}

/// A collection-metadata document of the prelude: `db`, `collection`, `metadata`, `size`,
/// `type` (since 100.4.0). Unknown fields are ignored; `size` is never meaningful.
fn parse_collection_metadata(doc: &[u8]) -> std::result::Result<CollectionMetadata, String> {
    let (mut db, mut collection, mut kind) = (None, None, String::new());
    let mut metadata_json_ok = true;
    let mut seen = [false; 5];
    for (key, v) in top_level_fields(doc)? {
        match key {
            b"db" => {
                once(&mut seen[0], "db")?;
                db = Some(name_field(v, "db")?);
            }
            b"collection" => {
                once(&mut seen[1], "collection")?;
                collection = Some(name_field(v, "collection")?);
            }
            b"metadata" => {
                once(&mut seen[2], "metadata")?;
                match v {
                    Field::Str(s) => metadata_json_ok = metadata_parses(s),
                    other => return Err(format!("field \"metadata\" is {}, expected a string", other.type_name())),
                }
            }
            b"size" => {
                once(&mut seen[3], "size")?;
                if !matches!(v, Field::I32(_) | Field::I64(_) | Field::Double(_)) {
                    return Err(format!("field \"size\" is {}, expected a number", v.type_name()));
                }
            }
            b"type" => {
                once(&mut seen[4], "type")?;
                kind = string_field(v, "type")?;
            }
            _ => {}
        }
    }
    let db = db.ok_or("field \"db\" is missing")?;
    let collection = collection.ok_or("field \"collection\" is missing")?;
    if collection.is_empty() {
        return Err("field \"collection\" is empty".into());
    }
    Ok(CollectionMetadata { db, collection, kind, metadata_json_ok })
}

/// Empty (no metadata) or a JSON object. Extended JSON is plain JSON syntactically.
fn metadata_parses(raw: &[u8]) -> bool {
    raw.is_empty()
        || std::str::from_utf8(raw)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .is_some_and(|v| v.is_object())
}

/// A body block header: exactly `db` (string), `collection` (non-empty string), `EOF` (bool)
/// and `CRC` (int64), in any order. Unknown or repeated keys are rejected, as mongorestore
/// 100.14.0 and later do.
fn parse_namespace_header(doc: &[u8]) -> std::result::Result<NamespaceHeader, String> {
    let (mut db, mut collection, mut eof, mut crc) = (None, None, None, None);
    for (key, v) in top_level_fields(doc)? {
        match key {
            b"db" => {
                if db.replace(name_field(v, "db")?).is_some() {
                    return Err("field \"db\" appears twice".into());
                }
            }
            b"collection" => {
                if collection.replace(name_field(v, "collection")?).is_some() {
                    return Err("field \"collection\" appears twice".into());
                }
            }
            b"EOF" => {
                let Field::Bool(b) = v else {
                    return Err(format!("field \"EOF\" is {}, expected a bool", v.type_name()));
                };
                if eof.replace(b).is_some() {
                    return Err("field \"EOF\" appears twice".into());
                }
            }
            b"CRC" => {
                let Field::I64(n) = v else {
                    return Err(format!("field \"CRC\" is {}, expected an int64", v.type_name()));
                };
                // Stored as the int64 bits of the unsigned CRC.
                if crc.replace(n as u64).is_some() {
                    return Err("field \"CRC\" appears twice".into());
                }
            }
            other => return Err(format!("unknown field {:?}", String::from_utf8_lossy(other))),
        }
    }
    let collection = collection.ok_or("field \"collection\" is missing")?;
    if collection.is_empty() {
        return Err("collection header is missing a Collection (field \"collection\" is empty)".into());
    }
    Ok(NamespaceHeader {
        db: db.ok_or("field \"db\" is missing")?,
        collection,
        eof: eof.ok_or("field \"EOF\" is missing")?,
        crc: crc.ok_or("field \"CRC\" is missing")?,
    })
}

// ---- minimal BSON reader (header documents only) ----

/// A top-level value: the types header documents use, and the type byte of anything else.
#[derive(Clone, Copy, Debug)]
enum Field<'a> {
    Double(f64),
    /// String bytes without the final NUL; not checked for UTF-8 here.
    Str(&'a [u8]),
    Bool(bool),
    I32(i32),
    I64(i64),
    Other(u8),
}

impl Field<'_> {
    fn type_name(&self) -> String {
        match self {
            Field::Double(_) => "a double".into(),
            Field::Str(_) => "a string".into(),
            Field::Bool(_) => "a bool".into(),
            Field::I32(_) => "an int32".into(),
            Field::I64(_) => "an int64".into(),
            Field::Other(t) => format!("of BSON type 0x{t:02x}"),
        }
    }
}

/// The top-level fields of `doc` in order, after checking the whole document (embedded
/// documents included) against the BSON size rules.
fn top_level_fields(doc: &[u8]) -> std::result::Result<Vec<(&[u8], Field<'_>)>, String> {
    let mut out = Vec::new();
    walk(doc, 0, &mut |k, v| out.push((k, v)))?;
    Ok(out)
}

fn le_i32(b: &[u8]) -> i32 {
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_8(b: &[u8]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Checks one document and calls `f` for each of its elements.
fn walk<'a>(doc: &'a [u8], depth: usize, f: &mut dyn FnMut(&'a [u8], Field<'a>)) -> std::result::Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("documents nested deeper than {MAX_DEPTH} levels"));
    }
    if doc.len() < MIN_DOC {
        return Err(format!("document of {} bytes is shorter than {MIN_DOC}", doc.len()));
    }
    let declared = le_i32(doc);
    if usize::try_from(declared).ok() != Some(doc.len()) {
        return Err(format!("document says it is {declared} bytes but has {}", doc.len()));
    }
    let end = doc.len() - 1;
    if doc[end] != 0 {
        return Err("document does not end with a NUL byte".into());
    }
    let mut p = 4;
    while p < end {
        let t = doc[p];
        p += 1;
        if t == 0 {
            return Err(format!("end-of-document marker at byte {} of a {}-byte document", p - 1, doc.len()));
        }
        let Some(k) = doc[p..end].iter().position(|&b| b == 0) else {
            return Err("element name runs past the end of the document".into());
        };
        let key = &doc[p..p + k];
        p += k + 1;
        let (v, size) =
            value(t, &doc[p..end], depth).map_err(|m| format!("element {:?}: {m}", String::from_utf8_lossy(key)))?;
        p += size;
        f(key, v);
    }
    Ok(())
}

/// Decodes or skips one value of type `t` at the start of `rest`; returns it and its size.
fn value(t: u8, rest: &[u8], depth: usize) -> std::result::Result<(Field<'_>, usize), String> {
    let need = |n: usize| {
        if rest.len() < n {
            Err(format!("value of BSON type 0x{t:02x} runs past the end of the document"))
        } else {
            Ok(())
        }
    };
    Ok(match t {
        0x01 => {
            need(8)?;
            (Field::Double(f64::from_le_bytes(le_8(rest))), 8)
        }
        0x02 => {
            let (s, size) = string(rest)?;
            (Field::Str(s), size)
        }
        // JavaScript code, symbol.
        0x0D | 0x0E => (Field::Other(t), string(rest)?.1),
        // Embedded document, array.
        0x03 | 0x04 => {
            need(4)?;
            let l = usize::try_from(le_i32(rest)).map_err(|_| "negative embedded document length")?;
            if !(MIN_DOC..=rest.len()).contains(&l) {
                return Err(format!("embedded document length {l} is out of range"));
            }
            walk(&rest[..l], depth + 1, &mut |_, _| {})?;
            (Field::Other(t), l)
        }
        // Binary: length, subtype, bytes.
        0x05 => {
            need(5)?;
            let n = usize::try_from(le_i32(rest)).map_err(|_| "negative binary length")?;
            let size = n.checked_add(5).ok_or("binary length out of range")?;
            need(size)?;
            (Field::Other(t), size)
        }
        // Undefined, null, max key, min key.
        0x06 | 0x0A | 0x7F | 0xFF => (Field::Other(t), 0),
        0x07 => {
            need(12)?;
            (Field::Other(t), 12)
        }
        0x08 => {
            need(1)?;
            match rest[0] {
                0 => (Field::Bool(false), 1),
                1 => (Field::Bool(true), 1),
                b => return Err(format!("bool value is {b}, not 0 or 1")),
            }
        }
        // Datetime, timestamp.
        0x09 | 0x11 => {
            need(8)?;
            (Field::Other(t), 8)
        }
        // Regular expression: pattern and options, both C strings.
        0x0B => {
            let a = rest.iter().position(|&b| b == 0).ok_or("unterminated regex pattern")?;
            let b = rest[a + 1..].iter().position(|&b| b == 0).ok_or("unterminated regex options")?;
            (Field::Other(t), a + 1 + b + 1)
        }
        // DBPointer: string and ObjectId.
        0x0C => {
            let size = string(rest)?.1 + 12;
            need(size)?;
            (Field::Other(t), size)
        }
        // Code with scope: total length, string, document.
        0x0F => {
            need(4)?;
            let total = usize::try_from(le_i32(rest)).map_err(|_| "negative code-with-scope length")?;
            if !(4 + 5 + MIN_DOC..=rest.len()).contains(&total) {
                return Err(format!("code-with-scope length {total} is out of range"));
            }
            let inner = &rest[4..total];
            let (_, s) = string(inner)?;
            walk(&inner[s..], depth + 1, &mut |_, _| {})?;
            (Field::Other(t), total)
        }
        0x10 => {
            need(4)?;
            (Field::I32(le_i32(rest)), 4)
        }
        0x12 => {
            need(8)?;
            (Field::I64(i64::from_le_bytes(le_8(rest))), 8)
        }
        0x13 => {
            need(16)?;
            (Field::Other(t), 16)
        }
        _ => return Err(format!("unknown BSON element type 0x{t:02x}")),
    })
}

/// A BSON string (int32 length including the NUL, bytes, NUL): its bytes and total size.
fn string(rest: &[u8]) -> std::result::Result<(&[u8], usize), String> {
    if rest.len() < 4 {
        return Err("string length runs past the end of the document".into());
    }
    let l = usize::try_from(le_i32(rest)).map_err(|_| "negative string length")?;
    if !(1..=rest.len() - 4).contains(&l) {
        return Err(format!("string length {l} is out of range"));
    }
    if rest[4 + l - 1] != 0 {
        return Err("string does not end with a NUL byte".into());
    }
    Ok((&rest[4..4 + l - 1], 4 + l))
}
