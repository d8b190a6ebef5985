//! The circuit breaker: Redis skipped while it fails, probed until back.

use super::*;

/// The circuit breaker.
pub(super) struct Breaker {
    pub(super) after: u32,
    pub(super) cooldown: Duration,
    pub(super) failures: AtomicU32,
    /// Nanoseconds since `origin` when the breaker may probe; 0 = closed.
    pub(super) open_until: AtomicU64,
    pub(super) probing: AtomicBool,
    pub(super) origin: Instant,
}

impl Breaker {
    pub(super) fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Whether an operation may go to Redis now.
    pub(super) fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        // Open: after the cooldown, one caller probes.
        self.now() >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    pub(super) fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("redis is reachable again; the circuit breaker closed");
        }
        self.probing.store(false, Ordering::Release);
    }

    pub(super) fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.after || self.probing.load(Ordering::Acquire) {
            let until = self.now() + self.cooldown.as_nanos() as u64;
            self.open_until.store(until.max(1), Ordering::Release);
        }
        self.probing.store(false, Ordering::Release);
    }

    pub(super) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}
