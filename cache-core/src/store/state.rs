//! The state of a store outside the process, as health checks and metrics
//! report it: whether it was ever reached, its errors, its breaker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

/// What a store outside the process reports about itself.
///
/// Fields a store cannot know are `None`. Nothing here carries a secret:
/// error texts are the store's own, already scrubbed of credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The store's name (`redis`, `dht`, `disk`, a registered name).
    pub backend: String,
    /// Whether an operation has ever succeeded since the process started.
    pub reached: bool,
    /// Whether the last operation succeeded; `None` before any ran.
    pub reachable: Option<bool>,
    /// Whether a circuit breaker skips operations now.
    pub breaker_open: bool,
    /// The text of the last error, if any.
    pub last_error: Option<String>,
    /// Operations that failed or timed out.
    pub errors: u64,
    /// Whether the store listens for other nodes' invalidations; `None`
    /// when it has no such channel.
    pub subscribed: Option<bool>,
    /// Peers connected, for a peer-to-peer store.
    pub peers: Option<usize>,
}

impl Health {
    /// The state of a store named `backend` that reports nothing more.
    pub fn named(backend: impl Into<String>) -> Self {
        Health {
            backend: backend.into(),
            ..Health::default()
        }
    }
}

/// Outcomes of a store's operations, kept for [`Health`]: lock-free on
/// success, a short lock on failure.
#[derive(Debug, Default)]
pub struct Tracker {
    reached: AtomicBool,
    /// 0 before any operation, 1 after a success, 2 after a failure.
    last: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Tracker {
    /// Records a success.
    pub fn success(&self) {
        if !self.reached.load(Ordering::Relaxed) {
            self.reached.store(true, Ordering::Relaxed);
        }
        if self.last.load(Ordering::Relaxed) != 1 {
            self.last.store(1, Ordering::Relaxed);
        }
    }

    /// Records a failure with its (scrubbed) text.
    pub fn failure(&self, error: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.last.store(2, Ordering::Relaxed);
        *self.last_error.lock() = Some(error.to_string());
    }

    /// Records the outcome of `r`, passing it on.
    pub fn note<T, E: std::fmt::Display>(&self, r: Result<T, E>) -> Result<T, E> {
        match &r {
            Ok(_) => self.success(),
            Err(e) => self.failure(e),
        }
        r
    }

    /// Failures so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Fills the fields of `h` this tracker knows.
    pub fn fill(&self, h: &mut Health) {
        h.reached = self.reached.load(Ordering::Relaxed);
        h.reachable = match self.last.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        };
        h.errors = self.errors();
        h.last_error = self.last_error.lock().clone();
    }
}
