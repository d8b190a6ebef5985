//! Secondary indexes and queries: a query always equals a brute-force scan
//! of the live entries, whatever sequence of inserts, replaces, evictions,
//! expiries, invalidations, revokes and clears came before, and under
//! concurrent writers.

use std::collections::BTreeMap;
use std::time::Duration;

use cache_core::index::{Query, QueryError};
use cache_core::pattern::Pattern;
use cache_core::{Cache, CacheBuilder, Clock, Eviction};
use proptest::prelude::*;

/// A file's metadata, in the seed's domain.
#[derive(Debug, Clone, PartialEq)]
struct Meta {
    language: String,
    functions: Vec<String>,
}

const LANGS: [&str; 3] = ["python", "rust", "c"];
const FUNCS: [&str; 4] = ["main", "init", "run", "m:a*in"];

fn meta(lang: usize, funcs: &[usize]) -> Meta {
    Meta {
        language: LANGS[lang % LANGS.len()].to_string(),
        functions: funcs
            .iter()
            .map(|f| FUNCS[f % FUNCS.len()].to_string())
            .collect(),
    }
}

fn cache(capacity: usize, clock: Clock, eviction: Eviction) -> Cache<String, Meta> {
    CacheBuilder::new()
        .name("files")
        .capacity(capacity)
        .clock(clock)
        .eviction(eviction)
        .index("language", |m: &Meta| vec![m.language.clone()])
        .index("function", |m: &Meta| m.functions.clone())
        .build()
}

/// What the query should answer, from the live entries themselves.
fn scan(c: &Cache<String, Meta>, keys: &[String], q: &Query) -> Vec<(String, Meta)> {
    let mut live: BTreeMap<String, Meta> = BTreeMap::new();
    for k in keys {
        if let Some(v) = c.get(k) {
            live.insert(k.clone(), v);
        }
    }
    live.into_iter()
        .filter(|(k, v)| {
            q.terms.iter().all(|(i, t)| match i.as_str() {
                "language" => &v.language == t,
                "function" => v.functions.iter().any(|f| f == t),
                _ => false,
            }) && q.pattern.as_ref().is_none_or(|p| p.matches(k))
        })
        .take(q.limit)
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Insert(usize, usize, Vec<usize>),
    InsertTtl(usize, usize, Vec<usize>, u64),
    Invalidate(usize),
    Revoke(usize),
    Clear,
    Advance(u64),
    Purge,
}

const KEYS: [&str; 8] = [
    "src/a.py",
    "src/b.py",
    "src/c.rs",
    "lib/d.py",
    "src/*e",
    "x:y",
    "über.py",
    "src/a.py ",
];

fn op() -> impl Strategy<Value = Op> {
    let funcs = proptest::collection::vec(0usize..4, 0..3);
    prop_oneof![
        6 => (0usize..8, 0usize..3, funcs.clone()).prop_map(|(k, l, f)| Op::Insert(k, l, f)),
        2 => (0usize..8, 0usize..3, funcs, 1u64..50).prop_map(|(k, l, f, t)| Op::InsertTtl(k, l, f, t)),
        2 => (0usize..8).prop_map(Op::Invalidate),
        1 => (0usize..3).prop_map(Op::Revoke),
        1 => Just(Op::Clear),
        1 => (1u64..40).prop_map(Op::Advance),
        1 => Just(Op::Purge),
    ]
}

fn queries() -> Vec<Query> {
    let mut qs = vec![Query::new(), Query::new().limit(2)];
    for l in LANGS {
        qs.push(Query::new().eq("language", l));
        for f in FUNCS {
            qs.push(Query::new().eq("language", l).eq("function", f));
            qs.push(
                Query::new()
                    .eq("function", f)
                    .eq("language", l)
                    .matching(Pattern::new("src/*").unwrap())
                    .limit(1),
            );
        }
    }
    qs.push(Query::new().eq("function", "main").eq("function", "init"));
    qs
}

fn revoke_pattern(i: usize) -> Pattern {
    Pattern::new(["src/*", "*.py", "x:*"][i]).unwrap()
}

fn check_model(ops: &[Op], capacity: usize, eviction: Eviction) -> Result<(), TestCaseError> {
    let (clock, manual) = Clock::manual();
    let c = cache(capacity, clock, eviction);
    let keys: Vec<String> = KEYS.iter().map(|s| s.to_string()).collect();
    let qs = queries();
    for op in ops {
        match op {
            Op::Insert(k, l, f) => c.insert(keys[*k].clone(), meta(*l, f)),
            Op::InsertTtl(k, l, f, t) => {
                c.insert_with_ttl(keys[*k].clone(), meta(*l, f), Duration::from_millis(*t))
            }
            Op::Invalidate(k) => {
                c.invalidate(&keys[*k]);
            }
            Op::Revoke(p) => {
                c.revoke(&revoke_pattern(*p)).unwrap();
            }
            Op::Clear => {
                c.clear();
            }
            Op::Advance(ms) => manual.advance(Duration::from_millis(*ms)),
            Op::Purge => {
                c.purge_expired();
            }
        }
        for q in &qs {
            let got = c.query(q).unwrap();
            prop_assert_eq!(&got, &scan(&c, &keys, q), "after {:?}, query {:?}", op, q);
        }
    }
    // Once everything is gone, the index holds nothing.
    c.clear();
    prop_assert_eq!(c.index_sizes().postings, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Roomy enough that only explicit removals and expiry remove.
    #[test]
    fn a_query_equals_a_scan_of_the_live_entries(ops in proptest::collection::vec(op(), 1..40)) {
        check_model(&ops, 100, Eviction::Engine)?;
    }

    /// Three entries for eight keys: evictions on most inserts, with each
    /// policy.
    #[test]
    fn a_query_equals_a_scan_while_entries_are_evicted(
        ops in proptest::collection::vec(op(), 1..40),
        policy in 0usize..3,
    ) {
        let eviction = [Eviction::Engine, Eviction::Lru, Eviction::Lfu][policy];
        check_model(&ops, 3, eviction)?;
    }
}

#[test]
fn an_unknown_index_is_an_error_naming_the_known_ones() {
    let c = cache(10, Clock::System, Eviction::Engine);
    let e = c.query(&Query::new().eq("lang", "python")).unwrap_err();
    assert_eq!(
        e,
        QueryError::UnknownIndex {
            name: "lang".into(),
            known: vec!["language".into(), "function".into()],
        }
    );
    assert!(e.to_string().contains("language, function"), "{e}");
    let plain: Cache<u64, u64> = Cache::new(10);
    let e = plain
        .query(&Query::new().eq("x", "1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("CacheBuilder::index"), "{e}");
    assert!(plain.query(&Query::new()).unwrap().is_empty());
}

/// Four writers replace and remove the same keys with values of other
/// languages while a reader queries: every value a query returns has the
/// terms asked for, and once the writers stop the index equals a scan.
#[test]
fn concurrent_writers_never_make_a_query_return_a_value_without_its_terms() {
    let c = cache(64, Clock::System, Eviction::Engine);
    let keys: Vec<String> = (0..32).map(|i| format!("k{i:02}")).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..4usize)
            .map(|w| {
                let (c, keys) = (&c, &keys);
                s.spawn(move || {
                    for i in 0..20_000usize {
                        let k = keys[(i * 7 + w) % keys.len()].clone();
                        match (i + w) % 5 {
                            0 => {
                                c.invalidate(&k);
                            }
                            n => c.insert(k, meta(n, &[n, i])),
                        }
                    }
                })
            })
            .collect();
        let (c, stop) = (&c, &stop);
        let reader = s.spawn(move || {
            let mut seen = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for l in LANGS {
                    for (_, v) in c.query(&Query::new().eq("language", l)).unwrap() {
                        assert_eq!(v.language, l);
                        seen += 1;
                    }
                }
            }
            seen
        });
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0, "the reader saw values");
    });
    for q in queries() {
        assert_eq!(c.query(&q).unwrap(), scan(&c, &keys, &q), "{q:?}");
    }
    let live = keys.iter().filter(|k| c.contains_key(k)).count();
    assert_eq!(c.index_sizes().keys, live);
}

/// Lowering the capacity by configuration evicts without the engine
/// telling the cache; the index drops those keys too.
#[test]
fn a_smaller_capacity_leaves_no_index_entry_behind() {
    let c: Cache<String, Meta> = CacheBuilder::new()
        .name("files_shrink")
        .register(true)
        .capacity(100)
        .index("language", |m: &Meta| vec![m.language.clone()])
        .build();
    for i in 0..50 {
        c.insert(format!("f{i:02}"), meta(0, &[0]));
    }
    assert_eq!(c.index_sizes().keys, 50);
    let cfg = serde_json::json!({"actions": {"files_shrink": {"capacity": 5}}});
    cache_core::config::set(serde_json::from_value(cfg).unwrap()).unwrap();
    assert!(c.len() < 20, "the bound evicted: {}", c.len());
    let found = c.query(&Query::new().eq("language", "python")).unwrap();
    assert_eq!(found.len(), c.len());
    assert_eq!(c.index_sizes().keys, c.len());
}

/// Bulk calls on a cache: values in order, misses as `None`, lookups
/// counted, the index kept, and removals counted.
#[test]
fn bulk_calls_keep_order_stats_and_indexes() {
    let c = cache(100, Clock::System, Eviction::Engine);
    c.insert_many((0..5).map(|i| (format!("f{i}"), meta(i, &[i]))));
    let keys: Vec<String> = ["f3", "nope", "f0"].iter().map(|s| s.to_string()).collect();
    let got = c.get_many(&keys);
    assert_eq!(got, vec![Some(meta(3, &[3])), None, Some(meta(0, &[0]))]);
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.inserts), (2, 1, 5));
    assert_eq!(
        c.query(&Query::new().eq("language", "python"))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(c.invalidate_many(&keys), 2);
    let left = |l: &str| c.query(&Query::new().eq("language", l)).unwrap().len();
    assert_eq!((left("python"), left("rust")), (0, 2));
    assert!(c.contains_key(&"f1".to_string()) && !c.contains_key(&"f0".to_string()));
    assert_eq!(c.stats().hits, 2, "contains_key counts nothing");
}

fn language_of(m: &Meta) -> Vec<String> {
    vec![m.language.clone()]
}

#[derive(Clone)]
struct Files;

#[cache_core::cache_service(name = "ix_files")]
impl Files {
    #[cached(index(language = language_of, function = |m: &Meta| m.functions.clone()))]
    fn file(&self, path: String) -> Meta {
        let lang = if path.ends_with(".py") { 0 } else { 1 };
        meta(lang, &[path.len() % 4])
    }

    #[cached]
    fn size(&self, path: String) -> u64 {
        path.len() as u64
    }
}

/// An action's indexes come from its attribute, and the service's `keys`
/// handler lists by them (`where`), with a glob, a tenant and a limit;
/// an index no action has is a clear error.
#[tokio::test]
async fn a_service_lists_keys_by_index_terms() {
    use serde_json::json;
    let f = Files;
    for p in ["src/a.py", "src/bb.py", "lib/c.py", "src/d.rs"] {
        f.file(p.to_string());
        f.size(p.to_string());
    }
    cache_core::with_tenant("acme", || f.file("src/e.py".to_string()));
    let r = cache_core::registry::registry();
    let keys = |body: serde_json::Value| {
        let r = &r;
        async move { r.request("ix_files/cache/keys", body).await }
    };
    let got = keys(json!({"where": {"language": "python"}}))
        .await
        .unwrap();
    let listed: Vec<String> = serde_json::from_value(got["keys"].clone()).unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(listed.iter().all(|k| k.ends_with(".py")), "{listed:?}");
    let got = keys(
        json!({"where": {"language": "python"}, "pattern": "*src/*", "limit": 1, "tenant": ""}),
    )
    .await
    .unwrap();
    let one: Vec<String> = serde_json::from_value(got["keys"].clone()).unwrap();
    assert_eq!(one.len(), 1);
    assert!(one[0].contains("src/a.py"), "{one:?}");
    let got = keys(json!({"where": {"language": "python"}, "tenant": "acme"}))
        .await
        .unwrap();
    let acme: Vec<String> = serde_json::from_value(got["keys"].clone()).unwrap();
    assert_eq!(acme.len(), 1, "{acme:?}");
    assert!(acme[0].contains("src/e.py"));
    let e = keys(json!({"where": {"lang": "python"}}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[\"lang\"]") && e.contains("function, language"),
        "{e}"
    );
}

fn caught<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

/// Breaks an outside attack found, kept: an index function that panicked
/// cut the insert's bookkeeping short (the key it evicted stayed indexed
/// for good), and made every later query for the key's old term panic.
/// Now its value is left out of that index, and nothing else changes.
#[test]
fn a_panicking_index_function_neither_leaks_nor_wedges() {
    let c: Cache<String, String> = CacheBuilder::new()
        .name("ix_panic")
        .capacity(2)
        .eviction(Eviction::Lru)
        .index("v", |v: &String| {
            if v.starts_with("boom") {
                panic!("index fn panics")
            }
            vec!["t".to_string()]
        })
        .build();
    c.insert("a".into(), "ok".into());
    c.insert("b".into(), "ok".into());
    assert!(caught(|| c.insert("c".into(), "boom".into())).is_ok());
    assert_eq!(c.stats().evictions, 1);
    let found = c.query(&Query::new().eq("v", "t")).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(c.get(&"c".to_string()).as_deref(), Some("boom"));
    c.insert(found[0].0.clone(), "boom again".into());
    assert!(c.query(&Query::new().eq("v", "t")).unwrap().is_empty());
    c.clear();
    assert_eq!(c.index_sizes().keys, 0, "{:?}", c.index_sizes());
}

/// Breaks an outside attack found, kept: index positions were 16 bits, so
/// the 65,537th index read as the first, and a query returned a value
/// without the term.
#[test]
fn many_indexes_never_alias() {
    let mut b: CacheBuilder<String, String> = CacheBuilder::new().name("ix_many");
    b = b.index("i0", |_v: &String| vec!["zero".to_string()]);
    for i in 1..65536 {
        b = b.index(format!("i{i}"), |_v: &String| Vec::new());
    }
    b = b.index("i65536", |_v: &String| vec!["big".to_string()]);
    let c = b.build();
    c.insert("k".into(), "v".into());
    assert!(
        c.query(&Query::new().eq("i65536", "zero"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(c.query(&Query::new().eq("i65536", "big")).unwrap().len(), 1);
}

/// Breaks an outside attack found, kept: a replace racing an invalidation
/// of the same key counted the replaced value as evicted (and released its
/// quota slot twice).
#[test]
fn a_replace_racing_an_invalidation_is_no_eviction() {
    let c: Cache<u64, u64> = Cache::builder().name("ix_phantom").capacity(1000).build();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..200_000u64 {
                c.insert(1, i);
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.invalidate(&1);
            }
        });
    });
    let s = c.stats();
    assert_eq!(s.evictions, 0, "one key, capacity 1000: {s:?}");
}
