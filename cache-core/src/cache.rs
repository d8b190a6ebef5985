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
use crate::config::{Config, ConfigError, Defaults, Settings};
use crate::events::{CacheEvent, EventKind, ListenerId, Listeners};
use crate::eviction::{Eviction, Sampled};
use crate::flight::{Flight, Flights, Join, SharedErr, Waited};
use crate::key::{DisplayKey, KeyPart, render_with};
use crate::namespace::{Quota, TenantId};
use crate::pattern::Pattern;
use crate::registry::{self, CacheError, ErasedCache, KeyQuery};
use crate::stats::{Counter, Counters, Stats};
use crate::store::StoreError;

#[cfg(feature = "redis")]
mod tier;
#[cfg(feature = "redis")]
use tier::{Remote, RemoteOp};

/// An `expires_at` that never comes.
const NEVER: u64 = u64::MAX;

/// The default bound on entries.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// What a key type needs.
pub trait CacheKey: Hash + Eq + Clone + Send + Sync + 'static {}
impl<T: Hash + Eq + Clone + Send + Sync + 'static> CacheKey for T {}

/// What a value type needs.
pub trait CacheValue: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> CacheValue for T {}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    /// Never 0 (times start at 1 ms), so `Option<Entry>` needs no tag of
    /// its own: a hit copies one word less.
    expires_at: std::num::NonZeroU64,
    meta: Option<Arc<Meta>>,
}

/// The rarely used parts of an entry, kept out of line so that the entry a
/// hit copies stays small. Present when the cache has a TTI, refresh-ahead,
/// or tags.
struct Meta {
    accessed: AtomicU64,
    loaded_at: u64,
    tags: Box<[String]>,
}

/// Collects evicted entries so events fire after the engine's lock is released.
#[derive(Clone, Copy, Default)]
struct EvictLog;

/// The entries one insert evicted: usually one, held without allocating.
struct Evicted<K, V> {
    first: Option<(K, Entry<V>)>,
    rest: Vec<(K, Entry<V>)>,
}

impl<K, V> Default for Evicted<K, V> {
    fn default() -> Self {
        Evicted {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<K, V> Evicted<K, V> {
    fn drain(self) -> impl Iterator<Item = (K, Entry<V>)> {
        self.first.into_iter().chain(self.rest)
    }
}

impl<K, V> Lifecycle<K, Entry<V>> for EvictLog {
    type RequestState = Evicted<K, V>;
    fn on_evict(&self, state: &mut Self::RequestState, key: K, val: Entry<V>) {
        state.push(key, val);
    }
}

impl<K, V> Lifecycle<K, Plain<V>> for EvictLog {
    type RequestState = Evicted<K, V>;
    fn on_evict(&self, state: &mut Self::RequestState, key: K, val: Plain<V>) {
        state.push(key, val.into());
    }
}

impl<K, V> Evicted<K, V> {
    fn push(&mut self, key: K, val: Entry<V>) {
        if self.first.is_none() {
            self.first = Some((key, val));
        } else {
            self.rest.push((key, val));
        }
    }
}

/// An entry without metadata: what a hit copies out of the engine of a
/// cache without TTI, refresh-ahead or tags. Two words for a word-sized
/// value, so `Option<Plain<u64>>` comes back in registers.
#[derive(Clone)]
struct Plain<V> {
    value: V,
    expires_at: std::num::NonZeroU64,
}

impl<V> From<Plain<V>> for Entry<V> {
    #[inline]
    fn from(p: Plain<V>) -> Self {
        Entry {
            value: p.value,
            expires_at: p.expires_at,
            meta: None,
        }
    }
}

/// What a predicate over entries sees: when the entry expires, and its
/// metadata.
#[derive(Clone, Copy)]
struct Stamp<'a> {
    expires_at: u64,
    meta: Option<&'a Arc<Meta>>,
}

impl<'a, V> From<&'a Entry<V>> for Stamp<'a> {
    fn from(e: &'a Entry<V>) -> Self {
        Stamp {
            expires_at: e.expires_at.get(),
            meta: e.meta.as_ref(),
        }
    }
}

impl<V> From<&Plain<V>> for Stamp<'_> {
    fn from(e: &Plain<V>) -> Self {
        Stamp {
            expires_at: e.expires_at.get(),
            meta: None,
        }
    }
}

type Quick<K, V> = QuickCache<K, Entry<V>, UnitWeighter, DefaultHashBuilder, EvictLog>;
type QuickPlain<K, V> = QuickCache<K, Plain<V>, UnitWeighter, DefaultHashBuilder, EvictLog>;

/// Where entries live: `quick_cache` (without metadata when the cache needs
/// none, which keeps a hit's copy small), or the sampled LRU/LFU engine.
enum Engine<K, V> {
    Plain(QuickPlain<K, V>),
    Quick(Quick<K, V>),
    Sampled(Sampled<K, Entry<V>>),
}

fn quick_options(capacity: usize) -> quick_cache::Options {
    OptionsBuilder::new()
        .estimated_items_capacity(capacity)
        .weight_capacity(capacity as u64)
        .build()
        .expect("capacity options are valid")
}

impl<K: CacheKey, V: CacheValue> Engine<K, V> {
    /// An engine for `capacity` entries; `meta` says whether entries carry
    /// metadata (TTI, refresh-ahead, tags).
    fn new(capacity: usize, eviction: Eviction, meta: bool) -> Self {
        match eviction {
            Eviction::Engine if meta => Engine::Quick(QuickCache::with_options(
                quick_options(capacity),
                UnitWeighter,
                DefaultHashBuilder::default(),
                EvictLog,
            )),
            Eviction::Engine => Engine::Plain(QuickCache::with_options(
                quick_options(capacity),
                UnitWeighter,
                DefaultHashBuilder::default(),
                EvictLog,
            )),
            policy => Engine::Sampled(Sampled::new(capacity, policy)),
        }
    }

    /// Whether entries keep their metadata (an engine without it drops it).
    fn keeps_meta(&self) -> bool {
        !matches!(self, Engine::Plain(_))
    }

    fn get(&self, key: &K) -> Option<Entry<V>> {
        match self {
            Engine::Plain(m) => m.get(key).map(Entry::from),
            Engine::Quick(m) => m.get(key),
            Engine::Sampled(m) => m.get(key),
        }
    }

    fn peek(&self, key: &K) -> Option<Entry<V>> {
        match self {
            Engine::Plain(m) => m.peek(key).map(Entry::from),
            Engine::Quick(m) => m.peek(key),
            Engine::Sampled(m) => m.peek(key),
        }
    }

    fn insert(&self, key: K, entry: Entry<V>, evicted: &mut Evicted<K, V>) {
        match self {
            Engine::Plain(m) => {
                let plain = Plain {
                    value: entry.value,
                    expires_at: entry.expires_at,
                };
                m.insert_with_lifecycle(key, plain, evicted)
            }
            Engine::Quick(m) => m.insert_with_lifecycle(key, entry, evicted),
            Engine::Sampled(m) => evicted.first = m.insert(key, entry),
        }
    }

    fn remove_if(&self, key: &K, f: impl FnOnce(Stamp<'_>) -> bool) -> Option<(K, Entry<V>)> {
        match self {
            Engine::Plain(m) => m
                .remove_if(key, |e| f(e.into()))
                .map(|(k, e)| (k, e.into())),
            Engine::Quick(m) => m.remove_if(key, |e| f(e.into())),
            Engine::Sampled(m) => m.remove_if(key, |e| f(e.into())),
        }
    }

    fn remove(&self, key: &K) -> Option<(K, Entry<V>)> {
        self.remove_if(key, |_| true)
    }

    fn retain(&self, f: impl Fn(&K, Stamp<'_>) -> bool) {
        match self {
            Engine::Plain(m) => m.retain(|k, e| f(k, e.into())),
            Engine::Quick(m) => m.retain(|k, e| f(k, e.into())),
            Engine::Sampled(m) => m.retain(|k, e| f(k, e.into())),
        }
    }

    fn entries(&self) -> Vec<(K, Entry<V>)> {
        match self {
            Engine::Plain(m) => m.iter().map(|(k, e)| (k, e.into())).collect(),
            Engine::Quick(m) => m.iter().collect(),
            Engine::Sampled(m) => m.entries(),
        }
    }

    fn drain(&self) -> Vec<(K, Entry<V>)> {
        match self {
            Engine::Plain(m) => m.drain().map(|(k, e)| (k, e.into())).collect(),
            Engine::Quick(m) => m.drain().collect(),
            Engine::Sampled(m) => m.drain(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Engine::Plain(m) => m.len(),
            Engine::Quick(m) => m.len(),
            Engine::Sampled(m) => m.len(),
        }
    }

    fn set_capacity(&self, capacity: usize) {
        match self {
            Engine::Plain(m) => m.set_capacity(capacity as u64),
            Engine::Quick(m) => m.set_capacity(capacity as u64),
            Engine::Sampled(m) => m.set_capacity(capacity),
        }
    }
}

pub(crate) struct Inner<K, V> {
    name: Arc<str>,
    /// The cache's identity outside the process: the action name in a
    /// service, an explicit name, or `module::path::function`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    identity: Arc<str>,
    /// Counts invalidations: a load that began before one neither stores
    /// its value nor hands it to callers that came after.
    epoch: AtomicU64,
    /// The registry refused this cache's name (another cache has it): it
    /// never uses a remote tier, where the two would share entries.
    unshared: AtomicBool,
    /// The literal every key text starts with, which remote keys leave out
    /// because the identity implies it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    text_prefix: &'static str,
    service: Option<Arc<str>>,
    map: Engine<K, V>,
    /// What a hit must check, in one load: [`OFF`], [`EXPIRES`], [`TTI`]
    /// and [`LISTENED`], derived from the settings below by
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
    /// Whether entries can expire (a TTL, a TTI, or an entry stored with its
    /// own TTL); read on every hit.
    expires: AtomicBool,
    own_ttls: AtomicBool,
    /// What the code sets, for configuration to layer over.
    defaults: Defaults,
    key_args: &'static [&'static str],
    tenant_of: Option<fn(&K) -> TenantId>,
    /// The key-argument mask a key was built under (service actions).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    mask_of: Option<fn(&K) -> u64>,
    quota: Option<Arc<Quota>>,
    /// How values travel to a remote tier, when their type allows it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    codec: Option<RemoteCodec<V>>,
    #[cfg(feature = "redis")]
    tier: parking_lot::RwLock<Option<Arc<tier::Tier>>>,
    clock: Clock,
    /// The counter `clock` reads, for the hit path.
    ticks: Ticks,
    counters: Counters,
    listeners: Listeners<K>,
    flights: Flights<K, V>,
    tag_index: Mutex<HashMap<String, HashSet<K>>>,
    render: fn(&K, &mut String),
    store_if: Option<fn(&V) -> bool>,
    tags: Option<fn(&K) -> Vec<String>>,
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
    register: bool,
    eviction: Eviction,
}

impl<K: CacheKey + KeyPart, V: CacheValue> CacheBuilder<K, V> {
    /// A builder whose keys read as their [`KeyPart`] text.
    pub fn new() -> Self {
        Self::with_render(|k, out| k.write_key(out))
    }
}

impl<K: CacheKey + KeyPart, V: CacheValue> Default for CacheBuilder<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: CacheKey, V: CacheValue> CacheBuilder<K, V> {
    /// A builder whose keys read as `render` writes them.
    pub fn with_render(render: fn(&K, &mut String)) -> Self {
        CacheBuilder {
            name: "cache".into(),
            module_path: None,
            text_prefix: "",
            service: None,
            enabled: true,
            key_args: &[],
            tenant_of: None,
            mask_of: None,
            codec: None,
            capacity: None,
            ttl: None,
            tti: None,
            refresh: None,
            clock: Clock::System,
            render,
            store_if: None,
            tags: None,
            register: false,
            eviction: Eviction::Engine,
        }
    }

    /// The cache's name, used in traces, stats and the registry.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The module the cache's function is defined in. Outside a service, a
    /// cache named after its function is told apart from another module's
    /// function of the same name by this: `module::path::name` is its
    /// identity outside the process.
    pub fn module_path(mut self, path: &'static str) -> Self {
        self.module_path = Some(path);
        self
    }

    /// The literal text every key of this cache starts with (a key
    /// template's leading text, such as `get_user:`). Remote keys leave it
    /// out, since the cache's identity implies it.
    pub fn key_text_prefix(mut self, prefix: &'static str) -> Self {
        self.text_prefix = prefix;
        self
    }

    /// The bound on entries (default [`DEFAULT_CAPACITY`]).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// The service the cache belongs to: its namespace, its configuration
    /// section, and the handlers that reach it.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        let service = service.into();
        // An empty service name is no service, as an empty tenant is none.
        self.service = (!service.is_empty()).then_some(service);
        self
    }

    /// Whether caching is on (configuration may override it).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The names of the key's arguments, for configuration's `keys`.
    pub fn key_args(mut self, names: &'static [&'static str]) -> Self {
        self.key_args = names;
        self
    }

    /// How values are encoded for a remote tier (`backend = "redis"` or
    /// `"tiered"`); without one the cache stays in memory.
    pub fn remote_codec(mut self, codec: Option<RemoteCodec<V>>) -> Self {
        self.codec = codec;
        self
    }

    /// How to find the tenant of a key, for tenant-scoped operations and quotas.
    pub fn tenant_of(mut self, f: fn(&K) -> TenantId) -> Self {
        self.tenant_of = Some(f);
        self
    }

    /// How to find the key-argument mask a key was built under, so that
    /// its remote key names that mask whatever configuration says now.
    pub fn mask_of(mut self, f: fn(&K) -> u64) -> Self {
        self.mask_of = Some(f);
        self
    }

    /// Entries expire this long after they are stored.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries expire after this long without a hit.
    pub fn tti(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Refresh-ahead: an entry older than this is still returned, and
    /// [`Cache::get_or_refresh`] hands out one ticket to recompute it.
    pub fn refresh_after(mut self, age: Duration) -> Self {
        self.refresh = Some(age);
        self
    }

    /// The time source (default the coarse system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Loaded values are stored only when this returns true.
    pub fn store_if(mut self, pred: fn(&V) -> bool) -> Self {
        self.store_if = Some(pred);
        self
    }

    /// Tags computed from the key for each loaded value.
    pub fn tags(mut self, tags: fn(&K) -> Vec<String>) -> Self {
        self.tags = Some(tags);
        self
    }

    /// How a full cache picks what to evict (default: the engine's own).
    pub fn eviction(mut self, policy: Eviction) -> Self {
        self.eviction = policy;
        self
    }

    /// Makes the cache reachable by name through [`crate::registry()`].
    pub fn register(mut self, yes: bool) -> Self {
        self.register = yes;
        self
    }

    /// Builds the cache. A registered cache takes its settings from the
    /// configuration in force, layered over the builder's.
    pub fn build(self) -> Cache<K, V> {
        let defaults = Defaults {
            enabled: self.enabled,
            ttl: self.ttl,
            tti: self.tti,
            capacity: self.capacity,
        };
        let settings = Settings {
            enabled: self.enabled,
            ttl: self.ttl,
            tti: self.tti,
            capacity: self.capacity.unwrap_or(DEFAULT_CAPACITY),
            keys: None,
            backend: crate::config::Backend::Memory,
        };
        let quota = self
            .service
            .as_deref()
            .map(|s| registry::registry().quota(s));
        let identity: Arc<str> = match (&self.service, self.module_path) {
            (None, Some(m)) => format!("{m}::{}", self.name).into(),
            _ => self.name.as_str().into(),
        };
        // Entries carry metadata only when the cache needs it; the engine
        // without it makes a hit's copy smaller.
        let config_tti = if self.register {
            crate::config::current()
                .resolve_for(self.service.as_deref(), &self.name, &identity, &defaults)
                .tti
        } else {
            None
        };
        let meta = self.tags.is_some()
            || self.refresh.is_some()
            || self.tti.is_some()
            || config_tti.is_some();
        let inner = Arc::new(Inner {
            name: self.name.into(),
            identity,
            unshared: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            text_prefix: self.text_prefix,
            service: self.service.map(Into::into),
            map: Engine::new(settings.capacity, self.eviction, meta),
            flags: std::sync::atomic::AtomicU8::new(0),
            flags_lock: Mutex::new(()),
            enabled: AtomicBool::new(true),
            ttl_ms: AtomicU64::new(0),
            tti_ms: AtomicU64::new(0),
            capacity: AtomicUsize::new(settings.capacity),
            key_mask: AtomicU64::new(ALL_KEYS),
            refresh_ms: millis(self.refresh),
            expires: AtomicBool::new(false),
            own_ttls: AtomicBool::new(false),
            defaults,
            key_args: self.key_args,
            tenant_of: self.tenant_of,
            mask_of: self.mask_of,
            quota,
            codec: self.codec,
            #[cfg(feature = "redis")]
            tier: parking_lot::RwLock::new(None),
            ticks: self.clock.ticks(),
            clock: self.clock,
            counters: Counters::default(),
            listeners: Listeners::default(),
            flights: Flights::new(),
            tag_index: Mutex::new(HashMap::new()),
            render: self.render,
            store_if: self.store_if,
            tags: self.tags,
        });
        if inner.refresh_ms != 0 && matches!(inner.clock, Clock::System) {
            crate::clock::start_system_clock();
        }
        if self.register {
            let weak: Weak<dyn ErasedCache> = Arc::downgrade(&inner) as Weak<dyn ErasedCache>;
            if !registry::registry().register(&inner.name, weak) {
                // A duplicate name: never share entries outside the process.
                inner.unshared.store(true, Ordering::Relaxed);
            }
            if let Err(e) = inner.apply(&crate::config::current()) {
                tracing::error!("cache {}: configuration not applied: {e}", inner.name);
                let _ = inner.apply_settings(&settings);
            }
        } else {
            let _ = inner.apply_settings(&settings);
        }
        Cache { inner }
    }
}

/// A duration in whole milliseconds, at least 1; 0 for none.
fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| (d.as_millis() as u64).max(1))
}

impl<K: CacheKey + KeyPart, V: CacheValue> Cache<K, V> {
    /// A builder for a cache whose keys read as their [`KeyPart`] text.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::new()
    }

    /// An unnamed cache bounded to `capacity` entries, without expiry.
    pub fn new(capacity: usize) -> Self {
        Self::builder().capacity(capacity).build()
    }
}

/// A claim on one background recomputation of a stale entry.
///
/// Returned by [`Cache::get_or_refresh`]; at most one exists per key at a
/// time. [`RefreshTicket::complete`] stores the new value; dropping the ticket
/// gives the claim up.
pub struct RefreshTicket<K: CacheKey, V: CacheValue> {
    cache: Cache<K, V>,
    key: K,
    flight: Arc<Flight<V>>,
    landed: bool,
    epoch: u64,
}

impl<K: CacheKey, V: CacheValue> RefreshTicket<K, V> {
    /// The key to recompute.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Stores the recomputed value (subject to the cache's `store_if`).
    pub fn complete(mut self, value: V) {
        let inner = &self.cache.inner;
        inner.counters.incr(Counter::Load);
        if inner.should_store(&value) {
            inner.store_loaded(self.key.clone(), value.clone(), self.epoch);
        }
        self.landed = true;
        inner.flights.land(&self.key, &self.flight, Some(&value));
    }
}

impl<K: CacheKey, V: CacheValue> Drop for RefreshTicket<K, V> {
    fn drop(&mut self) {
        if !self.landed {
            self.cache.inner.flights.land(&self.key, &self.flight, None);
        }
    }
}

/// Leads one load; releases the waiters even if the load panics or is dropped.
struct Lead<'a, K: CacheKey, V: CacheValue> {
    flights: &'a Flights<K, V>,
    key: K,
    flight: Arc<Flight<V>>,
    landed: bool,
    /// The invalidation count when the load began.
    epoch: u64,
}

impl<K: CacheKey, V: CacheValue> Lead<'_, K, V> {
    fn land(mut self, value: &V) {
        self.landed = true;
        self.flights.land(&self.key, &self.flight, Some(value));
    }

    /// The load returned an error: the waiters get it (shared), or compute
    /// for themselves.
    fn fail(mut self, err: Option<SharedErr>) {
        self.landed = true;
        self.flights.fail(&self.key, &self.flight, err);
    }
}

impl<K: CacheKey, V: CacheValue> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        if !self.landed {
            self.flights.land(&self.key, &self.flight, None);
        }
    }
}

/// How a load's error reaches its waiters: cloned through the flight when
/// the error type allows, else not at all (each waiter computes).
struct ErrShare<E> {
    share: fn(&E) -> SharedErr,
    unshare: fn(&SharedErr) -> Option<E>,
}

fn share_err<E: Clone + Send + Sync + 'static>(e: &E) -> SharedErr {
    Arc::new(e.clone())
}

fn unshare_err<E: Clone + 'static>(e: &SharedErr) -> Option<E> {
    e.downcast_ref::<E>().cloned()
}

impl<E: Clone + Send + Sync + 'static> ErrShare<E> {
    const CLONED: Option<ErrShare<E>> = Some(ErrShare {
        share: share_err::<E>,
        unshare: unshare_err::<E>,
    });
}

/// Whether a loop iteration leads, or waits on, a load.
enum Turn<'a, K: CacheKey, V: CacheValue> {
    Lead(Lead<'a, K, V>),
    Wait(Arc<Flight<V>>),
    Done(V),
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// Whether an entry is past its TTL or TTI at `now` (reads only).
    #[inline]
    fn dead(&self, expires_at: u64, meta: Option<&Arc<Meta>>, now: u64) -> bool {
        now >= expires_at || {
            let tti = self.tti_ms();
            tti != 0
                && meta
                    .is_some_and(|m| now.saturating_sub(m.accessed.load(Ordering::Relaxed)) >= tti)
        }
    }

    /// Whether an entry is alive at `now`; a live one is marked accessed.
    #[inline]
    fn live(&self, expires_at: u64, meta: Option<&Arc<Meta>>, now: u64) -> bool {
        self.live_with(self.flags(), expires_at, meta, now)
    }

    /// [`Inner::live`] with the flags already read.
    #[inline(always)]
    fn live_with(&self, flags: u8, expires_at: u64, meta: Option<&Arc<Meta>>, now: u64) -> bool {
        if flags & TTI == 0 {
            return now < expires_at;
        }
        if self.dead(expires_at, meta, now) {
            return false;
        }
        if let Some(m) = meta {
            m.accessed.store(now, Ordering::Relaxed);
        }
        true
    }

    #[inline(always)]
    fn flags(&self) -> u8 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Derives `flags` from the settings; call with `flags_lock` held,
    /// after changing one.
    fn refresh_flags(&self) {
        let mut f = 0;
        if !self.enabled.load(Ordering::Relaxed) {
            f |= OFF;
        }
        if self.expires.load(Ordering::Relaxed) {
            f |= EXPIRES;
        }
        if self.tti_ms() != 0 {
            f |= TTI;
        }
        if self.listeners.active() {
            f |= LISTENED;
        }
        self.flags.store(f, Ordering::Relaxed);
    }

    #[inline]
    fn expires(&self) -> bool {
        self.expires.load(Ordering::Relaxed)
    }

    /// A live entry, without touching stats.
    #[inline]
    fn lookup(&self, key: &K) -> Option<Entry<V>> {
        let e = self.map.get(key)?;
        if self.expires() && !self.live(e.expires_at.get(), e.meta.as_ref(), self.clock.now_ms()) {
            self.expire(key);
            return None;
        }
        Some(e)
    }

    #[cold]
    fn expire(&self, key: &K) {
        let now = self.clock.now_ms();
        if let Some((k, e)) = self
            .map
            .remove_if(key, |e| self.dead(e.expires_at, e.meta, now))
        {
            self.removed(&k, e.meta.as_ref(), EventKind::Expire, Counter::Expiration);
        }
    }

    /// A lookup, counted, traced and told to listeners.
    ///
    /// The common case (caching on, no TTI, no listeners) is inlined into
    /// the caller: one flags load, the map lookup, one clock load (entries
    /// without a TTL expire at `u64::MAX`), one counter bump and a level
    /// check for tracing. Anything else takes [`Inner::get_general`].
    #[inline(always)]
    fn get(&self, key: &K) -> Option<V> {
        let Engine::Plain(map) = &self.map else {
            return self.get_general(key);
        };
        if self.flags() & (OFF | TTI | LISTENED) != 0 {
            return self.get_general(key);
        }
        let Some(Plain { value, expires_at }) = map.get(key) else {
            self.miss(key, 0);
            return None;
        };
        if self.ticks.now_ms() < expires_at.get() {
            self.counters.incr(Counter::Hit);
            if tracing::level_enabled!(tracing::Level::DEBUG) {
                self.trace_lookup(key, "hit");
            }
            return Some(value);
        }
        self.expire_and_miss(key);
        None
    }

    /// An entry found dead on a lookup: removed, and the lookup counted as
    /// a miss.
    #[cold]
    #[inline(never)]
    fn expire_and_miss(&self, key: &K) {
        self.expire(key);
        self.miss(key, 0);
    }

    /// [`Inner::get`] when caching is off, entries expire when idle, or
    /// listeners are registered.
    #[inline(never)]
    fn get_general(&self, key: &K) -> Option<V> {
        let flags = self.flags();
        if flags & OFF != 0 {
            self.miss(key, flags);
            return None;
        }
        if let Some(Entry {
            value,
            expires_at,
            meta,
        }) = self.map.get(key)
        {
            if self.live_with(flags, expires_at.get(), meta.as_ref(), self.clock.now_ms()) {
                self.looked_up(key, flags, EventKind::Hit, Counter::Hit, "hit");
                return Some(value);
            }
            self.expire(key);
        }
        self.miss(key, flags);
        None
    }

    #[inline]
    fn miss(&self, key: &K, flags: u8) {
        self.looked_up(key, flags, EventKind::Miss, Counter::Miss, "miss");
    }

    /// Counts a lookup, tells listeners, and traces it (`cache hit get_user:1`).
    #[inline(always)]
    fn looked_up(&self, key: &K, flags: u8, kind: EventKind, counter: Counter, word: &str) {
        self.counters.incr(counter);
        if flags & LISTENED != 0 {
            self.listeners.fire(kind, &self.name, key, self.render);
        }
        if tracing::level_enabled!(tracing::Level::DEBUG) {
            self.trace_lookup(key, word);
        }
    }

    /// The debug event of a lookup, out of line so that the hit path stays
    /// small.
    #[cold]
    #[inline(never)]
    fn trace_lookup(&self, key: &K, word: &str) {
        tracing::debug!(
            cache = &*self.name,
            "cache {word} {}",
            DisplayKey(key, self.render)
        );
    }

    fn should_store(&self, v: &V) -> bool {
        self.store_if.is_none_or(|p| p(v))
    }

    fn store(&self, key: K, value: V, ttl_ms: u64) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        #[cfg(feature = "redis")]
        if !self.keeps_l1() {
            return;
        }
        if let Some(q) = &self.quota {
            // Count new entries of the namespace; at its quota, do not store.
            let t = self.tenant_of.map_or(TenantId::NONE, |f| f(&key));
            if self.map.peek(&key).is_none() && !q.admit(t) {
                return;
            }
        }
        let tti_ms = self.tti_ms();
        let needs_now = ttl_ms != 0 || tti_ms != 0 || self.refresh_ms != 0;
        let now = if needs_now { self.clock.now_ms() } else { 0 };
        let tags: Box<[String]> = match self.tags {
            Some(f) => f(&key).into(),
            None => Box::default(),
        };
        let meta = (tti_ms != 0 || self.refresh_ms != 0 || !tags.is_empty()).then(|| {
            Arc::new(Meta {
                accessed: AtomicU64::new(now),
                loaded_at: now,
                tags,
            })
        });
        // Indexed after the entry is in the map, so a removal that finds
        // the key gone (and unindexes it) never hides this entry.
        let tagged = meta
            .as_ref()
            .filter(|m| !m.tags.is_empty())
            .map(|m| (m.clone(), key.clone()));
        // An engine without metadata cannot see idle time: a TTI that
        // configuration added at run time bounds the entry's life instead,
        // so it expires early rather than late.
        let life = match (self.map.keeps_meta(), ttl_ms, tti_ms) {
            (false, 0, tti) => tti,
            (false, ttl, tti) if tti != 0 => ttl.min(tti),
            (_, ttl, _) => ttl,
        };
        let entry = Entry {
            value,
            expires_at: std::num::NonZeroU64::new(if life == 0 {
                NEVER
            } else {
                now.saturating_add(life)
            })
            .unwrap_or(std::num::NonZeroU64::MIN),
            meta,
        };
        let fire = self.listeners.active().then(|| key.clone());
        let mut evicted = Evicted::default();
        self.map.insert(key, entry, &mut evicted);
        if let Some((m, key)) = tagged {
            let mut idx = self.tag_index.lock();
            for t in m.tags.iter() {
                idx.entry(t.clone()).or_default().insert(key.clone());
            }
        }
        self.counters.incr(Counter::Insert);
        if let Some(k) = fire {
            self.listeners
                .fire(EventKind::Insert, &self.name, &k, self.render);
        }
        for (k, e) in evicted.drain() {
            // The engine reports the entry a new value replaced as evicted;
            // it is not: its key is live again, with the same tags and
            // quota slot.
            if self.map.peek(&k).is_some() {
                continue;
            }
            self.removed(&k, e.meta.as_ref(), EventKind::Evict, Counter::Eviction);
        }
    }

    /// Bookkeeping for an entry that left the map: counter, tag index, event.
    fn removed(&self, key: &K, meta: Option<&Arc<Meta>>, kind: EventKind, counter: Counter) {
        self.counters.incr(counter);
        if let Some(q) = &self.quota {
            q.release(self.tenant(key));
        }
        if let Some(m) = meta
            && !m.tags.is_empty()
        {
            let mut idx = self.tag_index.lock();
            // Another entry of this key may be in the map by now (a load
            // that raced this removal): its index records stay.
            if self.map.peek(key).is_none() {
                for t in m.tags.iter() {
                    if let Some(set) = idx.get_mut(t) {
                        set.remove(key);
                        if set.is_empty() {
                            idx.remove(t);
                        }
                    }
                }
            }
        }
        if self.listeners.active() {
            self.listeners.fire(kind, &self.name, key, self.render);
        }
    }

    fn invalidate(&self, key: &K) -> bool {
        self.bump();
        match self.map.remove(key) {
            Some((k, e)) => {
                self.removed(
                    &k,
                    e.meta.as_ref(),
                    EventKind::Invalidate,
                    Counter::Invalidation,
                );
                true
            }
            None => false,
        }
    }

    /// The tenant a key belongs to.
    #[inline]
    fn tenant(&self, key: &K) -> TenantId {
        self.tenant_of.map_or(TenantId::NONE, |f| f(key))
    }

    fn in_scope(&self, key: &K, scope: Option<TenantId>) -> bool {
        scope.is_none_or(|t| self.tenant(key) == t)
    }

    /// `service.action`, or the action alone.
    fn ident(&self) -> String {
        match &self.service {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.to_string(),
        }
    }

    /// Removes every entry in `scope` whose key text satisfies `pred`.
    fn remove_where(&self, scope: Option<TenantId>, pred: impl Fn(&str) -> bool) -> usize {
        self.bump();
        // `retain` takes `Fn`, hence the cells; events fire after it returns.
        let removed = std::cell::RefCell::new(Vec::new());
        let buf = std::cell::RefCell::new(String::new());
        self.map.retain(|k, e| {
            if !self.in_scope(k, scope) {
                return true;
            }
            let mut s = buf.borrow_mut();
            s.clear();
            (self.render)(k, &mut s);
            let hit = pred(&s);
            if hit {
                removed.borrow_mut().push((k.clone(), e.meta.cloned()));
            }
            !hit
        });
        let removed = removed.into_inner();
        for (k, meta) in &removed {
            self.removed(
                k,
                meta.as_ref(),
                EventKind::Invalidate,
                Counter::Invalidation,
            );
        }
        removed.len()
    }

    fn revoke(&self, pattern: &Pattern, scope: Option<TenantId>) -> usize {
        self.remove_where(scope, |s| pattern.matches(s))
    }

    fn invalidate_key_str(&self, key: &str, scope: Option<TenantId>) -> usize {
        self.remove_where(scope, |s| s == key)
    }

    fn invalidate_tag(&self, tag: &str, scope: Option<TenantId>) -> usize {
        // Even with no entry tagged yet: a load under way must not store.
        self.bump();
        let keys: Vec<K> = {
            let mut idx = self.tag_index.lock();
            let Some(set) = idx.get_mut(tag) else {
                return 0;
            };
            let keys: Vec<K> = set
                .iter()
                .filter(|k| self.in_scope(k, scope))
                .cloned()
                .collect();
            for k in &keys {
                set.remove(k);
            }
            if set.is_empty() {
                idx.remove(tag);
            }
            keys
        };
        keys.iter().filter(|k| self.invalidate(k)).count()
    }

    fn clear(&self, scope: Option<TenantId>) -> usize {
        self.bump();
        if scope.is_some() {
            return self.remove_where(scope, |_| true);
        }
        let drained = self.map.drain();
        for (k, e) in &drained {
            self.removed(
                k,
                e.meta.as_ref(),
                EventKind::Invalidate,
                Counter::Invalidation,
            );
        }
        drained.len()
    }

    fn keys(&self, q: &KeyQuery<'_>) -> Vec<String> {
        let now = if self.expires() {
            self.clock.now_ms()
        } else {
            0
        };
        let tagged: Option<HashSet<K>> = q
            .tag
            .map(|t| self.tag_index.lock().get(t).cloned().unwrap_or_default());
        let mut out = Vec::new();
        for (k, e) in self.map.entries() {
            if (self.expires() && self.dead(e.expires_at.get(), e.meta.as_ref(), now))
                || !self.in_scope(&k, q.tenant)
                || tagged.as_ref().is_some_and(|t| !t.contains(&k))
            {
                continue;
            }
            let s = render_with(&k, self.render);
            if q.pattern.is_none_or(|p| p.matches(&s)) {
                out.push(s);
            }
        }
        // The first `limit` in order, not the first `limit` found.
        out.sort();
        out.truncate(q.limit);
        out
    }

    /// Removes entries by pattern here, and in L2 and the other nodes' L1s.
    /// A pattern the remote tier cannot select (a glob over hashed keys) is
    /// an error, and nothing is removed anywhere.
    fn revoke_everywhere(
        &self,
        pattern: &Pattern,
        scope: Option<TenantId>,
    ) -> Result<usize, StoreError> {
        #[cfg(feature = "redis")]
        self.propagate(RemoteOp::Pattern(pattern.clone()), scope)?;
        Ok(self.revoke(pattern, scope))
    }

    // Each `..._everywhere` starts the remote part first: from then until it
    // is applied this node reads nothing from Redis, so no load between the
    // two parts can bring the old value back from there.

    /// Removes an entry by its key text here and everywhere.
    fn invalidate_key_everywhere(&self, key: &str, scope: Option<TenantId>) -> usize {
        #[cfg(feature = "redis")]
        let _ = self.propagate(RemoteOp::Key(key.to_owned()), scope);
        self.invalidate_key_str(key, scope)
    }

    /// Clears here and everywhere.
    fn clear_everywhere(&self, scope: Option<TenantId>) -> usize {
        #[cfg(feature = "redis")]
        let _ = self.propagate(RemoteOp::Clear, scope);
        self.clear(scope)
    }

    /// Removes a tag's entries here, in L2 (through its tag sets), and in
    /// the other nodes' L1s.
    fn invalidate_tag_everywhere(&self, tag: &str, scope: Option<TenantId>) -> usize {
        #[cfg(feature = "redis")]
        let _ = self.propagate(RemoteOp::Tag(tag.to_owned()), scope);
        self.invalidate_tag(tag, scope)
    }

    /// Layers `cfg` over the code's settings and applies the result.
    fn apply(&self, cfg: &Config) -> Result<(), ConfigError> {
        let settings = cfg.resolve_for(
            self.service.as_deref(),
            &self.name,
            &self.identity,
            &self.defaults,
        );
        if let (Some(q), Some(svc)) = (&self.quota, &self.service) {
            q.set_limit(cfg.quota(svc));
        }
        self.check_backend(&settings)?;
        self.apply_settings(&settings)?;
        #[cfg(feature = "redis")]
        self.set_backend(settings.backend, cfg)?;
        Ok(())
    }

    /// Refuses a remote backend in a build without the `redis` feature.
    fn check_backend(&self, s: &Settings) -> Result<(), ConfigError> {
        if cfg!(feature = "redis") || s.backend == crate::config::Backend::Memory {
            return Ok(());
        }
        Err(ConfigError::Mismatch(format!(
            "{}: backend {:?} needs cache-core's `redis` feature",
            self.ident(),
            s.backend
        )))
    }

    /// Applies settings. An error changes nothing. Turning caching off, or
    /// changing which arguments form the key, empties the cache.
    fn apply_settings(&self, s: &Settings) -> Result<(), ConfigError> {
        let mask = self.key_mask_for(s)?;
        let (ttl, tti) = (millis(s.ttl), millis(s.tti));
        if (ttl | tti) != 0 && matches!(self.clock, Clock::System) {
            crate::clock::start_system_clock();
        }
        let flags_lock = self.flags_lock.lock();
        self.ttl_ms.store(ttl, Ordering::Relaxed);
        self.tti_ms.store(tti, Ordering::Relaxed);
        self.expires.store(
            ttl != 0 || tti != 0 || self.own_ttls.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        if tti != 0 && !self.map.keeps_meta() {
            tracing::warn!(
                "cache {}: a TTI set after the cache was built acts as a TTL until restart \
                 (entries live at most {tti} ms from their load); set it in code or in the \
                 configuration loaded before the first call to track idle time",
                self.ident()
            );
        }
        let cap = s.capacity.max(1);
        if self.capacity.swap(cap, Ordering::Relaxed) != cap {
            self.map.set_capacity(cap);
        }
        let was_enabled = self.enabled.swap(s.enabled, Ordering::Relaxed);
        self.refresh_flags();
        drop(flags_lock);
        let old_mask = self.key_mask.swap(mask, Ordering::Relaxed);
        // Entries keyed under another mask go everywhere: a mask that comes
        // back must not find what invalidations under this one missed.
        #[cfg(feature = "redis")]
        if old_mask != mask {
            let _ = self.propagate(RemoteOp::Clear, None);
        }
        if (was_enabled && !s.enabled) || old_mask != mask {
            self.clear(None);
        }
        Ok(())
    }

    /// The key mask that `s.keys` names.
    fn key_mask_for(&self, s: &Settings) -> Result<u64, ConfigError> {
        Ok(match &s.keys {
            None => ALL_KEYS,
            Some(names) => {
                if self.key_args.is_empty() {
                    return Err(ConfigError::Mismatch(format!(
                        "{}: `keys` can be configured only for the actions of a #[cache_service]",
                        self.ident()
                    )));
                }
                let mut mask = 0;
                for n in names {
                    let Some(i) = self.key_args.iter().position(|a| a == n) else {
                        return Err(ConfigError::Mismatch(format!(
                            "{}: keys names `{n}`, which is not one of its key arguments ({})",
                            self.ident(),
                            self.key_args.join(", ")
                        )));
                    };
                    mask |= 1 << i;
                }
                mask
            }
        })
    }

    #[inline]
    fn ttl_ms(&self) -> u64 {
        self.ttl_ms.load(Ordering::Relaxed)
    }

    #[inline]
    fn tti_ms(&self) -> u64 {
        self.tti_ms.load(Ordering::Relaxed)
    }

    fn purge_expired(&self) -> usize {
        if !self.expires() {
            return 0;
        }
        let now = self.clock.now_ms();
        let expired = std::cell::RefCell::new(Vec::new());
        self.map.retain(|k, e| {
            let dead = self.dead(e.expires_at, e.meta, now);
            if dead {
                expired.borrow_mut().push((k.clone(), e.meta.cloned()));
            }
            !dead
        });
        let expired = expired.into_inner();
        for (k, meta) in &expired {
            self.removed(k, meta.as_ref(), EventKind::Expire, Counter::Expiration);
        }
        expired.len()
    }

    fn stats(&self) -> Stats {
        self.counters.snapshot(self.map.len() as u64)
    }

    /// Joins the load of `key`, or finds that it has meanwhile been stored.
    fn turn(&self, key: &K) -> Turn<'_, K, V> {
        match self.flights.join(key) {
            Join::Leader(flight) => {
                let lead = Lead {
                    flights: &self.flights,
                    key: key.clone(),
                    flight,
                    landed: false,
                    epoch: self.epoch(),
                };
                // A load may have landed between our miss and joining.
                match self.lookup(key) {
                    Some(e) => {
                        lead.land(&e.value);
                        Turn::Done(e.value)
                    }
                    None => Turn::Lead(lead),
                }
            }
            Join::Follower(f) => Turn::Wait(f),
        }
    }

    /// A load computed outside single-flight (its leader's load failed):
    /// stored like any other when it succeeds.
    fn solo<E>(&self, key: K, v: Result<V, E>, epoch: u64) -> Result<V, E> {
        let v = v?;
        let store = self.should_store(&v);
        self.loaded(key, &v, Instant::now(), store, epoch);
        Ok(v)
    }

    /// Replaces `key`'s value here and in every tier: what was there, and
    /// what loads under way would store, is invalidated first.
    fn put(&self, key: K, value: V) {
        #[cfg(feature = "redis")]
        if self.tier().is_some() {
            let text = render_with(&key, self.render);
            let _ = self.propagate(RemoteOp::Key(text), Some(self.tenant(&key)));
            self.remote_set_sync(&key, &value, None);
        }
        self.bump();
        self.store(key, value, self.ttl_ms());
    }

    /// The invalidation count now.
    #[inline]
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Marks an invalidation (before anything is removed): loads under way
    /// store nothing, and new callers do not join them.
    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.flights.detach_all();
    }

    /// Stores a value a load began at `epoch`, unless an invalidation came
    /// since; one that comes while it is stored takes it out again.
    fn store_loaded(&self, key: K, value: V, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        let undo = key.clone();
        self.store(key, value, self.ttl_ms());
        if self.epoch() != epoch
            && let Some((k, e)) = self.map.remove(&undo)
        {
            self.removed(
                &k,
                e.meta.as_ref(),
                EventKind::Invalidate,
                Counter::Invalidation,
            );
        }
    }

    /// Records a finished load and stores its value if the policy allows.
    fn loaded(&self, key: K, value: &V, started: Instant, store: bool, epoch: u64) {
        self.counters.incr(Counter::Load);
        self.counters
            .add(Counter::LoadNanos, started.elapsed().as_nanos() as u64);
        if store {
            self.store_loaded(key, value.clone(), epoch);
        }
    }
}

impl<K: CacheKey, V: CacheValue> Cache<K, V> {
    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The value for `key`, if a live one is cached.
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.get(key)
    }

    /// Whether a live entry exists for `key`.
    ///
    /// It neither counts as a hit nor resets the entry's idle time.
    pub fn contains_key(&self, key: &K) -> bool {
        let inner = &*self.inner;
        inner.map.peek(key).is_some_and(|e| {
            !inner.expires()
                || !inner.dead(e.expires_at.get(), e.meta.as_ref(), inner.clock.now_ms())
        })
    }

    /// Stores `value` under `key` with the cache's TTL (in L2 too, when
    /// the cache has a remote tier).
    ///
    /// It replaces the value everywhere: loads under way do not overwrite
    /// it, and with a remote tier the other nodes drop their local copies
    /// and read this value from Redis.
    pub fn insert(&self, key: K, value: V) {
        self.inner.put(key, value)
    }

    /// Stores `value` under `key` with its own TTL.
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        if !self.inner.own_ttls.swap(true, Ordering::Relaxed) {
            if matches!(self.inner.clock, Clock::System) {
                crate::clock::start_system_clock();
            }
            let _lock = self.inner.flags_lock.lock();
            self.inner.expires.store(true, Ordering::Relaxed);
            self.inner.refresh_flags();
        }
        self.inner
            .store(key, value, (ttl.as_millis() as u64).max(1))
    }

    /// The cached value, or the one `init` computes; concurrent callers on
    /// one key run `init` once and share its value.
    #[inline]
    pub fn get_or_insert_with(&self, key: K, init: impl FnOnce() -> V) -> V {
        if let Some(v) = self.inner.get(&key) {
            return v;
        }
        self.__load(key, init)
    }

    /// The miss path of [`Cache::get_or_insert_with`], for generated code
    /// that has already looked the key up.
    #[doc(hidden)]
    #[inline(never)]
    pub fn __load(&self, key: K, init: impl FnOnce() -> V) -> V {
        match self.load_sync(key, || Ok::<V, std::convert::Infallible>(init()), None) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Like [`Cache::get_or_insert_with`], for a fallible `init`. An error
    /// is returned to this caller and not cached; waiting callers retry.
    pub fn get_or_try_insert_with<E>(
        &self,
        key: K,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(v) = self.inner.get(&key) {
            return Ok(v);
        }
        self.load_sync(key, init, None)
    }

    /// Like [`Cache::get_or_try_insert_with`], and concurrent callers that
    /// wait on a load that fails get a clone of its error (one run, not
    /// one each).
    pub fn get_or_try_insert_with_shared<E: Clone + Send + Sync + 'static>(
        &self,
        key: K,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(v) = self.inner.get(&key) {
            return Ok(v);
        }
        self.load_sync(key, init, ErrShare::CLONED)
    }

    /// The async form of [`Cache::get_or_try_insert_with_shared`].
    pub async fn get_or_try_insert_with_shared_async<E, F>(&self, key: K, init: F) -> Result<V, E>
    where
        E: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        if let Some(v) = self.inner.get(&key) {
            return Ok(v);
        }
        self.load_async(key, init, ErrShare::CLONED).await
    }

    /// The miss path shared by the sync loaders: join the key's flight, and
    /// as its leader look in L2, compute, and store.
    fn load_sync<E>(
        &self,
        key: K,
        init: impl FnOnce() -> Result<V, E>,
        errs: Option<ErrShare<E>>,
    ) -> Result<V, E> {
        let inner = &*self.inner;
        loop {
            match inner.turn(&key) {
                Turn::Done(v) => return Ok(v),
                // A load that asks for its own key on its own thread would
                // wait for itself: it computes instead.
                Turn::Wait(f) if f.led_here() => {
                    let epoch = inner.epoch();
                    return inner.solo(key, init(), epoch);
                }
                Turn::Wait(f) => match f.wait() {
                    Waited::Value(v) => return Ok(v),
                    Waited::Retry => {}
                    Waited::Failed(err) => {
                        if let (Some(e), Some(errs)) = (err, &errs)
                            && let Some(e) = (errs.unshare)(&e)
                        {
                            return Err(e);
                        }
                        let epoch = inner.epoch();
                        return inner.solo(key, init(), epoch);
                    }
                },
                Turn::Lead(lead) => {
                    let epoch = lead.epoch;
                    #[cfg(feature = "redis")]
                    let lock = match inner.remote_get_sync(&key) {
                        Remote::Found(v) => {
                            inner.store_loaded(key, v.clone(), epoch);
                            lead.land(&v);
                            return Ok(v);
                        }
                        Remote::Locked(token, generation) => (Some(token), generation),
                        Remote::Missing(generation) => (None, generation),
                    };
                    #[cfg(feature = "redis")]
                    let (lock, generation) = lock;
                    let started = Instant::now();
                    let v = init();
                    #[cfg(feature = "redis")]
                    if let (Err(_), Some(token)) = (&v, lock.clone()) {
                        inner.remote_unlock_sync(&key, token);
                    }
                    let v = match v {
                        Ok(v) => v,
                        Err(e) => {
                            lead.fail(errs.as_ref().map(|s| (s.share)(&e)));
                            return Err(e);
                        }
                    };
                    let store = inner.should_store(&v);
                    #[cfg(feature = "redis")]
                    {
                        if store && inner.enabled.load(Ordering::Relaxed) && inner.epoch() == epoch
                        {
                            inner.remote_set_sync(&key, &v, generation);
                            inner.recheck_remote(&key, epoch);
                        }
                        if let Some(token) = lock {
                            inner.remote_unlock_sync(&key, token);
                        }
                    }
                    inner.loaded(key, &v, started, store, epoch);
                    lead.land(&v);
                    return Ok(v);
                }
            }
        }
    }

    /// The async form of [`Cache::get_or_insert_with`]: waiting callers do
    /// not block their threads. If the leading future is dropped, a waiter
    /// takes over.
    #[inline]
    pub async fn get_or_insert_with_async<F>(&self, key: K, init: F) -> V
    where
        F: Future<Output = V>,
    {
        if let Some(v) = self.inner.get(&key) {
            return v;
        }
        self.__load_async(key, init).await
    }

    /// The miss path of [`Cache::get_or_insert_with_async`].
    #[doc(hidden)]
    pub async fn __load_async<F: Future<Output = V>>(&self, key: K, init: F) -> V {
        let init = async { Ok::<V, std::convert::Infallible>(init.await) };
        match self.load_async(key, init, None).await {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// The async form of [`Cache::get_or_try_insert_with`].
    pub async fn get_or_try_insert_with_async<E, F>(&self, key: K, init: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Some(v) = self.inner.get(&key) {
            return Ok(v);
        }
        self.load_async(key, init, None).await
    }

    /// The miss path shared by the async loaders.
    async fn load_async<E, F>(&self, key: K, init: F, errs: Option<ErrShare<E>>) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let inner = &*self.inner;
        loop {
            match inner.turn(&key) {
                Turn::Done(v) => return Ok(v),
                Turn::Wait(f) => match f.wait_async().await {
                    Waited::Value(v) => return Ok(v),
                    Waited::Retry => {}
                    Waited::Failed(err) => {
                        if let (Some(e), Some(errs)) = (err, &errs)
                            && let Some(e) = (errs.unshare)(&e)
                        {
                            return Err(e);
                        }
                        let epoch = inner.epoch();
                        return inner.solo(key, init.await, epoch);
                    }
                },
                Turn::Lead(lead) => {
                    let epoch = lead.epoch;
                    #[cfg(feature = "redis")]
                    let lock = match inner.remote_get(&key).await {
                        Remote::Found(v) => {
                            inner.store_loaded(key, v.clone(), epoch);
                            lead.land(&v);
                            return Ok(v);
                        }
                        Remote::Locked(token, generation) => (Some(token), generation),
                        Remote::Missing(generation) => (None, generation),
                    };
                    #[cfg(feature = "redis")]
                    let (lock, generation) = lock;
                    let started = Instant::now();
                    let v = init.await;
                    #[cfg(feature = "redis")]
                    if let (Err(_), Some(token)) = (&v, lock.clone()) {
                        inner.remote_unlock(&key, token).await;
                    }
                    let v = match v {
                        Ok(v) => v,
                        Err(e) => {
                            lead.fail(errs.as_ref().map(|s| (s.share)(&e)));
                            return Err(e);
                        }
                    };
                    let store = inner.should_store(&v);
                    #[cfg(feature = "redis")]
                    {
                        if store && inner.enabled.load(Ordering::Relaxed) && inner.epoch() == epoch
                        {
                            inner.remote_set(&key, &v, generation).await;
                            inner.recheck_remote(&key, epoch);
                        }
                        if let Some(token) = lock {
                            inner.remote_unlock(&key, token).await;
                        }
                    }
                    inner.loaded(key, &v, started, store, epoch);
                    lead.land(&v);
                    return Ok(v);
                }
            }
        }
    }

    /// A hit that may also hand out a refresh: when the entry is older than
    /// the cache's refresh age and no load of it runs, the ticket lets the
    /// caller recompute it in the background while the current value is
    /// served. `None` on a miss.
    pub fn get_or_refresh(&self, key: &K) -> Option<(V, Option<RefreshTicket<K, V>>)> {
        let inner = &*self.inner;
        let v = inner.get(key)?;
        if inner.refresh_ms == 0 {
            return Some((v, None));
        }
        let loaded_at = inner
            .map
            .peek(key)
            .and_then(|e| e.meta.map(|m| m.loaded_at))
            .unwrap_or(0);
        if inner.clock.now_ms().saturating_sub(loaded_at) < inner.refresh_ms {
            return Some((v, None));
        }
        let epoch = inner.epoch();
        let ticket = inner.flights.try_lead(key).map(|flight| RefreshTicket {
            cache: self.clone(),
            key: key.clone(),
            flight,
            landed: false,
            epoch,
        });
        Some((v, ticket))
    }

    /// Stores a value computed elsewhere (by `#[cache_put]`), subject to
    /// the cache's `store_if`.
    #[doc(hidden)]
    pub fn __put(&self, key: K, value: V) {
        if self.inner.should_store(&value) {
            self.inner.put(key, value);
        }
    }

    /// Removes the entry for `key`; true if there was one.
    ///
    /// With a remote tier, the entry is removed there and from the other
    /// nodes' local tiers too; if Redis cannot be reached, that part is
    /// retried until done, and this node reads nothing from Redis meanwhile.
    pub fn invalidate(&self, key: &K) -> bool {
        // The remote part first; see `invalidate_key_everywhere`.
        #[cfg(feature = "redis")]
        if self.inner.tier().is_some() {
            let text = render_with(key, self.inner.render);
            let _ = self
                .inner
                .propagate(RemoteOp::Key(text), Some(self.inner.tenant(key)));
        }
        self.inner.invalidate(key)
    }

    /// Removes the entry whose key text is `key` (such as `get_user:123`).
    pub fn invalidate_key_str(&self, key: &str) -> bool {
        self.inner.invalidate_key_everywhere(key, None) > 0
    }

    /// Removes the entries whose key text matches `pattern`; returns how
    /// many this process held. An error when the remote tier cannot select
    /// by this pattern (a glob over hashed keys): then nothing is removed.
    pub fn revoke(&self, pattern: &Pattern) -> Result<usize, StoreError> {
        self.inner.revoke_everywhere(pattern, None)
    }

    /// Parses `pattern` and revokes what it matches.
    pub fn revoke_str(&self, pattern: &str) -> Result<usize, CacheError> {
        Ok(self
            .inner
            .revoke_everywhere(&Pattern::new(pattern)?, None)?)
    }

    /// Removes the entries stored with `tag`; returns how many.
    pub fn invalidate_tag(&self, tag: &str) -> usize {
        self.inner.invalidate_tag_everywhere(tag, None)
    }

    /// Removes every entry; returns how many there were.
    pub fn clear(&self) -> usize {
        self.inner.clear_everywhere(None)
    }

    /// The first `limit` live keys as text, in sorted order, matching
    /// `pattern` if given.
    pub fn keys(&self, pattern: Option<&Pattern>, limit: usize) -> Vec<String> {
        self.inner.keys(&KeyQuery {
            pattern,
            limit,
            ..KeyQuery::default()
        })
    }

    /// Whether caching is on (configuration can turn it off at runtime).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    /// Which key arguments form the key, as a bit set over the names given
    /// to [`CacheBuilder::key_args`]; all bits when configuration sets none.
    #[inline]
    pub fn key_mask(&self) -> u64 {
        self.inner.key_mask.load(Ordering::Relaxed)
    }

    /// The service the cache belongs to.
    pub fn service(&self) -> Option<&str> {
        self.inner.service.as_deref()
    }

    /// The settings the cache runs with now.
    pub fn settings(&self) -> Settings {
        let i = &*self.inner;
        let dur = |ms: u64| (ms != 0).then(|| Duration::from_millis(ms));
        let mask = self.key_mask();
        Settings {
            enabled: self.is_enabled(),
            ttl: dur(i.ttl_ms()),
            tti: dur(i.tti_ms()),
            capacity: i.capacity.load(Ordering::Relaxed),
            keys: (mask != ALL_KEYS).then(|| {
                i.key_args
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| mask & (1 << b) != 0)
                    .map(|(_, a)| a.to_string())
                    .collect()
            }),
            backend: self.backend(),
        }
    }

    /// Puts this cache in front of `store`: `Tiered` keeps values here and
    /// in Redis, `Redis` only there, `Memory` detaches it. Invalidations that
    /// other nodes publish on `store` reach this cache. Configuration does
    /// this by itself for `backend = "redis" | "tiered"`; this is for caches
    /// built by hand and for tests. A cache without a
    /// [`CacheBuilder::remote_codec`] stays in memory.
    #[cfg(feature = "redis")]
    pub fn attach_remote(
        &self,
        store: Arc<crate::redis::RedisStore>,
        mode: crate::config::Backend,
    ) {
        let weak = Arc::downgrade(&self.inner);
        store.on_invalidation(move |msg| {
            if let Some(inner) = weak.upgrade() {
                inner.apply_remote(msg);
            }
        });
        let mut tier = self.inner.tier.write();
        *tier = match mode {
            crate::config::Backend::Memory => None,
            m => Some(Arc::new(tier::Tier {
                store,
                l1: m == crate::config::Backend::Tiered,
            })),
        };
        drop(tier);
        self.inner.clear(None);
    }

    /// The Redis key that holds `key`'s value, when the cache has a remote
    /// tier: what leaves the process for this key.
    #[cfg(feature = "redis")]
    pub fn remote_key(&self, key: &K) -> Option<String> {
        let tier = self.inner.tier()?;
        let ns = self.inner.remote_ns_of(key);
        let part = self
            .inner
            .remote_part_of(&render_with(key, self.inner.render));
        Some(tier.store.remote_key(&ns, &part))
    }

    /// Where the cache's values live now.
    pub fn backend(&self) -> crate::config::Backend {
        #[cfg(feature = "redis")]
        if let Some(t) = self.inner.tier() {
            return if t.l1 {
                crate::config::Backend::Tiered
            } else {
                crate::config::Backend::Redis
            };
        }
        crate::config::Backend::Memory
    }

    /// Removes entries past their TTL or TTI now, rather than when next read.
    pub fn purge_expired(&self) -> usize {
        self.inner.purge_expired()
    }

    /// The cache's counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Entries in the cache, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.inner.map.len() == 0
    }

    /// The text form of `key`.
    pub fn key_string(&self, key: &K) -> String {
        render_with(key, self.inner.render)
    }

    /// Calls `f` for every event on this cache until removed.
    pub fn add_listener(
        &self,
        f: impl Fn(&CacheEvent<'_, K>) + Send + Sync + 'static,
    ) -> ListenerId {
        let _lock = self.inner.flags_lock.lock();
        let id = self.inner.listeners.add(Arc::new(f));
        self.inner.refresh_flags();
        id
    }

    /// Removes a listener; true if it was registered.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        let _lock = self.inner.flags_lock.lock();
        let removed = self.inner.listeners.remove(id);
        self.inner.refresh_flags();
        removed
    }

    #[cfg(test)]
    pub(crate) fn flights_in_progress(&self) -> usize {
        self.inner.flights.len()
    }
}

impl<K: CacheKey, V: CacheValue> ErasedCache for Inner<K, V> {
    fn name(&self) -> &str {
        &self.name
    }
    fn identity(&self) -> &str {
        &self.identity
    }
    fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }
    fn invalidate_key_str(&self, key: &str, tenant: Option<TenantId>) -> usize {
        self.invalidate_key_everywhere(key, tenant)
    }
    fn revoke(&self, pattern: &Pattern, tenant: Option<TenantId>) -> Result<usize, StoreError> {
        self.revoke_everywhere(pattern, tenant)
    }
    fn check_revoke(&self, pattern: &Pattern) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if let Some(t) = self.tier()
            && t.store.options().hash_keys
            && pattern.as_str() != "*"
            && pattern.literal().is_none()
        {
            return Err(crate::redis::hashed_pattern_error(pattern));
        }
        let _ = pattern;
        Ok(())
    }
    fn invalidate_tag(&self, tag: &str, tenant: Option<TenantId>) -> usize {
        self.invalidate_tag_everywhere(tag, tenant)
    }
    fn clear(&self, tenant: Option<TenantId>) -> usize {
        self.clear_everywhere(tenant)
    }
    #[cfg(feature = "redis")]
    fn apply_remote(&self, msg: &crate::redis::Invalidation) {
        Inner::apply_remote(self, msg)
    }
    fn keys(&self, query: &KeyQuery<'_>) -> Vec<String> {
        Inner::keys(self, query)
    }
    fn stats(&self) -> Stats {
        Inner::stats(self)
    }
    fn check(&self, config: &Config) -> Result<(), ConfigError> {
        let s = config.resolve_for(
            self.service.as_deref(),
            &self.name,
            &self.identity,
            &self.defaults,
        );
        self.check_backend(&s)?;
        self.key_mask_for(&s).map(|_| ())
    }
    fn apply(&self, config: &Config) -> Result<(), ConfigError> {
        Inner::apply(self, config)
    }
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
