//! The sync manifest (`manifest` at the top of an offsite copy): every object the copy holds,
//! with its size and the BLAKE3 hash of its stored (encrypted) bytes. Plaintext on purpose:
//! `sync --verify` checks a copy without the key. Written last by every sync, so a copy is
//! always described by a manifest whose objects all arrived. (On an append-only remote each
//! sync writes a new one under `manifests/`; the newest counts.)
//!
//! ```text
//! magic "VAULTMAN" (8) | version u8 | count u32 | count x entry
//! version 1: entry = kind u8 | name str16 | size u64 | blake3 [32]
//! version 2: entry = kind u8 | name str16 | size u64 | blake3 [32] | flags u8 | version id str16
//!            | retain_until i64
//! ```
//!
//! Version 2 serves versioned, object-locked copies: the version id the sync wrote (empty if
//! none), the retain-until date it set (unix seconds, 0 = none), and flag bit 0 `held`: an
//! object the vault no longer uses, kept only until its retention ends. A manifest without any
//! of these is written as version 1; both versions are read.

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::store::ObjKind;

const MAGIC: &[u8; 8] = b"VAULTMAN";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub kind: ObjKind,
    pub name: String,
    pub size: u64,
    pub hash: [u8; 32],
    /// The object version the sync wrote (versioned stores), else empty.
    pub version_id: String,
    /// Retain-until date set on that version (unix seconds), 0 for none.
    pub retain_until: i64,
    /// No longer part of the vault; on the copy only until its retention ends.
    pub held: bool,
}

impl Entry {
    pub fn new(kind: ObjKind, name: &str, size: u64, hash: [u8; 32]) -> Entry {
        Entry { kind, name: name.to_string(), size, hash, ..Default::default() }
    }
}

pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let v2 = entries.iter().any(|e| !e.version_id.is_empty() || e.retain_until != 0 || e.held);
    let mut w = Writer::new();
    w.raw(MAGIC).u8(if v2 { 2 } else { 1 }).u32(entries.len() as u32);
    for e in entries {
        w.u8(e.kind.code()).bytes16(e.name.as_bytes()).u64(e.size).raw(&e.hash);
        if v2 {
            w.u8(e.held as u8).bytes16(e.version_id.as_bytes()).i64(e.retain_until);
        }
    }
    w.finish()
}

pub fn decode(b: &[u8]) -> Result<Vec<Entry>> {
    if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
        return Err(Error::corrupt("manifest: bad magic"));
    }
    let mut r = Reader::new(&b[MAGIC.len()..], "manifest");
    let version = r.u8()?;
    if version != 1 && version != 2 {
        return Err(Error::unsupported(format!(
            "manifest: format version {version} is not supported (this build reads versions 1 and 2)"
        )));
    }
    let out = r.items(if version == 1 { 43 } else { 54 }, |r| {
        let kind = ObjKind::from_code(r.u8()?).ok_or_else(|| Error::corrupt("manifest: unknown object kind"))?;
        let mut e = Entry { kind, name: r.string16()?, size: r.u64()?, hash: r.array()?, ..Default::default() };
        if version == 2 {
            e.held = r.u8()? & 1 != 0;
            e.version_id = r.string16()?;
            e.retain_until = r.i64()?;
        }
        Ok(e)
    })?;
    r.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_and_garbage() {
        let e = vec![Entry::new(ObjKind::Pack, "ab", 5, [1; 32])];
        let b = encode(&e);
        assert_eq!(b[8], 1);
        assert_eq!(decode(&b).unwrap(), e);
        assert!(decode(b"nonsense").is_err());
        assert!(decode(&encode(&e)[..20]).is_err());
        let e = vec![
            Entry {
                version_id: "3HL4kqtJ".into(),
                retain_until: 1_800_000_000,
                ..Entry::new(ObjKind::Pack, "ab", 5, [1; 32])
            },
            Entry { held: true, ..Entry::new(ObjKind::Index, "cd", 7, [2; 32]) },
        ];
        let b = encode(&e);
        assert_eq!(b[8], 2);
        assert_eq!(decode(&b).unwrap(), e);
    }
}
