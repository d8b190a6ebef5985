//! The admin API over HTTP (feature `http`): the service handlers as an axum
//! [`Router`] to serve alone or nest into an application.
//!
//! | method | path | body or query |
//! |---|---|---|
//! | `POST` | `/{service}/cache/clear` | `{"tenant"?}` |
//! | `POST` | `/{service}/cache/delete` | `{"key", "tenant"?}` |
//! | `POST` | `/{service}/cache/revoke` | `{"pattern", "tenant"?}` |
//! | `GET` | `/{service}/cache/stats` | |
//! | `GET` | `/{service}/cache/keys` | `?pattern=&tag=&limit=&tenant=&where.<index>=<term>` |
//!
//! | `GET` | `/` | the dashboard page, no token (it holds no data) |
//! | `GET` | `/history` | hit and miss totals sampled every 2 s, five minutes' worth |
//! | `GET` | `/services` | every service and its caches' names |
//! | `GET` | `/health` | liveness, no token: every backend's state |
//! | `GET` | `/ready` | readiness, no token: 503 until backends were reached |
//! | `GET` | `/metrics` | feature `metrics`: the Prometheus text format |
//!
//! Every other request needs `Authorization: Bearer <token>`; without it, or
//! with a wrong one, the answer is 401. The probes reveal only states. Bad input is a JSON `{"error": ...}` with
//! a 4xx status. Every mutation writes an audit line to tracing (target
//! `cache_core::audit`) naming the caller, the operation and how many
//! entries it removed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};

use crate::registry::{CacheError, registry};

mod dashboard;
mod probes;
pub mod response_cache;

pub use response_cache::ResponseCacheLayer;

/// The largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// The admin routes, requiring `token` as a bearer token. An empty token
/// refuses every request.
pub fn router(token: impl Into<String>) -> Router {
    let token: Arc<str> = token.into().into();
    dashboard::start();
    let r = Router::new()
        .route("/", get(dashboard::page))
        .route("/history", any(dashboard::history))
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready));
    #[cfg(feature = "metrics")]
    let r = r.route("/metrics", any(probes::metrics));
    let r = r.route("/services", any(services));
    r.route("/{service}/cache/{op}", any(handle))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(token)
}

/// The admin routes with the token from configuration (`[admin] token`, or
/// `CACHE_ADMIN__TOKEN`).
pub fn router_from_config() -> Router {
    router(
        crate::config::current()
            .admin
            .token
            .clone()
            .unwrap_or_default(),
    )
}

/// Serves the admin routes on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, token: impl Into<String>) -> std::io::Result<()> {
    serve_on(tokio::net::TcpListener::bind(addr).await?, token).await
}

/// Serves the admin routes on a bound listener until the task is dropped.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    token: impl Into<String>,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(token).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

/// Compares the digests of the two, without an early exit: neither the
/// token's bytes nor its length show in the time taken.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (blake3::hash(a), blake3::hash(b));
    a.as_bytes()
        .iter()
        .zip(b.as_bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Whether the request carries the token: `Authorization: Bearer <token>`,
/// the scheme in any case (RFC 9110 makes it case-insensitive).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some((scheme, given)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
    else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && same(given.trim().as_bytes(), token.as_bytes())
}

fn unauthorized() -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Any other path: a JSON 404 (after the token check, so unauthorized
/// callers learn nothing about the routes).
async fn no_route(
    State(token): State<Arc<str>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if !authorized(&headers, &token) {
        return unauthorized();
    }
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {}; paths are /{{service}}/cache/{{clear|delete|revoke|stats|keys}}",
            uri.path()
        ),
    )
}

/// The answer to a request for a read-only endpoint that needs the token:
/// 401 without it (before anything else, so a caller without it learns
/// nothing of the routes), 405 for a method other than GET.
fn refused(headers: &HeaderMap, token: &str, method: &Method) -> Option<Response> {
    if !authorized(headers, token) {
        return Some(unauthorized());
    }
    if method != Method::GET {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("this endpoint takes GET, not {method}"),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return Some(r);
    }
    None
}

/// Every service and the names of its caches.
async fn services(State(token): State<Arc<str>>, method: Method, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&headers, &token, &method) {
        return r;
    }
    let reg = registry();
    let list: Vec<Value> = reg
        .services()
        .into_iter()
        .map(|s| {
            let mut caches: Vec<String> = reg
                .service_caches(&s)
                .iter()
                .map(|c| c.name().to_owned())
                .collect();
            caches.sort();
            caches.dedup();
            json!({ "name": s, "caches": caches })
        })
        .collect();
    axum::Json(json!({ "services": list })).into_response()
}

fn status_of(e: &CacheError) -> StatusCode {
    match e {
        CacheError::UnknownService(_)
        | CacheError::UnknownPath(_)
        | CacheError::UnknownCache(_) => StatusCode::NOT_FOUND,
        CacheError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn handle(
    State(token): State<Arc<str>>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    method: Method,
    headers: HeaderMap,
    req: Request,
) -> Response {
    if !authorized(&headers, &token) {
        return unauthorized();
    }
    let Path((service, op)) = match path {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("path: {e}")),
    };
    let wants = match op.as_str() {
        "clear" | "delete" | "revoke" => Method::POST,
        "stats" | "keys" => Method::GET,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no operation {op:?}; use clear, delete, revoke (POST) or stats, keys (GET)"
                ),
            );
        }
    };
    if method != wants {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{op} takes {wants}, not {method}"),
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_str(wants.as_str()).expect("a method name is a header value"),
        );
        return r;
    }
    let caller = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "http".to_string(), |c| format!("http:{}", c.0));
    let body = if wants == Method::GET {
        match query_body(req.uri()) {
            Ok(v) => v,
            Err(r) => return r,
        }
    } else {
        let bytes: Bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("body: {e}")),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    return error(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}"));
                }
            }
        }
    };
    let path = format!("{service}/cache/{op}");
    match registry().request_as(&caller, &path, body).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(status_of(&e), e),
    }
}

/// The query string as a JSON object: `limit` as a number, and index
/// terms (`where.language=python`, or `where={"language":"python"}`) as
/// the `where` object. A parameter given twice is an error.
#[allow(clippy::result_large_err)]
fn query_body(uri: &axum::http::Uri) -> Result<Value, Response> {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, m);
    let Query(q) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| bad(format!("query string: {e}")))?;
    let mut obj = serde_json::Map::new();
    let mut terms = serde_json::Map::new();
    for (k, v) in q {
        if let Some(index) = k.strip_prefix("where.") {
            if terms.insert(index.to_string(), json!(v)).is_some() {
                return Err(bad(format!("index {index:?} is given twice")));
            }
            continue;
        }
        let value = match k.as_str() {
            "limit" => match v.parse::<u64>() {
                Ok(n) => json!(n),
                Err(_) => return Err(bad(format!("limit {v:?} is not a whole number"))),
            },
            "where" => match serde_json::from_str::<serde_json::Map<String, Value>>(&v) {
                Ok(m) => {
                    for (index, term) in m {
                        if terms.insert(index.clone(), term).is_some() {
                            return Err(bad(format!("index {index:?} is given twice")));
                        }
                    }
                    continue;
                }
                Err(e) => {
                    return Err(bad(format!(
                        "where must be a JSON object of index terms ({e}), or use where.<index>=<term>"
                    )));
                }
            },
            _ => json!(v),
        };
        if obj.insert(k.clone(), value).is_some() {
            return Err(bad(format!("{k:?} is given twice")));
        }
    }
    if !terms.is_empty() {
        obj.insert("where".into(), Value::Object(terms));
    }
    Ok(Value::Object(obj))
}
