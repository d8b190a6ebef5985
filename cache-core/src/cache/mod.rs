//! The typed cache: [`Cache<K, V>`] and its [`CacheBuilder`].
//!
//! The engine is `quick_cache` (the fastest of the peers measured here); this
//! module adds what it lacks: TTL and TTI under a [`Clock`], refresh-ahead,
//! single-flight loads, tags, Redis-glob revocation, listeners, stats and
//! tracing. A hit is one `quick_cache` lookup, a clock read when the cache
//! expires entries, and a bump of a thread-owned counter.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, UnitWeighter};

use crate::clock::{Clock, Ticks};
use crate::codec::RemoteCodec;
use crate::error::CacheError;
use crate::events::{CacheEvent, EventKind, ListenerId, Listeners};
use crate::eviction::{Eviction, Ordered, Priority};
use crate::flight::{Epoch, EpochSnapshot, Flight, Flights, Join, SharedErr, Waited, block_on};
use crate::index::{IndexFn, IndexSizes, Indexes, Query, QueryError};
use crate::key::{DisplayKey, KeyPart, render_with};
use crate::namespace::{Quota, TenantId};
use crate::pattern::Pattern;
use crate::spec::{Backend, Config, ConfigError, Defaults, Settings};
use crate::stats::{Counter, Counters, Stats};
use crate::store::Invalidation;
use crate::store::StoreError;
use crate::tenant_counts::{TenantCounts, TenantRow};

mod api;
mod builder;
mod engine;
mod erased;
mod glue;
mod load;
mod lookup;
mod put;
mod query;
mod scope;
mod settings;
mod sync;
mod tier;
mod warm;
use tier::{RemoteOp, RemoteValue};

/// An `expires_at` that never comes.
const NEVER: u64 = u64::MAX;

pub use crate::spec::DEFAULT_CAPACITY;

/// What a key type needs.
pub trait CacheKey: Hash + Eq + Clone + Send + Sync + 'static {}
impl<T: Hash + Eq + Clone + Send + Sync + 'static> CacheKey for T {}

/// What a value type needs.
pub trait CacheValue: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> CacheValue for T {}

pub(crate) use builder::Registrar;
use builder::millis;

/// What a store checks before it inserts.
#[derive(Clone, Copy)]
pub(crate) enum Guard {
    /// A value computed since this epoch: stored only if no invalidation
    /// concerning its key came since.
    Current(Epoch),
    /// A value that replaces the key's: stored if no invalidation came
    /// since the epoch (always, without one), and loads of the key under
    /// way store nothing after.
    Replace(Option<Epoch>),
}
use engine::{Engine, Entry, Evicted, Meta, Plain};
pub use erased::{DEFAULT_LIST_LIMIT, ErasedCache, KeyQuery};
pub use glue::{TryLoad, ViaOwnErr, ViaSharedErr, refresh_in_task, refresh_in_thread};
pub use load::RefreshTicket;
pub use sync::{Startup, SyncOptions, Synced};

pub(crate) struct Inner<K, V> {
    name: Arc<str>,
    /// The cache's identity outside the process: the action name in a
    /// service, an explicit name, or `module::path::function`.
    identity: Arc<str>,
    /// The registry refused this cache's name (another cache has it): it
    /// never uses a remote tier, where the two would share entries.
    unshared: AtomicBool,
    /// The registry holds it: its meters are exported, and its last
    /// counts handed over when it is dropped.
    registered: AtomicBool,
    /// The literal every key text starts with, which remote keys leave out
    /// because the identity implies it.
    text_prefix: &'static str,
    service: Option<Arc<str>>,
    map: Engine<K, V>,
    /// What a hit must check, in one load: [`OFF`], [`EXPIRES`], [`TTI`],
    /// [`LISTENED`] and [`TENANTS`], derived from the settings below by
    /// [`Inner::refresh_flags`].
    flags: std::sync::atomic::AtomicU8,
    /// Serializes updates of the settings that `flags` derives from.
    flags_lock: Mutex<()>,
    /// Runtime settings: configuration may change them at any time.
    enabled: AtomicBool,
    ttl_ms: AtomicU64,
    tti_ms: AtomicU64,
    capacity: AtomicUsize,
    /// Which key arguments form the key (bit i: argument i of `key_args`).
    key_mask: AtomicU64,
    refresh_ms: u64,
    /// The engine's eviction policy, fixed when the cache is built.
    policy: Eviction,
    /// Entries a full LRU or LFU engine evicts at once.
    batch: AtomicUsize,
    /// The [`Priority`] entries get by default, as its rank.
    priority: std::sync::atomic::AtomicU8,
    /// The bound in bytes, when the engine weighs entries (0: none).
    capacity_bytes: AtomicU64,
    /// Each value's own TTL, when the cache has one.
    ttl_fn: Option<fn(&V) -> Duration>,
    /// Whether a priority the engine cannot honour was reported.
    warned_priority: AtomicBool,
    /// The keys each entry depends on, when the cache declares any.
    deps: Option<Deps<K>>,
    /// Invalidates, in every cache of the process with dependencies, the
    /// entries that depend on a key text (set when the cache is registered).
    cascade: Option<fn(&str)>,
    /// Time between a synchronised cache's syncs.
    sync_interval_ms: AtomicU64,
    /// Whether entries can expire (a TTL, a TTI, or an entry stored with its
    /// own TTL); read on every hit.
    expires: AtomicBool,
    own_ttls: AtomicBool,
    /// What the code sets, for configuration to layer over.
    defaults: Defaults,
    key_args: &'static [&'static str],
    tenant_of: Option<fn(&K) -> TenantId>,
    /// The key-argument mask a key was built under (service actions).
    mask_of: Option<fn(&K) -> u64>,
    quota: Option<Arc<Quota>>,
    /// How values travel to a remote tier, when their type allows it.
    codec: Option<RemoteCodec<V>>,
    tier: parking_lot::RwLock<Option<Arc<tier::Tier>>>,
    clock: Clock,
    /// The counter `clock` reads, for the hit path.
    ticks: Ticks,
    counters: Counters,
    /// Counts per tenant, kept while [`TENANTS`] is set.
    tenant_counts: TenantCounts,
    /// Whether configuration asks for counts per tenant.
    tenant_labels: AtomicBool,
    /// Loads that failed (rare: outside the striped counters).
    load_failures: std::sync::atomic::AtomicU64,
    listeners: Listeners<K>,
    flights: Flights<K, V>,
    tag_index: Mutex<HashMap<String, HashSet<K>>>,
    render: fn(&K, &mut String),
    store_if: Option<fn(&V) -> bool>,
    tags: Option<fn(&K) -> Vec<String>>,
    /// Secondary indexes over values, when the cache declares any.
    indexes: Option<Box<Indexes<K, V>>>,
}

/// A key's arguments as text, by name, for rendering dependency templates.
pub type DepArgs<K> = fn(&K) -> Vec<(&'static str, String)>;

/// What an entry depends on: the closure of the declared templates
/// ([`crate::depend`]), rendered with each key's arguments.
struct Deps<K> {
    templates: Vec<Vec<cache_common::template::Piece>>,
    args: DepArgs<K>,
}

/// Every key argument is part of the key.
const ALL_KEYS: u64 = u64::MAX;

/// Caching is off: every lookup misses.
const OFF: u8 = 1;
/// Entries can expire: a hit reads the clock.
const EXPIRES: u8 = 2;
/// Entries expire when idle: a hit records its time.
const TTI: u8 = 4;
/// Listeners are registered: lookups fire events.
const LISTENED: u8 = 8;
/// Meters are labelled by tenant: lookups, stores and removals are counted
/// per tenant too.
const TENANTS: u8 = 16;

/// A bounded, concurrent, typed cache. Cloning it clones a handle.
///
/// ```
/// use cache_core::Cache;
/// use std::time::Duration;
///
/// let users: Cache<u64, String> = Cache::builder()
///     .name("users")
///     .ttl(Duration::from_secs(60))
///     .build();
/// let name = users.get_or_insert_with(7, || "ada".to_string());
/// assert_eq!(users.get(&7).as_deref(), Some("ada"));
/// # let _ = name;
/// ```
pub struct Cache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

/// A registered cache hands its last counts to the meters (feature
/// `metrics`), so what it counted since their last reading is not lost.
#[cfg(feature = "metrics")]
impl<K, V> Drop for Inner<K, V> {
    fn drop(&mut self) {
        if !self.registered.load(Ordering::Relaxed) {
            return;
        }
        let tier = match &*self.tier.read() {
            Some(t) if !t.l1 => "l2",
            _ => "l1",
        };
        let rows = if self.flags.load(Ordering::Relaxed) & TENANTS != 0 {
            self.tenant_counts
                .snapshot()
                .into_iter()
                .map(|(r, s)| (Some(r), s))
                .collect()
        } else {
            let mut s = self.counters.snapshot(0);
            s.load_failures = self.load_failures.load(Ordering::Relaxed);
            vec![(None, s)]
        };
        crate::tenant_counts::retire(crate::tenant_counts::Retired {
            service: self.service.as_deref().unwrap_or("").to_owned(),
            identity: self.identity.to_string(),
            tier,
            addr: self as *const Self as *const () as usize,
            rows,
        });
    }
}

impl<K: CacheKey, V: CacheValue> fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .field("service", &self.inner.service)
            .field("capacity", &self.inner.capacity.load(Ordering::Relaxed))
            .field("entries", &self.inner.map.len())
            .finish()
    }
}

/// Configures and builds a [`Cache`].
pub struct CacheBuilder<K, V> {
    name: String,
    module_path: Option<&'static str>,
    text_prefix: &'static str,
    service: Option<String>,
    enabled: bool,
    key_args: &'static [&'static str],
    tenant_of: Option<fn(&K) -> TenantId>,
    mask_of: Option<fn(&K) -> u64>,
    codec: Option<RemoteCodec<V>>,
    capacity: Option<usize>,
    ttl: Option<Duration>,
    tti: Option<Duration>,
    refresh: Option<Duration>,
    clock: Clock,
    render: fn(&K, &mut String),
    store_if: Option<fn(&V) -> bool>,
    tags: Option<fn(&K) -> Vec<String>>,
    indexes: Vec<(String, IndexFn<V>)>,
    register: bool,
    eviction: Eviction,
    priority: Option<Priority>,
    critical_share: Option<f64>,
    eviction_batch: Option<usize>,
    capacity_bytes: Option<u64>,
    weigher: Option<fn(&K, &V) -> u64>,
    ttl_fn: Option<fn(&V) -> Duration>,
    depends_on: Option<(&'static [&'static str], DepArgs<K>)>,
    backend: Option<Backend>,
    remote: Option<(Arc<dyn crate::store::Remote>, Backend)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flight_outlives_its_load() {
        let c: Cache<u64, u64> = Cache::new(10);
        c.get_or_insert_with(1, || 1);
        let _ = c.get_or_try_insert_with(2, || Err::<u64, ()>(()));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.get_or_insert_with(3, || panic!("load fails"))
        }));
        assert!(r.is_err());
        assert_eq!(c.flights_in_progress(), 0);
        assert_eq!(c.get_or_insert_with(3, || 3), 3, "the key loads again");
    }

    #[test]
    fn a_dropped_refresh_ticket_frees_the_key() {
        let (clock, time) = Clock::manual();
        let c: Cache<u64, u64> = Cache::builder()
            .refresh_after(Duration::from_secs(1))
            .clock(clock)
            .build();
        c.insert(1, 1);
        time.advance(Duration::from_secs(2));
        let (_, t) = c.get_or_refresh(&1).unwrap();
        let t = t.expect("first stale hit gets the ticket");
        assert!(
            c.get_or_refresh(&1).unwrap().1.is_none(),
            "one ticket at a time"
        );
        assert_eq!(c.flights_in_progress(), 1);
        drop(t);
        assert_eq!(c.flights_in_progress(), 0);
        let (_, t) = c.get_or_refresh(&1).unwrap();
        t.expect("the key is free again").complete(2);
        assert_eq!(c.get(&1), Some(2));
        assert!(c.get_or_refresh(&1).unwrap().1.is_none(), "fresh again");
    }
}
