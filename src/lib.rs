//! `vault`: an encrypted, deduplicating store of dated snapshots.
//!
//! This crate is the engine. It knows nothing about FUSE or the command line: the `vaultctl`
//! binary (src/bin) and the `vaultfs` daemon are thin shells over the types exported here.
//!
//! Data flows one way. Write: bytes -> seeded chunker -> keyed BLAKE3 id -> index lookup ->
//! (new chunks only) compress, seal, pack -> pack stored atomically -> index file -> snapshot
//! revision. Read: snapshot -> tree -> chunk list -> index -> pack range -> open + verify.

pub mod chunker;
pub mod commands;
pub mod crypto;
pub mod error;
pub mod format;
pub mod id;
pub mod index;
pub mod mongo;
pub mod period;
pub mod pgdump;
pub mod repo;
pub mod store;
pub mod units;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
