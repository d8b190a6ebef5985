//! Concurrent misses on one key run the function once; a failing, panicking
//! or cancelled load releases its waiters and leaves the cache usable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use cache_core::{Cache, cached};

const CALLERS: usize = 1000;

static SLOW_SYNC: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn slow_sync(id: u64) -> u64 {
    SLOW_SYNC.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    id * 2
}

#[test]
fn thousand_threads_one_execution() {
    let barrier = Arc::new(Barrier::new(CALLERS));
    let handles: Vec<_> = (0..CALLERS)
        .map(|_| {
            let b = barrier.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    b.wait();
                    slow_sync(21)
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 42);
    }
    assert_eq!(SLOW_SYNC.load(Ordering::SeqCst), 1);
    let s = slow_sync_cache().stats();
    assert_eq!(s.loads, 1);
    assert_eq!(s.hits + s.misses, CALLERS as u64);
}

static SLOW_ASYNC: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn slow_async(id: u64) -> u64 {
    SLOW_ASYNC.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    id * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_tasks_one_execution() {
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let b = barrier.clone();
            tokio::spawn(async move {
                b.wait().await;
                slow_async(21).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 42);
    }
    assert_eq!(SLOW_ASYNC.load(Ordering::SeqCst), 1);
    assert_eq!(slow_async_cache().stats().loads, 1);
}

#[test]
fn different_keys_do_not_wait_on_each_other() {
    let c: Cache<u64, u64> = Cache::new(100);
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for k in 0..4 {
            let c = &c;
            s.spawn(move || {
                c.get_or_insert_with(k, || {
                    std::thread::sleep(Duration::from_millis(100));
                    k
                })
            });
        }
    });
    // Four 100 ms loads on different keys run side by side.
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.stats().loads, 4);
}

#[test]
fn a_panicking_load_releases_waiters_and_does_not_poison() {
    let c: Cache<u64, u64> = Cache::new(100);
    let runs = AtomicUsize::new(0);
    let barrier = Barrier::new(8);
    let results: Vec<std::thread::Result<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    c.get_or_insert_with(1, || {
                        let n = runs.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        if n == 0 {
                            panic!("first load fails");
                        }
                        7
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join()).collect()
    });
    let panics = results.iter().filter(|r| r.is_err()).count();
    let values: Vec<u64> = results.into_iter().filter_map(Result::ok).collect();
    assert_eq!(panics, 1, "only the leader's caller sees its panic");
    assert_eq!(values, vec![7; 7]);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one waiter took over, once");
    assert_eq!(c.get(&1), Some(7));
}

#[test]
fn an_error_is_returned_and_not_cached() {
    let c: Cache<u64, u64> = Cache::new(100);
    let r: Result<u64, &str> = c.get_or_try_insert_with(1, || Err("db down"));
    assert_eq!(r, Err("db down"));
    assert_eq!(c.get(&1), None);
    let r: Result<u64, &str> = c.get_or_try_insert_with(1, || Ok(5));
    assert_eq!(r, Ok(5));
    assert_eq!(c.get(&1), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_share_the_leaders_error_through_the_macro() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[cached]
    async fn flaky(id: u64) -> Result<u64, String> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(format!("no row {id}"))
    }
    let tasks: Vec<_> = (0..50).map(|_| tokio::spawn(flaky(3))).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Err("no row 3".to_string()));
    }
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        1,
        "concurrent callers share one run"
    );
    assert_eq!(flaky_cache().len(), 0, "the error is not stored");
    let _ = flaky(3).await;
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_hands_over() {
    let c: Cache<u64, u64> = Cache::new(100);
    let c2 = c.clone();
    let leader = tokio::spawn(async move {
        c2.get_or_insert_with_async(1, async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            0
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c3 = c.clone();
    let waiter = tokio::spawn(async move { c3.get_or_insert_with_async(1, async { 9 }).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    leader.abort();
    let v = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter was released")
        .unwrap();
    assert_eq!(v, 9);
    assert_eq!(c.get(&1), Some(9));
}

/// The waiters of a load that fails do not retry one after another: each
/// computes for itself at once (100 callers of a 50 ms failing load took
/// 5 s when they were serialized).
#[test]
fn waiters_of_a_failing_load_run_side_by_side() {
    let c: Cache<u64, u64> = Cache::new(16);
    let calls = AtomicUsize::new(0);
    let n = 100;
    let barrier = Barrier::new(n);
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                barrier.wait();
                let r = c.get_or_try_insert_with(1, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    Err::<u64, std::io::Error>(std::io::Error::other("down"))
                });
                assert!(r.is_err());
            });
        }
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "{n} failing callers took {took:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        n,
        "each caller saw its own error"
    );
    assert_eq!(c.get_or_try_insert_with(1, || Ok::<u64, ()>(7)), Ok(7));
}

/// A load under way when the key is invalidated computed from the old
/// state: its value is not stored, and callers after the invalidation do
/// not wait for it but load afresh.
#[test]
fn an_invalidation_detaches_loads_under_way() {
    let c: Cache<u64, &'static str> = Cache::new(16);
    let started = Barrier::new(2);
    std::thread::scope(|s| {
        let old = s.spawn(|| {
            c.get_or_insert_with(1, || {
                started.wait();
                std::thread::sleep(Duration::from_millis(150));
                "old"
            })
        });
        started.wait();
        assert!(!c.invalidate(&1), "nothing stored yet");
        let t = std::time::Instant::now();
        assert_eq!(c.get_or_insert_with(1, || "new"), "new");
        assert!(t.elapsed() < Duration::from_millis(100), "did not wait");
        assert_eq!(old.join().unwrap(), "old", "the old caller gets its value");
    });
    assert_eq!(c.get(&1), Some("new"), "the old load stored nothing");
}

/// An invalidation of one key, or a put, leaves the loads of other keys
/// alone: they store their values (the cache counts invalidations per key,
/// spread over counters, and one clear for all).
#[test]
fn invalidating_one_key_keeps_other_keys_loads() {
    let c: Cache<u64, u64> = Cache::new(1024);
    let loads = AtomicUsize::new(0);
    // Keys whose counters differ from key 0's exist among the first 64;
    // every one of them must keep its load.
    for other in 1..64u64 {
        let started = Barrier::new(2);
        let go = Barrier::new(2);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                c.get_or_insert_with(1000 + other, || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    started.wait();
                    go.wait();
                    other
                })
            });
            started.wait();
            c.invalidate(&0);
            c.insert(other, other);
            go.wait();
            t.join().unwrap();
        });
    }
    let kept = (1..64u64).filter(|o| c.get(&(1000 + o)).is_some()).count();
    // A key shares a counter with key 0 or with `other` at most 2 in 64 times.
    assert!(kept >= 56, "only {kept} of 63 loads were stored");
    c.clear();
    assert_eq!(c.len(), 0);
}

/// A tag invalidation reaches a load under way even when no entry carries
/// the tag yet.
#[test]
fn a_tag_invalidation_detaches_loads_under_way() {
    let c: Cache<u64, u64> = cache_core::CacheBuilder::new()
        .tags(|k| vec![format!("t:{k}")])
        .build();
    let db = AtomicUsize::new(0);
    let started = Barrier::new(2);
    let invalidated = Barrier::new(2);
    std::thread::scope(|s| {
        let old = s.spawn(|| {
            c.get_or_insert_with(1, || {
                let v = db.load(Ordering::SeqCst) as u64;
                started.wait();
                invalidated.wait();
                v
            })
        });
        started.wait();
        db.store(1, Ordering::SeqCst);
        assert_eq!(c.invalidate_tag("t:1"), 0, "nothing stored yet");
        invalidated.wait();
        assert_eq!(old.join().unwrap(), 0);
    });
    assert_eq!(
        c.get_or_insert_with(1, || db.load(Ordering::SeqCst) as u64),
        1
    );
}

/// Loads racing tag invalidations never leave an entry the tag no longer
/// reaches.
#[test]
fn racing_loads_keep_the_tag_index_whole() {
    let c: Cache<u64, u64> = cache_core::CacheBuilder::new()
        .tags(|_| vec!["t".into()])
        .build();
    let ver = AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    c.get_or_insert_with(1, || ver.load(Ordering::SeqCst) as u64);
                }
            });
        }
        for i in 1..=20_000 {
            ver.store(i, Ordering::SeqCst);
            c.invalidate_tag("t");
        }
        stop.store(true, Ordering::Relaxed);
    });
    ver.store(99_999, Ordering::SeqCst);
    c.invalidate_tag("t");
    assert_eq!(
        c.get_or_insert_with(1, || ver.load(Ordering::SeqCst) as u64),
        99_999,
        "the last tag invalidation reached the entry"
    );
}

/// A load that asks for its own key on its own thread computes instead of
/// waiting for itself forever.
#[test]
fn a_reentrant_load_does_not_deadlock() {
    thread_local! {
        static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    #[cached]
    fn reent(id: u64) -> u64 {
        let d = DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        if d == 1 { reent(id) + 1 } else { id }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(reent(9)).unwrap());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5))
            .expect("no deadlock"),
        10
    );
}

/// A sync call on a runtime worker used to take an async task's load of
/// the same key, led from that worker, for its own (re-entrant) load: it
/// computed again and got another value. It now waits for the task.
#[test]
fn a_sync_call_on_a_worker_waits_for_an_async_load_of_the_same_key() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..5u64 {
        let cache: Arc<Cache<u64, u64>> = Arc::new(Cache::new(100));
        let loads = Arc::new(AtomicUsize::new(0));
        let (c, l) = (cache.clone(), loads.clone());
        let leader = rt.spawn(async move {
            c.get_or_insert_with_async(round, async move {
                l.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                42
            })
            .await
        });
        let (c, l) = (cache.clone(), loads.clone());
        let follower = rt.spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Sync code called from a task, on a worker thread.
            c.get_or_insert_with(round, || {
                l.fetch_add(1, Ordering::SeqCst);
                0
            })
        });
        let (a, b) = rt.block_on(async { (leader.await.unwrap(), follower.await.unwrap()) });
        assert_eq!((a, b), (42, 42), "round {round}");
        assert_eq!(loads.load(Ordering::SeqCst), 1, "round {round}: one load");
    }
}

/// On a one-thread runtime a sync call cannot wait for a task of that
/// runtime (the task could never run): it computes for itself, and neither
/// hangs.
#[test]
fn a_sync_call_on_a_one_thread_runtime_computes_instead_of_hanging() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache: Arc<Cache<u64, u64>> = Arc::new(Cache::new(100));
    let c = cache.clone();
    let (a, b) = rt.block_on(async move {
        let c2 = c.clone();
        let leader = tokio::spawn(async move {
            c2.get_or_insert_with_async(1, async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                42
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = c.get_or_insert_with(1, || 43);
        (leader.await.unwrap(), b)
    });
    assert_eq!((a, b), (42, 43));
    assert!(cache.get(&1).is_some());
}
