//! AES-256-GCM-SIV sealing with associated data that binds every ciphertext to the format
//! version, its kind (domain) and its id, so that no blob or metadata object can be swapped for
//! another one, even one of the same vault.
//!
//! Wire layout of a sealed object: `nonce (12) || ciphertext || tag (16)`. The nonce is drawn
//! from the OS generator inside `seal`; callers cannot choose it. GCM-SIV is misuse resistant,
//! so even a repeated random nonce would only reveal equality of identical plaintexts.

use crate::error::{Error, Result};
use aes_gcm_siv::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};
use rand::RngCore;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const AAD_MAGIC: &[u8; 6] = b"vault\x01";

/// What a ciphertext is. The byte values are part of the on-disk format (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    DataBlob = 1,
    TreeBlob = 2,
    ListBlob = 3,
    /// A frame of several data chunks (docs/DESIGN.md §5), bound to its frame id.
    DataFrame = 4,
    PackHeader = 10,
    IndexFile = 11,
    Snapshot = 12,
    Settings = 13,
    KeySlot = 14,
    Log = 15,
    Remotes = 16,
    Policy = 17,
    Journal = 18,
}

pub struct Sealer {
    cipher: Aes256GcmSiv,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

fn aad(domain: Domain, id: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_MAGIC.len() + 1 + id.len());
    a.extend_from_slice(AAD_MAGIC);
    a.push(domain as u8);
    a.extend_from_slice(id);
    a
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Sealer { cipher: Aes256GcmSiv::new(key.into()) }
    }

    /// Encrypts `plain`, bound to (`domain`, `id`).
    pub fn seal(&self, domain: Domain, id: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(OVERHEAD + plain.len());
        out.extend_from_slice(&[0u8; NONCE_LEN]);
        out.extend_from_slice(plain);
        self.seal_in_place(domain, id, &mut out);
        out
    }

    /// [`Sealer::seal`] without a copy: `buf` holds `NONCE_LEN` bytes of room followed by the
    /// plaintext; the nonce is written into the room, the plaintext is encrypted where it is
    /// and the tag appended, giving the same layout as `seal`. (Reserve `TAG_LEN` bytes of
    /// capacity to avoid a reallocation.)
    pub fn seal_in_place(&self, domain: Domain, id: &[u8], buf: &mut Vec<u8>) {
        assert!(buf.len() >= NONCE_LEN, "no room for the nonce");
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::from(nonce), &aad(domain, id), (&mut buf[NONCE_LEN..]).into())
            // Encryption fails only for plaintexts over 2^36 bytes, far beyond any blob.
            .expect("plaintext within AES-GCM-SIV's limit");
        buf.extend_from_slice(&tag);
    }

    /// Decrypts and authenticates; any tampering, truncation or a wrong (`domain`, `id`)
    /// gives [`crate::ErrorKind::Corrupt`].
    pub fn open(&self, domain: Domain, id: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < OVERHEAD {
            return Err(Error::corrupt(format!("sealed object too short ({} bytes)", sealed.len())));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| Error::corrupt("nonce of the wrong length"))?;
        self.cipher
            .decrypt(&nonce, Payload { msg: ct, aad: &aad(domain, id) })
            .map_err(|_| Error::corrupt("authentication failed (damaged or tampered data)"))
    }

    /// [`Sealer::open`] without a copy: authenticates and decrypts `sealed` where it lies and
    /// returns the plaintext, a slice of `sealed`. On failure `sealed` holds garbage.
    pub fn open_in_place<'a>(&self, domain: Domain, id: &[u8], sealed: &'a mut [u8]) -> Result<&'a mut [u8]> {
        if sealed.len() < OVERHEAD {
            return Err(Error::corrupt(format!("sealed object too short ({} bytes)", sealed.len())));
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = Nonce::try_from(&nonce[..]).map_err(|_| Error::corrupt("nonce of the wrong length"))?;
        let tag = Tag::try_from(&tag[..]).map_err(|_| Error::corrupt("tag of the wrong length"))?;
        self.cipher
            .decrypt_inout_detached(&nonce, &aad(domain, id), ct.into(), &tag)
            .map_err(|_| Error::corrupt("authentication failed (damaged or tampered data)"))?;
        Ok(ct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096), id in any::<[u8; 32]>()) {
            let s = Sealer::new(&[7u8; 32]);
            let c = s.seal(Domain::DataBlob, &id, &data);
            prop_assert_eq!(c.len(), data.len() + OVERHEAD);
            prop_assert_eq!(s.open(Domain::DataBlob, &id, &c).unwrap(), data.clone());
            let mut c2 = c.clone();
            prop_assert_eq!(&*s.open_in_place(Domain::DataBlob, &id, &mut c2).unwrap(), &data[..]);
            prop_assert!(s.open_in_place(Domain::DataFrame, &id, &mut c.clone()).is_err());
            let mut c3 = c;
            let last = c3.len() - 1;
            c3[last] ^= 1;
            prop_assert!(s.open_in_place(Domain::DataBlob, &id, &mut c3).is_err());
        }

        #[test]
        fn any_flipped_bit_is_detected(data in proptest::collection::vec(any::<u8>(), 1..512), pos in any::<usize>(), bit in 0u8..8) {
            let s = Sealer::new(&[9u8; 32]);
            let mut c = s.seal(Domain::TreeBlob, b"id", &data);
            let i = pos % c.len();
            c[i] ^= 1 << bit;
            prop_assert!(s.open(Domain::TreeBlob, b"id", &c).is_err());
        }
    }

    /// RFC 8452, appendix C.2 (AEAD_AES_256_GCM_SIV), its first two vectors: what every vault
    /// ever written was sealed with, whatever implementation of it is linked.
    #[test]
    fn rfc_8452_vector() {
        let mut key = [0u8; 32];
        key[0] = 1;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[0] = 3;
        let c = Aes256GcmSiv::new(&key.into());
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let empty = c.encrypt(&Nonce::from(nonce), Payload { msg: b"", aad: b"" }).unwrap();
        assert_eq!(hex(&empty), "07f5f4169bbf55a8400cd47ea6fd400f");
        let eight = c.encrypt(&Nonce::from(nonce), Payload { msg: &[1, 0, 0, 0, 0, 0, 0, 0], aad: b"" }).unwrap();
        assert_eq!(hex(&eight), "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28");
    }

    #[test]
    fn binding_to_domain_and_id() {
        let s = Sealer::new(&[1u8; 32]);
        let c = s.seal(Domain::DataBlob, b"a", b"hello");
        assert!(s.open(Domain::TreeBlob, b"a", &c).is_err());
        assert!(s.open(Domain::DataBlob, b"b", &c).is_err());
        assert!(Sealer::new(&[2u8; 32]).open(Domain::DataBlob, b"a", &c).is_err());
        assert!(s.open(Domain::DataBlob, b"a", &c[..10]).is_err());
    }
}
