use super::*;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use proptest::prelude::*;
use std::io::Write;

#[derive(Default)]
struct Mem {
    expanded: Vec<u8>,
    recipe: Vec<u8>,
}

impl Sink for Mem {
    fn expanded(&mut self, b: &[u8]) -> Result<()> {
        self.expanded.extend_from_slice(b);
        Ok(())
    }
    fn recipe(&mut self, b: &[u8]) -> Result<()> {
        self.recipe.extend_from_slice(b);
        Ok(())
    }
}

struct Bytes(Vec<u8>);

impl Source for Bytes {
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let s = (off as usize).min(self.0.len());
        Ok(self.0[s..(s + len).min(self.0.len())].to_vec())
    }
}

/// Text that compresses like a dump: repetitive records with varying numbers.
fn records(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.extend_from_slice(
            format!(
                "{{\"_id\":{i},\"name\":\"user{}\",\"balance\":{},\"tags\":[\"a\",\"b{}\"]}}\n",
                x % 977,
                x >> 40,
                x % 13
            )
            .as_bytes(),
        );
    }
    out
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Expands `input`, checks the streams, rebuilds it whole and at random offsets.
fn round_trip(input: &[u8]) -> (Expanded, Mem) {
    let mut m = Mem::default();
    let x = expand(&mut &input[..], &mut m).unwrap();
    assert_eq!(x.original, input.len() as u64);
    assert_eq!(x.expanded, m.expanded.len() as u64);
    if !x.rebuilt() {
        assert_eq!(m.expanded, input, "stored as is");
        assert!(m.recipe.is_empty());
        return (x, m);
    }
    assert_eq!(x.recipe, m.recipe.len() as u64);
    let plan = Plan::read(&mut &m.recipe[..]).unwrap();
    let r = Rebuilder::new(plan, Bytes(m.expanded.clone()), Bytes(m.recipe.clone()));
    let mut out = Vec::new();
    r.copy_to(&mut out).unwrap();
    assert!(out == input, "rebuilt bytes differ");
    // Random reads, forwards and backwards.
    let n = input.len() as u64;
    for k in 0..12u64 {
        let off = (k * 7919 * 104729) % n.max(1);
        let len = ((k * 31337) % 300_000) as usize + 1;
        let got = r.read_at(off, len).unwrap();
        let end = (off as usize + len).min(input.len());
        assert!(got == input[off as usize..end], "read at {off}+{len}");
    }
    (x, m)
}

#[test]
fn gzip_of_every_level_round_trips_and_expands() {
    let plain = records(40_000, 1);
    for level in [1, 6, 9] {
        let gz = gzip(&plain, level);
        let (x, m) = round_trip(&gz);
        assert!(x.rebuilt(), "level {level}");
        assert_eq!(x.deflated as usize, gz.len() - 18, "level {level}: the whole deflate stream");
        // The decompressed content is in the expanded stream, between header and trailer.
        assert_eq!(&m.expanded[10..10 + plain.len()], &plain[..]);
        // (flate2 writes with miniz_oxide, which the predictor models less well than zlib.)
        assert!(x.recipe < gz.len() as u64 / 2, "level {level}: recipe {} of {}", x.recipe, gz.len());
    }
}

#[test]
fn zlib_streams_and_several_gzip_members_round_trip() {
    let a = records(5_000, 2);
    let b = records(7_000, 3);
    let (x, _) = round_trip(&zlib(&a, 6));
    assert_eq!(x.streams, 1);
    let mut two = gzip(&a, 6);
    two.extend(gzip(&b, 9));
    let (x, m) = round_trip(&two);
    assert_eq!(x.streams, 2);
    assert_eq!(m.expanded.len(), a.len() + b.len() + 36);
}

#[test]
fn damaged_truncated_and_fake_inputs_come_back_exact() {
    let gz = gzip(&records(60_000, 4), 6);
    // Truncated in the middle: the part before stays expanded, the rest is copied.
    round_trip(&gz[..gz.len() / 2]);
    // A flipped bit in the middle of the deflate data.
    let mut bad = gz.clone();
    bad[gz.len() / 3] ^= 0x10;
    round_trip(&bad);
    // Gzip only in its first bytes.
    let mut fake = gz[..12].to_vec();
    fake.extend(records(1000, 5));
    let (x, _) = round_trip(&fake);
    assert!(!x.rebuilt());
    // Trailing garbage after a complete member.
    let mut trailing = gz.clone();
    trailing.extend_from_slice(b"\x1f\x8b\x08\x00garbage");
    let (x, _) = round_trip(&trailing);
    assert_eq!(x.streams, 1);
    // Plain data with no compressed part is stored as is.
    let (x, _) = round_trip(&records(3000, 6));
    assert!(!x.rebuilt());
    round_trip(&[]);
    round_trip(b"\x1f");
    round_trip(b"\x78\x9c");
}

#[test]
fn a_damaged_recipe_or_expanded_stream_is_an_error_not_wrong_bytes() {
    let gz = gzip(&records(30_000, 7), 6);
    let mut m = Mem::default();
    expand(&mut &gz[..], &mut m).unwrap();
    let plan = Plan::read(&mut &m.recipe[..]).unwrap();
    let mut exp = m.expanded.clone();
    exp[5000] ^= 1;
    let r = Rebuilder::new(plan.clone(), Bytes(exp), Bytes(m.recipe.clone()));
    assert!(r.copy_to(&mut Vec::new()).is_err());
    // Changed correction bytes: an error, or (bytes the decoder never reads, or a change it
    // decodes to the same result) the original, never other bytes. One in 37 is changed: the
    // first sampled byte alone comes back as the original in a release build.
    let flipped = (70..m.recipe.len() - 40).step_by(37);
    assert!(flipped.len() >= 20, "a recipe of {} bytes", m.recipe.len());
    let mut errors = 0;
    for k in flipped {
        let mut rec = m.recipe.clone();
        rec[k] ^= 0x40;
        let r = Rebuilder::new(plan.clone(), Bytes(m.expanded.clone()), Bytes(rec));
        let mut out = Vec::new();
        match r.copy_to(&mut out) {
            Ok(_) => assert!(out == gz, "wrong bytes from a changed recipe byte {k}"),
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 0);
    // A changed window hash (after the magic, the copied gzip header, the begin step, the
    // window's step byte and its two sizes).
    let mut rec = m.recipe.clone();
    rec[4 + 9 + 1 + 16 + 3] ^= 1;
    let r = Rebuilder::new(Plan::read(&mut &rec[..]).unwrap(), Bytes(m.expanded.clone()), Bytes(rec));
    assert!(r.copy_to(&mut Vec::new()).is_err());
    assert!(Plan::read(&mut &m.recipe[..m.recipe.len() - 1]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_mix_of_plain_and_compressed_parts_round_trips(
        parts in proptest::collection::vec((0u8..4, 0usize..3000, any::<u64>(), 1u32..10), 0..6)
    ) {
        let mut input = Vec::new();
        for (kind, n, seed, level) in parts {
            let data = records(n, seed);
            match kind {
                0 => input.extend(data),
                1 => input.extend(gzip(&data, level)),
                2 => input.extend(zlib(&data, level)),
                _ => input.extend((0..n).map(|i| (seed.wrapping_mul(i as u64 + 1) >> 17) as u8)),
            }
        }
        round_trip(&input);
    }

    #[test]
    fn recipe_reader_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut r = MAGIC.to_vec();
        r.extend(b);
        let _ = Plan::read(&mut &r[..]);
    }
}

/// A `pg_dump -Fc`-like archive: the magic with 4-byte integers, then data blocks whose zlib
/// streams are cut into chunks of `chunk` bytes, each after a sign byte and a 4-byte length.
fn pg_archive(tables: &[Vec<u8>], chunk: usize) -> Vec<u8> {
    let mut out = b"PGDMP\x01\x0f\x00\x04\x08\x01\x01".to_vec();
    out.extend_from_slice(b"some table of contents");
    for (id, t) in tables.iter().enumerate() {
        out.push(1);
        out.push(0);
        out.extend_from_slice(&(id as u32 + 1).to_le_bytes());
        for part in zlib(t, 6).chunks(chunk) {
            out.push(0);
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&[0, 0, 0, 0, 0]);
    }
    out
}

#[test]
fn pg_dump_custom_format_blocks_are_expanded_with_their_chunk_lengths() {
    let tables = vec![records(30_000, 11), records(500, 12), records(9_000, 13)];
    for chunk in [4096, 1000, 65536] {
        let a = pg_archive(&tables, chunk);
        let (x, m) = round_trip(&a);
        assert_eq!(x.streams, 3, "chunk {chunk}");
        // The tables' rows are in the expanded stream as they are.
        let e = &m.expanded;
        assert!(e.windows(tables[0].len()).any(|w| w == &tables[0][..]), "chunk {chunk}");
    }
    // Not a pg archive: the same bytes after another magic are not taken for chunked streams.
    let mut other = pg_archive(&tables, 4096);
    other[0] = b'X';
    let (x, _) = round_trip(&other);
    assert_eq!(x.streams, 0);
}

/// The stored content of a gzip file as [`Rebuilder::gzip_content`] reads it, if it offers it.
fn content_of(input: &[u8]) -> Option<std::io::Result<Vec<u8>>> {
    let mut m = Mem::default();
    let x = expand(&mut &input[..], &mut m).unwrap();
    if !x.rebuilt() {
        return None;
    }
    let plan = Plan::read(&mut &m.recipe[..]).unwrap();
    let r = Rebuilder::new(plan, Bytes(m.expanded), Bytes(m.recipe));
    let mut c = r.gzip_content()?;
    let mut out = Vec::new();
    Some(c.read_to_end(&mut out).map(|_| out))
}

#[test]
fn gzip_content_is_what_an_inflater_gives_and_only_for_whole_gzip_streams() {
    let a = records(30_000, 5);
    let b = records(20_000, 6);
    // One member, several members (as `cat a.gz b.gz` or pigz make), a name in the header.
    let mut members = gzip(&a, 6);
    members.extend(gzip(&b, 9));
    let named = {
        let mut e =
            flate2::GzBuilder::new().filename("dump.archive").comment("x").write(Vec::new(), Compression::new(6));
        e.write_all(&a).unwrap();
        e.finish().unwrap()
    };
    for (name, gz) in [("one", gzip(&a, 6)), ("members", members), ("named", named)] {
        let mut inflated = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut inflated).unwrap();
        let got = content_of(&gz).unwrap_or_else(|| panic!("{name}: no content view")).unwrap();
        assert!(got == inflated, "{name}: content differs from gzip -dc");
    }
    // Anything else is read as its original bytes and inflated: a zlib stream, bytes after the
    // last member, a stream cut short.
    let gz = gzip(&a, 6);
    let mut trailing = gz.clone();
    trailing.extend_from_slice(b"not gzip");
    for (name, input) in [("zlib", zlib(&a, 6)), ("trailing", trailing), ("cut", gz[..gz.len() - 5].to_vec())] {
        assert!(content_of(&input).is_none(), "{name}");
    }
    // A trailer whose CRC-32 does not match the content is an error, as with an inflater.
    let mut bad = gz.clone();
    let n = bad.len();
    bad[n - 8] ^= 0x40;
    let e = content_of(&bad).unwrap().unwrap_err().to_string();
    assert!(e.contains("CRC-32"), "{e}");
}

/// The first offset where a signature starts or may start, found byte by byte.
fn signature_by_bytes(b: &[u8]) -> Option<usize> {
    (0..b.len()).find(|&p| matches!(b[p], 0x1f | b'P') && signature_at(&b[p..]))
}

proptest! {
    #[test]
    fn the_signature_search_stops_where_a_byte_by_byte_scan_does(
        b in proptest::collection::vec(prop_oneof![
            Just(0x1fu8), Just(0x8b), Just(8), Just(0), Just(b'P'), Just(b'K'), Just(3), Just(4),
            Just(0xe0), Just(0x20), any::<u8>(),
        ], 0..200),
    ) {
        prop_assert_eq!(find_signature(&b, false, false), signature_by_bytes(&b));
    }
}
