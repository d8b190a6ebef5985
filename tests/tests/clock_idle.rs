//! The system clock's thread stops when nothing reads the clock, and a
//! read restarts it without changing what expires when. In a binary of its
//! own: nothing else may read the clock meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::cached;
use cache_core::clock::{RUN, system_clock_ticking};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "2s")]
fn answer(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

static BUSY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "2s")]
fn busy(x: u64) -> u64 {
    BUSY_CALLS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

fn an_unread_clock_stops_and_a_read_restarts_it_with_expiry_intact_inner() {
    let stored = Instant::now();
    assert_eq!(answer(1), 2);
    assert!(system_clock_ticking(), "a TTL'd cache starts the clock");
    std::thread::sleep(RUN + Duration::from_millis(400));
    assert!(
        !system_clock_ticking(),
        "the clock's thread still ticks after {RUN:?} without a read"
    );
    // The hit path read a stopped clock: the entry (1.4 s old, TTL 2 s)
    // is still a hit, not removed as expired.
    assert_eq!(answer(1), 2);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "served from the cache");
    assert!(system_clock_ticking(), "the read restarted the clock");
    // Past the TTL (whether or not the clock stopped again): recomputed.
    std::thread::sleep(Duration::from_millis(2200).saturating_sub(stored.elapsed()));
    assert_eq!(answer(1), 2);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2, "expired after its TTL");
}

/// Four threads hit one key for 3 s while the clock stops after each
/// second and is restarted by the next read: the key is computed at the
/// start and once after its 2 s TTL, never because a read met a stopped
/// clock.
fn busy_readers_across_stops() {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while start.elapsed() < Duration::from_millis(3000) {
                    assert_eq!(busy(7), 8);
                }
            });
        }
    });
    assert_eq!(
        BUSY_CALLS.load(Ordering::SeqCst),
        2,
        "computed at 0 s and after 2 s only"
    );
}

#[test]
fn stops_and_restarts_under_load_change_no_expiry() {
    // After the idle test in this binary would race on the clock: one
    // test function runs both, in order.
    an_unread_clock_stops_and_a_read_restarts_it_with_expiry_intact_inner();
    busy_readers_across_stops();
}
