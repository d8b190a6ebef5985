//! What a device is, read over its REPL.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::repl::{RawRepl, ReplError};

/// A device's type and firmware.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capabilities {
    /// `sys.platform`, `_machine` and `_build`, such as
    /// `webassembly/JS with Emscripten/pyscript`.
    pub device_type: String,
    /// `sys.version` and `_mpy`, such as
    /// `3.4.0; MicroPython v1.27.0 on 2025-12-10/mpy774`. The version string
    /// carries the tag and build date: `_mpy` alone does not change between
    /// firmware releases.
    pub firmware: String,
}

const PROBE: &str = "import sys, json\n\
impl = sys.implementation\n\
print(json.dumps({'platform': sys.platform, 'machine': getattr(impl, '_machine', ''), \
'build': getattr(impl, '_build', ''), 'version': sys.version, 'mpy': getattr(impl, '_mpy', 0)}))\n";

#[derive(Deserialize)]
struct Probe {
    platform: String,
    machine: String,
    build: String,
    version: String,
    mpy: u64,
}

impl Capabilities {
    /// Reads the capabilities of the device behind `repl` (in the raw REPL).
    pub async fn read<R, W>(repl: &mut RawRepl<R, W>) -> Result<Capabilities, ReplError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let out = repl.exec(PROBE).await?;
        let p: Probe = serde_json::from_str(out.trim()).map_err(|e| ReplError::Protocol {
            waiting_for: "the capabilities as JSON".into(),
            got: format!("{out:?} ({e})"),
        })?;
        Ok(Capabilities {
            device_type: format!("{}/{}/{}", p.platform, p.machine, p.build),
            firmware: format!("{}/mpy{}", p.version, p.mpy),
        })
    }
}
