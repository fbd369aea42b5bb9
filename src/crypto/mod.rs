//! Keys, authenticated encryption and content ids.
//!
//! Owns every use of key material. Must never: expose a key through Debug or Copy, reuse a
//! nonce chosen by a caller (nonces are drawn inside [`aead::Sealer::seal`]), or fall back to a
//! default key on error.

pub mod aead;
pub mod keys;
pub mod many;
pub mod slot;
pub mod source;

pub use aead::{Domain, Sealer};
pub use keys::{Keys, MasterKey, Secret};
