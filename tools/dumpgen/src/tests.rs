//! Whole-archive tests: determinism, framing (walked by the independent reader in
//! `testutil`), interleaving, and the size of the day-to-day change.

use std::collections::HashMap;

use crate::archive::{metadata_json, Layout};
use crate::testutil::{decode, get, get_str, read_archive, ArchiveRead, Value};
use crate::{write_day, Evolution, Summary};

fn ev(seed: u64, docs: u64, collections: u32) -> Evolution {
    Evolution { seed, docs, collections, churn: 0.01, delete: 0.001, append: 0.002 }
}

fn gen(e: &Evolution, day: u32, layout: &Layout) -> (Vec<u8>, Summary) {
    let mut out = Vec::new();
    let s = write_day(e.clone(), day, layout, &mut out).unwrap();
    assert_eq!(s.bytes, out.len() as u64);
    (out, s)
}

fn small_segments() -> Layout {
    Layout { segment_bytes: 64 << 10, ..Layout::default() }
}

#[test]
fn same_arguments_give_the_same_bytes() {
    let e = ev(11, 3_000, 2);
    let (a, sa) = gen(&e, 2, &Layout::default());
    let (b, sb) = gen(&e, 2, &Layout::default());
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    let (c, _) = gen(&ev(12, 3_000, 2), 2, &Layout::default());
    assert_ne!(a, c);
    let (d, _) = gen(&e, 3, &Layout::default());
    assert_ne!(a, d);
}

fn check_against_summary(r: &ArchiveRead, s: &Summary) {
    assert_eq!(r.namespaces.len(), s.collections.len());
    for ns in &s.collections {
        let got = &r.namespaces[&ns.ns];
        assert_eq!(got.docs.len() as u64, ns.docs, "{}", ns.ns);
        assert_eq!(got.crc, ns.crc, "{}", ns.ns);
        assert_eq!(got.segments as u64, ns.segments, "{}", ns.ns);
        assert_eq!(got.docs.iter().map(|d| d.len() as u64).sum::<u64>(), ns.data_bytes);
    }
}

#[test]
fn framing_is_valid_and_collections_interleave() {
    let e = ev(3, 2_000, 2);
    let (bytes, s) = gen(&e, 1, &small_segments());
    let r = read_archive(&bytes).unwrap();
    check_against_summary(&r, &s);

    assert_eq!(
        r.header,
        vec![
            ("concurrent_collections".to_string(), Value::I32(4)),
            ("version".to_string(), Value::Str("0.1".into())),
            ("server_version".to_string(), Value::Str("7.0.0".into())),
            ("tool_version".to_string(), Value::Str("100.9.0".into())),
        ]
    );
    assert_eq!(r.prelude.len(), 2);
    for (c, p) in r.prelude.iter().enumerate() {
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["db", "collection", "metadata", "size", "type"]);
        assert_eq!(get_str(p, "db"), "appdb");
        assert_eq!(get_str(p, "collection"), format!("coll{c}"));
        assert_eq!(get(p, "size"), Some(&Value::I32(0)));
        assert_eq!(get_str(p, "type"), "collection");
        let m = get_str(p, "metadata");
        assert_eq!(m, metadata_json(3, c));
        assert!(m.starts_with(
            r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"uuid":""#
        ));
        assert!(m.ends_with(&format!(r#"","collectionName":"coll{c}","type":"collection"}}"#)));
    }
    assert_ne!(metadata_json(3, 0)[100..], metadata_json(3, 1)[100..]);

    // ~700 KB per collection in 64 KiB segments: several segments each, taking turns.
    for ns in r.namespaces.values() {
        assert!(ns.segments >= 5, "{ns:?}");
    }
    let switches = r.blocks.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(switches >= 8, "{:?}", r.blocks);
    // Every data document is valid BSON with the expected first field.
    for ns in r.namespaces.values() {
        for d in &ns.docs {
            let doc = decode(d).unwrap();
            assert_eq!(doc[0].0, "_id");
            assert!(matches!(doc[0].1, Value::Oid(_)));
            assert!(d.len() <= 64 << 10);
        }
    }
}

#[test]
fn one_collection_is_one_segment() {
    let (bytes, s) = gen(&ev(4, 1_000, 1), 0, &Layout { segment_bytes: 10_000, ..Layout::default() });
    let r = read_archive(&bytes).unwrap();
    check_against_summary(&r, &s);
    assert_eq!(r.blocks, [("appdb.coll0".to_string(), false), ("appdb.coll0".to_string(), true)]);
}

#[test]
fn at_most_four_collections_are_open() {
    let (bytes, s) = gen(&ev(5, 6_000, 6), 0, &small_segments());
    let r = read_archive(&bytes).unwrap();
    check_against_summary(&r, &s);
    let mut open = std::collections::BTreeSet::new();
    let mut max_open = 0;
    for (ns, eof) in &r.blocks {
        if *eof {
            open.remove(ns);
        } else {
            open.insert(ns.clone());
        }
        max_open = max_open.max(open.len());
    }
    assert_eq!(max_open, 4);
}

#[test]
fn empty_collections_get_an_empty_segment() {
    let (bytes, s) = gen(&ev(6, 1, 3), 0, &Layout::default());
    let r = read_archive(&bytes).unwrap();
    check_against_summary(&r, &s);
    assert_eq!(s.collections.iter().map(|c| c.docs).collect::<Vec<_>>(), [1, 0, 0]);
    assert_eq!(r.namespaces["appdb.coll2"].segments, 1);
    assert_eq!(s.collections[2].crc, 0);
}

/// Documents keyed by `_id`, in natural order.
fn by_id(r: &ArchiveRead, ns: &str) -> Vec<([u8; 12], Vec<u8>)> {
    r.namespaces[ns].docs.iter().map(|d| (d[9..21].try_into().unwrap(), d.clone())).collect()
}

#[test]
fn next_day_changes_about_the_churn_share() {
    let e = ev(8, 40_000, 2);
    let (b3, s3) = gen(&e, 3, &Layout::default());
    let (b4, s4) = gen(&e, 4, &Layout::default());
    let (r3, r4) = (read_archive(&b3).unwrap(), read_archive(&b4).unwrap());
    let live3: u64 = s3.collections.iter().map(|c| c.docs).sum();
    let (mut upd, mut del, mut app, mut changed_bytes) = (0u64, 0u64, 0u64, 0u64);
    for ns in r3.namespaces.keys() {
        let old = by_id(&r3, ns);
        let new = by_id(&r4, ns);
        let new_map: HashMap<[u8; 12], &Vec<u8>> = new.iter().map(|(k, v)| (*k, v)).collect();
        // Surviving documents keep their natural order, appended ones come after all of them.
        let survivors: Vec<[u8; 12]> = old.iter().map(|(k, _)| *k).filter(|k| new_map.contains_key(k)).collect();
        assert_eq!(survivors[..], new.iter().map(|(k, _)| *k).collect::<Vec<_>>()[..survivors.len()]);
        app += (new.len() - survivors.len()) as u64;
        for (id, d) in &old {
            match new_map.get(id) {
                None => del += 1,
                Some(n) if *n != d => {
                    upd += 1;
                    changed_bytes += d.len() as u64;
                    assert!(n.len().abs_diff(d.len()) <= 8);
                }
                Some(_) => {}
            }
        }
    }
    assert_eq!((upd, del, app), (s4.changes.updated, s4.changes.deleted, s4.changes.appended));
    let expect = 0.01 * live3 as f64;
    assert!((upd as f64 - expect).abs() <= 2.0, "updated {upd}, expected {expect}");
    assert!((del as f64 - 0.001 * live3 as f64).abs() <= 2.0);
    assert!((app as f64 - 80.0).abs() <= 2.0);
    // The share of data bytes in changed documents is about the churn share too.
    let share = changed_bytes as f64 / s3.collections.iter().map(|c| c.data_bytes).sum::<u64>() as f64;
    assert!((0.007..0.013).contains(&share), "{share}");
}
