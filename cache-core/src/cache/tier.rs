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
use crate::redis::{Invalidation, RedisStore, block_on_bridge, bridge};
use crate::spec::Backend;
use crate::store::StoreError;

/// The remote tier a cache is attached to.
pub(crate) struct Tier {
    pub(crate) store: Arc<RedisStore>,
    /// Whether values also live in the process (tiered) or only in Redis.
    pub(crate) l1: bool,
}

/// The cache's invalidation generation in Redis when a lookup read it: a
/// value computed after it is stored only if no invalidation came since.
pub(crate) type Gen = Option<u64>;

/// What an L2 lookup found, before decoding.
pub(crate) enum Lookup {
    Found(String, Vec<u8>),
    Locked(String, Gen),
    Missing(Gen),
}

/// What an L2 lookup means for the caller.
pub(crate) enum Remote<V> {
    /// The value, from another node or an earlier load.
    Found(V),
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

/// Which Redis keys are one cache's, told from its escaped segments (a
/// SCAN glob cannot tell where a segment ends).
struct Owner {
    prefix: String,
    svc: String,
    id: String,
    tenant: Option<String>,
    text_prefix: String,
}

impl Owner {
    /// The key token of `rk` when it is this cache's (in the scope's
    /// tenant, under any key argument mask).
    fn token<'k>(&self, rk: &'k str) -> Option<&'k str> {
        use crate::namespace::split_segment;
        let rest = rk.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        let (svc, rest) = split_segment(rest)?;
        let (tenant, rest) = split_segment(rest)?;
        let (id, token) = split_segment(rest)?;
        let mask_ok = id
            .strip_prefix(self.id.as_str())
            .is_some_and(|m| m.is_empty() || m.starts_with('~'));
        (svc == self.svc && self.tenant.as_deref().is_none_or(|t| t == tenant) && mask_ok)
            .then_some(token)
    }

    /// The key text a token stands for (keys that are not hashed).
    fn text(&self, token: &str) -> String {
        match token.strip_prefix("\\!") {
            Some(text) => text.to_owned(),
            None => format!("{}{token}", self.text_prefix),
        }
    }
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
        match text.strip_prefix(self.text_prefix()) {
            Some(rest) => rest.to_owned(),
            // Never by construction; marked so it cannot meet a real part.
            None => format!("\\!{text}"),
        }
    }

    /// `(namespace, part)` of `key` outside the process.
    fn ns(&self, key: &K) -> (String, String) {
        let text = render_with(key, self.render);
        (self.remote_ns_of(key), self.remote_part_of(&text))
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
        let (ns, k) = self.ns(key);
        let gen_key = tier.store.gen_key(&self.channel_id());
        let store = tier.store.clone();
        Some(async move {
            let rk = store.remote_key(&ns, &k);
            let generation = match store.get_with_gen(&ns, &k, &gen_key).await {
                Ok((Some(b), _)) => return Lookup::Found(rk, b),
                Ok((None, generation)) => generation,
                Err(_) => None,
            };
            if store.options().lock_ms.is_none() {
                return Lookup::Missing(generation);
            }
            match store.try_lock(&ns, &k).await {
                Some(token) => Lookup::Locked(token, generation),
                None => match store.wait_for(&ns, &k).await {
                    Some(b) => Lookup::Found(rk, b),
                    None => Lookup::Missing(generation),
                },
            }
        })
    }

    fn finish_lookup(&self, found: Option<Lookup>) -> Remote<V> {
        let Some(tier) = self.tier() else {
            return Remote::Missing(None);
        };
        match found {
            Some(Lookup::Found(rk, bytes)) => match self.decode(&tier.store, &rk, &bytes) {
                Some(v) => Remote::Found(v),
                None => Remote::Missing(None),
            },
            Some(Lookup::Locked(token, generation)) => Remote::Locked(token, generation),
            Some(Lookup::Missing(generation)) => Remote::Missing(generation),
            None => Remote::Missing(None),
        }
    }

    /// Whether a remote tier is attached (checked before any future is
    /// built: an unused one still costs its size in copies).
    #[inline]
    fn has_remote(&self) -> bool {
        self.codec.is_some() && self.tier.read().is_some()
    }

    /// The value in L2, from async code.
    pub(crate) async fn remote_get(&self, key: &K) -> Remote<V> {
        if !self.has_remote() {
            return Remote::Missing(None);
        }
        let Some(fut) = self.remote_lookup(key) else {
            return Remote::Missing(None);
        };
        let found = bridge().spawn(fut).await.ok();
        self.finish_lookup(found)
    }

    /// The value in L2, from sync code.
    pub(crate) fn remote_get_sync(&self, key: &K) -> Remote<V> {
        if !self.has_remote() {
            return Remote::Missing(None);
        }
        let (Some(fut), Some(tier)) = (self.remote_lookup(key), self.tier()) else {
            return Remote::Missing(None);
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
        let (ns, k) = self.ns(key);
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
        generation: Gen,
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
        let (ns, k) = self.ns(key);
        let ttl = (self.ttl_ms() != 0).then(|| Duration::from_millis(self.ttl_ms()));
        let tags = self.tags.map(|f| f(key)).unwrap_or_default();
        // A loaded value goes in only if no invalidation came since its
        // lookup read the generation; a value put by hand always does.
        let generation = generation.map(|g| (tier.store.gen_key(&self.channel_id()), g));
        let store = tier.store.clone();
        Some(async move {
            let _ = store
                .set_tagged(&ns, &k, bytes, ttl, &tags, generation)
                .await;
        })
    }

    /// After a loaded value went to L2: if an invalidation came meanwhile,
    /// its remote delete may have landed first, so delete the key again.
    pub(crate) fn recheck_remote(&self, key: &K, epoch: u64) {
        if self.epoch() != epoch {
            let text = render_with(key, self.render);
            let _ = self.propagate(RemoteOp::Key(text), Some(self.tenant(key)));
        }
    }

    /// Stores a loaded value in L2, from async code.
    pub(crate) async fn remote_set(&self, key: &K, value: &V, generation: Gen) {
        if !self.has_remote() {
            return;
        }
        if let Some(w) = self.remote_write(key, value, generation) {
            let _ = bridge().spawn(w).await;
        }
    }

    /// Stores a loaded value in L2, from sync code.
    pub(crate) fn remote_set_sync(&self, key: &K, value: &V, generation: Gen) {
        if !self.has_remote() {
            return;
        }
        if let (Some(w), Some(t)) = (self.remote_write(key, value, generation), self.tier()) {
            block_on_bridge(Self::deadline(&t.store), w);
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

    /// The SCAN pattern of this cache's remote keys in `scope` (every key
    /// argument mask included); [`Self::owns_remote_key`] checks each find.
    fn scan_glob(&self, store: &RedisStore, scope: Option<TenantId>) -> String {
        let tenant = match scope {
            Some(t) => escaped(&seg(t.name().as_deref().unwrap_or(""))),
            None => "*".to_string(),
        };
        format!(
            "{}:{}:{}:{}*",
            escaped(&store.options().prefix),
            escaped(&seg(self.service.as_deref().unwrap_or(""))),
            tenant,
            escaped(&seg(&self.identity)),
        )
    }

    /// Carries an invalidation to L2 and to the other nodes. It returns at
    /// once when Redis is unreachable: the invalidation then waits in the
    /// store's outbox, retried until applied, and the store reads nothing
    /// meanwhile. An invalidation Redis cannot do is an error, and nothing
    /// is sent.
    pub(crate) fn propagate(
        &self,
        op: RemoteOp,
        scope: Option<TenantId>,
    ) -> Result<(), StoreError> {
        let Some(tier) = self.tier() else {
            return Ok(());
        };
        let store = tier.store.clone();
        let hashed = store.options().hash_keys;
        let op = match op {
            RemoteOp::Pattern(p) if p.as_str() == "*" => RemoteOp::Clear,
            RemoteOp::Pattern(p) if hashed => match p.literal() {
                Some(text) => RemoteOp::Key(text.to_owned()),
                None => return Err(crate::redis::hashed_pattern_error(&p)),
            },
            op => op,
        };
        let tenant_seg = scope.map(|t| seg(t.name().as_deref().unwrap_or("")));
        let glob = self.scan_glob(&store, scope);
        let (kind, arg) = match &op {
            RemoteOp::Key(text) => ("key", store.key_token(&self.remote_part_of(text))),
            RemoteOp::Pattern(p) => ("pattern", p.as_str().to_owned()),
            RemoteOp::Clear => ("clear", String::new()),
            RemoteOp::Tag(tag) => ("tag", store.key_token(tag)),
        };
        let msg = Invalidation {
            node: 0,
            cache: self.channel_id(),
            op: kind.into(),
            arg: arg.clone(),
            tenant: scope.map(|t| t.name().map_or_else(String::new, |n| n.to_string())),
        };
        // What to remove from Redis: a SCAN of this cache's keys, each one
        // checked to be this cache's and to match.
        let owner = Owner {
            prefix: store.options().prefix.clone(),
            svc: seg(self.service.as_deref().unwrap_or("")),
            id: seg(&self.identity),
            tenant: tenant_seg,
            text_prefix: self.text_prefix().to_owned(),
        };
        let filter: crate::redis::KeyFilter = {
            let op_kind = kind;
            let pattern = match &op {
                RemoteOp::Pattern(p) => Some(p.clone()),
                _ => None,
            };
            let arg = arg.clone();
            Arc::new(move |rk: &str| {
                let Some(token) = owner.token(rk) else {
                    return false;
                };
                match op_kind {
                    "key" => token == arg,
                    "pattern" => pattern
                        .as_ref()
                        .is_some_and(|p| p.matches(&owner.text(token))),
                    _ => true,
                }
            })
        };
        // Tag sets: `prefix:~tags:` and the namespace, then the tag's token.
        let ns_glob = glob
            .strip_prefix(&format!("{}:", escaped(&store.options().prefix)))
            .unwrap_or(&glob)
            .to_owned();
        let tags = match &op {
            RemoteOp::Tag(tag) => Some(store.tag_glob(&ns_glob, tag)),
            RemoteOp::Clear => Some(store.tag_glob_all(&ns_glob)),
            _ => None,
        };
        let set_filter: crate::redis::KeyFilter = {
            let owner = filter.clone();
            let (tags_at, entries_at) = (
                format!("{}:~tags:", store.options().prefix),
                format!("{}:", store.options().prefix),
            );
            let want = match &op {
                RemoteOp::Tag(_) => Some(arg.clone()),
                _ => None,
            };
            Arc::new(move |set: &str| {
                // Read the set's key as an entry's: its token is the tag's.
                let Some(rest) = set.strip_prefix(tags_at.as_str()) else {
                    return false;
                };
                let as_entry = format!("{entries_at}{rest}");
                owner(&as_entry)
                    && want.as_ref().is_none_or(|w| {
                        crate::namespace::split_segment(rest)
                            .and_then(|(_, r)| crate::namespace::split_segment(r))
                            .and_then(|(_, r)| crate::namespace::split_segment(r))
                            .is_some_and(|(_, token)| token == w)
                    })
            })
        };
        let clears = matches!(op, RemoteOp::Clear);
        // One key of a known tenant: its Redis key, deleted directly.
        let exact = match (&op, scope) {
            (RemoteOp::Key(text), Some(t)) => {
                Some(store.remote_key(&self.remote_ns(t), &self.remote_part_of(text)))
            }
            _ => None,
        };
        let gen_key = store.gen_key(&self.channel_id());
        let job: crate::redis::Job = Arc::new(move |store: Arc<RedisStore>| {
            let (glob, filter, tags, set_filter, msg, exact, gen_key) = (
                glob.clone(),
                filter.clone(),
                tags.clone(),
                set_filter.clone(),
                msg.clone(),
                exact.clone(),
                gen_key.clone(),
            );
            Box::pin(async move {
                // First the generation: a load that read the old one can no
                // longer store its value, whenever its write lands.
                store.bump_gen(&gen_key).await?;
                if let Some(rk) = &exact {
                    store.unlink_keys(vec![rk.clone()]).await?;
                } else {
                    if let Some(g) = &tags {
                        store.delete_tagged(g, &set_filter, !clears).await?;
                    }
                    if tags.is_none() || clears {
                        store.scan_delete(&glob, Some(&filter)).await?;
                    }
                }
                store.publish(msg).await
            })
        });
        store.invalidate_or_queue(job, Self::deadline(&store) * 4);
        Ok(())
    }

    /// Applies an invalidation another node published, to L1 only.
    pub(crate) fn apply_remote(&self, msg: &Invalidation) {
        if msg.op == "flush" {
            // The channel was lost: what other nodes invalidated meanwhile
            // is unknown, so nothing local of a cache over that store stays.
            if self
                .tier()
                .is_some_and(|t| t.l1 && t.store.node() == msg.node)
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
        let store = &tier.store;
        match msg.op.as_str() {
            "clear" => {
                self.clear(scope);
            }
            "key" => {
                self.remove_where(scope, |text| {
                    store.key_token(&self.remote_part_of(text)) == msg.arg
                });
            }
            "tag" => {
                let tags: Vec<String> = self
                    .tag_index
                    .lock()
                    .keys()
                    .filter(|t| store.key_token(t) == msg.arg)
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
        if self.unshared.load(Ordering::Relaxed) {
            tracing::error!(
                "{}: its name is another cache's, so it stays in memory (backend {backend:?} ignored)",
                self.ident()
            );
            return Ok(());
        }
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
