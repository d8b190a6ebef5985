//! The quickest tour of cache-core: `#[cached]` on a function and on an async
//! method, then reaching the caches to list, revoke and count.
//!
//! Run it with `cargo run -p cache-examples --bin quickstart`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::{cached, registry};

/// A slow computation, cached for a minute per argument.
#[cached(ttl = 60)]
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    x * x
}

#[derive(Clone, Debug)]
struct User {
    id: u64,
    name: String,
}

struct UserService {
    queries: Arc<AtomicUsize>,
}

impl UserService {
    /// Errors are not cached; a `User` is, for ten minutes, tagged by team.
    #[cached(ttl = "10m", key = "user:{id}:{team}", tags = ["team:{team}"])]
    async fn get_user(&self, id: u64, team: &str) -> Result<User, String> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
        if id == 0 {
            return Err("no user 0".into());
        }
        Ok(User {
            id,
            name: format!("user-{id}@{team}"),
        })
    }
}

#[tokio::main]
async fn main() {
    let t = Instant::now();
    slow_square(12);
    let cold = t.elapsed();
    let t = Instant::now();
    slow_square(12);
    let warm = t.elapsed();
    println!("slow_square(12): cold {cold:?}, warm {warm:?}");

    let svc = UserService {
        queries: Arc::default(),
    };
    for id in [1, 2, 3, 1, 2, 3, 0, 0] {
        let team = if id % 2 == 0 { "blue" } else { "red" };
        match svc.get_user(id, team).await {
            Ok(u) => println!("get_user({id}) -> {} {}", u.id, u.name),
            Err(e) => println!("get_user({id}) -> error: {e}"),
        }
    }
    println!(
        "database queries: {} for 8 calls",
        svc.queries.load(Ordering::Relaxed)
    );

    let cache = UserService::get_user_cache();
    println!("keys: {:?}", cache.keys(None, 10));
    println!(
        "revoked by tag team:red -> {}",
        cache.invalidate_tag("team:red")
    );
    println!(
        "revoked user:[1-2]:* by name through the registry -> {}",
        registry().revoke("get_user", "user:[1-2]:*").unwrap()
    );
    let s = cache.stats();
    println!(
        "stats: hits {} misses {} hit rate {:.0}% loads {} (mean {:?}) entries {}",
        s.hits,
        s.misses,
        s.hit_rate() * 100.0,
        s.loads,
        s.mean_load_time(),
        s.entries
    );
}
