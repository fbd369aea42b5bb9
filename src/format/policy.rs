//! The retention policy (`policy`, sealed with domain Policy, id = vault id): how many
//! snapshots `vaultctl prune` keeps when it is given no `--keep-*` flag.
//!
//! Plaintext: `version u8 = 1 | last u32 | hourly u32 | daily u32 | weekly u32 | monthly u32 |
//! yearly u32` (0 = that rule is not used).

use super::codec::{Reader, Writer};
use crate::error::Result;

const VERSION: u8 = 1;

/// Like restic's `forget`: a snapshot is kept when any rule keeps it. Each `keep_*` rule keeps
/// the newest snapshot of each of the N newest hours/days/ISO weeks/months/years that have one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION);
        for n in [self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly] {
            w.u32(n);
        }
        w.finish()
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "policy");
        r.version(VERSION)?;
        let p = Policy {
            last: r.u32()?,
            hourly: r.u32()?,
            daily: r.u32()?,
            weekly: r.u32()?,
            monthly: r.u32()?,
            yearly: r.u32()?,
        };
        r.end()?;
        Ok(p)
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (n, name) in [
            (self.last, "last"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ] {
            if n > 0 {
                parts.push(format!("--keep-{name} {n}"));
            }
        }
        if parts.is_empty() {
            f.write_str("(none)")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let p = Policy { last: 3, hourly: 0, daily: 14, weekly: 8, monthly: 12, yearly: 2 };
        assert_eq!(Policy::decode(&p.encode()).unwrap(), p);
        assert!(Policy::decode(&p.encode()[..10]).is_err());
        assert_eq!(p.to_string(), "--keep-last 3 --keep-daily 14 --keep-weekly 8 --keep-monthly 12 --keep-yearly 2");
    }
}
