//! The remotes registry (`remotes`, sealed with domain Remotes, id = vault id): named offsite
//! locations. Kept in the vault so that an offsite copy carries it too.
//!
//! Plaintext, version 1: `version u8 = 1 | count u32 | count x (name str16 | url str16 |
//! keep_all u8)`. Version 2 adds protection settings to each entry: `version u8 = 2 | count u32
//! | count x (name str16 | url str16 | flags u8 | lock_mode u8 | lock_days u32)` with flags bit 0
//! keep-all, bit 1 append-only, lock_mode 0 none, 1 governance, 2 compliance. A registry that
//! uses none of the version 2 settings is written as version 1, so that older builds still read
//! it; both versions are read.

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::store::LockMode;

const V1: u8 = 1;
const V2: u8 = 2;

/// Object Lock on an S3 remote: every object a sync writes there is retained for `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub days: u32,
    pub mode: LockMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub name: String,
    pub url: String,
    /// Never delete anything there.
    pub keep_all: bool,
    /// Only ever add objects: never delete, never replace (credentials without delete rights).
    pub append_only: bool,
    /// Object Lock retention for what sync writes (S3 buckets with Object Lock enabled).
    pub object_lock: Option<ObjectLock>,
}

impl Remote {
    pub fn new(name: &str, url: &str) -> Remote {
        Remote { name: name.into(), url: url.into(), keep_all: false, append_only: false, object_lock: None }
    }

    /// Whether sync may delete objects there (subject to retention on a locked remote).
    pub fn deletes(&self) -> bool {
        !self.keep_all && !self.append_only
    }

    /// Flags as `remote list` shows them.
    pub fn flags(&self) -> String {
        let mut f = Vec::new();
        if self.keep_all {
            f.push("keep-all".to_string());
        }
        if self.append_only {
            f.push("append-only".to_string());
        }
        if let Some(l) = self.object_lock {
            f.push(format!("object-lock {} days ({})", l.days, l.mode.name()));
        }
        f.join(", ")
    }
}

pub fn encode(remotes: &[Remote]) -> Vec<u8> {
    let v2 = remotes.iter().any(|r| r.append_only || r.object_lock.is_some());
    let mut w = Writer::new();
    w.u8(if v2 { V2 } else { V1 }).u32(remotes.len() as u32);
    for r in remotes {
        w.bytes16(r.name.as_bytes()).bytes16(r.url.as_bytes());
        if v2 {
            let (mode, days) = match r.object_lock {
                None => (0, 0),
                Some(ObjectLock { days, mode: LockMode::Governance }) => (1, days),
                Some(ObjectLock { days, mode: LockMode::Compliance }) => (2, days),
            };
            w.u8(r.keep_all as u8 | (r.append_only as u8) << 1).u8(mode).u32(days);
        } else {
            w.u8(r.keep_all as u8);
        }
    }
    w.finish()
}

pub fn decode(b: &[u8]) -> Result<Vec<Remote>> {
    let mut r = Reader::new(b, "remotes");
    let version = r.u8()?;
    let out = match version {
        V1 => r.items(5, |r| {
            let (name, url) = (r.string16()?, r.string16()?);
            Ok(Remote { keep_all: r.u8()? != 0, ..Remote::new(&name, &url) })
        })?,
        V2 => r.items(10, |r| {
            let (name, url) = (r.string16()?, r.string16()?);
            let (flags, mode, days) = (r.u8()?, r.u8()?, r.u32()?);
            let object_lock = match mode {
                0 => None,
                1 => Some(ObjectLock { days, mode: LockMode::Governance }),
                2 => Some(ObjectLock { days, mode: LockMode::Compliance }),
                m => return Err(Error::corrupt(format!("remotes: unknown object lock mode {m}"))),
            };
            Ok(Remote {
                keep_all: flags & 1 != 0,
                append_only: flags & 2 != 0,
                object_lock,
                ..Remote::new(&name, &url)
            })
        })?,
        v => {
            return Err(Error::unsupported(format!(
                "remotes: format version {v} is not supported (this build reads versions 1 and 2)"
            )))
        }
    };
    r.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let v = vec![Remote { keep_all: true, ..Remote::new("offsite", "file:///mnt/usb") }];
        let b = encode(&v);
        assert_eq!(b[0], 1, "nothing of version 2 in use: written as version 1");
        assert_eq!(decode(&b).unwrap(), v);
        let v = vec![
            Remote::new("a", "file:///a"),
            Remote { append_only: true, ..Remote::new("b", "rclone:x:y") },
            Remote {
                object_lock: Some(ObjectLock { days: 30, mode: LockMode::Compliance }),
                ..Remote::new("c", "s3://b/p")
            },
        ];
        let b = encode(&v);
        assert_eq!(b[0], 2);
        assert_eq!(decode(&b).unwrap(), v);
        let mut bad = b.clone();
        bad[0] = 3;
        assert!(decode(&bad).unwrap_err().to_string().contains("version 3 is not supported"));
    }

    #[test]
    fn version_1_registries_read() {
        // As written by earlier builds.
        let mut w = Writer::new();
        w.u8(1).u32(1).bytes16(b"usb").bytes16(b"file:///mnt/usb").u8(1);
        let r = decode(&w.finish()).unwrap();
        assert_eq!(r, vec![Remote { keep_all: true, ..Remote::new("usb", "file:///mnt/usb") }]);
    }
}
