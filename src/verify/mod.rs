//! Content checks for the kinds of files a restore drill knows besides database dumps: zip
//! archives (application backups), tar archives (directory trees), and gzip streams of
//! anything. `mongo` and `pgdump` have modules of their own because they also restore.
//!
//! This module owns recognising a file by its content ([`sniff`]); `zip` and `tar` own their
//! formats. Every checker reads the file once (zip: the central directory at the end, then the
//! members in file order), keeps memory bounded whatever the file's size, never trusts a stored
//! length before checking it against the file, never panics on bad input, and names the member
//! and byte offset of any damage. A file it cannot check (an encrypted zip, a compression
//! method this build cannot decompress) is reported as not verifiable, never as verified.

pub mod tar;
pub mod zip;

#[cfg(test)]
mod tests;

use crate::error::Result;

/// What a file holds, recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `mongodump --archive` (plain or gzip).
    Mongodump,
    /// `pg_dump -Fc`.
    PgCustom,
    /// `pg_dump` plain SQL.
    PgPlain,
    Zip,
    Tar,
    /// A gzip stream of something else: its CRC-32 and length are checked.
    Gzip,
    /// Nothing the drill knows: read back (every byte authenticated), content unchecked.
    Unknown,
}

impl Kind {
    /// The name used in reports and the drill log.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mongodump => "mongodump",
            Kind::PgCustom => "pg_custom",
            Kind::PgPlain => "pg_plain",
            Kind::Zip => "zip",
            Kind::Tar => "tar",
            Kind::Gzip => "gzip",
            Kind::Unknown => "unknown",
        }
    }

    /// A short description for the text report.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Mongodump => "mongodump archive",
            Kind::PgCustom => "pg_dump custom archive",
            Kind::PgPlain => "pg_dump plain SQL dump",
            Kind::Zip => "zip archive",
            Kind::Tar => "tar archive",
            Kind::Gzip => "gzip stream",
            Kind::Unknown => "read back only",
        }
    }
}

/// How many leading bytes [`sniff`] wants (fewer when the file is shorter).
pub const SNIFF_BYTES: usize = 1024;

/// First two bytes of a gzip member.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Recognises a file by its first bytes (not by its name). A gzip stream is reported as
/// [`Kind::Gzip`]: the caller looks into its decompressed start with [`sniff`] again.
pub fn sniff(head: &[u8]) -> Kind {
    if head.starts_with(&crate::mongo::archive::MAGIC) {
        Kind::Mongodump
    } else if head.starts_with(&GZIP_MAGIC) {
        Kind::Gzip
    } else if let Some(f) = crate::pgdump::sniff(head) {
        match f {
            crate::pgdump::DumpFormat::Custom => Kind::PgCustom,
            crate::pgdump::DumpFormat::Plain => Kind::PgPlain,
        }
    } else if zip::is_zip(head) {
        Kind::Zip
    } else if tar::is_tar(head) {
        Kind::Tar
    } else {
        Kind::Unknown
    }
}

/// Random access to a file's bytes (the zip checker reads the central directory first).
pub trait ReadAt {
    fn size(&self) -> u64;
    /// Up to `len` bytes at `off`; fewer only at the end of the file.
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>>;
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let start = (off.min(self.len() as u64)) as usize;
        let end = start.saturating_add(len).min(self.len());
        Ok(self[start..end].to_vec())
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        self.as_slice().read_at(off, len)
    }
}

/// Reads a gzip stream (concatenated members too) to its end: every member's CRC-32 and length
/// are checked by the decoder. Returns the decompressed length.
pub fn check_gzip<R: std::io::Read>(r: R) -> Result<u64> {
    let mut d = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(256 << 10, r));
    std::io::copy(&mut d, &mut std::io::sink()).map_err(|e| crate::error::Error::corrupt(format!("gzip stream: {e}")))
}
