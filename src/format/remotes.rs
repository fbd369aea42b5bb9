//! The remotes registry (`remotes`, sealed with domain Remotes, id = vault id): named offsite
//! locations. Kept in the vault so that an offsite copy carries it too.
//!
//! Plaintext: `version u8 = 1 | count u32 | count x (name str16 | url str16 | keep_all u8)`.

use super::codec::{Reader, Writer};
use crate::error::Result;

const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub name: String,
    pub url: String,
    /// Never delete anything there (object-lock style storage).
    pub keep_all: bool,
}

pub fn encode(remotes: &[Remote]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(VERSION).u32(remotes.len() as u32);
    for r in remotes {
        w.bytes16(r.name.as_bytes()).bytes16(r.url.as_bytes()).u8(r.keep_all as u8);
    }
    w.finish()
}

pub fn decode(b: &[u8]) -> Result<Vec<Remote>> {
    let mut r = Reader::new(b, "remotes");
    r.version(VERSION)?;
    let out = r.items(5, |r| Ok(Remote { name: r.string16()?, url: r.string16()?, keep_all: r.u8()? != 0 }))?;
    r.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let v = vec![Remote { name: "offsite".into(), url: "file:///mnt/usb".into(), keep_all: true }];
        assert_eq!(decode(&encode(&v)).unwrap(), v);
    }
}
