//! Turning values into bytes for stores outside the process.
//!
//! Every encoded value is an envelope: one format-version byte, the 8-byte
//! fingerprint of the Rust type that wrote it, then the payload. A value
//! written by an older build whose type has since changed reads back as
//! [`CodecError::TypeMismatch`], which a store treats as a miss, never as a
//! garbled value.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The envelope layout this build writes.
pub const FORMAT_VERSION: u8 = 1;

const HEADER: usize = 9;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Fewer bytes than an envelope header.
    #[error("encoded value is {0} bytes, shorter than the {HEADER}-byte header")]
    Truncated(usize),
    /// Written in an envelope layout this build does not read.
    #[error("encoded value has format version {found}; this build reads {FORMAT_VERSION}")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// Written for another Rust type.
    #[error(
        "encoded value was written for another type (fingerprint {found:016x}, expected {expected:016x})"
    )]
    TypeMismatch {
        /// The fingerprint found.
        found: u64,
        /// This type's fingerprint.
        expected: u64,
    },
    /// The payload did not encode or decode.
    #[error("payload: {0}")]
    Payload(String),
}

/// A fingerprint of a Rust type: blake3 of its name and size.
///
/// A renamed or resized type gets a new fingerprint. A change that keeps both
/// (a field's type swapped for one of equal size) is caught by the payload
/// decoder in most cases; bump the type's name or wrap it when it is not.
pub fn type_fingerprint<T>() -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(std::any::type_name::<T>().as_bytes());
    h.update(&(std::mem::size_of::<T>() as u64).to_le_bytes());
    let out = h.finalize();
    u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Encodes and decodes values for a store.
pub trait Codec: Send + Sync + 'static {
    /// Encodes `value` inside the envelope.
    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, CodecError>;
    /// Decodes an envelope written for `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// The default codec: postcard inside the versioned, fingerprinted envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(64);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&type_fingerprint::<T>().to_le_bytes());
        postcard::to_extend(value, out).map_err(|e| CodecError::Payload(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        if bytes.len() < HEADER {
            return Err(CodecError::Truncated(bytes.len()));
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(CodecError::Version { found: bytes[0] });
        }
        let found = u64::from_le_bytes(bytes[1..HEADER].try_into().expect("8 bytes"));
        let expected = type_fingerprint::<T>();
        if found != expected {
            return Err(CodecError::TypeMismatch { found, expected });
        }
        let (value, rest) = postcard::take_from_bytes::<T>(&bytes[HEADER..])
            .map_err(|e| CodecError::Payload(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CodecError::Payload(format!(
                "{} trailing bytes after the value",
                rest.len()
            )));
        }
        Ok(value)
    }
}

/// Encodes and decodes one cache's values for a remote tier.
pub struct RemoteCodec<V> {
    /// Encodes a value in the envelope.
    pub encode: fn(&V) -> Result<Vec<u8>, CodecError>,
    /// Decodes an envelope written for `V`.
    pub decode: fn(&[u8]) -> Result<V, CodecError>,
}

impl<V> Clone for RemoteCodec<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for RemoteCodec<V> {}

impl<V: Serialize + DeserializeOwned> RemoteCodec<V> {
    /// The postcard codec for `V`.
    pub fn postcard() -> Self {
        RemoteCodec {
            encode: |v| Postcard.encode(v),
            decode: |b| Postcard.decode(b),
        }
    }
}

/// Finds out at the call site whether `V` can leave the process: generated
/// code calls `(&CodecProbe::<V>::new()).remote_codec()`, which resolves to
/// [`ViaSerde`] when `V` is serde-serializable and to [`NoSerde`] otherwise.
#[doc(hidden)]
pub struct CodecProbe<V>(std::marker::PhantomData<fn() -> V>);

impl<V> CodecProbe<V> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        CodecProbe(std::marker::PhantomData)
    }
}
impl<V> Clone for CodecProbe<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for CodecProbe<V> {}

#[doc(hidden)]
pub trait ViaSerde<V> {
    fn remote_codec(self) -> Option<RemoteCodec<V>>;
}
impl<V: Serialize + DeserializeOwned> ViaSerde<V> for &CodecProbe<V> {
    fn remote_codec(self) -> Option<RemoteCodec<V>> {
        Some(RemoteCodec::postcard())
    }
}

#[doc(hidden)]
pub trait NoSerde<V> {
    fn remote_codec(self) -> Option<RemoteCodec<V>>;
}
impl<V> NoSerde<V> for CodecProbe<V> {
    fn remote_codec(self) -> Option<RemoteCodec<V>> {
        None
    }
}
