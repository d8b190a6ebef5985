//! Deployment cache for MicroPython device methods.
//!
//! This first part holds what the cache stands on:
//! - [`repl`]: the MicroPython raw REPL protocol over any async byte stream;
//! - [`device`]: what a device is (type, firmware), read over the REPL;
//! - [`emulator`]: the test device, the real MicroPython VM (WebAssembly)
//!   behind a small Node launcher in `cache-device/emulator`.
//!
//! - [`deploy_cache`]: deployed code by device type, firmware, signature and
//!   code hash, kept across restarts;
//! - [`session`]: deploy a method once per device, then only invoke it.

#![warn(missing_docs)]

pub mod deploy_cache;
pub mod device;
pub mod emulator;
pub mod repl;
pub mod session;

pub use deploy_cache::{DeployCache, DeployCacheConfig, DeployEntry, DeployStats, MethodCacheKey};
pub use device::Capabilities;
pub use emulator::{Emulator, Firmware};
pub use repl::{Output, RawRepl, ReplError};
pub use session::{DeviceError, DeviceSession};
