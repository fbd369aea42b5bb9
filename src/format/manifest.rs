//! The sync manifest (`manifest` at the top of an offsite copy): every object the copy holds,
//! with its size and the BLAKE3 hash of its stored (encrypted) bytes. Plaintext on purpose:
//! `sync --verify` checks a copy without the key. Written last by every sync, so a copy is
//! always described by a manifest whose objects all arrived.
//!
//! ```text
//! magic "VAULTMAN" (8) | version u8 = 1 | count u32 | count x entry
//! entry = kind u8 | name (u16 len + UTF-8) | size u64 | blake3 [32]
//! ```

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::store::ObjKind;

const MAGIC: &[u8; 8] = b"VAULTMAN";
const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: ObjKind,
    pub name: String,
    pub size: u64,
    pub hash: [u8; 32],
}

pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(MAGIC).u8(VERSION).u32(entries.len() as u32);
    for e in entries {
        w.u8(e.kind.code()).bytes16(e.name.as_bytes()).u64(e.size).raw(&e.hash);
    }
    w.finish()
}

pub fn decode(b: &[u8]) -> Result<Vec<Entry>> {
    if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
        return Err(Error::corrupt("manifest: bad magic"));
    }
    let mut r = Reader::new(&b[MAGIC.len()..], "manifest");
    r.version(VERSION)?;
    let out = r.items(43, |r| {
        let kind = ObjKind::from_code(r.u8()?).ok_or_else(|| Error::corrupt("manifest: unknown object kind"))?;
        Ok(Entry { kind, name: r.string16()?, size: r.u64()?, hash: r.array()? })
    })?;
    r.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_and_garbage() {
        let e = vec![Entry { kind: ObjKind::Pack, name: "ab".into(), size: 5, hash: [1; 32] }];
        assert_eq!(decode(&encode(&e)).unwrap(), e);
        assert!(decode(b"nonsense").is_err());
        assert!(decode(&encode(&e)[..20]).is_err());
    }
}
