//! Pure encode/decode of every on-disk structure: no I/O, no crypto. Little-endian,
//! length-prefixed, a version byte first in every structure. Decoders never panic and never
//! allocate more than the input could hold; anything malformed is `ErrorKind::Corrupt`.
//! The byte-level field tables are in docs/DESIGN.md and must be kept in step with this code.

pub mod codec;
pub mod config;
pub mod index;
pub mod keyslot;
pub mod log;
pub mod manifest;
pub mod pack;
pub mod policy;
pub mod remotes;
pub mod snapshot;
pub mod tree;
