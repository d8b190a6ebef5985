//! Moving a `#[cached]` function to Redis takes configuration, not code:
//! `backend = "tiered"` or `"redis"`, and a `[redis]` section.

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::config::{self, Backend, ConfigSource};
use cache_core::{cache_service, cached};
use cache_tests::RedisServer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone)]
struct Users;

#[cache_service(name = "users")]
impl Users {
    #[cached(ttl = 60)]
    async fn get_user(&self, id: u64) -> Result<User, String> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        Ok(User {
            id,
            name: format!("user{id}"),
        })
    }

    /// Not serializable: it stays in memory whatever the backend.
    #[cached]
    fn handle(&self, id: u64) -> std::sync::Arc<std::sync::Mutex<u64>> {
        std::sync::Arc::new(std::sync::Mutex::new(id))
    }
}

#[cached(name = "cfg_dup")]
fn dup_a(x: u64) -> u64 {
    x
}

mod other {
    #[cache_core::cached(name = "cfg_dup")]
    pub fn dup_b(x: u64) -> u64 {
        x + 1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_is_a_configuration_change() {
    let server = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("tiered-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cache.toml");
    let write = |backend: &str| {
        std::fs::write(
            &file,
            format!(
                "backend = \"{backend}\"\n[redis]\nurl = \"{}\"\nprefix = \"cfg\"\nhash_keys = true\nhash_secret = \"a test secret of some length\"\n",
                server.url()
            ),
        )
        .unwrap()
    };
    write("tiered");
    config::init(ConfigSource::file(&file).env_prefix("TIERED_CFG_")).unwrap();

    let u = Users.get_user(7).await.unwrap();
    assert_eq!(Users::get_user_cache().backend(), Backend::Tiered);
    let keys = server.cli(&["KEYS", "*"]);
    assert!(
        keys.starts_with("cfg:users::get_user:#"),
        "hashed key: {keys}"
    );
    assert!(!keys.contains(":7"), "no raw argument in the key: {keys}");
    assert_eq!(LOADS.load(Ordering::SeqCst), 1);
    Users.handle(1);
    assert_eq!(Users::handle_cache().backend(), Backend::Memory);

    // Redis only: L1 is emptied and unused, and the value comes from Redis.
    write("redis");
    config::reload().unwrap();
    assert_eq!(Users::get_user_cache().backend(), Backend::Redis);
    assert_eq!(Users.get_user(7).await.unwrap(), u);
    assert_eq!(Users.get_user(7).await.unwrap(), u);
    assert_eq!(LOADS.load(Ordering::SeqCst), 1, "both served by Redis");
    assert!(Users::get_user_cache().is_empty());

    // An explicit name used twice: the second cache is refused, and never
    // shares the first one's entries in Redis.
    assert_eq!((dup_a(1), other::dup_b(1)), (1, 2));
    assert_eq!(dup_a_cache().backend(), Backend::Redis);
    assert_eq!(other::dup_b_cache().backend(), Backend::Memory);

    // A glob over hashed keys cannot be done in Redis: an error, and
    // nothing removed anywhere.
    let e = cache_core::registry()
        .request(
            "users/cache/revoke",
            serde_json::json!({"pattern": "get_user:*"}),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, cache_core::CacheError::Remote(_)), "{e}");
    assert_eq!(
        server
            .cli(&["KEYS", "cfg:users::get_user:*"])
            .lines()
            .count(),
        1,
        "the entry is still in Redis"
    );

    // A file that does not validate changes nothing.
    std::fs::write(
        &file,
        format!(
            "backend = \"memory\"\n[redis]\nurl = \"{}\"\nhash_keys = true\n",
            server.url()
        ),
    )
    .unwrap();
    let e = config::reload().unwrap_err();
    assert!(e.to_string().contains("hash_secret"), "{e}");
    assert_eq!(
        Users::get_user_cache().backend(),
        Backend::Redis,
        "nothing applied"
    );

    // The service's handlers reach Redis too.
    let r = cache_core::registry()
        .request("users/cache/clear", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(r["cleared"], 1, "only `handle`'s entry was in memory");
    assert_eq!(
        server.cli(&["KEYS", "cfg:users:*"]).trim(),
        "",
        "cleared in Redis"
    );
    Users.get_user(7).await.unwrap();
    assert_eq!(LOADS.load(Ordering::SeqCst), 2);

    // Back to memory.
    write("memory");
    config::reload().unwrap();
    assert_eq!(Users::get_user_cache().backend(), Backend::Memory);
}
