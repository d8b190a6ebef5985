//! `#[cached]` on sync free functions and methods: call counts, keys,
//! policies and reaching the cache from other code.

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::{cached, registry};

static SQUARES: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn square(x: u64) -> u64 {
    SQUARES.fetch_add(1, Ordering::SeqCst);
    x * x
}

#[test]
fn free_function_runs_once_per_key() {
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    assert_eq!(square(4), 16);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 2);
    let s = square_cache().stats();
    assert_eq!((s.hits, s.misses, s.loads, s.inserts), (1, 2, 2, 2));
    assert_eq!(square_cache().keys(None, 10), vec!["square:3", "square:4"]);
    assert!(square_cache().invalidate(&3));
    assert_eq!(square(3), 9);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 3);
}

#[derive(Clone, Debug, PartialEq, Hash, Eq)]
struct Filter {
    active: bool,
    region: String,
}

static SEARCHES: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn search(name: &str, filter: &Filter, limit: usize) -> Vec<String> {
    SEARCHES.fetch_add(1, Ordering::SeqCst);
    vec![format!(
        "{name}:{}:{limit}:{}",
        filter.region, filter.active
    )]
}

#[test]
fn references_and_structs_form_the_key() {
    let f = Filter {
        active: true,
        region: "eu".into(),
    };
    let a = search("bob", &f, 10);
    let b = search(&String::from("bob"), &f.clone(), 10);
    assert_eq!(a, b);
    assert_eq!(SEARCHES.load(Ordering::SeqCst), 1);
    let other = Filter {
        active: false,
        ..f.clone()
    };
    search("bob", &other, 10);
    assert_eq!(SEARCHES.load(Ordering::SeqCst), 2);
    // The struct reads as a 128-bit digest; the string as itself.
    let keys = search_cache().keys(None, 10);
    assert_eq!(keys.len(), 2);
    for k in &keys {
        let parts: Vec<&str> = k.split(':').collect();
        assert_eq!(parts[0], "search");
        assert_eq!(parts[1], "bob");
        assert!(parts[2].starts_with('#') && parts[2].len() == 33, "{k}");
        assert_eq!(parts[3], "10");
    }
}

#[test]
fn long_strings_are_digested_in_keys() {
    #[cached(name = "echo_len")]
    fn echo(s: String) -> usize {
        s.len()
    }
    let long = "x".repeat(500);
    assert_eq!(echo(long.clone()), 500);
    let keys = echo_cache().keys(None, 10);
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("echo_len:#") && keys[0].len() == "echo_len:".len() + 33,
        "{}",
        keys[0]
    );
    assert_eq!(echo("short".into()), 5);
    assert!(
        echo_cache()
            .keys(None, 10)
            .contains(&"echo_len:short".to_string())
    );
}

static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "user:{id}")]
fn user_name(id: u64, _verbose: bool) -> String {
    LOOKUPS.fetch_add(1, Ordering::SeqCst);
    format!("user{id}")
}

#[test]
fn key_template_selects_arguments() {
    assert_eq!(user_name(1, true), "user1");
    // `_verbose` is not part of the key: this is a hit.
    assert_eq!(user_name(1, false), "user1");
    assert_eq!(LOOKUPS.load(Ordering::SeqCst), 1);
    assert_eq!(user_name_cache().keys(None, 10), vec!["user:1"]);
    assert!(user_name_cache().invalidate_key_str("user:1"));
    user_name(1, true);
    assert_eq!(LOOKUPS.load(Ordering::SeqCst), 2);
}

#[derive(Debug, Clone, PartialEq)]
struct NotFound;

static FALLIBLE: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn fallible(id: u64) -> Result<u64, NotFound> {
    FALLIBLE.fetch_add(1, Ordering::SeqCst);
    if id == 0 { Err(NotFound) } else { Ok(id) }
}

static FALLIBLE_CACHED: AtomicUsize = AtomicUsize::new(0);

#[cached(cache_errors = true)]
fn fallible_cached(id: u64) -> Result<u64, NotFound> {
    FALLIBLE_CACHED.fetch_add(1, Ordering::SeqCst);
    if id == 0 { Err(NotFound) } else { Ok(id) }
}

#[test]
fn errors_are_not_cached_unless_asked() {
    assert_eq!(fallible(0), Err(NotFound));
    assert_eq!(fallible(0), Err(NotFound));
    assert_eq!(FALLIBLE.load(Ordering::SeqCst), 2);
    assert_eq!(fallible(1), Ok(1));
    assert_eq!(fallible(1), Ok(1));
    assert_eq!(FALLIBLE.load(Ordering::SeqCst), 3);

    assert_eq!(fallible_cached(0), Err(NotFound));
    assert_eq!(fallible_cached(0), Err(NotFound));
    assert_eq!(FALLIBLE_CACHED.load(Ordering::SeqCst), 1);
}

static OPTIONAL: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn optional(id: u64) -> Option<u64> {
    OPTIONAL.fetch_add(1, Ordering::SeqCst);
    (id > 0).then_some(id)
}

static OPTIONAL_NONE: AtomicUsize = AtomicUsize::new(0);

#[cached(cache_none)]
fn optional_none(id: u64) -> Option<u64> {
    OPTIONAL_NONE.fetch_add(1, Ordering::SeqCst);
    (id > 0).then_some(id)
}

#[test]
fn none_is_not_cached_unless_asked() {
    optional(0);
    optional(0);
    assert_eq!(OPTIONAL.load(Ordering::SeqCst), 2);
    optional_none(0);
    optional_none(0);
    assert_eq!(OPTIONAL_NONE.load(Ordering::SeqCst), 1);
}

static UNLESS: AtomicUsize = AtomicUsize::new(0);

#[cached(unless = result.is_empty())]
fn listing(id: u64) -> Vec<u64> {
    UNLESS.fetch_add(1, Ordering::SeqCst);
    (0..id).collect()
}

#[test]
fn unless_skips_storing() {
    listing(0);
    listing(0);
    assert_eq!(UNLESS.load(Ordering::SeqCst), 2);
    listing(2);
    listing(2);
    assert_eq!(UNLESS.load(Ordering::SeqCst), 3);
}

static DISABLED: AtomicUsize = AtomicUsize::new(0);

#[cached(enabled = false)]
fn disabled(id: u64) -> u64 {
    DISABLED.fetch_add(1, Ordering::SeqCst);
    id
}

#[test]
fn disabled_caching_always_runs() {
    disabled(1);
    disabled(1);
    assert_eq!(DISABLED.load(Ordering::SeqCst), 2);
    assert_eq!(disabled_cache().len(), 0);
}

#[derive(Clone)]
struct Repo {
    calls: std::sync::Arc<AtomicUsize>,
}

impl Repo {
    #[cached(ttl = "10m", capacity = 100, tags = ["user:{id}"])]
    fn find(&self, id: u64) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("row{id}")
    }

    #[cached]
    fn count(&self) -> usize {
        self.calls.fetch_add(1, Ordering::SeqCst);
        42
    }
}

#[test]
fn methods_share_one_cache_across_instances() {
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let a = Repo {
        calls: calls.clone(),
    };
    let b = Repo {
        calls: calls.clone(),
    };
    assert_eq!(a.find(7), "row7");
    assert_eq!(b.find(7), "row7");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(a.count(), 42);
    assert_eq!(b.count(), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(Repo::count_cache().keys(None, 10), vec!["count"]);

    assert_eq!(Repo::find_cache().invalidate_tag("user:7"), 1);
    a.find(7);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

static NAMED: AtomicUsize = AtomicUsize::new(0);

#[cached(name = "registry_probe")]
fn registry_probe(id: u64) -> u64 {
    NAMED.fetch_add(1, Ordering::SeqCst);
    id
}

#[test]
fn registry_reaches_caches_by_name() {
    for i in 0..5 {
        registry_probe(i);
    }
    assert!(registry().names().contains(&"registry_probe".to_string()));
    assert_eq!(
        registry()
            .keys("registry_probe", Some("registry_probe:[0-2]"), 10)
            .unwrap(),
        vec!["registry_probe:0", "registry_probe:1", "registry_probe:2"]
    );
    assert_eq!(
        registry()
            .revoke("registry_probe", "registry_probe:[0-2]")
            .unwrap(),
        3
    );
    assert!(
        registry()
            .invalidate("registry_probe", "registry_probe:3")
            .unwrap()
    );
    assert_eq!(registry().stats("registry_probe").unwrap().entries, 1);
    assert_eq!(registry().clear("registry_probe").unwrap(), 1);
    registry_probe(0);
    assert_eq!(NAMED.load(Ordering::SeqCst), 6);

    assert!(matches!(
        registry().clear("no_such_cache"),
        Err(cache_core::RegistryError::UnknownCache(_))
    ));
    assert!(matches!(
        registry().revoke("registry_probe", "a[b"),
        Err(cache_core::RegistryError::Pattern(_))
    ));
}

static READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `std::io::Error` is not `Clone`: errors are not cached, so the cache
/// holds only the `Ok` value and the error type needs nothing.
#[cached(ttl = 60)]
fn read_len(path: String) -> Result<usize, std::io::Error> {
    READS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if path == "missing" {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, "missing"))
    } else {
        Ok(path.len())
    }
}

#[test]
fn errors_that_are_not_clone_work() {
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(read_len("abc".into()).unwrap(), 3);
    assert_eq!(read_len("abc".into()).unwrap(), 3);
    assert_eq!(READS.load(SeqCst), 1, "the Ok value is cached");
    let e = read_len("missing".into()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(read_len("missing".into()).is_err());
    assert_eq!(READS.load(SeqCst), 3, "errors are not cached");
    let cache: &cache_core::Cache<String, usize> = read_len_cache();
    assert_eq!(cache.get(&"abc".to_string()), Some(3));
}
