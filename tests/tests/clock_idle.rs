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

#[test]
fn an_unread_clock_stops_and_a_read_restarts_it_with_expiry_intact() {
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
