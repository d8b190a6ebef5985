//! Applying settings from configuration, and the counters' snapshot.

use super::*;

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// Layers `cfg` over the code's settings and applies the result.
    pub(super) fn apply(&self, cfg: &Config) -> Result<(), ConfigError> {
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
        self.set_backend(&settings.backend, &settings.l2, cfg)?;
        Ok(())
    }

    /// Refuses a store this build or process does not have.
    pub(super) fn check_backend(&self, s: &Settings) -> Result<(), ConfigError> {
        let store = match &s.backend {
            Backend::Memory => return Ok(()),
            Backend::Tiered => s.l2.as_str(),
            other => other.name(),
        };
        if crate::store::backends::is_known(store) {
            return Ok(());
        }
        let why = match store {
            "redis" => "needs cache-core's `redis` feature".to_string(),
            "disk" => "needs cache-core's `disk` feature".to_string(),
            _ => crate::store::backends::unknown(store).to_string(),
        };
        Err(ConfigError::Mismatch(format!(
            "{}: backend {store:?} {why}",
            self.ident()
        )))
    }

    /// Applies settings. An error changes nothing. Turning caching off, or
    /// changing which arguments form the key, empties the cache.
    pub(super) fn apply_settings(&self, s: &Settings) -> Result<(), ConfigError> {
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
        let old_cap = self.capacity.swap(cap, Ordering::Relaxed);
        let bytes = self.capacity_bytes.load(Ordering::Relaxed);
        if bytes == 0 {
            if old_cap != cap {
                self.map.set_capacity(cap);
            }
        } else if let Some(b) = s.capacity_bytes
            && b != bytes
        {
            self.capacity_bytes.store(b, Ordering::Relaxed);
            self.map.set_capacity(b.min(usize::MAX as u64) as usize);
        }
        if bytes == 0 && s.capacity_bytes.is_some() {
            tracing::warn!(
                "cache {}: capacity_bytes takes effect when the cache is built again",
                self.ident()
            );
        }
        if let Some(share) = s.critical_share {
            self.map.set_critical_share(share);
        }
        if let Some(p) = s.priority {
            self.priority.store(p.class(), Ordering::Relaxed);
        }
        if cap < old_cap
            && let Some(ix) = &self.indexes
        {
            // A smaller bound evicts without telling the cache: re-index
            // what the indexes hold, dropping what the map no longer does.
            for k in ix.keys() {
                self.reindex(&k);
            }
        }
        let was_enabled = self.enabled.swap(s.enabled, Ordering::Relaxed);
        self.tenant_counts.set_max(s.max_tenants);
        self.batch.store(s.eviction_batch_size, Ordering::Relaxed);
        self.map.set_batch(s.eviction_batch_size);
        self.sync_interval_ms
            .store(millis(Some(s.sync_interval)), Ordering::Relaxed);
        if let Some(e) = s.eviction
            && e != self.policy
        {
            tracing::warn!(
                "cache {}: eviction {e:?} takes effect when the cache is built again (it runs {:?})",
                self.ident(),
                self.policy
            );
        }
        self.tenant_labels.store(s.tenant_labels, Ordering::Relaxed);
        self.refresh_flags();
        drop(flags_lock);
        let old_mask = self.key_mask.swap(mask, Ordering::Relaxed);
        // Entries keyed under another mask go everywhere: a mask that comes
        // back must not find what invalidations under this one missed.
        if old_mask != mask {
            let _ = self.propagate(RemoteOp::Clear, None);
        }
        if (was_enabled && !s.enabled) || old_mask != mask {
            self.clear(None);
        }
        Ok(())
    }

    /// The key mask that `s.keys` names.
    pub(super) fn key_mask_for(&self, s: &Settings) -> Result<u64, ConfigError> {
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
    pub(super) fn ttl_ms(&self) -> u64 {
        self.ttl_ms.load(Ordering::Relaxed)
    }

    /// The TTL of `v`'s entry in milliseconds (0: none): its own, from
    /// `ttl_fn`, or else the cache's. `None` when `ttl_fn` gives it zero:
    /// it is not stored.
    #[inline]
    pub(super) fn ttl_of(&self, v: &V) -> Option<u64> {
        match self.ttl_fn {
            None => Some(self.ttl_ms()),
            Some(f) => {
                let d = f(v);
                (!d.is_zero()).then(|| (d.as_millis().min(u64::MAX as u128) as u64).max(1))
            }
        }
    }

    /// Milliseconds on the clock that entries' expiry times outside the
    /// process are written in: the wall clock, or a manual clock's reading.
    pub(super) fn wall_ms(&self) -> u64 {
        match &self.clock {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            c => c.now_ms(),
        }
    }

    #[inline]
    pub(super) fn tti_ms(&self) -> u64 {
        self.tti_ms.load(Ordering::Relaxed)
    }

    pub(super) fn purge_expired(&self) -> usize {
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

    pub(super) fn stats(&self) -> Stats {
        let mut s = self.counters.snapshot(self.map.len() as u64);
        s.load_failures = self.load_failures.load(Ordering::Relaxed);
        s
    }
}
