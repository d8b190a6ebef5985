//! TTL, TTI and refresh-ahead under a controlled clock, for typed caches
//! (a manual clock) and for `#[cached]` functions (the frozen system clock;
//! this binary freezes it for all its tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::clock::{advance_system_clock, freeze_system_clock};
use cache_core::{Cache, Clock, EventKind, cached};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn ttl_expires_under_a_manual_clock() {
    let (clock, time) = Clock::manual();
    let c: Cache<u64, u64> = Cache::builder().ttl(secs(60)).clock(clock).build();
    let expired = Arc::new(AtomicUsize::new(0));
    let e = expired.clone();
    c.add_listener(move |ev| {
        if ev.kind == EventKind::Expire {
            e.fetch_add(1, Ordering::SeqCst);
        }
    });
    c.insert(1, 10);
    time.advance(secs(59));
    assert_eq!(c.get(&1), Some(10));
    time.advance(secs(1));
    assert_eq!(c.get(&1), None);
    assert_eq!(expired.load(Ordering::SeqCst), 1);
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.expirations, s.entries), (1, 1, 1, 0));
}

#[test]
fn per_entry_ttl_overrides_the_default() {
    let (clock, time) = Clock::manual();
    let c: Cache<u64, u64> = Cache::builder().ttl(secs(60)).clock(clock).build();
    c.insert_with_ttl(1, 1, secs(5));
    c.insert(2, 2);
    time.advance(secs(5));
    assert_eq!(c.get(&1), None);
    assert_eq!(c.get(&2), Some(2));
}

#[test]
fn per_entry_ttl_works_in_a_cache_without_one() {
    let (clock, time) = Clock::manual();
    let c: Cache<u64, u64> = Cache::builder().clock(clock).build();
    c.insert(1, 1);
    c.insert_with_ttl(2, 2, secs(5));
    time.advance(secs(5));
    assert_eq!(c.get(&1), Some(1), "no TTL: kept");
    assert_eq!(c.get(&2), None, "its own TTL: expired");
}

#[test]
fn tti_expires_idle_entries_only() {
    let (clock, time) = Clock::manual();
    let c: Cache<u64, u64> = Cache::builder().tti(secs(10)).clock(clock).build();
    c.insert(1, 1);
    c.insert(2, 2);
    for _ in 0..5 {
        time.advance(secs(6));
        assert_eq!(c.get(&1), Some(1), "kept alive by access");
    }
    assert_eq!(c.get(&2), None, "idle for 30s");
    assert_eq!(c.stats().expirations, 1);

    // Listing and contains_key neither show idle entries nor keep them alive.
    c.insert(3, 3);
    time.advance(secs(6));
    assert!(c.contains_key(&3));
    assert_eq!(c.keys(None, 10), vec!["1", "3"]);
    time.advance(secs(6));
    assert!(
        !c.contains_key(&3),
        "12s idle: contains_key did not touch it"
    );
    assert_eq!(c.keys(None, 10), vec![] as Vec<String>);
}

#[test]
fn purge_sweeps_expired_entries_without_reads() {
    let (clock, time) = Clock::manual();
    let c: Cache<u64, u64> = Cache::builder().ttl(secs(1)).clock(clock).build();
    for i in 0..10 {
        c.insert(i, i);
    }
    time.advance(secs(2));
    assert_eq!(c.len(), 10);
    assert_eq!(c.keys(None, 100).len(), 0, "expired keys are not listed");
    assert_eq!(c.purge_expired(), 10);
    assert_eq!(c.len(), 0);
    assert_eq!(c.stats().expirations, 10);
}

static TTL_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m")]
fn with_ttl(id: u64) -> u64 {
    TTL_CALLS.fetch_add(1, Ordering::SeqCst);
    id
}

static TTI_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(tti = 30)]
fn with_tti(id: u64) -> u64 {
    TTI_CALLS.fetch_add(1, Ordering::SeqCst);
    id
}

static REFRESHES: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1h", refresh = "10m")]
fn with_refresh(id: u64) -> usize {
    REFRESHES.fetch_add(1, Ordering::SeqCst) + id as usize
}

static ASYNC_REFRESHES: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1h", refresh = "10m")]
async fn with_refresh_async(id: u64) -> usize {
    ASYNC_REFRESHES.fetch_add(1, Ordering::SeqCst) + id as usize
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("timed out waiting for {what}");
}

/// One test drives the frozen system clock so the steps cannot interleave.
#[test]
fn macro_caches_expire_and_refresh_under_the_frozen_system_clock() {
    freeze_system_clock();

    // ttl
    with_ttl(1);
    advance_system_clock(secs(59));
    with_ttl(1);
    assert_eq!(TTL_CALLS.load(Ordering::SeqCst), 1);
    advance_system_clock(secs(1));
    with_ttl(1);
    assert_eq!(TTL_CALLS.load(Ordering::SeqCst), 2);

    // tti
    with_tti(1);
    advance_system_clock(secs(20));
    with_tti(1);
    advance_system_clock(secs(20));
    with_tti(1);
    assert_eq!(
        TTI_CALLS.load(Ordering::SeqCst),
        1,
        "accessed within 30s each time"
    );
    advance_system_clock(secs(31));
    with_tti(1);
    assert_eq!(TTI_CALLS.load(Ordering::SeqCst), 2);

    // refresh-ahead, sync: the stale value is served and recomputed once.
    assert_eq!(with_refresh(0), 0);
    advance_system_clock(secs(11 * 60));
    assert_eq!(with_refresh(0), 0, "stale value served");
    assert_eq!(with_refresh(0), 0, "still stale: one refresh runs");
    wait_for("the background refresh", || {
        with_refresh_cache().get(&0) == Some(1)
    });
    assert_eq!(REFRESHES.load(Ordering::SeqCst), 2);
    assert_eq!(with_refresh(0), 1);

    // refresh-ahead, async
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert_eq!(with_refresh_async(0).await, 0);
        advance_system_clock(secs(11 * 60));
        assert_eq!(with_refresh_async(0).await, 0);
        for _ in 0..500 {
            if with_refresh_async_cache().get(&0) == Some(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(with_refresh_async(0).await, 1);
    });
    assert_eq!(ASYNC_REFRESHES.load(Ordering::SeqCst), 2);
}

/// A TTI from configuration tracks idle time when it is in force before the
/// cache is built. Added to a cache built without one, it bounds each new
/// entry's life from its load instead: the entry goes early, never late.
#[test]
fn a_tti_from_configuration_tracks_idle_time_or_bounds_life() {
    let cfg: cache_core::config::Config = serde_json::from_value(serde_json::json!({
        "actions": {"idle_before_build": {"tti": "10s"}}
    }))
    .unwrap();
    cache_core::config::set(cfg).unwrap();
    let (clock, time) = Clock::manual();
    let before: Cache<u64, u64> = Cache::builder()
        .name("idle_before_build")
        .clock(clock.clone())
        .register(true)
        .build();
    before.insert(1, 1);
    for _ in 0..3 {
        time.advance(secs(6));
        assert_eq!(before.get(&1), Some(1), "read within its idle time: kept");
    }
    time.advance(secs(10));
    assert_eq!(before.get(&1), None, "idle for 10 s: gone");

    let after: Cache<u64, u64> = Cache::builder()
        .name("idle_after_build")
        .clock(clock)
        .register(true)
        .build();
    let cfg: cache_core::config::Config = serde_json::from_value(serde_json::json!({
        "actions": {
            "idle_before_build": {"tti": "10s"},
            "idle_after_build": {"tti": "10s"}
        }
    }))
    .unwrap();
    cache_core::config::set(cfg).unwrap();
    assert_eq!(after.settings().tti, Some(secs(10)));
    after.insert(1, 1);
    time.advance(secs(6));
    assert_eq!(after.get(&1), Some(1));
    time.advance(secs(4));
    assert_eq!(
        after.get(&1),
        None,
        "no idle tracking: 10 s after its load the entry is gone, read or not"
    );
}
