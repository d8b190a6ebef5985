//! Deployment cache for MicroPython device methods: a method's body yields
//! MicroPython code; [`deploy_cached`] deploys it once per device type,
//! firmware and code hash, keeps that knowledge across restarts, and
//! afterwards only invokes it.
//!
//! - [`repl`]: the raw REPL protocol (raw-paste negotiated, with a
//!   fallback) over any async byte stream: a child process's stdio, TCP
//!   ([`TcpRepl`]), or a serial port (`SerialRepl`, feature `serial`);
//!   a device that resets on its own is noticed and entered again;
//! - [`device`]: what a device is (type, firmware), read over the REPL;
//! - [`deploy_cache`]: deployed code by device type, firmware, signature and
//!   code hash: checksummed files, an LRU bound, expiry, compaction, stats;
//! - [`session`]: one device; deploys a method once, then only invokes it,
//!   and redeploys from the cache after a reset or reconnect;
//! - [`emulator`]: the test device, the real MicroPython VM (WebAssembly)
//!   behind a small Node launcher in `cache-device/emulator`.

#![warn(missing_docs)]

pub mod deploy_cache;
pub mod device;
pub mod emulator;
pub mod repl;
pub mod session;

pub use deploy_cache::{DeployCache, DeployCacheConfig, DeployEntry, DeployStats, MethodCacheKey};
pub use device::Capabilities;
pub use emulator::{Emulator, EmulatorOptions, EmulatorSession, Firmware, PasteSupport};
#[cfg(feature = "serial")]
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
    use crate::DeviceError;
    pub use crate::session::{DeviceHandle, IntoCode};
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    /// An argument of a `#[deploy_cached]` method.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be an argument of a #[deploy_cached] method",
        label = "arguments travel to the device as JSON",
        note = "derive or implement `serde::Serialize` for `{Self}`"
    )]
    pub trait Arg {
        /// The argument as JSON.
        fn to_json(&self, method: &str) -> Result<Value, DeviceError>;
    }
    impl<T: Serialize + ?Sized> Arg for T {
        fn to_json(&self, method: &str) -> Result<Value, DeviceError> {
            serde_json::to_value(self).map_err(|e| DeviceError::Args {
                method: method.into(),
                error: e.to_string(),
            })
        }
    }

    /// The result type of a `#[deploy_cached]` method.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be the result of a #[deploy_cached] method",
        label = "results come back from the device as JSON",
        note = "derive or implement `serde::Deserialize` for `{Self}`"
    )]
    pub trait Ret: Sized {
        /// The result, from what the device returned.
        fn from_json(v: Value, method: &str) -> Result<Self, DeviceError>;
    }
    impl<T: DeserializeOwned> Ret for T {
        fn from_json(v: Value, method: &str) -> Result<Self, DeviceError> {
            T::deserialize(&v).map_err(|e| DeviceError::Result {
                method: method.into(),
                output: v.to_string(),
                error: e.to_string(),
            })
        }
    }

    /// What a `#[deploy_cached]` method expands to: the arguments are
    /// already JSON, and so is the result.
    pub async fn call<H: DeviceHandle + ?Sized>(
        handle: &mut H,
        method: &str,
        signature: &str,
        generate: impl FnOnce() -> String,
        args: &[Value],
    ) -> Result<Value, DeviceError> {
        handle
            .session()
            .call(method, signature, generate, &args)
            .await
    }
}
