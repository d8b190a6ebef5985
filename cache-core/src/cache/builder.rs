//! [`CacheBuilder`]: a cache's settings in code, and `build`.

use super::*;

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
            indexes: Vec::new(),
            register: false,
            eviction: Eviction::Engine,
            priority: None,
            critical_share: None,
            eviction_batch: None,
            capacity_bytes: None,
            weigher: None,
            ttl_fn: None,
            depends_on: None,
            backend: None,
            remote: None,
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

    /// A secondary index named `name`: `terms` gives the terms a value is
    /// found under (none, one or many), for [`Cache::query`]. A later index
    /// of the same name replaces this one. `terms` must not call the cache.
    ///
    /// ```
    /// use cache_core::{Cache, index::Query};
    /// #[derive(Clone)]
    /// struct File { language: String, functions: Vec<String> }
    /// let files: Cache<String, File> = Cache::builder()
    ///     .index("language", |f: &File| vec![f.language.clone()])
    ///     .index("function", |f: &File| f.functions.clone())
    ///     .build();
    /// files.insert("src/a.py".into(), File { language: "python".into(), functions: vec!["main".into()] });
    /// let found = files.query(&Query::new().eq("language", "python").eq("function", "main")).unwrap();
    /// assert_eq!(found.len(), 1);
    /// ```
    pub fn index(
        mut self,
        name: impl Into<String>,
        terms: impl Fn(&V) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.indexes.push((name.into(), Arc::new(terms)));
        self
    }

    /// How a full cache picks what to evict (default: the engine's own).
    pub fn eviction(mut self, policy: Eviction) -> Self {
        self.eviction = policy;
        self
    }

    /// Where values live unless configuration says otherwise; as
    /// `backend = "..."` in configuration. It takes effect for a
    /// [registered](Self::register) cache, which reads the configuration.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Puts the cache in front of `store` from the start (a `RedisStore`,
    /// a [`StoreRemote`](crate::StoreRemote) over any store, ...): with
    /// `Backend::Tiered` values live here and there, with any other remote
    /// backend only there. Invalidations other nodes publish on `store`
    /// reach the cache. It needs a [`remote_codec`](Self::remote_codec);
    /// without one the cache stays in memory. For a
    /// [registered](Self::register) cache, a configuration (re)load that
    /// names a backend replaces it, as configuration wins over code.
    pub fn remote(mut self, store: Arc<dyn crate::store::Remote>, mode: Backend) -> Self {
        self.remote = Some((store, mode));
        self
    }

    /// Makes the cache reachable by name through the registry
    /// (`cache_core::registry()`), under the configuration in force.
    pub fn register(mut self, yes: bool) -> Self {
        self.register = yes;
        self
    }

    /// The priority of the cache's entries (an insert may name its own):
    /// a full cache evicts lower priorities first, and critical entries,
    /// within [`CacheBuilder::critical_share`], never for size. A cache with
    /// a priority runs an engine that orders by it: TinyLFU, unless
    /// [`CacheBuilder::eviction`] names LRU or LFU.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Entries a full LRU or LFU cache evicts at once (1 % of the capacity,
    /// between 1 and 100, unless set here or configured).
    pub fn eviction_batch_size(mut self, n: usize) -> Self {
        self.eviction_batch = Some(n.max(1));
        self
    }

    /// The share of the capacity (0 to 1) critical entries may take before
    /// further ones rank as high; half by default.
    pub fn critical_share(mut self, share: f64) -> Self {
        self.critical_share = Some(share.clamp(0.0, 1.0));
        self
    }

    /// Bounds the entries' total weight in bytes instead of their number,
    /// each weighed by the [`CacheBuilder::weigher`] (the inline sizes of
    /// key and value, plus [`crate::weigh::ENTRY_OVERHEAD`], without one).
    pub fn capacity_bytes(mut self, bytes: u64) -> Self {
        self.capacity_bytes = Some(bytes.max(1));
        self
    }

    /// How much an entry weighs, for [`CacheBuilder::capacity_bytes`] (and
    /// for configuration's `capacity_bytes`). [`crate::weigh::weigh_entry`]
    /// weighs types that implement [`crate::Weigh`].
    pub fn weigher(mut self, weigher: fn(&K, &V) -> u64) -> Self {
        self.weigher = Some(weigher);
        self
    }

    /// Each value's own time to live, computed from it (an HTTP `max-age`,
    /// a token's expiry); it replaces the cache's TTL for that entry, and
    /// travels with the entry to the tiers outside the process. A zero
    /// duration means the value is not stored.
    pub fn ttl_fn(mut self, ttl_fn: fn(&V) -> Duration) -> Self {
        self.ttl_fn = Some(ttl_fn);
        self
    }

    /// The keys each entry depends on, as templates over the key's
    /// arguments (`"get_user:{id}"`), with `args` giving each argument's
    /// text: invalidating or replacing such a key, in any cache of the
    /// process, invalidates the entries that depend on it here, in the
    /// tiers outside the process and on the other nodes, transitively
    /// (see [`crate::depend`]).
    pub fn depends_on(mut self, templates: &'static [&'static str], args: DepArgs<K>) -> Self {
        self.depends_on = Some((templates, args));
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
            backend: self.backend.clone(),
        };
        let settings = Settings {
            enabled: self.enabled,
            ttl: self.ttl,
            tti: self.tti,
            capacity: self.capacity.unwrap_or(DEFAULT_CAPACITY),
            keys: None,
            backend: Backend::Memory,
            l2: "redis".into(),
            tenant_labels: false,
            max_tenants: crate::tenant_counts::DEFAULT_MAX_TENANTS,
            eviction: None,
            eviction_batch_size: self.eviction_batch.unwrap_or_else(|| {
                crate::spec::default_eviction_batch(self.capacity.unwrap_or(DEFAULT_CAPACITY))
            }),
            sync_interval: crate::spec::DEFAULT_SYNC_INTERVAL,
            priority: None,
            critical_share: None,
            capacity_bytes: None,
        };
        let registrar = if self.register {
            inventory::iter::<Registrar>.into_iter().next()
        } else {
            None
        };
        let quota = self
            .service
            .as_deref()
            .zip(registrar)
            .map(|(s, r)| (r.quota)(s));
        let identity: Arc<str> = match (&self.service, self.module_path) {
            (None, Some(m)) => format!("{m}::{}", self.name).into(),
            _ => self.name.as_str().into(),
        };
        // Entries carry metadata only when the cache needs it; the engine
        // without it makes a hit's copy smaller.
        let config = registrar.map(|r| (r.config)());
        let configured = config
            .as_ref()
            .map(|c| c.resolve_for(self.service.as_deref(), &self.name, &identity, &defaults));
        let config_tti = configured.as_ref().and_then(|s| s.tti);
        // Configuration's policy wins over the code's; it is read here, as
        // the engine depends on it.
        let priority = configured
            .as_ref()
            .and_then(|s| s.priority)
            .or(self.priority);
        let critical_share = configured
            .as_ref()
            .and_then(|s| s.critical_share)
            .or(self.critical_share);
        let policy = match configured.as_ref().and_then(|s| s.eviction) {
            Some(p) => p,
            // Priorities need an engine that orders by them.
            None if self.eviction == Eviction::Engine
                && (priority.is_some() || critical_share.is_some()) =>
            {
                Eviction::TinyLfu
            }
            None => self.eviction,
        };
        let capacity_bytes = configured
            .as_ref()
            .and_then(|s| s.capacity_bytes)
            .or(self.capacity_bytes);
        let weigher = capacity_bytes.map(|_| {
            self.weigher
                .unwrap_or(crate::weigh::weigh_inline::<K, V> as fn(&K, &V) -> u64)
        });
        let meta = self.depends_on.is_some()
            || self.tags.is_some()
            || self.refresh.is_some()
            || self.tti.is_some()
            || config_tti.is_some();
        let inner = Arc::new(Inner {
            name: self.name.into(),
            identity,
            unshared: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            text_prefix: self.text_prefix,
            service: self.service.map(Into::into),
            // Sized as configured from the start: the LRU and LFU engines
            // shard by the capacity they are built with.
            map: {
                let map = Engine::new(
                    capacity_bytes.map_or_else(
                        || {
                            configured
                                .as_ref()
                                .map_or(settings.capacity, |s| s.capacity)
                        },
                        |b| b.min(usize::MAX as u64) as usize,
                    ),
                    policy,
                    meta,
                    weigher,
                );
                if let Some(share) = critical_share {
                    map.set_critical_share(share);
                }
                map
            },
            flags: std::sync::atomic::AtomicU8::new(0),
            flags_lock: Mutex::new(()),
            enabled: AtomicBool::new(true),
            ttl_ms: AtomicU64::new(0),
            tti_ms: AtomicU64::new(0),
            capacity: AtomicUsize::new(settings.capacity),
            key_mask: AtomicU64::new(ALL_KEYS),
            refresh_ms: millis(self.refresh),
            policy,
            batch: AtomicUsize::new(settings.eviction_batch_size),
            priority: std::sync::atomic::AtomicU8::new(priority.unwrap_or_default().class()),
            capacity_bytes: AtomicU64::new(capacity_bytes.unwrap_or(0)),
            ttl_fn: self.ttl_fn,
            warned_priority: AtomicBool::new(false),
            deps: self.depends_on.map(|(templates, args)| {
                crate::depend::note_built();
                Deps {
                    templates: crate::depend::closure(templates),
                    args,
                }
            }),
            cascade: registrar.map(|r| r.dependents),
            sync_interval_ms: AtomicU64::new(millis(Some(crate::spec::DEFAULT_SYNC_INTERVAL))),
            expires: AtomicBool::new(false),
            own_ttls: AtomicBool::new(self.ttl_fn.is_some()),
            defaults,
            key_args: self.key_args,
            tenant_of: self.tenant_of,
            mask_of: self.mask_of,
            quota,
            codec: self.codec,
            tier: parking_lot::RwLock::new(None),
            ticks: self.clock.ticks(),
            clock: self.clock,
            counters: Counters::default(),
            tenant_counts: TenantCounts::default(),
            tenant_labels: AtomicBool::new(false),
            load_failures: Default::default(),
            listeners: Listeners::default(),
            flights: Flights::new(),
            tag_index: Mutex::new(HashMap::new()),
            render: self.render,
            store_if: self.store_if,
            tags: self.tags,
            indexes: (!self.indexes.is_empty()).then(|| Box::new(Indexes::new(self.indexes))),
        });
        if (inner.refresh_ms != 0 || inner.ttl_fn.is_some()) && matches!(inner.clock, Clock::System)
        {
            crate::clock::start_system_clock();
        }
        if let (Some(r), Some(config)) = (registrar, config) {
            let weak: Weak<dyn ErasedCache> = Arc::downgrade(&inner) as Weak<dyn ErasedCache>;
            inner.registered.store(true, Ordering::Relaxed);
            if !(r.register)(&inner.name, weak) {
                // A duplicate name: never share entries outside the process.
                inner.unshared.store(true, Ordering::Relaxed);
            }
            if let Err(e) = inner.apply(&config) {
                tracing::error!("cache {}: configuration not applied: {e}", inner.name);
                let _ = inner.apply_settings(&settings);
            }
        } else {
            let _ = inner.apply_settings(&settings);
        }
        if let Some((store, mode)) = self.remote {
            inner.attach(store, mode);
        }
        Cache { inner }
    }
}

/// How a cache built with [`CacheBuilder::register`] reaches the layers
/// above this one: the configuration in force, the service quotas and the
/// registry. The configuration layer submits the one `Registrar` at link
/// time, so this module names none of them.
pub(crate) struct Registrar {
    /// The configuration in force.
    pub(crate) config: fn() -> Arc<Config>,
    /// The shared entry quota of a service's namespaces.
    pub(crate) quota: fn(&str) -> Arc<Quota>,
    /// Registers a cache by name; false if the name is taken.
    pub(crate) register: fn(&str, Weak<dyn ErasedCache>) -> bool,
    /// Invalidates what depends on a key text, in every registered cache.
    pub(crate) dependents: fn(&str),
}
inventory::collect!(Registrar);

/// A duration in whole milliseconds, at least 1; 0 for none.
pub(super) fn millis(d: Option<Duration>) -> u64 {
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
