//! How the layers resolve into one cache's [`Settings`].

use std::time::Duration;

use super::*;

/// The settings one cache runs with.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// Whether it caches at all.
    pub enabled: bool,
    /// Time to live.
    pub ttl: Option<Duration>,
    /// Time to idle.
    pub tti: Option<Duration>,
    /// Bound on entries.
    pub capacity: usize,
    /// The arguments that form the key; all of the key template's when `None`.
    pub keys: Option<Vec<String>>,
    /// Where values live.
    pub backend: Backend,
    /// The store behind L1 when `backend` is tiered.
    pub l2: String,
    /// Whether its meters carry a `tenant` label.
    pub tenant_labels: bool,
    /// With tenant labels, how many tenants get series of their own.
    pub max_tenants: usize,
    /// The eviction policy configuration names, if any (it wins over the
    /// code's, and is read when the cache is built).
    pub eviction: Option<crate::eviction::Eviction>,
    /// Entries a full `lru` or `lfu` cache evicts at once.
    pub eviction_batch_size: usize,
    /// Time between a synchronised cache's syncs.
    pub sync_interval: Duration,
    /// The priority configuration gives its entries, if any (it wins over
    /// the code's, and is read when the cache is built).
    pub priority: Option<crate::eviction::Priority>,
    /// The share of the capacity critical entries may take.
    pub critical_share: Option<f64>,
    /// A bound in bytes configuration gives, if any (read when the cache
    /// is built).
    pub capacity_bytes: Option<u64>,
}

/// Entries a full `lru` or `lfu` cache of `capacity` entries evicts at
/// once, unless configured: 1 %, between 1 and 100 (the seed's 100 at its
/// default `max_items` of 10,000, without emptying a small cache at once).
pub fn default_eviction_batch(capacity: usize) -> usize {
    (capacity / 100).clamp(1, 100)
}

/// Time between syncs, unless configured.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(300);

impl Config {
    /// The settings of `action` (in `service`, if any), given the values its
    /// attribute sets in code.
    pub fn resolve(&self, service: Option<&str>, action: &str, code: &Defaults) -> Settings {
        self.resolve_for(service, action, action, code)
    }

    /// [`Config::resolve`] for a cache whose identity may be longer than
    /// its action name (`module::function`): `[actions]` is looked up by
    /// the identity first.
    pub fn resolve_for(
        &self,
        service: Option<&str>,
        action: &str,
        identity: &str,
        code: &Defaults,
    ) -> Settings {
        let svc = service.and_then(|s| self.services.get(s));
        let act = match service {
            Some(_) => svc.and_then(|s| s.actions.get(action)),
            None => self
                .actions
                .get(identity)
                .or_else(|| self.actions.get(action)),
        };
        let dur = |d: Option<ConfigDuration>| d.map(|d| d.0);
        let capacity = act
            .and_then(|a| a.capacity.or(a.max_items))
            .or(code.capacity)
            .or(svc.and_then(|s| s.capacity.or(s.max_items)))
            .or(self.capacity.or(self.max_items))
            .unwrap_or(DEFAULT_CAPACITY);
        Settings {
            enabled: self.enabled.unwrap_or(true)
                && svc.and_then(|s| s.enabled).unwrap_or(true)
                && act.and_then(|a| a.enabled).unwrap_or(code.enabled),
            ttl: dur(act.and_then(|a| a.ttl))
                .or(code.ttl)
                .or(dur(svc.and_then(|s| s.ttl)))
                .or(dur(self.ttl)),
            tti: dur(act.and_then(|a| a.tti))
                .or(code.tti)
                .or(dur(svc.and_then(|s| s.tti)))
                .or(dur(self.tti)),
            capacity,
            eviction: act
                .and_then(|a| a.eviction.as_deref())
                .or(svc.and_then(|s| s.eviction.as_deref()))
                .or(self.eviction.as_deref())
                .and_then(|e| e.parse().ok()),
            eviction_batch_size: act
                .and_then(|a| a.eviction_batch_size)
                .or(svc.and_then(|s| s.eviction_batch_size))
                .or(self.eviction_batch_size)
                .unwrap_or_else(|| default_eviction_batch(capacity)),
            sync_interval: dur(act.and_then(|a| a.sync_interval))
                .or(dur(svc.and_then(|s| s.sync_interval)))
                .or(dur(self.sync_interval))
                .unwrap_or(DEFAULT_SYNC_INTERVAL),
            priority: act
                .and_then(|a| a.priority.as_deref())
                .or(svc.and_then(|s| s.priority.as_deref()))
                .or(self.priority.as_deref())
                .and_then(|p| p.parse().ok()),
            critical_share: act
                .and_then(|a| a.critical_share)
                .or(svc.and_then(|s| s.critical_share))
                .or(self.critical_share),
            capacity_bytes: act
                .and_then(|a| a.capacity_bytes)
                .or(svc.and_then(|s| s.capacity_bytes))
                .or(self.capacity_bytes)
                .map(|b| b.0),
            keys: act.and_then(|a| a.keys.clone()),
            backend: act
                .and_then(|a| a.backend.clone())
                .or_else(|| code.backend.clone())
                .or_else(|| svc.and_then(|s| s.backend.clone()))
                .or_else(|| self.backend.clone())
                .unwrap_or_default(),
            l2: act
                .and_then(|a| a.l2.clone())
                .or_else(|| svc.and_then(|s| s.l2.clone()))
                .or_else(|| self.l2.clone())
                .unwrap_or_else(|| "redis".to_string()),
            tenant_labels: svc
                .and_then(|s| s.tenant_labels)
                .or(self.metrics.tenant_labels)
                .unwrap_or(false),
            max_tenants: self
                .metrics
                .max_tenants
                .unwrap_or(crate::tenant_counts::DEFAULT_MAX_TENANTS),
        }
    }
}
