//! Sealing values that leave the process: optional zstd compression and
//! optional authenticated encryption (XChaCha20-Poly1305).
//!
//! A sealed value is one flags byte, then (if encrypted) a 24-byte random
//! nonce and the ciphertext, else the (possibly compressed) bytes. The
//! remote key is the associated data, so a value copied to another key does
//! not open. With a key configured, an unencrypted value is refused, so a
//! store cannot be downgraded to plaintext.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::codec::CodecError;

const COMPRESSED: u8 = 1;
const ENCRYPTED: u8 = 2;
const NONCE: usize = 24;
/// The largest value a compressed entry may expand to.
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// Compresses and encrypts values on their way out, and back.
#[derive(Clone, Default)]
pub struct Sealer {
    compress_above: Option<usize>,
    cipher: Option<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("compress_above", &self.compress_above)
            .field("encrypted", &self.cipher.is_some())
            .finish()
    }
}

impl Sealer {
    /// Compresses values of more than `bytes` (zstd), if set.
    pub fn compress_above(mut self, bytes: Option<usize>) -> Self {
        self.compress_above = bytes;
        self
    }

    /// Encrypts with a 32-byte key given as 64 hex digits.
    pub fn encryption_key_hex(mut self, hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "the encryption key must be 64 hex digits (32 bytes); got {} characters",
                hex.len()
            ));
        }
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        self.cipher = Some(XChaCha20Poly1305::new(&key.into()));
        Ok(self)
    }

    /// Whether values are encrypted.
    pub fn encrypts(&self) -> bool {
        self.cipher.is_some()
    }

    /// Seals `plain`, bound to `aad` (the remote key).
    pub fn seal(&self, plain: Vec<u8>, aad: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut flags = 0;
        let mut body = plain;
        if let Some(limit) = self.compress_above
            && body.len() > limit
        {
            let c =
                zstd::bulk::compress(&body, 3).map_err(|e| CodecError::Payload(e.to_string()))?;
            if c.len() < body.len() {
                body = c;
                flags |= COMPRESSED;
            }
        }
        let mut out = Vec::with_capacity(body.len() + 1 + NONCE + 16);
        match &self.cipher {
            Some(cipher) => {
                flags |= ENCRYPTED;
                let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
                let ct = cipher
                    .encrypt(&nonce, Payload { msg: &body, aad })
                    .map_err(|_| CodecError::Payload("encryption failed".into()))?;
                out.push(flags);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
            }
            None => {
                out.push(flags);
                out.extend_from_slice(&body);
            }
        }
        Ok(out)
    }

    /// Opens a sealed value stored under `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CodecError> {
        let (&flags, rest) = sealed.split_first().ok_or(CodecError::Truncated(0))?;
        if flags & !(COMPRESSED | ENCRYPTED) != 0 {
            return Err(CodecError::Payload(format!(
                "unknown seal flags {flags:#x}"
            )));
        }
        let body = match (&self.cipher, flags & ENCRYPTED != 0) {
            (Some(cipher), true) => {
                if rest.len() < NONCE {
                    return Err(CodecError::Truncated(sealed.len()));
                }
                let (nonce, ct) = rest.split_at(NONCE);
                cipher
                    .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
                    .map_err(|_| {
                        CodecError::Payload(
                            "does not decrypt: wrong key, tampered, or moved".into(),
                        )
                    })?
            }
            (Some(_), false) => {
                return Err(CodecError::Payload(
                    "stored unencrypted, but a key is configured".into(),
                ));
            }
            (None, true) => {
                return Err(CodecError::Payload(
                    "stored encrypted, but no key is configured".into(),
                ));
            }
            (None, false) => rest.to_vec(),
        };
        if flags & COMPRESSED != 0 {
            zstd::bulk::decompress(&body, MAX_DECOMPRESSED)
                .map_err(|e| CodecError::Payload(format!("zstd: {e}")))
        } else {
            Ok(body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn seal_and_open() {
        let plain = vec![7u8; 10_000];
        let s = Sealer::default().compress_above(Some(100));
        let sealed = s.seal(plain.clone(), b"k").unwrap();
        assert!(sealed.len() < 200, "compressed");
        assert_eq!(s.open(&sealed, b"k").unwrap(), plain);

        let e = Sealer::default()
            .encryption_key_hex(KEY)
            .unwrap()
            .compress_above(Some(100));
        let sealed = e.seal(plain.clone(), b"k1").unwrap();
        assert_eq!(e.open(&sealed, b"k1").unwrap(), plain);
        assert!(e.open(&sealed, b"k2").is_err(), "bound to its key");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(e.open(&tampered, b"k1").is_err());
        assert!(s.open(&sealed, b"k1").is_err(), "no key configured");
        assert!(
            e.open(&s.seal(vec![1, 2], b"k1").unwrap(), b"k1").is_err(),
            "no downgrade"
        );
        assert!(Sealer::default().encryption_key_hex("abc").is_err());
        assert!(s.open(&[], b"k").is_err());
        assert!(s.open(&[0x80, 1], b"k").is_err());
    }
}
