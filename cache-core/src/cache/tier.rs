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

    /// The value in L2, from async code.
    pub(crate) async fn remote_get(&self, key: &K) -> Option<V> {
        let tier = self.tier()?;
        self.codec?;
        let (ns, k) = (self.ns(key), render_with(key, self.render));
        let rk = tier.store.remote_key(&ns, &k);
        let store = tier.store.clone();
        let bytes = bridge()
            .spawn(async move { store.get_bytes(&ns, &k).await })
            .await
            .ok()?
            .ok()??;
        self.decode(&tier.store, &rk, &bytes)
    }

    /// The value in L2, from sync code.
    pub(crate) fn remote_get_sync(&self, key: &K) -> Option<V> {
        let tier = self.tier()?;
        self.codec?;
        let (ns, k) = (self.ns(key), render_with(key, self.render));
        let rk = tier.store.remote_key(&ns, &k);
        let store = tier.store.clone();
        let bytes = block_on_bridge(Self::deadline(&tier.store), async move {
            store.get_bytes(&ns, &k).await
        })?
        .ok()??;
        self.decode(&tier.store, &rk, &bytes)
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
