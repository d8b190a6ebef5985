//! Two nodes, one Redis: a value computed on node A is an L2 hit on node B,
//! and an invalidation on A crosses to B's in-process cache.
//!
//! `cargo run -p cache-examples --bin two_nodes` starts a `redis-server` of
//! its own on a free port (or uses `REDIS_URL`). Each node has its own Redis
//! client and its own L1, as two processes would.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::codec::RemoteCodec;
use cache_core::config::Backend;
use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{Cache, CacheBuilder};

fn node(url: &str, name: &str) -> (Cache<u64, String>, Arc<RedisStore>) {
    let store = RedisStore::connect(RedisOptions {
        url: url.into(),
        prefix: "demo".into(),
        ..RedisOptions::default()
    })
    .expect("a valid redis url");
    // Keys read as a `#[cached] fn get_user(id: u64)` would write them.
    let cache = CacheBuilder::with_render(|id: &u64, out: &mut String| {
        out.push_str(&format!("get_user:{id}"))
    })
    .name("get_user")
    .service("user")
    .remote_codec(Some(RemoteCodec::postcard()))
    .remote(store.clone(), Backend::Tiered)
    .build();
    println!("node {name}: tiered cache in front of {url}");
    (cache, store)
}

fn wait(what: &str, f: impl Fn() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{what} did not happen"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    t.elapsed()
}

/// Stops the example's own server however `main` ends.
struct Server(Option<std::process::Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() {
    let (url, _server) = match std::env::var("REDIS_URL") {
        Ok(u) => (u, Server(None)),
        Err(_) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start redis-server ({e}): install it with `apt-get install redis-server`, or set REDIS_URL")
                });
            wait("redis-server to listen", || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            (format!("redis://127.0.0.1:{port}"), Server(Some(child)))
        }
    };

    let (a, sa) = node(&url, "A");
    let (b, sb) = node(&url, "B");
    wait("both nodes to subscribe", || {
        sa.is_subscribed() && sb.is_subscribed()
    });

    let v = a.get_or_insert_with(42, || "computed on A".to_string());
    println!("A: get_user(42) -> {v:?} (computed, stored in A's L1 and in Redis)");
    let v = b.get_or_insert_with(42, || "computed on B".to_string());
    println!(
        "B: get_user(42) -> {v:?} (an L2 hit: {} Redis hit)",
        sb.stats().hits
    );

    let removed = a.revoke_str("get_user:*").expect("a valid pattern");
    let took = wait("B to drop its copy", || !b.contains_key(&42));
    println!("A: revoke get_user:* removed {removed}; B dropped its L1 copy {took:?} later");
    let v = b.get_or_insert_with(42, || "recomputed on B".to_string());
    println!("B: get_user(42) -> {v:?} (a miss everywhere, so computed)");
    println!(
        "B received {} invalidation(s) from A",
        sb.stats().invalidations_received
    );
}
