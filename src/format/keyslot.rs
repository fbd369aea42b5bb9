//! A key slot file (`keys/<slot id>`): the master key wrapped under one user secret.
//!
//! ```text
//! version u8 = 1 | kind u8 (1 passphrase, 2 raw key) | created i64 | label (u16 len + UTF-8)
//! | argon2 m_cost KiB u32 | t_cost u32 | p_cost u32 | salt [16] | wrapped key (u32 len + sealed)
//! ```
//! The wrapped key is the master key sealed with the slot's wrapping key (domain KeySlot,
//! id = vault id || slot id). For raw-key slots the Argon2 fields are zero.

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};

const VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    Passphrase = 1,
    RawKey = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    pub kind: SlotKind,
    pub created_unix: i64,
    pub label: String,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: [u8; 16],
    pub wrapped: Vec<u8>,
}

impl KeySlot {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION)
            .u8(self.kind as u8)
            .i64(self.created_unix)
            .bytes16(self.label.as_bytes())
            .u32(self.m_cost_kib)
            .u32(self.t_cost)
            .u32(self.p_cost)
            .raw(&self.salt)
            .bytes32(&self.wrapped);
        w.finish()
    }
    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "key slot");
        r.version(VERSION)?;
        let kind = match r.u8()? {
            1 => SlotKind::Passphrase,
            2 => SlotKind::RawKey,
            k => return Err(Error::corrupt(format!("key slot: unknown kind {k}"))),
        };
        let s = KeySlot {
            kind,
            created_unix: r.i64()?,
            label: r.string16()?,
            m_cost_kib: r.u32()?,
            t_cost: r.u32()?,
            p_cost: r.u32()?,
            salt: r.array()?,
            wrapped: r.bytes32()?.to_vec(),
        };
        r.end()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let s = KeySlot {
            kind: SlotKind::Passphrase,
            created_unix: 5,
            label: "ops".into(),
            m_cost_kib: 65536,
            t_cost: 3,
            p_cost: 1,
            salt: [9; 16],
            wrapped: vec![1; 60],
        };
        assert_eq!(KeySlot::decode(&s.encode()).unwrap(), s);
        assert!(KeySlot::decode(&s.encode()[..20]).is_err());
    }
}
