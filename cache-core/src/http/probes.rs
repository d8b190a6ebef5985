//! The operator's endpoints: `GET /health` and `GET /ready` (no token, only
//! states), and with feature `metrics` `GET /metrics` (token required) in
//! the Prometheus text format.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Liveness: 200 while the process answers, with every backend's state.
pub(super) async fn health() -> Response {
    axum::Json(crate::health::report(ready_requires_backends())).into_response()
}

/// Readiness: 200 when ready, 503 (same body) while a backend was never
/// reached and `[admin] ready_requires_backends` is on.
pub(super) async fn ready() -> Response {
    let r = crate::health::report(ready_requires_backends());
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(r)).into_response()
}

fn ready_requires_backends() -> bool {
    crate::config::current().admin.ready_requires_backends()
}

/// Every meter, in the Prometheus text format.
#[cfg(feature = "metrics")]
pub(super) async fn metrics(
    axum::extract::State(token): axum::extract::State<std::sync::Arc<str>>,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(r) = super::refused(&headers, &token, &method) {
        return r;
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::prometheus_text(),
    )
        .into_response()
}
