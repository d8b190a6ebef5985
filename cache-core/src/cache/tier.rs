//! The remote tier of a cache (feature `redis`): L2 reads on a miss, L2
//! writes after a load, and invalidations carried to L2 and to the other
//! nodes' L1s.
//!
//! Redis is reached on the store's own runtime, so a call from sync code, or
//! from a runtime that ends before the connection does, is safe; sync callers
//! wait a bounded time. A failure or timeout is a miss (or nothing stored):
//! a call never fails because Redis does.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::Backend;
use crate::redis::{Invalidation, RedisStore, block_on_bridge, bridge};
use crate::store::Store;

/// The remote tier a cache is attached to.
pub(crate) struct Tier {
    pub(crate) store: Arc<RedisStore>,
    /// Whether values also live in the process (tiered) or only in Redis.
    pub(crate) l1: bool,
}

/// What an L2 lookup found, before decoding.
pub(crate) enum Lookup {
    Found(String, Vec<u8>),
    Locked(String),
    Missing,
}

/// What an L2 lookup means for the caller.
pub(crate) enum Remote<V> {
    /// The value, from another node or an earlier load.
    Found(V),
    /// Not there, and this node holds the load lock: compute, then unlock.
    Locked(String),
    /// Not there: compute.
    Missing,
}

/// A remote invalidation, before it is sent.
pub(crate) enum RemoteOp {
    Pattern(Pattern),
    Clear,
}

fn escaped(s: &str) -> String {
    let mut out = String::new();
    crate::__private::push_glob_escaped(&mut out, s);
    out
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    pub(crate) fn tier(&self) -> Option<Arc<Tier>> {
        self.tier.read().clone()
    }

    /// Whether loaded values are kept in the process.
    pub(crate) fn keeps_l1(&self) -> bool {
        self.tier.read().as_ref().is_none_or(|t| t.l1)
    }

    fn tenant_segment(t: TenantId) -> String {
        t.name().map_or_else(|| "_".to_string(), |n| n.to_string())
    }

    /// `service:tenant:action` of a key.
    fn ns(&self, key: &K) -> String {
        format!(
            "{}:{}:{}",
            self.service.as_deref().unwrap_or("_"),
            Self::tenant_segment(self.tenant(key)),
            self.name
        )
    }

    fn deadline(store: &RedisStore) -> Duration {
        Duration::from_millis(store.options().timeout_ms + 50)
    }

    fn decode(&self, store: &RedisStore, rk: &str, bytes: &[u8]) -> Option<V> {
        let codec = self.codec?;
        match (codec.decode)(bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                store.undecodable(rk, &e);
                None
            }
        }
    }

    /// Looks `key` up in L2; with a lock across nodes configured, either
    /// takes the lock (and returns its token with `None`) or waits for the
    /// holder's value.
    fn remote_lookup(&self, key: &K) -> Option<impl Future<Output = Lookup> + Send + 'static> {
        let tier = self.tier()?;
        self.codec?;
        let (ns, k) = (self.ns(key), render_with(key, self.render));
        let store = tier.store.clone();
        Some(async move {
            let rk = store.remote_key(&ns, &k);
            if let Ok(Some(b)) = store.get_bytes(&ns, &k).await {
                return Lookup::Found(rk, b);
            }
            if store.options().lock_ms.is_none() {
                return Lookup::Missing;
            }
            match store.try_lock(&ns, &k).await {
                Some(token) => Lookup::Locked(token),
                None => match store.wait_for(&ns, &k).await {
                    Some(b) => Lookup::Found(rk, b),
                    None => Lookup::Missing,
                },
            }
        })
    }

    fn finish_lookup(&self, found: Option<Lookup>) -> Remote<V> {
        let Some(tier) = self.tier() else {
            return Remote::Missing;
        };
        match found {
            Some(Lookup::Found(rk, bytes)) => match self.decode(&tier.store, &rk, &bytes) {
                Some(v) => Remote::Found(v),
                None => Remote::Missing,
            },
            Some(Lookup::Locked(token)) => Remote::Locked(token),
            _ => Remote::Missing,
        }
    }

    /// The value in L2, from async code.
    pub(crate) async fn remote_get(&self, key: &K) -> Remote<V> {
        let Some(fut) = self.remote_lookup(key) else {
            return Remote::Missing;
        };
        let found = bridge().spawn(fut).await.ok();
        self.finish_lookup(found)
    }

    /// The value in L2, from sync code.
    pub(crate) fn remote_get_sync(&self, key: &K) -> Remote<V> {
        let (Some(fut), Some(tier)) = (self.remote_lookup(key), self.tier()) else {
            return Remote::Missing;
        };
        let wait = Self::deadline(&tier.store)
            + Duration::from_millis(tier.store.options().lock_ms.unwrap_or(0) * 2);
        let found = block_on_bridge(wait, fut);
        self.finish_lookup(found)
    }

    fn unlock_future(
        &self,
        key: &K,
        token: String,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let tier = self.tier()?;
        let (ns, k) = (self.ns(key), render_with(key, self.render));
        let store = tier.store.clone();
        Some(async move { store.unlock(&ns, &k, &token).await })
    }

    /// Releases the lock across nodes, from async code.
    pub(crate) async fn remote_unlock(&self, key: &K, token: String) {
        if let Some(f) = self.unlock_future(key, token) {
            let _ = bridge().spawn(f).await;
        }
    }

    /// Releases the lock across nodes, from sync code.
    pub(crate) fn remote_unlock_sync(&self, key: &K, token: String) {
        if let (Some(f), Some(t)) = (self.unlock_future(key, token), self.tier()) {
            block_on_bridge(Self::deadline(&t.store), f);
        }
    }

    fn remote_write(
        &self,
        key: &K,
        value: &V,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let tier = self.tier()?;
        let codec = self.codec?;
        let bytes = match (codec.encode)(value) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(cache = &*self.name, "value not stored in redis: {e}");
                return None;
            }
        };
        let (ns, k) = (self.ns(key), render_with(key, self.render));
        let ttl = (self.ttl_ms() != 0).then(|| Duration::from_millis(self.ttl_ms()));
        let store = tier.store.clone();
        Some(async move {
            let _ = store.set(&ns, &k, bytes, ttl).await;
        })
    }

    /// Stores a loaded value in L2, from async code.
    pub(crate) async fn remote_set(&self, key: &K, value: &V) {
        if let Some(w) = self.remote_write(key, value) {
            let _ = bridge().spawn(w).await;
        }
    }

    /// Stores a loaded value in L2, from sync code.
    pub(crate) fn remote_set_sync(&self, key: &K, value: &V) {
        if let (Some(w), Some(t)) = (self.remote_write(key, value), self.tier()) {
            block_on_bridge(Self::deadline(&t.store), w);
        }
    }

    /// Carries an invalidation to L2 and to the other nodes, waiting a
    /// bounded time. `scope` is the tenant, or every tenant.
    pub(crate) fn propagate(&self, op: RemoteOp, scope: Option<TenantId>) {
        let Some(tier) = self.tier() else { return };
        let tenant = scope.map(Self::tenant_segment);
        let ns_glob = format!(
            "{}:{}:{}",
            escaped(self.service.as_deref().unwrap_or("_")),
            tenant.as_deref().map_or_else(|| "*".to_string(), escaped),
            escaped(&self.name)
        );
        let (kind, arg, pattern) = match op {
            RemoteOp::Pattern(p) => ("pattern", p.as_str().to_string(), p),
            RemoteOp::Clear => ("clear", "*".to_string(), Pattern::new("*").expect("valid")),
        };
        let msg = Invalidation {
            node: 0,
            cache: format!("{}/{}", self.service.as_deref().unwrap_or("_"), self.name),
            op: kind.into(),
            arg,
            tenant: scope.map(|t| t.name().map_or_else(String::new, |n| n.to_string())),
        };
        let store = tier.store.clone();
        let work = async move {
            if let Err(e) = store.revoke_in(&ns_glob, &pattern).await {
                tracing::debug!("redis revoke skipped: {e}");
            }
            let _ = store.publish(msg).await;
        };
        block_on_bridge(Duration::from_secs(2), work);
    }

    /// Applies an invalidation another node published, to L1 only.
    pub(crate) fn apply_remote(&self, msg: &Invalidation) {
        let scope = match &msg.tenant {
            None => None,
            Some(t) => match crate::namespace::existing_tenant_id(t) {
                Some(id) => Some(id),
                None => return,
            },
        };
        match msg.op.as_str() {
            "clear" => {
                self.clear(scope);
            }
            "pattern" => match Pattern::new(&msg.arg) {
                Ok(p) => {
                    self.revoke(&p, scope);
                }
                Err(e) => tracing::warn!("ignoring an invalidation with a bad pattern: {e}"),
            },
            other => tracing::warn!("ignoring an invalidation of unknown kind {other:?}"),
        }
    }

    /// Attaches or detaches the remote tier for `backend`.
    pub(crate) fn set_backend(&self, backend: Backend, cfg: &Config) -> Result<(), ConfigError> {
        let want_l1 = match backend {
            Backend::Memory => {
                if self.tier.write().take().is_some() {
                    self.clear(None);
                }
                return Ok(());
            }
            Backend::Redis => false,
            Backend::Tiered => true,
        };
        if self.codec.is_none() {
            tracing::warn!(
                "{}: its value type is not serde-serializable, so it stays in memory (backend {backend:?} ignored)",
                self.ident()
            );
            return Ok(());
        }
        let opts = cfg.redis.clone().unwrap_or_default();
        let store = crate::redis::shared(&opts)
            .map_err(|e| ConfigError::Mismatch(format!("{}: {e}", self.ident())))?;
        let mut tier = self.tier.write();
        let same = tier
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(&t.store, &store) && t.l1 == want_l1);
        if !same {
            *tier = Some(Arc::new(Tier { store, l1: want_l1 }));
            drop(tier);
            self.clear(None);
        }
        Ok(())
    }
}
