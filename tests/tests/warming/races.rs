//! Races found by an outside attack on priming, warming and syncing; each
//! break is kept as a test.

use super::*;

static STEP: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn wait_step(s: u8) {
    let t = std::time::Instant::now();
    while STEP.load(Ordering::SeqCst) < s {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "stuck before step {s}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs inside the store (the tags function is called after the load's
/// first check of the invalidation counts and before the insert).
fn pause_in_store(k: &u64) -> Vec<String> {
    if *k == 1 && STEP.load(Ordering::SeqCst) == 1 {
        STEP.store(2, Ordering::SeqCst);
        wait_step(3);
    }
    Vec::new()
}

/// Found by an outside attack: a load (or prime) that had checked for
/// invalidations, then stored after an invalidation returned, was visible
/// until its re-check removed it. The check and the insert are now one
/// step that invalidations wait for.
#[test]
fn a_value_stored_across_an_invalidation_is_never_visible_after_it_returns() {
    log();
    for how in ["prime", "load"] {
        STEP.store(0, Ordering::SeqCst);
        // The index function runs after the insert: it pauses there, where
        // the old code had a stored value and had not yet re-checked.
        let c: Cache<u64, &'static str> = CacheBuilder::new()
            .tags(pause_in_store)
            .index("i", |v: &&'static str| {
                if *v == "old" && STEP.load(Ordering::SeqCst) == 3 {
                    STEP.store(4, Ordering::SeqCst);
                    wait_step(5);
                }
                Vec::new()
            })
            .build();
        std::thread::scope(|s| {
            let c2 = c.clone();
            let t = s.spawn(move || {
                STEP.store(1, Ordering::SeqCst);
                match how {
                    "prime" => c2.prime(1, || "old"),
                    _ => c2.get_or_insert_with(1, || "old"),
                }
            });
            wait_step(2);
            // The database changes; the key is invalidated. While the
            // store is paused, the invalidation must wait, or remove it.
            let inv = s.spawn(|| c.invalidate(&1));
            std::thread::sleep(Duration::from_millis(50));
            STEP.store(3, Ordering::SeqCst);
            inv.join().unwrap();
            // Give a store that went ahead the time to reach the index.
            let t0 = std::time::Instant::now();
            while STEP.load(Ordering::SeqCst) < 4 && t0.elapsed() < Duration::from_millis(300) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let seen = c.get(&1);
            STEP.store(5, Ordering::SeqCst);
            assert_eq!(seen, None, "{how}: stale after invalidate returned");
            assert_eq!(t.join().unwrap(), "old");
            assert_eq!(c.get(&1), None, "{how}");
        });
    }
}

// Found by an outside attack; each was a break, now a test.

/// Keys share invalidation counters: other keys' primes and inserts used
/// to make a prime store nothing while it kept the old value (234 of
/// 50,000 syncs left it for good).
#[test]
fn primes_and_inserts_of_other_keys_never_undo_a_prime() {
    log();
    let c: Cache<u64, u64> = Cache::new(100_000);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 1u64 << 40;
            while !stop.load(Ordering::Relaxed) {
                c.prime(n, || 0);
                c.insert(n + 1, 0);
                n += 2;
            }
        });
        for k in 0..20_000u64 {
            c.insert(k, 1);
            assert_eq!(c.prime(k, || 2), 2);
            assert_eq!(c.get(&k), Some(2), "key {k}: the prime was lost");
        }
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn concurrent_warms_keep_everything_and_a_refused_value_only_its_key() {
    log();
    let c: Cache<u32, u32> = Cache::new(100_000);
    let src = Rows::with((0..5000).map(|i| (i, i + 1)));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| c.warm_from(&src).unwrap());
        let b = s.spawn(|| c.warm_from(&src).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!((a.succeeded, b.succeeded), (5000, 5000), "{a:?} {b:?}");
    assert_eq!(c.len(), 5000);
    let fresh: Cache<u32, u32> = Cache::new(100_000);
    let r = fresh.warm_keys(0..4000, 32, &src);
    assert_eq!((r.succeeded, r.skipped), (4000, 0));
    assert_eq!(fresh.len(), 4000);

    let picky: Cache<u32, u32> = CacheBuilder::new().store_if(|v: &u32| *v != 0).build();
    for k in 1..=1000 {
        picky.insert(k, k);
    }
    let r = picky
        .warm_from(&Rows::with((0..=1000).map(|k| (k, k))))
        .unwrap();
    assert_eq!((r.succeeded, r.skipped), (1000, 1), "{r:?}");
    assert_eq!(picky.len(), 1000);
}

struct Panicky(AtomicUsize);
impl Source<u32, u32> for Panicky {
    fn load(&self, key: &u32) -> Result<Option<u32>, SourceError> {
        Ok(Some(*key))
    }
    fn load_all(&self) -> Result<(Vec<(u32, u32)>, String), SourceError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("driver bug");
        }
        Ok((vec![(1, 1)], String::new()))
    }
}

#[test]
fn a_source_that_panics_fails_one_sync_and_the_next_goes_on() {
    log();
    let cache: Cache<u32, u32> = Cache::new(100);
    let s = Synced::start(
        cache.clone(),
        Panicky(AtomicUsize::new(0)),
        SyncOptions::every(Duration::from_millis(20)),
    );
    let t = std::time::Instant::now();
    while s.stats().syncs == 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = s.stats();
    assert!(st.failures >= 1 && st.syncs >= 1, "{st:?}");
    assert_eq!(cache.get(&1), Some(1));
}

#[test]
fn warm_async_counts_a_panic_in_the_function_itself() {
    log();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let r = rt.block_on(warm_async(0..10u32, 4, |i| {
        assert!(i != 3, "no future for {i}");
        async move { Some(i) }
    }));
    assert_eq!((r.succeeded, r.failed), (9, 1), "{r:?}");
}

#[test]
fn a_sync_report_counts_what_it_stored_and_removed() {
    log();
    let cache: Cache<u32, u32> = CacheBuilder::new()
        .store_if(|v: &u32| v.is_multiple_of(2))
        .build();
    let s = Synced::start(
        cache.clone(),
        Rows::with((0..10).map(|k| (k, k))),
        SyncOptions::on_demand().startup(Startup::Blocking),
    );
    let last = s.stats().last.unwrap();
    assert_eq!((last.upserts, cache.len()), (5, 5));
}

/// Under invalidations of other keys, a sync that cannot store an upsert
/// drops the old entry instead of keeping it (it used to keep it).
#[test]
fn a_sync_under_unrelated_invalidations_never_keeps_an_old_value() {
    log();
    let cache: Cache<u32, u32> = Cache::new(100_000);
    let src = Arc::new(Rows::with((0..200).map(|k| (k, 0))));
    let s = Synced::start(
        cache.clone(),
        src.clone(),
        SyncOptions::on_demand().startup(Startup::Blocking),
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut n = 1_000_000u32;
            while !stop.load(Ordering::Relaxed) {
                cache.invalidate(&n);
                n = n.wrapping_add(1).max(1_000_000);
            }
        });
        for round in 1..=200u32 {
            src.rows.lock().unwrap().insert(round - 1, round);
            s.sync_now().unwrap();
            let held = cache.get(&(round - 1));
            assert!(
                held.is_none() || held == Some(round),
                "round {round}: {held:?}"
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
}
