//! Tests of the zip and tar checkers on archives built here (every layout variant, every cut,
//! flipped bytes), and of recognition by content. Archives written by Python's zipfile and
//! GNU tar are tested in tests/drill_zip.rs and tests/drill_tar.rs.

use super::*;
use std::io::Write;

// ---- a small zip writer ----

#[derive(Clone, Copy, Default)]
struct Opt {
    deflate: bool,
    descriptor: bool,
    zip64: bool,
    encrypted: bool,
    aes: bool,
}

struct Z {
    out: Vec<u8>,
    cd: Vec<u8>,
    n: u64,
    zip64: bool,
}

fn p16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn p32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn p64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

impl Z {
    fn new() -> Z {
        Z { out: Vec::new(), cd: Vec::new(), n: 0, zip64: false }
    }

    fn add(&mut self, name: &str, data: &[u8], o: Opt) {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        let body = if o.deflate {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        } else {
            data.to_vec()
        };
        let (cs, us) = (body.len() as u64, data.len() as u64);
        let offset = self.out.len() as u64;
        let flags = (o.descriptor as u16) << 3 | o.encrypted as u16;
        let method = if o.aes {
            99
        } else if o.deflate {
            8
        } else {
            0
        };
        let mut extra = Vec::new();
        if o.zip64 {
            p16(&mut extra, 1);
            p16(&mut extra, 16);
            p64(&mut extra, if o.descriptor { 0 } else { us });
            p64(&mut extra, if o.descriptor { 0 } else { cs });
        }
        if o.aes {
            p16(&mut extra, 0x9901);
            p16(&mut extra, 7);
            extra.extend_from_slice(&[2, 0, b'A', b'E', 3, 8, 0]);
        }
        let h = &mut self.out;
        p32(h, 0x0403_4b50);
        p16(h, if o.zip64 { 45 } else { 20 });
        p16(h, flags);
        p16(h, method);
        p16(h, 0);
        p16(h, 0x21);
        let small = |x: u64| if o.zip64 { 0xFFFF_FFFF } else { x as u32 };
        if o.descriptor {
            p32(h, 0);
            p32(h, if o.zip64 { 0xFFFF_FFFF } else { 0 });
            p32(h, if o.zip64 { 0xFFFF_FFFF } else { 0 });
        } else {
            p32(h, crc);
            p32(h, small(cs));
            p32(h, small(us));
        }
        p16(h, name.len() as u16);
        p16(h, extra.len() as u16);
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(&extra);
        h.extend_from_slice(&body);
        if o.descriptor {
            p32(h, 0x0807_4b50);
            p32(h, crc);
            if o.zip64 {
                p64(h, cs);
                p64(h, us);
            } else {
                p32(h, cs as u32);
                p32(h, us as u32);
            }
        }
        // Central directory entry.
        let mut cx = Vec::new();
        if o.zip64 {
            p16(&mut cx, 1);
            p16(&mut cx, 24);
            p64(&mut cx, us);
            p64(&mut cx, cs);
            p64(&mut cx, offset);
            self.zip64 = true;
        }
        if o.aes {
            p16(&mut cx, 0x9901);
            p16(&mut cx, 7);
            cx.extend_from_slice(&[2, 0, b'A', b'E', 3, 8, 0]);
        }
        let c = &mut self.cd;
        p32(c, 0x0201_4b50);
        p16(c, 20);
        p16(c, if o.zip64 { 45 } else { 20 });
        p16(c, flags);
        p16(c, method);
        p16(c, 0);
        p16(c, 0x21);
        p32(c, crc);
        p32(c, small(cs));
        p32(c, small(us));
        p16(c, name.len() as u16);
        p16(c, cx.len() as u16);
        p16(c, 0);
        p16(c, 0);
        p16(c, 0);
        p32(c, 0);
        p32(c, if o.zip64 { 0xFFFF_FFFF } else { offset as u32 });
        c.extend_from_slice(name.as_bytes());
        c.extend_from_slice(&cx);
        self.n += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        let cd_at = self.out.len() as u64;
        let cd_len = self.cd.len() as u64;
        self.out.extend_from_slice(&self.cd);
        let o = &mut self.out;
        if self.zip64 {
            let rec_at = o.len() as u64;
            p32(o, 0x0606_4b50);
            p64(o, 44);
            p16(o, 45);
            p16(o, 45);
            p32(o, 0);
            p32(o, 0);
            p64(o, self.n);
            p64(o, self.n);
            p64(o, cd_len);
            p64(o, cd_at);
            p32(o, 0x0706_4b50);
            p32(o, 0);
            p64(o, rec_at);
            p32(o, 1);
        }
        p32(o, 0x0605_4b50);
        p16(o, 0);
        p16(o, 0);
        let n = if self.zip64 { 0xFFFF } else { self.n as u16 };
        p16(o, n);
        p16(o, n);
        p32(o, if self.zip64 { 0xFFFF_FFFF } else { cd_len as u32 });
        p32(o, if self.zip64 { 0xFFFF_FFFF } else { cd_at as u32 });
        p16(o, 0);
        self.out
    }
}

const JSONL: &str = "{\"model\": \"auth.user\", \"pk\": 1, \"fields\": {\"username\": \"a\"}}\n\
{\"model\": \"reports.finding\", \"pk\": 1, \"fields\": {\"title\": \"x\\ny\"}}\n\
{\"model\": \"auth.user\", \"pk\": 2, \"fields\": {}}\n";

fn app_zip(o: Opt) -> Vec<u8> {
    let mut z = Z::new();
    z.add("backup.jsonl", JSONL.as_bytes(), o);
    z.add("uploadedfiles/", b"", Opt { deflate: false, ..o });
    z.add("uploadedfiles/report.pdf", &[42u8; 3000], o);
    z.add("uploadedimages/logo.png", b"\x89PNG....", o);
    z.finish()
}

fn zip_variants() -> Vec<Opt> {
    let mut v = Vec::new();
    for deflate in [false, true] {
        for descriptor in [false, true] {
            for zip64 in [false, true] {
                v.push(Opt { deflate, descriptor, zip64, ..Default::default() });
            }
        }
    }
    v
}

#[test]
fn zips_of_every_layout_are_verified_with_model_counts() {
    for o in zip_variants() {
        let a = app_zip(o);
        assert_eq!(sniff(&a), Kind::Zip);
        let r = zip::verify(&a).unwrap_or_else(|e| panic!("{}: {e}", o.deflate));
        assert!(r.damage.is_empty() && r.not_verifiable.is_none(), "{:?} {:?}", r.damage, r.not_verifiable);
        assert_eq!((r.members, r.files, r.directories), (4, 3, 1));
        assert_eq!(r.zip64, o.zip64);
        assert!(r.listed.iter().all(|m| m.verified));
        let models = r.models();
        assert_eq!(models.get("auth.user"), Some(&2));
        assert_eq!(models.get("reports.finding"), Some(&1));
        assert_eq!(r.jsonl_objects(), 3);
        assert_eq!(r.per_directory.get("uploadedfiles/"), Some(&(2, 3000)));
        assert!(r.bytes_read >= a.len() as u64, "every byte read");
    }
    let empty = Z::new().finish();
    assert_eq!(sniff(&empty), Kind::Zip);
    let r = zip::verify(&empty).unwrap();
    assert_eq!(r.members, 0);
    assert!(r.damage.is_empty());
}

#[test]
fn zip_damage_is_named() {
    let o = Opt::default();
    // A flipped byte in a stored member: its CRC.
    let mut a = app_zip(o);
    let at = a.windows(5).position(|w| w == [42u8; 5]).unwrap();
    a[at + 100] ^= 1;
    let r = zip::verify(&a).unwrap();
    assert!(
        r.damage[0].contains("uploadedfiles/report.pdf") && r.damage[0].contains("CRC-32 mismatch"),
        "{:?}",
        r.damage
    );

    // In deflated data.
    let a = app_zip(Opt { deflate: true, ..o });
    let r0 = zip::verify(&a).unwrap();
    assert!(r0.damage.is_empty());
    let mut b = a.clone();
    b[60] ^= 0x55;
    let r = zip::verify(&b).unwrap();
    assert!(!r.damage.is_empty() && r.damage[0].contains("backup.jsonl"), "{:?}", r.damage);

    // Trailing garbage, a gap between members.
    let mut b = app_zip(o);
    b.extend_from_slice(b"garbage");
    let r = zip::verify(&b).unwrap();
    assert!(r.damage.iter().any(|d| d.contains("7 bytes of trailing garbage")), "{:?}", r.damage);

    // A local header that disagrees with the central directory.
    let mut b = app_zip(o);
    let name = b.windows(12).position(|w| w == b"backup.jsonl").unwrap();
    b[name] = b'B';
    let r = zip::verify(&b).unwrap();
    assert!(r.damage[0].contains("does not match the central directory"), "{:?}", r.damage);

    // A JSON-lines member with a bad line.
    let mut z = Z::new();
    z.add("backup.jsonl", b"{\"model\": \"a\"}\n{\"model\": \n", o);
    let r = zip::verify(&z.finish()).unwrap();
    assert!(r.damage[0].contains("line 2 is not JSON"), "{:?}", r.damage);
}

#[test]
fn every_cut_of_a_zip_is_reported() {
    for o in [Opt::default(), Opt { deflate: true, descriptor: true, zip64: true, ..Default::default() }] {
        let a = app_zip(o);
        for n in 0..a.len() {
            let cut = a[..n].to_vec();
            if let Ok(r) = zip::verify(&cut) {
                assert!(!r.damage.is_empty(), "cut at {n} of {} reads as complete", a.len());
            }
        }
    }
}

#[test]
fn flipped_zip_bytes_never_panic() {
    let a = app_zip(Opt { deflate: true, descriptor: true, zip64: true, ..Default::default() });
    for i in 0..a.len() {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut b = a.clone();
            b[i] ^= x;
            let _ = zip::verify(&b);
        }
    }
}

#[test]
fn encrypted_zips_are_not_verifiable() {
    for o in [Opt { encrypted: true, ..Default::default() }, Opt { aes: true, ..Default::default() }] {
        let r = zip::verify(&app_zip(o)).unwrap();
        assert!(r.damage.is_empty(), "{:?}", r.damage);
        let why = r.not_verifiable.unwrap();
        assert!(why.contains("encrypted") && why.contains("vault encrypts"), "{why}");
        assert!(r.jsonl.is_empty());
    }
}

// ---- tar ----

fn tar_header(name: &str, size: u64, kind: u8, gnu: bool) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    if size < 8u64.pow(11) {
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    if gnu {
        h[257..265].copy_from_slice(b"ustar  \0");
    } else {
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
    }
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn tar_add(out: &mut Vec<u8>, name: &str, data: &[u8], kind: u8, gnu: bool) {
    out.extend_from_slice(&tar_header(name, data.len() as u64, kind, gnu));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar_end(mut out: Vec<u8>) -> Vec<u8> {
    out.resize(out.len() + 1024, 0);
    out.resize(out.len().div_ceil(10240) * 10240, 0);
    out
}

fn sample_tar(gnu: bool) -> Vec<u8> {
    let mut t = Vec::new();
    tar_add(&mut t, "uploads/", b"", b'5', gnu);
    tar_add(&mut t, "uploads/a.txt", b"hello", b'0', gnu);
    tar_add(&mut t, "uploads/big.bin", &[9u8; 5000], b'0', gnu);
    tar_add(&mut t, "uploads/link", b"", b'2', gnu);
    tar_end(t)
}

#[test]
fn tars_are_verified_and_every_cut_is_reported() {
    for gnu in [false, true] {
        let t = sample_tar(gnu);
        assert_eq!(sniff(&t), Kind::Tar);
        let r = tar::verify(&t[..]).unwrap();
        assert_eq!((r.members, r.files, r.directories, r.symlinks), (4, 2, 1, 1));
        assert_eq!(r.data_bytes, 5005);
        assert_eq!(r.format, if gnu { "gnu" } else { "ustar" });
        assert_eq!(r.bytes, t.len() as u64);
        // 15 blocks of members, then the two end blocks.
        for n in 0..15 * 512 + 1024 {
            assert!(tar::verify(&t[..n]).is_err(), "cut at {n}");
        }
    }
}

#[test]
fn tar_damage_is_named() {
    let t = sample_tar(false);
    let mut b = t.clone();
    b[512 + 3] ^= 1; // the name of the second member
    let e = tar::verify(&b[..]).unwrap_err().to_string();
    assert!(e.contains("offset 512") && e.contains("checksum mismatch"), "{e}");
    let mut b = t.clone();
    b.extend_from_slice(b"junk");
    let e = tar::verify(&b[..]).unwrap_err().to_string();
    assert!(e.contains("trailing garbage"), "{e}");
    let mut b = t.clone();
    let end = 512 * 15;
    b[end + 600] = 1; // inside the second end block
    let e = tar::verify(&b[..]).unwrap_err().to_string();
    assert!(e.contains("lone zero block") || e.contains("checksum"), "{e}");
}

#[test]
fn pax_and_gnu_long_names_and_big_sizes() {
    let mut t = Vec::new();
    let long = "d/".repeat(80) + "file";
    let rec = |k: &str, v: &str| {
        // The length counts the whole record, its own digits included.
        let body = format!(" {k}={v}\n");
        let mut n = body.len() + 1;
        while body.len() + n.to_string().len() != n {
            n = body.len() + n.to_string().len();
        }
        format!("{n}{body}")
    };
    let pax = rec("path", &long) + &rec("size", "7");
    tar_add(&mut t, "PaxHeader", pax.as_bytes(), b'x', false);
    // The header's own size field says 0; the pax size (7) wins.
    t.extend_from_slice(&tar_header("short", 0, b'0', false));
    t.extend_from_slice(b"seven!!");
    t.resize(t.len().div_ceil(512) * 512, 0);
    tar_add(&mut t, "././@LongLink", format!("{long}2\0").as_bytes(), b'L', true);
    tar_add(&mut t, "short2", b"x", b'0', true);
    let t = tar_end(t);
    let r = tar::verify(&t[..]).unwrap();
    assert_eq!((r.members, r.files, r.data_bytes), (2, 2, 8));
    assert_eq!(r.format, "pax");
    let h = tar_header("huge", 10 << 30, b'0', true);
    assert_eq!(&h[124..125], &[0x80]);
}

#[test]
fn kinds_are_recognised_by_content() {
    assert_eq!(sniff(&[0x6d, 0xe2, 0x99, 0x81, 0]), Kind::Mongodump);
    assert_eq!(sniff(b"PGDMP\x01\x0e\x00"), Kind::PgCustom);
    assert_eq!(sniff(b"--\n-- PostgreSQL database dump\n--\n"), Kind::PgPlain);
    assert_eq!(sniff(b"--\n-- PostgreSQL database cluster dump\n--\n"), Kind::PgPlain);
    assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Kind::Gzip);
    assert_eq!(sniff(b"PK\x03\x04"), Kind::Zip);
    assert_eq!(sniff(b"hello"), Kind::Unknown);
    assert_eq!(sniff(&[0u8; 1024]), Kind::Unknown);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[5u8; 100_000]).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(check_gzip(&gz[..]).unwrap(), 100_000);
    assert!(check_gzip(&gz[..gz.len() - 3]).is_err());
    let mut bad = gz.clone();
    let n = bad.len();
    bad[n - 6] ^= 1; // the CRC
    assert!(check_gzip(&bad[..]).is_err());
}

#[test]
fn flipped_tar_bytes_never_panic() {
    let t = sample_tar(true);
    // Headers and the start of the data; the zero padding is all alike.
    for i in 0..5 * 512 {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut b = t.clone();
            b[i] ^= x;
            let _ = tar::verify(&b[..]);
        }
    }
}
