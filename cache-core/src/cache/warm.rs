//! Priming and warming: storing values before they are asked for.

use super::*;
use crate::source::{Source, SourceError};
use crate::warm::{WarmReport, Warmed, warm_labelled};

/// Loads of one key a warm tries when invalidations keep racing them.
const WARM_ATTEMPTS: usize = 3;

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// Stores `value`, computed since `epoch`, in place of what the cache
    /// holds (here and in the remote tier); loads under way do not
    /// overwrite it. Returns the epoch it stored at, or `None` when it
    /// stored nothing: an invalidation concerning `key` came since `epoch`
    /// (the value may predate it), or the cache's `store_if` refused the
    /// value. Then the entry it would have replaced is removed too, as it
    /// is no newer than `value`.
    pub(super) fn prime(&self, key: K, value: V, epoch: Epoch) -> Option<Epoch> {
        let now = if self.should_store(&value) && !self.flights.changed(epoch) {
            self.flights.bump_key_since(&key, epoch)
        } else {
            None
        };
        let remote = self.tier().is_some();
        if remote {
            let text = render_with(&key, self.render);
            let _ = self.propagate(RemoteOp::Key(text), Some(self.tenant(&key)));
        }
        let Some(now) = now else {
            self.invalidate(&key);
            return None;
        };
        if remote {
            block_on(self.remote_set(&key, &value, None));
        }
        self.store_loaded(key, value, now);
        Some(now)
    }

    /// Stores values read after `snap` was taken, each unless its key was
    /// invalidated since (then its entry goes, and the next read goes to
    /// the source); returns how many it stored.
    pub(super) fn prime_read_since(
        &self,
        mut snap: EpochSnapshot,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> usize {
        let mut stored = 0;
        for (k, v) in entries {
            let epoch = self.flights.epoch_in(&snap, &k);
            match self.prime(k, v, epoch) {
                Some(_) => {
                    snap.advance(epoch);
                    stored += 1;
                }
                None => snap.poison(epoch),
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
    /// ran (a value read before an invalidation never outlives it) and the
    /// cache's `store_if` accepts it; otherwise the old entry is removed.
    pub fn prime(&self, key: K, f: impl FnOnce() -> V) -> V {
        let epoch = self.inner.epoch_of(&key);
        let v = f();
        self.inner.prime(key, v.clone(), epoch);
        v
    }

    /// [`Cache::prime`] for a fallible `f`: an `Ok` value is stored, an
    /// error is returned and nothing changes.
    pub fn try_prime<E>(&self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let epoch = self.inner.epoch_of(&key);
        let v = f()?;
        self.inner.prime(key, v.clone(), epoch);
        Ok(v)
    }

    /// [`Cache::prime`] for a future.
    pub async fn prime_async(&self, key: K, f: impl Future<Output = V>) -> V {
        let epoch = self.inner.epoch_of(&key);
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
        let epoch = self.inner.epoch_of(&key);
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
                let epoch = self.inner.epoch_of(&k);
                match source.load(&k) {
                    Ok(Some(v)) => {
                        if self.inner.prime(k.clone(), v, epoch).is_some() {
                            return Warmed::Value;
                        }
                    }
                    Ok(None) => {
                        self.inner.invalidate(&k);
                        return Warmed::Absent;
                    }
                    Err(e) => return Warmed::Failed(e.to_string()),
                }
            }
            Warmed::Skipped
        })
    }
}
