//! Streams one day of the series as a mongodump archive (format: shared docs
//! `mongodump-archive.md`, sections 1-5).
//!
//! Layout: MAGIC, prelude (header document, one collection-metadata document per
//! collection, TERM), then the body as mongodump's multiplexer writes it: segments of at
//! most `segment_bytes` of documents, at most `concurrent` collections open at once and
//! taking turns, a new segment header only when the namespace changes, and per collection
//! (when its documents are exhausted) TERM, EOF header with the CRC-64/XZ of all its data
//! document bytes, TERM. Documents are encoded one at a time into a reused buffer and
//! written straight through: memory does not grow with the size of the archive.

use std::collections::VecDeque;
use std::io::{self, Write};

use crate::bson::Encoder;
use crate::crc64::Crc64;
use crate::doc::DocGen;
use crate::rng::key;
use crate::series::{DayChanges, Series, DELETED};

pub const MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];
pub const TERM: [u8; 4] = [0xff; 4];
pub const DB: &str = "appdb";
const STREAM_UUID: u64 = 0x0041D;

/// How the body is cut into segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Upper bound on the data bytes of one segment turn (a single larger document still goes in).
    pub segment_bytes: usize,
    /// `concurrent_collections` of the header, and how many collections take turns at once.
    pub concurrent: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Layout { segment_bytes: 4 << 20, concurrent: 4 }
    }
}

/// Per-namespace result, for checking a reader against the generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsSummary {
    pub ns: String,
    pub docs: u64,
    /// Sum of the data document lengths.
    pub data_bytes: u64,
    pub crc: u64,
    /// Segments written for this namespace.
    pub segments: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub day: u32,
    /// Archive bytes (before any gzip).
    pub bytes: u64,
    pub collections: Vec<NsSummary>,
    /// Changes from the previous day.
    pub changes: DayChanges,
}

pub fn collection_name(c: usize) -> String {
    format!("coll{c}")
}

/// Counts what goes through.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.bytes += data.len() as u64;
        self.inner.write_all(data)
    }
}

/// Writes the archive of `series`' current day to `out` (which should be buffered).
pub fn write_archive<W: Write>(series: &Series, layout: &Layout, out: W) -> io::Result<Summary> {
    let mut w = Counting { inner: out, bytes: 0 };
    let mut buf = Vec::with_capacity(64 << 10);
    let ncoll = series.collections.len();
    let seed = series.evolution.seed;

    w.put(&MAGIC)?;
    header_doc(&mut buf, layout.concurrent.max(1));
    w.put(&buf)?;
    for c in 0..ncoll {
        collection_metadata_doc(&mut buf, seed, c);
        w.put(&buf)?;
    }
    w.put(&TERM)?;

    struct Cursor {
        next: usize,
        crc: Crc64,
        docs: u64,
        data_bytes: u64,
        segments: u64,
    }
    let mut cursors: Vec<Cursor> =
        (0..ncoll).map(|_| Cursor { next: 0, crc: Crc64::new(), docs: 0, data_bytes: 0, segments: 0 }).collect();
    let gens: Vec<DocGen> = (0..ncoll).map(|c| DocGen::new(seed, c as u32)).collect();

    let window = layout.concurrent.max(1).min(ncoll);
    let mut active: VecDeque<usize> = (0..window).collect();
    let mut waiting: VecDeque<usize> = (window..ncoll).collect();
    let mut open: Option<usize> = None;
    let mut doc = Vec::with_capacity(4096);

    while let Some(c) = active.pop_front() {
        if open != Some(c) {
            if open.is_some() {
                w.put(&TERM)?;
            }
            ns_header_doc(&mut buf, &collection_name(c), false, 0);
            w.put(&buf)?;
            open = Some(c);
            cursors[c].segments += 1;
        }
        let versions = &series.collections[c].versions;
        let cur = &mut cursors[c];
        let mut turn_bytes = 0usize;
        let mut exhausted = true;
        while cur.next < versions.len() {
            let v = versions[cur.next];
            if v & DELETED != 0 {
                cur.next += 1;
                continue;
            }
            gens[c].encode(cur.next as u64, v, &mut doc);
            if turn_bytes > 0 && turn_bytes + doc.len() > layout.segment_bytes {
                // The producer's buffer is full: hand over and let the next collection run.
                // This document is regenerated on the next turn.
                exhausted = false;
                break;
            }
            turn_bytes += doc.len();
            cur.crc.update(&doc);
            cur.docs += 1;
            cur.data_bytes += doc.len() as u64;
            w.put(&doc)?;
            cur.next += 1;
        }
        if exhausted {
            w.put(&TERM)?;
            ns_header_doc(&mut buf, &collection_name(c), true, cur.crc.finish());
            w.put(&buf)?;
            w.put(&TERM)?;
            open = None;
            if let Some(n) = waiting.pop_front() {
                active.push_back(n);
            }
        } else {
            active.push_back(c);
        }
    }
    w.inner.flush()?;

    let collections = cursors
        .iter()
        .enumerate()
        .map(|(c, cur)| NsSummary {
            ns: format!("{DB}.{}", collection_name(c)),
            docs: cur.docs,
            data_bytes: cur.data_bytes,
            crc: cur.crc.finish(),
            segments: cur.segments,
        })
        .collect();
    Ok(Summary { day: series.day, bytes: w.bytes, collections, changes: series.last_changes })
}

fn header_doc(buf: &mut Vec<u8>, concurrent: usize) {
    buf.clear();
    let mut e = Encoder::new(buf);
    let d = e.begin_doc();
    e.int32("concurrent_collections", concurrent as i32);
    e.string("version", "0.1");
    e.string("server_version", "7.0.0");
    e.string("tool_version", "100.9.0");
    e.end_doc(d);
}

/// The collection's metadata in canonical Extended JSON v2, as mongodump 100.x writes it.
pub fn metadata_json(seed: u64, c: usize) -> String {
    let uuid =
        format!("{:016x}{:016x}", key(&[seed, STREAM_UUID, c as u64, 0]), key(&[seed, STREAM_UUID, c as u64, 1]));
    format!(
        concat!(
            r#"{{"indexes":[{{"v":{{"$numberInt":"2"}},"key":{{"_id":{{"$numberInt":"1"}}}},"name":"_id_"}}],"#,
            r#""uuid":"{}","collectionName":"{}","type":"collection"}}"#
        ),
        uuid,
        collection_name(c)
    )
}

fn collection_metadata_doc(buf: &mut Vec<u8>, seed: u64, c: usize) {
    buf.clear();
    let mut e = Encoder::new(buf);
    let d = e.begin_doc();
    e.string("db", DB);
    e.string("collection", &collection_name(c));
    e.string("metadata", &metadata_json(seed, c));
    e.int32("size", 0);
    e.string("type", "collection");
    e.end_doc(d);
}

fn ns_header_doc(buf: &mut Vec<u8>, collection: &str, eof: bool, crc: u64) {
    buf.clear();
    let mut e = Encoder::new(buf);
    let d = e.begin_doc();
    e.string("db", DB);
    e.string("collection", collection);
    e.bool("EOF", eof);
    e.int64("CRC", crc as i64);
    e.end_doc(d);
}
