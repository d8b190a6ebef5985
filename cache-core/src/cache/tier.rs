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
use crate::spec::Backend;
use crate::store::StoreError;
use crate::store::bridge::on_bridge;
use crate::store::remote::{Gen, Invalidate, Lookup, Op, Remote, part_of};

/// The remote tier a cache is attached to.
pub(crate) struct Tier {
    pub(crate) remote: Arc<dyn Remote>,
    /// Whether values also live in the process (tiered) or only outside.
    pub(crate) l1: bool,
    /// What configuration, the builder or `attach_remote` asked for.
    pub(crate) backend: Backend,
    /// The name of the store outside the process.
    pub(crate) store: String,
}

/// What an L2 lookup means for the caller.
pub(crate) enum RemoteValue<V> {
    /// The value, from another node or an earlier load, with what is left
    /// of its own TTL (in milliseconds) when the cache has a `ttl_fn`.
    Found(V, Option<u64>),
    /// Not there, and this node holds the load lock: compute, then unlock.
    Locked(String, Gen),
    /// Not there: compute.
    Missing(Gen),
}

/// A remote invalidation, before it is sent.
pub(crate) enum RemoteOp {
    /// One key, by its text.
    Key(String),
    Pattern(Pattern),
    Tag(String),
    Clear,
}

/// One escaped namespace segment.
fn seg(s: &str) -> String {
    let mut e = String::new();
    crate::namespace::push_segment(&mut e, s);
    e
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    pub(crate) fn tier(&self) -> Option<Arc<Tier>> {
        self.tier.read().clone()
    }

    /// Whether loaded values are kept in the process.
    pub(crate) fn keeps_l1(&self) -> bool {
        self.tier.read().as_ref().is_none_or(|t| t.l1)
    }

    /// The namespace of `t`'s entries outside the process, for keys built
    /// under the key-argument mask in force now.
    pub(crate) fn remote_ns(&self, t: TenantId) -> String {
        self.remote_ns_masked(t, self.key_mask.load(Ordering::Relaxed))
    }

    /// The namespace of `key` outside the process: under the mask it was
    /// built with, so a key built just before configuration changed the
    /// mask never meets one built after.
    pub(crate) fn remote_ns_of(&self, key: &K) -> String {
        let mask = self
            .mask_of
            .map_or_else(|| self.key_mask.load(Ordering::Relaxed), |f| f(key));
        self.remote_ns_masked(self.tenant(key), mask)
    }

    fn remote_ns_masked(&self, t: TenantId, mask: u64) -> String {
        crate::namespace::remote_namespace(
            self.service.as_deref(),
            t.name().as_deref(),
            &self.identity,
            (mask != ALL_KEYS).then_some(mask),
        )
    }

    /// The literal every key text starts with now (a service action whose
    /// key arguments configuration all left out has no `:` after its name).
    fn text_prefix(&self) -> &'static str {
        let p = self.text_prefix;
        let mask = self.key_mask.load(Ordering::Relaxed);
        let n = self.key_args.len();
        let none_left = n > 0 && n < 64 && mask & ((1u64 << n) - 1) == 0;
        match p.strip_suffix(':') {
            Some(bare) if none_left => bare,
            _ => p,
        }
    }

    /// A key's part of its remote key: its text less the literal prefix the
    /// cache's identity implies.
    pub(crate) fn remote_part_of(&self, text: &str) -> String {
        part_of(text, self.text_prefix())
    }

    /// `(namespace, part)` of `key` outside the process.
    fn ns(&self, key: &K) -> (String, String) {
        let text = render_with(key, self.render);
        (self.remote_ns_of(key), self.remote_part_of(&text))
    }

    /// The value in `bytes`, and, with a `ttl_fn`, what is left of its
    /// TTL: such values carry their expiry time (8 bytes, little-endian
    /// milliseconds on [`Inner::wall_ms`]'s clock; 0 for none) before the
    /// encoded value, so every tier and node expires them when their first
    /// store does. `None` for an expired value, or one that does not
    /// decode.
    fn decode(
        &self,
        remote: &dyn Remote,
        ns: &str,
        key: &str,
        bytes: &[u8],
    ) -> Option<(V, Option<u64>)> {
        let codec = self.codec?;
        let (left, body) = if self.ttl_fn.is_some() {
            let Some((head, body)) = bytes.split_first_chunk::<8>() else {
                remote.undecodable(ns, key, &crate::codec::CodecError::Truncated(bytes.len()));
                return None;
            };
            let at = u64::from_le_bytes(*head);
            let left = match at {
                0 => 0,
                at => at.checked_sub(self.wall_ms()).filter(|&l| l > 0)?,
            };
            (Some(left), body)
        } else {
            (None, bytes)
        };
        match (codec.decode)(body) {
            Ok(v) => Some((v, left)),
            Err(e) => {
                remote.undecodable(ns, key, &e);
                None
            }
        }
    }

    /// Whether a remote tier is attached (checked before any future is
    /// built: an unused one still costs its size in copies).
    #[inline]
    pub(crate) fn has_remote(&self) -> bool {
        self.codec.is_some() && self.tier.read().is_some()
    }

    /// The value in L2: a miss when the store fails, times out or holds
    /// what no longer decodes.
    pub(crate) async fn remote_get(&self, key: &K) -> RemoteValue<V> {
        let Some(tier) = self.tier().filter(|_| self.codec.is_some()) else {
            return RemoteValue::Missing(None);
        };
        let (ns, k) = self.ns(key);
        let lookup = tier
            .remote
            .clone()
            .lookup(self.channel_id(), ns.clone(), k.clone());
        let wait = tier.remote.deadline() + tier.remote.lock_wait().unwrap_or_default() * 2;
        match on_bridge(wait, lookup).await {
            Some(Lookup::Found(bytes)) => match self.decode(&*tier.remote, &ns, &k, &bytes) {
                Some((v, left)) => RemoteValue::Found(v, left),
                None => RemoteValue::Missing(None),
            },
            Some(Lookup::Locked(token, generation)) => RemoteValue::Locked(token, generation),
            Some(Lookup::Missing(generation)) => RemoteValue::Missing(generation),
            None => RemoteValue::Missing(None),
        }
    }

    fn unlock_future(
        &self,
        key: &K,
        token: String,
    ) -> Option<(Duration, impl Future<Output = ()> + Send + 'static)> {
        let tier = self.tier()?;
        let (ns, k) = self.ns(key);
        Some((
            tier.remote.deadline(),
            tier.remote.clone().unlock(ns, k, token),
        ))
    }

    /// Releases the lock across nodes.
    pub(crate) async fn remote_unlock(&self, key: &K, token: String) {
        if let Some((wait, f)) = self.unlock_future(key, token) {
            on_bridge(wait, f).await;
        }
    }

    fn remote_write(
        &self,
        key: &K,
        value: &V,
        generation: Gen,
        ttl_ms: Option<u64>,
    ) -> Option<(Duration, impl Future<Output = ()> + Send + 'static)> {
        let tier = self.tier()?;
        let codec = self.codec?;
        let ttl_ms = match ttl_ms {
            Some(t) => t,
            None => self.ttl_of(value)?,
        };
        let bytes = match (codec.encode)(value) {
            Ok(b) if self.ttl_fn.is_some() => {
                let at = match ttl_ms {
                    0 => 0,
                    t => self.wall_ms().saturating_add(t),
                };
                let mut out = Vec::with_capacity(8 + b.len());
                out.extend_from_slice(&at.to_le_bytes());
                out.extend_from_slice(&b);
                out
            }
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(
                    cache = &*self.name,
                    "value not stored outside the process: {e}"
                );
                return None;
            }
        };
        let (ns, k) = self.ns(key);
        let ttl = (ttl_ms != 0).then(|| Duration::from_millis(ttl_ms));
        let tags = self.tags_of(key);
        let fut = tier
            .remote
            .clone()
            .write(self.channel_id(), ns, k, bytes, ttl, tags, generation);
        Some((tier.remote.deadline(), fut))
    }

    /// After a loaded value went to L2: if an invalidation came meanwhile,
    /// its remote delete may have landed first, so delete the key again.
    pub(crate) fn recheck_remote(&self, key: &K, epoch: Epoch) {
        if self.flights.changed(epoch) {
            let text = render_with(key, self.render);
            let _ = self.propagate(RemoteOp::Key(text), Some(self.tenant(key)));
        }
    }

    /// Stores a loaded value in L2.
    /// With `ttl_ms`, for that long instead of the value's own TTL.
    pub(crate) async fn remote_set(
        &self,
        key: &K,
        value: &V,
        generation: Gen,
        ttl_ms: Option<u64>,
    ) {
        if !self.has_remote() {
            return;
        }
        if let Some((wait, w)) = self.remote_write(key, value, generation, ttl_ms) {
            on_bridge(wait, w).await;
        }
    }

    /// The cache's name on the invalidation channel: its service and
    /// identity segments, whatever the tenant and key arguments.
    pub(crate) fn channel_id(&self) -> String {
        let mut id = String::new();
        crate::namespace::push_segment(&mut id, self.service.as_deref().unwrap_or(""));
        id.push(':');
        crate::namespace::push_segment(&mut id, &self.identity);
        id
    }

    /// Carries an invalidation to L2 and to the other nodes. It returns at
    /// once when the store is unreachable: the invalidation then waits,
    /// retried until applied, and the store serves no reads meanwhile. An
    /// invalidation the store cannot do is an error, and nothing is sent.
    pub(crate) fn propagate(
        &self,
        op: RemoteOp,
        scope: Option<TenantId>,
    ) -> Result<(), StoreError> {
        let Some(tier) = self.tier() else {
            return Ok(());
        };
        let op = match op {
            RemoteOp::Pattern(p) if p.as_str() == "*" => Op::Clear,
            RemoteOp::Pattern(p) => {
                tier.remote.check_pattern(&p)?;
                Op::Pattern(p)
            }
            RemoteOp::Key(text) => Op::Key(self.remote_part_of(&text)),
            RemoteOp::Tag(tag) => Op::Tag(tag),
            RemoteOp::Clear => Op::Clear,
        };
        let tenant = scope.map(|t| t.name().map_or_else(String::new, |n| n.to_string()));
        let inv = Invalidate {
            cache: self.channel_id(),
            service_seg: seg(self.service.as_deref().unwrap_or("")),
            identity_seg: seg(&self.identity),
            text_prefix: self.text_prefix().to_owned(),
            tenant,
            ns: scope.map(|t| self.remote_ns(t)),
            op,
        };
        tier.remote.clone().invalidate(inv)
    }

    /// Applies an invalidation another node published, to L1 only.
    pub(crate) fn apply_remote(&self, msg: &Invalidation) {
        if msg.op == "flush" {
            // The channel was lost: what other nodes invalidated meanwhile
            // is unknown, so nothing local of a cache over that store stays.
            if self
                .tier()
                .is_some_and(|t| t.l1 && t.remote.node() == msg.node)
            {
                self.clear(None);
            }
            return;
        }
        if msg.cache != self.channel_id() {
            return;
        }
        let scope = match &msg.tenant {
            None => None,
            Some(t) => match crate::namespace::existing_tenant_id(t) {
                Some(id) => Some(id),
                None => return,
            },
        };
        let Some(tier) = self.tier() else { return };
        let store = &tier.remote;
        match msg.op.as_str() {
            "clear" => {
                self.clear(scope);
            }
            "key" => {
                self.remove_where(scope, |text| {
                    store.token(&self.remote_part_of(text)) == msg.arg
                });
            }
            "tag" => {
                let tags: Vec<String> = self
                    .tag_index
                    .lock()
                    .keys()
                    .filter(|t| store.token(t) == msg.arg)
                    .cloned()
                    .collect();
                for t in tags {
                    self.invalidate_tag(&t, scope);
                }
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

    /// Puts the cache in front of `store` (detached for `Memory`): it hears
    /// the invalidations published there, and what it held is dropped.
    pub(crate) fn attach(self: &Arc<Self>, store: Arc<dyn Remote>, mode: Backend) {
        let weak = Arc::downgrade(self);
        store.subscribe(Arc::new(move |msg| {
            if let Some(inner) = weak.upgrade() {
                inner.apply_remote(msg);
            }
        }));
        let mut tier = self.tier.write();
        *tier = match mode {
            Backend::Memory => None,
            m => Some(Arc::new(Tier {
                l1: m == Backend::Tiered,
                backend: m,
                store: store.name().to_owned(),
                remote: store,
            })),
        };
        drop(tier);
        self.clear(None);
    }

    /// Attaches or detaches the remote tier for `backend` (and `l2`, the
    /// store behind L1 when tiered).
    pub(crate) fn set_backend(
        &self,
        backend: &Backend,
        l2: &str,
        cfg: &Config,
    ) -> Result<(), ConfigError> {
        let (store, want_l1) = match backend {
            Backend::Memory => {
                if self.tier.write().take().is_some() {
                    self.clear(None);
                }
                return Ok(());
            }
            Backend::Redis => ("redis", false),
            Backend::Tiered => (l2, true),
            Backend::Store(name) => (name.as_str(), false),
        };
        if self.unshared.load(Ordering::Relaxed) {
            tracing::error!(
                "{}: its name is another cache's, so it stays in memory (backend {backend} ignored)",
                self.ident()
            );
            return Ok(());
        }
        if self.codec.is_none() {
            tracing::warn!(
                "{}: its value type is not serde-serializable, so it stays in memory (backend {backend} ignored)",
                self.ident()
            );
            return Ok(());
        }
        let remote = crate::store::backends::open(store, cfg)
            .map_err(|e| ConfigError::Mismatch(format!("{}: {e}", self.ident())))?;
        let mut tier = self.tier.write();
        let same = tier.as_ref().is_some_and(|t| {
            Arc::ptr_eq(&t.remote, &remote) && t.l1 == want_l1 && t.backend == *backend
        });
        if !same {
            *tier = Some(Arc::new(Tier {
                remote,
                l1: want_l1,
                backend: backend.clone(),
                store: store.to_owned(),
            }));
            drop(tier);
            self.clear(None);
        }
        Ok(())
    }
}
