//! MongoDB dumps kept in the vault: reading and checking `mongodump --archive` streams, and
//! restoring them into a scratch database for drills.
//!
//! `archive` owns the archive format (plain or gzip-wrapped): its framing, its header documents
//! and its per-namespace CRC-64, and the per-namespace verdicts that a restore drill reports. It
//! works without a database and without a BSON library, must never hold more than one document
//! of the stream in memory, never trust a length before checking it, and never panic on bad
//! input. `restore` feeds what `archive` reads to a scratch database through the `mongodb`
//! driver, in bounded batches. Neither decodes or alters the user's documents: they are handed
//! on as the raw bytes the server returned.

pub mod archive;
pub mod restore;

#[cfg(test)]
mod tests;

pub use archive::{is_archive, verify, verify_with, ArchiveHeader, ArchiveReport, NamespaceReport};
