//! The key model: no two identities share a remote key, whatever their
//! strings hold (a property over the real remote-key function), the text
//! form pinned by golden vectors, and the collisions once seen, replayed
//! against a real redis-server.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::config::Backend;
use cache_core::namespace::tenant_id;
use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{TenantId, cache_service, cached, with_tenant};
use cache_tests::RedisServer;
use proptest::prelude::*;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// The tests share this file's caches and attach them to stores of their
/// own: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

mod m1 {
    use super::*;
    #[cached]
    pub fn pair(a: String, b: String) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        format!("m1 {a}|{b}")
    }
    #[cached]
    pub fn lookup(id: u64) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        format!("m1 {id}")
    }
}

mod m2 {
    use super::*;
    #[cached]
    pub fn pair(a: String, b: String) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        format!("m2 {a}|{b}")
    }
    #[cached]
    pub fn lookup(id: u64) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        format!("m2 {id}")
    }
}

#[cached]
fn opt(a: Option<String>) -> String {
    CALLS.fetch_add(1, Ordering::SeqCst);
    format!("{a:?}")
}

#[cached(key = "u:{a}:{b}")]
fn tmpl(a: String, b: String) -> String {
    CALLS.fetch_add(1, Ordering::SeqCst);
    format!("t {a}|{b}")
}

#[derive(Clone, Default)]
struct Svc1;

#[cache_service(name = "svc1")]
impl Svc1 {
    #[cached]
    fn get(&self, a: String, b: String) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        format!("s1 {a}|{b}{}", at())
    }
}

#[derive(Clone, Default)]
struct Svc2;

#[cache_service(name = "svc2")]
impl Svc2 {
    #[cached]
    fn get(&self, a: String, b: String) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        format!("s2 {a}|{b}{}", at())
    }
}

/// The caller's tenant, so a value shows whose it is.
fn at() -> String {
    cache_core::current_tenant()
        .name()
        .map_or_else(String::new, |t| format!(" @{t}"))
}

/// A service key's mask when configuration leaves every argument in.
const ALL: u64 = u64::MAX;

const TENANTS: &[&str] = &["", "_", "a", "a:b", "b", "x\\", "é", "~1"];

/// What an entry is: which cache, which tenant (services only), which
/// argument values. Two items share a remote key only if this is equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Identity {
    cache: u8,
    tenant: &'static str,
    a: Option<String>,
    b: String,
}

fn remote_key(item: &Identity) -> String {
    let t = || tenant_id(item.tenant);
    let a = || item.a.clone().unwrap_or_default();
    let b = item.b.clone();
    match item.cache {
        0 => m1::pair_cache().remote_key(&(a(), b)),
        1 => m2::pair_cache().remote_key(&(a(), b)),
        2 => opt_cache().remote_key(&item.a.clone()),
        3 => tmpl_cache().remote_key(&(a(), b)),
        4 => Svc1::get_cache().remote_key(&(t(), ALL, Some(a()), Some(b))),
        _ => Svc2::get_cache().remote_key(&(t(), ALL, Some(a()), Some(b))),
    }
    .expect("a remote tier is attached")
}

/// Puts every cache of this file in front of `store`.
fn attach(store: &Arc<RedisStore>, mode: Backend) {
    m1::pair_cache().attach_remote(store.clone(), mode.clone());
    m2::pair_cache().attach_remote(store.clone(), mode.clone());
    m1::lookup_cache().attach_remote(store.clone(), mode.clone());
    m2::lookup_cache().attach_remote(store.clone(), mode.clone());
    opt_cache().attach_remote(store.clone(), mode.clone());
    tmpl_cache().attach_remote(store.clone(), mode.clone());
    Svc1::get_cache().attach_remote(store.clone(), mode.clone());
    Svc2::get_cache().attach_remote(store.clone(), mode.clone());
}

fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(":".to_string()),
        Just("\\".to_string()),
        Just("None".to_string()),
        Just(String::new()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("~".to_string()),
        "#[0-9a-f]{32}",
        "[a-c:\\\\#()é~]{0,6}",
        ".{60,70}",
    ];
    proptest::collection::vec(piece, 0..4).prop_map(|v| v.concat())
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        0u8..6,
        0..TENANTS.len(),
        proptest::option::weighted(0.9, hostile()),
        hostile(),
    )
        .prop_map(|(cache, t, a, b)| {
            let services = cache >= 4;
            Identity {
                cache,
                tenant: if services { TENANTS[t] } else { "" },
                // Only `opt` takes an Option, and it has no second argument.
                a: if cache == 2 {
                    a
                } else {
                    Some(a.unwrap_or_default())
                },
                b: if cache == 2 { String::new() } else { b },
            }
        })
}

fn lazy_store(hash_keys: bool) -> Arc<RedisStore> {
    // Connections are made on first use: none is, here.
    RedisStore::connect(RedisOptions {
        url: "redis://127.0.0.1:1".into(),
        hash_keys,
        hash_secret: hash_keys.then(|| "property test secret".to_string()),
        ..RedisOptions::default()
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Distinct (cache, tenant, arguments) never share a remote key, with
    /// or without `hash_keys`.
    #[test]
    fn distinct_identities_never_share_a_remote_key(
        items in proptest::collection::vec(identity(), 1..24),
        twins in proptest::collection::vec((0u8..6, 0..TENANTS.len()), 0..4),
    ) {
        // Also the same arguments under other caches and tenants.
        let mut all = items.clone();
        for (i, (cache, t)) in twins.into_iter().enumerate() {
            let mut x = items[i % items.len()].clone();
            x.cache = cache;
            x.tenant = if cache >= 4 { TENANTS[t] } else { "" };
            if cache == 2 { x.b.clear() } else if x.a.is_none() { x.a = Some(String::new()) }
            all.push(x);
        }
        let _one = serial();
        for hashed in [false, true] {
            let store = lazy_store(hashed);
            attach(&store, Backend::Redis);
            let mut seen: HashMap<String, Identity> = HashMap::new();
            for item in &all {
                let k = remote_key(item);
                if let Some(prev) = seen.insert(k.clone(), item.clone()) {
                    prop_assert_eq!(&prev, item, "two identities share {}", k);
                }
                if hashed {
                    // No argument shows: the namespace is the one neutral
                    // arguments get (the cache's escaped path may contain
                    // any argument's text by chance), and the rest is a
                    // digest.
                    let neutral = Identity { a: item.a.as_ref().map(|_| "n".into()), b: "n".into(), ..item.clone() };
                    let n = remote_key(&neutral);
                    let (ns, digest) = k.rsplit_once(":#").expect("a hashed key ends in a digest");
                    prop_assert_eq!(Some(ns), n.rsplit_once(":#").map(|p| p.0), "{} depends on the arguments", k);
                    prop_assert!(digest.len() == 32 && digest.bytes().all(|c| c.is_ascii_hexdigit()), "{} is no digest", k);
                }
            }
        }
    }
}

/// The text form and remote keys of representative arguments. A change
/// here orphans every entry a running fleet holds: only with intent.
// `(&&KeyArg(..))` is the autoref generated code uses to pick a form.
#[allow(clippy::needless_borrow)]
#[test]
fn golden_vectors_pin_the_encoding() {
    use cache_core::key::{KeyArg, ViaHash as _, ViaKeyPart as _, ViaSerialize as _};
    #[derive(Hash, PartialEq, Eq, Clone, serde::Serialize)]
    struct Query {
        name: String,
        limit: u32,
    }
    #[derive(Hash, PartialEq, Eq, Clone)]
    struct HashOnly(u64, String);
    fn text(f: impl FnOnce(&mut String)) -> String {
        let mut s = String::new();
        f(&mut s);
        s
    }
    let q = Query {
        name: "bob".into(),
        limit: 10,
    };
    let h = HashOnly(7, "x".into());
    let cases: Vec<(String, &str)> = vec![
        (text(|o| (&&KeyArg(&123u64)).write_arg(o)), "123"),
        (text(|o| (&&KeyArg(&-5i32)).write_arg(o)), "-5"),
        (text(|o| (&&KeyArg("a:b\\c")).write_arg(o)), "a\\:b\\\\c"),
        (text(|o| (&&KeyArg("#abc")).write_arg(o)), "\\#abc"),
        (text(|o| (&&KeyArg("f(x)")).write_arg(o)), "f\\(x\\)"),
        (text(|o| (&&KeyArg("café")).write_arg(o)), "café"),
        (
            text(|o| (&&KeyArg(&Some("None"))).write_arg(o)),
            "Some(None)",
        ),
        (text(|o| (&&KeyArg(&None::<&str>)).write_arg(o)), "None"),
        (
            text(|o| (&&KeyArg(&*"y".repeat(65))).write_arg(o)),
            "#4b3fe14f0b8530c54fd2f753696abcf0",
        ),
        (
            text(|o| (&&KeyArg(&q)).write_arg(o)),
            "#10edec8b70dfc3879dc3f560f16ef332",
        ),
        (
            text(|o| (&&KeyArg(&h)).write_arg(o)),
            "#28df256289c66b58b01541fd924224d5",
        ),
    ];
    let mut wrong = Vec::new();
    for (got, want) in &cases {
        if got != want {
            wrong.push(format!("{got:?} (pinned {want:?})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the key encoding changed:\n{}",
        wrong.join("\n")
    );

    let _one = serial();
    let store = lazy_store(false);
    attach(&store, Backend::Redis);
    assert_eq!(
        m1::pair_cache()
            .remote_key(&("a:b".into(), "c".into()))
            .unwrap(),
        "cache:::key_model\\:\\:m1\\:\\:pair:a\\:b:c"
    );
    assert_eq!(
        Svc1::get_cache()
            .remote_key(&(tenant_id("a:b"), ALL, Some("x".into()), Some("".into())))
            .unwrap(),
        "cache:svc1:a\\:b:get:x:"
    );
    assert_eq!(
        Svc1::get_cache()
            .remote_key(&(TenantId::NONE, ALL, Some("x".into()), Some("y".into())))
            .unwrap(),
        "cache:svc1::get:x:y"
    );
    assert_eq!(
        tmpl_cache().remote_key(&("1".into(), "2".into())).unwrap(),
        "cache:::key_model\\:\\:tmpl:u:1:2"
    );
}

/// The collisions once seen, against a real server: each call gets the
/// value computed for its own arguments, function, service and tenant.
#[test]
fn no_call_reads_another_identitys_entry_from_redis() {
    let _one = serial();
    let server = RedisServer::start();
    let store = RedisStore::connect(RedisOptions {
        url: server.url(),
        prefix: "km".into(),
        timeout_ms: 300,
        ..RedisOptions::default()
    })
    .unwrap();
    attach(&store, Backend::Redis);
    CALLS.store(0, Ordering::SeqCst);

    assert_eq!(m1::pair("a:b".into(), "c".into()), "m1 a:b|c");
    assert_eq!(m1::pair("a".into(), "b:c".into()), "m1 a|b:c");
    assert_eq!(m2::pair("a:b".into(), "c".into()), "m2 a:b|c");
    assert_eq!(m1::lookup(1), "m1 1");
    assert_eq!(m2::lookup(1), "m2 1");
    assert_eq!(opt(None), "None");
    assert_eq!(opt(Some("None".into())), "Some(\"None\")");
    let long = "z".repeat(200);
    let digest_like = {
        let mut s = String::new();
        cache_core::KeyPart::write_key(&long, &mut s);
        s
    };
    assert_eq!(
        tmpl(long.clone(), "x".into()),
        format!("t {long}|x"),
        "a long argument"
    );
    assert_eq!(
        tmpl(digest_like.clone(), "x".into()),
        format!("t {digest_like}|x"),
        "a string that looks like the long one's digest"
    );
    let svc = Svc1;
    assert_eq!(svc.get("k".into(), "v".into()), "s1 k|v");
    with_tenant("_", || {
        assert_eq!(svc.get("k".into(), "v".into()), "s1 k|v @_")
    });
    with_tenant("a:b", || {
        assert_eq!(svc.get("c".into(), "d".into()), "s1 c|d @a:b")
    });
    with_tenant("a", || {
        assert_eq!(svc.get("b:c".into(), "d".into()), "s1 b:c|d @a")
    });
    assert_eq!(Svc2.get("k".into(), "v".into()), "s2 k|v");
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        14,
        "every identity computed once"
    );

    // Every call above is in Redis under its own key...
    let keys = server.cli(&["DBSIZE"]);
    assert_eq!(keys.trim(), "14");
    // Clearing tenant "a" leaves tenant "a:b" and no tenant alone.
    let before = CALLS.load(Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(
        cache_core::registry().request("svc1/cache/clear", serde_json::json!({"tenant": "a"})),
    )
    .unwrap();
    with_tenant("a:b", || {
        assert_eq!(svc.get("c".into(), "d".into()), "s1 c|d @a:b")
    });
    assert_eq!(svc.get("k".into(), "v".into()), "s1 k|v");
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        before,
        "tenant a:b and no tenant kept their entries"
    );
    with_tenant("a", || svc.get("b:c".into(), "d".into()));
    assert_eq!(CALLS.load(Ordering::SeqCst), before + 1, "tenant a's went");
}

mod d1 {
    #[cache_core::cached(name = "dup_name")]
    pub fn a(x: u64) -> u64 {
        x
    }
}

mod d2 {
    #[cache_core::cached(name = "dup_name")]
    pub fn b(x: u64) -> u64 {
        x + 1
    }
}

/// A bare name that several caches have is an error naming them; a full
/// name reaches one. An explicit name used twice is refused the second
/// time, and that cache never shares a store.
#[test]
fn names_resolve_to_one_cache_or_say_which() {
    let _one = serial();
    // In memory only, whatever another test attached.
    attach(&lazy_store(false), Backend::Memory);
    m1::lookup(5);
    m2::lookup(5);
    let e = cache_core::registry()
        .clear("lookup")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("key_model::m1::lookup") && e.contains("key_model::m2::lookup"),
        "{e}"
    );
    assert!(
        cache_core::registry()
            .invalidate("key_model::m1::lookup", "lookup:5")
            .unwrap()
    );
    assert!(
        m2::lookup_cache().contains_key(&5),
        "the other module's stays"
    );
    let e = cache_core::registry().clear("get").unwrap_err().to_string();
    assert!(e.contains("svc1/get") && e.contains("svc2/get"), "{e}");
    assert!(cache_core::registry().clear("svc1/get").is_ok());

    assert_eq!((d1::a(1), d2::b(1)), (1, 2));
    let c = cache_core::registry().resolve("dup_name").unwrap();
    assert_eq!(c.stats().misses, 1, "one of the two is registered");
}

/// An event's payload values name keys as arguments render them: a string
/// with `:` or a leading `#` reaches the entry made from it.
#[test]
fn event_payloads_render_like_arguments() {
    let _one = serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    attach(&lazy_store(false), Backend::Memory);
    let svc = Svc1;
    svc.get("x:y".into(), "#1".into());
    svc.get("x".into(), "y:#1".into());
    let long = "L".repeat(100);
    svc.get(long.clone(), "z".into());
    cache_core::registry()
        .on_event("svc1.changed", Some("svc1"), &["get:{a}:{b}"])
        .unwrap();
    let n = rt
        .block_on(
            cache_core::registry()
                .publish("svc1.changed", serde_json::json!({"a": "x:y", "b": "#1"})),
        )
        .unwrap();
    assert_eq!(n, 1, "exactly the entry made from these values");
    assert!(Svc1::get_cache().contains_key(&(
        TenantId::NONE,
        ALL,
        Some("x".into()),
        Some("y:#1".into())
    )));
    let n = rt
        .block_on(
            cache_core::registry()
                .publish("svc1.changed", serde_json::json!({"a": long, "b": "z"})),
        )
        .unwrap();
    assert_eq!(n, 1, "a long value reaches its digest");
}
