//! The hit path, expiry, stores and single removals.

use super::*;

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// Whether an entry is past its TTL or TTI at `now` (reads only).
    #[inline]
    pub(super) fn dead(&self, expires_at: u64, meta: Option<&Arc<Meta>>, now: u64) -> bool {
        now >= expires_at || {
            let tti = self.tti_ms();
            tti != 0
                && meta
                    .is_some_and(|m| now.saturating_sub(m.accessed.load(Ordering::Relaxed)) >= tti)
        }
    }

    /// Whether an entry is alive at `now`; a live one is marked accessed.
    #[inline]
    pub(super) fn live(&self, expires_at: u64, meta: Option<&Arc<Meta>>, now: u64) -> bool {
        self.live_with(self.flags(), expires_at, meta, now)
    }

    /// [`Inner::live`] with the flags already read.
    #[inline(always)]
    pub(super) fn live_with(
        &self,
        flags: u8,
        expires_at: u64,
        meta: Option<&Arc<Meta>>,
        now: u64,
    ) -> bool {
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
    pub(super) fn flags(&self) -> u8 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Derives `flags` from the settings; call with `flags_lock` held,
    /// after changing one.
    pub(super) fn refresh_flags(&self) {
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
        if self.tenant_of.is_some() && self.tenant_labels.load(Ordering::Relaxed) {
            f |= TENANTS;
        }
        self.flags.store(f, Ordering::Relaxed);
    }

    #[inline]
    pub(super) fn expires(&self) -> bool {
        self.expires.load(Ordering::Relaxed)
    }

    /// A live entry, without touching stats.
    #[inline]
    pub(super) fn lookup(&self, key: &K) -> Option<Entry<V>> {
        let e = self.map.get(key)?;
        if self.expires() && !self.live(e.expires_at.get(), e.meta.as_ref(), self.clock.now_ms()) {
            self.expire(key);
            return None;
        }
        Some(e)
    }

    #[cold]
    pub(super) fn expire(&self, key: &K) {
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
    pub(super) fn get(&self, key: &K) -> Option<V> {
        let Engine::Plain(map) = &self.map else {
            return self.get_general(key);
        };
        if self.flags() & (OFF | TTI | LISTENED | TENANTS) != 0 {
            return self.get_general(key);
        }
        let Some(Plain { value, expires_at }) = map.get(key) else {
            self.miss(key, 0);
            return None;
        };
        let expires_at = expires_at.get();
        if self.ticks.raw_ms() < expires_at || self.live_after_all(expires_at) {
            self.counters.incr(Counter::Hit);
            if tracing::level_enabled!(tracing::Level::DEBUG) {
                self.trace_lookup(key, "hit");
            }
            return Some(value);
        }
        self.expire_and_miss(key);
        None
    }

    /// Whether an entry the hit path found expired is live after all: it
    /// read a stopped system clock, which this reading restarts.
    #[cold]
    #[inline(never)]
    pub(super) fn live_after_all(&self, expires_at: u64) -> bool {
        self.ticks.now_ms() < expires_at
    }

    /// An entry found dead on a lookup: removed, and the lookup counted as
    /// a miss.
    #[cold]
    #[inline(never)]
    pub(super) fn expire_and_miss(&self, key: &K) {
        self.expire(key);
        self.miss(key, 0);
    }

    /// [`Inner::get`] when caching is off, entries expire when idle, or
    /// listeners are registered.
    #[inline(never)]
    pub(super) fn get_general(&self, key: &K) -> Option<V> {
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
    pub(super) fn miss(&self, key: &K, flags: u8) {
        self.looked_up(key, flags, EventKind::Miss, Counter::Miss, "miss");
    }

    /// Counts a lookup, tells listeners, and traces it (`cache hit get_user:1`).
    #[inline(always)]
    pub(super) fn looked_up(
        &self,
        key: &K,
        flags: u8,
        kind: EventKind,
        counter: Counter,
        word: &str,
    ) {
        self.count(key, flags, counter);
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
    pub(super) fn trace_lookup(&self, key: &K, word: &str) {
        tracing::debug!(
            cache = &*self.name,
            "cache {word} {}",
            DisplayKey(key, self.render)
        );
    }

    /// Whether `v` may be cached: `store_if` allows it, and `ttl_fn` gives
    /// it a time to live.
    pub(super) fn should_store(&self, v: &V) -> bool {
        self.store_if.is_none_or(|p| p(v)) && (self.ttl_fn.is_none() || self.ttl_of(v).is_some())
    }

    /// Stores an entry under `guard`: a value computed since an epoch is
    /// inserted only if no invalidation concerning its key came since,
    /// checked atomically with the insert; false if it was not stored.
    pub(super) fn store_at(&self, key: K, value: V, ttl_ms: u64, guard: Guard) -> bool {
        let priority = self.priority();
        self.store_entry(key, value, ttl_ms, guard, priority)
    }

    /// The priority entries get unless their insert names one.
    pub(super) fn priority(&self) -> Priority {
        match self.priority.load(Ordering::Relaxed) {
            0 => Priority::Low,
            2 => Priority::High,
            3 => Priority::Critical,
            _ => Priority::Medium,
        }
    }

    /// [`Inner::store_at`] at `priority`.
    pub(super) fn store_entry(
        &self,
        key: K,
        value: V,
        ttl_ms: u64,
        guard: Guard,
        priority: Priority,
    ) -> bool {
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        if !self.keeps_l1() {
            return false;
        }
        let mut admitted = None;
        if let Some(q) = &self.quota {
            // Count new entries of the namespace; at its quota, do not store.
            let t = self.tenant_of.map_or(TenantId::NONE, |f| f(&key));
            if self.map.peek(&key).is_none() {
                if !q.admit(t) {
                    return false;
                }
                admitted = Some((q, t));
            }
        }
        let tti_ms = self.tti_ms();
        let needs_now = ttl_ms != 0 || tti_ms != 0 || self.refresh_ms != 0;
        let now = if needs_now { self.clock.now_ms() } else { 0 };
        let tags: Box<[String]> = self.tags_of(&key).into();
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
        let inserted = key.clone();
        let mut evicted = Evicted::default();
        let mut refused = false;
        // The tags are indexed in the same step as the insert (under the
        // key's store lock): a tag invalidation, which waits
        // for those locks, then finds the entry by its tags.
        let insert = || {
            refused = self.map.insert(key, entry, priority, &mut evicted);
            if let Some((m, key)) = tagged {
                let mut idx = self.tag_index.lock();
                for t in m.tags.iter() {
                    idx.entry(t.clone()).or_default().insert(key.clone());
                }
            }
        };
        let done = match guard {
            Guard::Current(e) => self.flights.insert_if_current(e, insert),
            Guard::Replace(e) => self.flights.replace_if_current(&inserted, e, insert),
        };
        if !done {
            if let Some((q, t)) = admitted {
                q.release(t);
            }
            return false;
        }
        self.count(&inserted, self.flags(), Counter::Insert);
        self.reindex(&inserted);
        if let Some(k) = fire {
            self.listeners
                .fire(EventKind::Insert, &self.name, &k, self.render);
        }
        for (k, e) in evicted.drain() {
            // `quick_cache` reports the entry a new value replaced as
            // evicted; it is not: its key has the new value, with the same
            // tags and quota slot (or, if an invalidation removed that
            // meanwhile, the invalidation did the bookkeeping). But an
            // engine may refuse the new entry (too heavy, or TinyLFU's
            // admission test), and says so: then the key is gone, and its
            // removal is counted once.
            if k == inserted {
                if std::mem::take(&mut refused) {
                    self.removed(&k, e.meta.as_ref(), EventKind::Evict, Counter::Eviction);
                }
                continue;
            }
            self.removed(&k, e.meta.as_ref(), EventKind::Evict, Counter::Eviction);
        }
        true
    }

    /// Removes `key`'s entry without moving its invalidation counter: for
    /// an entry known to be no newer than a value that was not stored.
    pub(super) fn remove_quietly(&self, key: &K) {
        if let Some((k, e)) = self.map.remove(key) {
            self.removed(
                &k,
                e.meta.as_ref(),
                EventKind::Invalidate,
                Counter::Invalidation,
            );
        }
    }

    /// Bookkeeping for an entry that left the map: counter, tag index, event.
    pub(super) fn removed(
        &self,
        key: &K,
        meta: Option<&Arc<Meta>>,
        kind: EventKind,
        counter: Counter,
    ) {
        self.count(key, self.flags(), counter);
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
        self.reindex(key);
        if self.listeners.active() {
            self.listeners.fire(kind, &self.name, key, self.render);
        }
    }

    /// Indexes `key` as the map holds it now (see [`crate::index`]).
    #[inline]
    pub(super) fn reindex(&self, key: &K) {
        if let Some(ix) = &self.indexes {
            ix.resync(key, || self.map.peek(key).map(|e| e.value));
        }
    }

    pub(super) fn invalidate(&self, key: &K) -> bool {
        self.flights.bump_key(key);
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

    /// Counts one `counter` for `key`, and for its tenant when meters are
    /// labelled by tenant.
    #[inline(always)]
    pub(super) fn count(&self, key: &K, flags: u8, counter: Counter) {
        self.counters.incr(counter);
        if flags & TENANTS != 0 {
            self.count_tenant(key, counter, 1);
        }
    }

    /// The tenant's share of [`Inner::count`], out of line.
    #[cold]
    #[inline(never)]
    pub(super) fn count_tenant(&self, key: &K, counter: Counter, n: u64) {
        self.tenant_counts.add(self.tenant(key), counter, n);
    }

    /// Counts per tenant, each with the entries it holds now; `None` when
    /// meters are not labelled by tenant. Counting entries visits every
    /// key (once per scrape).
    pub(super) fn tenant_stats(&self) -> Option<Vec<(TenantRow, Stats)>> {
        if self.flags() & TENANTS == 0 {
            return None;
        }
        let mut rows = self.tenant_counts.snapshot();
        let held = std::cell::RefCell::new(HashMap::<TenantRow, u64>::new());
        self.map.retain(|k, _| {
            *held
                .borrow_mut()
                .entry(self.tenant_counts.claim(self.tenant(k)))
                .or_default() += 1;
            true
        });
        for (row, n) in &held.into_inner() {
            match rows.iter_mut().find(|(r, _)| r == row) {
                Some((_, s)) => s.entries = *n,
                None => rows.push((
                    *row,
                    Stats {
                        entries: *n,
                        ..Stats::default()
                    },
                )),
            }
        }
        Some(rows)
    }

    /// The tenant a key belongs to.
    #[inline]
    pub(super) fn tenant(&self, key: &K) -> TenantId {
        self.tenant_of.map_or(TenantId::NONE, |f| f(key))
    }

    pub(super) fn in_scope(&self, key: &K, scope: Option<TenantId>) -> bool {
        scope.is_none_or(|t| self.tenant(key) == t)
    }

    /// `service.action`, or the action alone.
    pub(super) fn ident(&self) -> String {
        match &self.service {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.to_string(),
        }
    }
}
