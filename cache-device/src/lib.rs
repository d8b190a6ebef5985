//! Deployment cache for MicroPython device methods.
//!
//! Placeholder: the transport, the deployment cache and `#[deploy_cached]`
//! arrive with their own issue. It depends on `cache-core` already so the
//! workspace builds it with the rest.

pub use cache_core;
