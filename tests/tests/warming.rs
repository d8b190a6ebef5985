//! Warming and priming: `warm` over inputs with bounded concurrency and
//! counts, the `<fn>_prime` companion of `#[cached]`, `Cache::prime`,
//! `warm_from` and `warm_keys` over a source, and values read before an
//! invalidation that must not be stored (by a prime, a warm or a sync).
//!
//! One global subscriber records every test's tracing, so progress lines
//! can be asserted whatever thread logs them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::Duration;

use cache_core::source::{Source, SourceError};
use cache_core::{Cache, CacheBuilder, Startup, SyncOptions, Synced, cached, warm, warm_async};

fn log() -> &'static cache_tests::CapturedLog {
    static LOG: OnceLock<cache_tests::CapturedLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let out = cache_tests::CapturedLog::default();
        let o = out.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || o.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("one global subscriber");
        out
    })
}

static SQUARE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn square(n: u64) -> u64 {
    SQUARE_CALLS.fetch_add(1, Ordering::SeqCst);
    n * n
}

#[test]
fn warming_a_cached_function_runs_each_input_once_and_later_calls_hit() {
    log();
    let report = warm(0..200u64, 4, |n| {
        square(n);
    });
    assert_eq!(
        (report.total, report.succeeded, report.failed),
        (200, 200, 0)
    );
    assert_eq!(SQUARE_CALLS.load(Ordering::SeqCst), 200);
    for n in 0..200u64 {
        assert_eq!(square(n), n * n);
    }
    assert_eq!(SQUARE_CALLS.load(Ordering::SeqCst), 200, "every call a hit");
    assert_eq!(square_cache().len(), 200);
}

#[test]
fn warm_counts_values_absences_errors_and_panics_and_keeps_going() {
    log();
    let r = warm(0..40u32, 3, |n| -> Result<Option<u32>, String> {
        match n % 4 {
            0 => Ok(Some(n)),
            1 => Ok(None),
            2 => Err(format!("row {n} is corrupt")),
            _ => panic!("loader bug on {n}"),
        }
    });
    assert_eq!((r.total, r.succeeded, r.absent, r.failed), (40, 10, 10, 20));
    let first = r.first_error.expect("a failure message");
    assert!(
        first.contains("is corrupt") || first.contains("panicked: loader bug"),
        "{first}"
    );
}

#[test]
fn warm_never_runs_more_than_its_concurrency_and_reaches_it() {
    log();
    let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let r = warm(0..24, 3, |_| {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(15));
        now.fetch_sub(1, Ordering::SeqCst);
    });
    assert_eq!(r.succeeded, 24);
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    let r = warm(Vec::<u8>::new(), 0, |_| ());
    assert_eq!(
        (r.total, r.succeeded),
        (0, 0),
        "nothing to warm is no error"
    );
}

#[test]
fn warm_async_polls_at_most_its_concurrency() {
    log();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let r = rt.block_on(warm_async(0..30u32, 5, |n| {
        let (now, peak) = (&now, &peak);
        async move {
            let c = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(c, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            if n == 7 { Err("seven") } else { Ok(()) }
        }
    }));
    assert_eq!((r.total, r.succeeded, r.failed), (30, 29, 1));
    assert_eq!(r.first_error.as_deref(), Some("seven"));
    assert_eq!(peak.load(Ordering::SeqCst), 5);
}

#[test]
fn a_warm_run_reports_progress_through_tracing() {
    let log = log();
    let cache: Cache<u32, u32> = CacheBuilder::new().name("progress_probe").build();
    let src = Rows::with((0..50).map(|i| (i, i)));
    let r = cache.warm_keys(0..50, 2, &src);
    assert_eq!(r.succeeded, 50);
    let text = log.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("progress_probe"))
        .collect();
    assert!(lines.iter().any(|l| l.contains("total=50")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("50%")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("warmed") && l.contains("succeeded=50")),
        "{lines:#?}"
    );
}

static PRICE: AtomicUsize = AtomicUsize::new(10);
static PRICE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn price(item: String) -> usize {
    PRICE_CALLS.fetch_add(1, Ordering::SeqCst);
    PRICE.load(Ordering::SeqCst) + item.len()
}

#[test]
fn the_prime_companion_recomputes_and_stores_whatever_the_cache_holds() {
    log();
    assert_eq!(price("ab".into()), 12);
    PRICE.store(20, Ordering::SeqCst);
    assert_eq!(price("ab".into()), 12, "a hit keeps the old value");
    assert_eq!(price_prime("ab".into()), 22, "prime computes again");
    let calls = PRICE_CALLS.load(Ordering::SeqCst);
    assert_eq!(price("ab".into()), 22, "and stores what it computed");
    assert_eq!(PRICE_CALLS.load(Ordering::SeqCst), calls, "a hit");
    assert_eq!(price_prime("new".into()), 23, "an absent key is stored too");
    assert_eq!(price_cache().get(&"new".to_string()), Some(23));
}

static STOCK: Mutex<BTreeMap<u32, u32>> = Mutex::new(BTreeMap::new());
static STOCK_FAIL: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn stock(id: u32) -> Result<Option<u32>, String> {
    if STOCK_FAIL.load(Ordering::SeqCst) == 1 {
        return Err("db down".into());
    }
    Ok(STOCK.lock().unwrap().get(&id).copied())
}

#[test]
fn a_failed_prime_keeps_the_entry_and_a_refused_value_removes_it() {
    log();
    STOCK.lock().unwrap().insert(1, 5);
    assert_eq!(stock(1), Ok(Some(5)));
    STOCK.lock().unwrap().insert(1, 6);
    STOCK_FAIL.store(1, Ordering::SeqCst);
    assert_eq!(stock_prime(1), Err("db down".into()));
    assert_eq!(
        stock_cache().get(&1),
        Some(Some(5)),
        "an error changes nothing"
    );
    STOCK_FAIL.store(0, Ordering::SeqCst);
    assert_eq!(stock_prime(1), Ok(Some(6)));
    assert_eq!(stock_cache().get(&1), Some(Some(6)));

    // A value the cache refuses to store replaces nothing: the older
    // entry goes.
    let c: Cache<u32, Option<u32>> = CacheBuilder::new()
        .store_if(|v: &Option<u32>| v.is_some())
        .build();
    c.insert(1, Some(1));
    assert_eq!(c.prime(1, || None), None);
    assert!(!c.contains_key(&1), "the old Some(1) is gone");
}

#[test]
fn a_prime_whose_key_is_invalidated_while_it_computes_stores_nothing() {
    log();
    let cache: Arc<Cache<u32, &'static str>> = Arc::new(Cache::new(100));
    cache.insert(1, "old");
    let (started, go) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let t = {
        let (c, s, g) = (cache.clone(), started.clone(), go.clone());
        std::thread::spawn(move || {
            c.prime(1, || {
                s.wait();
                g.wait();
                "read before the update"
            })
        })
    };
    started.wait();
    // The writer updates the database, then invalidates: acknowledged.
    assert!(cache.invalidate(&1));
    go.wait();
    assert_eq!(t.join().unwrap(), "read before the update");
    assert_eq!(cache.get(&1), None, "the stale value is not stored");
    assert_eq!(cache.prime(1, || "fresh"), "fresh");
    assert_eq!(cache.get(&1), Some("fresh"));
}

#[test]
fn a_load_under_way_does_not_overwrite_a_primed_value() {
    log();
    let cache: Arc<Cache<u32, &'static str>> = Arc::new(Cache::new(100));
    let (started, go) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let t = {
        let (c, s, g) = (cache.clone(), started.clone(), go.clone());
        std::thread::spawn(move || {
            c.get_or_insert_with(1, || {
                s.wait();
                g.wait();
                "older load"
            })
        })
    };
    started.wait();
    cache.prime(1, || "primed");
    go.wait();
    assert_eq!(t.join().unwrap(), "older load");
    assert_eq!(cache.get(&1), Some("primed"));
}

/// A source over a map, which can hold `load_all` until released, and
/// fail.
#[derive(Default)]
struct Rows {
    rows: Mutex<BTreeMap<u32, u32>>,
    hold: Mutex<Option<(Arc<Barrier>, Arc<Barrier>)>>,
    fail: AtomicUsize,
}

impl Rows {
    fn with(rows: impl IntoIterator<Item = (u32, u32)>) -> Self {
        Rows {
            rows: Mutex::new(rows.into_iter().collect()),
            ..Rows::default()
        }
    }
}

impl Source<u32, u32> for Rows {
    fn load(&self, key: &u32) -> Result<Option<u32>, SourceError> {
        if *key % 10 == 9 && self.fail.load(Ordering::SeqCst) == 1 {
            return Err(SourceError::Failed(format!("row {key} unreadable")));
        }
        Ok(self.rows.lock().unwrap().get(key).copied())
    }

    fn load_all(&self) -> Result<(Vec<(u32, u32)>, String), SourceError> {
        if self.fail.load(Ordering::SeqCst) == 2 {
            return Err(SourceError::Failed("database is locked".into()));
        }
        let all: Vec<(u32, u32)> = self.rows.lock().unwrap().clone().into_iter().collect();
        let hold = self.hold.lock().unwrap().take();
        if let Some((read, go)) = hold {
            read.wait();
            go.wait();
        }
        Ok((all, String::new()))
    }
}

#[test]
fn warm_from_and_warm_keys_store_what_the_source_has() {
    log();
    let cache: Cache<u32, u32> = Cache::new(1000);
    let src = Rows::with((0..100).map(|i| (i, i * 2)));
    let r = cache.warm_from(&src).unwrap();
    assert_eq!((r.total, r.succeeded), (100, 100));
    assert_eq!(cache.len(), 100);
    assert_eq!(cache.get(&7), Some(14));

    src.fail.store(2, Ordering::SeqCst);
    let e = cache.warm_from(&src).unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");
    assert_eq!(cache.len(), 100, "a failed warm changes nothing");

    let fresh: Cache<u32, u32> = Cache::new(1000);
    src.fail.store(1, Ordering::SeqCst);
    let r = fresh.warm_keys(90..110, 4, &src);
    // 90-98 stored, 100-108 absent, 99 and 109 fail.
    assert_eq!((r.total, r.succeeded, r.absent, r.failed), (20, 9, 9, 2));
    assert!(r.first_error.unwrap().contains("unreadable"));
    assert_eq!(fresh.len(), 9);
    assert!(!fresh.contains_key(&99) && fresh.contains_key(&98));

    let unsupported = cache.warm_from(&OnlyLoads);
    assert!(
        unsupported
            .unwrap_err()
            .to_string()
            .contains("cannot load everything")
    );
}

struct OnlyLoads;
impl Source<u32, u32> for OnlyLoads {
    fn load(&self, key: &u32) -> Result<Option<u32>, SourceError> {
        Ok(Some(*key))
    }
}

#[test]
fn a_full_load_does_not_store_a_key_invalidated_while_it_read() {
    log();
    for mode in ["warm_from", "sync"] {
        let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(1000));
        // Keys share 256 invalidation counters, so another key may rarely
        // count key 1's invalidation too and be left out: seven others
        // make it unlikely (about 2 in a million) that more than two are.
        let src = Arc::new(Rows::with((1..=8).map(|k| (k, k * 100))));
        let (read, go) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let synced = (mode == "sync").then(|| {
            let opts = SyncOptions::on_demand().startup(Startup::Blocking);
            Arc::new(Synced::start(cache.as_ref().clone(), src.clone(), opts))
        });
        *src.hold.lock().unwrap() = Some((read.clone(), go.clone()));
        let t = {
            let (c, s, synced) = (cache.clone(), src.clone(), synced.clone());
            std::thread::spawn(move || match synced {
                Some(sy) => sy.sync_now().map(|_| ()),
                None => c.warm_from(s.as_ref()).map(|_| ()),
            })
        };
        read.wait();
        // The source has been read; now the row changes and its key is
        // invalidated (acknowledged) before the load stores anything.
        src.rows.lock().unwrap().insert(1, 101);
        cache.invalidate(&1);
        go.wait();
        t.join().unwrap().unwrap();
        assert_eq!(
            cache.get(&1),
            None,
            "{mode}: 1 was read before its invalidation"
        );
        let others: Vec<Option<u32>> = (2..=8).map(|k| cache.get(&k)).collect();
        for (k, v) in (2..=8).zip(&others) {
            assert!(v.is_none() || *v == Some(k * 100), "{mode}: {k} → {v:?}");
        }
        let kept = others.iter().filter(|v| v.is_some()).count();
        assert!(kept >= 5, "{mode}: only {kept} of 7 other keys stored");
    }
}

struct Catalog {
    names: Mutex<BTreeMap<u32, String>>,
    reads: AtomicUsize,
}

#[cache_core::cache_service(name = "warming_catalog")]
impl Catalog {
    #[cached]
    async fn name(&self, id: u32) -> Result<String, String> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let names = self.names.lock().unwrap();
        names
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("no item {id}"))
    }
}

#[test]
fn an_async_service_action_has_a_prime_companion_in_its_tenant() {
    log();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let cat = Catalog {
        names: Mutex::new([(1, "one".to_string())].into()),
        reads: AtomicUsize::new(0),
    };
    rt.block_on(async {
        assert_eq!(cat.name(1).await.as_deref(), Ok("one"));
        cat.names.lock().unwrap().insert(1, "uno".into());
        assert_eq!(cat.name(1).await.as_deref(), Ok("one"), "cached");
        assert_eq!(cat.name_prime(1).await.as_deref(), Ok("uno"));
        assert_eq!(cat.name(1).await.as_deref(), Ok("uno"), "primed");
        assert_eq!(cat.reads.load(Ordering::SeqCst), 2);
        // Another tenant's entry is its own: priming it leaves the
        // default tenant's alone, and is then a hit in that tenant.
        cat.names.lock().unwrap().insert(1, "eins".into());
        cache_core::tenant_scope("acme", async {
            assert_eq!(cat.name_prime(1).await.as_deref(), Ok("eins"));
            assert_eq!(cat.name(1).await.as_deref(), Ok("eins"));
        })
        .await;
        assert_eq!(cat.name(1).await.as_deref(), Ok("uno"));
        assert_eq!(cat.reads.load(Ordering::SeqCst), 3);
        let e = cat.name_prime(2).await.unwrap_err();
        assert_eq!(e, "no item 2", "an error is returned and not stored");
        assert_eq!(cat.reads.load(Ordering::SeqCst), 4);
    });
}

#[path = "warming/races.rs"]
mod races;
