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
pub mod progress;
pub mod rebuild;
pub mod repo;
pub mod store;
pub mod units;
pub mod verify;

pub use error::{Error, ErrorKind, Result};

/// Tunes glibc's allocator (the daemon's, and the C libraries' under `vaultctl`): by default
/// the size above which an allocation gets its own mapping grows with every large block freed
/// (up to 32 MiB), so large buffers end up in per-thread arenas that never shrink (a mount
/// writing 1 GiB of new data held 881 MiB resident that way, docs/PERFORMANCE.md). Fixing that
/// threshold also fixes the trim threshold at 128 KiB, so up to 8 MiB of free heap is kept
/// instead of being given back and faulted in again. Called first thing by the binaries; a
/// no-op on other C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// Gives the free memory of every allocator arena back to the system (glibc keeps up to the
/// trim threshold at the top of each heap, and never the free pages inside one): for a
/// long-running process after a burst, such as the daemon after a large file was stored.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the system; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}
