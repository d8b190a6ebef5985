//! Per-entry TTLs and dependencies across tiers and nodes: two nodes'
//! caches (separate clients, separate L1s) in front of a real
//! `redis-server`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::codec::RemoteCodec;
use cache_core::config::Backend;
use cache_core::redis::RedisStore;
use cache_core::{Cache, CacheBuilder, Clock};
use cache_tests::RedisServer;
use cache_tests::tiering::{eventually, store_at};

/// A builder of `u64`-keyed caches whose keys read `<prefix><id>`.
macro_rules! keyed {
    ($prefix:literal) => {
        CacheBuilder::<u64, String>::with_render(|k: &u64, out| {
            out.push_str($prefix);
            out.push_str(&k.to_string());
        })
        .key_text_prefix($prefix)
        .remote_codec(Some(RemoteCodec::postcard()))
    };
}

fn dep_args(k: &u64) -> Vec<(&'static str, String)> {
    vec![("id", k.to_string())]
}

/// A node's dependant cache: `dep_profile:{id}` depends on `dep_user:{id}`.
fn profile_on(store: &Arc<RedisStore>, register: bool) -> Cache<u64, String> {
    keyed!("dep_profile:")
        .name("dep_profile")
        .depends_on(&["dep_user:{id}"], dep_args)
        .register(register)
        .remote(store.clone(), Backend::Tiered)
        .build()
}

#[test]
fn invalidating_a_key_reaches_dependants_on_every_node_and_in_redis() {
    let server = RedisServer::start();
    let (sa, sb) = (store_at(&server, "deps"), store_at(&server, "deps"));
    let users = keyed!("dep_user:")
        .name("dep_user")
        .register(true)
        .remote(sa.clone(), Backend::Tiered)
        .build();
    let a = profile_on(&sa, true);
    // Node B's cache is not in this process's registry: only Redis and its
    // channel reach it.
    let b = profile_on(&sb, false);
    eventually("both nodes to subscribe", || {
        sa.is_subscribed() && sb.is_subscribed()
    });
    let computed = AtomicUsize::new(0);
    let profile = |c: &Cache<u64, String>, id: u64| {
        c.get_or_insert_with(id, || {
            computed.fetch_add(1, Ordering::SeqCst);
            format!("profile {id}")
        })
    };
    users.get_or_insert_with(5, || "ada".into());
    profile(&a, 5);
    profile(&a, 6);
    assert_eq!(profile(&b, 5), "profile 5", "an L2 hit on B");
    assert_eq!(computed.load(Ordering::SeqCst), 2);
    assert!(b.contains_key(&5));

    assert!(users.invalidate(&5));
    assert!(!a.contains_key(&5), "A's dependant went at once");
    eventually("B to drop its dependant", || !b.contains_key(&5));
    assert!(a.contains_key(&6), "another id's entry stays");
    profile(&b, 5);
    assert_eq!(
        computed.load(Ordering::SeqCst),
        3,
        "B recomputed: Redis no longer held it either"
    );

    // A key text, as the admin API gives it, for a key this process never
    // held: its dependants go all the same.
    let before = computed.load(Ordering::SeqCst);
    assert!(!users.invalidate_key_str("dep_user:6"), "not held here");
    eventually("B to drop id 6 too", || !b.contains_key(&6));
    profile(&a, 6);
    assert_eq!(computed.load(Ordering::SeqCst), before + 1);
}

#[test]
fn a_value_keeps_its_own_expiry_in_redis_and_on_other_nodes() {
    let server = RedisServer::start();
    let (sa, sb) = (store_at(&server, "ttlfn"), store_at(&server, "ttlfn"));
    let (clock, time) = Clock::manual();
    let node = |s: &Arc<RedisStore>| -> Cache<u64, String> {
        keyed!("token:")
            .name("token")
            .clock(clock.clone())
            // "t<seconds>": a token that says how long it lives.
            .ttl_fn(|v| Duration::from_secs(v[1..].parse().unwrap_or(0)))
            .remote(s.clone(), Backend::Tiered)
            .build()
    };
    let (a, b) = (node(&sa), node(&sb));
    let loads = AtomicUsize::new(0);
    let get = |c: &Cache<u64, String>, k: u64, v: &str| {
        c.get_or_insert_with(k, || {
            loads.fetch_add(1, Ordering::SeqCst);
            v.to_string()
        })
    };
    assert_eq!(get(&a, 1, "t10"), "t10");
    let keys = server.cli(&["KEYS", "ttlfn:*"]);
    let pttl: i64 = server
        .cli(&["PTTL", keys.trim()])
        .trim()
        .parse()
        .unwrap_or(-3);
    assert!(
        (9_000..=10_000).contains(&pttl),
        "Redis holds it for its own 10 s, not a cache TTL: {pttl}"
    );
    time.advance(Duration::from_secs(6));
    assert_eq!(get(&b, 1, "never"), "t10", "B reads A's value, 6 s old");
    time.advance(Duration::from_secs(5));
    assert!(
        b.get(&1).is_none(),
        "B's copy expired with the value, at 10 s"
    );
    assert_eq!(
        get(&b, 1, "t30"),
        "t30",
        "Redis still has it (no real time passed), but it is expired on the clock it was written on"
    );
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}
