//! Priming and warming: storing values before they are asked for.

use super::*;
use crate::source::{Source, SourceError};
use crate::warm::{WarmReport, Warmed, warm_labelled};

/// Loads of one key a warm tries when invalidations keep racing them.
const WARM_ATTEMPTS: usize = 3;

/// What became of a primed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Primed {
    /// It is what the cache holds now.
    Stored,
    /// The cache's `store_if` refused it; the entry it would have replaced
    /// is gone.
    Refused,
    /// An invalidation sharing its key's counter came while it was read,
    /// so it may predate one of its key; it is not stored, and the entry
    /// it would have replaced is gone.
    Raced,
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// Stores `value`, computed since `epoch`, in place of what the cache
    /// holds (here and in the remote tier); loads under way do not
    /// overwrite it. When it is not stored, the entry it would have
    /// replaced, which is no newer, is removed; removing never moves an
    /// invalidation counter, so one failure does not cause others.
    pub(super) fn prime(&self, key: K, value: V, epoch: Epoch) -> Primed {
        let k = key.clone();
        let primed = self.prime_only(key, value, epoch);
        // The value may differ from what dependants were computed from.
        self.invalidate_dependants(&k);
        primed
    }

    /// [`Inner::prime`] without invalidating dependants.
    fn prime_only(&self, key: K, value: V, epoch: Epoch) -> Primed {
        let store = self.should_store(&value);
        if self.tier().is_some() {
            let text = render_with(&key, self.render);
            let _ = self.propagate(RemoteOp::Key(text), Some(self.tenant(&key)));
            if store && !self.flights.changed(epoch) {
                block_on(self.remote_set(&key, &value, None, None));
                // An invalidation whose remote delete landed first: delete
                // again.
                self.recheck_remote(&key, epoch);
            }
        }
        if !store {
            self.remove_quietly(&key);
            return Primed::Refused;
        }
        if !self.keeps_l1() {
            // The remote tier is the cache: the value is there.
            return Primed::Stored;
        }
        let k = key.clone();
        let ttl = self.ttl_of(&value).unwrap_or(1);
        if self.store_at(key, value, ttl, Guard::Replace(Some(epoch))) {
            Primed::Stored
        } else {
            self.remove_quietly(&k);
            Primed::Raced
        }
    }

    /// Stores values read after `snap` was taken, each unless a counter it
    /// shares moved since (its entry then goes, and the next read goes to
    /// the source); returns how many it stored.
    pub(super) fn prime_read_since(
        &self,
        snap: EpochSnapshot,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> usize {
        let mut stored = 0;
        for (k, v) in entries {
            let epoch = self.flights.epoch_in(&snap, &k);
            if self.prime(k, v, epoch) == Primed::Stored {
                stored += 1;
            }
        }
        stored
    }
}

impl<K: CacheKey, V: CacheValue> Cache<K, V> {
    /// Computes `key`'s value with `f` and stores it, whatever the cache
    /// holds (a cached value does not stop it, and loads under way do not
    /// overwrite it); returns the value.
    ///
    /// The value is stored only if no invalidation of `key` came while `f`
    /// ran (a value read before an invalidation never outlives it; keys
    /// share 256 counters, so rarely another key's invalidation counts too)
    /// and the cache's `store_if` accepts it; otherwise the old entry,
    /// which is no newer, is removed.
    pub fn prime(&self, key: K, f: impl FnOnce() -> V) -> V {
        let epoch = self.inner.flights.prime_epoch_of(&key);
        let v = f();
        self.inner.prime(key, v.clone(), epoch);
        v
    }

    /// [`Cache::prime`] for a fallible `f`: an `Ok` value is stored, an
    /// error is returned and nothing changes.
    pub fn try_prime<E>(&self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let epoch = self.inner.flights.prime_epoch_of(&key);
        let v = f()?;
        self.inner.prime(key, v.clone(), epoch);
        Ok(v)
    }

    /// [`Cache::prime`] for a future.
    pub async fn prime_async(&self, key: K, f: impl Future<Output = V>) -> V {
        let epoch = self.inner.flights.prime_epoch_of(&key);
        let v = f.await;
        self.inner.prime(key, v.clone(), epoch);
        v
    }

    /// [`Cache::try_prime`] for a future.
    pub async fn try_prime_async<E>(
        &self,
        key: K,
        f: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        let epoch = self.inner.flights.prime_epoch_of(&key);
        let v = f.await?;
        self.inner.prime(key, v.clone(), epoch);
        Ok(v)
    }

    /// Stores everything `source` lists ([`Source::load_all`]), replacing
    /// what the cache holds for those keys; an error if the source cannot
    /// list everything or fails (the cache is unchanged then). A key
    /// invalidated while the source was read is not stored (counted as
    /// skipped), and its entry goes.
    pub fn warm_from(
        &self,
        source: &(impl Source<K, V> + ?Sized),
    ) -> Result<WarmReport, SourceError> {
        let started = Instant::now();
        let snap = self.inner.flights.snapshot();
        let (all, _cursor) = source.load_all()?;
        let total = all.len();
        let stored = self.inner.prime_read_since(snap, all);
        let report = WarmReport::counted(total, stored, total - stored, started.elapsed());
        tracing::info!(
            target: "cache_core::warm",
            total,
            succeeded = stored,
            skipped = total - stored,
            "warmed cache {} from its source",
            self.inner.ident()
        );
        Ok(report)
    }

    /// Loads each of `keys` from `source` ([`Source::load`]), at most
    /// `concurrency` at a time, and stores what it has, replacing what the
    /// cache holds; a key the source lacks counts as absent (its entry
    /// goes), a failed load as failed. A load an invalidation races is
    /// tried again, up to three times, then counted as skipped.
    pub fn warm_keys(
        &self,
        keys: impl IntoIterator<Item = K>,
        concurrency: usize,
        source: &(impl Source<K, V> + ?Sized),
    ) -> WarmReport {
        let label = format!("cache {} by key", self.inner.ident());
        warm_labelled(&label, keys, concurrency, |k| {
            for _ in 0..WARM_ATTEMPTS {
                let epoch = self.inner.flights.prime_epoch_of(&k);
                match source.load(&k) {
                    Ok(Some(v)) => match self.inner.prime(k.clone(), v, epoch) {
                        Primed::Stored => return Warmed::Value,
                        Primed::Refused => return Warmed::Skipped,
                        Primed::Raced => {}
                    },
                    Ok(None) => {
                        self.inner.remove_quietly(&k);
                        return Warmed::Absent;
                    }
                    Err(e) => return Warmed::Failed(e.to_string()),
                }
            }
            Warmed::Skipped
        })
    }
}
