//! Listeners, stats, eviction and tags.

use std::sync::{Arc, Mutex};

use cache_core::{Cache, EventKind, cached};

type Log = Arc<Mutex<Vec<(EventKind, String)>>>;

fn listen(c: &Cache<u64, u64>) -> Log {
    let log: Log = Arc::default();
    let l = log.clone();
    c.add_listener(move |ev| l.lock().unwrap().push((ev.kind, ev.key_string())));
    log
}

#[test]
fn listeners_see_every_kind_of_event() {
    let c: Cache<u64, u64> = Cache::builder().name("observed").build();
    let log = listen(&c);
    c.get(&1);
    c.insert(1, 10);
    c.get(&1);
    c.invalidate(&1);
    c.insert(2, 20);
    c.clear();
    use EventKind::*;
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (Miss, "1".into()),
            (Insert, "1".into()),
            (Hit, "1".into()),
            (Invalidate, "1".into()),
            (Insert, "2".into()),
            (Invalidate, "2".into()),
        ]
    );
}

#[test]
fn removed_listeners_hear_nothing() {
    let c: Cache<u64, u64> = Cache::new(10);
    let log: Log = Arc::default();
    let l = log.clone();
    let id = c.add_listener(move |ev| l.lock().unwrap().push((ev.kind, ev.key_string())));
    c.insert(1, 1);
    assert!(c.remove_listener(id));
    assert!(!c.remove_listener(id));
    c.insert(2, 2);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn a_listener_may_use_the_cache() {
    let c: Cache<u64, u64> = Cache::new(10);
    let c2 = c.clone();
    c.add_listener(move |ev| {
        if ev.kind == EventKind::Insert && *ev.key < 100 {
            c2.insert(*ev.key + 100, 0);
        }
    });
    c.insert(1, 1);
    assert_eq!(c.get(&101), Some(0));
}

#[test]
fn capacity_evicts_and_reports_it() {
    let c: Cache<u64, u64> = Cache::new(50);
    let log = listen(&c);
    for i in 0..500 {
        c.insert(i, i);
    }
    let s = c.stats();
    assert!(c.len() <= 50, "len {}", c.len());
    assert_eq!(s.inserts, 500);
    assert_eq!(s.evictions, 500 - c.len() as u64);
    let evicts = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k == EventKind::Evict)
        .count();
    assert_eq!(evicts as u64, s.evictions);
}

#[test]
fn stats_count_every_outcome() {
    let c: Cache<u64, u64> = Cache::new(100);
    for i in 0..10 {
        c.get_or_insert_with(i % 4, || {
            std::thread::sleep(std::time::Duration::from_millis(1));
            i
        });
    }
    c.invalidate(&0);
    c.revoke_str("[12]").unwrap();
    let s = c.stats();
    assert_eq!(s.hits, 6);
    assert_eq!(s.misses, 4);
    assert_eq!(s.loads, 4);
    assert_eq!(s.inserts, 4);
    assert_eq!(s.invalidations, 3);
    assert_eq!(s.entries, 1);
    assert!((s.hit_rate() - 0.6).abs() < 1e-9);
    assert!(s.total_load_time() >= std::time::Duration::from_millis(4));
    assert!(s.mean_load_time() >= std::time::Duration::from_millis(1));
}

#[test]
fn tags_invalidate_and_are_cleaned_on_removal() {
    let c: Cache<(u64, u64), u64> = Cache::builder()
        .tags(|(user, _)| vec![format!("user:{user}")])
        .build();
    for user in 0..3 {
        for post in 0..4 {
            c.get_or_insert_with((user, post), || post);
        }
    }
    assert_eq!(c.invalidate_tag("user:1"), 4);
    assert_eq!(c.invalidate_tag("user:1"), 0);
    assert_eq!(c.len(), 8);
    c.invalidate(&(2, 0));
    assert_eq!(c.invalidate_tag("user:2"), 3);
    assert_eq!(c.invalidate_tag("nope"), 0);
}

#[test]
fn bad_patterns_are_errors_not_panics() {
    let c: Cache<u64, u64> = Cache::new(10);
    c.insert(1, 1);
    let e = c.revoke_str("[1").unwrap_err();
    assert!(e.to_string().contains("unclosed"), "{e}");
    assert_eq!(c.len(), 1, "nothing removed");
}

static LRU_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cached(capacity = 3, eviction = "lru")]
fn lru_backed(id: u64) -> u64 {
    LRU_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    id
}

#[cached(capacity = 3, eviction = "lfu")]
fn lfu_backed(id: u64) -> u64 {
    id
}

#[test]
fn eviction_policies_are_chosen_per_function() {
    for id in [1, 2, 3, 1, 3] {
        lru_backed(id);
    }
    lru_backed(4); // evicts 2, the least recently used
    let mut keys = lru_backed_cache().keys(None, 10);
    keys.sort();
    assert_eq!(keys, vec!["lru_backed:1", "lru_backed:3", "lru_backed:4"]);
    assert_eq!(lru_backed_cache().stats().evictions, 1);
    assert_eq!(LRU_CALLS.load(std::sync::atomic::Ordering::SeqCst), 4);

    for id in [1, 1, 1, 2, 2, 3] {
        lfu_backed(id);
    }
    lfu_backed(4); // evicts 3, the least frequently used
    let mut keys = lfu_backed_cache().keys(None, 10);
    keys.sort();
    assert_eq!(keys, vec!["lfu_backed:1", "lfu_backed:2", "lfu_backed:4"]);
}

#[test]
fn sampled_engines_support_the_whole_api() {
    use cache_core::Eviction;
    for policy in [Eviction::Lru, Eviction::Lfu] {
        let c: Cache<u64, u64> = Cache::builder()
            .capacity(2000)
            .eviction(policy)
            .tags(|k| vec![format!("mod3:{}", k % 3)])
            .build();
        for i in 0..3000 {
            c.get_or_insert_with(i, || i);
        }
        assert!(c.len() <= 2000 + 16, "{policy:?}: {}", c.len());
        assert_eq!(c.stats().evictions, 3000 - c.len() as u64);
        let before = c.len();
        let removed = c.invalidate_tag("mod3:0");
        assert!(removed > 0);
        assert_eq!(c.len(), before - removed);
        let revoked = c.revoke_str("1*").unwrap();
        assert!(c.keys(None, 5000).iter().all(|k| !k.starts_with('1')));
        assert!(revoked > 0);
        assert_eq!(c.clear(), before - removed - revoked);
        assert!(c.is_empty());
    }
}

/// Replacing an entry is not an eviction: the key keeps its tags, and the
/// counters show no eviction.
#[test]
fn replacing_an_entry_keeps_its_tags() {
    let c: Cache<u64, u64> = cache_core::CacheBuilder::new()
        .capacity(100)
        .tags(|k| vec![format!("t{k}")])
        .build();
    c.insert(1, 1);
    c.insert(1, 2);
    assert_eq!(c.get(&1), Some(2));
    assert_eq!(c.stats().evictions, 0, "a replacement is no eviction");
    assert_eq!(c.invalidate_tag("t1"), 1, "the new value is still tagged");
    assert_eq!(c.get(&1), None);
}

/// A listener that panics does not stop the cache's bookkeeping.
#[test]
fn a_panicking_listener_breaks_no_bookkeeping() {
    let c: Cache<u64, u64> = cache_core::CacheBuilder::new()
        .capacity(100)
        .tags(|_| vec!["all".into()])
        .build();
    for k in 0..3 {
        c.insert(k, k);
    }
    c.add_listener(|e| {
        if e.kind == cache_core::EventKind::Invalidate {
            panic!("listener bug");
        }
    });
    assert_eq!(c.clear(), 3);
    assert!(c.is_empty());
    assert_eq!(c.stats().invalidations, 3, "every removal counted");
    c.insert(9, 9);
    assert_eq!(
        c.invalidate_tag("all"),
        1,
        "the tag index holds only live keys"
    );
}
