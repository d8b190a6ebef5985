//! `cache-admin health` exits 8 while a backend was never reached, and 0
//! once it was.

use std::process::Command;
use std::time::{Duration, Instant};

use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{Cache, CacheBuilder};

#[test]
fn health_exits_8_until_the_backend_is_reached() {
    let mut redis = cache_tests::RedisServer::start();
    redis.kill();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { cache_core::http::serve_on(listener, "t").await });
    let store = RedisStore::connect(RedisOptions {
        url: redis.url(),
        timeout_ms: 200,
        ..RedisOptions::default()
    })
    .unwrap();
    let cache: Cache<u64, u64> = CacheBuilder::new()
        .name("not_ready")
        .register(true)
        .remote(store, cache_core::config::Backend::Tiered)
        .build();
    let health = || {
        let out = Command::new(env!("CARGO_BIN_EXE_cache-admin"))
            .args(["--url", &format!("http://{addr}"), "health"])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = health();
    assert_eq!(code, 8, "{out}");
    assert!(out.starts_with("status starting (ready: no"), "{out}");
    assert!(out.contains("redis"), "{out}");

    redis.restart();
    let started = Instant::now();
    loop {
        cache.invalidate(&1);
        cache.get_or_insert_with(1, || 1);
        let (code, out) = health();
        if code == 0 {
            assert!(out.starts_with("status ok (ready: yes"), "{out}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never ready: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
