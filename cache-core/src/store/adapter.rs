//! [`StoreRemote`]: any [`Store`] as a cache's tier, with an optional
//! [`Broadcast`] that carries invalidations to the other nodes.
//!
//! A plain store has no generations, tag sets or locks, so this adapter errs
//! towards removing more: a tag invalidation removes the scope's entries of
//! the cache, a pattern that does not start with the cache's key prefix
//! removes them all, and a value loaded while an invalidation ran is deleted
//! again by the tier's re-check. It never leaves a value an acknowledged
//! invalidation should have removed.
//!
//! Layout: a cache's entries live in the store namespace named by the cache
//! (`service:identity`), under `service:tenant:identity[~mask]:part`, so one
//! namespace operation reaches every tenant and key mask of the cache.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::bridge::{block_on_bridge, bridge};
use super::broadcast::{Broadcast, Handler};
use super::lock::{Lock, TierLock};
use super::remote::{
    Gen, Invalidate, Lookup, Op, Remote, check_hashed_pattern, hashed_pattern_error,
};
use super::state::{Health, Tracker};
use super::{BoxFuture, Invalidation, Store, StoreError};
use crate::codec::CodecError;
use crate::pattern::{Pattern, push_glob_escaped};
use crate::spec::RemoteOptions;

/// One removal in the store, within a cache's namespace.
#[derive(Clone, Debug)]
enum Removal {
    Delete(String),
    Revoke(Pattern),
    Clear,
}

/// An invalidation, ready to run (and re-run) against the store.
#[derive(Clone)]
struct Job {
    ns: String,
    removals: Vec<Removal>,
    msg: Invalidation,
}

/// A [`Store`] (and maybe a [`Broadcast`]) as a cache's tier.
pub struct StoreRemote {
    name: String,
    store: Arc<dyn Store>,
    broadcast: Option<Arc<dyn Broadcast>>,
    node: u64,
    timeout: Duration,
    handlers: RwLock<Vec<Handler>>,
    /// Invalidations that failed, in order, retried until they succeed.
    queue: Mutex<VecDeque<Job>>,
    pending: AtomicU64,
    draining: AtomicBool,
    undecodable: AtomicU64,
    /// Outcomes of the store's operations.
    tracker: Tracker,
    /// The key of `hash_keys` digests, when keys are hashed.
    hash_key: Option<[u8; 32]>,
    /// A lock across nodes on missed keys, when the store has one.
    lock: std::sync::OnceLock<TierLock>,
    /// Compression and encryption of values, when configured.
    #[cfg(feature = "seal")]
    sealer: Option<crate::seal::Sealer>,
}

impl std::fmt::Debug for StoreRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreRemote")
            .field("name", &self.name)
            .field("node", &self.node)
            .finish()
    }
}

fn glob(s: &str) -> String {
    let mut out = String::new();
    push_glob_escaped(&mut out, s);
    out
}

impl StoreRemote {
    /// `store` as a tier named `name` (for logs), each operation bounded by
    /// `timeout`; with `broadcast`, invalidations reach the other nodes.
    pub fn new(
        name: impl Into<String>,
        store: Arc<dyn Store>,
        broadcast: Option<Arc<dyn Broadcast>>,
        timeout: Duration,
    ) -> Arc<StoreRemote> {
        Self::with_options(name, store, broadcast, timeout, &RemoteOptions::default())
            .expect("the default options need nothing")
    }

    /// [`StoreRemote::new`], with keys hashed and values compressed or
    /// encrypted as `opts` says. Options that cannot be used (a missing or
    /// short secret, a bad key, sealing without the `seal` feature) are an
    /// error.
    pub fn with_options(
        name: impl Into<String>,
        store: Arc<dyn Store>,
        broadcast: Option<Arc<dyn Broadcast>>,
        timeout: Duration,
        opts: &RemoteOptions,
    ) -> Result<Arc<StoreRemote>, StoreError> {
        let bad = StoreError::Unsupported;
        let hash_key = if opts.hash_keys {
            opts.hash_key().map_err(bad)?
        } else {
            None
        };
        #[cfg(feature = "seal")]
        let sealer = if opts.seals() {
            let s = crate::seal::Sealer::default().compress_above(opts.compress_above);
            Some(match &opts.encryption_key {
                Some(k) => s.encryption_key_hex(k).map_err(bad)?,
                None => s,
            })
        } else {
            None
        };
        #[cfg(not(feature = "seal"))]
        if opts.seals() {
            return Err(bad(
                "remote: compress_above and encryption_key need cache-core's `seal` feature".into(),
            ));
        }
        let me = Arc::new(StoreRemote {
            name: name.into(),
            store,
            broadcast: broadcast.clone(),
            node: crate::key::digest(&(std::process::id(), std::time::SystemTime::now())) as u64
                ^ NEXT_NODE.fetch_add(1, Ordering::Relaxed),
            timeout,
            handlers: RwLock::default(),
            queue: Mutex::default(),
            pending: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            undecodable: AtomicU64::new(0),
            tracker: Tracker::default(),
            hash_key,
            lock: std::sync::OnceLock::new(),
            #[cfg(feature = "seal")]
            sealer,
        });
        if let Some(b) = broadcast {
            let weak = Arc::downgrade(&me);
            b.subscribe(Arc::new(move |msg: &Invalidation| {
                if let Some(me) = weak.upgrade()
                    && msg.node != me.node
                {
                    for h in me.handlers.read().iter() {
                        h(msg);
                    }
                }
            }));
        }
        Ok(me)
    }

    /// Adds a lock across nodes: a node that misses a key takes it and
    /// computes the value, and the others wait at most `hold` for it
    /// instead of computing it too. Set once; a second call is an error.
    pub fn set_lock(&self, lock: Arc<dyn Lock>, hold: Duration) -> Result<(), StoreError> {
        self.lock
            .set(TierLock { lock, hold })
            .map_err(|_| StoreError::Unsupported(format!("{}: the lock is already set", self.name)))
    }

    /// Calls `f` with each invalidation another node publishes.
    pub fn on_invalidation(&self, f: impl Fn(&Invalidation) + Send + Sync + 'static) {
        self.handlers.write().push(Arc::new(f));
    }

    /// Stored values that did not decode, read as misses.
    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let r = match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        match &r {
            Ok(_) => self.tracker.success(),
            Err(e @ (StoreError::Unavailable(_) | StoreError::Timeout(_))) => {
                self.tracker.failure(e)
            }
            Err(_) => {}
        }
        r
    }

    async fn run(&self, job: &Job) -> Result<(), StoreError> {
        for r in &job.removals {
            match r {
                Removal::Delete(k) => {
                    self.bounded(self.store.delete(&job.ns, k)).await?;
                }
                Removal::Revoke(p) => {
                    self.bounded(self.store.revoke(&job.ns, p)).await?;
                }
                Removal::Clear => {
                    self.bounded(self.store.clear(&job.ns)).await?;
                }
            }
        }
        if let Some(b) = &self.broadcast {
            let mut msg = job.msg.clone();
            msg.node = self.node;
            self.bounded(b.publish(msg)).await?;
        }
        Ok(())
    }

    /// Retries the queued invalidations in order until each succeeds.
    fn drain(self: &Arc<Self>) {
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        bridge().spawn(async move {
            let mut backoff = Duration::from_millis(20);
            loop {
                let Some(job) = me.queue.lock().front().cloned() else {
                    me.draining.store(false, Ordering::Release);
                    // A job queued between the check and the store.
                    if me.queue.lock().is_empty() || me.draining.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    continue;
                };
                // Its own task, so a store that panics is a failed attempt.
                let attempt = {
                    let (me, job) = (me.clone(), job.clone());
                    tokio::spawn(async move { me.run(&job).await }).await
                };
                let outcome = attempt.unwrap_or_else(|e| {
                    Err(StoreError::Unavailable(format!("the store failed: {e}")))
                });
                match outcome {
                    Ok(()) => {
                        me.queue.lock().pop_front();
                        me.pending.fetch_sub(1, Ordering::AcqRel);
                        backoff = Duration::from_millis(20);
                    }
                    Err(e) => {
                        tracing::warn!(store = %me.name, "invalidation waits to be applied: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        });
    }

    /// The stored key of `key` in `ns`.
    fn stored_key(&self, ns: &str, key: &str) -> String {
        format!("{ns}:{}", Remote::token(self, key))
    }

    fn seal(&self, key: &str, bytes: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        #[cfg(feature = "seal")]
        if let Some(s) = &self.sealer {
            return Ok(s.seal(bytes, key.as_bytes())?);
        }
        let _ = key;
        Ok(bytes)
    }

    fn open(&self, key: &str, bytes: Vec<u8>) -> Result<Vec<u8>, CodecError> {
        #[cfg(feature = "seal")]
        if let Some(s) = &self.sealer {
            return s.open(&bytes, key.as_bytes());
        }
        let _ = key;
        Ok(bytes)
    }

    fn removals(&self, inv: &Invalidate) -> Vec<Removal> {
        // Every key of the cache is `svc:tenant:identity[~mask]:part`.
        let scope = inv
            .tenant
            .as_ref()
            .map(|t| {
                let mut s = String::new();
                crate::namespace::push_segment(&mut s, t);
                format!("{}:{}:*", glob(&inv.service_seg), glob(&s))
            })
            .unwrap_or_else(|| "*".to_string());
        // A glob too long for a pattern (a long key or tenant, escaped)
        // removes the whole cache instead: more than asked, never less.
        let revoke = |p: String| match Pattern::new(&p) {
            Ok(p) => Removal::Revoke(p),
            Err(_) => Removal::Clear,
        };
        let one = match &inv.op {
            Op::Key(part) => match &inv.ns {
                Some(ns) => Removal::Delete(self.stored_key(ns, part)),
                None => revoke(format!("*:{}", glob(&Remote::token(self, part)))),
            },
            Op::Pattern(p) => {
                // The stored part is the text less the cache's prefix: a
                // pattern that starts with the prefix matches parts with the
                // rest; any other may match any part.
                let rest = p
                    .as_str()
                    .strip_prefix(inv.text_prefix.as_str())
                    .unwrap_or("*");
                revoke(format!("{scope}:{rest}"))
            }
            // No tag sets here: the scope's entries go.
            Op::Tag(_) | Op::Clear if inv.tenant.is_none() => Removal::Clear,
            Op::Tag(_) | Op::Clear => revoke(scope),
        };
        vec![one]
    }
}

static NEXT_NODE: AtomicU64 = AtomicU64::new(1);

impl Remote for StoreRemote {
    fn name(&self) -> &str {
        &self.name
    }

    fn node(&self) -> u64 {
        self.node
    }

    fn subscribe(&self, handler: Handler) {
        self.handlers.write().push(handler);
    }

    fn deadline(&self) -> Duration {
        self.timeout + Duration::from_millis(50)
    }

    fn lock_wait(&self) -> Option<Duration> {
        self.lock.get().map(|l| l.hold)
    }

    fn token(&self, text: &str) -> String {
        match &self.hash_key {
            Some(k) => super::remote::keyed_token(k, text),
            None => text.to_owned(),
        }
    }

    fn has_pending_invalidations(&self) -> bool {
        self.pending.load(Ordering::Acquire) != 0
    }

    fn health(&self) -> Health {
        let mut h = Health::named(&self.name);
        self.tracker.fill(&mut h);
        self.store.report(&mut h);
        h
    }

    fn check_pattern(&self, pattern: &Pattern) -> Result<(), StoreError> {
        match self.hash_key {
            Some(_) => check_hashed_pattern(pattern),
            None => Ok(()),
        }
    }

    fn lookup(
        self: Arc<Self>,
        cache: String,
        ns: String,
        key: String,
    ) -> BoxFuture<'static, Lookup> {
        Box::pin(async move {
            if self.has_pending_invalidations() {
                return Lookup::Missing(None);
            }
            let k = self.stored_key(&ns, &key);
            let found = match self.bounded(self.store.get(&cache, &k)).await {
                Ok(Some(b)) => Lookup::Found(b),
                Ok(None) => match self.lock.get() {
                    Some(l) => l.after_miss(&*self.store, &cache, &k, self.timeout).await,
                    None => Lookup::Missing(None),
                },
                Err(e) => {
                    tracing::debug!(store = %self.name, "read failed, a miss: {e}");
                    Lookup::Missing(None)
                }
            };
            match found {
                Lookup::Found(b) => match self.open(&k, b) {
                    Ok(b) => Lookup::Found(b),
                    Err(e) => {
                        Remote::undecodable(&*self, &ns, &key, &e);
                        Lookup::Missing(None)
                    }
                },
                other => other,
            }
        })
    }

    fn unlock(self: Arc<Self>, ns: String, key: String, token: String) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let Some(l) = self.lock.get() else { return };
            let name = TierLock::name(&self.stored_key(&ns, &key));
            if let Err(e) = self.bounded(l.lock.unlock(&name, &token)).await {
                // The lock's time runs out on its own.
                tracing::debug!(store = %self.name, "unlock failed: {e}");
            }
        })
    }

    fn write(
        self: Arc<Self>,
        cache: String,
        ns: String,
        key: String,
        bytes: Vec<u8>,
        ttl: Option<Duration>,
        _tags: Vec<String>,
        _generation: Gen,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let k = self.stored_key(&ns, &key);
            let bytes = match self.seal(&k, bytes) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(store = %self.name, "value not stored: {e}");
                    return;
                }
            };
            if let Err(e) = self.bounded(self.store.set(&cache, &k, bytes, ttl)).await {
                tracing::debug!(store = %self.name, "write failed, not stored: {e}");
            }
        })
    }

    fn invalidate(self: Arc<Self>, mut inv: Invalidate) -> Result<(), StoreError> {
        if self.hash_key.is_some()
            && let Op::Pattern(p) = &inv.op
        {
            // Hashed keys: an exact key is its digest; anything else but
            // `*` (a clear, by then) cannot be selected.
            inv.op = match p.literal() {
                Some(text) => Op::Key(super::remote::part_of(text, &inv.text_prefix)),
                None => return Err(hashed_pattern_error(p)),
            };
        }
        let removals = self.removals(&inv);
        let (kind, arg) = match &inv.op {
            Op::Key(part) => ("key", Remote::token(&*self, part)),
            Op::Pattern(p) => ("pattern", p.as_str().to_owned()),
            Op::Tag(t) => ("tag", Remote::token(&*self, t)),
            Op::Clear => ("clear", String::new()),
        };
        let job = Job {
            ns: inv.cache.clone(),
            removals,
            msg: Invalidation {
                node: self.node,
                cache: inv.cache,
                op: kind.into(),
                arg,
                tenant: inv.tenant,
            },
        };
        // Behind queued ones, in order; else at once, waiting a bounded time
        // (but never on a runtime's worker: queued, it runs on the bridge).
        if !self.has_pending_invalidations() && tokio::runtime::Handle::try_current().is_err() {
            let me = self.clone();
            let attempt = job.clone();
            let done = block_on_bridge(self.deadline() * 4, async move { me.run(&attempt).await });
            if let Some(Ok(())) = done {
                return Ok(());
            }
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.queue.lock().push_back(job);
        self.drain();
        Ok(())
    }

    fn undecodable(&self, ns: &str, key: &str, error: &CodecError) {
        self.undecodable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            store = %self.name,
            key = %format!("{ns}:{key}"),
            "dropping a stored value that does not decode: {error}"
        );
    }
}
