//! Checking tar archives: POSIX ustar, pax (extended headers) and GNU tar (long names,
//! base-256 sizes, old-style sparse files), as `tar -c` writes them.
//!
//! A tar archive is a run of 512-byte blocks: a header per member, then its data rounded up to
//! whole blocks, and at the end two zero blocks (GNU tar then pads to its record size, 10 KiB by
//! default, with more zeros). Every header's checksum (field at byte 148: the sum of the header's
//! bytes with that field counted as spaces) is checked, and its size field is read (octal, or
//! base-256 for large files; a pax `size` record overrides it). The data are read (the drill reads
//! every byte) but their content is not checked: tar keeps no checksum of it. A file that ends
//! before a member's data do, or without the two end blocks, was cut short; anything but zeros
//! after the end blocks is trailing garbage.
//!
//! [`verify`] reads the archive once, front to back; memory: one block, and a pax header or
//! GNU long name (at most [`MAX_META`] bytes).

use crate::error::{Error, Result};
use std::io::{self, BufReader, Read};

const BLOCK: usize = 512;
/// Longest pax extended header or GNU long name read.
pub const MAX_META: u64 = 16 << 20;

/// Whether `head` (at least 512 bytes) starts with a tar header: the ustar magic and a valid
/// checksum.
pub fn is_tar(head: &[u8]) -> bool {
    head.len() >= BLOCK && &head[257..262] == b"ustar" && checksum_ok(&head[..BLOCK]).is_ok()
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarReport {
    /// `gnu`, `pax`, `ustar` or `v7`.
    pub format: String,
    /// Members, each counted once (pax and GNU long-name headers are part of their member).
    pub members: u64,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Devices, fifos and other types.
    pub other: u64,
    /// Bytes of member data.
    pub data_bytes: u64,
    /// Bytes of the archive read.
    pub bytes: u64,
}

fn octal(field: &[u8]) -> Option<u64> {
    let s: Vec<u8> = field.iter().copied().take_while(|&b| b != 0).collect();
    let s = std::str::from_utf8(&s).ok()?.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// A numeric field: octal, or GNU base-256 when the first byte has its high bit set.
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = (field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    octal(field)
}

fn checksum_ok(h: &[u8]) -> std::result::Result<(), String> {
    let stored = octal(&h[148..156]).ok_or_else(|| "its checksum field is not a number".to_string())?;
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += b as i8 as i64;
    }
    if stored == unsigned || stored as i64 == signed {
        Ok(())
    } else {
        Err(format!("header checksum mismatch (stored {stored}, computed {unsigned})"))
    }
}

fn name_of(h: &[u8]) -> String {
    let field = |r: std::ops::Range<usize>| {
        let f = &h[r];
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let name = field(0..100);
    if &h[257..263] == b"ustar\0" {
        let prefix = field(345..500);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}

struct In<R> {
    r: BufReader<R>,
    pos: u64,
}

impl<R: Read> In<R> {
    /// Fills `buf`; returns how many bytes there were (fewer only at the end of the file).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::corrupt(format!("reading at offset {}: {e}", self.pos + got as u64))),
            }
        }
        self.pos += got as u64;
        Ok(got)
    }

    /// Reads `n` bytes, keeping at most `keep` of them.
    fn data(&mut self, n: u64, keep: Option<&mut Vec<u8>>) -> Result<u64> {
        let mut left = n;
        let mut buf = vec![0u8; 64 << 10];
        let mut keep = keep;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let got = self.fill(&mut buf[..want])?;
            if let Some(k) = keep.as_mut() {
                k.extend_from_slice(&buf[..got]);
            }
            left -= got as u64;
            if got < want {
                break;
            }
        }
        Ok(n - left)
    }
}

/// Checks the tar archive read from `r` (see the module doc). `Err` names the member and the
/// byte offset of the damage.
pub fn verify<R: Read>(r: R) -> Result<TarReport> {
    let mut inp = In { r: BufReader::with_capacity(256 << 10, r), pos: 0 };
    let mut rep = TarReport::default();
    let (mut gnu, mut pax, mut ustar) = (false, false, false);
    let mut long_name: Option<String> = None;
    let mut pax_size: Option<u64> = None;
    let mut pax_path: Option<String> = None;
    let mut h = [0u8; BLOCK];
    let result = loop {
        let at = inp.pos;
        let got = inp.fill(&mut h)?;
        if got == 0 {
            break Err(Error::corrupt(format!(
                "cut short: the archive ends at offset {at} without its two end-of-archive blocks ({} members read)",
                rep.members
            )));
        }
        if got < BLOCK {
            break Err(Error::corrupt(format!(
                "cut short: the archive ends at offset {} inside a header block (at offset {at})",
                at + got as u64
            )));
        }
        if h.iter().all(|&b| b == 0) {
            let got = inp.fill(&mut h)?;
            if got < BLOCK || h.iter().any(|&b| b != 0) {
                break Err(Error::corrupt(format!(
                    "a lone zero block at offset {at}: the archive is cut short or damaged there"
                )));
            }
            // Past the end: only the zero padding of the last record may follow.
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let from = inp.pos;
                let n = inp.fill(&mut buf)?;
                if n == 0 {
                    break;
                }
                if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                    return Err(Error::corrupt(format!(
                        "trailing garbage at offset {} after the end-of-archive blocks (at offset {at})",
                        from + i as u64
                    )));
                }
            }
            break Ok(());
        }
        let name = long_name.take().or_else(|| pax_path.take()).unwrap_or_else(|| name_of(&h));
        if let Err(msg) = checksum_ok(&h) {
            break Err(Error::corrupt(format!("member header at offset {at} ({name:?}): {msg}")));
        }
        match &h[257..265] {
            b"ustar  \0" => gnu = true,
            m if &m[..6] == b"ustar\0" => ustar = true,
            _ => {}
        }
        let Some(mut size) = number(&h[124..136]) else {
            break Err(Error::corrupt(format!(
                "member header at offset {at} ({name:?}): its size field is not a number"
            )));
        };
        let kind = h[156];
        if matches!(kind, b'0' | b'\0' | b'7' | b'1' | b'2' | b'3' | b'4' | b'5' | b'6' | b'S') {
            if let Some(s) = pax_size.take() {
                size = s;
            }
        }
        // Old GNU sparse files: extension blocks of the sparse map follow the header.
        if kind == b'S' && h[482] != 0 {
            loop {
                let ext_at = inp.pos;
                let mut ext = [0u8; BLOCK];
                if inp.fill(&mut ext)? < BLOCK {
                    return Err(Error::corrupt(format!(
                        "cut short in the sparse map of {name:?} (extension block at offset {ext_at})"
                    )));
                }
                if ext[504] == 0 {
                    break;
                }
            }
        }
        let has_data = !matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6' | b'V');
        let data_len = if has_data { size } else { 0 };
        let padded = data_len.div_ceil(BLOCK as u64) * BLOCK as u64;
        let data_at = inp.pos;
        let meta = matches!(kind, b'x' | b'g' | b'L' | b'K');
        if meta && data_len > MAX_META {
            break Err(Error::corrupt(format!(
                "{} header at offset {at} claims {data_len} bytes of data (more than {MAX_META})",
                kind as char
            )));
        }
        let mut kept = Vec::new();
        let got = inp.data(padded, meta.then_some(&mut kept))?;
        if got < padded {
            break Err(Error::corrupt(format!(
                "cut short: member {name:?} (header at offset {at}) has {data_len} bytes of data from offset \
                 {data_at}, the archive ends at offset {}",
                inp.pos
            )));
        }
        kept.truncate(data_len as usize);
        match kind {
            b'x' | b'g' => {
                pax = true;
                let recs = match parse_pax(&kept) {
                    Ok(r) => r,
                    Err(msg) => break Err(Error::corrupt(format!("pax header at offset {at}: {msg}"))),
                };
                if kind == b'x' {
                    let mut bad = None;
                    for (k, v) in recs {
                        match k.as_str() {
                            "size" => match v.trim().parse::<u64>() {
                                Ok(s) => pax_size = Some(s),
                                Err(_) => bad = Some(format!("pax header at offset {at}: size {v:?} is not a number")),
                            },
                            "path" => pax_path = Some(v),
                            _ => {}
                        }
                    }
                    if let Some(msg) = bad {
                        break Err(Error::corrupt(msg));
                    }
                }
                continue;
            }
            b'L' => {
                gnu = true;
                let end = kept.iter().position(|&b| b == 0).unwrap_or(kept.len());
                long_name = Some(String::from_utf8_lossy(&kept[..end]).into_owned());
                continue;
            }
            b'K' => {
                gnu = true;
                continue;
            }
            _ => {}
        }
        rep.members += 1;
        rep.data_bytes += data_len;
        match kind {
            b'0' | b'\0' | b'7' | b'S' => rep.files += 1,
            b'5' => rep.directories += 1,
            b'2' => rep.symlinks += 1,
            b'1' => rep.hardlinks += 1,
            _ => rep.other += 1,
        }
    };
    rep.bytes = inp.pos;
    rep.format = if pax {
        "pax"
    } else if gnu {
        "gnu"
    } else if ustar {
        "ustar"
    } else {
        "v7"
    }
    .into();
    result.map(|_| rep)
}

/// pax records: `LEN key=value\n`, LEN counting the whole record.
fn parse_pax(mut b: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let sp = b.iter().position(|&c| c == b' ').ok_or("a record without a length")?;
        let len: usize = std::str::from_utf8(&b[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a record length that is not a number")?;
        if len <= sp + 1 || len > b.len() || b[len - 1] != b'\n' {
            return Err(format!("a record of length {len} that does not end where it says"));
        }
        let rec = &b[sp + 1..len - 1];
        let eq = rec.iter().position(|&c| c == b'=').ok_or("a record without '='")?;
        out.push((
            String::from_utf8_lossy(&rec[..eq]).into_owned(),
            String::from_utf8_lossy(&rec[eq + 1..]).into_owned(),
        ));
        b = &b[len..];
    }
    Ok(out)
}
