//! A store written outside cache-core (`cache_tests::RecordingStore`),
//! registered by name and chosen
//! by configuration alone: alone (`backend = "counting"`) for a `#[cached]`
//! function, and as the L2 of a tiered service action; invalidate, revoke
//! and clear reach it. Unknown and reserved names are clear errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::config::{self, Backend, Config};
use cache_core::{backends, cache_service, cached, registry};
use cache_tests::RecordingStore;
use serde_json::json;

static FETCHES: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn fetch(id: u64) -> String {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    format!("item {id}")
}

#[cached(backend = "counting")]
fn by_attribute(id: u64) -> u64 {
    id
}

#[cached(backend = "counting")]
fn overridden(id: u64) -> u64 {
    id
}

#[cached]
async fn afetch(id: u64) -> String {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    format!("async item {id}")
}

#[derive(Clone, Default)]
struct Books {
    loads: Arc<AtomicUsize>,
}

#[cache_service(name = "books")]
impl Books {
    #[cached]
    fn get_book(&self, id: u64) -> String {
        self.loads.fetch_add(1, Ordering::SeqCst);
        format!("book {id}")
    }

    #[cached]
    fn find(&self, a: String, b: String, c: String, d: String, e: String) -> String {
        self.loads.fetch_add(1, Ordering::SeqCst);
        format!("found {}", a.len() + b.len() + c.len() + d.len() + e.len())
    }
}

/// Waits until invalidations made from async code (queued, so as not to
/// hold a runtime thread) have reached the store.
fn settle() {
    let remote = backends::open("counting", &config::current()).unwrap();
    let t = std::time::Instant::now();
    while remote.has_pending_invalidations() {
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "stuck");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn config(v: serde_json::Value) -> Config {
    serde_json::from_value(v).unwrap()
}

/// One story: the configuration is process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_store_serves_caches_by_configuration_alone() {
    let store = Arc::new(RecordingStore::default());
    backends::register("counting", store.clone()).unwrap();

    // Names taken or built in are refused.
    let again = backends::register("counting", store.clone()).unwrap_err();
    assert!(again.to_string().contains("already registered"), "{again}");
    let builtin = backends::register("redis", store.clone()).unwrap_err();
    assert!(builtin.to_string().contains("built in"), "{builtin}");

    // A configuration naming an unknown store is refused whole, naming the
    // known ones.
    let e = config::set(config(json!({"backend": "nope"})))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"nope\"") && e.contains("counting") && e.contains("memory"),
        "{e}"
    );
    let e = config::set(config(json!({"backend": "tiered", "l2": "nope"})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("l2") && e.contains("\"nope\""), "{e}");

    config::set(config(json!({
        "actions": {
            "fetch": {"backend": "counting"},
            "afetch": {"backend": "counting"},
            "overridden": {"backend": "memory"}
        },
        "services": {"books": {"backend": "tiered", "l2": "counting"}}
    })))
    .unwrap();

    // The attribute chooses a backend; configuration wins over it.
    assert_eq!(by_attribute(5), 5);
    assert_eq!(
        by_attribute_cache().backend(),
        Backend::Store("counting".into())
    );
    assert_eq!(overridden(5), 5);
    assert_eq!(overridden_cache().backend(), Backend::Memory);
    by_attribute_cache().clear();
    settle();
    let base = store.count();

    // Alone: every call reads the store, nothing stays in the process.
    assert_eq!(fetch(1), "item 1");
    assert_eq!(fetch(1), "item 1");
    assert_eq!(
        FETCHES.load(Ordering::SeqCst),
        1,
        "the second call read the store"
    );
    assert_eq!(fetch_cache().backend(), Backend::Store("counting".into()));
    assert!(fetch_cache().is_empty(), "nothing in the process");
    let [gets, sets, ..] = store.count();
    assert!(
        gets - base[0] >= 2 && sets - base[1] == 1,
        "{base:?} {:?}",
        store.count()
    );

    // Invalidate reaches it.
    fetch_cache().invalidate(&1);
    settle();
    assert_eq!(store.count()[2] - base[2], 1, "one delete");
    assert_eq!(store.len(), 0);
    assert_eq!(fetch(1), "item 1");
    assert_eq!(
        FETCHES.load(Ordering::SeqCst),
        2,
        "recomputed after the delete"
    );

    // Revoke reaches it.
    fetch(2);
    assert_eq!(store.len(), 2);
    fetch_cache().revoke_str("fetch:*").unwrap();
    settle();
    assert!(store.count()[3] >= 1, "{:?}", store.count());
    assert_eq!(store.len(), 0, "the pattern removed both");

    // Clear reaches it.
    fetch(3);
    assert_eq!(store.len(), 1);
    fetch_cache().clear();
    settle();
    assert!(store.count()[4] >= 1, "{:?}", store.count());
    assert_eq!(store.len(), 0);

    // A service action, tiered over the store: the second call is an L1 hit.
    let books = Books::default();
    let before = store.count();
    assert_eq!(books.get_book(7), "book 7");
    assert_eq!(books.get_book(7), "book 7");
    assert_eq!(books.loads.load(Ordering::SeqCst), 1);
    let after = store.count();
    assert_eq!(after[0] - before[0], 1, "one L2 read, on the miss");
    assert_eq!(after[1] - before[1], 1, "one L2 write");
    assert_eq!(Books::get_book_cache().backend(), Backend::Tiered);
    assert_eq!(Books::get_book_cache().settings().l2, "counting");

    // The service's handlers reach the store: delete, revoke, clear.
    let r = registry();
    r.request("books/cache/delete", json!({"key": "get_book:7"}))
        .await
        .unwrap();
    settle();
    assert_eq!(store.len(), 0, "delete reached the store");
    books.get_book(8);
    assert_eq!(store.len(), 1);
    r.request("books/cache/revoke", json!({"pattern": "get_book:*"}))
        .await
        .unwrap();
    settle();
    assert_eq!(store.len(), 0, "revoke reached the store");
    books.get_book(9);
    r.request("books/cache/clear", json!({})).await.unwrap();
    settle();
    assert_eq!(store.len(), 0, "clear reached the store");
    assert!(Books::get_book_cache().is_empty());
    assert_eq!(books.get_book(9), "book 9");
    assert_eq!(
        books.loads.load(Ordering::SeqCst),
        4,
        "7, 8, 9, and 9 again"
    );

    r.request("books/cache/clear", json!({})).await.unwrap();
    fetch_cache().clear();
    settle();
    assert_eq!(store.len(), 0);

    // A key so long that its escaped glob is past the pattern limit, deleted
    // by text from the handler (every tenant): the store loses it anyway.
    // Five arguments of 60 backslashes: each short enough to be written
    // out (escaped, so doubled), the key text 600 bytes and more.
    let arg = "\\".repeat(60);
    let find = || {
        books.find(
            arg.clone(),
            arg.clone(),
            arg.clone(),
            arg.clone(),
            arg.clone(),
        )
    };
    assert_eq!(find(), "found 300");
    let text = Books::find_cache().keys(None, 10)[0].clone();
    assert!(text.len() > 600, "{}", text.len());
    assert_eq!(store.len(), 1);
    let d = r
        .request("books/cache/delete", json!({"key": text}))
        .await
        .unwrap();
    assert_eq!(d["deleted"], 1);
    settle();
    assert_eq!(store.len(), 0, "the long key left the store too");
    // A tenant with a name as long: its clear reaches the store.
    let tenant = "t".repeat(1100);
    cache_core::with_tenant(&tenant, || books.get_book(1));
    assert_eq!(store.len(), 1);
    r.request("books/cache/clear", json!({"tenant": tenant}))
        .await
        .unwrap();
    settle();
    assert_eq!(store.len(), 0, "the long tenant's entries left the store");

    // A store that panics while removing: the invalidation waits and is
    // retried; once the store works again it lands, and so do later ones.
    fetch(10);
    fetch(11);
    assert_eq!(store.len(), 2);
    store.panic_on_remove.store(true, Ordering::SeqCst);
    fetch_cache().invalidate(&10);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(store.len(), 2, "nothing removed while it panics");
    store.panic_on_remove.store(false, Ordering::SeqCst);
    fetch_cache().invalidate(&11);
    let t = std::time::Instant::now();
    while !store.is_empty() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "retries stopped after a panic"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // A store that blocks its thread: an async call still answers within
    // the store's deadline, by computing.
    assert_eq!(afetch(1).await, "async item 1");
    store.block_reads_ms.store(3000, Ordering::SeqCst);
    let t = std::time::Instant::now();
    assert_eq!(afetch(2).await, "async item 2");
    assert!(
        t.elapsed() < std::time::Duration::from_millis(1500),
        "an async call waited {:?} on a blocked store",
        t.elapsed()
    );
    store.block_reads_ms.store(0, Ordering::SeqCst);
}
