//! Tests of the archive verifier: the real mongodump fixtures (tests/fixtures/mongo-archives,
//! Apache-2.0, from mongodb/mongo-tools), archives built here with interleaved segments, and
//! every way of cutting or damaging them.

use super::archive::{crc64, MAX_DOC, MAX_USER_DOC};
use super::*;
use crate::error::{Error, ErrorKind, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::HashMap;
use std::io::{Read, Write};

fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/mongo-archives/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn run(bytes: &[u8]) -> Result<ArchiveReport> {
    verify(bytes, &mut |_, _| Ok(()))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// (ns, docs, body bytes, crc) in prelude order.
fn summary(r: &ArchiveReport) -> Vec<(String, u64, u64, u64)> {
    r.namespaces.iter().map(|n| (n.ns.clone(), n.docs, n.body_bytes, n.crc)).collect()
}

fn assert_all_ok(r: &ArchiveReport) {
    for n in &r.namespaces {
        assert!(n.crc_ok, "{}: crc {:#x} expected {:?}", n.ns, n.crc, n.expected_crc);
        assert_eq!(n.expected_crc, Some(n.crc), "{}", n.ns);
        assert!(n.metadata_json_ok, "{}", n.ns);
    }
    assert!(r.ok());
}

fn s(ns: &str, docs: u64, bytes: u64, crc: u64) -> (String, u64, u64, u64) {
    (ns.to_string(), docs, bytes, crc)
}

// ---- a small archive writer ----

enum V<'a> {
    Str(&'a str),
    I32(i32),
    I64(i64),
    Bool(bool),
}

fn bson(fields: &[(&str, V<'_>)]) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    for (k, v) in fields {
        let t: u8 = match v {
            V::Str(_) => 0x02,
            V::I32(_) => 0x10,
            V::I64(_) => 0x12,
            V::Bool(_) => 0x08,
        };
        b.push(t);
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        match v {
            V::Str(s) => {
                b.extend_from_slice(&(s.len() as i32 + 1).to_le_bytes());
                b.extend_from_slice(s.as_bytes());
                b.push(0);
            }
            V::I32(n) => b.extend_from_slice(&n.to_le_bytes()),
            V::I64(n) => b.extend_from_slice(&n.to_le_bytes()),
            V::Bool(x) => b.push(*x as u8),
        }
    }
    b.push(0);
    let n = b.len() as i32;
    b[..4].copy_from_slice(&n.to_le_bytes());
    b
}

const TERM: [u8; 4] = [0xff; 4];

struct Builder {
    out: Vec<u8>,
    data: HashMap<String, Vec<u8>>,
}

impl Builder {
    /// Magic, header, one metadata document per `(db, collection, type)`, TERM.
    fn new(server_version: &str, prelude: &[(&str, &str, &str)]) -> Self {
        let mut out = super::archive::MAGIC.to_vec();
        out.extend(bson(&[
            ("concurrent_collections", V::I32(4)),
            ("version", V::Str("0.1")),
            ("server_version", V::Str(server_version)),
            ("tool_version", V::Str("100.18.0")),
        ]));
        for (db, coll, kind) in prelude {
            let meta =
                format!(r#"{{"indexes":[{{"v":2,"key":{{"_id":1}},"name":"_id_"}}],"collectionName":"{coll}"}}"#);
            out.extend(bson(&[
                ("db", V::Str(db)),
                ("collection", V::Str(coll)),
                ("metadata", V::Str(&meta)),
                ("size", V::I32(0)),
                ("type", V::Str(kind)),
            ]));
        }
        out.extend(TERM);
        Builder { out, data: HashMap::new() }
    }

    fn header(&mut self, db: &str, coll: &str, eof: bool, crc: u64) {
        self.out.extend(bson(&[
            ("db", V::Str(db)),
            ("collection", V::Str(coll)),
            ("EOF", V::Bool(eof)),
            ("CRC", V::I64(crc as i64)),
        ]));
    }

    fn segment(&mut self, db: &str, coll: &str, docs: &[Vec<u8>]) {
        self.header(db, coll, false, 0);
        let acc = self.data.entry(format!("{db}.{coll}")).or_default();
        for d in docs {
            self.out.extend_from_slice(d);
            acc.extend_from_slice(d);
        }
        self.out.extend(TERM);
    }

    fn eof(&mut self, db: &str, coll: &str) {
        let crc = crc64(self.data.get(&format!("{db}.{coll}")).map_or(&[][..], |v| v));
        self.header(db, coll, true, crc);
        self.out.extend(TERM);
    }

    fn collection(&mut self, db: &str, coll: &str, docs: &[Vec<u8>]) {
        self.segment(db, coll, docs);
        self.eof(db, coll);
    }
}

fn doc(i: i32) -> Vec<u8> {
    if i % 7 == 0 {
        bson(&[("_id", V::I32(i)), ("s", V::Str(&"x".repeat((i % 23) as usize)))])
    } else {
        bson(&[("_id", V::I32(i))])
    }
}

fn docs(from: i32, n: i32) -> Vec<Vec<u8>> {
    (from..from + n).map(doc).collect()
}

/// Two collections, 1200 and 900 documents, in segments alternating A B A B, then their
/// EOF blocks. Returns the archive and the documents of each namespace in order.
fn interleaved() -> (Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut b = Builder::new("7.0.4", &[("shop", "orders", "collection"), ("shop", "users", "collection")]);
    let (mut a_all, mut b_all) = (Vec::new(), Vec::new());
    let (mut ia, mut ib) = (0, 100_000);
    for round in 0..6 {
        let a = docs(ia, 200);
        ia += 200;
        b.segment("shop", "orders", &a);
        a_all.extend(a);
        let n = 100 + 20 * round;
        let bd = docs(ib, n);
        ib += n;
        b.segment("shop", "users", &bd);
        b_all.extend(bd);
    }
    b.eof("shop", "orders");
    b.eof("shop", "users");
    (b.out, a_all, b_all)
}

fn assert_corrupt(r: Result<ArchiveReport>, what: &str) -> Error {
    match r {
        Ok(rep) => panic!("{what}: expected an error, got {rep:?}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}");
            e
        }
    }
}

fn every_cut_fails(bytes: &[u8], what: &str) {
    for cut in 0..bytes.len() {
        if let Ok(r) = run(&bytes[..cut]) {
            panic!("{what} cut at {cut} of {} verified: {r:?}", bytes.len());
        }
    }
}

// ---- CRC ----

#[test]
fn crc_check_value() {
    assert_eq!(crc64(b"123456789"), 0x995dc9bbdf1939fa);
    assert_eq!(crc64(b""), 0);
    assert_eq!(crc64(b"hello world!"), 0x8483c0fa32607d61);
}

// ---- real fixtures ----

#[test]
fn test_bar_fixture() {
    let bytes = fixture("test.bar.archive");
    let mut seen = Vec::new();
    let r = verify(&bytes[..], &mut |ns, d| {
        seen.push((ns.to_string(), d.len()));
        Ok(())
    })
    .unwrap();
    assert!(!r.compressed);
    assert_eq!(r.bytes, 896);
    assert_eq!(
        r.header,
        ArchiveHeader {
            concurrent_collections: 4,
            version: "0.1".into(),
            server_version: "3.4.3".into(),
            tool_version: "r3.4.3".into()
        }
    );
    assert_eq!(
        summary(&r),
        vec![s("test.bar", 1, 35, 0x9369f0f35bec50d9), s("admin.system.version", 1, 59, 0xf685812fd02a263e)]
    );
    assert_all_ok(&r);
    assert_eq!(r.namespaces[0].kind, "");
    assert_eq!((r.namespaces[0].db.as_str(), r.namespaces[0].collection.as_str()), ("test", "bar"));
    assert_eq!(seen, vec![("admin.system.version".to_string(), 59), ("test.bar".to_string(), 35)]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

fn check_oplog_report(r: &ArchiveReport) {
    assert_eq!(r.bytes, 4506);
    assert_eq!(r.header.server_version, "4.0.2");
    assert_eq!(r.header.tool_version, "r4.1.3-4-gd9eefb54");
    assert_eq!(
        summary(r),
        vec![
            s("test.foo", 25, 725, 0x9cc6a0e47a6d6d82),
            s(".oplog", 18, 2760, 0x803bd1a62aaa916c),
            s("admin.system.version", 1, 59, 0x0cb0ef0ea1d16e0d),
        ]
    );
    let oplog = r.namespace(".oplog").unwrap();
    assert_eq!((oplog.db.as_str(), oplog.collection.as_str()), ("", "oplog"));
    assert_all_ok(r);
}

#[test]
fn dump_with_oplog_fixture() {
    let r = run(&fixture("dump-w-oplog.archive")).unwrap();
    assert!(!r.compressed);
    check_oplog_report(&r);
}

#[test]
fn bad_format_fixture_reports_bad_metadata() {
    let r = run(&fixture("bad-format.archive")).unwrap();
    assert_eq!(r.header.server_version, "4.0.14");
    assert_eq!(summary(&r), vec![s("test.ixtest", 0, 0, 0)]);
    let n = &r.namespaces[0];
    assert!(n.crc_ok);
    assert_eq!(n.expected_crc, Some(0));
    assert!(!n.metadata_json_ok);
    assert!(!r.ok());
}

#[test]
fn timeseries_fixtures_map_buckets_to_the_view() {
    for (file, crc) in [
        ("timeseries_tests-dump.archive", 0x401f4fd88569654f),
        ("timeseries_tests-dump.orig-97ebb79.archive", 0x050c2a9b4fda5c99),
    ] {
        let r = run(&fixture(file)).unwrap();
        assert_eq!(r.bytes, 39725);
        assert_eq!(
            r.header,
            ArchiveHeader {
                concurrent_collections: 4,
                version: "0.1".into(),
                server_version: "5.0.0-rc0".into(),
                tool_version: "100.3.1-9-g6903606e-dirty".into()
            }
        );
        assert_eq!(
            summary(&r),
            vec![
                s("admin.system.views", 0, 0, 0),
                s("timeseries_test.system.buckets.foo_ts", 10, 38020, crc),
                s("admin.system.version", 1, 59, 0x509d986e92154e53),
            ],
            "{file}"
        );
        let ts = &r.namespaces[1];
        assert_eq!(
            (ts.db.as_str(), ts.collection.as_str(), ts.kind.as_str()),
            ("timeseries_test", "foo_ts", "timeseries")
        );
        assert_eq!(r.namespaces[0].kind, "collection");
        assert_all_ok(&r);
    }
}

#[test]
fn timeseries_mixed_schema_fixture() {
    let r = run(&fixture("timeseries_tests-mixed_schema_dump.archive")).unwrap();
    assert_eq!(r.header.concurrent_collections, 1);
    assert_eq!(r.header.tool_version, "");
    assert_eq!(r.header.server_version, "5.0.23");
    assert_eq!(
        summary(&r),
        vec![s("timeseries_test_DB.system.buckets.timeseries_mixed_schema", 1, 256, 0xa1161d19766c30c3)]
    );
    assert_eq!(r.namespaces[0].collection, "timeseries_mixed_schema");
    assert_all_ok(&r);
}

#[test]
fn gzip_fixtures() {
    let r = run(&fixture("derived/test.bar.archive.gz")).unwrap();
    assert!(r.compressed);
    assert_eq!(r.bytes, 896);
    assert_eq!(
        summary(&r),
        vec![s("test.bar", 1, 35, 0x9369f0f35bec50d9), s("admin.system.version", 1, 59, 0xf685812fd02a263e)]
    );
    assert_all_ok(&r);
    for f in ["derived/dump-w-oplog.archive.gz", "derived/dump-w-oplog.multimember.archive.gz"] {
        let r = run(&fixture(f)).unwrap();
        assert!(r.compressed, "{f}");
        check_oplog_report(&r);
    }
}

#[test]
fn multimember_gzip_needs_all_members() {
    // The first member alone holds bytes [0, 1000) of the archive: a cut inside a document.
    let gz = fixture("derived/dump-w-oplog.multimember.archive.gz");
    let mut first = flate2::read::GzDecoder::new(&gz[..]);
    let mut plain = Vec::new();
    first.read_to_end(&mut plain).unwrap();
    assert_eq!(plain.len(), 1000);
    let e = assert_corrupt(run(&plain), "first member");
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn documents_are_passed_through_unchanged() {
    let bytes = fixture("dump-w-oplog.archive");
    let mut per_ns: HashMap<String, Vec<u8>> = HashMap::new();
    verify(&bytes[..], &mut |ns, d| {
        per_ns.entry(ns.to_string()).or_default().extend_from_slice(d);
        Ok(())
    })
    .unwrap();
    assert_eq!(crc64(&per_ns["test.foo"]), 0x9cc6a0e47a6d6d82);
    assert_eq!(crc64(&per_ns[".oplog"]), 0x803bd1a62aaa916c);
    assert_eq!(per_ns[".oplog"].len(), 2760);
}

// ---- truncation ----

#[test]
fn every_truncation_of_test_bar_fails() {
    let bytes = fixture("test.bar.archive");
    every_cut_fails(&bytes, "test.bar.archive");
    // A cut exactly between blocks parses cleanly up to there and fails the completeness check.
    let e = assert_corrupt(run(&bytes[..735 + 4]), "cut after admin's EOF block");
    assert!(e.to_string().contains("before all collections were seen") && e.to_string().contains("test.bar"), "{e}");
    let e = assert_corrupt(run(&bytes[..831 + 4]), "cut after test.bar's segment");
    assert!(e.to_string().contains("unfinished"), "{e}");
    let e = assert_corrupt(run(&bytes[..800]), "cut inside a document");
    assert!(e.to_string().contains("byte 796") && e.to_string().contains("truncated"), "{e}");
}

#[test]
fn every_truncation_of_dump_with_oplog_fails() {
    every_cut_fails(&fixture("dump-w-oplog.archive"), "dump-w-oplog.archive");
}

#[test]
fn every_truncation_of_small_fixtures_fails() {
    every_cut_fails(&fixture("bad-format.archive"), "bad-format.archive");
    every_cut_fails(&fixture("timeseries_tests-mixed_schema_dump.archive"), "mixed_schema");
    let ts = fixture("timeseries_tests-dump.archive");
    for cut in (0..ts.len()).step_by(97).chain(ts.len() - 16..ts.len()) {
        assert!(run(&ts[..cut]).is_err(), "timeseries cut at {cut}");
    }
}

#[test]
fn every_truncation_of_multimember_gzip_fails() {
    let gz = fixture("derived/dump-w-oplog.multimember.archive.gz");
    every_cut_fails(&gz, "multi-member gzip");
}

#[test]
fn truncated_gzip_trailer_is_an_error() {
    let gz = fixture("derived/test.bar.archive.gz");
    for cut in gz.len() - 8..gz.len() {
        let e = assert_corrupt(run(&gz[..cut]), "gzip without its full trailer");
        assert!(e.to_string().contains("gzip"), "{e}");
    }
}

// ---- damage ----

/// Offset of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// The bytes of the first data document of `ns`.
fn first_doc(bytes: &[u8], ns: &str) -> Vec<u8> {
    let mut first = None;
    run_with(bytes, &mut |n, d| {
        if n == ns && first.is_none() {
            first = Some(d.to_vec());
        }
    });
    first.unwrap()
}

fn run_with(bytes: &[u8], f: &mut dyn FnMut(&str, &[u8])) -> ArchiveReport {
    verify(bytes, &mut |n, d| {
        f(n, d);
        Ok(())
    })
    .unwrap()
}

#[test]
fn flipped_byte_fails_only_its_namespace() {
    let mut bytes = fixture("test.bar.archive");
    bytes[796 + 10] ^= 0x40; // inside the ObjectId of test.bar's only document
    let r = run(&bytes).unwrap();
    let bad: Vec<&str> = r.crc_failures().map(|n| n.ns.as_str()).collect();
    assert_eq!(bad, vec!["test.bar"]);
    let n = r.namespace("test.bar").unwrap();
    assert_eq!(n.expected_crc, Some(0x9369f0f35bec50d9));
    assert_ne!(n.crc, 0x9369f0f35bec50d9);
    assert!(r.namespace("admin.system.version").unwrap().crc_ok);
    assert!(!r.ok());

    for ns in ["test.foo", ".oplog", "admin.system.version"] {
        let mut bytes = fixture("dump-w-oplog.archive");
        let d = first_doc(&bytes, ns);
        let at = find(&bytes, &d);
        bytes[at + d.len() / 2] ^= 0x01;
        let r = run(&bytes).unwrap();
        let bad: Vec<&str> = r.crc_failures().map(|n| n.ns.as_str()).collect();
        assert_eq!(bad, vec![ns]);
        // Counts are unaffected: the damage is in the content, not the framing.
        assert_eq!(
            r.namespace(ns).unwrap().docs,
            run(&fixture("dump-w-oplog.archive")).unwrap().namespace(ns).unwrap().docs
        );
    }
}

#[test]
fn flipped_crc_in_eof_header_is_a_mismatch() {
    let mut bytes = fixture("test.bar.archive");
    bytes[666 + 60] ^= 0x80; // inside admin.system.version's EOF CRC
    let r = run(&bytes).unwrap();
    assert_eq!(r.crc_failures().map(|n| n.ns.as_str()).collect::<Vec<_>>(), vec!["admin.system.version"]);
}

#[test]
fn damaged_framing_is_an_error_with_offset() {
    let bytes = fixture("test.bar.archive");
    // A document length that is neither a BSON length nor a terminator.
    let mut b = bytes.clone();
    b[796..800].copy_from_slice(&3u32.to_le_bytes());
    let e = assert_corrupt(run(&b), "length 3");
    assert!(e.to_string().contains("byte 796") && e.to_string().contains("neither"), "{e}");
    // A huge length is rejected before anything is allocated or read.
    b[796..800].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    assert_corrupt(run(&b), "huge length");
    // The last byte of a document must be NUL.
    let mut b = bytes.clone();
    b[830] = 1;
    let e = assert_corrupt(run(&b), "no final NUL");
    assert!(e.to_string().contains("NUL"), "{e}");
    // Trailing bytes after the last block.
    for extra in [&[0u8][..], &[1, 2, 3], &[0xff, 0xff, 0xff, 0xff]] {
        let mut b = bytes.clone();
        b.extend_from_slice(extra);
        assert_corrupt(run(&b), "trailing bytes");
    }
    // Not an archive at all, plain or inside gzip.
    assert_corrupt(run(b"hello world"), "text");
    assert_corrupt(run(b""), "empty");
    assert_corrupt(run(&gzip(b"hello world")), "gzip of text");
    assert_corrupt(run(&gzip(b"")), "gzip of nothing");
    let mut b = bytes.clone();
    b[0] = 0x6c;
    assert_corrupt(run(&b), "bad magic");
}

#[test]
fn is_archive_by_content() {
    assert!(is_archive(&fixture("test.bar.archive")[..4]));
    assert!(is_archive(&fixture("derived/test.bar.archive.gz")[..2]));
    assert!(!is_archive(b"\x6d\xe2\x99"));
    assert!(!is_archive(b"PK\x03\x04"));
    assert!(!is_archive(b""));
}

// ---- built archives: interleaving and the ordering rules ----

#[test]
fn interleaved_segments_verify() {
    let (bytes, a, b) = interleaved();
    let mut got: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let r = run_with(&bytes, &mut |ns, d| got.entry(ns.to_string()).or_default().push(d.to_vec()));
    let cat = |v: &[Vec<u8>]| v.concat();
    assert_eq!(
        summary(&r),
        vec![
            s("shop.orders", a.len() as u64, cat(&a).len() as u64, crc64(&cat(&a))),
            s("shop.users", b.len() as u64, cat(&b).len() as u64, crc64(&cat(&b))),
        ]
    );
    assert_eq!(a.len() + b.len(), 1200 + 900);
    assert_all_ok(&r);
    assert_eq!(got["shop.orders"], a);
    assert_eq!(got["shop.users"], b);
    assert_eq!(r.bytes, bytes.len() as u64);

    let gz = gzip(&bytes);
    let rz = run(&gz).unwrap();
    assert!(rz.compressed);
    assert_eq!(summary(&rz), summary(&r));
    assert_eq!(rz.bytes, bytes.len() as u64);
}

#[test]
fn every_truncation_of_interleaved_fails() {
    let (bytes, _, _) = interleaved();
    every_cut_fails(&bytes, "interleaved archive");
}

#[test]
fn truncations_of_interleaved_gzip_fail() {
    let gz = gzip(&interleaved().0);
    for cut in (0..gz.len()).step_by(13).chain(gz.len() - 64..gz.len()) {
        assert!(run(&gz[..cut]).is_err(), "gzip cut at {cut}");
    }
}

#[test]
fn flipped_byte_in_interleaved_fails_one_namespace() {
    let (mut bytes, a, _) = interleaved();
    let at = find(&bytes, &a[500]);
    bytes[at + 5] ^= 0x20;
    let r = run(&bytes).unwrap();
    assert_eq!(r.crc_failures().map(|n| n.ns.as_str()).collect::<Vec<_>>(), vec!["shop.orders"]);
    assert_eq!(r.namespace("shop.orders").unwrap().docs, 1200);
}

fn two_collections() -> Builder {
    Builder::new("6.0.1", &[("d", "a", "collection"), ("d", "b", "collection")])
}

#[test]
fn eof_without_segment_is_zero_documents() {
    let mut b = two_collections();
    b.eof("d", "a");
    b.collection("d", "b", &docs(0, 3));
    let r = run(&b.out).unwrap();
    assert_eq!(summary(&r)[0], s("d.a", 0, 0, 0));
    assert_all_ok(&r);
}

#[test]
fn segment_after_eof_is_an_error() {
    let mut b = two_collections();
    b.collection("d", "a", &docs(0, 3));
    b.collection("d", "b", &docs(3, 3));
    b.segment("d", "a", &docs(6, 1));
    b.eof("d", "a");
    let e = assert_corrupt(run(&b.out), "segment after EOF");
    assert!(e.to_string().contains("already had its EOF"), "{e}");
}

#[test]
fn second_eof_is_an_error() {
    let mut b = two_collections();
    b.collection("d", "a", &docs(0, 3));
    b.collection("d", "b", &docs(3, 3));
    b.eof("d", "a");
    assert_corrupt(run(&b.out), "second EOF");
}

#[test]
fn document_after_eof_header_is_an_error() {
    let mut b = two_collections();
    b.collection("d", "a", &docs(0, 3));
    let crc = crc64(&docs(3, 2).concat());
    b.header("d", "b", false, 0);
    b.out.extend(docs(3, 2).concat());
    b.out.extend(TERM);
    b.header("d", "b", true, crc);
    b.out.extend(doc(9));
    b.out.extend(TERM);
    let e = assert_corrupt(run(&b.out), "document after EOF header");
    assert!(e.to_string().contains("without a collection header"), "{e}");
}

#[test]
fn consecutive_terminators_are_an_error() {
    let mut b = two_collections();
    b.collection("d", "a", &docs(0, 3));
    b.out.extend(TERM);
    b.collection("d", "b", &docs(3, 3));
    let e = assert_corrupt(run(&b.out), "two terminators");
    assert!(e.to_string().contains("consecutive terminators"), "{e}");

    // A block (here the prelude's body) may be empty, but the body must not start with TERM.
    let mut b = Builder::new("6.0.1", &[]);
    let r = run(&b.out).unwrap();
    assert!(r.namespaces.is_empty());
    b.out.extend(TERM);
    assert_corrupt(run(&b.out), "prelude followed by TERM");
}

#[test]
fn namespace_not_in_prelude_is_an_error() {
    let mut b = two_collections();
    b.collection("d", "a", &docs(0, 1));
    b.collection("d", "b", &docs(1, 1));
    b.collection("d", "c", &docs(2, 1));
    let e = assert_corrupt(run(&b.out), "unknown namespace");
    assert!(e.to_string().contains("no intent for namespace d.c"), "{e}");
}

#[test]
fn prelude_namespace_never_seen_is_an_error() {
    let mut b = two_collections();
    b.collection("d", "b", &docs(0, 1));
    let e = assert_corrupt(run(&b.out), "missing namespace");
    assert!(e.to_string().contains("before all collections were seen: no EOF block for \"d.a\""), "{e}");
}

#[test]
fn duplicate_prelude_entry_is_an_error() {
    let b = Builder::new("6.0.1", &[("d", "a", "collection"), ("d", "a", "collection")]);
    assert_corrupt(run(&b.out), "duplicate prelude entry");
}

#[test]
fn timeseries_mapping_depends_on_server_version() {
    for (version, viewless) in
        [("5.0.0-rc0", false), ("8.2.9", false), ("", false), ("garbage", false), ("8.3.0", true), ("9.0.1-rc2", true)]
    {
        let buckets = |b: &mut Builder| b.collection("m", "system.buckets.ts", &docs(0, 4));
        let direct = |b: &mut Builder| b.collection("m", "ts", &docs(0, 4));
        let mut old = Builder::new(version, &[("m", "ts", "timeseries")]);
        buckets(&mut old);
        let mut new = Builder::new(version, &[("m", "ts", "timeseries")]);
        direct(&mut new);
        let (ok, bad) = if viewless { (new, old) } else { (old, new) };
        let r = run(&ok.out).unwrap_or_else(|e| panic!("{version}: {e}"));
        let expect = if viewless { "m.ts" } else { "m.system.buckets.ts" };
        assert_eq!(r.namespaces[0].ns, expect, "{version}");
        assert_eq!(r.namespaces[0].collection, "ts");
        assert_eq!(r.namespaces[0].docs, 4);
        if viewless {
            let e = assert_corrupt(run(&bad.out), version);
            assert!(e.to_string().contains("8.3 or newer"), "{e}");
        } else {
            // An old server's dump with data under the view name still matches the entry exactly.
            assert_eq!(run(&bad.out).unwrap().namespaces[0].ns, "m.ts");
        }
    }
    // Only a time-series entry takes the buckets namespace.
    let mut b = Builder::new("5.0.3", &[("m", "ts", "collection")]);
    b.collection("m", "system.buckets.ts", &docs(0, 1));
    assert_corrupt(run(&b.out), "buckets for a plain collection");
    // One entry is fed by one body namespace only.
    let mut b = Builder::new("5.0.3", &[("m", "ts", "timeseries")]);
    b.collection("m", "system.buckets.ts", &docs(0, 1));
    b.collection("m", "ts", &docs(1, 1));
    let e = assert_corrupt(run(&b.out), "two namespaces for one entry");
    assert!(e.to_string().contains("both belong"), "{e}");
}

#[test]
fn namespace_header_must_be_valid() {
    let bad_headers = [
        bson(&[("db", V::Str("d")), ("collection", V::Str("")), ("EOF", V::Bool(false)), ("CRC", V::I64(0))]),
        bson(&[("db", V::Str("d")), ("EOF", V::Bool(false)), ("CRC", V::I64(0))]),
        bson(&[("db", V::Str("d")), ("collection", V::Str("a")), ("CRC", V::I64(0))]),
        bson(&[("db", V::Str("d")), ("collection", V::Str("a")), ("EOF", V::Bool(false))]),
        bson(&[("db", V::Str("d")), ("collection", V::Str("a")), ("EOF", V::I32(0)), ("CRC", V::I64(0))]),
        bson(&[("db", V::Str("d")), ("collection", V::Str("a")), ("EOF", V::Bool(false)), ("CRC", V::I32(0))]),
        bson(&[
            ("db", V::Str("d")),
            ("collection", V::Str("a")),
            ("EOF", V::Bool(false)),
            ("CRC", V::I64(0)),
            ("extra", V::I32(1)),
        ]),
        bson(&[
            ("db", V::Str("d")),
            ("collection", V::Str("a")),
            ("collection", V::Str("b")),
            ("EOF", V::Bool(false)),
            ("CRC", V::I64(0)),
        ]),
    ];
    for (i, h) in bad_headers.iter().enumerate() {
        let mut b = two_collections();
        b.out.extend(h);
        b.out.extend(TERM);
        let e = assert_corrupt(run(&b.out), &format!("header {i}"));
        assert!(e.to_string().contains("namespace header"), "{e}");
    }
}

#[test]
fn malformed_header_documents_are_rejected() {
    let good = bson(&[("db", V::Str("d")), ("collection", V::Str("a")), ("EOF", V::Bool(false)), ("CRC", V::I64(0))]);
    // String length past the end, string without NUL, bad bool, unknown type byte, an embedded
    // document with a bad length, and an end marker in the middle.
    let mut variants = Vec::new();
    let mut v = good.clone();
    v[8..12].copy_from_slice(&100i32.to_le_bytes()); // length of "d"
    variants.push(v);
    let mut v = good.clone();
    v[13] = b'x'; // NUL of "d"
    variants.push(v);
    let mut v = good.clone();
    let eof_at = find(&v, b"EOF\0") + 4;
    v[eof_at] = 2;
    variants.push(v);
    let mut v = good.clone();
    v[4] = 0x42;
    variants.push(v);
    let mut v = good.clone();
    v[4] = 0x03; // "db" as an embedded document whose length is 2
    v[8..12].copy_from_slice(&2i32.to_le_bytes());
    variants.push(v);
    let mut v = good.clone();
    v[4] = 0;
    variants.push(v);
    for (i, h) in variants.iter().enumerate() {
        let mut b = two_collections();
        b.out.extend(h);
        b.out.extend(TERM);
        assert_corrupt(run(&b.out), &format!("variant {i}"));
    }
}

#[test]
fn other_bson_types_in_headers_are_skipped() {
    // Unknown fields of every kind in the archive header are ignored.
    let mut hdr = vec![0u8; 4];
    let mut field = |t: u8, name: &str, val: &[u8]| {
        hdr.push(t);
        hdr.extend_from_slice(name.as_bytes());
        hdr.push(0);
        hdr.extend_from_slice(val);
    };
    field(0x01, "dbl", &1.5f64.to_le_bytes());
    field(0x03, "sub", &bson(&[("x", V::I32(1)), ("y", V::Str("z"))]));
    field(0x04, "arr", &bson(&[("0", V::I64(1))]));
    field(0x05, "bin", &[3, 0, 0, 0, 0, 1, 2, 3]);
    field(0x06, "undef", &[]);
    field(0x07, "oid", &[7; 12]);
    field(0x09, "date", &[9; 8]);
    field(0x0A, "null", &[]);
    field(0x0B, "re", b"a.*\0i\0");
    let mut dbp = 2i32.to_le_bytes().to_vec();
    dbp.extend_from_slice(b"c\0");
    dbp.extend_from_slice(&[1; 12]);
    field(0x0C, "dbp", &dbp);
    field(0x0D, "js", b"\x02\0\0\0f\0");
    let mut cws = Vec::new();
    let scope = bson(&[("a", V::I32(1))]);
    cws.extend_from_slice(&((4 + 6 + scope.len()) as i32).to_le_bytes());
    cws.extend_from_slice(b"\x02\0\0\0f\0");
    cws.extend_from_slice(&scope);
    field(0x0F, "cws", &cws);
    field(0x11, "ts", &[1; 8]);
    field(0x13, "dec", &[0; 16]);
    field(0xFF, "min", &[]);
    field(0x7F, "max", &[]);
    field(0x10, "concurrent_collections", &7i32.to_le_bytes());
    field(0x02, "version", b"\x04\0\0\x000.1\0");
    hdr.push(0);
    let n = hdr.len() as i32;
    hdr[..4].copy_from_slice(&n.to_le_bytes());

    let mut out = super::archive::MAGIC.to_vec();
    out.extend(&hdr);
    out.extend(TERM);
    let r = run(&out).unwrap();
    assert_eq!(r.header.concurrent_collections, 7);
    assert_eq!(r.header.version, "0.1");
    assert!(r.warnings.is_empty());

    // A wrong code-with-scope length is caught.
    let at = find(&out, b"cws\0") + 4;
    out[at] += 1;
    assert_corrupt(run(&out), "bad code-with-scope length");
}

#[test]
fn unknown_format_version_is_a_warning() {
    let mut out = super::archive::MAGIC.to_vec();
    out.extend(bson(&[("version", V::Str("0.2"))]));
    out.extend(TERM);
    let r = run(&out).unwrap();
    assert_eq!(r.header.version, "0.2");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
}

#[test]
fn metadata_json_is_checked() {
    let mut out = super::archive::MAGIC.to_vec();
    out.extend(bson(&[("version", V::Str("0.1"))]));
    for (coll, meta) in [("good", r#"{"indexes":[]}"#), ("bad", r#"{"indexes":[}"#), ("arr", "[1]"), ("none", "")] {
        out.extend(bson(&[("db", V::Str("d")), ("collection", V::Str(coll)), ("metadata", V::Str(meta))]));
    }
    out.extend(TERM);
    for coll in ["good", "bad", "arr", "none"] {
        out.extend(bson(&[
            ("db", V::Str("d")),
            ("collection", V::Str(coll)),
            ("EOF", V::Bool(true)),
            ("CRC", V::I64(0)),
        ]));
        out.extend(TERM);
    }
    let r = run(&out).unwrap();
    let ok: Vec<bool> = r.namespaces.iter().map(|n| n.metadata_json_ok).collect();
    assert_eq!(ok, vec![true, false, false, true]);
}

#[test]
fn document_size_limits() {
    let big = |len: usize| {
        // One binary field padded to exactly `len` bytes.
        let mut d = Vec::with_capacity(len);
        d.extend_from_slice(&(len as i32).to_le_bytes());
        d.push(0x05);
        d.extend_from_slice(b"b\0");
        d.extend_from_slice(&((len - 13) as i32).to_le_bytes());
        d.push(0);
        d.resize(len - 1, 0xab);
        d.push(0);
        d
    };
    let mut b = Builder::new("7.0.0", &[("d", "a", "collection")]);
    b.collection("d", "a", &[big(MAX_DOC), big(MAX_USER_DOC), big(5 + 8)]);
    let r = run(&b.out).unwrap();
    assert_eq!(r.namespaces[0].docs, 3);
    assert_all_ok(&r);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("1 document(s) larger"), "{:?}", r.warnings);

    let mut b = Builder::new("7.0.0", &[("d", "a", "collection")]);
    b.collection("d", "a", &[big(MAX_DOC + 1)]);
    let e = assert_corrupt(run(&b.out), "over the limit");
    assert!(e.to_string().contains("neither a valid BSON document length"), "{e}");
}

#[test]
fn callback_errors_stop_verification() {
    let bytes = fixture("dump-w-oplog.archive");
    let mut n = 0;
    let e = verify(&bytes[..], &mut |_, _| {
        n += 1;
        if n == 5 {
            return Err(Error::invalid("insert failed"));
        }
        Ok(())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("insert failed") && e.to_string().contains("test.foo"), "{e}");
    assert_eq!(n, 5);
}

/// A reader that hands out one byte per call, to exercise short reads.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[0];
        self.0 = &self.0[1..];
        Ok(1)
    }
}

#[test]
fn short_reads_are_handled() {
    let r = verify(Trickle(&fixture("dump-w-oplog.archive")), &mut |_, _| Ok(())).unwrap();
    check_oplog_report(&r);
    let r = verify(Trickle(&fixture("derived/dump-w-oplog.multimember.archive.gz")), &mut |_, _| Ok(())).unwrap();
    check_oplog_report(&r);
}

/// A reader that fails after some bytes.
struct Failing<'a>(&'a [u8]);

impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn reader_errors_are_io_errors() {
    let bytes = fixture("test.bar.archive");
    let e = verify(Failing(&bytes[..500]), &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("disk on fire"), "{e}");
}
