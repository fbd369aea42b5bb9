//! Snapshot revisions (`snapshots/<id>`): the state of one period at one commit.
//!
//! Plaintext: `version u8 = 1 | period (u16 len + UTF-8) | seq u64 | sealed u8 |
//! created i64 (unix s) | updated i64 (unix ns) | root tree [32] | files u64 | logical bytes u64 |
//! new bytes u64 | host (u16 len + UTF-8)`, and in version 2 `journal mount [16] |
//! journal seq u64` (zeros: no mark). Sealed with domain Snapshot, id = revision id.
//! Version 1 revisions decode with no journal mark.
//! For each period the revision with the highest `seq` is current; a sealed revision is final.

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::TreeId;

const VERSION: u8 = 2;

/// Which journal operations a revision includes (docs/DESIGN.md §10b): those of the mount
/// `mount` up to and including `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalMark {
    pub mount: [u8; 16],
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub period: String,
    pub seq: u64,
    pub sealed: bool,
    pub created_unix: i64,
    pub updated_unix_ns: i64,
    pub root: TreeId,
    pub files: u64,
    pub logical_bytes: u64,
    /// Stored (compressed, encrypted) bytes of blobs first written in this period.
    pub new_bytes: u64,
    pub host: String,
    pub journal: Option<JournalMark>,
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION)
            .bytes16(self.period.as_bytes())
            .u64(self.seq)
            .u8(self.sealed as u8)
            .i64(self.created_unix)
            .i64(self.updated_unix_ns)
            .raw(self.root.as_bytes())
            .u64(self.files)
            .u64(self.logical_bytes)
            .u64(self.new_bytes)
            .bytes16(self.host.as_bytes());
        let m = self.journal.unwrap_or(JournalMark { mount: [0; 16], seq: 0 });
        w.raw(&m.mount).u64(m.seq);
        w.finish()
    }
    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "snapshot");
        let version = r.u8()?;
        if version == 0 || version > VERSION {
            return Err(Error::unsupported(format!(
                "snapshot: format version {version} is not supported (this build reads versions 1 to {VERSION})"
            )));
        }
        let mut s = Snapshot {
            period: r.string16()?,
            seq: r.u64()?,
            sealed: match r.u8()? {
                0 => false,
                1 => true,
                v => return Err(Error::corrupt(format!("snapshot: bad sealed flag {v}"))),
            },
            created_unix: r.i64()?,
            updated_unix_ns: r.i64()?,
            root: TreeId(r.array()?),
            files: r.u64()?,
            logical_bytes: r.u64()?,
            new_bytes: r.u64()?,
            host: r.string16()?,
            journal: None,
        };
        if version >= 2 {
            let mount: [u8; 16] = r.array()?;
            let seq = r.u64()?;
            if mount != [0; 16] {
                s.journal = Some(JournalMark { mount, seq });
            }
        }
        r.end()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let s = Snapshot {
            period: "2026-11-22".into(),
            seq: 7,
            sealed: true,
            created_unix: 1,
            updated_unix_ns: 2,
            root: TreeId([4; 32]),
            files: 3,
            logical_bytes: 100,
            new_bytes: 50,
            host: "db1".into(),
            journal: Some(JournalMark { mount: [9; 16], seq: 42 }),
        };
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        let plain = Snapshot { journal: None, ..s.clone() };
        assert_eq!(Snapshot::decode(&plain.encode()).unwrap(), plain);
        // A version 1 revision: no mark.
        let mut v1 = plain.encode();
        v1[0] = 1;
        v1.truncate(v1.len() - 24);
        assert_eq!(Snapshot::decode(&v1).unwrap(), plain);
    }
}
