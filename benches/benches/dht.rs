//! The DHT backend against Redis on the same machine: get and put latency
//! (p50, p99) and get throughput, through the same `Store` interface, with
//! five DHT peers in this process (reads and writes go through a peer that
//! is not the first); and how long a new peer takes to serve entries after
//! joining. Needs `redis-server` (`apt-get install redis-server`).
//!
//! Run: `cargo bench -p cache-bench --bench dht`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_bench::start_redis;
use cache_core::Store;
use cache_core::config::{ConfigDuration, DhtOptions};
use cache_core::dht::DhtStore;
use cache_core::redis::{RedisOptions, RedisStore};

const KEYS: usize = 500;
const OPS: usize = 2000;
const TASKS: usize = 50;

fn opts(bootstrap: &[String]) -> DhtOptions {
    let mut o = DhtOptions::default();
    o.network = Some("bench".into());
    o.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    o.bootstrap = bootstrap.to_vec();
    o.query_timeout = Some(ConfigDuration(Duration::from_secs(5)));
    o
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

/// p50 and p99 of puts and gets (µs), and gets per second with TASKS
/// concurrent readers.
async fn measure(store: Arc<dyn Store>) -> ((f64, f64), (f64, f64), f64) {
    let mut puts = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let t = Instant::now();
        store
            .set("bench", &format!("k{i}"), vec![7; 100], None)
            .await
            .unwrap();
        puts.push(t.elapsed());
    }
    let mut gets = Vec::with_capacity(OPS);
    for i in 0..OPS {
        let t = Instant::now();
        let v = store.get("bench", &format!("k{}", i % KEYS)).await.unwrap();
        gets.push(t.elapsed());
        assert!(v.is_some(), "every read finds its key");
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in 0..OPS / TASKS {
                    let k = format!("k{}", (t * 31 + i * 7) % KEYS);
                    assert!(s.get("bench", &k).await.unwrap().is_some());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let throughput = (OPS / TASKS * TASKS) as f64 / start.elapsed().as_secs_f64();
    (percentiles(puts), percentiles(gets), throughput)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = start_redis();
    let redis = RedisStore::connect(RedisOptions {
        url: format!("redis://127.0.0.1:{}", server.1),
        prefix: "bench".into(),
        timeout_ms: 2000,
        ..RedisOptions::default()
    })
    .unwrap();
    let first = DhtStore::start(&opts(&[])).unwrap();
    let boot = first.listen_addrs();
    let mut peers = vec![first];
    for _ in 0..4 {
        peers.push(DhtStore::start(&opts(&boot)).unwrap());
    }
    let t = Instant::now();
    while peers.iter().any(|p| rt.block_on(p.peers()) < 4) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the peers did not connect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let dht: Arc<dyn Store> = peers[3].clone();
    let (dp, dg, dt) = rt.block_on(measure(dht));
    let (rp, rg, rt_) = rt.block_on(measure(redis));
    println!("5 DHT peers in one process against one redis-server, 100-byte values, {KEYS} keys:");
    println!(
        "put p50/p99: dht {:.0}/{:.0} µs, redis {:.0}/{:.0} µs, ratio {:.1}x/{:.1}x",
        dp.0,
        dp.1,
        rp.0,
        rp.1,
        dp.0 / rp.0,
        dp.1 / rp.1
    );
    println!(
        "get p50/p99: dht {:.0}/{:.0} µs, redis {:.0}/{:.0} µs, ratio {:.1}x/{:.1}x",
        dg.0,
        dg.1,
        rg.0,
        rg.1,
        dg.0 / rg.0,
        dg.1 / rg.1
    );
    println!(
        "gets/s with {TASKS} tasks: dht {dt:.0}, redis {rt_:.0}, ratio {:.2}",
        dt / rt_
    );
    // A new peer joins: how long until it serves an existing entry.
    let t = Instant::now();
    let late = DhtStore::start(&opts(&boot)).unwrap();
    loop {
        if rt
            .block_on(late.get("bench", "k1"))
            .ok()
            .flatten()
            .is_some()
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the new peer never served"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "a new peer served its first entry {:.0} ms after it started",
        t.elapsed().as_secs_f64() * 1e3
    );
}
