//! Moving `#[cached]` functions and a service to the DHT takes
//! configuration, not code: `backend = "dht"` and a `[dht]` section that
//! names a peer to join. Values land in the network (another peer reads
//! them), with `hash_keys` no argument reaches it, and an attribute's own
//! `backend = "dht"` works too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::config::{self, Backend, ConfigDuration, ConfigSource, DhtOptions};
use cache_core::dht::DhtStore;
use cache_core::{Store, cache_service, cached};

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60)]
fn square(x: u64) -> u64 {
    LOADS.fetch_add(1, Ordering::SeqCst);
    x * x
}

#[cached(backend = "dht", ttl = 60)]
fn cube(x: u64) -> u64 {
    LOADS.fetch_add(1, Ordering::SeqCst);
    x * x * x
}

#[derive(Clone)]
struct Users;

#[cache_service(name = "dht_users")]
impl Users {
    #[cached(ttl = 60)]
    fn name(&self, id: u64) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        format!("user-{id}")
    }

    #[cached(ttl = 60)]
    fn by_email(&self, email: String) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        email.len() as u64
    }
}

#[test]
fn backend_dht_is_a_configuration_change() {
    // A peer of the network, outside the cache's own process-wide peer.
    let mut o = DhtOptions::default();
    o.network = Some("cfg-net".into());
    o.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    o.query_timeout = Some(ConfigDuration(Duration::from_secs(2)));
    let other = DhtStore::start(&o).unwrap();
    let dir = std::env::temp_dir().join(format!("dht-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cache.toml");
    std::fs::write(
        &file,
        format!(
            "[cache]\nbackend = \"dht\"\n\n[dht]\nnetwork = \"cfg-net\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nbootstrap = [\"{}\"]\n\n[remote]\nhash_keys = true\nhash_secret = \"a test secret of some length\"\n",
            other.listen_addrs()[0]
        ),
    )
    .unwrap();
    config::init(ConfigSource::file(&file).env_prefix("DHT_CFG_")).unwrap();

    assert_eq!(square(4), 16);
    assert_eq!(square_cache().backend(), Backend::named("dht"));
    assert!(square_cache().is_empty(), "values only in the network");
    assert_eq!(square(4), 16);
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        1,
        "the second call read the DHT"
    );
    assert_eq!(cube(2), 8);
    assert_eq!(cube(2), 8);
    assert_eq!(cube_cache().backend(), Backend::named("dht"));
    assert_eq!(Users.name(5), "user-5");
    assert_eq!(Users.name(5), "user-5");
    assert_eq!(Users.by_email("alice@example.org".into()), 17);
    assert_eq!(LOADS.load(Ordering::SeqCst), 4);

    // The other peer holds copies (two peers, replication 3: every
    // record), and with hash_keys no record key names an argument.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(
        rt.block_on(other.peers()) >= 1,
        "the configured peer joined"
    );
    let keys = other.held_record_keys();
    assert!(
        keys.len() >= 4,
        "{} records reached the other peer",
        keys.len()
    );
    for k in &keys {
        let text = String::from_utf8_lossy(k);
        assert!(
            !text.contains("alice"),
            "a raw argument left the process: {text}"
        );
    }
    // An invalidation is acknowledged by the network: the next call
    // computes again.
    square_cache().invalidate(&4);
    assert_eq!(square(4), 16);
    assert_eq!(LOADS.load(Ordering::SeqCst), 5);
    let _ = rt.block_on(other.get("x", "y")).unwrap();
}
