//! The public methods of [`Cache`] other than loads.

use super::*;

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

    /// [`Cache::insert`] at `priority`: a full cache evicts lower
    /// priorities first, and critical entries (within their share) never
    /// for size. It needs an engine that orders by priority: a cache built
    /// with a priority, or with `lru`, `lfu` or `tinylfu` eviction; the
    /// default engine stores the value and ignores its priority (with a
    /// warning, once).
    ///
    /// ```
    /// use cache_core::{Cache, Priority};
    ///
    /// let c: Cache<u32, u32> = Cache::builder().capacity(2).priority(Priority::Medium).build();
    /// c.insert_with_priority(1, 10, Priority::High);
    /// c.insert(2, 20);
    /// c.insert(3, 30);
    /// assert_eq!(c.get(&1), Some(10), "the high entry stays");
    /// ```
    pub fn insert_with_priority(&self, key: K, value: V, priority: Priority) {
        if !self.inner.map.has_priorities()
            && !self.inner.warned_priority.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "cache {}: its engine has no priorities (build it with a priority, or lru, \
                 lfu or tinylfu eviction); {priority:?} is ignored",
                self.inner.ident()
            );
        }
        self.inner.put_at(key, value, priority, None)
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
        // A replacement like `insert`: in every tier, ahead of loads under
        // way, and invalidating what depends on the key.
        let ttl_ms = (ttl.as_millis().min(u64::MAX as u128) as u64).max(1);
        let priority = self.inner.priority();
        self.inner.put_at(key, value, priority, Some(ttl_ms))
    }

    /// Stores a value computed elsewhere (by `#[cache_put]`), subject to
    /// the cache's `store_if`.
    #[doc(hidden)]
    pub fn __put(&self, key: K, value: V) {
        // A value `store_if` refuses leaves the cache alone; one whose own
        // TTL is zero replaces the old value by nothing.
        if self.inner.store_if.is_none_or(|p| p(&value)) {
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
        if self.inner.tier().is_some() {
            let text = render_with(key, self.inner.render);
            let _ = self
                .inner
                .propagate(RemoteOp::Key(text), Some(self.inner.tenant(key)));
        }
        let removed = self.inner.invalidate(key);
        self.inner.invalidate_dependants(key);
        removed
    }

    /// The live values of `keys`, in order; each lookup counts as
    /// [`Cache::get`]'s does.
    pub fn get_many<'k>(&self, keys: impl IntoIterator<Item = &'k K>) -> Vec<Option<V>>
    where
        K: 'k,
    {
        keys.into_iter().map(|k| self.inner.get(k)).collect()
    }

    /// Stores each `(key, value)` as [`Cache::insert`] does.
    pub fn insert_many(&self, entries: impl IntoIterator<Item = (K, V)>) {
        for (k, v) in entries {
            self.inner.put(k, v);
        }
    }

    /// Removes the entries of `keys` as [`Cache::invalidate`] does;
    /// returns how many this process held.
    pub fn invalidate_many<'k>(&self, keys: impl IntoIterator<Item = &'k K>) -> usize
    where
        K: 'k,
    {
        keys.into_iter().filter(|k| self.invalidate(k)).count()
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
            l2: i
                .tier()
                .map_or_else(|| "redis".to_string(), |t| t.store.clone()),
            tenant_labels: i.tenant_labels.load(Ordering::Relaxed),
            max_tenants: i.tenant_counts.max(),
            eviction: Some(i.policy),
            eviction_batch_size: i.batch.load(Ordering::Relaxed),
            sync_interval: Duration::from_millis(i.sync_interval_ms.load(Ordering::Relaxed)),
            priority: Some(i.priority()),
            critical_share: i.map.critical_share(),
            capacity_bytes: match i.capacity_bytes.load(Ordering::Relaxed) {
                0 => None,
                b => Some(b),
            },
        }
    }

    /// Re-points a built cache at `store`, as
    /// [`CacheBuilder::remote`](crate::CacheBuilder::remote) does at build
    /// time (`Memory` detaches it); what the cache held is dropped. For
    /// caches generated by `#[cached]` and for tests: configuration does
    /// this by itself for `backend = "redis" | "tiered" | "<store>"`.
    pub fn attach_remote(&self, store: Arc<dyn crate::store::Remote>, mode: crate::spec::Backend) {
        self.inner.attach(store, mode);
    }

    /// Where `key`'s value lives outside the process (its Redis key), when
    /// the cache has a remote tier: what leaves the process for this key.
    pub fn remote_key(&self, key: &K) -> Option<String> {
        let tier = self.inner.tier()?;
        let ns = self.inner.remote_ns_of(key);
        let part = self
            .inner
            .remote_part_of(&render_with(key, self.inner.render));
        Some(tier.remote.location(&ns, &part))
    }

    /// Where the cache's values live now.
    pub fn backend(&self) -> crate::spec::Backend {
        self.inner
            .tier()
            .map_or(crate::spec::Backend::Memory, |t| t.backend.clone())
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
