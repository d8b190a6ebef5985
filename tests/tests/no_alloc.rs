//! A hit with scalar arguments allocates nothing. A counting global
//! allocator counts the allocations made by the test's own thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::cached;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[cached(ttl = 60)]
fn scalar(a: u64, b: i32, c: bool) -> u64 {
    a + b as u64 + c as u64
}

#[cached(ttl = 60)]
async fn scalar_async(a: u64) -> u64 {
    a * 3
}

fn noop_waker_poll<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a hit completes on first poll"),
    }
}

/// One test, so nothing else in this binary allocates while counting.
#[test]
fn hits_with_scalar_arguments_do_not_allocate() {
    // Warm up: first calls build the cache, start the clock, take a counter stripe.
    assert_eq!(scalar(1, 2, true), 4);
    assert_eq!(scalar(1, 2, true), 4);
    assert_eq!(noop_waker_poll(scalar_async(5)), 15);
    assert_eq!(noop_waker_poll(scalar_async(5)), 15);

    COUNTING.with(|c| c.set(true));
    let mut sum = 0;
    for _ in 0..10_000 {
        sum += scalar(1, 2, true);
        sum += noop_waker_poll(scalar_async(5));
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(sum, 10_000 * 19);
    assert_eq!(
        ALLOCS.load(Ordering::SeqCst),
        0,
        "allocations on the hit path"
    );

    // The counter works: a miss does allocate (the entry and the flight).
    COUNTING.with(|c| c.set(true));
    scalar(9, 9, false);
    COUNTING.with(|c| c.set(false));
    assert!(ALLOCS.load(Ordering::SeqCst) > 0);
}
