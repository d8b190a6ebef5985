//! # cache-core
//!
//! Declarative caching for Rust. Put `#[cached]` on a function or a method,
//! sync or async, and its results are cached under a key derived from its
//! arguments at compile time:
//!
//! ```
//! use cache_core::cached;
//!
//! #[cached(ttl = 60)]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! assert_eq!(square(4), 16); // computed
//! assert_eq!(square(4), 16); // from the cache
//! assert_eq!(square_cache().stats().hits, 1);
//! assert!(square_cache().invalidate(&4));
//! ```
//!
//! The same runtime is usable without the macro through [`Cache`].
//!
//! ## Modules
//! - [`cache`]: the typed [`Cache`] and its builder.
//! - [`key`]: how arguments read as key text.
//! - [`pattern`]: Redis-compatible glob patterns.
//! - [`stats`], [`events`]: counters and listeners.
//! - [`eviction`]: the engine's own policy, or sampled LRU and LFU.
//! - [`registry`]: reaching caches by name; service handlers and events.
//! - [`config`]: layered configuration from files and `CACHE_*` variables.
//! - [`namespace`]: tenants and quotas.
//! - `http` (feature `http`): the admin API as an axum router.
//! - `redis`, `seal` (feature `redis`): the Redis store, tiering, sealing.
//! - [`store`], [`codec`]: byte stores for values that leave the process.
//! - [`clock`]: the system clock and a manual one for tests.

#![warn(missing_docs)]

pub mod cache;
pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod events;
pub mod eviction;
mod flight;
#[cfg(feature = "http")]
pub mod http;
pub mod key;
pub mod namespace;
pub mod pattern;
#[cfg(feature = "redis")]
pub mod redis;
pub mod registry;
#[cfg(feature = "redis")]
pub mod seal;
mod spec;
pub mod stats;
pub mod store;

pub use cache::{Cache, CacheBuilder, CacheKey, CacheValue, RefreshTicket};
pub use cache_macros::{action, cache_evict, cache_put, cache_service, cached};
pub use clock::{Clock, ManualClock};
pub use codec::{Codec, CodecError, Postcard};
pub use config::{Config, ConfigError, ConfigSource};
pub use events::{CacheEvent, EventKind, ListenerId};
pub use eviction::Eviction;
pub use key::KeyPart;
pub use namespace::{TenantId, current_tenant, scope as tenant_scope, with_tenant};
pub use pattern::{Pattern, PatternError};
pub use registry::{CacheError, Registry, RegistryError, registry};
pub use stats::Stats;
pub use store::{MemoryStore, Store, StoreError, TypedStore};

/// What generated code uses. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::cache::{Cache, CacheBuilder};
    pub use crate::codec::{CodecProbe, NoSerde, ViaSerde};
    pub use crate::eviction::Eviction;
    pub use crate::key::{KeyArg, ViaHash, ViaKeyPart, ViaSerialize};
    pub use crate::namespace::{TenantId, current_tenant};
    pub use std::sync::OnceLock;
    pub use std::time::Duration;

    /// A cache whose loads may fail with `E`: `(&TryLoad::new(c)).load(..)`
    /// shares a failed load's error with its waiters when `E: Clone`
    /// ([`ViaSharedErr`]), and otherwise lets each waiter compute
    /// ([`ViaOwnErr`]).
    pub struct TryLoad<'a, K, V, E>(pub &'a Cache<K, V>, std::marker::PhantomData<fn() -> E>);

    impl<K, V, E> Clone for TryLoad<'_, K, V, E> {
        fn clone(&self) -> Self {
            *self
        }
    }
    impl<K, V, E> Copy for TryLoad<'_, K, V, E> {}

    impl<'a, K, V, E> TryLoad<'a, K, V, E> {
        /// Wraps `cache`.
        pub fn new(cache: &'a Cache<K, V>) -> Self {
            TryLoad(cache, std::marker::PhantomData)
        }
    }

    /// Loads sharing a failed load's clonable error with the waiters.
    pub trait ViaSharedErr<'a, K, V, E> {
        /// The value, from the cache or `f`.
        fn load(self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E>;
        /// The value, from the cache or `f`, without blocking.
        fn load_async<F: std::future::Future<Output = Result<V, E>> + 'a>(
            self,
            key: K,
            f: F,
        ) -> impl std::future::Future<Output = Result<V, E>> + 'a;
    }

    impl<'a, K: crate::CacheKey, V: crate::CacheValue, E: Clone + Send + Sync + 'static>
        ViaSharedErr<'a, K, V, E> for &TryLoad<'a, K, V, E>
    {
        fn load(self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
            self.0.get_or_try_insert_with_shared(key, f)
        }
        fn load_async<F: std::future::Future<Output = Result<V, E>> + 'a>(
            self,
            key: K,
            f: F,
        ) -> impl std::future::Future<Output = Result<V, E>> + 'a {
            let c = self.0;
            c.get_or_try_insert_with_shared_async(key, f)
        }
    }

    /// Loads whose errors stay with their callers.
    pub trait ViaOwnErr<'a, K, V, E> {
        /// The value, from the cache or `f`.
        fn load(self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E>;
        /// The value, from the cache or `f`, without blocking.
        fn load_async<F: std::future::Future<Output = Result<V, E>> + 'a>(
            self,
            key: K,
            f: F,
        ) -> impl std::future::Future<Output = Result<V, E>> + 'a;
    }

    impl<'a, K: crate::CacheKey, V: crate::CacheValue, E: 'a> ViaOwnErr<'a, K, V, E>
        for TryLoad<'a, K, V, E>
    {
        fn load(self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
            self.0.get_or_try_insert_with(key, f)
        }
        fn load_async<F: std::future::Future<Output = Result<V, E>> + 'a>(
            self,
            key: K,
            f: F,
        ) -> impl std::future::Future<Output = Result<V, E>> + 'a {
            let c = self.0;
            c.get_or_try_insert_with_async(key, f)
        }
    }

    /// How a result counts for `cache_errors` and `cache_none`.
    #[derive(PartialEq, Eq)]
    pub enum Outcome {
        /// An `Err`.
        Err,
        /// A `None`.
        None,
        /// Anything else.
        Value,
    }

    /// Wraps a result so method resolution can tell `Result` and `Option` apart.
    pub struct Probe<'a, T>(pub &'a T);

    impl<T> Clone for Probe<'_, T> {
        fn clone(&self) -> Self {
            *self
        }
    }
    impl<T> Copy for Probe<'_, T> {}

    pub trait ProbeResult {
        fn outcome(self) -> Outcome;
    }
    impl<T, E> ProbeResult for &Probe<'_, Result<T, E>> {
        #[inline]
        fn outcome(self) -> Outcome {
            if self.0.is_err() {
                Outcome::Err
            } else {
                Outcome::Value
            }
        }
    }

    pub trait ProbeOption {
        fn outcome(self) -> Outcome;
    }
    impl<T> ProbeOption for &Probe<'_, Option<T>> {
        #[inline]
        fn outcome(self) -> Outcome {
            if self.0.is_none() {
                Outcome::None
            } else {
                Outcome::Value
            }
        }
    }

    pub trait ProbePlain {
        fn outcome(self) -> Outcome;
    }

    impl<T> ProbePlain for Probe<'_, T> {
        #[inline]
        fn outcome(self) -> Outcome {
            Outcome::Value
        }
    }

    pub use inventory;

    pub use crate::registry::ServiceInit;

    pub use crate::registry::EvictPlan;

    pub use crate::pattern::push_glob_escaped;

    /// Checks an argument type can be part of a key; spanned at the argument.
    #[inline(always)]
    pub fn assert_key_arg<T: std::hash::Hash + Eq + Clone + Send + Sync + 'static>() {}

    /// Checks a return type can be cached; spanned at the return type.
    #[inline(always)]
    pub fn assert_value<T: Clone + Send + Sync + 'static>() {}

    /// Runs a refresh of a sync function on its own thread.
    pub fn refresh_in_thread(f: impl FnOnce() + Send + 'static) {
        if let Err(e) = std::thread::Builder::new()
            .name("cache-refresh".into())
            .spawn(f)
        {
            tracing::warn!("cache refresh not started: {e}");
        }
    }

    /// Runs a refresh of an async function as a tokio task. Outside a tokio
    /// runtime the refresh is dropped and the entry lives until its TTL.
    pub fn refresh_in_task(fut: impl std::future::Future<Output = ()> + Send + 'static) {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(fut);
            }
            Err(_) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!("refresh-ahead needs a tokio runtime; refreshes are skipped")
                });
            }
        }
    }
}
