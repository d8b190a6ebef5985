//! The deployment cache's counters and, with feature `metrics`, their
//! meters for `cache_core::metrics` (so `GET /metrics` on the admin router
//! shows them): summed over every deployment cache the process opened,
//! closed ones included, so the counters never go down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::DeployStats;

/// One cache's counters.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) deploys: AtomicU64,
    pub(super) saved_ms: AtomicU64,
    pub(super) corrupt: AtomicU64,
    pub(super) read_errors: AtomicU64,
}

impl Counters {
    /// New counters, known to the meters.
    pub(super) fn registered() -> Arc<Counters> {
        let c = Arc::new(Counters::default());
        #[cfg(feature = "metrics")]
        exported::register(&c);
        c
    }

    pub(super) fn snapshot(&self) -> DeployStats {
        DeployStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            deploys: self.deploys.load(Ordering::Relaxed),
            saved_ms: self.saved_ms.load(Ordering::Relaxed),
            corrupt_dropped: self.corrupt.load(Ordering::Relaxed),
            read_errors: self.read_errors.load(Ordering::Relaxed),
        }
    }

    /// The cache closes: its counts stay in the meters' totals.
    pub(super) fn retire(self: &Arc<Self>) {
        #[cfg(feature = "metrics")]
        exported::retire(self);
    }
}

#[cfg(feature = "metrics")]
mod exported {
    use std::sync::{Arc, Once, Weak};

    use metrics::{counter, describe_counter, describe_gauge, gauge};
    use parking_lot::Mutex;

    use super::{Counters, DeployStats};

    struct Totals {
        live: Vec<Weak<Counters>>,
        retired: DeployStats,
    }

    static TOTALS: Mutex<Totals> = Mutex::new(Totals {
        live: Vec::new(),
        retired: DeployStats {
            hits: 0,
            misses: 0,
            deploys: 0,
            saved_ms: 0,
            corrupt_dropped: 0,
            read_errors: 0,
        },
    });

    fn add(a: &mut DeployStats, b: &DeployStats) {
        a.hits += b.hits;
        a.misses += b.misses;
        a.deploys += b.deploys;
        a.saved_ms += b.saved_ms;
        a.corrupt_dropped += b.corrupt_dropped;
        a.read_errors += b.read_errors;
    }

    pub(super) fn register(c: &Arc<Counters>) {
        static SOURCE: Once = Once::new();
        SOURCE.call_once(|| cache_core::metrics::add_source(record));
        TOTALS.lock().live.push(Arc::downgrade(c));
    }

    pub(super) fn retire(c: &Arc<Counters>) {
        let mut t = TOTALS.lock();
        let weak = Arc::downgrade(c);
        t.live
            .retain(|w| !Weak::ptr_eq(w, &weak) && w.strong_count() > 0);
        let s = c.snapshot();
        add(&mut t.retired, &s);
    }

    fn record() {
        let total = {
            let t = TOTALS.lock();
            let mut total = t.retired;
            for c in t.live.iter().filter_map(Weak::upgrade) {
                add(&mut total, &c.snapshot());
            }
            total
        };
        describe_counter!(
            "cache_deploy_lookups_total",
            "Deployment-cache lookups, by result (hit or miss)"
        );
        describe_counter!("cache_deploys_total", "Code deployments recorded");
        describe_gauge!(
            "cache_deploy_saved_seconds",
            "Deployment time that deployment-cache hits saved, in all"
        );
        describe_counter!(
            "cache_deploy_dropped_total",
            "Deployment-cache files dropped (corrupt, truncated, foreign or tampered) or unreadable, by cause"
        );
        counter!("cache_deploy_lookups_total", "result" => "hit").absolute(total.hits);
        counter!("cache_deploy_lookups_total", "result" => "miss").absolute(total.misses);
        counter!("cache_deploys_total").absolute(total.deploys);
        gauge!("cache_deploy_saved_seconds").set(total.saved_ms as f64 / 1000.0);
        counter!("cache_deploy_dropped_total", "cause" => "corrupt")
            .absolute(total.corrupt_dropped);
        counter!("cache_deploy_dropped_total", "cause" => "unreadable").absolute(total.read_errors);
    }
}
