//! The admin dashboard: one self-contained page (no CDN, no external
//! assets) that holds no data until the operator types the token, and the
//! hit-rate history it charts, sampled in the process.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Serialize;

use crate::registry::registry;

/// The page: markup, style and script in one document.
const PAGE: &str = include_str!("dashboard.html");

/// How often the hit-rate history is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// How many samples it keeps (five minutes' worth).
pub const SAMPLES: usize = 150;

/// `GET /`: the page shell. It needs no token and carries no data; every
/// figure it shows comes from the authenticated endpoints.
pub(super) async fn page() -> Response {
    let mut r = axum::response::Html(PAGE).into_response();
    let h = r.headers_mut();
    // Scripts and styles only from the page itself; fetches only to this
    // origin; never framed.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// One sample: every registered cache's hits and misses so far.
#[derive(Debug, Clone, Copy, Serialize)]
struct Sample {
    /// Milliseconds since the Unix epoch.
    t: u64,
    hits: u64,
    misses: u64,
}

#[derive(Serialize)]
struct History {
    interval_ms: u64,
    capacity: usize,
    samples: Vec<Sample>,
}

fn sample() -> Sample {
    let reg = registry();
    let (mut hits, mut misses) = (0, 0);
    for name in reg.names() {
        for c in reg.caches(&name) {
            let s = c.stats();
            hits += s.hits;
            misses += s.misses;
        }
    }
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Sample { t, hits, misses }
}

/// The samples so far; the first call starts the sampling thread.
fn samples() -> &'static Mutex<VecDeque<Sample>> {
    static SAMPLES_KEPT: OnceLock<Arc<Mutex<VecDeque<Sample>>>> = OnceLock::new();
    SAMPLES_KEPT.get_or_init(|| {
        let kept = Arc::new(Mutex::new(VecDeque::with_capacity(SAMPLES)));
        let k = kept.clone();
        let started = std::thread::Builder::new()
            .name("cache-dashboard-sampler".into())
            .spawn(move || {
                loop {
                    let s = sample();
                    {
                        let mut q = k.lock();
                        if q.len() == SAMPLES {
                            q.pop_front();
                        }
                        q.push_back(s);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            });
        if let Err(e) = started {
            tracing::warn!("the dashboard's hit-rate sampler did not start: {e}");
        }
        kept
    })
}

/// Starts sampling (when the router is built, so the chart has history by
/// the time someone looks).
pub(super) fn start() {
    let _ = samples();
}

/// `GET /history` (token): the samples, oldest first, plus one taken now.
pub(super) async fn history(
    State(token): State<Arc<str>>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = super::refused(&headers, &token, &method) {
        return r;
    }
    let mut list: Vec<Sample> = samples().lock().iter().copied().collect();
    list.push(sample());
    axum::Json(History {
        interval_ms: SAMPLE_EVERY.as_millis() as u64,
        capacity: SAMPLES + 1,
        samples: list,
    })
    .into_response()
}
