//! L1/L2 tiering across two independent nodes (separate clients, separate
//! L1s) on a real `redis-server`, and calls that stay correct while Redis is
//! killed and restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::codec::RemoteCodec;
use cache_core::config::Backend;
use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{Cache, TenantId};
use cache_tests::RedisServer;

fn node(server: &RedisServer, mode: Backend) -> (Cache<(TenantId, u64), String>, Arc<RedisStore>) {
    node_with(server, mode, None)
}

fn node_with(
    server: &RedisServer,
    mode: Backend,
    lock_ms: Option<u64>,
) -> (Cache<(TenantId, u64), String>, Arc<RedisStore>) {
    let store = RedisStore::connect(RedisOptions {
        url: server.url(),
        prefix: "two".into(),
        breaker_after: 2,
        breaker_cooldown_ms: 200,
        // Generous: the first operation also connects, on two busy cores.
        timeout_ms: 300,
        lock_ms,
        ..RedisOptions::default()
    })
    .unwrap();
    let cache: Cache<(TenantId, u64), String> =
        cache_core::CacheBuilder::with_render(|k: &(TenantId, u64), out| {
            out.push_str(&format!("get_user:{}", k.1))
        })
        .name("get_user")
        .key_text_prefix("get_user:")
        .service("user")
        .tenant_of(|k| k.0)
        .remote_codec(Some(RemoteCodec::postcard()))
        .build();
    cache.attach_remote(store.clone(), mode);
    (cache, store)
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

const K: (TenantId, u64) = (TenantId::NONE, 1);

#[test]
fn two_nodes_share_l2_and_invalidations() {
    let server = RedisServer::start();
    let (a, sa) = node(&server, Backend::Tiered);
    let (b, sb) = node(&server, Backend::Tiered);
    eventually("both nodes to subscribe", || {
        sa.is_subscribed() && sb.is_subscribed()
    });
    let computed = AtomicUsize::new(0);
    let load = |v: &str| {
        computed.fetch_add(1, Ordering::SeqCst);
        v.to_string()
    };

    // A value written by A is an L2 hit on B.
    assert_eq!(a.get_or_insert_with(K, || load("from A")), "from A");
    assert_eq!(server.cli(&["KEYS", "*"]).trim(), "two:user::get_user:1");
    assert_eq!(b.get_or_insert_with(K, || load("from B")), "from A");
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    assert_eq!(sb.stats().hits, 1);
    assert!(b.contains_key(&K), "the L2 hit filled B's L1");

    // A revokes: B's L1 drops the key, and B's next call misses.
    assert_eq!(a.revoke_str("get_user:*").unwrap(), 1);
    eventually("B to drop its L1 entry", || !b.contains_key(&K));
    assert_eq!(b.get_or_insert_with(K, || load("from B")), "from B");
    assert_eq!(computed.load(Ordering::SeqCst), 2);
    assert!(sa.stats().invalidations_received == 0 && sb.stats().invalidations_received >= 1);

    // Delete by key, and clear, cross too.
    eventually("A to drop its L1 entry", || {
        !a.contains_key(&K) || a.get(&K).as_deref() == Some("from B")
    });
    assert_eq!(
        a.get_or_insert_with(K, || load("unused")),
        "from B",
        "an L2 hit on A"
    );
    assert!(b.invalidate(&K));
    eventually("A to drop get_user:1", || !a.contains_key(&K));
    b.get_or_insert_with((TenantId::NONE, 2), || load("two"));
    a.get_or_insert_with((TenantId::NONE, 2), || load("unused"));
    a.clear();
    eventually("B to clear", || b.is_empty());
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0");
}

#[test]
fn redis_only_keeps_nothing_in_process() {
    let server = RedisServer::start();
    let (c, s) = node(&server, Backend::Redis);
    c.get_or_insert_with(K, || "v".to_string());
    assert!(c.is_empty(), "no L1 in redis mode");
    assert_eq!(c.get_or_insert_with(K, || "other".to_string()), "v");
    assert_eq!(s.stats().hits, 1);
}

#[test]
fn calls_stay_correct_while_redis_is_down_and_use_it_again_after() {
    let mut server = RedisServer::start();
    let (c, s) = node(&server, Backend::Tiered);
    let computed = AtomicUsize::new(0);
    let load = |i: u64| {
        computed.fetch_add(1, Ordering::SeqCst);
        format!("v{i}")
    };
    c.get_or_insert_with(K, || load(1));

    server.kill();
    for i in 10..30 {
        let t = Instant::now();
        assert_eq!(
            c.get_or_insert_with((TenantId::NONE, i), || load(i)),
            format!("v{i}")
        );
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "a call waited {:?}",
            t.elapsed()
        );
    }
    assert_eq!(c.get(&K).as_deref(), Some("v1"), "L1 still serves");
    assert!(s.stats().errors >= 1 && s.breaker_open());

    server.restart();
    // L2 hits resume within a few seconds: a value written after the restart
    // is found in Redis by a fresh lookup.
    let t = Instant::now();
    loop {
        c.clear();
        c.get_or_insert_with((TenantId::NONE, 99), || load(99));
        if server.cli(&["EXISTS", "two:user::get_user:99"]).trim() == "1" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "redis is back but unused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another node now finds values that this one writes.
    c.get_or_insert_with((TenantId::NONE, 100), || load(100));
    let (other, so) = node(&server, Backend::Tiered);
    assert_eq!(
        other.get_or_insert_with((TenantId::NONE, 100), || "recomputed".into()),
        "v100"
    );
    assert_eq!(so.stats().hits, 1, "an L2 hit after the restart");
}

#[test]
fn a_lock_across_nodes_computes_a_missed_key_once() {
    let server = RedisServer::start();
    let nodes: Vec<_> = (0..3)
        .map(|_| node_with(&server, Backend::Tiered, Some(2000)).0)
        .collect();
    let computed = AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(nodes.len());
    let values: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| {
                s.spawn(|| {
                    barrier.wait();
                    n.get_or_insert_with((TenantId::NONE, 5), || {
                        computed.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        "once".to_string()
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(values, vec!["once"; 3]);
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "three nodes, one computation"
    );
    assert_eq!(
        server.cli(&["KEYS", "two:lock:*"]).trim(),
        "",
        "the lock was released"
    );

    // Without the lock, each node computes for itself.
    let free: Vec<_> = (0..3).map(|_| node(&server, Backend::Tiered).0).collect();
    let computed = AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(free.len());
    std::thread::scope(|s| {
        for n in &free {
            s.spawn(|| {
                barrier.wait();
                n.get_or_insert_with((TenantId::NONE, 6), || {
                    computed.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    "each".to_string()
                })
            });
        }
    });
    assert_eq!(computed.load(Ordering::SeqCst), 3);
}

#[test]
fn invalidations_cross_nodes_again_after_redis_restarts() {
    let mut server = RedisServer::start();
    let (a, sa) = node(&server, Backend::Tiered);
    let (b, sb) = node(&server, Backend::Tiered);
    eventually("both nodes to subscribe", || {
        sa.is_subscribed() && sb.is_subscribed()
    });
    server.kill();
    server.restart();
    // Both nodes reconnect and resubscribe by themselves; wait until a value
    // written by A is an L2 hit on B again.
    let t = Instant::now();
    loop {
        a.clear();
        b.clear();
        a.get_or_insert_with(K, || "A".into());
        if b.get_or_insert_with(K, || "B".into()) == "A" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no L2 hits after the restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Invalidations cross again: B's L1 copy goes when A revokes.
    let t = Instant::now();
    loop {
        b.get_or_insert_with(K, || "B".into());
        a.revoke_str("get_user:1").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        if !b.contains_key(&K) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "B was not resubscribed"
        );
    }
}

#[tokio::test]
async fn credentials_come_from_the_url() {
    let server = RedisServer::start_with_password("s3cret");
    let url = format!("redis://:s3cret@127.0.0.1:{}", server.port());
    let ok = RedisStore::connect(RedisOptions {
        url,
        prefix: "auth".into(),
        ..RedisOptions::default()
    })
    .unwrap();
    use cache_core::Store;
    ok.set("n", "k", b"v".to_vec(), None).await.unwrap();
    assert_eq!(ok.get("n", "k").await.unwrap(), Some(b"v".to_vec()));
    let wrong = RedisStore::connect(RedisOptions {
        url: format!("redis://:nope@127.0.0.1:{}", server.port()),
        prefix: "auth".into(),
        ..RedisOptions::default()
    })
    .unwrap();
    assert!(
        wrong.get("n", "k").await.is_err(),
        "a wrong password is refused"
    );
}
