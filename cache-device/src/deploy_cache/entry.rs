//! What a deployment is keyed on, and what an entry holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a deployment is keyed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MethodCacheKey {
    /// The device type, such as `webassembly/JS with Emscripten/pyscript`.
    pub device_type: String,
    /// The firmware, such as `3.4.0; MicroPython v1.27.0 on 2025-12-10/mpy774`.
    pub firmware: String,
    /// The method's signature, such as `Sensor::read(channel: u8) -> f32`.
    pub signature: String,
    /// The blake3 hash of the code, in hex.
    pub code_hash: String,
}

impl MethodCacheKey {
    /// A short tag of the code hash (64 bits), which the device keeps to
    /// confirm it has this code.
    pub fn code_tag(&self) -> &str {
        &self.code_hash[..16.min(self.code_hash.len())]
    }

    /// The key for `code` deployed as `signature` on a device.
    pub fn new(device_type: &str, firmware: &str, signature: &str, code: &str) -> Self {
        MethodCacheKey {
            device_type: device_type.into(),
            firmware: firmware.into(),
            signature: signature.into(),
            code_hash: blake3::hash(code.as_bytes()).to_hex().to_string(),
        }
    }

    /// A stable file-name-safe id of the whole key.
    pub fn id(&self) -> String {
        let mut h = blake3::Hasher::new();
        for part in [
            &self.device_type,
            &self.firmware,
            &self.signature,
            &self.code_hash,
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().to_hex()[..32].to_string()
    }
}

/// Whether a deployment worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The code ran on the device and defined the method.
    Deployed,
    /// The device rejected the code.
    Failed,
}

/// One deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployEntry {
    /// Its key.
    pub key: MethodCacheKey,
    /// The code deployed.
    pub code: String,
    /// The function the code defines.
    pub method_name: String,
    /// When it was deployed (milliseconds since the Unix epoch with the
    /// system clock; a manual clock's time in tests).
    pub deployed_at: u64,
    /// When it was last used (as `deployed_at`).
    pub last_accessed: u64,
    /// How often it was used.
    pub access_count: u64,
    /// How long the deployment took, in milliseconds.
    pub deployment_ms: u64,
    /// Whether it worked.
    pub status: Status,
    /// Anything else worth keeping.
    pub metadata: BTreeMap<String, String>,
}
