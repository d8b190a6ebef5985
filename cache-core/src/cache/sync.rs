//! [`Synced`]: a cache kept in step with a [`Source`]: read-through on a
//! miss, a full load, and incremental synchronisation on an interval.

use std::sync::Condvar;
use std::time::SystemTime;

use super::*;
use crate::source::{Source, SourceError, SyncReport, SyncStats};

/// When a [`Synced`] cache first loads everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Startup {
    /// Before [`Synced::start`] returns.
    Blocking,
    /// At once, on the sync thread: the cache serves (reading misses
    /// through) while it loads.
    #[default]
    Background,
    /// At the first interval; until then every miss reads through.
    Lazy,
}

/// How a [`Synced`] cache keeps in step.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Time between synchronisations; `None` syncs only on
    /// [`Synced::sync_now`].
    pub interval: Option<Duration>,
    /// When the first full load happens.
    pub startup: Startup,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            interval: Some(Duration::from_secs(300)),
            startup: Startup::Background,
        }
    }
}

impl SyncOptions {
    /// Syncs every `interval`.
    pub fn every(interval: Duration) -> Self {
        SyncOptions {
            interval: Some(interval),
            ..Self::default()
        }
    }

    /// Syncs on the interval configuration gives `cache` (`sync_interval`,
    /// layered as every setting is; default 5 minutes).
    pub fn configured<K: CacheKey, V: CacheValue>(cache: &Cache<K, V>) -> Self {
        Self::every(cache.settings().sync_interval)
    }

    /// Syncs only on [`Synced::sync_now`] (after the first load).
    pub fn on_demand() -> Self {
        SyncOptions {
            interval: None,
            ..Self::default()
        }
    }

    /// Loads everything as `startup` says.
    pub fn startup(mut self, startup: Startup) -> Self {
        self.startup = startup;
        self
    }
}

/// Why a read-through found nothing to store; shared with waiters.
#[derive(Clone)]
enum Miss {
    Absent,
    Failed(SourceError),
}

struct Shared<K: CacheKey, V: CacheValue> {
    cache: Cache<K, V>,
    source: Arc<dyn Source<K, V>>,
    stats: Mutex<SyncStats>,
    /// Held while a sync runs: one at a time.
    running: Mutex<()>,
    stop: std::sync::Mutex<bool>,
    wake: Condvar,
}

/// A cache kept in step with a [`Source`]. Dropping it stops its thread;
/// the cache (a handle) lives on.
pub struct Synced<K: CacheKey, V: CacheValue> {
    shared: Arc<Shared<K, V>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl<K: CacheKey, V: CacheValue> Synced<K, V> {
    /// Keeps `cache` in step with `source` as `opts` says.
    pub fn start(cache: Cache<K, V>, source: impl Source<K, V>, opts: SyncOptions) -> Self {
        let shared = Arc::new(Shared {
            cache,
            source: Arc::new(source),
            stats: Mutex::new(SyncStats::default()),
            running: Mutex::new(()),
            stop: std::sync::Mutex::new(false),
            wake: Condvar::new(),
        });
        if opts.startup == Startup::Blocking {
            let _ = shared.sync();
        }
        let needs_thread = opts.interval.is_some() || opts.startup == Startup::Background;
        let worker = needs_thread.then(|| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("cache-sync".into())
                .spawn(move || s.run(opts))
                .expect("spawning the sync thread")
        });
        Synced { shared, worker }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache<K, V> {
        &self.shared.cache
    }

    /// The value of `key`: from the cache, or read through from the source
    /// on a miss (one load per key however many callers wait) and stored.
    /// `None` when the source has none; an error when it fails.
    pub fn get(&self, key: &K) -> Result<Option<V>, SourceError> {
        let s = &self.shared;
        let r = s.cache.get_or_try_insert_with_shared(key.clone(), || {
            s.stats.lock().loads += 1;
            match s.source.load(key) {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(Miss::Absent),
                Err(e) => Err(Miss::Failed(e)),
            }
        });
        match r {
            Ok(v) => Ok(Some(v)),
            Err(Miss::Absent) => Ok(None),
            Err(Miss::Failed(e)) => Err(e),
        }
    }

    /// Synchronises now: a full load the first time (and every time for a
    /// source that lists no changes, removing what it no longer has), else
    /// the changes since the last one. A failure keeps what the cache
    /// holds, is counted and logged, and the next sync tries again.
    pub fn sync_now(&self) -> Result<SyncReport, SourceError> {
        self.shared.sync()
    }

    /// What the syncs did so far.
    pub fn stats(&self) -> SyncStats {
        self.shared.stats.lock().clone()
    }
}

impl<K: CacheKey, V: CacheValue> Drop for Synced<K, V> {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl<K: CacheKey, V: CacheValue> Shared<K, V> {
    /// The sync thread: the first load if asked, then one sync per
    /// interval until stopped.
    fn run(&self, opts: SyncOptions) {
        if opts.startup == Startup::Background && !self.stopped() && self.sync_or_quit() {
            return;
        }
        let Some(every) = opts.interval else {
            return;
        };
        loop {
            let guard = self.stop.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, _) = self
                .wake
                .wait_timeout_while(guard, every, |stop| !*stop)
                .unwrap_or_else(|e| e.into_inner());
            if *guard {
                return;
            }
            drop(guard);
            if self.sync_or_quit() {
                return;
            }
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One sync; true when the source cannot be synchronised at all (the
    /// thread then ends: reads still go through).
    fn sync_or_quit(&self) -> bool {
        match self.sync() {
            Err(SourceError::Unsupported(what)) => {
                tracing::info!(
                    cache = self.cache.name(),
                    "cache sync stops: the source cannot {what}; misses still read through"
                );
                true
            }
            _ => false,
        }
    }

    fn sync(&self) -> Result<SyncReport, SourceError> {
        let _one = self.running.lock();
        let started = Instant::now();
        let cursor = self.stats.lock().cursor.clone();
        // A source that panics fails this sync; the next one tries again.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cursor.as_deref() {
                Some(c) if !c.is_empty() => self.apply_changes(c),
                _ => self.full_load(),
            }))
            .unwrap_or_else(|p| {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                Err(SourceError::Failed(format!("the source panicked: {what}")))
            });
        let mut st = self.stats.lock();
        match result {
            Ok((mut report, cursor)) => {
                report.took = started.elapsed();
                st.syncs += 1;
                st.last_success = Some(SystemTime::now());
                st.last = Some(report.clone());
                st.last_error = None;
                st.cursor = Some(cursor);
                Ok(report)
            }
            Err(e) => {
                if !matches!(e, SourceError::Unsupported(_)) {
                    st.failures += 1;
                    st.last_error = Some(e.to_string());
                    tracing::warn!(
                        cache = self.cache.name(),
                        "cache sync failed, keeping what the cache holds: {e}"
                    );
                }
                Err(e)
            }
        }
    }

    /// Loads everything, and removes what the source no longer has.
    fn full_load(&self) -> Result<(SyncReport, String), SourceError> {
        let inner = &self.cache.inner;
        let snap = inner.flights.snapshot();
        let (all, cursor) = self.source.load_all()?;
        let present: HashSet<K> = all.iter().map(|(k, _)| k.clone()).collect();
        let gone = std::cell::RefCell::new(Vec::new());
        inner.map.retain(|k, _| {
            if !present.contains(k) {
                gone.borrow_mut().push(k.clone());
            }
            true
        });
        let upserts = inner.prime_read_since(snap, all);
        let deletes = self.cache.invalidate_many(gone.into_inner().iter());
        Ok((
            SyncReport {
                full: true,
                upserts,
                deletes,
                took: Duration::ZERO,
            },
            cursor,
        ))
    }

    /// Applies the changes since `cursor`.
    fn apply_changes(&self, cursor: &str) -> Result<(SyncReport, String), SourceError> {
        let snap = self.cache.inner.flights.snapshot();
        let ch = self.source.changes(cursor)?;
        let upserts = self.cache.inner.prime_read_since(snap, ch.upserts);
        let deletes = ch
            .deletes
            .iter()
            .filter(|k| self.cache.invalidate(k))
            .count();
        Ok((
            SyncReport {
                full: false,
                upserts,
                deletes,
                took: Duration::ZERO,
            },
            ch.cursor,
        ))
    }
}
