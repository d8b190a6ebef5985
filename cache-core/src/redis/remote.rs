//! Redis as a cache's tier: [`Remote`] over the store's generations, tag
//! sets, locks, SCAN-based revokes and the invalidation channel.

use std::sync::Arc;
use std::time::Duration;

use super::{Job, KeyFilter, RedisStore, hashed_pattern_error};
use crate::codec::CodecError;
use crate::namespace::split_segment;
use crate::pattern::{Pattern, push_glob_escaped};
use crate::store::remote::{Gen, Invalidate, Lookup, Op, Remote, text_of};
use crate::store::{BoxFuture, Invalidation, StoreError};

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
}

fn escaped(s: &str) -> String {
    let mut out = String::new();
    push_glob_escaped(&mut out, s);
    out
}

fn seg(s: &str) -> String {
    let mut e = String::new();
    crate::namespace::push_segment(&mut e, s);
    e
}

impl Remote for RedisStore {
    fn name(&self) -> &str {
        "redis"
    }

    fn health(&self) -> crate::store::Health {
        let mut h = crate::store::Health::named("redis");
        self.tracker.fill(&mut h);
        h.breaker_open = self.breaker_open();
        h.subscribed = Some(self.is_subscribed());
        h
    }

    fn node(&self) -> u64 {
        self.node
    }

    fn subscribe(&self, handler: crate::store::broadcast::Handler) {
        self.on_invalidation(move |msg| handler(msg));
    }

    fn deadline(&self) -> Duration {
        Duration::from_millis(self.opts.timeout_ms + 50)
    }

    fn lock_wait(&self) -> Option<Duration> {
        self.opts.lock_ms.map(Duration::from_millis)
    }

    fn token(&self, text: &str) -> String {
        self.key_token(text)
    }

    fn location(&self, ns: &str, key: &str) -> String {
        self.remote_key(ns, key)
    }

    fn has_pending_invalidations(&self) -> bool {
        RedisStore::has_pending_invalidations(self)
    }

    fn check_pattern(&self, pattern: &Pattern) -> Result<(), StoreError> {
        if self.opts.hash_keys {
            return crate::store::remote::check_hashed_pattern(pattern);
        }
        Ok(())
    }

    fn lookup(
        self: Arc<Self>,
        cache: String,
        ns: String,
        key: String,
    ) -> BoxFuture<'static, Lookup> {
        Box::pin(async move {
            let gen_key = self.gen_key(&cache);
            let generation = match self.get_with_gen(&ns, &key, &gen_key).await {
                Ok((Some(b), _)) => return Lookup::Found(b),
                Ok((None, generation)) => generation,
                Err(_) => None,
            };
            if self.opts.lock_ms.is_none() {
                return Lookup::Missing(generation);
            }
            match self.try_lock(&ns, &key).await {
                Some(token) => Lookup::Locked(token, generation),
                None => match self.wait_for(&ns, &key).await {
                    Some(b) => Lookup::Found(b),
                    None => Lookup::Missing(generation),
                },
            }
        })
    }

    fn unlock(self: Arc<Self>, ns: String, key: String, token: String) -> BoxFuture<'static, ()> {
        Box::pin(async move { RedisStore::unlock(&self, &ns, &key, &token).await })
    }

    fn write(
        self: Arc<Self>,
        cache: String,
        ns: String,
        key: String,
        bytes: Vec<u8>,
        ttl: Option<Duration>,
        tags: Vec<String>,
        generation: Gen,
    ) -> BoxFuture<'static, ()> {
        // A loaded value goes in only if no invalidation came since its
        // lookup read the generation; a value put by hand always does.
        let generation = generation.map(|g| (self.gen_key(&cache), g));
        Box::pin(async move {
            let _ = self
                .set_tagged(&ns, &key, bytes, ttl, &tags, generation)
                .await;
        })
    }

    fn invalidate(self: Arc<Self>, inv: Invalidate) -> Result<(), StoreError> {
        let store = self;
        let hashed = store.opts.hash_keys;
        let op = match inv.op {
            Op::Pattern(p) if hashed => match p.literal() {
                Some(text) => Op::Key(crate::store::remote::part_of(text, &inv.text_prefix)),
                None => return Err(hashed_pattern_error(&p)),
            },
            op => op,
        };
        let tenant_seg = inv.tenant.as_deref().map(seg);
        let prefix = &store.opts.prefix;
        let glob = format!(
            "{}:{}:{}:{}*",
            escaped(prefix),
            escaped(&inv.service_seg),
            tenant_seg
                .as_deref()
                .map_or_else(|| "*".to_string(), escaped),
            escaped(&inv.identity_seg),
        );
        let (kind, arg) = match &op {
            Op::Key(part) => ("key", store.key_token(part)),
            Op::Pattern(p) => ("pattern", p.as_str().to_owned()),
            Op::Clear => ("clear", String::new()),
            Op::Tag(tag) => ("tag", store.key_token(tag)),
        };
        let msg = Invalidation {
            node: 0,
            cache: inv.cache.clone(),
            op: kind.into(),
            arg: arg.clone(),
            tenant: inv.tenant.clone(),
        };
        // What to remove from Redis: a SCAN of this cache's keys, each one
        // checked to be this cache's and to match.
        let owner = Owner {
            prefix: prefix.clone(),
            svc: inv.service_seg.clone(),
            id: inv.identity_seg.clone(),
            tenant: tenant_seg,
            text_prefix: inv.text_prefix.clone(),
        };
        let filter: KeyFilter = {
            let pattern = match &op {
                Op::Pattern(p) => Some(p.clone()),
                _ => None,
            };
            let arg = arg.clone();
            Arc::new(move |rk: &str| {
                let Some(token) = owner.token(rk) else {
                    return false;
                };
                match kind {
                    "key" => token == arg,
                    "pattern" => pattern
                        .as_ref()
                        .is_some_and(|p| p.matches(&text_of(token, &owner.text_prefix))),
                    _ => true,
                }
            })
        };
        // Tag sets: `prefix:~tags:` and the namespace, then the tag's token.
        let ns_glob = glob
            .strip_prefix(&format!("{}:", escaped(prefix)))
            .unwrap_or(&glob)
            .to_owned();
        let tags = match &op {
            Op::Tag(tag) => Some(store.tag_glob(&ns_glob, tag)),
            Op::Clear => Some(store.tag_glob_all(&ns_glob)),
            _ => None,
        };
        let set_filter: KeyFilter = {
            let owner = filter.clone();
            let (tags_at, entries_at) = (format!("{prefix}:~tags:"), format!("{prefix}:"));
            let want = match &op {
                Op::Tag(_) => Some(arg.clone()),
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
                        split_segment(rest)
                            .and_then(|(_, r)| split_segment(r))
                            .and_then(|(_, r)| split_segment(r))
                            .is_some_and(|(_, token)| token == w)
                    })
            })
        };
        let clears = matches!(op, Op::Clear);
        // One key of a known tenant: its Redis key, deleted directly.
        let exact = match (&op, &inv.ns) {
            (Op::Key(part), Some(ns)) => Some(store.remote_key(ns, part)),
            _ => None,
        };
        let gen_key = store.gen_key(&inv.cache);
        let job: Job = Arc::new(move |store: Arc<RedisStore>| {
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
        let wait = Remote::deadline(&*store) * 4;
        store.invalidate_or_queue(job, wait);
        Ok(())
    }

    fn undecodable(&self, ns: &str, key: &str, error: &CodecError) {
        self.count_undecodable(&self.remote_key(ns, key), error);
    }
}
