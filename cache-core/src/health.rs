//! Liveness and readiness: the state of every backend the registered caches
//! use, as the admin router's `GET /health` and `GET /ready` report it.

use serde::Serialize;

use crate::registry::registry;
use crate::store::{Health, Remote};

/// The process's cache health.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// `ok` when ready, else `starting` (a backend was never reached) or
    /// `degraded` (a backend's last operation failed, or its breaker is
    /// open; calls compute values meanwhile).
    pub status: &'static str,
    /// Whether the process should take traffic (see
    /// [`ready_requires_backends`](crate::config::AdminConfig::ready_requires_backends)).
    pub ready: bool,
    /// Caches registered.
    pub caches: usize,
    /// Every backend outside the process in use.
    pub backends: Vec<Health>,
}

/// The backends the registered caches use, each once.
pub fn backends() -> Vec<std::sync::Arc<dyn Remote>> {
    let mut seen: Vec<std::sync::Arc<dyn Remote>> = Vec::new();
    let reg = registry();
    for name in reg.names() {
        for c in reg.caches(&name) {
            if let Some((r, _)) = c.remote()
                && !seen.iter().any(|s| {
                    std::ptr::addr_eq(std::sync::Arc::as_ptr(s), std::sync::Arc::as_ptr(&r))
                })
            {
                seen.push(r);
            }
        }
    }
    seen
}

/// The report, with readiness requiring reached backends when
/// `requires_backends`.
pub fn report(requires_backends: bool) -> Report {
    let reg = registry();
    let caches = reg.names().iter().map(|n| reg.caches(n).len()).sum();
    let backends: Vec<Health> = backends().iter().map(|b| b.health()).collect();
    let unreached = backends.iter().any(|h| !h.reached);
    let degraded = backends
        .iter()
        .any(|h| h.breaker_open || h.reachable == Some(false));
    Report {
        status: if unreached {
            "starting"
        } else if degraded {
            "degraded"
        } else {
            "ok"
        },
        ready: !(requires_backends && unreached),
        caches,
        backends,
    }
}
