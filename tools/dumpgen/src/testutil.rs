//! Test-only readers written independently of the encoder: a small BSON decoder and a
//! mongodump archive walker that enforces the demultiplexer's rules and checks CRCs.

use std::collections::BTreeMap;

use crate::crc64::crc64;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Double(f64),
    Str(String),
    Doc(Vec<(String, Value)>),
    Array(Vec<(String, Value)>),
    Oid([u8; 12]),
    Bool(bool),
    Date(i64),
    I32(i32),
    I64(i64),
}

fn le_i32(b: &[u8], at: usize) -> Result<i32, String> {
    b.get(at..at + 4).map(|s| i32::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| format!("truncated at {at}"))
}

fn cstring(b: &[u8], at: usize) -> Result<(String, usize), String> {
    let end = b[at..].iter().position(|&c| c == 0).ok_or("unterminated key")? + at;
    let s = std::str::from_utf8(&b[at..end]).map_err(|e| e.to_string())?;
    Ok((s.to_string(), end + 1))
}

/// Decodes a whole document; every byte must be accounted for.
pub fn decode(b: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let (doc, used) = decode_at(b, 0)?;
    if used != b.len() {
        return Err(format!("document is {used} bytes but buffer is {}", b.len()));
    }
    Ok(doc)
}

fn decode_at(b: &[u8], start: usize) -> Result<(Vec<(String, Value)>, usize), String> {
    let len = le_i32(b, start)?;
    if len < 5 || start + len as usize > b.len() {
        return Err(format!("bad document length {len}"));
    }
    let end = start + len as usize;
    if b[end - 1] != 0 {
        return Err("document does not end in NUL".into());
    }
    let mut at = start + 4;
    let mut out = Vec::new();
    while at < end - 1 {
        let ty = b[at];
        let (name, next) = cstring(&b[..end - 1], at + 1)?;
        at = next;
        let fixed = |n: usize| -> Result<&[u8], String> {
            b.get(at..at + n).filter(|_| at + n < end).ok_or_else(|| format!("{name}: truncated"))
        };
        let (v, n) = match ty {
            0x01 => (Value::Double(f64::from_le_bytes(fixed(8)?.try_into().unwrap())), 8),
            0x02 => {
                let l = le_i32(b, at)?;
                if l < 1 || at + 4 + l as usize >= end || b[at + 4 + l as usize - 1] != 0 {
                    return Err(format!("{name}: bad string"));
                }
                let s = std::str::from_utf8(&b[at + 4..at + 3 + l as usize]).map_err(|e| e.to_string())?;
                (Value::Str(s.to_string()), 4 + l as usize)
            }
            0x03 | 0x04 => {
                let (d, used) = decode_at(&b[..end - 1], at)?;
                let n = used - at;
                (if ty == 3 { Value::Doc(d) } else { Value::Array(d) }, n)
            }
            0x07 => (Value::Oid(fixed(12)?.try_into().unwrap()), 12),
            0x08 => match fixed(1)?[0] {
                0 => (Value::Bool(false), 1),
                1 => (Value::Bool(true), 1),
                x => return Err(format!("{name}: bool byte {x}")),
            },
            0x09 => (Value::Date(i64::from_le_bytes(fixed(8)?.try_into().unwrap())), 8),
            0x10 => (Value::I32(i32::from_le_bytes(fixed(4)?.try_into().unwrap())), 4),
            0x12 => (Value::I64(i64::from_le_bytes(fixed(8)?.try_into().unwrap())), 8),
            t => return Err(format!("{name}: unexpected type {t:#x}")),
        };
        if let Value::Array(items) = &v {
            for (i, (k, _)) in items.iter().enumerate() {
                if *k != i.to_string() {
                    return Err(format!("{name}: array key {k} at {i}"));
                }
            }
        }
        out.push((name, v));
        at += n;
    }
    if at != end - 1 {
        return Err("element overruns document".into());
    }
    Ok((out, end))
}

pub fn validate_bson(b: &[u8]) -> Result<(), String> {
    decode(b).map(|_| ())
}

pub fn get<'a>(doc: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    doc.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

pub fn get_str<'a>(doc: &'a [(String, Value)], name: &str) -> &'a str {
    match get(doc, name) {
        Some(Value::Str(s)) => s,
        other => panic!("{name}: expected string, got {other:?}"),
    }
}

/// What the reader saw of one namespace.
#[derive(Debug, Default)]
pub struct NsRead {
    pub docs: Vec<Vec<u8>>,
    pub segments: usize,
    pub crc: u64,
    pub eof: bool,
}

#[derive(Debug)]
pub struct ArchiveRead {
    pub header: Vec<(String, Value)>,
    pub prelude: Vec<Vec<(String, Value)>>,
    pub namespaces: BTreeMap<String, NsRead>,
    /// Namespace of each block in body order, with `true` for EOF blocks.
    pub blocks: Vec<(String, bool)>,
}

/// Walks a plain archive, enforcing the rules of the format spec (section 4) and the CRCs.
pub fn read_archive(b: &[u8]) -> Result<ArchiveRead, String> {
    if b.get(..4) != Some(&[0x6d, 0xe2, 0x99, 0x81][..]) {
        return Err("bad magic".into());
    }
    let mut at = 4;
    // Items: None = terminator.
    let next_item = |at: &mut usize| -> Result<Option<Option<&[u8]>>, String> {
        if *at == b.len() {
            return Ok(None);
        }
        let l = b.get(*at..*at + 4).ok_or("truncated length")?;
        let l = u32::from_le_bytes(l.try_into().unwrap());
        if l == u32::MAX {
            *at += 4;
            return Ok(Some(None));
        }
        if !(5..=16 << 20).contains(&l) || *at + l as usize > b.len() {
            return Err(format!("bad item length {l} at {}", *at));
        }
        let d = &b[*at..*at + l as usize];
        *at += l as usize;
        Ok(Some(Some(d)))
    };
    let header = match next_item(&mut at)? {
        Some(Some(d)) => decode(d)?,
        _ => return Err("missing header".into()),
    };
    let mut prelude = Vec::new();
    while let Some(d) = next_item(&mut at)?.ok_or("eof in prelude")? {
        prelude.push(decode(d)?);
    }
    let known: Vec<String> =
        prelude.iter().map(|p| format!("{}.{}", get_str(p, "db"), get_str(p, "collection"))).collect();
    let mut namespaces: BTreeMap<String, NsRead> = BTreeMap::new();
    let mut blocks = Vec::new();
    loop {
        let h = match next_item(&mut at)? {
            None => break,
            Some(None) => return Err("block starts with a terminator".into()),
            Some(Some(d)) => decode(d)?,
        };
        let keys: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
        if keys != ["db", "collection", "EOF", "CRC"] {
            return Err(format!("bad namespace header keys {keys:?}"));
        }
        let ns = format!("{}.{}", get_str(&h, "db"), get_str(&h, "collection"));
        if !known.contains(&ns) {
            return Err(format!("{ns} not in prelude"));
        }
        let eof = get(&h, "EOF") == Some(&Value::Bool(true));
        let crc = match get(&h, "CRC") {
            Some(Value::I64(c)) => *c as u64,
            other => return Err(format!("CRC is {other:?}")),
        };
        let st = namespaces.entry(ns.clone()).or_default();
        if st.eof {
            return Err(format!("{ns}: block after EOF"));
        }
        blocks.push((ns.clone(), eof));
        if eof {
            let data: Vec<u8> = st.docs.concat();
            if crc64(&data) != crc {
                return Err(format!("{ns}: CRC mismatch"));
            }
            st.eof = true;
            st.crc = crc;
            match next_item(&mut at)? {
                Some(None) => {}
                _ => return Err(format!("{ns}: EOF header not followed by TERM")),
            }
        } else {
            if crc != 0 {
                return Err("segment header with a CRC".into());
            }
            st.segments += 1;
            while let Some(d) = next_item(&mut at)?.ok_or("eof inside a segment")? {
                st.docs.push(d.to_vec());
            }
        }
    }
    for ns in &known {
        if !namespaces.get(ns).is_some_and(|s| s.eof) {
            return Err(format!("{ns}: no EOF block"));
        }
    }
    Ok(ArchiveRead { header, prelude, namespaces, blocks })
}
