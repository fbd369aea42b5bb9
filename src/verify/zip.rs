//! Checking zip archives (PKWARE APPNOTE 6.3), as application backup APIs hand them out.
//!
//! The end-of-central-directory record (and, for zip64, its locator and the zip64 record) is
//! found at the end of the file; the central directory it points to lists every member. Then
//! every member is read in file order: its local header must match its central directory
//! entry (name, method, flags, CRC-32 and sizes, from the data descriptor when the writer
//! streamed), its data are decompressed (stored or deflate) and their CRC-32 and length
//! compared with the directory's. The members, the central directory and its end records must
//! tile the file exactly: a gap, an overlap, bytes before the first member or after the end
//! record (trailing garbage) are damage, and a file cut short loses its end record.
//!
//! Members named `*.jsonl` (JSON lines, such as a Django `dumpdata` fixture) are also parsed
//! line by line: every line must be a JSON value, and objects are counted per `model` field.
//!
//! A member the application encrypted (general-purpose flag bit 0, or the WinZip AES extra
//! field 0x9901) or compressed with another method cannot be checked: the archive is then
//! reported as not verifiable (its structure is still checked). Memory: the central directory
//! (bounded by the file), one 1 MiB read, and one JSON line (at most [`MAX_JSON_LINE`]).

use super::ReadAt;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const LOCATOR_SIG: u32 = 0x0706_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const EOCD_LEN: u64 = 22;
const LOCATOR_LEN: u64 = 20;
/// The longest zip comment, hence how far from the end the end record can be.
const MAX_COMMENT: u64 = 0xFFFF;
/// A central directory larger than this is damage (about 2.5 million members).
const MAX_CENTRAL: u64 = 256 << 20;
/// Longest JSON line parsed.
pub const MAX_JSON_LINE: usize = 64 << 20;
/// Members listed one by one in the report; the rest are only counted (per directory too).
pub const MEMBERS_LISTED: usize = 1000;
const READ: usize = 1 << 20;

/// Whether `head` starts like a zip: a local file header, or the end record of an empty zip.
pub fn is_zip(head: &[u8]) -> bool {
    head.len() >= 4 && matches!(le32(head, 0), LOCAL_SIG | EOCD_SIG)
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// One member, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Uncompressed size.
    pub size: u64,
    pub compressed: u64,
    /// `stored`, `deflate`, or `method N`.
    pub method: String,
    pub encrypted: bool,
    /// CRC-32 and size checked against the central directory.
    pub verified: bool,
    pub error: Option<String>,
}

/// One JSON-lines member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonLines {
    pub member: String,
    pub lines: u64,
    /// Objects with a string `model` field, per model.
    pub models: BTreeMap<String, u64>,
    /// Lines that are JSON but not an object with a `model`.
    pub other: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZipReport {
    pub zip64: bool,
    pub members: u64,
    pub files: u64,
    pub directories: u64,
    /// Uncompressed bytes of all members.
    pub bytes: u64,
    pub compressed_bytes: u64,
    /// The first [`MEMBERS_LISTED`] members in file order.
    pub listed: Vec<Member>,
    /// Members and uncompressed bytes per top-level directory (`uploadedfiles/`), and `""`
    /// for members at the top.
    pub per_directory: BTreeMap<String, (u64, u64)>,
    pub jsonl: Vec<JsonLines>,
    /// Why (part of) the archive could not be checked: encryption, an unknown method.
    pub not_verifiable: Option<String>,
    /// Damage, each naming the member (or record) and offset.
    pub damage: Vec<String>,
    /// Bytes of the file read.
    pub bytes_read: u64,
}

impl ZipReport {
    /// Objects per model over all JSON-lines members.
    pub fn models(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for j in &self.jsonl {
            for (k, v) in &j.models {
                *m.entry(k.clone()).or_insert(0) += v;
            }
        }
        m
    }

    pub fn jsonl_objects(&self) -> u64 {
        self.jsonl.iter().map(|j| j.models.values().sum::<u64>() + j.other).sum()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    name: Vec<u8>,
    flags: u16,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    offset: u64,
    zip64: bool,
    aes: bool,
    /// Where its central directory record is (for messages).
    cd_at: u64,
}

impl Entry {
    fn display(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
    fn encrypted(&self) -> bool {
        self.flags & 1 != 0 || self.aes
    }
}

struct Src<'a> {
    f: &'a dyn ReadAt,
    read: u64,
}

impl Src<'_> {
    fn get(&mut self, off: u64, len: usize) -> Result<Vec<u8>> {
        let b = self.f.read_at(off, len)?;
        self.read += b.len() as u64;
        Ok(b)
    }
    fn exact(&mut self, off: u64, len: usize, what: &dyn Fn() -> String) -> Result<Vec<u8>> {
        let b = self.get(off, len)?;
        if b.len() < len {
            return Err(Error::corrupt(format!(
                "{}: cut short: the file ends at offset {} (needs {} bytes from offset {off})",
                what(),
                off + b.len() as u64,
                len
            )));
        }
        Ok(b)
    }
}

/// Checks the zip archive `f` (see the module doc). `Err` for damage that leaves the archive
/// unreadable (no end record, a central directory that does not parse); damage of single
/// members and layout problems are listed in [`ZipReport::damage`].
pub fn verify(f: &dyn ReadAt) -> Result<ZipReport> {
    let mut src = Src { f, read: 0 };
    let mut rep = ZipReport::default();
    let r = run(&mut src, &mut rep);
    rep.bytes_read = src.read;
    r.map(|_| rep)
}

fn run(src: &mut Src<'_>, rep: &mut ZipReport) -> Result<()> {
    let size = src.f.size();
    if size < EOCD_LEN {
        return Err(Error::corrupt(format!(
            "{size} bytes: too short for a zip (no end-of-central-directory record; cut short?)"
        )));
    }
    // The end record: searched backwards over the last 64 KiB + 22 bytes.
    let tail_len = size.min(EOCD_LEN + MAX_COMMENT);
    let tail_at = size - tail_len;
    let tail = src.exact(tail_at, tail_len as usize, &|| "the end of the zip".into())?;
    let mut found = None;
    let mut i = tail.len().saturating_sub(EOCD_LEN as usize) as i64;
    while i >= 0 {
        let k = i as usize;
        if le32(&tail, k) == EOCD_SIG {
            let comment = le16(&tail, k + 20) as usize;
            if k + EOCD_LEN as usize + comment <= tail.len() {
                found = Some(k);
                break;
            }
        }
        i -= 1;
    }
    let Some(k) = found else {
        return Err(Error::corrupt(format!(
            "no end-of-central-directory record in the last {} bytes: the zip is cut short or is not a complete \
             zip ({size} bytes)",
            tail.len()
        )));
    };
    let eocd_at = tail_at + k as u64;
    let e = &tail[k..];
    let comment = le16(e, 20) as u64;
    let end = eocd_at + EOCD_LEN + comment;
    if end < size {
        rep.damage.push(format!(
            "{} bytes of trailing garbage after the end-of-central-directory record (from offset {end})",
            size - end
        ));
    }
    let (disk, cd_disk) = (le16(e, 4), le16(e, 6));
    let (mut entries, mut cd_size, mut cd_at) = (le16(e, 10) as u64, le32(e, 12) as u64, le32(e, 16) as u64);
    let mut cd_end_expected = eocd_at;
    if entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_at == 0xFFFF_FFFF || disk == 0xFFFF {
        // zip64: the locator sits just before the end record.
        if eocd_at < LOCATOR_LEN {
            return Err(Error::corrupt("the end record asks for zip64, but there is no zip64 locator"));
        }
        let loc_at = eocd_at - LOCATOR_LEN;
        let loc = src.exact(loc_at, LOCATOR_LEN as usize, &|| "the zip64 locator".into())?;
        if le32(&loc, 0) != LOCATOR_SIG {
            return Err(Error::corrupt(format!("no zip64 end-of-central-directory locator at offset {loc_at}")));
        }
        let rec_at = le64(&loc, 8);
        if rec_at + 56 > loc_at {
            return Err(Error::corrupt(format!("the zip64 locator points past itself (to offset {rec_at})")));
        }
        let rec = src.exact(rec_at, 56, &|| "the zip64 end record".into())?;
        if le32(&rec, 0) != EOCD64_SIG {
            return Err(Error::corrupt(format!("no zip64 end-of-central-directory record at offset {rec_at}")));
        }
        let rec_len = le64(&rec, 4).saturating_add(12);
        if rec_at.saturating_add(rec_len) != loc_at {
            rep.damage.push(format!(
                "the zip64 end record at offset {rec_at} is {rec_len} bytes long but the locator is at offset {loc_at}"
            ));
        }
        if le32(&rec, 16) != 0 || le32(&rec, 20) != 0 || le32(&loc, 4) != 0 || le32(&loc, 16) > 1 {
            rep.not_verifiable = Some("a multi-disk (spanned) zip".into());
            return Ok(());
        }
        entries = le64(&rec, 32);
        cd_size = le64(&rec, 40);
        cd_at = le64(&rec, 48);
        cd_end_expected = rec_at;
        rep.zip64 = true;
    } else if disk != 0 || cd_disk != 0 {
        rep.not_verifiable = Some("a multi-disk (spanned) zip".into());
        return Ok(());
    }
    if cd_size > MAX_CENTRAL || cd_at.saturating_add(cd_size) > cd_end_expected {
        return Err(Error::corrupt(format!(
            "the central directory ({cd_size} bytes at offset {cd_at}) does not end before its end record at offset \
             {cd_end_expected}: damaged end record"
        )));
    }
    if cd_at + cd_size < cd_end_expected {
        rep.damage.push(format!(
            "{} unexpected bytes between the central directory and its end record (offset {})",
            cd_end_expected - cd_at - cd_size,
            cd_at + cd_size
        ));
    }
    let cd = src.exact(cd_at, cd_size as usize, &|| "the central directory".into())?;
    let mut list = parse_central(&cd, cd_at, entries)?;
    rep.members = list.len() as u64;

    // The members, in file order, must tile the file up to the central directory.
    list.sort_by_key(|e| e.offset);
    let mut expected = 0u64;
    let mut unverifiable: Vec<String> = Vec::new();
    for e in &list {
        if e.offset > expected {
            rep.damage.push(format!(
                "{} unexpected bytes at offset {expected} (before member {:?})",
                e.offset - expected,
                e.display()
            ));
        } else if e.offset < expected {
            rep.damage.push(format!(
                "member {:?} at offset {} overlaps the member before it (which ends at offset {expected})",
                e.display(),
                e.offset
            ));
        }
        let (m, next) = check_member(src, e, cd_at, rep)?;
        if m.encrypted {
            unverifiable.push(format!("{:?} is encrypted", m.name));
        } else if !m.verified && m.error.is_none() {
            unverifiable.push(format!("{:?} uses {}", m.name, m.method));
        }
        if let Some(err) = &m.error {
            rep.damage.push(format!("member {:?}: {err}", m.name));
        }
        rep.bytes += m.size;
        rep.compressed_bytes += m.compressed;
        if m.name.ends_with('/') {
            rep.directories += 1;
        } else {
            rep.files += 1;
        }
        let top = match m.name.find('/') {
            Some(i) => m.name[..=i].to_string(),
            None => String::new(),
        };
        let d = rep.per_directory.entry(top).or_insert((0, 0));
        d.0 += 1;
        d.1 += m.size;
        if rep.listed.len() < MEMBERS_LISTED {
            rep.listed.push(m);
        }
        expected = expected.max(next);
    }
    if expected < cd_at {
        rep.damage.push(format!(
            "{} unexpected bytes at offset {expected} between the last member and the central directory",
            cd_at - expected
        ));
    } else if expected > cd_at {
        rep.damage.push(format!(
            "the last member ends at offset {expected}, inside the central directory (at offset {cd_at})"
        ));
    }
    if !unverifiable.is_empty() {
        let n = unverifiable.len();
        let first: Vec<String> = unverifiable.into_iter().take(3).collect();
        let encrypted = first.iter().any(|s| s.ends_with("encrypted"));
        rep.not_verifiable = Some(format!(
            "{n} member(s) cannot be checked ({}{}){}",
            first.join(", "),
            if n > 3 { ", ..." } else { "" },
            if encrypted {
                ": the application encrypted them (its own aes_key or password); store the backup unencrypted, \
                 the vault encrypts it"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

fn parse_central(cd: &[u8], cd_at: u64, entries: u64) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut p = 0usize;
    while p < cd.len() {
        let at = cd_at + p as u64;
        if cd.len() - p < 46 || le32(cd, p) != CENTRAL_SIG {
            return Err(Error::corrupt(format!(
                "central directory entry {} at offset {at}: bad signature or cut short",
                out.len() + 1
            )));
        }
        let h = &cd[p..];
        let (n, m, k) = (le16(h, 28) as usize, le16(h, 30) as usize, le16(h, 32) as usize);
        if 46 + n + m + k > h.len() {
            return Err(Error::corrupt(format!(
                "central directory entry {} at offset {at} runs past the directory",
                out.len() + 1
            )));
        }
        let mut e = Entry {
            name: h[46..46 + n].to_vec(),
            flags: le16(h, 8),
            method: le16(h, 10),
            crc: le32(h, 16),
            csize: le32(h, 20) as u64,
            usize: le32(h, 24) as u64,
            offset: le32(h, 42) as u64,
            zip64: false,
            aes: false,
            cd_at: at,
        };
        let extra = &h[46 + n..46 + n + m];
        read_extra(extra, &mut e).map_err(|msg| {
            Error::corrupt(format!("central directory entry {:?} at offset {at}: {msg}", e.display()))
        })?;
        out.push(e);
        p += 46 + n + m + k;
    }
    if out.len() as u64 != entries {
        return Err(Error::corrupt(format!(
            "the end record counts {entries} members, the central directory holds {}",
            out.len()
        )));
    }
    Ok(out)
}

/// Applies the zip64 (0x0001) and AES (0x9901) extra fields to `e`.
fn read_extra(mut extra: &[u8], e: &mut Entry) -> std::result::Result<(), String> {
    while extra.len() >= 4 {
        let (id, len) = (le16(extra, 0), le16(extra, 2) as usize);
        if 4 + len > extra.len() {
            return Err("an extra field runs past its header".into());
        }
        let data = &extra[4..4 + len];
        match id {
            0x0001 => {
                let mut q = 0;
                let mut take = |what: &str| -> std::result::Result<u64, String> {
                    if q + 8 > data.len() {
                        return Err(format!("the zip64 extra field lacks the {what}"));
                    }
                    q += 8;
                    Ok(le64(data, q - 8))
                };
                if e.usize == 0xFFFF_FFFF {
                    e.usize = take("uncompressed size")?;
                }
                if e.csize == 0xFFFF_FFFF {
                    e.csize = take("compressed size")?;
                }
                if e.offset == 0xFFFF_FFFF {
                    e.offset = take("local header offset")?;
                }
                e.zip64 = true;
            }
            0x9901 => e.aes = true,
            _ => {}
        }
        extra = &extra[4 + len..];
    }
    Ok(())
}

/// Checks one member; returns it and the offset where it ends.
fn check_member(src: &mut Src<'_>, e: &Entry, cd_at: u64, rep: &mut ZipReport) -> Result<(Member, u64)> {
    let name = e.display();
    let mut m = Member {
        name: name.clone(),
        size: e.usize,
        compressed: e.csize,
        method: match e.method {
            0 => "stored".into(),
            8 => "deflate".into(),
            99 => "AES".into(),
            n => format!("method {n}"),
        },
        encrypted: e.encrypted(),
        verified: false,
        error: None,
    };
    let what = || format!("member {name:?} (local header at offset {})", e.offset);
    let h = src.exact(e.offset, 30, &what)?;
    if le32(&h, 0) != LOCAL_SIG {
        m.error = Some(format!("no local header at offset {} (its central directory entry at {})", e.offset, e.cd_at));
        return Ok((m, e.offset));
    }
    let (n, x) = (le16(&h, 26) as usize, le16(&h, 28) as usize);
    let vars = src.exact(e.offset + 30, n + x, &what)?;
    let data_at = e.offset + 30 + (n + x) as u64;
    let mut local = Entry {
        name: vars[..n].to_vec(),
        flags: le16(&h, 6),
        method: le16(&h, 8),
        crc: le32(&h, 14),
        csize: le32(&h, 18) as u64,
        usize: le32(&h, 22) as u64,
        offset: e.offset,
        zip64: false,
        aes: false,
        cd_at: e.cd_at,
    };
    if let Err(msg) = read_extra(&vars[n..], &mut local) {
        m.error = Some(format!("local header: {msg}"));
    }
    let mut mismatch = Vec::new();
    if local.name != e.name {
        mismatch.push(format!("name {:?}", local.display()));
    }
    if local.method != e.method {
        mismatch.push(format!("method {}", local.method));
    }
    if (local.flags ^ e.flags) & 0x0009 != 0 {
        mismatch.push(format!("flags {:#06x}", local.flags));
    }
    let streamed = e.flags & 0x0008 != 0;
    if !streamed {
        if local.crc != e.crc {
            mismatch.push(format!("CRC-32 {:08x}", local.crc));
        }
        if local.csize != e.csize || local.usize != e.usize {
            mismatch.push(format!("sizes {}/{}", local.csize, local.usize));
        }
    }
    if !mismatch.is_empty() && m.error.is_none() {
        m.error = Some(format!(
            "the local header at offset {} does not match the central directory: {}",
            e.offset,
            mismatch.join(", ")
        ));
    }
    let data_end = data_at.saturating_add(e.csize);
    if data_end > cd_at {
        m.error.get_or_insert_with(|| {
            format!(
                "its data ({} bytes from offset {data_at}) run into the central directory at offset {cd_at}",
                e.csize
            )
        });
        return Ok((m, data_end));
    }
    // The data: decompressed and checked, or only read (so that every byte is authenticated).
    let jsonl = name.to_ascii_lowercase().ends_with(".jsonl");
    let mut lines = jsonl.then(|| JsonCounter::new(&name));
    let checkable = !e.encrypted() && matches!(e.method, 0 | 8);
    let mut crc = flate2::Crc::new();
    let mut inflate = (e.method == 8).then(|| flate2::Decompress::new(false));
    let mut ended = e.method != 8;
    let mut out = vec![0u8; 256 << 10];
    let mut produced = 0u64;
    let mut off = data_at;
    let mut problem: Option<String> = None;
    while off < data_end {
        let want = ((data_end - off) as usize).min(READ);
        let b = src.exact(off, want, &what)?;
        if checkable && problem.is_none() {
            match inflate.as_mut() {
                None => {
                    crc.update(&b);
                    produced += b.len() as u64;
                    if let Some(l) = lines.as_mut() {
                        l.feed(&b);
                    }
                }
                Some(z) => {
                    let mut input = &b[..];
                    while !input.is_empty() || (!ended && off + want as u64 == data_end) {
                        if ended {
                            problem = Some(format!(
                                "{} bytes after the end of the deflate stream (at offset {})",
                                data_end - (off + (b.len() - input.len()) as u64),
                                off + (b.len() - input.len()) as u64
                            ));
                            break;
                        }
                        let (i0, o0) = (z.total_in(), z.total_out());
                        let r = z.decompress(input, &mut out, flate2::FlushDecompress::None);
                        let used = (z.total_in() - i0) as usize;
                        let made = (z.total_out() - o0) as usize;
                        input = &input[used..];
                        crc.update(&out[..made]);
                        produced += made as u64;
                        if let Some(l) = lines.as_mut() {
                            l.feed(&out[..made]);
                        }
                        match r {
                            Ok(flate2::Status::StreamEnd) => ended = true,
                            Ok(_) if used == 0 && made == 0 => {
                                if input.is_empty() {
                                    break;
                                }
                                problem = Some(format!("the deflate stream makes no progress at offset {off}"));
                                break;
                            }
                            Ok(_) => {}
                            Err(err) => {
                                problem = Some(format!(
                                    "deflate: {err} (in the bytes from offset {})",
                                    off + (b.len() - input.len()) as u64
                                ));
                                break;
                            }
                        }
                    }
                }
            }
        }
        off += want as u64;
    }
    // The data descriptor of a streamed member: CRC-32 and sizes, usually after a signature.
    // Sizes are 8 bytes when the local header has a zip64 field (some writers use 8 bytes for
    // large members without it): the reading that matches the central directory is taken.
    let mut end = data_end;
    if streamed {
        let d = src.get(data_end, 24)?;
        let q = if d.len() >= 16 && le32(&d, 0) == DESCRIPTOR_SIG { 4 } else { 0 };
        let narrow = (d.len() >= q + 12).then(|| (le32(&d, q), le32(&d, q + 4) as u64, le32(&d, q + 8) as u64, 12));
        let wide = (d.len() >= q + 20).then(|| (le32(&d, q), le64(&d, q + 4), le64(&d, q + 12), 20));
        let want = (e.crc, e.csize, e.usize);
        // The expected width first: an empty member reads as zeros either way.
        let order = if local.zip64 { [wide, narrow] } else { [narrow, wide] };
        let pick = order.into_iter().flatten().find(|x| (x.0, x.1, x.2) == want).or(order[0]);
        let Some((c, cs, us, len)) = pick else {
            return Err(Error::corrupt(format!("{}: cut short in its data descriptor at offset {data_end}", what())));
        };
        end = data_end + (q + len) as u64;
        if (c, cs, us) != want {
            m.error.get_or_insert_with(|| {
                format!(
                    "its data descriptor at offset {data_end} (CRC-32 {c:08x}, sizes {cs}/{us}) does not match the \
                     central directory (CRC-32 {:08x}, sizes {}/{})",
                    e.crc, e.csize, e.usize
                )
            });
        }
    }
    let (want_crc, want_u) = (e.crc, e.usize);
    if checkable {
        if let Some(p) = problem {
            m.error.get_or_insert(p);
        } else if !ended {
            m.error.get_or_insert_with(|| "the deflate stream is cut short (no final block)".into());
        } else if produced != want_u {
            m.error.get_or_insert_with(|| format!("{produced} bytes of data, the central directory says {want_u}"));
        } else if crc.sum() != want_crc {
            m.error.get_or_insert_with(|| {
                format!("CRC-32 mismatch: the data give {:08x}, the central directory says {want_crc:08x}", crc.sum())
            });
        } else if e.method == 0 && e.csize != e.usize {
            m.error.get_or_insert_with(|| format!("stored, but sizes differ ({}/{})", e.csize, e.usize));
        }
        m.verified = m.error.is_none();
        if let Some(mut l) = lines {
            l.finish();
            if let Some(err) = l.error.take() {
                m.error.get_or_insert(err);
                m.verified = false;
            }
            rep.jsonl.push(l.result);
        }
    }
    Ok((m, end))
}

/// Parses JSON lines fed in pieces and counts objects per `model`.
struct JsonCounter {
    line: Vec<u8>,
    too_long: bool,
    result: JsonLines,
    error: Option<String>,
}

impl JsonCounter {
    fn new(member: &str) -> JsonCounter {
        JsonCounter {
            line: Vec::new(),
            too_long: false,
            result: JsonLines { member: member.to_string(), lines: 0, models: BTreeMap::new(), other: 0 },
            error: None,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push(&data[..i]);
                    self.end_line();
                    data = &data[i + 1..];
                }
                None => {
                    self.push(data);
                    data = &[];
                }
            }
        }
    }

    fn push(&mut self, b: &[u8]) {
        if self.line.len() + b.len() > MAX_JSON_LINE {
            self.too_long = true;
        } else if !self.too_long {
            self.line.extend_from_slice(b);
        }
    }

    fn end_line(&mut self) {
        self.result.lines += 1;
        let n = self.result.lines;
        if self.too_long {
            self.fail(format!("line {n} is longer than {} MiB", MAX_JSON_LINE >> 20));
        } else if !self.line.iter().all(|b| b.is_ascii_whitespace()) {
            match serde_json::from_slice::<serde_json::Value>(&self.line) {
                Ok(serde_json::Value::Object(o)) => match o.get("model").and_then(|m| m.as_str()) {
                    Some(model) => *self.result.models.entry(model.to_string()).or_insert(0) += 1,
                    None => self.result.other += 1,
                },
                Ok(_) => self.result.other += 1,
                Err(e) => self.fail(format!("line {n} is not JSON: {e}")),
            }
        }
        self.line.clear();
        self.too_long = false;
    }

    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    fn finish(&mut self) {
        if !self.line.is_empty() || self.too_long {
            self.end_line();
        }
    }
}
