//! One module per operation. Each takes a `Vault` and options and returns a report; printing
//! and exit codes belong to the binaries.

pub mod browse;
pub mod check;
pub mod drill;
pub mod keys;
pub mod mark;
pub mod prune;
pub mod put;
pub mod rebuild_index;
pub mod remote;
pub mod report;
pub mod restore;
pub mod run;
pub mod stats;
pub mod status;
pub mod sync;
