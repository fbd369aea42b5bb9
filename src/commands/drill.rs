//! `drill`: prove that a snapshot restores. Every file is read back through the engine (every
//! byte authenticated) and recognised by its content (never its name, see
//! [`crate::verify::sniff`]), then checked by the module that owns its format:
//!
//! - mongodump archives, plain or gzip ([`crate::mongo`]): framing, per-collection CRC-64,
//!   document counts; with a MongoDB [`Restorer`] also restored into a scratch database while
//!   they are read, and each collection's count compared;
//! - pg_dump custom archives and plain SQL dumps ([`crate::pgdump`]): table of contents, every
//!   data block, rows per table, large objects; with a [`PgRestorer`] also streamed into
//!   `pg_restore` or `psql` (no plaintext copy on disk) restoring into a scratch database, and
//!   each table's row count compared;
//! - zip archives ([`crate::verify::zip`]): CRC-32 and sizes of every member, the central
//!   directory against the local headers, JSON-lines members parsed and counted per model;
//! - tar archives ([`crate::verify::tar`]): header checksums, sizes, the end-of-archive blocks;
//! - other gzip streams: CRC-32 and length.
//!
//! A file of a known kind that cannot be checked (an encrypted zip, lz4-compressed pg_dump
//! data) is reported as not verifiable and fails the drill; a file of no known kind is
//! reported as read back only, never as verified. The report carries RTO (measured time to a
//! verified restore, by phase) and RPO (age of the snapshot's newest write), and is appended to
//! the vault's drill log, an encrypted object per drill, so that the evidence travels with
//! every copy of the vault.
//!
//! A drill only reads the vault; writing its log entry adds one fresh object under a random
//! name, which cannot disturb a writer, so it takes no lock.

mod report;

pub use report::{
    CollectionResult, Counts, Detail, DrillReport, FileReport, Outcome, PgRestoreInfo, RestoreInfo, TableResult,
};

use crate::error::Result;
use crate::format::log::Record;
use crate::format::tree::{FileState, NodeKind};
use crate::mongo;
use crate::mongo::restore::{Placement, Restorer};
use crate::pgdump::restore::{DumpRestore, Load, PgRestorer};
use crate::pgdump::{self, DumpFormat, DumpReport};
use crate::progress::{Progress, Silent};
use crate::rebuild::GzContent;
use crate::repo::trees::show;
use crate::repo::{ChunkReader, FileReader, Vault};
use crate::verify::{self, Kind, ReadAt};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

/// The scratch-database restorers a drill may use.
#[derive(Default)]
pub struct Restorers<'a> {
    pub mongo: Option<&'a mut Restorer>,
    pub pg: Option<&'a mut PgRestorer>,
}

/// Sequential reading of a file through its reader, timing the fetch+decrypt part.
struct TimedReader<'a, 'v> {
    r: &'a FileReader<'v>,
    /// A gzip file stored expanded: its decompressed content, read as stored (see
    /// [`FileReader::gzip_content`]); `off` and `bytes` then count the file's bytes that the
    /// content read so far stands for.
    content: Option<GzContent<'a, ChunkReader<'v>>>,
    off: u64,
    busy: Duration,
    bytes: u64,
    progress: &'a dyn Progress,
    /// Wakes the thread that reads ahead of this reader while its bytes are checked.
    kick: Option<crate::repo::reader::Kick>,
}

impl Read for TimedReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let t = Instant::now();
        if let Some(c) = &mut self.content {
            let n = c.read(buf)?;
            self.busy += t.elapsed();
            if let Some(k) = &self.kick {
                k.kick();
            }
            let done = if n == 0 { self.r.size() } else { c.original_done() };
            let d = done.saturating_sub(self.off);
            self.off += d;
            self.bytes += d;
            self.progress.advance(d);
            return Ok(n);
        }
        let b = self.r.read_at(self.off, buf.len().min(1 << 20)).map_err(std::io::Error::other)?;
        self.busy += t.elapsed();
        buf[..b.len()].copy_from_slice(&b);
        self.off += b.len() as u64;
        self.bytes += b.len() as u64;
        self.progress.advance(b.len() as u64);
        if let Some(k) = &self.kick {
            k.kick();
        }
        Ok(b.len())
    }
}

/// Random access to a file for the zip checker, timed like [`TimedReader`].
struct TimedAt<'a, 'v> {
    r: &'a FileReader<'v>,
    busy: Cell<Duration>,
    bytes: Cell<u64>,
}

impl ReadAt for TimedAt<'_, '_> {
    fn size(&self) -> u64 {
        self.r.size()
    }
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let t = Instant::now();
        let b = self.r.read_at(off, len)?;
        self.busy.set(self.busy.get() + t.elapsed());
        self.bytes.set(self.bytes.get() + b.len() as u64);
        Ok(b)
    }
}

/// Hands every byte read to a restore tool as well (a custom archive goes to `pg_restore`
/// exactly as it is stored).
struct Tee<'l, R> {
    inner: R,
    load: &'l mut Load,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.load.write(&buf[..n]);
        Ok(n)
    }
}

/// Reads and verifies snapshot `spec` (a period, `latest` or `current`).
pub fn drill(v: &Vault, spec: &str) -> Result<DrillReport> {
    drill_all(v, spec, None, Restorers::default(), &Silent)
}

/// [`drill`], restoring every mongodump archive through `restore` when given. The restorer
/// is left open: the caller closes it (dropping the scratch database unless kept).
pub fn drill_with(v: &Vault, spec: &str, restore: Option<&mut Restorer>) -> Result<DrillReport> {
    drill_all(v, spec, None, Restorers { mongo: restore, pg: None }, &Silent)
}

/// Whether `file` is `only` or below it.
fn selected(file: &str, only: Option<&str>) -> bool {
    match only.map(|o| o.trim_matches('/')) {
        None | Some("") => true,
        Some(o) => file == o || file.strip_prefix(o).is_some_and(|rest| rest.starts_with('/')),
    }
}

/// The start of a gzip stream's content (as much of [`verify::SNIFF_BYTES`] as decompresses).
fn gunzip_head(reader: &FileReader<'_>) -> Vec<u8> {
    let Ok(raw) = reader.read_at(0, 64 << 10) else { return Vec::new() };
    let mut d = flate2::read::MultiGzDecoder::new(&raw[..]);
    let mut out = vec![0u8; verify::SNIFF_BYTES];
    let mut got = 0;
    while got < out.len() {
        match d.read(&mut out[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    out.truncate(got);
    out
}

/// What reading one file produced, before it is folded into the report.
struct Checked {
    kind: Kind,
    wrapper: Option<&'static str>,
    detail: Detail,
    /// Damage found (messages without the file label).
    errors: Vec<String>,
    not_verifiable: Option<String>,
    /// mongodump: the archive's namespaces, for the collection list.
    mongo: Option<mongo::ArchiveReport>,
    placements: BTreeMap<String, Placement>,
    /// PostgreSQL restore of this dump.
    pg: Option<DumpRestore>,
    /// A gzip file read as its stored decompressed content.
    from_content: bool,
}

impl Checked {
    fn new(kind: Kind) -> Self {
        Checked {
            kind,
            wrapper: None,
            detail: Detail::None,
            errors: Vec::new(),
            not_verifiable: None,
            mongo: None,
            placements: BTreeMap::new(),
            pg: None,
            from_content: false,
        }
    }
}

/// [`drill`] of the files at or below `only` (a path in the snapshot; all when `None`), with
/// every restorer given. Restorers are left open: the caller closes them (dropping the scratch
/// databases unless kept). Each file and the bytes read sequentially go to `progress`.
pub fn drill_all(
    v: &Vault,
    spec: &str,
    only: Option<&str>,
    rs: Restorers<'_>,
    progress: &dyn Progress,
) -> Result<DrillReport> {
    drill_files(v, spec, only, rs, progress, false)
}

/// [`drill_all`]; with `original`, gzip files stored expanded are read as their original
/// bytes (recreated, then inflated, as `mongorestore --gzip` reading the mount gets them)
/// instead of their stored content.
pub fn drill_files(
    v: &Vault,
    spec: &str,
    only: Option<&str>,
    mut rs: Restorers<'_>,
    progress: &dyn Progress,
    original: bool,
) -> Result<DrillReport> {
    let start = Instant::now();
    let info = v.resolve(spec)?;
    let mut rep = DrillReport {
        snapshot: info.snap.period.clone(),
        repo: v.store().describe(),
        started_unix: crate::repo::now_unix(),
        ..Default::default()
    };
    rep.rpo_seconds = (crate::repo::now_unix_ns() - info.snap.updated_unix_ns).max(0) as f64 / 1e9;
    let mut files = Vec::new();
    v.walk(info.snap.root, &mut |path, node| {
        if let NodeKind::File { state, .. } = &node.kind {
            let p = show(path);
            if selected(&p, only) {
                files.push((p, node.clone(), *state));
            }
        }
        Ok(())
    })?;
    if let (Some(o), true) = (only, files.is_empty()) {
        return Err(crate::error::Error::not_found(format!("no file {o:?} in snapshot {}", rep.snapshot)));
    }
    rep.path = only.map(String::from);
    let (mut fetch, mut total_read) = (Duration::ZERO, Duration::ZERO);
    progress.phase("drill", Some(files.iter().map(|(_, n, _)| n.size).sum()));
    for (path, node, state) in files {
        rep.files += 1;
        let label = format!("{}/{path}", rep.snapshot);
        progress.item(&label);
        let mut marked = None;
        match state {
            FileState::Complete => {}
            FileState::Incomplete => marked = Some("marked incomplete (its writer never finished)"),
            FileState::Failed => marked = Some("marked failed by its backup job"),
        }
        if let Some(m) = marked {
            rep.errors.push(format!("{label}: {m}"));
        }
        let reader = v.file_reader(&node)?;
        let t = Instant::now();
        let mongo_wait_before = rs.mongo.as_ref().map(|r| r.insert_wait()).unwrap_or_default();
        // A gzip file stored expanded is read as its stored content: the same bytes an inflater
        // would give, without recreating and inflating the deflate stream.
        let content = reader.gzip_content().filter(|_| !original);
        // Its first bytes, for recognising what it holds, read from a second view of it (they
        // may span members); the first block of content is read twice, nothing is recreated.
        let content_head = content.as_ref().and_then(|_| {
            let mut head = Vec::new();
            let mut c = reader.gzip_content()?;
            (&mut c).take(verify::SNIFF_BYTES as u64).read_to_end(&mut head).ok()?;
            Some(head)
        });
        let from_content = content.is_some();
        let mut tr = TimedReader { r: &reader, content, off: 0, busy: Duration::ZERO, bytes: 0, progress, kick: None };
        let mut pg_wait = Duration::ZERO;
        let head = match from_content {
            true => Ok(verify::GZIP_MAGIC.to_vec()),
            false => reader.read_at(0, verify::SNIFF_BYTES),
        };
        let checked = match head {
            Err(e) => {
                let mut c = Checked::new(Kind::Unknown);
                c.errors.push(e.to_string());
                c
            }
            Ok(head) => {
                let mut kind = verify::sniff(&head);
                let mut wrapper = None;
                if kind == Kind::Gzip {
                    let inner = match content_head {
                        Some(h) => h,
                        None => gunzip_head(&reader),
                    };
                    match verify::sniff(&inner) {
                        Kind::Mongodump => kind = Kind::Mongodump,
                        Kind::PgCustom => (kind, wrapper) = (Kind::PgCustom, Some("gzip")),
                        Kind::PgPlain => (kind, wrapper) = (Kind::PgPlain, Some("gzip")),
                        Kind::Tar => (kind, wrapper) = (Kind::Tar, Some("gzip")),
                        _ => {}
                    }
                }
                // A second thread fetches and verifies the next bytes while these are checked.
                let mut c = reader.with_read_ahead(|kick| {
                    tr.kick = Some(kick);
                    let c = check_file(kind, wrapper, &reader, &mut tr, &mut rs, &label, &mut pg_wait);
                    tr.kick = None;
                    c
                });
                c.wrapper = wrapper;
                c.from_content = from_content;
                if let (true, Some(a)) = (from_content, c.mongo.as_mut()) {
                    a.compressed = true;
                }
                c
            }
        };
        // Time blocked on a server while reading this file belongs to the insert phase.
        let mongo_waited =
            rs.mongo.as_ref().map(|r| r.insert_wait()).unwrap_or_default().saturating_sub(mongo_wait_before);
        total_read += t.elapsed().saturating_sub(mongo_waited + pg_wait);
        fetch += tr.busy;
        rep.bytes_read += tr.bytes;
        // What the sequential pass did not read (random access, a file that failed early).
        progress.advance(node.size.saturating_sub(tr.bytes));
        fold(&mut rep, &path, &label, node.size, marked.is_some(), checked);
    }
    rep.fetch_decrypt_seconds = fetch.as_secs_f64();
    rep.parse_seconds = (total_read - fetch.min(total_read)).as_secs_f64();
    if let Some(r) = rs.mongo {
        let sum = r.finish();
        rep.insert_seconds += sum.insert_wait.as_secs_f64();
        rep.verify_seconds += sum.verify.as_secs_f64();
        for c in &mut rep.collections {
            let Some(t) = &c.restored_to else { continue };
            c.restored = sum.counts.get(t).copied().flatten();
            if c.restored != Some(c.docs) {
                rep.errors.push(format!(
                    "{}/{}: {}: the archive has {} documents, {}.{t} has {}",
                    rep.snapshot,
                    c.file,
                    c.ns,
                    c.docs,
                    r.database(),
                    c.restored.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
                ));
            }
        }
        rep.errors.extend(r.errors().iter().cloned());
        rep.restore = Some(RestoreInfo {
            server: r.server().to_string(),
            database: r.database().to_string(),
            documents: sum.inserted,
            kept: r.keeps(),
        });
    }
    if let Some(r) = rs.pg {
        rep.insert_seconds += r.insert_wait().as_secs_f64();
        rep.verify_seconds += r.verify_time().as_secs_f64();
        let los = rep
            .contents
            .iter()
            .filter(|f| f.kind == Kind::PgCustom || f.kind == Kind::PgPlain)
            .filter_map(|f| match &f.detail {
                Detail::Pg(p) => Some(p.large_objects),
                _ => None,
            })
            .sum();
        rep.pg_restore = Some(PgRestoreInfo {
            server: r.server().to_string(),
            databases: r.databases().to_vec(),
            rows: r.rows(),
            large_objects: los,
            kept: r.keeps(),
        });
    }
    rep.rto_seconds = start.elapsed().as_secs_f64();
    rep.ok = matches!(rep.result(), "ok" | "read_back_only");
    Ok(rep)
}

/// Reads one file whose kind is known, with the checker of its kind.
fn check_file(
    kind: Kind,
    wrapper: Option<&'static str>,
    reader: &FileReader<'_>,
    tr: &mut TimedReader<'_, '_>,
    rs: &mut Restorers<'_>,
    label: &str,
    pg_wait: &mut Duration,
) -> Checked {
    let mut c = Checked::new(kind);
    // The bytes `tr` gives are still gzip (not read as stored content).
    let inflate = wrapper.filter(|_| tr.content.is_none());
    match kind {
        Kind::Mongodump => {
            let placements = RefCell::new(BTreeMap::<String, Placement>::new());
            let sink = RefCell::new(rs.mongo.as_deref_mut());
            let r = mongo::verify_with(
                &mut *tr,
                &mut |prelude| {
                    if let Some(r) = sink.borrow_mut().as_deref_mut() {
                        *placements.borrow_mut() = r.begin_archive(label, prelude);
                    }
                    Ok(())
                },
                &mut |ns, doc| match sink.borrow_mut().as_deref_mut() {
                    Some(r) => r.on_doc(ns, doc),
                    None => Ok(()),
                },
            );
            if let Some(r) = sink.borrow_mut().as_deref_mut() {
                r.flush_all();
            }
            c.placements = placements.into_inner();
            match r {
                Ok(a) => {
                    c.detail = Detail::Mongo {
                        namespaces: a.namespaces.len() as u64,
                        documents: a.namespaces.iter().map(|n| n.docs).sum(),
                    };
                    c.mongo = Some(a);
                }
                Err(e) => {
                    c.errors.push(e.to_string());
                    if c.placements.values().any(|p| p.target.is_some()) {
                        c.errors.push("the restore of this archive is incomplete".into());
                    }
                }
            }
        }
        Kind::PgCustom | Kind::PgPlain => {
            let format = if kind == Kind::PgCustom { DumpFormat::Custom } else { DumpFormat::Plain };
            // A directory-format toc.dat restores only with its directory: checked, not restored.
            let restorable = !(format == DumpFormat::Custom
                && wrapper.is_none()
                && reader.read_at(0, 16).ok().and_then(|h| pgdump::custom::is_directory_toc(&h)) == Some(true));
            let t_begin = Instant::now();
            let mut load = match rs.pg.as_deref_mut().filter(|_| restorable).map(|r| r.begin(format)) {
                Some(Ok(l)) => Some(l),
                Some(Err(e)) => {
                    c.errors.push(format!("restore: {e}"));
                    None
                }
                None => None,
            };
            // Creating the scratch database is server time (insert), like feeding the tool.
            *pg_wait += t_begin.elapsed();
            let result = match (inflate, load.as_mut()) {
                (None, l) => run_pg(format, &mut *tr, l),
                (Some(_), l) => run_pg(format, flate2::read::MultiGzDecoder::new(&mut *tr), l),
            };
            *pg_wait += load.as_ref().map(|l| l.waited()).unwrap_or_default();
            let report = match result {
                Ok(p) => {
                    c.errors.extend(p.damage.iter().cloned());
                    c.not_verifiable = p.not_verifiable.clone();
                    p
                }
                Err(e) => {
                    c.errors.push(e.to_string());
                    let mut p = DumpReport::empty(format);
                    p.damage.push(e.to_string());
                    p
                }
            };
            if let (Some(l), Some(r)) = (load, rs.pg.as_deref_mut()) {
                let abort = report
                    .restore_blocker
                    .clone()
                    .or_else(|| (!c.errors.is_empty()).then(|| "the dump is damaged".to_string()));
                let t_end = Instant::now();
                c.pg = Some(r.end(l, &report, abort.as_deref()));
                *pg_wait += t_end.elapsed();
            }
            c.detail = Detail::Pg(Box::new(report));
        }
        Kind::Zip if wrapper.is_none() => {
            let at = TimedAt { r: reader, busy: Cell::new(Duration::ZERO), bytes: Cell::new(0) };
            match verify::zip::verify(&at) {
                Ok(z) => {
                    c.errors.extend(z.damage.iter().cloned());
                    c.not_verifiable = z.not_verifiable.clone();
                    c.detail = Detail::Zip(Box::new(z));
                }
                Err(e) => {
                    c.errors.push(e.to_string());
                    // Still read every byte, so that storage damage is reported as well.
                    if let Err(e) = std::io::copy(&mut *tr, &mut std::io::sink()) {
                        c.errors.push(e.to_string());
                    }
                }
            }
            tr.busy += at.busy.get();
            tr.bytes += at.bytes.get();
            // The checker read every byte the zip's records account for; bytes they do not
            // account for are reported as damage.
            tr.off = tr.off.max(reader.size());
        }
        Kind::Tar => {
            let r = match inflate {
                None => verify::tar::verify(&mut *tr),
                Some(_) => verify::tar::verify(flate2::read::MultiGzDecoder::new(&mut *tr)),
            };
            match r {
                Ok(t) => c.detail = Detail::Tar(t),
                Err(e) => c.errors.push(e.to_string()),
            }
        }
        Kind::Gzip | Kind::Zip if tr.content.is_some() => {
            c.kind = Kind::Gzip;
            // Every member's CRC-32 is checked as its content is read.
            match std::io::copy(&mut *tr, &mut std::io::sink()) {
                Ok(n) => c.detail = Detail::Gzip { bytes: n },
                Err(e) => c.errors.push(e.to_string()),
            }
        }
        Kind::Gzip | Kind::Zip => {
            c.kind = Kind::Gzip;
            match verify::check_gzip(&mut *tr) {
                Ok(n) => c.detail = Detail::Gzip { bytes: n },
                Err(e) => c.errors.push(e.to_string()),
            }
        }
        Kind::Unknown => {
            if let Err(e) = std::io::copy(&mut *tr, &mut std::io::sink()) {
                c.errors.push(e.to_string());
            }
        }
    }
    // Every byte of the file is read, whatever the checker stopped at.
    if let Err(e) = std::io::copy(&mut *tr, &mut std::io::sink()) {
        c.errors.push(e.to_string());
    }
    c
}

/// Verifies a dump read from `r`, feeding it to a restore tool when `load` is given: a custom
/// archive byte for byte as it is read, a plain dump as the verifier passes its SQL on.
fn run_pg<R: Read>(format: DumpFormat, r: R, load: Option<&mut Load>) -> Result<DumpReport> {
    match (format, load) {
        (DumpFormat::Custom, None) => pgdump::custom::verify(r),
        (DumpFormat::Custom, Some(l)) => {
            let mut tee = Tee { inner: r, load: l };
            let rep = pgdump::custom::verify(&mut tee);
            // pg_restore gets the whole file, whatever the verifier stopped at.
            let _ = std::io::copy(&mut tee, &mut std::io::sink());
            rep
        }
        (DumpFormat::Plain, None) => pgdump::plain::verify(r, &mut |_| Ok(())),
        (DumpFormat::Plain, Some(l)) => pgdump::plain::verify(r, &mut |sql| {
            l.write(sql);
            Ok(())
        }),
    }
}

/// Adds what one file produced to the report.
fn fold(rep: &mut DrillReport, path: &str, label: &str, size: u64, marked: bool, c: Checked) {
    if c.kind == Kind::Mongodump {
        rep.archives += 1;
    }
    let mut failed = marked || !c.errors.is_empty();
    for e in &c.errors {
        rep.errors.push(format!("{label}: {e}"));
    }
    if let Some(a) = &c.mongo {
        for n in &a.namespaces {
            if !n.crc_ok {
                rep.errors.push(format!("{label}: {}: CRC mismatch", n.ns));
                failed = true;
            }
            if !n.metadata_json_ok {
                rep.errors.push(format!("{label}: {}: collection metadata is not valid JSON", n.ns));
                failed = true;
            }
            // The prelude names a time-series collection by its logical name; its data (and
            // the report) use the bucket namespace.
            let p =
                c.placements.get(&n.ns).or_else(|| c.placements.get(&format!("{}.{}", n.db, n.collection))).cloned();
            rep.collections.push(CollectionResult {
                file: path.to_string(),
                ns: n.ns.clone(),
                docs: n.docs,
                crc_ok: n.crc_ok,
                restored_to: p.as_ref().and_then(|p| p.target.clone()),
                restored: None,
                note: p.and_then(|p| p.note),
            });
        }
    }
    if let Detail::Pg(p) = &c.detail {
        let restored: BTreeMap<(String, String), Option<u64>> =
            c.pg.as_ref()
                .map(|r| r.tables.iter().map(|t| ((t.schema.clone(), t.table.clone()), t.restored)).collect())
                .unwrap_or_default();
        for t in &p.tables {
            let restored_count = restored.get(&(t.schema.clone(), t.table.clone())).copied().flatten();
            let note = match (&t.error, t.rows) {
                (Some(e), _) => Some(e.clone()),
                (None, None) => Some("data as SQL statements (pg_dump --inserts): rows not counted".to_string()),
                _ => None,
            };
            if let (Some(r), Some(n)) = (&c.pg, t.rows) {
                if restored_count != Some(n) {
                    rep.errors.push(format!(
                        "{label}: table {}: the dump has {n} rows, {}.{} has {}",
                        t.name(),
                        r.database,
                        t.name(),
                        restored_count.map(|x| x.to_string()).unwrap_or_else(|| "no such table".into())
                    ));
                    failed = true;
                }
            }
            rep.tables.push(TableResult {
                file: path.to_string(),
                table: t.name(),
                rows: t.rows,
                restored_to: c.pg.as_ref().map(|r| r.database.clone()),
                restored: restored_count,
                note,
            });
        }
        if let Some(r) = &c.pg {
            if let Some(los) = r.large_objects {
                if los != p.large_objects && p.not_verifiable.is_none() {
                    rep.errors.push(format!(
                        "{label}: the dump has {} large objects, {} has {los}",
                        p.large_objects, r.database
                    ));
                    failed = true;
                }
            }
            for e in &r.errors {
                rep.errors.push(format!("{label}: restore: {e}"));
                failed = true;
            }
        }
    }
    let outcome = if failed {
        Outcome::Failed
    } else if let Some(why) = c.not_verifiable {
        Outcome::NotVerifiable(why)
    } else if c.kind == Kind::Unknown {
        Outcome::ReadBackOnly
    } else {
        Outcome::Verified
    };
    rep.contents.push(FileReport {
        file: path.to_string(),
        kind: c.kind,
        wrapper: c.wrapper,
        bytes: size,
        outcome,
        detail: c.detail,
        from_content: c.from_content,
    });
}

/// Appends a drill report to the vault's log.
pub fn log(v: &Vault, rep: &DrillReport) -> Result<()> {
    crate::repo::log::append(v, &Record::Drill(Box::new(rep.to_record()))).map(|_| ())
}
