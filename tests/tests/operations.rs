//! Operating the cache: `GET /metrics` scraped by a real Prometheus and
//! checked by `promtool`, and `GET /health` and `GET /ready` following a
//! real Redis that starts out down.

use std::sync::Arc;
use std::time::Duration;

use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{Cache, CacheBuilder, cache_service, cached};
use cache_tests::http::{request, start};
use cache_tests::prometheus::{Prometheus, promtool_check};
use serde_json::Value;

const TOKEN: &str = "metrics-token-7";

#[derive(Clone)]
struct Shop;

#[cache_service(name = "shop")]
impl Shop {
    #[cached]
    fn product(&self, id: u64) -> String {
        format!("product {id}")
    }

    #[cached]
    fn flaky(&self, id: u64) -> Result<u64, String> {
        std::thread::sleep(Duration::from_millis(20));
        Err(format!("no {id}"))
    }
}

/// The value of the one sample line of `name` whose labels include every
/// `label="value"` given.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = text.lines().filter(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{'))
            && labels.iter().all(|want| l.contains(want))
    });
    let line = found.next()?;
    assert!(
        found.next().is_none(),
        "more than one {name} line for {labels:?}"
    );
    line.rsplit(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_by_a_real_prometheus() {
    for id in 1..=5 {
        Shop.product(id);
    }
    for id in 1..=3 {
        Shop.product(id);
    }
    assert!(Shop.flaky(1).is_err());
    let addr = start(cache_core::http::router(TOKEN)).await;

    // The token guards the meters; a wrong one learns nothing.
    let (status, _, body) = request(addr, "GET", "/metrics", Some("wrong"), None).await;
    assert_eq!(status, 401);
    assert!(!body.contains("cache_gets_total"), "{body}");
    // Without the token every guarded route answers 401, whatever the
    // method (an outside attack saw 405s reveal which routes exist).
    for path in ["/metrics", "/services", "/history", "/no-such-route"] {
        for method in ["POST", "DELETE", "GET"] {
            let (status, _, _) = request(addr, method, path, None, None).await;
            assert_eq!(status, 401, "{method} {path}");
        }
        if path != "/no-such-route" {
            let (status, head, _) = request(addr, "POST", path, Some(TOKEN), None).await;
            assert_eq!(status, 405, "POST {path}");
            assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
        }
    }
    let (status, head, text) = request(addr, "GET", "/metrics", Some(TOKEN), None).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    let product = [r#"cache="product""#, r#"service="shop""#, r#"tier="l1""#];
    let with = |extra: &'static str| {
        let mut l = product.to_vec();
        l.push(extra);
        l
    };
    assert_eq!(
        sample(&text, "cache_gets_total", &with(r#"result="hit""#)),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "cache_gets_total", &with(r#"result="miss""#)),
        Some(5.0)
    );
    assert_eq!(sample(&text, "cache_puts_total", &product), Some(5.0));
    assert_eq!(sample(&text, "cache_size", &product), Some(5.0));
    assert_eq!(
        sample(&text, "cache_evictions_total", &with(r#"cause="size""#)),
        Some(0.0)
    );
    let failed = [r#"cache="flaky""#, r#"result="failure""#];
    assert_eq!(
        sample(&text, "cache_load_duration_seconds_count", &failed),
        Some(1.0)
    );
    let took = sample(&text, "cache_load_duration_seconds_sum", &failed).unwrap();
    assert!((0.02..5.0).contains(&took), "a 20 ms failure took {took} s");
    assert!(
        text.contains("# TYPE cache_load_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("# HELP cache_gets_total"), "{text}");
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}"));

    // A real Prometheus scrapes it with the token (and fails with a wrong one).
    let prom = Prometheus::start(&[("cache", addr, TOKEN), ("intruder", addr, "wrong")]);
    prom.wait_for(
        r#"cache_gets_total{job="cache",cache="product",result="hit"}"#,
        3.0,
    )
    .await;
    prom.wait_for(r#"up{job="intruder"}"#, 0.0).await;
    prom.wait_for(r#"up{job="cache"}"#, 1.0).await;
    // It follows the counters as they move.
    for id in 1..=4 {
        Shop.product(id);
    }
    prom.wait_for(
        r#"cache_gets_total{job="cache",cache="product",result="hit"}"#,
        7.0,
    )
    .await;
    prom.wait_for(
        r#"cache_load_duration_seconds_count{job="cache",cache="flaky",result="failure"}"#,
        1.0,
    )
    .await;
    assert_eq!(Shop::product_cache().stats().hits, 7);
    let flaky = Shop::flaky_cache().stats();
    assert_eq!((flaky.loads, flaky.load_failures), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_follow_a_backend_that_starts_down() {
    let mut server = cache_tests::RedisServer::start();
    server.kill();
    let store = RedisStore::connect(RedisOptions {
        url: server.url(),
        prefix: "ops".into(),
        timeout_ms: 200,
        ..RedisOptions::default()
    })
    .unwrap();
    let cache: Cache<u64, String> = CacheBuilder::new()
        .name("ops_health")
        .register(true)
        .remote(store.clone(), cache_core::config::Backend::Tiered)
        .build();
    let addr = start(cache_core::http::router(TOKEN)).await;
    let get = |path: &'static str| async move {
        let (status, _, body) = request(addr, "GET", path, None, None).await;
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, v)
    };
    let redis = |v: &Value| {
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == "redis")
            .cloned()
            .unwrap_or_else(|| panic!("no redis backend in {v}"))
    };

    // Never reached: alive, not ready; a call still computes.
    assert_eq!(cache.get_or_insert_with(1, || "one".into()), "one");
    let started = std::time::Instant::now();
    let live = loop {
        let (status, live) = get("/health").await;
        assert_eq!(status, 200, "{live}");
        if !redis(&live)["reachable"].is_null() {
            break live;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no operation ended: {live}"
        );
        cache.invalidate(&2);
        cache.get_or_insert_with(2, || "two".into());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(live["status"], "starting");
    assert_eq!(redis(&live)["reached"], false);
    assert_eq!(redis(&live)["reachable"], false);
    assert!(redis(&live)["errors"].as_u64().unwrap() >= 1, "{live}");
    assert!(redis(&live)["last_error"].is_string(), "{live}");
    let (status, ready) = get("/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);

    // Redis comes up: once reached, ready.
    server.restart();
    let started = std::time::Instant::now();
    loop {
        cache.invalidate(&1);
        cache.get_or_insert_with(1, || "one".into());
        let (status, ready) = get("/ready").await;
        if status == 200 {
            assert_eq!(ready["status"], "ok", "{ready}");
            assert_eq!(redis(&ready)["reached"], true);
            assert_eq!(redis(&ready)["reachable"], true);
            assert_eq!(redis(&ready)["subscribed"], true);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never ready: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Down again: still ready (it was reached), but degraded, and the
    // breaker shows in the meters.
    server.kill();
    let started = std::time::Instant::now();
    loop {
        cache.invalidate(&1);
        cache.get_or_insert_with(1, || "one".into());
        let (status, live) = get("/health").await;
        assert_eq!(status, 200);
        if live["status"] == "degraded" {
            assert_eq!(redis(&live)["reachable"], false, "{live}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never degraded: {live}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = get("/ready").await;
    assert_eq!(status, 200);
    let (_, _, text) = request(addr, "GET", "/metrics", Some(TOKEN), None).await;
    assert!(
        sample(&text, "cache_tier_errors_total", &[r#"backend="redis""#]).unwrap() >= 2.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "cache_backend_up", &[r#"backend="redis""#]),
        Some(0.0)
    );
    // The probes carry no token and no secrets.
    let (_, _, body) = request(addr, "GET", "/health", None, None).await;
    assert!(!body.contains(TOKEN));
    let _keep: Arc<RedisStore> = store;
}

/// Breaks an outside attack found, kept: a counter never goes down when
/// its cache is rebuilt, and a dropped cache's size reads 0.
#[test]
fn meters_survive_a_rebuilt_cache_and_forget_a_dropped_ones_size() {
    let build = || -> Cache<u64, u64> {
        CacheBuilder::new()
            .name("rebuilt")
            .service("ops_meters")
            .register(true)
            .build()
    };
    let hits = |text: &str| {
        sample(
            text,
            "cache_gets_total",
            &[r#"cache="rebuilt""#, r#"result="hit""#],
        )
    };
    let size = |text: &str| sample(text, "cache_size", &[r#"cache="rebuilt""#]);
    let first = build();
    for k in 0..7 {
        first.insert(k, k);
    }
    for _ in 0..5 {
        first.get(&1);
    }
    let text = cache_core::metrics::prometheus_text();
    assert_eq!((hits(&text), size(&text)), (Some(5.0), Some(7.0)));
    drop(first);
    let text = cache_core::metrics::prometheus_text();
    assert_eq!((hits(&text), size(&text)), (Some(5.0), Some(0.0)));
    let second = build();
    second.insert(1, 1);
    second.get(&1);
    let text = cache_core::metrics::prometheus_text();
    assert_eq!(second.stats().hits, 1);
    assert_eq!(
        (hits(&text), size(&text)),
        (Some(6.0), Some(1.0)),
        "counted since start"
    );
}

/// The deployment cache's meters: hits, misses, deploys and the time hits
/// saved, summed over every deployment cache, closed ones included.
#[test]
fn deployment_cache_meters() {
    use cache_device::deploy_cache::Status;
    use cache_device::{DeployCache, DeployCacheConfig, DeployEntry, MethodCacheKey};
    let dir = std::env::temp_dir().join(format!("ops-deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = || {
        let cfg = DeployCacheConfig {
            dir: Some(dir.clone()),
            ..DeployCacheConfig::default()
        };
        DeployCache::open(cfg, cache_core::Clock::System).unwrap()
    };
    let key = MethodCacheKey::new("rp2", "1.27", "read(ch)", "def read(ch): pass");
    let c = open();
    assert!(c.get(&key).is_none());
    c.put(DeployEntry {
        key: key.clone(),
        code: "def read(ch): pass".into(),
        method_name: "read".into(),
        deployed_at: c.now_ms(),
        last_accessed: c.now_ms(),
        access_count: 0,
        deployment_ms: 1500,
        status: Status::Deployed,
        metadata: Default::default(),
    });
    assert!(c.get(&key).is_some());
    assert!(c.get(&key).is_some());
    let meter = |text: &str, name: &str, label: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let text = cache_core::metrics::prometheus_text();
    assert_eq!(
        meter(&text, "cache_deploy_lookups_total{", r#"result="hit""#),
        Some(2.0)
    );
    assert_eq!(
        meter(&text, "cache_deploy_lookups_total{", r#"result="miss""#),
        Some(1.0)
    );
    assert_eq!(meter(&text, "cache_deploys_total", ""), Some(1.0));
    assert_eq!(meter(&text, "cache_deploy_saved_seconds", ""), Some(3.0));
    // Closed and opened again: the totals go on from where they were.
    drop(c);
    let c = open();
    assert!(c.get(&key).is_some(), "the entry was kept on disk");
    let text = cache_core::metrics::prometheus_text();
    assert_eq!(
        meter(&text, "cache_deploy_lookups_total{", r#"result="hit""#),
        Some(3.0)
    );
    assert_eq!(meter(&text, "cache_deploy_saved_seconds", ""), Some(4.5));
    cache_tests::prometheus::promtool_check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
