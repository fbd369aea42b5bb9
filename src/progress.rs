//! Progress of long operations (put, restore, check --read-data, drill, prune, sync), as the
//! engine reports it: the phase, the item at work, bytes done. The engine only calls these
//! methods, from any thread; whether and how anything is drawn is the binary's business.

/// What a long operation reports while it runs. Every method has an empty default.
pub trait Progress: Sync {
    /// A new phase begins; `total_bytes` when the bytes it will process are known.
    fn phase(&self, _name: &str, _total_bytes: Option<u64>) {}
    /// The item (a file, a pack) now being worked on.
    fn item(&self, _name: &str) {}
    /// `bytes` more of the phase are done.
    fn advance(&self, _bytes: u64) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}
