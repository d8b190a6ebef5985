//! What the tiering tests share: two nodes' caches in front of one
//! `redis-server`, and waiting for what another node does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::codec::RemoteCodec;
use cache_core::config::Backend;
use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{Cache, TenantId};

use crate::RedisServer;

/// A key of the `get_user` cache: no tenant, id 1.
pub const K: (TenantId, u64) = (TenantId::NONE, 1);

/// A node: its own store (client) on `server` and a `get_user` cache in
/// front of it.
pub fn node(
    server: &RedisServer,
    mode: Backend,
) -> (Cache<(TenantId, u64), String>, Arc<RedisStore>) {
    node_with(server, mode, None)
}

/// [`node`] with a lock across nodes held at most `lock_ms`.
pub fn node_with(
    server: &RedisServer,
    mode: Backend,
    lock_ms: Option<u64>,
) -> (Cache<(TenantId, u64), String>, Arc<RedisStore>) {
    node_opts(server, mode, |o| o.lock_ms = lock_ms)
}

/// [`node`] with options changed by `f`.
pub fn node_opts(
    server: &RedisServer,
    mode: Backend,
    f: impl FnOnce(&mut RedisOptions),
) -> (Cache<(TenantId, u64), String>, Arc<RedisStore>) {
    let mut opts = RedisOptions {
        url: server.url(),
        prefix: "two".into(),
        breaker_after: 2,
        breaker_cooldown_ms: 200,
        // Generous: the first operation also connects, on two busy cores.
        timeout_ms: 300,
        ..RedisOptions::default()
    };
    f(&mut opts);
    let store = RedisStore::connect(opts).unwrap();
    (cache_on(&store, mode), store)
}

/// A store on `server` with its own key prefix.
pub fn store_at(server: &RedisServer, prefix: &str) -> Arc<RedisStore> {
    RedisStore::connect(RedisOptions {
        url: server.url(),
        prefix: prefix.into(),
        timeout_ms: 300,
        ..RedisOptions::default()
    })
    .unwrap()
}

/// A `get_user` cache (tagged by the id's parity) in front of `store`.
pub fn cache_on(store: &Arc<RedisStore>, mode: Backend) -> Cache<(TenantId, u64), String> {
    let cache: Cache<(TenantId, u64), String> =
        cache_core::CacheBuilder::with_render(|k: &(TenantId, u64), out| {
            out.push_str(&format!("get_user:{}", k.1))
        })
        .name("get_user")
        .key_text_prefix("get_user:")
        .service("user")
        .tenant_of(|k| k.0)
        .tags(|k| vec![format!("parity:{}", k.1 % 2)])
        .remote_codec(Some(RemoteCodec::postcard()))
        .remote(store.clone(), mode)
        .build();
    cache
}

/// Waits (at most 5 s) until `f` holds, or fails naming `what`.
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
