//! The `[remote]` section: how values and keys look in every store outside
//! the process other than Redis, which reads the same settings from
//! `[redis]`.

use super::*;

/// Keys and values outside the process: digests of keys instead of their
/// text, compression, encryption. Its `Debug` shows no secret.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteOptions {
    /// Store a keyed digest of each key instead of its text, so no argument
    /// value leaves the process. Needs `hash_secret` or `encryption_key`;
    /// patterns can then only be `*` or an exact key.
    pub hash_keys: bool,
    /// The secret that keys the digests (at least 16 bytes); without it,
    /// one is derived from `encryption_key`.
    #[serde(deserialize_with = "secret_text")]
    pub hash_secret: Option<String>,
    /// Compress values larger than this many bytes (feature `seal`).
    pub compress_above: Option<usize>,
    /// 64 hex digits: encrypt values with XChaCha20-Poly1305 (feature
    /// `seal`).
    #[serde(deserialize_with = "secret_text")]
    pub encryption_key: Option<String>,
}

impl fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("RemoteOptions")
            .field("hash_keys", &self.hash_keys)
            .field("hash_secret", &secret(&self.hash_secret))
            .field("compress_above", &self.compress_above)
            .field("encryption_key", &secret(&self.encryption_key))
            .finish()
    }
}

impl RemoteOptions {
    /// The key of the digests `hash_keys` writes, or why there is none.
    pub fn hash_key(&self) -> Result<Option<[u8; 32]>, String> {
        match (&self.hash_secret, &self.encryption_key) {
            (Some(s), _) if s.len() < 16 => {
                Err("remote: hash_secret must be at least 16 bytes long".into())
            }
            (Some(s), _) => Ok(Some(blake3::derive_key(
                "cache-core hash_keys v1",
                s.as_bytes(),
            ))),
            (None, Some(k)) => Ok(Some(blake3::derive_key(
                "cache-core hash_keys from encryption_key v1",
                k.as_bytes(),
            ))),
            (None, None) if self.hash_keys => Err(
                "remote: hash_keys needs a secret to key its digests: set hash_secret (or encryption_key)"
                    .into(),
            ),
            (None, None) => Ok(None),
        }
    }

    /// Whether values are compressed or encrypted (which needs the `seal`
    /// feature).
    pub fn seals(&self) -> bool {
        self.compress_above.is_some() || self.encryption_key.is_some()
    }
}
