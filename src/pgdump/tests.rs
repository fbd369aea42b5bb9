//! Tests of the dump readers on archives built here: every custom-format version PostgreSQL
//! 12-17 writes (1.14, 1.15, 1.16) with each compression, and every way of cutting or
//! damaging them; plain dumps through the lexer's corner cases. Real pg_dump output is tested
//! in tests/drill_pg.rs.

use super::*;
use std::io::Write;

// ---- a small custom-format writer ----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Comp {
    None,
    Gzip,
    Zstd,
    Lz4,
}

struct W {
    b: Vec<u8>,
}

impl W {
    fn byte(&mut self, x: u8) {
        self.b.push(x);
    }
    fn int(&mut self, v: i64) {
        self.b.push((v < 0) as u8);
        self.b.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
    }
    fn str(&mut self, s: Option<&str>) {
        match s {
            None => self.int(-1),
            Some(s) => {
                self.int(s.len() as i64);
                self.b.extend_from_slice(s.as_bytes());
            }
        }
    }
    fn offset(&mut self, flag: u8, v: u64) {
        self.byte(flag);
        self.b.extend_from_slice(&v.to_le_bytes());
    }
}

struct Table {
    name: &'static str,
    cols: u32,
    rows: Vec<String>,
}

fn compress(c: Comp, data: &[u8]) -> Vec<u8> {
    match c {
        Comp::None => data.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(data, 3).unwrap(),
        // Not real lz4: the reader does not decompress it.
        Comp::Lz4 => data.iter().rev().copied().collect(),
    }
}

/// Chunks of at most 100 bytes, then the zero terminator.
fn stream(w: &mut W, c: Comp, data: &[u8]) {
    let z = compress(c, data);
    for ch in z.chunks(100) {
        w.int(ch.len() as i64);
        w.b.extend_from_slice(ch);
    }
    w.int(0);
}

/// An archive of `tables` and `los` large objects; `set_offsets` as a seekable pg_dump writes.
fn archive(version: (u8, u8), c: Comp, tables: &[Table], los: &[&[u8]], set_offsets: bool) -> Vec<u8> {
    archive_as(1, version, c, tables, los, set_offsets)
}

/// `fmt` 1: a custom archive; 3: the toc.dat of a directory-format dump (no data blocks).
fn archive_as(fmt: u8, version: (u8, u8), c: Comp, tables: &[Table], los: &[&[u8]], set_offsets: bool) -> Vec<u8> {
    let build = |offsets: &[u64]| -> (Vec<u8>, Vec<u64>) {
        let mut w = W { b: Vec::new() };
        w.b.extend_from_slice(b"PGDMP");
        w.byte(version.0);
        w.byte(version.1);
        w.byte(0);
        w.byte(4);
        w.byte(8);
        w.byte(fmt);
        if version >= (1, 15) {
            w.byte(match c {
                Comp::None => 0,
                Comp::Gzip => 1,
                Comp::Lz4 => 2,
                Comp::Zstd => 3,
            });
        } else {
            w.int(if c == Comp::None { 0 } else { -1 });
        }
        for v in [1, 2, 3, 4, 5, 125, 0] {
            w.int(v);
        }
        w.str(Some("app"));
        w.str(Some("17.2"));
        w.str(Some("17.2"));
        // TOC: ENCODING, then per table TABLE + TABLE DATA, then BLOBS.
        let mut entries: Vec<(i64, bool, String, String, String, String)> =
            vec![(1, false, "ENCODING".into(), "ENCODING".into(), String::new(), String::new())];
        for (i, t) in tables.iter().enumerate() {
            let id = 10 + 2 * i as i64;
            let cols: Vec<String> = (0..t.cols).map(|k| format!("c{k}")).collect();
            entries.push((id, false, t.name.into(), "TABLE".into(), "public".into(), String::new()));
            entries.push((
                id + 1,
                true,
                t.name.into(),
                "TABLE DATA".into(),
                "public".into(),
                format!("COPY public.{} ({}) FROM stdin;\n", t.name, cols.join(", ")),
            ));
        }
        if !los.is_empty() {
            entries.push((99, true, "BLOBS".into(), "BLOBS".into(), String::new(), String::new()));
        }
        w.int(entries.len() as i64);
        let mut data_ix = 0;
        for (id, had, tag, desc, ns, copy) in &entries {
            w.int(*id);
            w.int(*had as i64);
            w.str(Some("0"));
            w.str(Some("0"));
            w.str(Some(tag));
            w.str(Some(desc));
            w.int(2);
            w.str(Some(""));
            w.str(Some(""));
            w.str(Some(copy));
            w.str(Some(ns));
            w.str(Some(""));
            if version >= (1, 14) {
                w.str(Some("heap"));
            }
            if version >= (1, 16) {
                w.int(114);
            }
            w.str(Some("postgres"));
            w.str(Some("false"));
            w.str(Some("1"));
            w.str(None);
            if fmt != 1 {
                w.str(Some(&if *had { format!("{id}.dat.gz") } else { String::new() }));
            } else if *had {
                match offsets.get(data_ix) {
                    Some(&o) => w.offset(2, o),
                    None => w.offset(1, 0),
                }
                data_ix += 1;
            } else {
                w.offset(3, 0);
            }
        }
        let mut at = Vec::new();
        if fmt != 1 {
            return (w.b, at);
        }
        for (i, t) in tables.iter().enumerate() {
            at.push(w.b.len() as u64);
            w.byte(1);
            w.int(11 + 2 * i as i64);
            let mut data = String::new();
            for r in &t.rows {
                data.push_str(r);
                data.push('\n');
            }
            if version < (1, 16) {
                data.push_str("\\.\n\n");
            }
            stream(&mut w, c, data.as_bytes());
        }
        if !los.is_empty() {
            at.push(w.b.len() as u64);
            w.byte(3);
            w.int(99);
            for (k, lo) in los.iter().enumerate() {
                w.int(16000 + k as i64);
                stream(&mut w, c, lo);
            }
            w.int(0);
        }
        (w.b, at)
    };
    let (b, at) = build(&[]);
    if !set_offsets {
        return b;
    }
    // Offsets do not change the TOC's length (flag + 8 bytes either way).
    let (b2, at2) = build(&at);
    assert_eq!(at, at2);
    b2
}

fn tables() -> Vec<Table> {
    vec![
        Table { name: "users", cols: 3, rows: (0..500).map(|i| format!("{i}\tuser {i}\t\\N")).collect() },
        Table { name: "empty", cols: 1, rows: vec![] },
        Table { name: "notes", cols: 2, rows: (0..40).map(|i| format!("{i}\tline\\nwith\\ttab")).collect() },
    ]
}

fn rows(r: &DumpReport) -> Vec<(String, Option<u64>)> {
    r.tables.iter().map(|t| (t.name(), t.rows)).collect()
}

fn expected_rows() -> Vec<(String, Option<u64>)> {
    vec![("public.users".into(), Some(500)), ("public.empty".into(), Some(0)), ("public.notes".into(), Some(40))]
}

#[test]
fn every_version_and_compression_reads_back_with_counts() {
    for version in [(1, 14), (1, 15), (1, 16)] {
        for c in [Comp::None, Comp::Gzip, Comp::Zstd] {
            if version < (1, 15) && c == Comp::Zstd {
                continue;
            }
            for set in [true, false] {
                let a = archive(version, c, &tables(), &[b"hello", &[7u8; 5000]], set);
                let r = custom::verify(&a[..]).unwrap_or_else(|e| panic!("{version:?} {c:?}: {e}"));
                assert!(r.ok(), "{version:?} {c:?}: {:?} {:?}", r.damage, r.not_verifiable);
                assert_eq!(rows(&r), expected_rows(), "{version:?} {c:?}");
                assert_eq!(r.large_objects, 2);
                assert_eq!(r.archive_version, format!("{}.{}", version.0, version.1));
                assert_eq!(r.database, "app");
                assert_eq!(r.bytes, a.len() as u64);
                assert_eq!(r.entries, 8);
            }
        }
    }
}

#[test]
fn a_directory_format_toc_is_read_without_data_blocks() {
    let a = archive_as(3, (1, 14), Comp::Gzip, &tables(), &[b"lo"], false);
    assert_eq!(custom::is_directory_toc(&a), Some(true));
    assert_eq!(custom::is_directory_toc(&archive((1, 14), Comp::Gzip, &tables(), &[], true)), Some(false));
    let r = custom::verify(&a[..]).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.entries, 8);
    assert!(r.tables.is_empty() && r.note.as_deref().unwrap().contains("directory-format"));
    let mut b = a.clone();
    b.push(1);
    assert!(custom::verify(&b[..]).unwrap_err().to_string().contains("trailing garbage"));
    assert!(custom::verify(&a[..a.len() - 3]).unwrap_err().to_string().contains("truncated"));
}

#[test]
fn lz4_and_newer_versions_are_not_verifiable_rather_than_wrong() {
    let a = archive((1, 16), Comp::Lz4, &tables(), &[b"x"], true);
    let r = custom::verify(&a[..]).unwrap();
    assert!(r.damage.is_empty(), "{:?}", r.damage);
    assert!(r.not_verifiable.as_deref().unwrap().contains("lz4"), "{r:?}");
    assert!(r.tables.iter().all(|t| t.rows.is_none()));
    assert_eq!(r.large_objects, 1);
    let mut a = archive((1, 16), Comp::Gzip, &tables(), &[], true);
    a[6] = 17;
    let r = custom::verify(&a[..]).unwrap();
    assert!(r.not_verifiable.unwrap().contains("1.17"));
}

#[test]
fn every_cut_is_reported() {
    let a = archive((1, 14), Comp::Gzip, &tables(), &[b"lo data"], true);
    for n in 0..a.len() {
        match custom::verify(&a[..n]) {
            Err(e) => {
                assert!(e.to_string().contains("truncated") || e.to_string().contains("PGDMP"), "cut at {n}: {e}")
            }
            Ok(r) => assert!(!r.damage.is_empty(), "cut at {n} of {} reads as complete", a.len()),
        }
    }
}

#[test]
fn a_flipped_byte_in_a_compressed_block_names_the_table_and_the_rest_is_still_read() {
    let a = archive((1, 14), Comp::Gzip, &tables(), &[b"lo"], true);
    let good = custom::verify(&a[..]).unwrap();
    let users = &good.tables[0];
    let mut bad = a.clone();
    bad[(users.offset + users.stored_bytes / 2) as usize] ^= 0x10;
    let r = custom::verify(&bad[..]).unwrap();
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert!(r.damage[0].contains("public.users") && r.damage[0].contains(&format!("offset {}", users.offset)));
    assert!(r.tables[0].error.is_some() && r.tables[0].rows.is_none());
    // The blocks after it were read.
    assert_eq!(r.tables[2].rows, Some(40));
    assert_eq!(r.large_objects, 1);
}

#[test]
fn flips_anywhere_never_panic_and_are_mostly_caught() {
    let a = archive((1, 15), Comp::Gzip, &tables(), &[b"lo"], true);
    let mut missed = 0;
    for i in 0..a.len() {
        let mut b = a.clone();
        b[i] ^= 0x41;
        match custom::verify(&b[..]) {
            Err(_) => {}
            Ok(r) if !r.ok() || r.not_verifiable.is_some() => {}
            Ok(_) => missed += 1,
        }
    }
    // Flips in names, strings of the TOC and the dependency list change no structure.
    assert!(missed < a.len() / 5, "{missed} of {} flips unnoticed", a.len());
}

#[test]
fn rows_with_the_wrong_field_count_trailing_garbage_and_moved_blocks_are_damage() {
    let mut t = tables();
    t[2].rows[7] = "7\tone\ttoo many".into();
    let a = archive((1, 14), Comp::None, &t, &[], true);
    let r = custom::verify(&a[..]).unwrap();
    assert!(r.damage[0].contains("public.notes") && r.damage[0].contains("row 8 has 3 fields"), "{:?}", r.damage);

    let mut a = archive((1, 14), Comp::Gzip, &tables(), &[], true);
    a.extend_from_slice(b"\x07junk");
    let e = custom::verify(&a[..]).unwrap_err().to_string();
    assert!(e.contains("trailing garbage"), "{e}");

    // The TOC places the first block elsewhere.
    let a = archive((1, 14), Comp::Gzip, &tables(), &[], true);
    let good = custom::verify(&a[..]).unwrap();
    let at = good.tables[0].offset;
    let pos = a.windows(8).position(|w| w == at.to_le_bytes()).unwrap();
    let mut b = a.clone();
    b[pos] ^= 1;
    let r = custom::verify(&b[..]).unwrap();
    assert!(r.damage.iter().any(|d| d.contains("places its data at")), "{:?}", r.damage);
}

// ---- plain dumps ----

const PLAIN: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n\
-- Dumped from database version 15.18\n-- Dumped by pg_dump version 15.18\n\n\
SET standard_conforming_strings = on;\n\
CREATE FUNCTION public.f() RETURNS text LANGUAGE plpgsql AS $_$\nBEGIN\n\\connect nowhere\nCOPY x FROM stdin;\n RETURN 'it''s; $x$'; END\n$_$;\n\
COMMENT ON FUNCTION public.f() IS 'don''t \\connect; -- /*';\n\
/* a /* nested */ comment with ; and ' */\n\
-- it's a comment; with \\ and COPY y FROM stdin;\n\
CREATE TABLE public.\"Odd \"\"T\"\"\" (a integer, \"b,c\" text);\n\
INSERT INTO public.t VALUES (E'a\\'b;c', $$x;$$);\n\
COPY public.\"Odd \"\"T\"\"\" (a, \"b,c\") FROM stdin;\n1\tx\n2\ty\\tz\n\\.\n\n\
SELECT pg_catalog.lo_open('16399', 131072);\n\
COPY s.empty (a) FROM stdin;\n\\.\n\n\
COPY \"Ünïcode\".\"Tâble ☕\" (a) FROM stdin;\n1\n\\.\n\n\
--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n";

fn plain_run(text: &str) -> (DumpReport, String) {
    plain_bytes(text.as_bytes())
}

fn plain_bytes(text: &[u8]) -> (DumpReport, String) {
    let mut sent = Vec::new();
    let r = plain::verify(text, &mut |b| {
        sent.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    (r, String::from_utf8_lossy(&sent).into_owned())
}

#[test]
fn plain_dumps_are_lexed_like_psql_and_passed_on_whole() {
    assert!(plain::is_plain(PLAIN.as_bytes()));
    let (r, sent) = plain_run(PLAIN);
    assert_eq!(sent, PLAIN);
    assert!(r.ok(), "{:?}", r.damage);
    assert_eq!(r.restore_blocker, None);
    assert_eq!(
        r.tables.iter().map(|t| (t.schema.as_str(), t.table.as_str(), t.rows)).collect::<Vec<_>>(),
        vec![("public", "Odd \"T\"", Some(2)), ("s", "empty", Some(0)), ("Ünïcode", "Tâble ☕", Some(1))]
    );
    assert_eq!(r.large_objects, 1);
    assert_eq!(r.server_version, "15.18");
    // Pieces of any size give the same answer.
    let r2 =
        plain::verify(std::io::Read::chain(&PLAIN.as_bytes()[..7], &PLAIN.as_bytes()[7..]), &mut |_| Ok(())).unwrap();
    assert_eq!(r2, r);
}

#[test]
fn plain_dumps_that_leave_the_scratch_database_are_refused_before_anything_global_is_sent() {
    let created = PLAIN.replace(
        "SET standard_conforming_strings = on;\n",
        "CREATE DATABASE app WITH TEMPLATE = template0;\n\\connect app\n",
    );
    let (r, sent) = plain_run(&created);
    assert!(r.restore_blocker.as_deref().unwrap().contains("CREATE DATABASE"), "{r:?}");
    assert!(!sent.contains("CREATE DATABASE") && !sent.contains("COPY"), "{sent}");
    assert_eq!(r.tables.len(), 3, "still verified");

    let switched = PLAIN.replace("SET standard_conforming_strings = on;\n", "\\connect other\n");
    let (r, sent) = plain_run(&switched);
    assert!(r.restore_blocker.unwrap().contains("\\connect"));
    assert!(!sent.contains("other"));

    for (stmt, bad) in [
        ("CREATE ROLE admin;", true),
        ("ALTER ROLE x SET a = 1;", true),
        ("CREATE USER MAPPING FOR x SERVER s;", false),
        ("ALTER SYSTEM SET x = 1;", true),
        ("COMMENT ON DATABASE app IS 'x';", true),
        ("CREATE TABLESPACE t LOCATION '/x';", true),
        ("\\! rm -rf /", true),
        ("CREATE  -- comment\n  DATABASE x;", true),
    ] {
        let text = PLAIN.replace("SET standard_conforming_strings = on;\n", &format!("{stmt}\n"));
        let (r, sent) = plain_run(&text);
        assert_eq!(r.restore_blocker.is_some(), bad, "{stmt}: {r:?}");
        assert_eq!(sent.contains(stmt), !bad, "{stmt}");
    }
}

#[test]
fn cut_or_damaged_plain_dumps_are_reported() {
    let cut_in_copy = &PLAIN[..PLAIN.find("2\ty").unwrap()];
    let (r, _) = plain_run(cut_in_copy);
    assert!(r.damage[0].contains("inside the COPY data of table public.Odd \"T\""), "{:?}", r.damage);
    let no_trailer = &PLAIN[..PLAIN.find("--\n-- PostgreSQL database dump complete").unwrap()];
    let (r, _) = plain_run(no_trailer);
    assert!(r.damage[0].contains("no closing"), "{:?}", r.damage);
    let in_function = &PLAIN[..PLAIN.find(" RETURN '").unwrap()];
    let (r, _) = plain_run(in_function);
    assert!(r.damage[0].contains("dollar-quoted"), "{:?}", r.damage);
    let fields = PLAIN.replace("2\ty\\tz\n", "2\ty\tz\n");
    let (r, _) = plain_run(&fields);
    assert!(r.damage[0].contains("row 2 has 3 fields"), "{:?}", r.damage);
    // Every cut before the closing line's end is reported.
    let end = PLAIN.find("dump complete\n").unwrap() + "dump complete\n".len();
    for n in 0..end {
        let (r, _) = plain_bytes(&PLAIN.as_bytes()[..n]);
        assert!(!r.damage.is_empty(), "cut at {n}");
    }
}

#[test]
fn copy_statements_are_understood() {
    assert_eq!(copy_target("COPY public.t1 (a) FROM stdin;"), Some(("public".into(), "t1".into())));
    assert_eq!(copy_target("COPY \"S\".\"a.b\" FROM stdin;"), Some(("S".into(), "a.b".into())));
    assert_eq!(copy_target("COPY Plain FROM stdin;"), Some(("".into(), "plain".into())));
    assert_eq!(copy_target("COPY public.\"Café ☕\" (a) FROM stdin;"), Some(("public".into(), "Café ☕".into())));
    assert_eq!(copy_target("COé"), None);
    assert_eq!(copy_columns("COPY t (a, \"b, c\", d) FROM stdin;"), Some(3));
    assert_eq!(copy_columns("COPY t  FROM stdin;"), None);
    assert_eq!(copy_columns("COPY t () FROM stdin;"), Some(0));
}

#[test]
fn flipped_plain_bytes_never_panic() {
    let b = PLAIN.as_bytes();
    for i in 0..b.len() {
        for x in [0x01u8, 0x20, 0x80, 0xFF] {
            let mut c = b.to_vec();
            c[i] ^= x;
            let _ = plain_bytes(&c);
        }
    }
}
