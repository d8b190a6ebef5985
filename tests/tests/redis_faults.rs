//! Tiering on a real `redis-server` that is killed, restarted, paused or
//! full: calls stay correct, and no acknowledged invalidation is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::TenantId;
use cache_core::config::Backend;
use cache_core::redis::{RedisOptions, RedisStore};
use cache_tests::RedisServer;
use cache_tests::tiering::{K, cache_on, eventually, node, node_opts};

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
        url: format!("redis://:wr0ng-pa55@127.0.0.1:{}", server.port()),
        prefix: "auth".into(),
        ..RedisOptions::default()
    })
    .unwrap();
    let e = wrong.get("n", "k").await.unwrap_err().to_string();
    assert!(!e.contains("wr0ng-pa55"), "the password shows: {e}");
    assert!(
        !format!("{:?}", wrong.options()).contains("wr0ng-pa55"),
        "Debug shows the password"
    );
    let unreachable = RedisStore::connect(RedisOptions {
        url: "redis://:wr0ng-pa55@127.0.0.1:1".into(),
        ..RedisOptions::default()
    })
    .unwrap();
    let e = unreachable.get("n", "k").await.unwrap_err().to_string();
    assert!(!e.contains("wr0ng-pa55"), "the password shows: {e}");
}

#[test]
fn an_invalidation_during_a_pause_is_not_lost() {
    let server = RedisServer::start();
    let short = |o: &mut RedisOptions| o.timeout_ms = 100;
    let (a, sa) = node_opts(&server, Backend::Tiered, short);
    let (b, sb) = node_opts(&server, Backend::Tiered, short);
    eventually("both nodes to subscribe", || {
        sa.is_subscribed() && sb.is_subscribed()
    });
    assert_eq!(a.get_or_insert_with(K, || "v1".into()), "v1");
    assert_eq!(b.get_or_insert_with(K, || "unused".into()), "v1");

    server.cli(&["CLIENT", "PAUSE", "1500", "ALL"]);
    let t = Instant::now();
    assert!(a.invalidate(&K), "A held the entry");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "invalidate waited {:?} for a paused redis",
        t.elapsed()
    );
    assert!(
        sa.stats().pending_invalidations >= 1,
        "the remote part waits"
    );
    assert!(sa.has_pending_invalidations());
    // Meanwhile A reads nothing from Redis: it computes the new value.
    assert_eq!(a.get_or_insert_with(K, || "v2".into()), "v2");

    // Once Redis is back the invalidation lands: a node that never saw the
    // call computes afresh, and B's local copy goes.
    eventually("the pending invalidation to land", || {
        !sa.has_pending_invalidations()
    });
    let (c, _) = node_opts(&server, Backend::Tiered, |_| {});
    let seen = c.get_or_insert_with(K, || "v2".into());
    assert_eq!(seen, "v2", "no node reads the invalidated value from Redis");
    eventually("B to drop its copy", || !b.contains_key(&K));
}

/// An invalidation made on a one-thread runtime while Redis is paused
/// returns at once and leaves the runtime running; it lands when Redis is
/// back, and nothing stale is read meanwhile.
#[test]
fn an_async_invalidation_never_blocks_its_runtime_while_redis_is_paused() {
    let server = RedisServer::start();
    let short = |o: &mut RedisOptions| o.timeout_ms = 100;
    let (a, sa) = node_opts(&server, Backend::Tiered, short);
    eventually("A to subscribe", || sa.is_subscribed());
    assert_eq!(a.get_or_insert_with(K, || "v1".into()), "v1");

    server.cli(&["CLIENT", "PAUSE", "1500", "ALL"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                t.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        let before = ticks.load(Ordering::SeqCst);
        assert!(a.invalidate(&K));
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "invalidate held the runtime's only thread for {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            ticks.load(Ordering::SeqCst) >= before + 5,
            "the runtime did not run meanwhile"
        );
        assert!(sa.has_pending_invalidations(), "the remote part waits");
        ticker.abort();
    });
    // Nothing stale meanwhile, and the invalidation lands after the pause.
    assert_eq!(a.get_or_insert_with(K, || "v2".into()), "v2");
    eventually("the pending invalidation to land", || {
        !sa.has_pending_invalidations()
    });
    let (c, _) = node_opts(&server, Backend::Tiered, |_| {});
    assert_ne!(
        c.get_or_insert_with(K, || "fresh".into()),
        "v1",
        "no node reads the invalidated value"
    );
}

#[test]
fn a_full_redis_still_serves_reads_and_takes_invalidations() {
    let server = RedisServer::start();
    let (a, sa) = node(&server, Backend::Tiered);
    a.get_or_insert_with(K, || "stored".into());
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    // Writes fail (OOM) until the write breaker opens...
    for i in 100..110 {
        a.get_or_insert_with((TenantId::NONE, i), || "new".into());
    }
    assert!(sa.write_breaker_open(), "writes are skipped now");
    assert!(!sa.read_breaker_open(), "reads are not");
    // ...and reads still succeed: a second cache over the same store finds
    // the stored value in Redis.
    let twin = cache_on(&sa, Backend::Tiered);
    assert_eq!(twin.get_or_insert_with(K, || "recomputed".into()), "stored");
    // An invalidation is a delete, which a full Redis still takes.
    assert!(twin.invalidate(&K));
    assert!(!sa.has_pending_invalidations());
    assert_eq!(server.cli(&["EXISTS", "two:user::get_user:1"]).trim(), "0");
}

#[test]
fn a_node_that_lost_the_channel_drops_its_local_copies() {
    let mut server = RedisServer::start();
    let (a, sa) = node(&server, Backend::Tiered);
    eventually("A to subscribe", || sa.is_subscribed());
    a.get_or_insert_with(K, || "before".into());
    server.kill();
    // While Redis is down, the local copy still serves.
    assert_eq!(a.get(&K).as_deref(), Some("before"));
    // Down long enough that the client's own reconnect attempt fails: A
    // sends no command of its own after this (it serves locally).
    std::thread::sleep(Duration::from_millis(800));
    server.restart();
    // Another node changes the value meanwhile: A cannot have heard.
    let (b, _) = node(&server, Backend::Tiered);
    b.insert(K, "after".into());
    eventually("A to resubscribe and drop its copies", || {
        sa.stats().resubscriptions >= 1 && !a.contains_key(&K)
    });
    assert_eq!(a.get_or_insert_with(K, || "unused".into()), "after");
}
