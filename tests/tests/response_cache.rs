//! The response-cache layer over a real axum server on loopback: what is
//! stored and what is not, `Vary`, `ETag` and 304, invalidation through the
//! service's handlers, and bodies too large or streaming left alone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, Response, StatusCode, header};
use axum::routing::get;
use cache_core::http::ResponseCacheLayer;
use cache_tests::http::{request_with, start};

/// How many times each route ran.
fn runs() -> &'static Mutex<HashMap<String, u64>> {
    static RUNS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    RUNS.get_or_init(Default::default)
}

fn ran(route: &str) -> u64 {
    runs().lock().unwrap().get(route).copied().unwrap_or(0)
}

fn count(route: &str) {
    *runs().lock().unwrap().entry(route.to_owned()).or_default() += 1;
}

fn with_cc(cc: &'static str, body: impl Into<Body>) -> Response<Body> {
    Response::builder()
        .header(header::CACHE_CONTROL, cc)
        .body(body.into())
        .unwrap()
}

async fn app(service: &str) -> (SocketAddr, ResponseCacheLayer) {
    let layer = ResponseCacheLayer::new(service, 1000).max_body_bytes(64 * 1024);
    let router = Router::new()
        .route(
            "/products/{id}",
            get(|Path(id): Path<String>| async move {
                count("products");
                with_cc("max-age=60", format!("product {id}"))
            }),
        )
        .route(
            "/private",
            get(|| async {
                count("private");
                with_cc("private, max-age=60", "mine")
            }),
        )
        .route(
            "/nostore",
            get(|| async {
                count("nostore");
                with_cc("no-store", "fresh")
            }),
        )
        .route(
            "/shared",
            get(|| async {
                count("shared");
                with_cc("max-age=0, s-maxage=60", "for proxies")
            }),
        )
        .route(
            "/short",
            get(|| async {
                count("short");
                with_cc("max-age=1", "brief")
            }),
        )
        .route(
            "/vary",
            get(|h: HeaderMap| async move {
                count("vary");
                let lang = h
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                let mut r = with_cc("max-age=60", format!("hello in {lang}"));
                r.headers_mut()
                    .insert(header::VARY, "Accept-Language".parse().unwrap());
                r
            }),
        )
        .route(
            "/error",
            get(|| async {
                count("error");
                let mut r = with_cc("max-age=60", "broken");
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }),
        )
        .route(
            "/big",
            get(|| async {
                count("big");
                with_cc("max-age=60", vec![b'x'; 100 * 1024])
            }),
        )
        .route(
            "/stream",
            get(|| async {
                count("stream");
                let chunks = (0..4).map(|i| Ok::<_, std::io::Error>(format!("chunk{i};")));
                with_cc(
                    "max-age=60",
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }),
        )
        .route(
            "/me",
            get(|h: HeaderMap| async move {
                count("me");
                let who = h
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("nobody")
                    .to_owned();
                with_cc("max-age=60", format!("account of {who}"))
            }),
        )
        .route(
            "/login",
            get(|| async {
                count("login");
                let mut r = with_cc("max-age=60", "welcome");
                r.headers_mut()
                    .insert(header::SET_COOKIE, "session=s3cret".parse().unwrap());
                r
            }),
        )
        .route(
            "/host",
            get(|h: HeaderMap| async move {
                count("host");
                let host = h
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                with_cc("max-age=60", format!("site {host}"))
            }),
        )
        .layer(layer.clone());
    (start(router).await, layer)
}

fn x_cache(head: &str) -> &str {
    head.lines()
        .find_map(|l| l.strip_prefix("x-cache: "))
        .unwrap_or("(none)")
}

fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn get_(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    request_with(addr, "GET", path, headers, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_cached_by_http_rules() {
    let (addr, layer) = app("web").await;

    // Stored: the second request does not reach the route.
    let (s, h, b) = get_(addr, "/products/1", &[]).await;
    assert_eq!((s, x_cache(&h), b.as_str()), (200, "MISS", "product 1"));
    let (s, h2, b) = get_(addr, "/products/1", &[]).await;
    assert_eq!((s, x_cache(&h2), b.as_str()), (200, "HIT", "product 1"));
    assert_eq!(ran("products"), 1);
    // Another path or query is another entry.
    let (_, h, b) = get_(addr, "/products/1?colour=red", &[]).await;
    assert_eq!((x_cache(&h), b.as_str()), ("MISS", "product 1"));
    let (_, h, b) = get_(addr, "/products/2", &[]).await;
    assert_eq!((x_cache(&h), b.as_str()), ("MISS", "product 2"));
    assert_eq!(ran("products"), 3);

    // ETag and 304.
    let etag = header_of(&h2, "etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let (s, h, b) = get_(addr, "/products/1", &[("If-None-Match", &etag)]).await;
    assert_eq!((s, x_cache(&h), b.as_str()), (304, "HIT", ""));
    let (s, _, b) = get_(addr, "/products/1", &[("If-None-Match", "\"other\"")]).await;
    assert_eq!((s, b.as_str()), (200, "product 1"));

    // Not stored: private, no-store, an error; s-maxage wins for a shared cache.
    for route in ["private", "nostore", "error"] {
        for _ in 0..2 {
            let (_, h, _) = get_(addr, &format!("/{route}"), &[]).await;
            assert_eq!(x_cache(&h), "MISS", "{route}");
        }
        assert_eq!(ran(route), 2, "{route} ran each time");
    }
    get_(addr, "/shared", &[]).await;
    let (_, h, b) = get_(addr, "/shared", &[]).await;
    assert_eq!(
        (x_cache(&h), b.as_str(), ran("shared")),
        ("HIT", "for proxies", 1)
    );

    // A request's no-cache goes to the route (and refreshes the entry).
    let (_, h, _) = get_(addr, "/products/1", &[("Cache-Control", "no-cache")]).await;
    assert_eq!(x_cache(&h), "MISS");
    assert_eq!(ran("products"), 4);

    // Expiry by max-age.
    get_(addr, "/short", &[]).await;
    let (_, h, _) = get_(addr, "/short", &[]).await;
    assert_eq!(x_cache(&h), "HIT");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, h, _) = get_(addr, "/short", &[]).await;
    assert_eq!(
        (x_cache(&h), ran("short")),
        ("MISS", 2),
        "stale after max-age"
    );

    // Vary: each language its own entry, never another's.
    let fr = [("Accept-Language", "fr")];
    let de = [("Accept-Language", "de")];
    let (_, _, b) = get_(addr, "/vary", &fr).await; // learns the Vary
    assert_eq!(b, "hello in fr");
    let (_, _, b) = get_(addr, "/vary", &fr).await;
    assert_eq!(b, "hello in fr");
    let (_, h, b) = get_(addr, "/vary", &fr).await;
    assert_eq!((x_cache(&h), b.as_str()), ("HIT", "hello in fr"));
    let (_, h, b) = get_(addr, "/vary", &de).await;
    assert_eq!((x_cache(&h), b.as_str()), ("MISS", "hello in de"));
    let (_, h, b) = get_(addr, "/vary", &de).await;
    assert_eq!((x_cache(&h), b.as_str()), ("HIT", "hello in de"));
    let (_, _, b) = get_(addr, "/vary", &[]).await;
    assert_eq!(b, "hello in none");
    let (_, h, b) = get_(addr, "/vary", &fr).await;
    assert_eq!((x_cache(&h), b.as_str()), ("HIT", "hello in fr"));

    // Too large, or streaming: passed through whole, never stored.
    for _ in 0..2 {
        let (s, h, b) = get_(addr, "/big", &[]).await;
        assert_eq!((s, x_cache(&h), b.len()), (200, "MISS", 100 * 1024));
        let (s, h, b) = get_(addr, "/stream", &[]).await;
        assert_eq!(
            (s, x_cache(&h), b.as_str()),
            (200, "MISS", "chunk0;chunk1;chunk2;chunk3;")
        );
    }
    assert_eq!((ran("big"), ran("stream")), (2, 2));

    // Invalidation through the service's handlers, by path pattern.
    let before = ran("products");
    let out = cache_core::registry()
        .request(
            "web/cache/revoke",
            serde_json::json!({"pattern": "/products/*"}),
        )
        .await
        .unwrap();
    assert_eq!(out["revoked"], 3, "{out}");
    let (_, h, _) = get_(addr, "/products/1", &[]).await;
    assert_eq!(x_cache(&h), "MISS");
    assert_eq!(ran("products"), before + 1);
    let keys = cache_core::registry()
        .request("web/cache/keys", serde_json::json!({"pattern": "/vary*"}))
        .await
        .unwrap();
    assert_eq!(
        keys["keys"],
        serde_json::json!([
            "/vary\nhost: localhost\naccept-language:",
            "/vary\nhost: localhost\naccept-language: de",
            "/vary\nhost: localhost\naccept-language: fr"
        ])
    );
    let stats = layer.cache().stats();
    assert!(stats.hits >= 8, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_response_never_reaches_another() {
    let (addr, _layer) = app("web_users").await;
    // Authenticated and not marked public: each user's own, every time.
    let (_, _, a) = get_(addr, "/me", &[("Authorization", "Bearer alice")]).await;
    let (_, h, b) = get_(addr, "/me", &[("Authorization", "Bearer bob")]).await;
    assert_eq!(
        (a.as_str(), b.as_str(), x_cache(&h)),
        ("account of Bearer alice", "account of Bearer bob", "MISS")
    );
    let (_, _, anon) = get_(addr, "/me", &[]).await;
    assert_eq!(anon, "account of nobody");
    // A response that sets a cookie is never handed to the next caller.
    for _ in 0..2 {
        let (_, h, _) = get_(addr, "/login", &[]).await;
        assert_eq!(x_cache(&h), "MISS");
        assert!(h.contains("session=s3cret"));
    }
    assert_eq!(ran("login"), 2);
    // Virtual hosts are apart.
    let (_, _, a) = get_(addr, "/host", &[("Host", "a.example")]).await;
    let (_, _, b) = get_(addr, "/host", &[("Host", "b.example")]).await;
    let (_, h, a2) = get_(addr, "/host", &[("Host", "a.example")]).await;
    assert_eq!(
        (a.as_str(), b.as_str(), a2.as_str(), x_cache(&h)),
        ("site a.example", "site b.example", "site a.example", "HIT")
    );
}

/// A body that promises 10 bytes, sends 4, then fails.
struct Broken(bool);

impl axum::body::HttpBody for Broken {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if !self.0 {
            self.0 = true;
            let part = axum::body::Bytes::from_static(b"part");
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(part))));
        }
        std::task::Poll::Ready(Some(Err(std::io::Error::other("boom"))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(10)
    }
}

/// Breaks an outside attack found, kept: an absolute-form target, header
/// lines that join to the same text, a body that fails half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_poisons_anothers_entry() {
    let router = Router::new()
        .route(
            "/abs",
            get(|uri: axum::http::Uri| async move {
                count("abs");
                with_cc("max-age=60", format!("link base: {uri}"))
            }),
        )
        .route(
            "/multi",
            get(|h: HeaderMap| async move {
                let values: Vec<&str> = h
                    .get_all("x-v")
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                let mut r = with_cc("max-age=60", format!("values {values:?}"));
                r.headers_mut().insert(header::VARY, "x-v".parse().unwrap());
                r
            }),
        )
        .route(
            "/broken",
            get(|| async { with_cc("max-age=60", Body::new(Broken(false))) }),
        )
        .layer(ResponseCacheLayer::new("web_poison", 100));
    let addr = start(router).await;

    get_(addr, "/abs", &[]).await;
    let (_, h, b) = get_(addr, "http://evil.example/abs", &[]).await;
    assert_eq!(
        (x_cache(&h), b.as_str()),
        ("MISS", "link base: http://evil.example/abs")
    );
    let (_, h, b) = get_(addr, "/abs", &[]).await;
    assert_eq!((x_cache(&h), b.as_str()), ("HIT", "link base: /abs"));
    assert_eq!(
        ran("abs"),
        2,
        "the route ran for the plain and the absolute-form request only"
    );

    let split = [("x-v", "a"), ("x-v", "b"), ("x-v", "c")];
    let joined = [("x-v", "a"), ("x-v", "b c")];
    get_(addr, "/multi", &joined).await; // learns the Vary
    get_(addr, "/multi", &joined).await;
    let (_, _, b) = get_(addr, "/multi", &split).await;
    assert_eq!(b, r#"values ["a", "b", "c"]"#);
    let (_, h, b) = get_(addr, "/multi", &joined).await;
    assert_eq!((x_cache(&h), b.as_str()), ("HIT", r#"values ["a", "b c"]"#));

    let (s, h, _) = get_(addr, "/broken", &[]).await;
    assert_eq!(s, 502);
    assert_eq!(header_of(&h, "cache-control"), Some("no-store"), "{h}");
    let (s, _, _) = get_(addr, "/broken", &[]).await;
    assert_eq!(s, 502, "a failed body is never stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_its_own_responses() {
    let layer = ResponseCacheLayer::new("web_tenants", 100).tenant_from(|p| {
        match p.headers.get("x-tenant").and_then(|v| v.to_str().ok()) {
            Some("a") => cache_core::namespace::tenant_id("a"),
            Some("b") => cache_core::namespace::tenant_id("b"),
            _ => cache_core::namespace::TenantId::NONE,
        }
    });
    let router = Router::new()
        .route(
            "/t",
            get(|h: HeaderMap| async move {
                let t = h
                    .get("x-tenant")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                with_cc("max-age=60", format!("for {t}"))
            }),
        )
        .layer(layer);
    let addr = start(router).await;
    let a = [("x-tenant", "a")];
    let b = [("x-tenant", "b")];
    get_(addr, "/t", &a).await;
    let (_, h, body) = get_(addr, "/t", &b).await;
    assert_eq!(
        (x_cache(&h), body.as_str()),
        ("MISS", "for b"),
        "b never gets a's"
    );
    let (_, h, body) = get_(addr, "/t", &a).await;
    assert_eq!((x_cache(&h), body.as_str()), ("HIT", "for a"));
    // A revoke for tenant a leaves b's entry.
    let out = cache_core::registry()
        .request(
            "web_tenants/cache/revoke",
            serde_json::json!({"pattern": "/t*", "tenant": "a"}),
        )
        .await
        .unwrap();
    assert_eq!(out["revoked"], 1, "{out}");
    let (_, h, _) = get_(addr, "/t", &a).await;
    assert_eq!(x_cache(&h), "MISS");
    let (_, h, body) = get_(addr, "/t", &b).await;
    assert_eq!((x_cache(&h), body.as_str()), ("HIT", "for b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_the_route_once() {
    let layer = ResponseCacheLayer::new("web_flight", 100);
    let router = Router::new()
        .route(
            "/slow",
            get(|| async {
                count("slow");
                tokio::time::sleep(Duration::from_millis(200)).await;
                with_cc("max-age=60", "slow")
            }),
        )
        .layer(layer);
    let addr = start(router).await;
    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { get_(addr, "/slow", &[]).await }))
        .collect();
    for c in calls {
        let (s, _, b) = c.await.unwrap();
        assert_eq!((s, b.as_str()), (200, "slow"));
    }
    assert_eq!(ran("slow"), 1);
}

/// Two nodes over one real Redis: a response one node stored serves the
/// other, a revoke on one reaches both, and a value in Redis that no longer
/// decodes is a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_responses_through_redis() {
    use cache_core::redis::{RedisOptions, RedisStore};
    let server = cache_tests::RedisServer::start();
    let store = || {
        RedisStore::connect(RedisOptions {
            url: server.url(),
            prefix: "rc".into(),
            ..RedisOptions::default()
        })
        .unwrap()
    };
    let (sa, sb) = (store(), store());
    let mode = cache_core::config::Backend::Tiered;
    let a = ResponseCacheLayer::with_remote("web_tier", 100, sa.clone(), mode.clone());
    let b = ResponseCacheLayer::__unregistered_with_remote("web_tier", 100, sb.clone(), mode);
    let node = |layer: ResponseCacheLayer, name: &'static str| {
        Router::new()
            .route(
                "/p/{id}",
                get(move |Path(id): Path<String>| async move {
                    count(name);
                    with_cc("max-age=60", format!("p{id} from {name}"))
                }),
            )
            .layer(layer)
    };
    let (addr_a, addr_b) = (
        start(node(a.clone(), "node_a")).await,
        start(node(b.clone(), "node_b")).await,
    );
    let started = std::time::Instant::now();
    while !(sa.is_subscribed() && sb.is_subscribed()) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (_, h, body) = get_(addr_a, "/p/1", &[]).await;
    assert_eq!((x_cache(&h), body.as_str()), ("MISS", "p1 from node_a"));
    let (_, h, body) = get_(addr_b, "/p/1", &[]).await;
    assert_eq!(
        (x_cache(&h), body.as_str()),
        ("HIT", "p1 from node_a"),
        "B served A's"
    );
    assert_eq!(ran("node_b"), 0);
    let etag = header_of(&h, "etag").unwrap().to_owned();
    let (s, _, _) = get_(addr_b, "/p/1", &[("If-None-Match", &etag)]).await;
    assert_eq!(s, 304);

    // A revoke on A reaches B's own copy and Redis.
    let out = cache_core::registry()
        .request(
            "web_tier/cache/revoke",
            serde_json::json!({"pattern": "/p/*"}),
        )
        .await
        .unwrap();
    assert_eq!(out["revoked"], 1, "{out}");
    let started = std::time::Instant::now();
    loop {
        let (_, h, body) = get_(addr_b, "/p/1", &[]).await;
        if body == "p1 from node_b" {
            assert_eq!(x_cache(&h), "MISS");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B still serves {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A value in Redis that no longer decodes is a miss, never garbage.
    get_(addr_a, "/p/2", &[]).await;
    let key = (
        cache_core::namespace::TenantId::NONE,
        "/p/2\nhost: localhost".to_owned(),
    );
    let redis_key = a.cache().remote_key(&key).expect("a remote key");
    assert_eq!(
        server.cli(&["EXISTS", &redis_key]).trim(),
        "1",
        "{redis_key}"
    );
    server.cli(&["SET", &redis_key, "not a response"]);
    let (_, h, body) = get_(addr_b, "/p/2", &[]).await;
    assert_eq!((x_cache(&h), body.as_str()), ("MISS", "p2 from node_b"));
}
