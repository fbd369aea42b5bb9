//! MongoDB dumps kept in the vault: reading and checking `mongodump --archive` streams.
//!
//! This module owns the archive format (plain or gzip-wrapped): its framing, its header
//! documents and its per-namespace CRC-64, and the per-namespace verdicts that a restore drill
//! reports. It works without a database and without a BSON library. It must never hold more
//! than one document of the stream in memory, never trust a length before checking it, never
//! panic on bad input, and never decode or alter the user's documents: those are handed on as
//! the raw bytes the server returned.

pub mod archive;

#[cfg(test)]
mod tests;

pub use archive::{is_archive, verify, ArchiveHeader, ArchiveReport, NamespaceReport};
