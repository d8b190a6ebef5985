//! The file format of one deployment entry: a magic, a version, flags,
//! a MAC (or plain digest) over the payload, then the (maybe compressed)
//! JSON of the entry.

use super::*;

pub(super) const MAGIC: &[u8; 4] = b"MPDC";
pub(super) const FORMAT: u8 = 1;
pub(super) const COMPRESSED: u8 = 1;
/// The 32 bytes after the flags are a keyed MAC, not a plain checksum.
pub(super) const KEYED: u8 = 2;
pub(super) const HEADER: usize = 4 + 1 + 1 + 32;

/// Why an entry file could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum FileError {
    #[error("too short ({0} bytes)")]
    Truncated(usize),
    #[error("not a deployment cache file")]
    Magic,
    #[error("format {0}, this build reads {FORMAT}")]
    Format(u8),
    #[error("checksum mismatch")]
    Checksum,
    #[error("its MAC does not verify with this cache's mac_key (written by someone else?)")]
    Mac,
    #[error("it has no MAC, and this cache requires one (mac_key is set)")]
    Unkeyed,
    #[error("it has a MAC, and this cache has no mac_key to check it")]
    NoKey,
    #[error("its code does not hash to its code_hash")]
    CodeHash,
    #[error("{0}")]
    Decode(String),
}

/// The 32 bytes that vouch for `payload`: its blake3 hash, or its keyed MAC.
pub(super) fn seal(payload: &[u8], mac: Option<&[u8; 32]>) -> [u8; 32] {
    match mac {
        Some(k) => *blake3::keyed_hash(k, payload).as_bytes(),
        None => *blake3::hash(payload).as_bytes(),
    }
}

pub(super) fn encode(e: &DeployEntry, compress: bool, mac: Option<&[u8; 32]>) -> Vec<u8> {
    let json = serde_json::to_vec(e).expect("entries serialize");
    let (flags, payload) = match compress
        .then(|| zstd::bulk::compress(&json, 3).ok())
        .flatten()
    {
        Some(c) if c.len() < json.len() => (COMPRESSED, c),
        _ => (0, json),
    };
    let flags = flags | if mac.is_some() { KEYED } else { 0 };
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.push(flags);
    out.extend_from_slice(&seal(&payload, mac));
    out.extend_from_slice(&payload);
    out
}

pub(super) fn decode(b: &[u8], mac: Option<&[u8; 32]>) -> Result<DeployEntry, FileError> {
    if b.len() < HEADER {
        return Err(FileError::Truncated(b.len()));
    }
    if &b[..4] != MAGIC {
        return Err(FileError::Magic);
    }
    if b[4] != FORMAT {
        return Err(FileError::Format(b[4]));
    }
    let payload = &b[HEADER..];
    match (b[5] & KEYED != 0, mac) {
        (true, None) => return Err(FileError::NoKey),
        (false, Some(_)) => return Err(FileError::Unkeyed),
        (true, Some(_)) if seal(payload, mac)[..] != b[6..HEADER] => return Err(FileError::Mac),
        (false, None) if seal(payload, None)[..] != b[6..HEADER] => {
            return Err(FileError::Checksum);
        }
        _ => {}
    }
    let json = if b[5] & COMPRESSED != 0 {
        zstd::bulk::decompress(payload, 64 << 20).map_err(|e| FileError::Decode(e.to_string()))?
    } else {
        payload.to_vec()
    };
    let e: DeployEntry =
        serde_json::from_slice(&json).map_err(|e| FileError::Decode(e.to_string()))?;
    // A file whose checksum holds may still carry code that is not what
    // its key names: never deploy that.
    if blake3::hash(e.code.as_bytes()).to_hex().as_str() != e.key.code_hash {
        return Err(FileError::CodeHash);
    }
    Ok(e)
}
