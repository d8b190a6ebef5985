//! The main example: a user service over a real SQLite database.
//!
//! `cargo run -p cache-examples --bin user_service` creates and seeds the
//! database, calls the cached actions, shows cold and warm latency and the
//! hit rate, updates a user (which evicts), publishes an event, revokes by
//! pattern and prints the stats. With `--serve 127.0.0.1:8080` it then serves
//! the admin API (token from `CACHE_ADMIN__TOKEN`, or a generated one).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::{cache_service, registry};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
struct User {
    id: u64,
    name: String,
    email: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Profile {
    user: User,
    orders: u64,
    total_cents: i64,
}

#[derive(Debug, Clone)]
struct UserData {
    name: String,
    email: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Error {
    NotFound(u64),
    Db(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Db(e.to_string())
    }
}

struct UserService {
    db: Arc<Mutex<Connection>>,
    queries: AtomicU64,
}

#[cache_service(name = "user")]
impl UserService {
    fn open(path: &PathBuf, users: u64) -> Result<Self, Error> {
        let _ = std::fs::remove_file(path);
        let mut db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
             CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, cents INTEGER NOT NULL);
             CREATE INDEX orders_by_user ON orders(user_id);",
        )?;
        let tx = db.transaction()?;
        for id in 1..=users {
            tx.execute(
                "INSERT INTO users (id, name, email) VALUES (?1, ?2, ?3)",
                params![
                    id as i64,
                    format!("user{id}"),
                    format!("user{id}@example.com")
                ],
            )?;
            for n in 0..(id % 7) {
                tx.execute(
                    "INSERT INTO orders (user_id, cents) VALUES (?1, ?2)",
                    params![id as i64, ((id * 37 + n * 101) % 10_000) as i64],
                )?;
            }
        }
        tx.commit()?;
        Ok(UserService {
            db: Arc::new(Mutex::new(db)),
            queries: AtomicU64::new(0),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cached(ttl = 60)]
    async fn get_user(&self, id: u64) -> Result<User, Error> {
        self.conn()
            .query_row(
                "SELECT name, email FROM users WHERE id = ?1",
                params![id as i64],
                |r| {
                    Ok(User {
                        id,
                        name: r.get(0)?,
                        email: r.get(1)?,
                    })
                },
            )
            .optional()?
            .ok_or(Error::NotFound(id))
    }

    #[action(cache(enabled = true, ttl = 60))]
    async fn get_profile(&self, id: u64) -> Result<Profile, Error> {
        let row = self
            .conn()
            .query_row(
                "SELECT u.name, u.email, COUNT(o.id), COALESCE(SUM(o.cents), 0)
                 FROM users u LEFT JOIN orders o ON o.user_id = u.id
                 WHERE u.id = ?1 GROUP BY u.id",
                params![id as i64],
                |r| {
                    Ok(Profile {
                        user: User {
                            id,
                            name: r.get(0)?,
                            email: r.get(1)?,
                        },
                        orders: r.get::<_, i64>(2)? as u64,
                        total_cents: r.get(3)?,
                    })
                },
            )
            .optional()?;
        row.ok_or(Error::NotFound(id))
    }

    #[cache_evict(keys = ["get_user:{id}", "get_profile:{id}"])]
    async fn update_user(&self, id: u64, data: UserData) -> Result<User, Error> {
        let n = self.conn().execute(
            "UPDATE users SET name = ?2, email = ?3 WHERE id = ?1",
            params![id as i64, data.name, data.email],
        )?;
        if n == 0 {
            return Err(Error::NotFound(id));
        }
        Ok(User {
            id,
            name: data.name,
            email: data.email,
        })
    }
}

fn mean(d: Duration, n: u64) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6 / n as f64)
}

fn print_stats(stats: &Value) {
    println!(
        "\n{:<12} {:>7} {:>7} {:>8} {:>7} {:>7} {:>10} {:>8}",
        "action", "hits", "misses", "hit rate", "loads", "entries", "mean load", "invalid."
    );
    let row = |name: &str, s: &Value| {
        let n = |f: &str| s[f].as_u64().unwrap_or(0);
        println!(
            "{:<12} {:>7} {:>7} {:>7.1}% {:>7} {:>7} {:>8.3}ms {:>8}",
            name,
            n("hits"),
            n("misses"),
            s["hit_rate"].as_f64().unwrap_or(0.0) * 100.0,
            n("loads"),
            n("entries"),
            s["mean_load_ms"].as_f64().unwrap_or(0.0),
            n("invalidations"),
        )
    };
    if let Some(actions) = stats["actions"].as_object() {
        for (name, s) in actions {
            row(name, s);
        }
    }
    row("total", &stats["total"]);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cache_core::audit=info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let serve = args
        .iter()
        .position(|a| a == "--serve")
        .map(|i| {
            args.get(i + 1)
                .ok_or("--serve needs an address, such as 127.0.0.1:8080")
        })
        .transpose()?
        .map(|a| a.parse::<std::net::SocketAddr>())
        .transpose()?;

    // 1. Create and seed the database.
    let path = std::env::temp_dir().join(format!("cache-rs-users-{}.sqlite3", std::process::id()));
    let users = 1_000;
    let svc = UserService::open(&path, users).map_err(|e| format!("{e:?}"))?;
    println!("1. seeded {} with {users} users", path.display());

    // 2 and 3. Cold and warm calls.
    let ids: Vec<u64> = (1..=200).collect();
    let t = Instant::now();
    for &id in &ids {
        svc.get_profile(id).await.map_err(|e| format!("{e:?}"))?;
    }
    let cold = t.elapsed();
    let t = Instant::now();
    for _ in 0..10 {
        for &id in &ids {
            svc.get_profile(id).await.map_err(|e| format!("{e:?}"))?;
        }
    }
    let warm = t.elapsed();
    let s = UserService::get_profile_cache().stats();
    println!(
        "2. get_profile: cold {} per call ({} SQL queries), warm {} per call",
        mean(cold, ids.len() as u64),
        svc.queries.load(Ordering::Relaxed),
        mean(warm, 10 * ids.len() as u64)
    );
    println!(
        "3. hit rate {:.1}% ({} hits, {} misses); warm calls are {:.0}x faster",
        s.hit_rate() * 100.0,
        s.hits,
        s.misses,
        (cold.as_secs_f64() / ids.len() as f64) / (warm.as_secs_f64() / (10 * ids.len()) as f64)
    );

    // 4. An update evicts the user's entries.
    let before = svc.get_user(7).await.map_err(|e| format!("{e:?}"))?;
    svc.update_user(
        7,
        UserData {
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
        },
    )
    .await
    .map_err(|e| format!("{e:?}"))?;
    let after = svc.get_user(7).await.map_err(|e| format!("{e:?}"))?;
    println!(
        "4. update_user(7) evicted get_user:7: {:?} -> {:?}",
        before.name, after.name
    );

    // 5. An event revokes the keys it maps to.
    registry().on_event(
        "user.updated",
        Some("user"),
        &["get_user:{id}", "get_profile:{id}"],
    )?;
    svc.get_user(8).await.map_err(|e| format!("{e:?}"))?;
    let removed = registry()
        .publish("user.updated", json!({ "id": 8 }))
        .await?;
    println!("5. publish(user.updated, {{id: 8}}) removed {removed} entries");

    // 6. Revoke by pattern through the generated handler.
    let r = registry()
        .request("user/cache/revoke", json!({ "pattern": "get_profile:1?" }))
        .await?;
    println!(
        "6. user/cache/revoke get_profile:1? removed {}",
        r["revoked"]
    );

    // 7. Stats per action and in total.
    let stats = registry().request("user/cache/stats", json!({})).await?;
    println!("7. user/cache/stats:");
    print_stats(&stats);

    if let Some(addr) = serve {
        let token = cache_core::config::current()
            .admin
            .token
            .clone()
            .unwrap_or_else(|| {
                let seed = format!("{:?}{}", Instant::now(), std::process::id());
                random_token(seed.as_bytes())
            });
        println!("\nadmin API on http://{addr} (Ctrl-C to stop)");
        println!("  dashboard: http://{addr}/ (paste the token)");
        println!("  metrics:   curl -H 'Authorization: Bearer {token}' http://{addr}/metrics");
        println!("  health:    curl http://{addr}/health");
        println!("try:");
        println!("  curl -H 'Authorization: Bearer {token}' http://{addr}/user/cache/stats");
        println!(
            "  curl -X POST -H 'Authorization: Bearer {token}' -d '{{\"pattern\":\"get_user:*\"}}' http://{addr}/user/cache/revoke"
        );
        tokio::select! {
            r = cache_core::http::serve(addr, token) => r?,
            _ = tokio::signal::ctrl_c() => println!("stopped"),
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// A token that is hard to guess: blake3 digests of the start time and
/// process id.
fn random_token(seed: &[u8]) -> String {
    cache_core::key::digest(seed).to_string() + &cache_core::key::digest(&(seed, 1u8)).to_string()
}
