//! Deployment cache for MicroPython device methods: a method's body yields
//! MicroPython code; [`deploy_cached`] deploys it once per device type,
//! firmware and code hash, keeps that knowledge across restarts, and
//! afterwards only invokes it.
//!
//! - [`repl`]: the raw REPL protocol (raw-paste negotiated for code longer
//!   than a board's input buffer, with a fallback) over any async byte
//!   stream: a child process's stdio, TCP ([`TcpRepl`]), or a serial port
//!   (`SerialRepl`, feature `serial`);
//!   a device that resets on its own is noticed and entered again;
//! - [`device`]: what a device is (type, firmware), read over the REPL;
//! - [`deploy_cache`]: deployed code by device type, firmware, signature and
//!   code hash: checksummed files, an LRU bound, expiry, compaction, stats;
//! - [`session`]: one device; deploys a method once, then only invokes it,
//!   and redeploys from the cache after a reset or reconnect;
//! - `emulator` (feature `test-util`): the test device, the real MicroPython
//!   VM (WebAssembly) behind a Node launcher in `cache-device/emulator` that
//!   behaves as a board does for a board's clients (raw-paste, Ctrl-C,
//!   soft and hard resets, banners), mpremote among them.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod deploy_cache;
mod deployment;
pub mod device;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod emulator;
mod error;
mod protocol;
mod recency;
pub mod repl;
pub mod session;
mod wire;

pub use deploy_cache::{DeployCache, DeployCacheConfig, DeployEntry, DeployStats, MethodCacheKey};
pub use device::Capabilities;
#[cfg(feature = "test-util")]
pub use emulator::{Emulator, EmulatorOptions, EmulatorSession, Firmware, PasteSupport};
#[cfg(feature = "serial")]
#[cfg_attr(docsrs, doc(cfg(feature = "serial")))]
pub use repl::SerialRepl;
pub use repl::{Output, RawPaste, RawRepl, ReplError, TcpRepl};
pub use session::{DeviceError, DeviceHandle, DeviceSession, IntoCode};

/// Deploys a device method's MicroPython code once per device type,
/// firmware and code hash, and afterwards only invokes it.
///
/// Goes on `async fn`s of a type implementing [`DeviceHandle`], taking
/// `&mut self` and returning `Result<T, E>` where `T: Deserialize` and
/// `E: From<DeviceError>`. The body yields the code (a `String` or `&str`)
/// defining a Python function of the method's name (or `name = "..."`); it
/// runs once per process and signature, so it cannot use the arguments or
/// `self`. The arguments are serialized to JSON and passed to the function
/// positionally; its return value comes back through `json.dumps`.
///
/// ```ignore
/// impl Board {
///     #[deploy_cached]
///     async fn scale(&mut self, x: i64, k: i64) -> Result<i64, DeviceError> {
///         "def scale(x, k):\n    return x * k\n"
///     }
/// }
/// ```
pub use cache_macros::deploy_cached;

#[doc(hidden)]
pub mod __private {
    pub use crate::session::{DeviceHandle, IntoCode};
    pub use crate::wire::{Arg, Ret, call};
}
