//! The admin API over real HTTP on loopback: auth, every route, bad input
//! as JSON errors with 4xx statuses, audit lines, and nesting.

use std::net::SocketAddr;

use cache_core::{cache_service, cached};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "s3cret-token";

#[derive(Clone)]
struct Shop;

#[cache_service(name = "shop")]
impl Shop {
    #[cached]
    fn product(&self, id: u64) -> String {
        format!("product {id}")
    }
}

/// One request on a fresh connection; returns the status and the JSON body.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, _, payload) = cache_tests::http::request(addr, method, path, token, body).await;
    let json = serde_json::from_str(&payload).unwrap_or_else(|_| json!({ "raw": payload }));
    (status, json)
}

use cache_tests::http::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_over_http() {
    let audit = cache_tests::CapturedLog::default();
    let w = audit.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();

    for id in 1..=5 {
        Shop.product(id);
    }
    let addr = start(cache_core::http::router(TOKEN)).await;

    // Auth.
    let (st, body) = call(addr, "GET", "/shop/cache/stats", None, None).await;
    assert_eq!(st, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    let (st, _) = call(addr, "GET", "/shop/cache/stats", Some("wrong"), None).await;
    assert_eq!(st, 401);
    let (st, _) = call(
        addr,
        "POST",
        "/shop/cache/clear",
        Some("s3cret-tokeN"),
        None,
    )
    .await;
    assert_eq!(st, 401);

    // Reads.
    let (st, body) = call(addr, "GET", "/shop/cache/stats", Some(TOKEN), None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["actions"]["product"]["entries"], 5);
    let (st, body) = call(
        addr,
        "GET",
        "/shop/cache/keys?pattern=product:%5B1-2%5D&limit=10",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["keys"], json!(["product:1", "product:2"]));

    // Mutations.
    let (st, body) = call(
        addr,
        "POST",
        "/shop/cache/delete",
        Some(TOKEN),
        Some(r#"{"key":"product:1"}"#),
    )
    .await;
    assert_eq!((st, body["deleted"].clone()), (200, json!(1)));
    let (st, body) = call(
        addr,
        "POST",
        "/shop/cache/revoke",
        Some(TOKEN),
        Some(r#"{"pattern":"product:[23]"}"#),
    )
    .await;
    assert_eq!((st, body["revoked"].clone()), (200, json!(2)));

    // Bad input: JSON errors with 4xx statuses, and nothing removed.
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        (
            "POST",
            "/shop/cache/revoke",
            Some("{not json"),
            400,
            "malformed JSON",
        ),
        (
            "POST",
            "/shop/cache/delete",
            Some("{}"),
            400,
            "missing field `key`",
        ),
        (
            "POST",
            "/shop/cache/revoke",
            Some(r#"{"pattern":"a[b"}"#),
            400,
            "unclosed",
        ),
        ("POST", "/nosuch/cache/clear", None, 404, "no service named"),
        ("POST", "/shop/cache/explode", None, 404, "no operation"),
        ("GET", "/shop/cache/clear", None, 405, "takes POST"),
        ("POST", "/shop/cache/stats", None, 405, "takes GET"),
        (
            "GET",
            "/shop/cache/keys?limit=lots",
            None,
            400,
            "not a whole number",
        ),
        (
            "GET",
            "/shop/cache/keys?colour=red",
            None,
            400,
            "unknown field",
        ),
    ];
    for (m, p, b, want, text) in cases {
        let (st, body) = call(addr, m, p, Some(TOKEN), *b).await;
        assert_eq!(st, *want, "{m} {p}: {body}");
        let msg = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{m} {p}: no JSON error: {body}"));
        assert!(msg.contains(text), "{m} {p}: {msg}");
    }
    let long = format!(r#"{{"pattern":"{}"}}"#, "x".repeat(5000));
    let (st, body) = call(addr, "POST", "/shop/cache/revoke", Some(TOKEN), Some(&long)).await;
    assert_eq!(st, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("limit"));
    let (_, body) = call(addr, "GET", "/shop/cache/keys", Some(TOKEN), None).await;
    assert_eq!(
        body["keys"],
        json!(["product:4", "product:5"]),
        "bad requests removed nothing"
    );

    // The audit log names the caller, the operation and what was removed.
    let log = audit.text();
    let line = log
        .lines()
        .find(|l| l.contains("cache revoke on shop"))
        .unwrap_or_else(|| panic!("no audit line in:\n{log}"));
    assert!(line.contains("by http:127.0.0.1:"), "{line}");
    assert!(line.contains("2 removed"), "{line}");
    assert!(log.contains("cache delete on shop"), "{log}");

    // Nested into an application's own router.
    let app = axum::Router::new().nest("/admin", cache_core::http::router(TOKEN));
    let addr2 = start(app).await;
    let (st, body) = call(addr2, "POST", "/admin/shop/cache/clear", Some(TOKEN), None).await;
    assert_eq!((st, body["cleared"].clone()), (200, json!(2)));
    assert!(audit.text().contains("cache clear on shop"));

    // No token configured: every request is refused.
    let addr3 = start(cache_core::http::router("")).await;
    let (st, _) = call(addr3, "GET", "/shop/cache/stats", Some(""), None).await;
    assert_eq!(st, 401);
}

/// The scheme is case-insensitive, any other path is a JSON 404 behind the
/// token, and a wrong token of any length is a JSON 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_scheme_routes_and_tokens() {
    let addr = start(cache_core::http::router("s3cret-token")).await;
    let raw = |auth: &'static str, path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: {auth}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    };
    for auth in [
        "bearer s3cret-token",
        "BEARER s3cret-token",
        "Bearer  s3cret-token ",
    ] {
        let (st, body) = raw(auth, "/nosuch/cache/stats").await;
        assert_eq!(st, 404, "{auth}: {body}");
        assert!(body.contains("\"error\""), "{auth}: {body}");
    }
    for (auth, path) in [
        ("Bearer s3cret-tokeN", "/nosuch/cache/stats"),
        ("Bearer s3cret-token-longer", "/nosuch/cache/stats"),
        ("Basic s3cret-token", "/x"),
        ("Bearer s3cret-token-longer", "/not/a/route/at/all"),
    ] {
        let (st, body) = raw(auth, path).await;
        assert_eq!(st, 401, "{auth} {path}: {body}");
        assert!(body.contains("\"error\""), "{auth}: {body}");
    }
    let (st, body) = raw("Bearer s3cret-token", "/not/a/route/at/all").await;
    assert_eq!(st, 404, "{body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error");
    assert!(v["error"].as_str().unwrap().contains("no route"), "{body}");
}

#[derive(Clone)]
struct Catalog;

fn kind_of(v: &str) -> Vec<String> {
    vec![
        if v.ends_with(['0', '2', '4', '6', '8']) {
            "even"
        } else {
            "odd"
        }
        .to_string(),
    ]
}

#[cache_service(name = "catalog_http")]
impl Catalog {
    #[cached(index(kind = kind_of))]
    fn item(&self, id: u64) -> String {
        format!("item {id}")
    }
}

/// `where` over HTTP: `where.<index>=<term>` or `where=<JSON object>` in
/// the keys query string, and bad forms as 400s naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_by_index_terms_over_http() {
    for id in 1..=6 {
        Catalog.item(id);
    }
    let addr = start(cache_core::http::router(TOKEN)).await;
    let get = |p: &'static str| call(addr, "GET", p, Some(TOKEN), None);
    let (st, body) = get("/catalog_http/cache/keys?where.kind=even&limit=2").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["keys"], json!(["item:2", "item:4"]));
    let (st, body) = get("/catalog_http/cache/keys?where=%7B%22kind%22%3A%22odd%22%7D").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["keys"], json!(["item:1", "item:3", "item:5"]));
    let (st, body) = get("/catalog_http/cache/keys?where.kind=odd&pattern=item:%5B12%5D").await;
    assert_eq!((st, body["keys"].clone()), (200, json!(["item:1"])));
    for (p, text) in [
        (
            "/catalog_http/cache/keys?where.kind=odd&where.kind=even",
            "given twice",
        ),
        (
            "/catalog_http/cache/keys?where.colour=red",
            "its indexes: kind",
        ),
        ("/catalog_http/cache/keys?where=odd", "JSON object"),
        ("/catalog_http/cache/keys?limit=1&limit=2", "given twice"),
    ] {
        let (st, body) = get(p).await;
        assert_eq!(st, 400, "{p}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(text), "{p}: {msg}");
    }
}
