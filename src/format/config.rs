//! The `config` file: the only object readable before unlocking.
//!
//! ```text
//! magic "VAULTCFG" (8) | format version u16 | vault id [16] | sealed settings (u32 len + bytes)
//! ```
//! The settings are sealed with the master key (domain Settings, id = vault id), so they are
//! authenticated: nobody without the key can change the chunker sizes or the period.

use super::codec::{Reader, Writer};
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"VAULTCFG";
pub const FORMAT_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub vault_id: [u8; 16],
    pub sealed_settings: Vec<u8>,
}

impl ConfigFile {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(MAGIC).u16(FORMAT_VERSION).raw(&self.vault_id).bytes32(&self.sealed_settings);
        w.finish()
    }
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
            return Err(Error::corrupt("config: not a vault (the config file does not start with the vault magic)"));
        }
        let mut r = Reader::new(&b[MAGIC.len()..], "config");
        let v = r.u16()?;
        if v != FORMAT_VERSION {
            return Err(Error::unsupported(format!(
                "vault format version {v} is not supported by this build (it reads version {FORMAT_VERSION})"
            )));
        }
        let vault_id = r.array()?;
        let sealed_settings = r.bytes32()?.to_vec();
        r.end()?;
        Ok(ConfigFile { vault_id, sealed_settings })
    }
}

/// How long one snapshot period lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    Day = 1,
    Hour = 2,
}

/// Vault settings, fixed at init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    pub pack_target: u32,
    pub zstd_level: i32,
    pub period: PeriodKind,
    /// IANA time zone name ("Europe/Paris", "UTC") used to name periods.
    pub time_zone: String,
    pub created_unix: i64,
    /// Plaintext bytes that close a frame (docs/DESIGN.md §5); 0: one chunk per blob.
    pub frame_target: u32,
}

/// Settings are written with version 2 (adds `frame_target`); version 1 is still read.
const SETTINGS_VERSION: u8 = 2;
/// Frame target of settings written before frames existed.
pub const DEFAULT_FRAME_TARGET: u32 = 64 << 10;

impl Settings {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SETTINGS_VERSION)
            .u32(self.chunk_min)
            .u32(self.chunk_avg)
            .u32(self.chunk_max)
            .u32(self.pack_target)
            .i32(self.zstd_level)
            .u8(self.period as u8)
            .bytes16(self.time_zone.as_bytes())
            .i64(self.created_unix)
            .u32(self.frame_target);
        w.finish()
    }
    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "settings");
        let version = r.u8()?;
        if version != 1 && version != SETTINGS_VERSION {
            return Err(Error::unsupported(format!(
                "settings: format version {version} is not supported (this build reads versions 1 and 2)"
            )));
        }
        let mut s = Settings {
            chunk_min: r.u32()?,
            chunk_avg: r.u32()?,
            chunk_max: r.u32()?,
            pack_target: r.u32()?,
            zstd_level: r.i32()?,
            period: match r.u8()? {
                1 => PeriodKind::Day,
                2 => PeriodKind::Hour,
                p => return Err(Error::corrupt(format!("settings: unknown period kind {p}"))),
            },
            time_zone: r.string16()?,
            created_unix: r.i64()?,
            frame_target: DEFAULT_FRAME_TARGET,
        };
        if version >= 2 {
            s.frame_target = r.u32()?;
        }
        r.end()?;
        s.validate().map_err(|e| Error::corrupt(format!("settings: {e}")))?;
        Ok(s)
    }
    /// Bounds the chunker and packer accept; checked at init and on every open.
    pub fn validate(&self) -> Result<()> {
        let (min, avg, max) = (self.chunk_min, self.chunk_avg, self.chunk_max);
        if !(256..=(4 << 20)).contains(&avg)
            || min < 64
            || min > avg
            || max < avg
            || !(1024..=(16 << 20)).contains(&max)
        {
            return Err(Error::invalid(format!(
                "chunk sizes min {min} / avg {avg} / max {max} are out of range (64 <= min <= avg <= max, 256 B <= avg <= 4 MiB, 1 KiB <= max <= 16 MiB)"
            )));
        }
        if !(1 << 20..=1 << 30).contains(&self.pack_target) {
            return Err(Error::invalid("pack size must be between 1 MiB and 1 GiB"));
        }
        if self.frame_target > 16 << 20 {
            return Err(Error::invalid("frame size must be at most 16 MiB"));
        }
        if !(-7..=19).contains(&self.zstd_level) {
            return Err(Error::invalid("zstd level must be between -7 and 19"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            chunk_min: 4096,
            chunk_avg: 16384,
            chunk_max: 65536,
            pack_target: 16 << 20,
            zstd_level: 3,
            period: PeriodKind::Hour,
            time_zone: "Europe/Paris".into(),
            created_unix: 1_700_000_000,
            frame_target: 32 << 10,
        }
    }

    #[test]
    fn reads_version_1_settings_with_the_default_frame_target() {
        let s = settings();
        let mut b = s.encode();
        b.truncate(b.len() - 4);
        b[0] = 1;
        assert_eq!(Settings::decode(&b).unwrap(), Settings { frame_target: DEFAULT_FRAME_TARGET, ..s });
    }

    #[test]
    fn round_trips() {
        let s = settings();
        assert_eq!(Settings::decode(&s.encode()).unwrap(), s);
        let c = ConfigFile { vault_id: [3; 16], sealed_settings: vec![1, 2, 3] };
        assert_eq!(ConfigFile::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn garbage_and_future_versions() {
        assert_eq!(ConfigFile::decode(b"garbage").unwrap_err().kind(), crate::ErrorKind::Corrupt);
        let mut b = ConfigFile { vault_id: [3; 16], sealed_settings: vec![] }.encode();
        b[8] = 9;
        let e = ConfigFile::decode(&b).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unsupported);
        assert!(e.to_string().contains("version 9"), "{e}");
    }
}
