//! Per-cache counters and their snapshot.
//!
//! Counters are striped: each thread bumps its own cache line, so two cores
//! hitting one cache never contend on a shared counter. A snapshot sums the
//! stripes.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

const STRIPES: usize = 64;

#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum Counter {
    Hit = 0,
    Miss,
    Insert,
    Eviction,
    Expiration,
    Invalidation,
    Load,
    LoadNanos,
}
/// Eight counters: a stripe is one cache line. Rarer counts (such as
/// failed loads) live outside the stripes.
const COUNTERS: usize = 8;

#[repr(align(64))]
#[derive(Default)]
struct Stripe([AtomicU64; COUNTERS]);

/// Striped counters of one cache.
///
/// Each live thread owns one stripe (ids are recycled when threads exit), so
/// it bumps its counters with a plain load and store: no locked instruction on
/// the hit path, and no lost counts. Threads beyond [`STRIPES`] share one
/// extra stripe and use `fetch_add`.
pub(crate) struct Counters {
    /// Inline, so a bump is one indexed store off the cache's own pointer.
    stripes: [Stripe; STRIPES + 1],
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
static FREE_IDS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Returns the thread's id to the pool when the thread exits.
struct IdGuard(usize);

impl Drop for IdGuard {
    fn drop(&mut self) {
        if self.0 < STRIPES {
            FREE_IDS.lock().push(self.0);
        }
    }
}

thread_local! {
    static THREAD_ID: Cell<usize> = const { Cell::new(usize::MAX) };
    static ID_GUARD: Cell<Option<IdGuard>> = const { Cell::new(None) };
}

#[cold]
fn assign_thread_id() -> usize {
    let id = FREE_IDS
        .lock()
        .pop()
        .unwrap_or_else(|| NEXT_ID.fetch_add(1, Ordering::Relaxed));
    THREAD_ID.with(|c| c.set(id));
    // If thread-local destructors are already running, the id is simply not recycled.
    let _ = ID_GUARD.try_with(|g| g.set(Some(IdGuard(id))));
    id
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stripes: std::array::from_fn(|_| Stripe::default()),
        }
    }
}

impl Counters {
    #[inline]
    pub(crate) fn add(&self, c: Counter, n: u64) {
        // One compare: an unassigned id (`usize::MAX`) and an overflow id
        // both take the slow path.
        let id = THREAD_ID.with(Cell::get);
        if id < STRIPES {
            // This thread is the only writer of its stripe.
            let slot = &self.stripes[id].0[c as usize];
            slot.store(
                slot.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            self.add_slow(id, c, n);
        }
    }

    /// [`Counters::add`] for a thread without an id yet, or beyond
    /// [`STRIPES`].
    #[cold]
    #[inline(never)]
    fn add_slow(&self, id: usize, c: Counter, n: u64) {
        let id = if id == usize::MAX {
            assign_thread_id()
        } else {
            id
        };
        if id < STRIPES {
            let slot = &self.stripes[id].0[c as usize];
            slot.store(
                slot.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            // The extra last stripe is shared by all overflow threads.
            self.stripes[STRIPES].0[c as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn incr(&self, c: Counter) {
        self.add(c, 1)
    }

    pub(crate) fn sum(&self, c: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[c as usize].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// A snapshot of one cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found none (including callers that waited on another's load).
    pub misses: u64,
    /// Values stored.
    pub inserts: u64,
    /// Entries removed to stay within capacity.
    pub evictions: u64,
    /// Entries found or swept past their TTL or TTI.
    pub expirations: u64,
    /// Entries removed by invalidate, revoke, tag or clear.
    pub invalidations: u64,
    /// Times the underlying function (or loader) ran.
    pub loads: u64,
    /// Total time spent in loads, in nanoseconds.
    pub load_nanos: u64,
    /// Times the underlying function failed (returned `Err`); not in
    /// `loads`.
    pub load_failures: u64,
    /// Entries in the cache now (expired ones not yet swept included).
    pub entries: u64,
}

impl Stats {
    /// `hits / (hits + misses)`, or 0 when there were no lookups.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    /// Mean time of one load, or zero when nothing loaded.
    pub fn mean_load_time(&self) -> Duration {
        match self.loads {
            0 => Duration::ZERO,
            n => Duration::from_nanos(self.load_nanos / n),
        }
    }

    /// Total time spent in loads.
    pub fn total_load_time(&self) -> Duration {
        Duration::from_nanos(self.load_nanos)
    }

    /// Adds another snapshot's counts to this one.
    pub fn merge(&mut self, o: &Stats) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.inserts += o.inserts;
        self.evictions += o.evictions;
        self.expirations += o.expirations;
        self.invalidations += o.invalidations;
        self.loads += o.loads;
        self.load_nanos += o.load_nanos;
        self.load_failures += o.load_failures;
        self.entries += o.entries;
    }
}

impl Counters {
    /// The counters' sums; `load_failures` is the caller's to fill in.
    pub(crate) fn snapshot(&self, entries: u64) -> Stats {
        Stats {
            hits: self.sum(Counter::Hit),
            misses: self.sum(Counter::Miss),
            inserts: self.sum(Counter::Insert),
            evictions: self.sum(Counter::Eviction),
            expirations: self.sum(Counter::Expiration),
            invalidations: self.sum(Counter::Invalidation),
            loads: self.sum(Counter::Load),
            load_nanos: self.sum(Counter::LoadNanos),
            load_failures: 0,
            entries,
        }
    }
}
