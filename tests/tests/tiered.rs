//! L1/L2 tiering across two independent nodes (separate clients, separate
//! L1s) on a real `redis-server`: shared values, invalidations, tags,
//! locks, hashed keys and services. Redis failing is `redis_faults.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::codec::RemoteCodec;
use cache_core::config::Backend;
use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{Cache, TenantId, cache_put, cached};
use cache_tests::RedisServer;
use cache_tests::tiering::{K, cache_on, eventually, node, node_with, store_at};

#[path = "tiered/control.rs"]
mod control;

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
    assert_eq!(
        server.cli(&["KEYS", "two:user:*"]).trim(),
        "two:user::get_user:1"
    );
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
    // Entries and tag sets are gone; the cache's generation stays.
    assert_eq!(server.cli(&["KEYS", "two:user:*"]).trim(), "");
    assert_eq!(server.cli(&["KEYS", "two:~tags:*"]).trim(), "");
    assert_eq!(server.cli(&["KEYS", "*"]).trim(), "two:~gen:user:get_user");
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
        server.cli(&["KEYS", "two:~lock:*"]).trim(),
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
fn tags_reach_redis_and_every_node() {
    let server = RedisServer::start();
    let (a, sa) = node(&server, Backend::Tiered);
    let (b, sb) = node(&server, Backend::Tiered);
    let (r, _) = node(&server, Backend::Redis);
    eventually("the nodes to subscribe", || {
        sa.is_subscribed() && sb.is_subscribed()
    });
    let odd = (TenantId::NONE, 1);
    let even = (TenantId::NONE, 2);
    a.get_or_insert_with(odd, || "odd".into());
    a.get_or_insert_with(even, || "even".into());
    assert!(!b.contains_key(&odd), "B never loaded it");

    // B tag-invalidates what only A loaded: Redis and A's L1 drop it.
    b.invalidate_tag("parity:1");
    eventually("A to drop the odd entry", || !a.contains_key(&odd));
    assert!(a.contains_key(&even), "another tag's entry stays");
    assert_eq!(
        r.get_or_insert_with(odd, || "odd again".into()),
        "odd again"
    );
    assert_eq!(r.get_or_insert_with(even, || "unused".into()), "even");

    // Redis-only: the tag reaches the values that live there.
    r.invalidate_tag("parity:0");
    assert_eq!(
        r.get_or_insert_with(even, || "even again".into()),
        "even again"
    );
}

#[test]
fn hashed_keys_send_no_argument_anywhere() {
    let server = RedisServer::start();
    let mut monitor = std::process::Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "monitor"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli runs (apt-get install redis-tools)");
    let out = monitor.stdout.take().unwrap();
    let seen = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(out), &mut s).unwrap();
        s
    });
    std::thread::sleep(Duration::from_millis(200));

    const SENTINEL: &str = "Sentinel-7f3a9";
    let hashed = |o: &mut RedisOptions| {
        o.hash_keys = true;
        o.hash_secret = Some("a secret for this test only".into());
    };
    let store = |_: ()| {
        let mut opts = RedisOptions {
            url: server.url(),
            prefix: "h".into(),
            timeout_ms: 300,
            ..RedisOptions::default()
        };
        hashed(&mut opts);
        RedisStore::connect(opts).unwrap()
    };
    let cache_of = |s: &Arc<RedisStore>, register: bool| {
        let c: Cache<(TenantId, String), String> =
            cache_core::CacheBuilder::with_render(|k: &(TenantId, String), out| {
                out.push_str("find:");
                cache_core::KeyPart::write_key(&k.1, out);
            })
            .name("find")
            .key_text_prefix("find:")
            .service("user")
            .tenant_of(|k| k.0)
            .tags(|k| vec![format!("q:{}", k.1)])
            .remote_codec(Some(RemoteCodec::postcard()))
            .register(register)
            .remote(s.clone(), Backend::Tiered)
            .build();
        c
    };
    let (sa, sb) = (store(()), store(()));
    let (a, b) = (cache_of(&sa, true), cache_of(&sb, false));
    eventually("both nodes to subscribe", || {
        sa.is_subscribed() && sb.is_subscribed()
    });
    let k = (TenantId::NONE, SENTINEL.to_string());
    assert_eq!(a.get_or_insert_with(k.clone(), || "v".into()), "v");
    assert_eq!(b.get_or_insert_with(k.clone(), || "unused".into()), "v");
    assert!(a.invalidate(&k));
    eventually("B to drop it", || !b.contains_key(&k));
    a.get_or_insert_with(k.clone(), || "v".into());
    b.get_or_insert_with(k.clone(), || "v".into());
    assert!(b.invalidate_key_str(&format!("find:{SENTINEL}")));
    eventually("A to drop it", || !a.contains_key(&k));
    a.get_or_insert_with(k.clone(), || "v".into());
    assert_eq!(b.invalidate_tag(&format!("q:{SENTINEL}")), 0);
    eventually("A to drop the tagged entry", || !a.contains_key(&k));
    a.get_or_insert_with(k.clone(), || "v".into());
    assert_eq!(a.revoke_str(&format!("find:{SENTINEL}")).unwrap(), 1);
    // An event whose payload names the key.
    a.get_or_insert_with(k.clone(), || "v".into());
    b.get_or_insert_with(k.clone(), || "v".into());
    cache_core::registry()
        .on_event("found", Some("user"), &["find:{q}"])
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n = rt
        .block_on(cache_core::registry().publish("found", serde_json::json!({"q": SENTINEL})))
        .unwrap();
    assert_eq!(n, 1);
    eventually("B to drop it after the event", || !b.contains_key(&k));
    // A glob cannot select keyed digests: an error, and nothing removed.
    a.get_or_insert_with(k.clone(), || "v".into());
    let e = a.revoke_str("find:Sent*").unwrap_err();
    assert!(e.to_string().contains("hash_keys"), "{e}");
    assert!(a.contains_key(&k), "a refused revoke removes nothing");
    assert_eq!(a.revoke_str("*").unwrap(), 1);
    a.clear();
    std::thread::sleep(Duration::from_millis(300));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let log = seen.join().unwrap();
    assert!(log.contains("\"SET\""), "MONITOR saw the traffic: {log}");
    assert!(log.contains("PUBLISH"), "and the invalidation channel");
    assert!(!log.contains(SENTINEL), "an argument reached redis:\n{log}");
}

/// A load that read the database before another node's invalidation, and
/// writes to Redis after it, does not put the old value back: its write is
/// refused (the cache's generation moved), and its own local copy goes when
/// the invalidation reaches it.
#[test]
fn a_load_racing_an_invalidation_on_another_node_stores_nothing() {
    let server = RedisServer::start();
    let (a, sa) = node(&server, Backend::Tiered);
    let (b, sb) = node(&server, Backend::Tiered);
    eventually("both nodes to subscribe", || {
        sa.is_subscribed() && sb.is_subscribed()
    });
    let db = AtomicUsize::new(0);
    let read = std::sync::Barrier::new(2);
    let invalidated = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let loader = s.spawn(|| {
            a.get_or_insert_with(K, || {
                let v = db.load(Ordering::SeqCst);
                read.wait();
                invalidated.wait();
                format!("v{v}")
            })
        });
        read.wait();
        db.store(1, Ordering::SeqCst);
        b.invalidate(&K);
        assert!(!sb.has_pending_invalidations(), "applied at once");
        invalidated.wait();
        assert_eq!(
            loader.join().unwrap(),
            "v0",
            "the racing caller gets its value"
        );
    });
    assert_eq!(
        server.cli(&["EXISTS", "two:user::get_user:1"]).trim(),
        "0",
        "the old value was not written back"
    );
    eventually("A to drop its local copy", || !a.contains_key(&K));
    let (c, _) = node(&server, Backend::Tiered);
    assert_eq!(
        c.get_or_insert_with(K, || format!("v{}", db.load(Ordering::SeqCst))),
        "v1"
    );
}

/// A glob that one cache of a service cannot select (its keys are hashed)
/// is refused before any cache of the service removes anything.
#[test]
fn a_refused_revoke_removes_nothing_anywhere() {
    let server = RedisServer::start();
    let hashed = RedisStore::connect(RedisOptions {
        url: server.url(),
        prefix: "mix".into(),
        hash_keys: true,
        hash_secret: Some("a secret for this test only".into()),
        ..RedisOptions::default()
    })
    .unwrap();
    let mem: Cache<String, u64> = cache_core::CacheBuilder::new()
        .name("a_mem")
        .service("mix")
        .register(true)
        .build();
    let _remote: Cache<String, u64> = cache_core::CacheBuilder::new()
        .name("b_hashed")
        .service("mix")
        .register(true)
        .remote_codec(Some(RemoteCodec::postcard()))
        .remote(hashed, Backend::Tiered)
        .build();
    mem.insert("xa".into(), 1);
    mem.insert("xb".into(), 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let e = rt
        .block_on(
            cache_core::registry()
                .request("mix/cache/revoke", serde_json::json!({"pattern": "x*"})),
        )
        .unwrap_err();
    assert!(matches!(e, cache_core::CacheError::Remote(_)), "{e}");
    assert_eq!(mem.len(), 2, "nothing removed from the other cache");
    cache_core::registry()
        .on_event("mix.ev", Some("mix"), &["{id}", "x*"])
        .unwrap();
    let e = rt
        .block_on(cache_core::registry().publish("mix.ev", serde_json::json!({"id": "xa"})))
        .unwrap_err();
    assert!(matches!(e, cache_core::CacheError::Remote(_)), "{e}");
    assert_eq!(mem.len(), 2, "an event that cannot be done removes nothing");
}

static NAME: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

#[derive(Clone)]
struct Names;

#[cache_core::cache_service(name = "put_svc")]
impl Names {
    #[cached(ttl = 600)]
    fn get_name(&self, id: u64) -> String {
        format!("{id}:{}", NAME.lock().unwrap())
    }

    #[cache_put(get_name)]
    fn rename(&self, id: u64, name: &str) -> String {
        *NAME.lock().unwrap() = name.to_owned();
        format!("{id}:{name}")
    }
}

/// `#[cache_put]` reaches the remote tier: with values only in Redis, the
/// put value is what the next call reads.
#[test]
fn cache_put_reaches_redis() {
    let server = RedisServer::start();
    let store = store_at(&server, "put");
    *NAME.lock().unwrap() = "old".into();
    Names::get_name_cache().attach_remote(store, Backend::Redis);
    assert_eq!(Names.get_name(5), "5:old");
    assert_eq!(Names.rename(5, "new"), "5:new");
    *NAME.lock().unwrap() = "unused".into();
    assert_eq!(Names.get_name(5), "5:new", "the put value, from Redis");
}

#[derive(Clone)]
struct Ghosts;

#[cache_core::cache_service(name = "ghost_svc")]
impl Ghosts {
    #[cached]
    fn get(&self, id: u64) -> String {
        format!("fresh {id}")
    }
}

/// A tenant-scoped request names the tenant even when this process never
/// saw it: the shared store and the other nodes may hold its entries.
#[test]
fn requests_for_a_tenant_this_node_never_saw_reach_redis() {
    let server = RedisServer::start();
    let store = store_at(&server, "gh");
    Ghosts::get_cache().attach_remote(store, Backend::Redis);
    // Another node stored this for tenant "never-seen-here".
    let rk = "gh:ghost_svc:never-seen-here:get:5";
    server.cli(&["SET", rk, "anything"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(cache_core::registry().request(
        "ghost_svc/cache/delete",
        serde_json::json!({"key": "get:5", "tenant": "never-seen-here"}),
    ))
    .unwrap();
    assert_eq!(server.cli(&["EXISTS", rk]).trim(), "0", "deleted in Redis");
    server.cli(&["SET", rk, "anything"]);
    cache_core::registry()
        .on_event("ghost.changed", Some("ghost_svc"), &["get:{id}"])
        .unwrap();
    rt.block_on(cache_core::registry().publish(
        "ghost.changed",
        serde_json::json!({"id": 5, "tenant": "another-unseen-one"}),
    ))
    .unwrap();
    server.cli(&["SET", "gh:ghost_svc:another-unseen-one:get:5", "x"]);
    rt.block_on(cache_core::registry().publish(
        "ghost.changed",
        serde_json::json!({"id": 5, "tenant": "another-unseen-one"}),
    ))
    .unwrap();
    assert_eq!(
        server
            .cli(&["EXISTS", "gh:ghost_svc:another-unseen-one:get:5"])
            .trim(),
        "0",
        "an event for an unseen tenant reaches Redis"
    );
}

/// A listener that makes a sync cache call while a remote invalidation is
/// delivered does not stall delivery (it ran on the store's own runtime).
#[test]
fn listeners_on_remote_invalidations_may_call_the_cache() {
    let server = RedisServer::start();
    let (a, sa) = node(&server, Backend::Tiered);
    let (b, sb) = node(&server, Backend::Tiered);
    eventually("both nodes to subscribe", || {
        sa.is_subscribed() && sb.is_subscribed()
    });
    let other = cache_on(&sb, Backend::Tiered);
    let took = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (seen, other2) = (took.clone(), other.clone());
    b.add_listener(move |e| {
        if e.kind == cache_core::EventKind::Invalidate {
            let t = Instant::now();
            other2.get_or_insert_with((TenantId::NONE, 77), || "x".into());
            seen.lock().unwrap().push(t.elapsed());
        }
    });
    b.get_or_insert_with(K, || "v".into());
    a.invalidate(&K);
    eventually("the listener to run", || !took.lock().unwrap().is_empty());
    assert!(!b.contains_key(&K));
    let took = took.lock().unwrap().clone();
    assert!(
        took.iter().all(|d| *d < Duration::from_millis(250)),
        "a sync call from the listener waited {took:?}"
    );
}
