//! Eviction and invalidation controls: priorities, weights, per-entry TTLs
//! from the value, and dependencies, through the builder and the attribute.
//! The system clock is frozen for the whole binary.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::clock::{advance_system_clock, freeze_system_clock};
use cache_core::{Cache, Clock, Eviction, Priority, Weigh, cached};

#[path = "control/attacks.rs"]
mod attacks;
#[path = "control/depends.rs"]
mod depends;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn lower_priorities_are_evicted_first_and_critical_entries_stay() {
    for eviction in [Eviction::TinyLfu, Eviction::Lru, Eviction::Lfu] {
        let c: Cache<u64, u64> = Cache::builder()
            .capacity(100)
            .eviction(eviction)
            .eviction_batch_size(1)
            .build();
        for k in 0..10 {
            c.insert_with_priority(k, k, Priority::Critical);
        }
        for k in 10..40 {
            c.insert_with_priority(k, k, Priority::High);
        }
        for k in 40..70 {
            c.insert_with_priority(k, k, Priority::Low);
        }
        // Pressure: a thousand medium entries, each read a few times.
        for k in 1_000..2_000 {
            c.insert(k, k);
            for _ in 0..3 {
                c.get(&k);
            }
        }
        let held = |r: std::ops::Range<u64>| r.filter(|k| c.contains_key(k)).count();
        assert_eq!(
            held(0..10),
            10,
            "{eviction:?}: critical entries are never evicted for size"
        );
        assert_eq!(held(10..40), 30, "{eviction:?}: high outranks medium");
        assert_eq!(held(40..70), 0, "{eviction:?}: low goes first");
        assert!(c.len() <= 100);
    }
}

#[test]
fn a_cache_with_a_priority_orders_by_it_and_its_inserts_may_name_another() {
    // A priority on the builder selects an engine that orders by it.
    let c: Cache<u64, u64> = Cache::builder()
        .capacity(50)
        .priority(Priority::Low)
        .build();
    assert_eq!(c.settings().eviction, Some(Eviction::TinyLfu));
    c.insert_with_priority(1, 1, Priority::High);
    for k in 100..400 {
        c.insert(k, k);
    }
    assert_eq!(
        c.get(&1),
        Some(1),
        "the one high entry outlives 300 low ones"
    );
}

#[test]
fn critical_entries_take_at_most_their_share() {
    let c: Cache<u64, u64> = Cache::builder()
        .capacity(100)
        .eviction(Eviction::Lru)
        .critical_share(0.2)
        .eviction_batch_size(1)
        .build();
    for k in 0..50 {
        c.insert_with_priority(k, k, Priority::Critical);
    }
    for k in 100..1_000 {
        c.insert_with_priority(k, k, Priority::High);
    }
    assert_eq!(
        (0..50).filter(|k| c.contains_key(k)).count(),
        20,
        "20 % of 100 pinned"
    );
}

#[test]
fn capacity_bytes_bounds_the_total_weight() {
    struct Page(Vec<u8>);
    impl Clone for Page {
        fn clone(&self) -> Self {
            Page(self.0.clone())
        }
    }
    let c: Cache<u64, Page> = Cache::builder()
        .capacity_bytes(10_000)
        .weigher(|_, p: &Page| p.0.len() as u64)
        .build();
    for k in 0..100 {
        c.insert(k, Page(vec![0; 1_000]));
    }
    let held = c.len();
    assert!(
        (8..=10).contains(&held),
        "about 10 pages of 1,000 bytes: {held}"
    );
    assert!(c.get(&99).is_some(), "the newest stays");
    c.insert(1_000, Page(vec![0; 20_000]));
    assert!(c.get(&1_000).is_none(), "heavier than the bound: not kept");
    assert_eq!(c.stats().entries as usize, c.len());
}

#[cached(capacity_bytes = "8KiB")]
fn blob(n: u64) -> String {
    "x".repeat(1_000 + n as usize % 7)
}

#[test]
fn the_attribute_weighs_values_that_implement_weigh() {
    assert!(String::from("abc").weigh() >= 3);
    for n in 0..50 {
        blob(n);
    }
    let held = blob_cache().len();
    assert!(
        (5..=8).contains(&held),
        "8 KiB holds at most 7 strings of ~1 KB: {held}"
    );
    assert_eq!(blob_cache().settings().capacity_bytes, Some(8 * 1024));
}

/// A token with its own lifetime, as an auth server would return it.
#[derive(Clone, Debug, PartialEq)]
struct Token {
    value: String,
    expires_in: u64,
}

fn token_ttl(t: &Token) -> Duration {
    secs(t.expires_in)
}

static TOKENS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 3600, ttl_fn = token_ttl)]
fn token(user: u64) -> Token {
    TOKENS.fetch_add(1, Ordering::SeqCst);
    Token {
        value: format!("t{user}"),
        expires_in: user * 10,
    }
}

#[test]
fn ttl_fn_gives_each_entry_its_own_expiry() {
    freeze_system_clock();
    token(1); // 10 s
    token(3); // 30 s
    token(0); // 0 s: not cached at all
    assert_eq!(TOKENS.load(Ordering::SeqCst), 3);
    token(0);
    assert_eq!(
        TOKENS.load(Ordering::SeqCst),
        4,
        "a zero TTL is never stored"
    );
    advance_system_clock(secs(11));
    token(1);
    token(3);
    assert_eq!(
        TOKENS.load(Ordering::SeqCst),
        5,
        "only the 10 s token expired"
    );
    advance_system_clock(secs(20));
    token(3);
    assert_eq!(TOKENS.load(Ordering::SeqCst), 6, "then the 30 s one");
}

#[test]
fn ttl_fn_under_a_manual_clock_and_on_insert() {
    let (clock, time) = Clock::manual();
    let c: Cache<u64, u64> = Cache::builder().clock(clock).ttl_fn(|v| secs(*v)).build();
    c.insert(1, 5);
    c.insert(2, 50);
    c.insert(3, 0);
    assert_eq!(c.get(&3), None, "no TTL: not stored");
    time.advance(secs(6));
    assert_eq!((c.get(&1), c.get(&2)), (None, Some(50)));
    // A replacement with no TTL removes the old value.
    c.insert(2, 0);
    assert_eq!(c.get(&2), None);
}

#[test]
fn a_replacement_too_heavy_to_keep_never_leaves_the_old_value() {
    for eviction in [Eviction::Engine, Eviction::Lru, Eviction::TinyLfu] {
        let c: Cache<u64, String> = Cache::builder()
            .capacity_bytes(200_000)
            .eviction(eviction)
            .weigher(|_, v: &String| v.len() as u64)
            .build();
        c.insert(1, "old".into());
        c.insert(1, "x".repeat(300_000));
        assert_eq!(c.get(&1), None, "{eviction:?}: the old value is gone too");
        assert_eq!(c.len(), 0, "{eviction:?}");
    }
}
