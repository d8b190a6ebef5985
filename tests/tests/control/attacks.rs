//! Breaks an outside attack on the controls found (each failed before its
//! fix), and the invariants it checked, kept as tests.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use cache_core::{Cache, Clock, Eviction, Priority, cached, registry};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---------------------------------------------------------------------------
// 1. Eviction bounds
// ---------------------------------------------------------------------------

/// A count bound that 16 does not divide: every shard holds ceil(n/16).
#[test]
fn count_bound_not_multiple_of_16_is_exceeded() {
    for eviction in [Eviction::Lru, Eviction::Lfu, Eviction::TinyLfu] {
        let c: Cache<u64, u64> = Cache::builder()
            .capacity(1025)
            .eviction(eviction)
            .eviction_batch_size(1)
            .build();
        for k in 0..50_000u64 {
            c.insert(k, k);
        }
        assert!(
            c.len() <= 1025,
            "{eviction:?}: capacity 1025 but len() = {}",
            c.len()
        );
    }
}

/// Same for a byte bound.
#[test]
fn byte_bound_not_multiple_of_16_is_exceeded() {
    let c: Cache<u64, u64> = Cache::builder()
        .capacity_bytes(1_025)
        .eviction(Eviction::Lru)
        .eviction_batch_size(1)
        .weigher(|_, _| 1)
        .build();
    for k in 0..50_000u64 {
        c.insert(k, k);
    }
    // each entry weighs 1, so len() is the total weight
    assert!(
        c.len() <= 1025,
        "capacity_bytes 1025 but total weight = {}",
        c.len()
    );
}

/// A byte bound >= 1024 is split over 16 shards, and an entry heavier than
/// one shard's share (1/16 of the bound) is refused, even in an empty cache.
#[test]
fn entry_of_a_tenth_of_capacity_bytes_is_refused() {
    for eviction in [Eviction::Lru, Eviction::Lfu, Eviction::TinyLfu] {
        let c: Cache<u64, String> = Cache::builder()
            .capacity_bytes(100_000)
            .eviction(eviction)
            .weigher(|_, v: &String| v.len() as u64)
            .build();
        c.insert(1, "x".repeat(10_000));
        assert!(
            c.get(&1).is_some(),
            "{eviction:?}: a 10 KB value in an empty 100 KB cache is not stored"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Priorities
// ---------------------------------------------------------------------------

/// With a batch > 1, once the evictable entries are gone the batch goes on
/// into the pinned critical entries (victim() falls back to pinned.first()).
#[test]
fn batch_eviction_evicts_critical_entries_within_their_share() {
    for eviction in [Eviction::Lru, Eviction::Lfu] {
        let c: Cache<u64, u64> = Cache::builder()
            .capacity(10)
            .eviction(eviction)
            .critical_share(0.5)
            .eviction_batch_size(10)
            .build();
        for k in 0..4 {
            c.insert_with_priority(k, k, Priority::Critical);
        }
        for k in 10..16 {
            c.insert(k, k);
        }
        assert_eq!(c.len(), 10);
        // A fifth critical entry: still within the share (5 of 10).
        c.insert_with_priority(4, 4, Priority::Critical);
        let held: Vec<u64> = (0..5).filter(|k| c.contains_key(k)).collect();
        assert_eq!(
            held,
            vec![0, 1, 2, 3, 4],
            "{eviction:?}: critical entries within their share were evicted (len {})",
            c.len()
        );
    }
}

/// The critical share is enforced per shard: with 16 shards, critical
/// entries well within the cache-wide share are evicted for size.
#[test]
fn critical_share_is_per_shard() {
    let c: Cache<u64, u64> = Cache::builder()
        .capacity(1600)
        .eviction(Eviction::Lru)
        .critical_share(0.5)
        .eviction_batch_size(1)
        .build();
    // 760 critical entries: 47.5 % of the capacity, under the 50 % share.
    for k in 0..760 {
        c.insert_with_priority(k, k, Priority::Critical);
    }
    for k in 10_000..60_000 {
        c.insert_with_priority(k, k, Priority::High);
    }
    let held = (0..760).filter(|k| c.contains_key(k)).count();
    assert_eq!(held, 760, "critical entries within the share were evicted");
}

/// Re-inserting a key at another priority moves it.
#[test]
fn reprioritising_moves_the_entry() {
    for eviction in [Eviction::Lru, Eviction::Lfu, Eviction::TinyLfu] {
        let c: Cache<u64, u64> = Cache::builder()
            .capacity(10)
            .eviction(eviction)
            .eviction_batch_size(1)
            .build();
        c.insert_with_priority(1, 1, Priority::High);
        c.insert_with_priority(1, 1, Priority::Low);
        for k in 100..200 {
            c.insert_with_priority(k, k, Priority::Medium);
        }
        assert!(!c.contains_key(&1), "{eviction:?}: low after all");
        c.insert_with_priority(2, 2, Priority::Low);
        c.insert_with_priority(2, 2, Priority::Critical);
        for k in 200..300 {
            c.insert_with_priority(k, k, Priority::High);
        }
        assert!(c.contains_key(&2), "{eviction:?}: critical now");
        // and demoted again
        c.insert_with_priority(2, 2, Priority::Low);
        for k in 300..400 {
            c.insert_with_priority(k, k, Priority::Medium);
        }
        assert!(!c.contains_key(&2), "{eviction:?}: low again");
        assert!(c.len() <= 10);
    }
}

// ---------------------------------------------------------------------------
// Randomised model check of the ordered engine, single-threaded.
// ---------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn weigh_val(_: &u64, v: &(u64, u64)) -> u64 {
    v.1
}

#[test]
fn fuzz_ordered_engine_invariants() {
    for eviction in [Eviction::Lru, Eviction::Lfu, Eviction::TinyLfu] {
        for (cap, bytes, batch) in [
            (50usize, None, 1usize),
            (50, None, 7),
            (2000, None, 3),
            (0, Some(500u64), 1),
            (0, Some(5000u64), 4),
        ] {
            let mut b: cache_core::CacheBuilder<u64, (u64, u64)> = Cache::builder()
                .eviction(eviction)
                .eviction_batch_size(batch)
                .critical_share(0.3);
            if let Some(by) = bytes {
                b = b.capacity_bytes(by).weigher(weigh_val);
            } else {
                b = b.capacity(cap);
            }
            let c = b.build();
            let bound = bytes.unwrap_or(cap as u64);
            let mut rng = Rng(0x1234_5678 ^ cap as u64 ^ bytes.unwrap_or(0));
            let keys = 4 * bound.min(5000);
            for step in 0..60_000 {
                let k = rng.below(keys);
                let op = rng.below(100);
                let prio = match rng.below(4) {
                    0 => Priority::Low,
                    1 => Priority::Medium,
                    2 => Priority::High,
                    _ => Priority::Critical,
                };
                let w = if bytes.is_some() {
                    1 + rng.below(bound / 8 + 2)
                } else {
                    1
                };
                match op {
                    0..=49 => c.insert_with_priority(k, (step, w), prio),
                    50..=79 => {
                        let _ = c.get(&k);
                    }
                    80..=94 => {
                        c.invalidate(&k);
                        assert!(c.get(&k).is_none());
                    }
                    95..=97 => {
                        let _ = c.revoke_str(&format!("{}*", rng.below(10)));
                    }
                    98 => {
                        if rng.below(20) == 0 {
                            c.clear();
                        }
                    }
                    _ => {
                        // replace with a weight heavier than the bound
                        if bytes.is_some() {
                            c.insert_with_priority(k, (step, bound + 1), prio);
                            assert!(
                                c.get(&k).is_none(),
                                "{eviction:?}: too heavy, old value stays"
                            );
                        }
                    }
                }
                if op < 50 && bytes.is_none() {
                    // a fresh insert of a weight-1 entry... may be refused by TinyLFU only
                }
                if step % 97 == 0 {
                    let listed = c.keys(None, usize::MAX);
                    assert_eq!(listed.len(), c.len(), "{eviction:?}: keys vs len");
                    assert_eq!(c.stats().entries as usize, c.len());
                    if bytes.is_some() {
                        let total: u64 = listed
                            .iter()
                            .map(|s| s.parse::<u64>().unwrap())
                            .filter_map(|k| c.get(&k))
                            .map(|v| v.1)
                            .sum();
                        assert!(
                            total <= bound,
                            "{eviction:?}: weight {total} > {bound} at step {step}"
                        );
                    } else {
                        assert!(
                            c.len() as u64 <= bound,
                            "{eviction:?}: {} > {bound}",
                            c.len()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn concurrent_ordered_engine_stays_bounded() {
    for eviction in [Eviction::Lru, Eviction::Lfu, Eviction::TinyLfu] {
        let c: Cache<u64, (u64, u64)> = Cache::builder()
            .eviction(eviction)
            .capacity_bytes(4096)
            .weigher(weigh_val)
            .eviction_batch_size(3)
            .build();
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut rng = Rng(0x9999 + t);
                    for step in 0..40_000u64 {
                        let k = rng.below(3000);
                        let prio = match rng.below(4) {
                            0 => Priority::Low,
                            1 => Priority::Medium,
                            2 => Priority::High,
                            _ => Priority::Critical,
                        };
                        match rng.below(10) {
                            0..=4 => c.insert_with_priority(k, (step, 1 + rng.below(200)), prio),
                            5..=7 => {
                                let _ = c.get(&k);
                            }
                            8 => {
                                c.invalidate(&k);
                            }
                            _ => {
                                if rng.below(500) == 0 {
                                    c.clear();
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let listed = c.keys(None, usize::MAX);
        assert_eq!(listed.len(), c.len());
        let total: u64 = listed
            .iter()
            .map(|s| s.parse::<u64>().unwrap())
            .filter_map(|k| c.get(&k))
            .map(|v| v.1)
            .sum();
        assert!(total <= 4096, "{eviction:?}: {total}");
    }
}

// ---------------------------------------------------------------------------
// 3/4. ttl_fn
// ---------------------------------------------------------------------------

#[test]
fn ttl_fn_expiry_is_exact_under_a_manual_clock() {
    for eviction in [Eviction::Engine, Eviction::Lru, Eviction::TinyLfu] {
        let (clock, time) = Clock::manual();
        let c: Cache<u64, u64> = Cache::builder()
            .clock(clock)
            .eviction(eviction)
            .ttl_fn(|v| Duration::from_millis(*v))
            .build();
        c.insert(1, 5000);
        time.advance(Duration::from_millis(4999));
        assert_eq!(c.get(&1), Some(5000), "{eviction:?}");
        time.advance(Duration::from_millis(1));
        assert_eq!(c.get(&1), None, "{eviction:?}");
    }
}

/// `#[cache_put]` stores through `Cache::__put`: a replacement whose
/// ttl_fn gives zero leaves the old value (insert removes it).
#[test]
fn put_with_zero_ttl_leaves_the_old_value() {
    let (clock, _time) = Clock::manual();
    let c: Cache<u64, u64> = Cache::builder().clock(clock).ttl_fn(|v| secs(*v)).build();
    c.insert(1, 100);
    c.__put(1, 0);
    assert_eq!(
        c.get(&1),
        None,
        "a zero-TTL replacement must remove the old value"
    );
}

/// A refresh that completes with a zero-TTL value leaves the old one.
#[test]
fn refresh_with_zero_ttl_leaves_the_old_value() {
    let (clock, time) = Clock::manual();
    let c: Cache<u64, u64> = Cache::builder()
        .clock(clock)
        .refresh_after(secs(1))
        .ttl_fn(|v| secs(*v))
        .build();
    c.insert(1, 100);
    time.advance(secs(2));
    let (_, t) = c.get_or_refresh(&1).unwrap();
    t.expect("ticket").complete(0);
    assert_eq!(
        c.get(&1),
        None,
        "the refreshed value has no TTL: the old value must go"
    );
}

// ---------------------------------------------------------------------------
// 5. depends_on
// ---------------------------------------------------------------------------

static ACCOUNT_V: AtomicU64 = AtomicU64::new(1);

#[cached]
fn account(id: u64) -> u64 {
    let _ = id;
    ACCOUNT_V.load(Ordering::SeqCst)
}

#[cached(capacity = 1, eviction = "lru", depends_on = ["account:{id}"])]
fn profile(id: u64, lang: String) -> String {
    format!("{lang} profile {id} v{}", account(id))
}

/// The page depends on the English profile: a template whose shape
/// (`profile:{id}:en`) differs from profile's key (`profile:{id}:{lang}`),
/// so the closure cannot see that it depends on `account:{id}` too.
#[cached(depends_on = ["profile:{id}:en"])]
fn en_page(id: u64) -> String {
    format!("page [{}]", profile(id, "en".into()))
}

#[test]
fn transitive_dependency_lost_when_intermediate_not_held() {
    assert_eq!(en_page(1), "page [en profile 1 v1]");
    // The intermediate entry leaves (capacity 1), as eviction or expiry do.
    profile(2, "en".into());
    assert!(!profile_cache().contains_key(&(1, "en".to_string())));
    ACCOUNT_V.store(2, Ordering::SeqCst);
    assert!(account_cache().invalidate(&1));
    assert_eq!(
        en_page(1),
        "page [en profile 1 v2]",
        "the page was computed from account:1's old version"
    );
}

/// Control: with the intermediate held, the runtime cascade works.
#[test]
fn transitive_with_intermediate_held_works() {
    ACCOUNT_V.store(10, Ordering::SeqCst);
    account_cache().invalidate(&5);
    assert_eq!(en_page(5), "page [en profile 5 v10]");
    ACCOUNT_V.store(11, Ordering::SeqCst);
    assert!(account_cache().invalidate(&5));
    assert_eq!(en_page(5), "page [en profile 5 v11]");
}

static PRICE: AtomicU64 = AtomicU64::new(100);

#[cached]
fn price(id: u64) -> u64 {
    let _ = id;
    PRICE.load(Ordering::SeqCst)
}

#[cached(depends_on = ["price:{id}"])]
fn quote(id: u64) -> String {
    format!("quote {}", price(id))
}

#[test]
fn insert_with_ttl_does_not_invalidate_dependants() {
    assert_eq!(quote(1), "quote 100");
    price_cache().insert_with_ttl(1, 200, secs(3600));
    assert_eq!(price(1), 200);
    assert_eq!(
        quote(1),
        "quote 200",
        "quote computed from the replaced price"
    );
}

#[test]
fn prime_does_not_invalidate_dependants() {
    assert_eq!(quote(2), "quote 100");
    price_cache().prime(2, || 300);
    assert_eq!(price(2), 300);
    assert_eq!(
        quote(2),
        "quote 300",
        "quote computed from the replaced price"
    );
}

#[test]
fn insert_invalidates_dependants() {
    assert_eq!(quote(3), "quote 100");
    price_cache().insert(3, 400);
    assert_eq!(quote(3), "quote 400");
}

static STOCK: AtomicU64 = AtomicU64::new(1);

#[cached]
fn stock(id: u64) -> u64 {
    let _ = id;
    STOCK.load(Ordering::SeqCst)
}

#[cached(depends_on = ["stock:{id}"])]
fn shelf(id: u64) -> String {
    format!("shelf {}", stock(id))
}

// Hostile key texts
static DOCV: AtomicU64 = AtomicU64::new(1);

#[cached]
fn doc(path: String) -> u64 {
    let _ = path;
    DOCV.load(Ordering::SeqCst)
}

#[cached(depends_on = ["doc:{path}"])]
fn summary(path: String) -> String {
    format!("sum {}", doc(path))
}

#[test]
fn hostile_key_texts_reach_dependants() {
    let long = "é:{}".repeat(40);
    let nasty = [
        "a:b",
        "{x}",
        "~dep:doc:a",
        "(",
        "#h",
        "\\",
        "ünï:cödé",
        "",
        long.as_str(),
        "doc:a",
    ];
    for (i, p) in nasty.iter().enumerate() {
        let p = p.to_string();
        let v0 = DOCV.load(Ordering::SeqCst);
        assert_eq!(summary(p.clone()), format!("sum {v0}"));
        DOCV.store(v0 + 1, Ordering::SeqCst);
        // alternate the three ways of invalidating
        match i % 3 {
            0 => {
                assert!(doc_cache().invalidate(&p));
            }
            1 => {
                let text = doc_cache().key_string(&p);
                assert!(doc_cache().invalidate_key_str(&text), "{text}");
            }
            _ => {
                let text = doc_cache().key_string(&p);
                assert!(registry().invalidate("doc", &text).unwrap(), "{text}");
            }
        }
        assert_eq!(summary(p.clone()), format!("sum {}", v0 + 1), "path {p:?}");
    }
}

// Race: a slow dependant load that read the old dependency stores after the
// dependency's invalidation returned.
static RACEV: AtomicU64 = AtomicU64::new(1);
static GATE: std::sync::Mutex<Option<(Arc<Barrier>, Arc<Barrier>)>> = std::sync::Mutex::new(None);

#[cached]
fn race_dep(id: u64) -> u64 {
    let _ = id;
    RACEV.load(Ordering::SeqCst)
}

#[cached(depends_on = ["race_dep:{id}"])]
fn race_slow(id: u64) -> u64 {
    let v = race_dep(id);
    let g = GATE.lock().unwrap().clone();
    if let Some((read, go)) = g {
        read.wait();
        go.wait();
    }
    v
}

#[test]
fn racing_load_does_not_survive_invalidation() {
    for how in 0..3 {
        let id = 100 + how;
        let read = Arc::new(Barrier::new(2));
        let go = Arc::new(Barrier::new(2));
        *GATE.lock().unwrap() = Some((read.clone(), go.clone()));
        let h = std::thread::spawn(move || race_slow(id));
        read.wait();
        *GATE.lock().unwrap() = None;
        let old = RACEV.load(Ordering::SeqCst);
        RACEV.store(old + 1, Ordering::SeqCst);
        match how {
            0 => {
                race_dep_cache().invalidate(&id);
            }
            1 => {
                race_dep_cache().insert(id, old + 1);
            }
            _ => {
                registry()
                    .invalidate("race_dep", &format!("race_dep:{id}"))
                    .unwrap();
            }
        }
        go.wait();
        assert_eq!(h.join().unwrap(), old);
        assert_eq!(
            race_slow(id),
            old + 1,
            "how {how}: stale dependant survived"
        );
    }
}

// Unregistered builder caches with depends_on.
static COUNT: AtomicUsize = AtomicUsize::new(0);

#[cached(depends_on = ["cyc_b:{n}"])]
fn cyc_a(n: u64) -> u64 {
    COUNT.fetch_add(1, Ordering::SeqCst);
    n
}
#[cached(depends_on = ["cyc_c:{n}"])]
fn cyc_b(n: u64) -> u64 {
    n
}
#[cached(depends_on = ["cyc_a:{n}"])]
fn cyc_c(n: u64) -> u64 {
    n
}

#[test]
fn three_cycle_terminates() {
    cyc_a(1);
    cyc_b(1);
    cyc_c(1);
    cyc_c_cache().invalidate(&1);
    assert!(!cyc_a_cache().contains_key(&1));
    assert!(!cyc_b_cache().contains_key(&1));
}

// The dependant's store put the entry in the map (under the store lock)
// but indexed its dependency tags only later, after the lock was released
// (after `reindex`, which runs the user's secondary-index function). An
// invalidation of the dependency in that window found no tagged entry, and
// the stale dependant survived its return. A slow index function widens the
// window deterministically; any preemption there did the same.
static TAG_BASE_V: AtomicU64 = AtomicU64::new(1);
static TAG_SLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[test]
fn a_dependant_stored_while_its_dependency_is_invalidated_does_not_survive() {
    fn args(k: &u64) -> Vec<(&'static str, String)> {
        vec![("id", k.to_string())]
    }
    let base: Cache<u64, u64> =
        cache_core::CacheBuilder::with_render(|k: &u64, out: &mut String| {
            out.push_str("tw_base:");
            out.push_str(&k.to_string());
        })
        .name("tw_base")
        .register(true)
        .build();
    let dep: Cache<u64, u64> = Cache::builder()
        .name("tw_dep")
        .register(true)
        .depends_on(&["tw_base:{id}"], args)
        .index("v", |v: &u64| {
            if TAG_SLOW.swap(false, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300));
            }
            vec![v.to_string()]
        })
        .build();
    TAG_SLOW.store(true, Ordering::SeqCst);
    let (b2, d2) = (base.clone(), dep.clone());
    let h = std::thread::spawn(move || {
        d2.get_or_insert_with(1, || {
            b2.get_or_insert_with(1, || TAG_BASE_V.load(Ordering::SeqCst))
        })
    });
    let t = std::time::Instant::now();
    while !dep.contains_key(&1) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the dependant was never stored"
        );
        std::thread::yield_now();
    }
    // The dependant is in the map; its index function is still running.
    TAG_BASE_V.store(2, Ordering::SeqCst);
    base.invalidate(&1);
    assert_eq!(h.join().unwrap(), 1);
    assert_eq!(
        dep.get(&1),
        None,
        "what was computed from tw_base:1 v1 is gone"
    );
}
