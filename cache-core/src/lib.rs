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
//! - [`registry`](mod@registry): reaching caches by name; service handlers and events.
//! - [`config`]: layered configuration from files and `CACHE_*` variables.
//! - [`namespace`]: tenants and quotas.
//! - `http` (feature `http`): the admin API as an axum router, with health
//!   probes and (with `metrics`) `GET /metrics`.
//! - [`health`]: the state of the backends, for probes.
//! - `metrics` (feature `metrics`): meters for Prometheus or any `metrics`
//!   recorder.
//! - `redis` (feature `redis`): the Redis store; `seal` (feature `seal`,
//!   which `redis` enables): compression and encryption of values.
//! - `disk` (feature `disk`): the redb store, warm after a restart.
//! - [`store`], [`backends`], [`codec`]: byte stores for values that leave
//!   the process, the tier's view of them, and stores by name.
//! - [`clock`]: the system clock and a manual one for tests.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod cache;
pub mod clock;
pub mod codec;
pub mod config;
pub mod depend;
#[cfg(feature = "dht")]
#[cfg_attr(docsrs, doc(cfg(feature = "dht")))]
pub mod dht;
#[cfg(feature = "disk")]
#[cfg_attr(docsrs, doc(cfg(feature = "disk")))]
pub mod disk;
pub mod error;
pub mod events;
pub mod eviction;
mod flight;
pub mod health;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod index;
pub mod key;
#[cfg(feature = "metrics")]
mod meter;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod namespace;
pub mod pattern;
mod probe;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod registry;
#[cfg(feature = "seal")]
#[cfg_attr(docsrs, doc(cfg(feature = "seal")))]
pub mod seal;
pub mod source;
mod spec;
pub mod stats;
pub mod store;
pub mod tenant_counts;
pub mod warm;
pub mod weigh;

pub use cache::{
    Cache, CacheBuilder, CacheKey, CacheValue, RefreshTicket, Startup, SyncOptions, Synced,
};
pub use cache_macros::{action, cache_evict, cache_put, cache_service, cached};

/// The attributes of a `#[cache_service]` impl's methods, for a glob import.
///
/// A `#[cache_service]` brings them into its module's scope itself (a
/// name imported explicitly, or defined there, takes precedence), so
/// `#[cached]`, `#[action]`, `#[cache_evict]` and `#[cache_put]` work on its
/// methods without an import, as pyo3's `#[pymethods]` does for
/// `#[getter]`.
pub mod attributes {
    pub use cache_macros::{action, cache_evict, cache_put, cached};
}
pub use clock::{Clock, ManualClock};
pub use codec::{Codec, CodecError, Postcard};
pub use config::{Config, ConfigError, ConfigSource};
pub use events::{CacheEvent, EventKind, ListenerId};
pub use eviction::{Eviction, Priority};
pub use key::KeyPart;
pub use namespace::{TenantId, current_tenant, scope as tenant_scope, with_tenant};
pub use pattern::{Pattern, PatternError};
pub use registry::{CacheError, Registry, RegistryError, registry};
pub use stats::Stats;
pub use store::backends;
pub use store::{
    Broadcast, LocalBroadcast, Lock, MemoryStore, Remote, Store, StoreError, StoreRemote,
    TypedStore,
};
pub use warm::{WarmReport, warm, warm_async};
pub use weigh::Weigh;

/// What generated code uses. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::cache::{Cache, CacheBuilder};
    pub use crate::codec::{CodecProbe, NoSerde, ViaSerde};
    pub use crate::depend::DependencySpec;
    pub use crate::eviction::{Eviction, Priority};
    pub use crate::key::{KeyArg, ViaHash, ViaKeyPart, ViaSerialize};
    pub use crate::namespace::{TenantId, current_tenant};
    pub use crate::spec::Backend;
    pub use crate::weigh::{ViaSize, ViaWeigh, WeighProbe};
    pub use std::sync::OnceLock;
    pub use std::time::Duration;

    pub use inventory;

    pub use crate::registry::ServiceInit;

    pub use crate::registry::EvictPlan;

    pub use crate::pattern::push_glob_escaped;

    pub use crate::cache::{TryLoad, ViaOwnErr, ViaSharedErr, refresh_in_task, refresh_in_thread};
    pub use crate::probe::{
        Outcome, Probe, ProbeOption, ProbePlain, ProbeResult, assert_key_arg, assert_value,
    };
}
