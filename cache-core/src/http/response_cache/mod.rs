//! Whole-response caching for axum routes: a tower [`Layer`] over this
//! runtime's [`Cache`], so responses get the same single-flight, stats,
//! registry and invalidation as any cached function. `revoke` by a path
//! pattern (`{service}/cache/revoke {"pattern": "/products/*"}`) drops them.
//!
//! - **The key** is the path and query, plus the request's `Host` and its
//!   values of the headers the response named in `Vary` (learned per path
//!   from the last response). Its text is the path and query, then
//!   `\n{header}: {value}` per header line (`\n{header}:` for none): a path
//!   has no newline and neither has a header value, so two requests share a
//!   key only when they agree on all of it. Only origin-form targets
//!   (`GET /path`) are cached; an absolute-form one (`GET http://host/path`)
//!   goes to the route and is not stored.
//! - **Users' responses stay theirs:** a request with `Authorization` is
//!   stored only when the response allows it (`public`, `s-maxage`,
//!   `must-revalidate`), a response that sets a cookie never is, and the
//!   stored request keeps no credentials.
//! - **`Cache-Control`** is interpreted by `http-cache-semantics`
//!   (RFC 9111, as a shared cache): `no-store` and `private` responses are
//!   not stored, `s-maxage` wins over `max-age`, a stale entry is loaded
//!   again, and a request with `no-cache` goes to the route (its answer is
//!   not stored). A response whose
//!   `Vary` is `*` is never stored.
//! - **Tiers:** [`ResponseCacheLayer::with_remote`] (or the service's
//!   configuration) shares responses between nodes through a store outside
//!   the process; they travel as bytes and headers, and each node rebuilds
//!   the policy.
//! - **Tenants:** each request's tenant (the task's scope, or
//!   [`ResponseCacheLayer::tenant_from`]) has its own entries.
//! - **Validators:** a response without an `ETag` gets one (a digest of its
//!   body), and `If-None-Match` with it is answered 304.
//! - **`x-cache: HIT`** when the route did not run, `MISS` otherwise.
//! - **Only `GET` requests and `200` responses** with a known length of at
//!   most `max_body_bytes` (default 1 MiB) are stored. Larger or streaming
//!   bodies pass through untouched and unbuffered.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header,
};
use http_cache_semantics::{BeforeRequest, CachePolicy};
use parking_lot::RwLock;
use tower_layer::Layer;
use tower_service::Service;

use crate::cache::{Cache, CacheBuilder};
use crate::namespace::{TenantId, current_tenant};

/// How many paths' `Vary` header names are remembered at most.
const MAX_LEARNED_PATHS: usize = 10_000;

/// Bodies up to this size are stored unless configured otherwise.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

mod key;
mod wire;

use key::{bypasses, etag_of, key_of, not_modified, vary_of};

/// A stored response.
#[derive(Debug)]
pub struct Stored {
    policy: CachePolicy,
    /// What the policy was built from: the request as kept (no
    /// credentials), the response's headers, and when it arrived.
    uri: String,
    kept_headers: HeaderMap,
    headers: HeaderMap,
    at: SystemTime,
    body: Bytes,
    etag: HeaderValue,
}

/// What the cache holds per key; it travels to a remote tier as plain
/// bytes and headers, and its policy is rebuilt from them.
#[derive(Debug, Clone)]
pub struct Entry(Arc<Stored>);

impl std::ops::Deref for Entry {
    type Target = Stored;
    fn deref(&self) -> &Stored {
        &self.0
    }
}

/// A key: the tenant, and the key text.
pub type Key = (TenantId, String);

struct Shared {
    cache: Cache<Key, Entry>,
    max_body: usize,
    tenant_of: Option<fn(&axum::http::request::Parts) -> TenantId>,
    /// Per path, the header names its last response varied on.
    vary: RwLock<std::collections::HashMap<String, Vec<HeaderName>>>,
}

/// The layer: put it on an axum `Router` with `.layer(..)`.
#[derive(Clone)]
pub struct ResponseCacheLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("cache", &self.shared.cache.name())
            .field("max_body", &self.shared.max_body)
            .finish()
    }
}

impl ResponseCacheLayer {
    /// A layer whose cache is `responses` in `service`, holding up to
    /// `capacity` responses, registered so the service's handlers (stats,
    /// keys, delete, revoke, clear) reach it.
    pub fn new(service: &str, capacity: usize) -> Self {
        Self::build(service, capacity, None, true)
    }

    /// [`ResponseCacheLayer::new`] with a tier outside the process: the
    /// responses one node stored serve the others (`Backend::Tiered` keeps
    /// them in the process too, `Backend::Redis` only outside), and an
    /// invalidation reaches every node. The service's configuration can
    /// attach one too (`[services.<service>.actions.responses] backend`).
    pub fn with_remote(
        service: &str,
        capacity: usize,
        remote: Arc<dyn crate::store::Remote>,
        mode: crate::config::Backend,
    ) -> Self {
        Self::build(service, capacity, Some((remote, mode)), true)
    }

    /// A second node in the same process (for tests): its cache is not
    /// registered, as one name in one service is one cache per process.
    #[doc(hidden)]
    pub fn __unregistered_with_remote(
        service: &str,
        capacity: usize,
        remote: Arc<dyn crate::store::Remote>,
        mode: crate::config::Backend,
    ) -> Self {
        Self::build(service, capacity, Some((remote, mode)), false)
    }

    fn build(
        service: &str,
        capacity: usize,
        remote: Option<(Arc<dyn crate::store::Remote>, crate::config::Backend)>,
        register: bool,
    ) -> Self {
        let mut b = CacheBuilder::with_render(|k: &Key, out: &mut String| out.push_str(&k.1))
            .tenant_of(|k| k.0)
            .name("responses")
            .service(service)
            .capacity(capacity)
            .remote_codec(Some(crate::codec::RemoteCodec::postcard()))
            .register(register);
        if let Some((r, mode)) = remote {
            b = b.remote(r, mode);
        }
        let cache = b.build();
        ResponseCacheLayer {
            shared: Arc::new(Shared {
                cache,
                max_body: DEFAULT_MAX_BODY,
                tenant_of: None,
                vary: Default::default(),
            }),
        }
    }

    /// Stores bodies up to `bytes` long (default 1 MiB).
    pub fn max_body_bytes(self, bytes: usize) -> Self {
        let shared = Arc::try_unwrap(self.shared).unwrap_or_else(|_| {
            panic!("max_body_bytes is set before the layer is cloned onto a router")
        });
        ResponseCacheLayer {
            shared: Arc::new(Shared {
                max_body: bytes,
                ..shared
            }),
        }
    }

    /// Takes each request's tenant from `f` (say, from a verified claim)
    /// instead of the task's scope ([`current_tenant`]): each tenant's
    /// responses are its own, and the service's handlers reach them with
    /// `"tenant"`. Map only values you trust: every tenant name is interned.
    pub fn tenant_from(self, f: fn(&axum::http::request::Parts) -> TenantId) -> Self {
        let shared = Arc::try_unwrap(self.shared).unwrap_or_else(|_| {
            panic!("tenant_from is set before the layer is cloned onto a router")
        });
        ResponseCacheLayer {
            shared: Arc::new(Shared {
                tenant_of: Some(f),
                ..shared
            }),
        }
    }

    /// The cache behind the layer (its stats, keys and invalidation).
    pub fn cache(&self) -> &Cache<Key, Entry> {
        &self.shared.cache
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCacheService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ResponseCacheService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`ResponseCacheLayer`] wraps a route in.
#[derive(Clone)]
pub struct ResponseCacheService<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for ResponseCacheService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was made ready serves this call.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let shared = self.shared.clone();
        Box::pin(async move { Ok(serve(shared, inner, req).await) })
    }
}

/// What a load produced that is not stored: the response, untouched.
struct PassThrough(Response<Body>);

async fn serve<S>(shared: Arc<Shared>, inner: S, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let mut inner = inner;
    // Only origin-form GETs (`GET /path`): an absolute-form target
    // (`GET http://other/path`) names an authority the key does not hold.
    if req.method() != Method::GET
        || req.uri().scheme().is_some()
        || req.uri().authority().is_some()
    {
        return tagged(call(&mut inner, req).await, "MISS");
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let vary = shared
        .vary
        .read()
        .get(req.uri().path())
        .cloned()
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let tenant = shared.tenant_of.map_or_else(current_tenant, |f| f(&parts));
    let key = (tenant, key_of(&path, &vary, &parts.headers));
    let now = SystemTime::now();
    if !bypasses(&parts.headers)
        && let Some(hit) = shared.cache.get(&key)
    {
        if let BeforeRequest::Fresh(head) = hit.policy.before_request(&parts, now) {
            return respond(head, &hit, &parts.headers, "HIT");
        }
        // Stale, or not this request's variant: load it again.
        shared.cache.invalidate(&key);
    }
    let ran = AtomicBool::new(false);
    let bypass = bypasses(&parts.headers);
    let load = {
        let (ran, inner, shared, vary) = (&ran, &mut inner, &shared, &vary);
        let sent = parts.clone();
        async move {
            ran.store(true, Ordering::Relaxed);
            let resp = call(inner, Request::from_parts(sent.clone(), body)).await;
            store_or_pass(shared, &sent, vary, resp, now).await
        }
    };
    let loaded = if bypass {
        load.await
    } else {
        shared.cache.get_or_try_insert_with_async(key, load).await
    };
    let label = if ran.load(Ordering::Relaxed) {
        "MISS"
    } else {
        "HIT"
    };
    match loaded {
        Ok(stored) => {
            let head = match stored.policy.before_request(&parts, now) {
                BeforeRequest::Fresh(head) => head,
                // It was fresh when stored; only a step of the clock makes
                // it stale here. The route just made it: serve it once.
                BeforeRequest::Stale { .. } => {
                    let mut r = Response::new(());
                    *r.headers_mut() = stored.headers.clone();
                    r.into_parts().0
                }
            };
            respond(head, &stored, &parts.headers, label)
        }
        Err(PassThrough(resp)) => tagged(resp, "MISS"),
    }
}

fn parts_for(headers: &HeaderMap, path: &str) -> axum::http::request::Parts {
    let mut r = Request::get(path)
        .body(())
        .expect("a path and query from a URI")
        .into_parts()
        .0;
    r.headers = headers.clone();
    r
}

async fn call<S>(inner: &mut S, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    match std::future::poll_fn(|cx| inner.poll_ready(cx)).await {
        Ok(()) => {}
        Err(never) => match never {},
    }
    match inner.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Stores a response that may be stored; passes any other through.
async fn store_or_pass(
    shared: &Shared,
    req: &axum::http::request::Parts,
    keyed_on: &[HeaderName],
    resp: Response<Body>,
    now: SystemTime,
) -> Result<Entry, PassThrough> {
    // A response that sets a cookie is one user's, whatever it says.
    if resp.status() != StatusCode::OK || resp.headers().contains_key(header::SET_COOKIE) {
        return Err(PassThrough(resp));
    }
    let Some(vary) = vary_of(resp.headers()) else {
        return Err(PassThrough(resp));
    };
    if vary != keyed_on {
        // Keyed on other headers than the route varies on: learn them and
        // store nothing under this key.
        let mut learned = shared.vary.write();
        // Bounded: paths are the client's to choose. Forgetting costs one
        // unstored response per path, never a wrong one.
        if learned.len() >= MAX_LEARNED_PATHS {
            learned.clear();
        }
        learned.insert(req.uri.path().to_owned(), vary);
        return Err(PassThrough(resp));
    }
    match resp.body().size_hint().exact() {
        Some(n) if n as usize <= shared.max_body => {}
        _ => return Err(PassThrough(resp)),
    }
    let (mut head, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, shared.max_body).await {
        Ok(b) => b,
        Err(e) => {
            // Nothing of the route's answer (its caching headers included)
            // goes on: a fresh 502 that no cache downstream keeps.
            tracing::debug!("response cache: a body failed while read: {e}");
            drop(head);
            let mut r = Response::new(Body::from("the response body failed"));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Err(PassThrough(r));
        }
    };
    let etag = match head.headers.get(header::ETAG) {
        Some(e) => e.clone(),
        None => {
            let e = etag_of(&bytes);
            head.headers.insert(header::ETAG, e.clone());
            e
        }
    };
    // The policy keeps only what it needs of the request: its host, the
    // headers the response varies on, the request's own cache directives,
    // and whether it was authenticated (never the credentials).
    let mut kept = parts_for(
        &HeaderMap::new(),
        req.uri.path_and_query().map_or("/", |p| p.as_str()),
    );
    for name in vary
        .iter()
        .chain([&header::HOST, &header::CACHE_CONTROL, &header::PRAGMA])
    {
        for v in req.headers.get_all(name) {
            kept.headers.append(name.clone(), v.clone());
        }
    }
    if req.headers.contains_key(header::AUTHORIZATION) {
        kept.headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("(withheld)"),
        );
    }
    let policy = CachePolicy::new_options(&kept, &head, now, Default::default());
    if !policy.is_storable() || policy.time_to_live(now) == Duration::ZERO {
        return Err(PassThrough(Response::from_parts(head, Body::from(bytes))));
    }
    Ok(Entry(Arc::new(Stored {
        policy,
        uri: kept.uri.to_string(),
        kept_headers: kept.headers,
        headers: head.headers,
        at: now,
        body: bytes,
        etag,
    })))
}

fn respond(
    mut head: axum::http::response::Parts,
    stored: &Stored,
    req_headers: &HeaderMap,
    label: &'static str,
) -> Response<Body> {
    head.headers.insert(header::ETAG, stored.etag.clone());
    head.headers
        .insert("x-cache", HeaderValue::from_static(label));
    if not_modified(req_headers, &stored.etag) {
        head.status = StatusCode::NOT_MODIFIED;
        head.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(head, Body::empty());
    }
    head.status = StatusCode::OK;
    Response::from_parts(head, Body::from(stored.body.clone()))
}

fn tagged(mut r: Response<Body>, label: &'static str) -> Response<Body> {
    r.headers_mut()
        .insert("x-cache", HeaderValue::from_static(label));
    r
}
