//! Loads: single-flight, refresh-ahead tickets, and the `get_or_*` family.

use super::*;

/// A claim on one background recomputation of a stale entry.
///
/// Returned by [`Cache::get_or_refresh`]; at most one exists per key at a
/// time. [`RefreshTicket::complete`] stores the new value; dropping the ticket
/// gives the claim up.
pub struct RefreshTicket<K: CacheKey, V: CacheValue> {
    cache: Cache<K, V>,
    key: K,
    flight: Arc<Flight<V>>,
    landed: bool,
    epoch: Epoch,
}

impl<K: CacheKey, V: CacheValue> RefreshTicket<K, V> {
    /// The key to recompute.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Stores the recomputed value (subject to the cache's `store_if`), and
    /// invalidates what depends on the key.
    pub fn complete(mut self, value: V) {
        let inner = &self.cache.inner;
        inner.counters.incr(Counter::Load);
        // A value `store_if` refuses keeps the old one (refresh-ahead serves
        // it until it expires); one whose own TTL is zero removes it.
        if inner.store_if.is_none_or(|p| p(&value)) {
            match inner.ttl_of(&value) {
                Some(ttl) => {
                    inner.store_loaded_for(self.key.clone(), value.clone(), self.epoch, ttl)
                }
                None => {
                    inner.invalidate(&self.key);
                }
            }
            inner.invalidate_dependants(&self.key);
        }
        self.landed = true;
        inner.flights.land(&self.key, &self.flight, Some(&value));
    }
}

impl<K: CacheKey, V: CacheValue> Drop for RefreshTicket<K, V> {
    fn drop(&mut self) {
        if !self.landed {
            self.cache.inner.flights.land(&self.key, &self.flight, None);
        }
    }
}

/// Leads one load; releases the waiters even if the load panics or is dropped.
pub(super) struct Lead<'a, K: CacheKey, V: CacheValue> {
    pub(super) flights: &'a Flights<K, V>,
    pub(super) key: K,
    pub(super) flight: Arc<Flight<V>>,
    pub(super) landed: bool,
    /// The invalidation count when the load began.
    pub(super) epoch: Epoch,
}

impl<K: CacheKey, V: CacheValue> Lead<'_, K, V> {
    pub(super) fn land(mut self, value: &V) {
        self.landed = true;
        self.flights.land(&self.key, &self.flight, Some(value));
    }

    /// The load returned an error: the waiters get it (shared), or compute
    /// for themselves.
    pub(super) fn fail(mut self, err: Option<SharedErr>) {
        self.landed = true;
        self.flights.fail(&self.key, &self.flight, err);
    }
}

impl<K: CacheKey, V: CacheValue> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        if !self.landed {
            self.flights.land(&self.key, &self.flight, None);
        }
    }
}

/// How a load's error reaches its waiters: cloned through the flight when
/// the error type allows, else not at all (each waiter computes).
pub(super) struct ErrShare<E> {
    pub(super) share: fn(&E) -> SharedErr,
    pub(super) unshare: fn(&SharedErr) -> Option<E>,
}

pub(super) fn share_err<E: Clone + Send + Sync + 'static>(e: &E) -> SharedErr {
    Arc::new(e.clone())
}

pub(super) fn unshare_err<E: Clone + 'static>(e: &SharedErr) -> Option<E> {
    e.downcast_ref::<E>().cloned()
}

impl<E: Clone + Send + Sync + 'static> ErrShare<E> {
    const CLONED: Option<ErrShare<E>> = Some(ErrShare {
        share: share_err::<E>,
        unshare: unshare_err::<E>,
    });
}

/// Who drives a load: a thread blocked on it, or an async task.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    Thread,
    Task,
}

/// Whether a sync caller may block until `f` lands: not if it leads `f`
/// itself, nor if an async task leads it and the caller runs on a
/// one-thread runtime (that task could never run).
fn may_block_for<V: Clone>(f: &Flight<V>) -> bool {
    if f.led_here() {
        return false;
    }
    !(f.led_by_task() && runtime_flavor() == Some(tokio::runtime::RuntimeFlavor::CurrentThread))
}

fn runtime_flavor() -> Option<tokio::runtime::RuntimeFlavor> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|h| h.runtime_flavor())
}

/// Waits for the leader of `f`. A sync caller on a worker of a
/// multi-thread runtime, waiting on a task, first hands its worker's other
/// tasks (the leader may be one of them) to another thread.
async fn wait_for<V: Clone>(f: Arc<Flight<V>>, caller: Caller) -> Waited<V> {
    if caller == Caller::Thread
        && f.led_by_task()
        && runtime_flavor() == Some(tokio::runtime::RuntimeFlavor::MultiThread)
    {
        return tokio::task::block_in_place(|| block_on(f.wait_async()));
    }
    f.wait_async().await
}

/// Whether a loop iteration leads, or waits on, a load.
pub(super) enum Turn<'a, K: CacheKey, V: CacheValue> {
    Lead(Lead<'a, K, V>),
    Wait(Arc<Flight<V>>),
    Done(V),
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// Joins the load of `key`, or finds that it has meanwhile been stored.
    pub(super) fn turn(&self, key: &K, caller: Caller) -> Turn<'_, K, V> {
        match self.flights.join(key, caller == Caller::Thread) {
            Join::Leader(flight) => {
                let lead = Lead {
                    flights: &self.flights,
                    key: key.clone(),
                    flight,
                    landed: false,
                    epoch: self.epoch_of(key),
                };
                // A load may have landed between our miss and joining.
                match self.lookup(key) {
                    Some(e) => {
                        lead.land(&e.value);
                        Turn::Done(e.value)
                    }
                    None => Turn::Lead(lead),
                }
            }
            Join::Follower(f) => Turn::Wait(f),
        }
    }

    /// A load computed outside single-flight (its leader's load failed):
    /// stored like any other when it succeeds.
    pub(super) fn solo<E>(
        &self,
        key: K,
        v: Result<V, E>,
        epoch: Epoch,
        started: Instant,
    ) -> Result<V, E> {
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                self.load_failed(started);
                return Err(e);
            }
        };
        let store = self.should_store(&v);
        self.loaded(key, &v, started, store, epoch);
        Ok(v)
    }

    /// The invalidation count that concerns `key` now.
    #[inline]
    pub(super) fn epoch_of(&self, key: &K) -> Epoch {
        self.flights.epoch_of(key)
    }

    /// Marks an invalidation of many keys (before anything is removed):
    /// loads under way store nothing, and new callers do not join them.
    pub(super) fn bump(&self) {
        self.flights.bump_all();
    }

    /// Stores a value a load began at `epoch`, unless an invalidation came
    /// since: checked with the insert, and an invalidation waits for the
    /// insert, so it removes what it lets through.
    pub(super) fn store_loaded(&self, key: K, value: V, epoch: Epoch) {
        if let Some(ttl) = self.ttl_of(&value) {
            self.store_loaded_for(key, value, epoch, ttl);
        }
    }

    /// [`Inner::store_loaded`] for `ttl_ms` (a value read from L2 keeps
    /// the expiry it was written with there).
    pub(super) fn store_loaded_for(&self, key: K, value: V, epoch: Epoch, ttl_ms: u64) {
        if self.flights.changed(epoch) {
            return;
        }
        self.store_at(key, value, ttl_ms, Guard::Current(epoch));
    }

    /// Records a load that failed after `started`.
    pub(super) fn load_failed(&self, started: Instant) {
        self.load_failures.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::meter::load(
            self.service.as_deref(),
            &self.identity,
            started.elapsed(),
            false,
        );
        #[cfg(not(feature = "metrics"))]
        let _ = started;
    }

    /// Records a finished load and stores its value if the policy allows.
    pub(super) fn loaded(&self, key: K, value: &V, started: Instant, store: bool, epoch: Epoch) {
        let took = started.elapsed();
        self.counters.incr(Counter::Load);
        self.counters
            .add(Counter::LoadNanos, took.as_nanos() as u64);
        #[cfg(feature = "metrics")]
        crate::meter::load(self.service.as_deref(), &self.identity, took, true);
        if store {
            self.store_loaded(key, value.clone(), epoch);
        }
    }
}

impl<K: CacheKey, V: CacheValue> Cache<K, V> {
    /// The cached value, or the one `init` computes; concurrent callers on
    /// one key run `init` once and share its value.
    #[inline]
    pub fn get_or_insert_with(&self, key: K, init: impl FnOnce() -> V) -> V {
        if let Some(v) = self.inner.get(&key) {
            return v;
        }
        self.__load(key, init)
    }

    /// The miss path of [`Cache::get_or_insert_with`], for generated code
    /// that has already looked the key up.
    #[doc(hidden)]
    #[inline(never)]
    pub fn __load(&self, key: K, init: impl FnOnce() -> V) -> V {
        match self.load_sync(key, || Ok::<V, std::convert::Infallible>(init()), None) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Like [`Cache::get_or_insert_with`], for a fallible `init`. An error
    /// is returned to this caller and not cached; waiting callers retry.
    pub fn get_or_try_insert_with<E>(
        &self,
        key: K,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(v) = self.inner.get(&key) {
            return Ok(v);
        }
        self.load_sync(key, init, None)
    }

    /// Like [`Cache::get_or_try_insert_with`], and concurrent callers that
    /// wait on a load that fails get a clone of its error (one run, not
    /// one each).
    pub fn get_or_try_insert_with_shared<E: Clone + Send + Sync + 'static>(
        &self,
        key: K,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(v) = self.inner.get(&key) {
            return Ok(v);
        }
        self.load_sync(key, init, ErrShare::CLONED)
    }

    /// The async form of [`Cache::get_or_try_insert_with_shared`].
    pub async fn get_or_try_insert_with_shared_async<E, F>(&self, key: K, init: F) -> Result<V, E>
    where
        E: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        if let Some(v) = self.inner.get(&key) {
            return Ok(v);
        }
        self.load_async(key, init, ErrShare::CLONED).await
    }

    /// The miss path of the sync loaders: the one load path, driven on
    /// this thread.
    pub(super) fn load_sync<E>(
        &self,
        key: K,
        init: impl FnOnce() -> Result<V, E>,
        errs: Option<ErrShare<E>>,
    ) -> Result<V, E> {
        block_on(self.load(key, async { init() }, errs, Caller::Thread))
    }

    /// The async form of [`Cache::get_or_insert_with`]: waiting callers do
    /// not block their threads. If the leading future is dropped, a waiter
    /// takes over.
    #[inline]
    pub async fn get_or_insert_with_async<F>(&self, key: K, init: F) -> V
    where
        F: Future<Output = V>,
    {
        if let Some(v) = self.inner.get(&key) {
            return v;
        }
        self.__load_async(key, init).await
    }

    /// The miss path of [`Cache::get_or_insert_with_async`].
    #[doc(hidden)]
    pub async fn __load_async<F: Future<Output = V>>(&self, key: K, init: F) -> V {
        let init = async { Ok::<V, std::convert::Infallible>(init.await) };
        match self.load_async(key, init, None).await {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// The async form of [`Cache::get_or_try_insert_with`].
    pub async fn get_or_try_insert_with_async<E, F>(&self, key: K, init: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Some(v) = self.inner.get(&key) {
            return Ok(v);
        }
        self.load_async(key, init, None).await
    }

    /// The miss path of the async loaders.
    pub(super) async fn load_async<E, F>(
        &self,
        key: K,
        init: F,
        errs: Option<ErrShare<E>>,
    ) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        self.load(key, init, errs, Caller::Task).await
    }

    /// The one load path, for sync and async callers alike: join the key's
    /// flight; as its follower wait for the leader's value; as its leader
    /// look in L2 once, compute, and store in both tiers.
    async fn load<E, F>(
        &self,
        key: K,
        init: F,
        errs: Option<ErrShare<E>>,
        caller: Caller,
    ) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let inner = &*self.inner;
        loop {
            let lead = match inner.turn(&key, caller) {
                Turn::Done(v) => return Ok(v),
                // A sync load that asks for its own key on its own thread
                // would wait for itself, and a sync call on a one-thread
                // runtime whose task leads the load would block that task:
                // it computes instead.
                Turn::Wait(f) if caller == Caller::Thread && !may_block_for(&f) => {
                    let epoch = inner.epoch_of(&key);
                    let started = Instant::now();
                    let v = init.await;
                    return inner.solo(key, v, epoch, started);
                }
                Turn::Wait(f) => match wait_for(f, caller).await {
                    Waited::Value(v) => return Ok(v),
                    Waited::Retry => continue,
                    Waited::Failed(err) => {
                        if let (Some(e), Some(errs)) = (err, &errs)
                            && let Some(e) = (errs.unshare)(&e)
                        {
                            return Err(e);
                        }
                        let epoch = inner.epoch_of(&key);
                        let started = Instant::now();
                        let v = init.await;
                        return inner.solo(key, v, epoch, started);
                    }
                },
                Turn::Lead(lead) => lead,
            };
            let epoch = lead.epoch;
            let remote = inner.has_remote();
            let found = if remote {
                inner.remote_get(&key).await
            } else {
                RemoteValue::Missing(None)
            };
            let (lock, generation) = match found {
                RemoteValue::Found(v, ttl) => {
                    match ttl {
                        Some(ttl) => inner.store_loaded_for(key, v.clone(), epoch, ttl),
                        None => inner.store_loaded(key, v.clone(), epoch),
                    }
                    lead.land(&v);
                    return Ok(v);
                }
                RemoteValue::Locked(token, generation) => (Some(token), generation),
                RemoteValue::Missing(generation) => (None, generation),
            };
            let started = Instant::now();
            let v = match init.await {
                Ok(v) => v,
                Err(e) => {
                    inner.load_failed(started);
                    if let Some(token) = lock {
                        inner.remote_unlock(&key, token).await;
                    }
                    lead.fail(errs.as_ref().map(|s| (s.share)(&e)));
                    return Err(e);
                }
            };
            let store = inner.should_store(&v);
            if remote
                && store
                && inner.enabled.load(Ordering::Relaxed)
                && !inner.flights.changed(epoch)
            {
                inner.remote_set(&key, &v, generation, None).await;
                inner.recheck_remote(&key, epoch);
            }
            if let Some(token) = lock {
                inner.remote_unlock(&key, token).await;
            }
            inner.loaded(key, &v, started, store, epoch);
            lead.land(&v);
            return Ok(v);
        }
    }

    /// A hit that may also hand out a refresh: when the entry is older than
    /// the cache's refresh age and no load of it runs, the ticket lets the
    /// caller recompute it in the background while the current value is
    /// served. `None` on a miss.
    pub fn get_or_refresh(&self, key: &K) -> Option<(V, Option<RefreshTicket<K, V>>)> {
        let inner = &*self.inner;
        let v = inner.get(key)?;
        if inner.refresh_ms == 0 {
            return Some((v, None));
        }
        let loaded_at = inner
            .map
            .peek(key)
            .and_then(|e| e.meta.map(|m| m.loaded_at))
            .unwrap_or(0);
        if inner.clock.now_ms().saturating_sub(loaded_at) < inner.refresh_ms {
            return Some((v, None));
        }
        let epoch = inner.epoch_of(key);
        let ticket = inner.flights.try_lead(key).map(|flight| RefreshTicket {
            cache: self.clone(),
            key: key.clone(),
            flight,
            landed: false,
            epoch,
        });
        Some((v, ticket))
    }
}
