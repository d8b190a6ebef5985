//! One tiering suite, run over each kind of store: two nodes (separate L1s,
//! separate store handles) share an L2, and every invalidation made on one
//! reaches the store and the other's L1; with a lock across nodes, one
//! node computes a key that several miss at once. The stores: an
//! in-process `MemoryStore` behind `StoreRemote` with a `LocalBroadcast`
//! (and itself as the lock), a plain store with a real `redis-server` as
//! its broadcast and lock, and Redis itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::codec::RemoteCodec;
use cache_core::config::Backend;
use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{Cache, LocalBroadcast, MemoryStore, Remote, StoreRemote, TenantId};
use cache_tests::RedisServer;
use cache_tests::tiering::eventually;

type Key = (TenantId, u64);

/// Two nodes' remotes over one store (the server is kept alive by `_keep`),
/// and a third pair with a lock across nodes on missed keys.
struct Pair {
    a: Arc<dyn Remote>,
    b: Arc<dyn Remote>,
    locked: [Arc<dyn Remote>; 3],
    _keep: Option<RedisServer>,
}

/// How long a lock holder may take.
const HOLD: Duration = Duration::from_millis(2000);

fn memory_pair() -> Pair {
    let store = Arc::new(MemoryStore::new());
    let hub = Arc::new(LocalBroadcast::new());
    let timeout = Duration::from_millis(300);
    let locked = std::array::from_fn(|i| {
        let r = StoreRemote::new(
            format!("mem-locked-{i}"),
            store.clone(),
            Some(hub.clone()),
            timeout,
        );
        r.set_lock(store.clone(), HOLD).unwrap();
        r as Arc<dyn Remote>
    });
    Pair {
        a: StoreRemote::new("mem-a", store.clone(), Some(hub.clone()), timeout),
        b: StoreRemote::new("mem-b", store, Some(hub), timeout),
        locked,
        _keep: None,
    }
}

/// A client of `server`, subscribed to its invalidation channel.
fn connect(server: &RedisServer, lock_ms: Option<u64>) -> Arc<RedisStore> {
    let s = RedisStore::connect(RedisOptions {
        url: server.url(),
        prefix: "suite".into(),
        timeout_ms: 300,
        lock_ms,
        ..RedisOptions::default()
    })
    .unwrap();
    let t = Instant::now();
    while !s.is_subscribed() {
        assert!(t.elapsed() < Duration::from_secs(5), "no subscription");
        std::thread::sleep(Duration::from_millis(10));
    }
    s
}

/// A plain store shared by the nodes (a `MemoryStore` stands for, say, a
/// database table), with Redis as each node's `Broadcast` and `Lock`: the
/// parts a user's store borrows with `backends::register_parts`.
fn redis_parts_pair() -> Pair {
    let server = RedisServer::start();
    let store = Arc::new(MemoryStore::new());
    let timeout = Duration::from_millis(300);
    let remote = |name: String, lock: bool| {
        let redis = connect(&server, None);
        let r = StoreRemote::new(name, store.clone(), Some(redis.clone()), timeout);
        if lock {
            r.set_lock(redis, HOLD).unwrap();
        }
        r as Arc<dyn Remote>
    };
    Pair {
        a: remote("parts-a".into(), false),
        b: remote("parts-b".into(), false),
        locked: std::array::from_fn(|i| remote(format!("parts-locked-{i}"), true)),
        _keep: Some(server),
    }
}

fn redis_pair() -> Pair {
    let server = RedisServer::start();
    let (a, b) = (connect(&server, None), connect(&server, None));
    let locked =
        std::array::from_fn(|_| connect(&server, Some(HOLD.as_millis() as u64)) as Arc<dyn Remote>);
    Pair {
        a,
        b,
        locked,
        _keep: Some(server),
    }
}

/// A `get_user` cache (tagged by the id's parity) in front of `remote`.
fn node(remote: &Arc<dyn Remote>, mode: Backend) -> Cache<Key, String> {
    let cache: Cache<Key, String> = cache_core::CacheBuilder::with_render(|k: &Key, out| {
        out.push_str(&format!("get_user:{}", k.1))
    })
    .name("get_user")
    .key_text_prefix("get_user:")
    .service("user")
    .tenant_of(|k| k.0)
    .tags(|k| vec![format!("parity:{}", k.1 % 2)])
    .remote_codec(Some(RemoteCodec::postcard()))
    .remote(remote.clone(), mode)
    .build();
    cache
}

fn k(id: u64) -> Key {
    (TenantId::NONE, id)
}

/// The suite: values cross through L2, and each kind of invalidation
/// reaches the store and the other node's L1.
fn suite(kind: &str, pair: Pair) {
    let a = node(&pair.a, Backend::Tiered);
    let b = node(&pair.b, Backend::Tiered);
    let computed = AtomicUsize::new(0);
    let load = |v: &str| {
        computed.fetch_add(1, Ordering::SeqCst);
        v.to_string()
    };
    let loads = || computed.load(Ordering::SeqCst);

    // A value A loads is an L2 hit on B, which fills B's L1.
    assert_eq!(a.get_or_insert_with(k(1), || load("A1")), "A1", "{kind}");
    assert_eq!(b.get_or_insert_with(k(1), || load("B1")), "A1", "{kind}");
    assert_eq!(loads(), 1, "{kind}: B read A's value");
    assert!(b.contains_key(&k(1)), "{kind}");

    // Delete by key on B: A's L1 and the store lose it.
    assert!(b.invalidate(&k(1)), "{kind}");
    eventually("A to drop key 1", || !a.contains_key(&k(1)));
    assert_eq!(a.get_or_insert_with(k(1), || load("A1'")), "A1'", "{kind}");
    assert_eq!(loads(), 2, "{kind}: the store lost it too");

    // A pattern revoke on A reaches B.
    assert_eq!(b.get_or_insert_with(k(1), || load("unused")), "A1'");
    assert_eq!(a.revoke_str("get_user:*").unwrap(), 1, "{kind}");
    eventually("B to drop key 1", || !b.contains_key(&k(1)));
    assert_eq!(b.get_or_insert_with(k(1), || load("B1")), "B1", "{kind}");
    assert_eq!(loads(), 3, "{kind}");

    // A tag invalidation on B reaches A and the store.
    assert_eq!(a.get_or_insert_with(k(3), || load("A3")), "A3");
    assert_eq!(b.get_or_insert_with(k(3), || load("unused")), "A3");
    assert_eq!(loads(), 4);
    b.invalidate_tag("parity:1");
    eventually("A to drop key 3", || !a.contains_key(&k(3)));
    assert_eq!(a.get_or_insert_with(k(3), || load("A3'")), "A3'", "{kind}");
    assert_eq!(loads(), 5, "{kind}: the tag reached the store");

    // Clear on A empties B and the store.
    b.get_or_insert_with(k(2), || load("B2"));
    a.get_or_insert_with(k(2), || load("unused"));
    assert_eq!(loads(), 6);
    a.clear();
    eventually("B to clear", || b.is_empty());
    assert_eq!(b.get_or_insert_with(k(2), || load("B2'")), "B2'", "{kind}");
    assert_eq!(loads(), 7, "{kind}: the store was cleared");

    // Another tenant's entry is not this tenant's.
    let t = cache_core::namespace::tenant_id("acme");
    assert_eq!(a.get_or_insert_with((t, 2), || load("acme2")), "acme2");
    assert_eq!(b.get_or_insert_with((t, 2), || load("unused")), "acme2");
    assert_eq!(b.get(&k(2)).as_deref(), Some("B2'"), "{kind}");
    assert_eq!(loads(), 8);

    // Values only outside the process: nothing stays in L1.
    let c = node(&pair.a, Backend::Redis);
    assert_eq!(c.get_or_insert_with(k(9), || load("C9")), "C9");
    assert!(c.is_empty(), "{kind}: nothing kept in process");
    assert_eq!(
        c.get_or_insert_with(k(9), || load("unused")),
        "C9",
        "{kind}"
    );
    assert_eq!(loads(), 9);

    // With the lock, three nodes that miss one key at once compute it once;
    // the others wait for its value.
    let nodes: Vec<_> = pair
        .locked
        .iter()
        .map(|r| node(r, Backend::Tiered))
        .collect();
    let computed = AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(nodes.len());
    let values: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| {
                s.spawn(|| {
                    barrier.wait();
                    n.get_or_insert_with(k(5), || {
                        computed.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        "once".to_string()
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(values, vec!["once"; 3], "{kind}");
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "{kind}: three nodes, one computation"
    );
    // The holder released it: after an invalidation, the next miss takes
    // the lock at once instead of waiting out its time.
    nodes[0].invalidate(&k(5));
    eventually("the others to drop key 5", || {
        nodes.iter().all(|n| !n.contains_key(&k(5)))
    });
    let t = Instant::now();
    assert_eq!(
        nodes[1].get_or_insert_with(k(5), || "again".to_string()),
        "again"
    );
    assert!(
        t.elapsed() < HOLD / 2,
        "{kind}: the lock was left held ({:?})",
        t.elapsed()
    );
}

#[test]
fn tiering_over_the_memory_store() {
    suite("memory", memory_pair());
}

#[test]
fn tiering_over_a_plain_store_with_redis_as_broadcast_and_lock() {
    suite("parts", redis_parts_pair());
}

#[test]
fn tiering_over_redis() {
    suite("redis", redis_pair());
}
