//! A cache kept in step with a source: the full load, incremental changes,
//! read-through on a miss, failed syncs that keep what the cache holds,
//! the interval thread, and sources that offer less.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::index::Query;
use cache_core::source::{Changes, Source, SourceError};
use cache_core::{Cache, CacheBuilder, Startup, SyncOptions, Synced};

/// The rows by key, and the change log: (sequence number, key written).
type Rows = (BTreeMap<String, String>, Vec<(u64, String)>);

/// A table with a change log, as a database with an `updated` column
/// would give: every write gets the next sequence number.
#[derive(Default)]
struct Table {
    rows: parking_lot_free::Mutex<Rows>,
    fail: AtomicBool,
    loads: AtomicUsize,
    changes_calls: AtomicUsize,
    /// Lists no changes: each sync reloads everything.
    full_only: bool,
}

mod parking_lot_free {
    /// A mutex that shrugs off poisoning.
    #[derive(Default)]
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

impl Table {
    fn write(&self, k: &str, v: Option<&str>) {
        let mut g = self.rows.lock();
        match v {
            Some(v) => g.0.insert(k.into(), v.into()),
            None => g.0.remove(k),
        };
        let seq = g.1.len() as u64 + 1;
        g.1.push((seq, k.into()));
    }

    fn check(&self) -> Result<(), SourceError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(SourceError::Failed("database is locked".into()));
        }
        Ok(())
    }
}

/// The source a cache sees: another handle on the table.
struct Db(Arc<Table>);

impl std::ops::Deref for Db {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.0
    }
}

impl Source<String, String> for Db {
    fn load(&self, key: &String) -> Result<Option<String>, SourceError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        std::thread::sleep(Duration::from_millis(20));
        Ok(self.rows.lock().0.get(key).cloned())
    }

    fn load_all(&self) -> Result<(Vec<(String, String)>, String), SourceError> {
        self.check()?;
        let g = self.rows.lock();
        let all = g.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let cursor = if self.full_only {
            String::new()
        } else {
            g.1.len().to_string()
        };
        Ok((all, cursor))
    }

    fn changes(&self, cursor: &str) -> Result<Changes<String, String>, SourceError> {
        self.changes_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let from: usize = cursor
            .parse()
            .map_err(|_| SourceError::Failed(format!("bad cursor {cursor:?}")))?;
        let g = self.rows.lock();
        let (mut up, mut del) = (Vec::new(), Vec::new());
        let touched: std::collections::BTreeSet<&String> =
            g.1[from..].iter().map(|(_, k)| k).collect();
        for k in touched {
            match g.0.get(k) {
                Some(v) => up.push((k.clone(), v.clone())),
                None => del.push(k.clone()),
            }
        }
        Ok(Changes::new(up, del, g.1.len().to_string()))
    }
}

fn cache(name: &str) -> Cache<String, String> {
    CacheBuilder::new()
        .name(name)
        .index("lang", |v: &String| {
            vec![v.split(':').next().unwrap_or("").to_string()]
        })
        .build()
}

fn table(rows: &[(&str, &str)]) -> Arc<Table> {
    let t = Arc::new(Table::default());
    for (k, v) in rows {
        t.write(k, Some(v));
    }
    t
}

fn python(c: &Cache<String, String>) -> Vec<String> {
    c.query(&Query::new().eq("lang", "py"))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn a_full_load_then_changes_then_a_failure_that_keeps_everything() {
    let t = table(&[
        ("a.py", "py:main"),
        ("b.rs", "rs:main"),
        ("c.py", "py:init"),
    ]);
    let s = Synced::start(
        cache("sync_basic"),
        Db(t.clone()),
        SyncOptions::default().startup(Startup::Blocking),
    );
    let st = s.stats();
    assert_eq!((st.syncs, st.failures), (1, 0));
    let last = st.last.unwrap();
    assert!(last.full);
    assert_eq!((last.upserts, last.deletes), (3, 0));
    assert!(st.last_success.is_some());
    assert_eq!(python(s.cache()), vec!["a.py", "c.py"]);

    // Another connection inserts, updates and deletes.
    t.write("d.py", Some("py:run"));
    t.write("a.py", Some("rs:main"));
    t.write("c.py", None);
    let r = s.sync_now().unwrap();
    assert!(!r.full);
    assert_eq!((r.upserts, r.deletes), (2, 1));
    assert_eq!(python(s.cache()), vec!["d.py"]);
    assert_eq!(s.cache().get(&"a.py".into()).as_deref(), Some("rs:main"));
    assert!(!s.cache().contains_key(&"c.py".into()));

    // The database is locked: the sync fails, is counted, and the cache
    // keeps serving what it held.
    t.fail.store(true, Ordering::SeqCst);
    t.write("e.py", Some("py:x"));
    let e = s.sync_now().unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");
    let st = s.stats();
    assert_eq!((st.syncs, st.failures), (2, 1));
    assert!(st.last_error.unwrap().contains("locked"));
    assert_eq!(python(s.cache()), vec!["d.py"]);
    // Back: the next sync picks up what it missed.
    t.fail.store(false, Ordering::SeqCst);
    assert_eq!(s.sync_now().unwrap().upserts, 1);
    assert_eq!(python(s.cache()), vec!["d.py", "e.py"]);
    assert_eq!(s.stats().last_error, None);
}

#[test]
fn misses_read_through_once_and_absent_keys_are_not_stored() {
    let t = table(&[("a", "py:1")]);
    let s = Synced::start(
        cache("sync_read"),
        Db(t.clone()),
        SyncOptions::on_demand().startup(Startup::Lazy),
    );
    assert!(s.cache().is_empty(), "lazy: nothing loaded yet");
    std::thread::scope(|sc| {
        for _ in 0..8 {
            sc.spawn(|| assert_eq!(s.get(&"a".into()).unwrap().as_deref(), Some("py:1")));
        }
    });
    assert_eq!(
        t.loads.load(Ordering::SeqCst),
        1,
        "one load for eight callers"
    );
    assert_eq!(s.get(&"nope".into()).unwrap(), None);
    assert!(!s.cache().contains_key(&"nope".into()));
    t.fail.store(true, Ordering::SeqCst);
    assert!(s.get(&"other".into()).is_err());
    assert_eq!(
        s.get(&"a".into()).unwrap().as_deref(),
        Some("py:1"),
        "cached"
    );
    assert_eq!(s.stats().loads, 3);
}

#[test]
fn the_interval_thread_syncs_until_dropped() {
    let t = table(&[("a.py", "py:1")]);
    let s = Synced::start(
        cache("sync_interval"),
        Db(t.clone()),
        SyncOptions::every(Duration::from_millis(50)),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while python(s.cache()).is_empty() {
        assert!(Instant::now() < until, "the background load never came");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.write("b.py", Some("py:2"));
    while python(s.cache()).len() < 2 {
        assert!(Instant::now() < until, "no sync picked up the new row");
        std::thread::sleep(Duration::from_millis(10));
    }
    let c = s.cache().clone();
    drop(s);
    let calls = t.changes_calls.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        t.changes_calls.load(Ordering::SeqCst),
        calls,
        "stopped with its handle"
    );
    assert_eq!(python(&c).len(), 2, "the cache lives on");
}

#[test]
fn a_source_without_changes_reloads_everything_and_drops_what_left() {
    let t = Arc::new(Table {
        full_only: true,
        ..Table::default()
    });
    t.write("a.py", Some("py:1"));
    t.write("b.py", Some("py:2"));
    let s = Synced::start(
        cache("sync_full"),
        Db(t.clone()),
        SyncOptions::on_demand().startup(Startup::Blocking),
    );
    t.write("a.py", None);
    let r = s.sync_now().unwrap();
    assert!(r.full);
    assert_eq!((r.upserts, r.deletes), (1, 1));
    assert_eq!(python(s.cache()), vec!["b.py"]);
    assert_eq!(t.changes_calls.load(Ordering::SeqCst), 0);
}

/// A source that can only load one key: syncing says so; reads go through.
struct OnlyLoad;

impl Source<String, String> for OnlyLoad {
    fn load(&self, key: &String) -> Result<Option<String>, SourceError> {
        Ok(Some(format!("py:{key}")))
    }
}

#[test]
fn a_source_that_only_loads_still_reads_through() {
    let s = Synced::start(
        cache("sync_only"),
        OnlyLoad,
        SyncOptions::every(Duration::from_millis(20)),
    );
    assert_eq!(
        s.sync_now().unwrap_err(),
        SourceError::Unsupported("load everything")
    );
    assert_eq!(s.stats().failures, 0, "not a failure: nothing to sync");
    assert_eq!(s.get(&"x".into()).unwrap().as_deref(), Some("py:x"));
}

/// The seed's settings on a registered cache: `eviction` from
/// configuration picks the engine when the cache is built, exactly
/// `eviction_batch_size` entries go when the bound is hit, and
/// `sync_interval` reaches the sync options.
#[test]
fn configuration_picks_the_policy_the_batch_and_the_interval() {
    let cfg = serde_json::json!({"actions": {"seed_lru": {
        "max_items": 200, "eviction": "lru", "eviction_batch_size": 50, "sync_interval": 15,
    }}});
    cache_core::config::set(serde_json::from_value(cfg).unwrap()).unwrap();
    let c: Cache<u64, u64> = CacheBuilder::new().name("seed_lru").register(true).build();
    let s = c.settings();
    assert_eq!(s.eviction, Some(cache_core::Eviction::Lru));
    assert_eq!((s.capacity, s.eviction_batch_size), (200, 50));
    for k in 0..200 {
        c.insert(k, k);
    }
    for k in 0..10 {
        c.get(&k); // recently used: kept
    }
    assert_eq!((c.len(), c.stats().evictions), (200, 0));
    c.insert(1000, 1000);
    assert_eq!(c.stats().evictions, 50, "exactly one batch");
    assert_eq!(c.len(), 151);
    assert!(
        (0..10).all(|k| c.contains_key(&k)),
        "the recently used stay"
    );
    assert_eq!(
        SyncOptions::configured(&c).interval,
        Some(Duration::from_secs(15))
    );
}
