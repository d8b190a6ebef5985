//! Counts what a hit costs in instructions, for `valgrind --tool=callgrind`
//! (repeatable where wall time on a shared machine is not):
//! `instr_hit ours|quick N` does N hits on a warm set of 1024 keys;
//! `instr_hit miss N` does N misses (each a load, a store and an eviction).
//! `instr_hit time N` times hits of both, interleaved in 30 rounds of N, and
//! prints the fastest round of each (the least disturbed by other work on
//! the machine) and their ratio.
//! `instr_hit tenants N` times hits of one service cache with tenant
//! labels off and on (configuration turned back and forth each round).
use std::hint::black_box;
use std::time::Instant;

#[cache_core::cached(ttl = 60, capacity = 10_000)]
fn ours(x: u64) -> u64 {
    x.wrapping_mul(31)
}

#[cache_core::cached(capacity = 10_000)]
fn ours_miss(x: u64) -> u64 {
    black_box(x).wrapping_mul(31)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "ours".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let quick: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(10_000);
    for k in 0..1024 {
        ours(k);
        quick.insert(k, k.wrapping_mul(31));
    }
    if which == "tenants" {
        tenants(n);
        return;
    }
    if which == "time" {
        type Wide = (u64, std::num::NonZeroU64);
        let wide: quick_cache::sync::Cache<u64, Wide> = quick_cache::sync::Cache::new(10_000);
        for k in 0..1024 {
            wide.insert(k, (k, std::num::NonZeroU64::MAX));
        }
        let ops: [&dyn Fn(u64) -> u64; 3] = [&|k| ours(k), &|k| quick.get(&k).unwrap_or(0), &|k| {
            wide.get(&k).map_or(0, |e| e.0)
        }];
        let mut best = [f64::MAX; 3];
        for _ in 0..30 {
            for (j, op) in ops.iter().enumerate() {
                let start = Instant::now();
                let mut acc = 0u64;
                for i in 0..n {
                    acc = acc.wrapping_add(op(black_box(i & 1023)));
                }
                black_box(acc);
                best[j] = best[j].min(start.elapsed().as_nanos() as f64 / n as f64);
            }
        }
        println!(
            "ours {:.2} ns, quick_cache {:.2} ns, ratio {:.3} (quick_cache of an entry-sized value {:.2} ns)",
            best[0],
            best[1],
            best[0] / best[1],
            best[2]
        );
        return;
    }
    let mut acc = 0u64;
    for i in 0..n {
        let k = black_box(i & 1023);
        acc = acc.wrapping_add(match which.as_str() {
            "quick" => quick.get(&k).unwrap_or(0),
            "miss" => ours_miss(black_box(i + 1_000_000)),
            _ => ours(k),
        });
    }
    println!("{acc}");
}

/// Hits of one service cache, tenant labels off against on.
fn tenants(n: u64) {
    use cache_core::config::{self, Config};
    use cache_core::namespace::{TenantId, tenant_id};
    static ACME: std::sync::OnceLock<TenantId> = std::sync::OnceLock::new();
    let acme = *ACME.get_or_init(|| tenant_id("acme"));
    let cache: cache_core::Cache<u64, u64> = cache_core::CacheBuilder::new()
        .name("hits")
        .service("bench_tenants")
        .register(true)
        .tenant_of(|_| *ACME.get().expect("set above"))
        .build();
    let _ = acme;
    for k in 0..1024 {
        cache.insert(k, k);
    }
    let labels = |on: bool| {
        let text = format!("[services.bench_tenants]\ntenant_labels = {on}\n");
        let c: Config = toml_config(&text);
        config::set(c).expect("configuration applies");
    };
    let mut best = [f64::MAX; 2];
    for _ in 0..30 {
        for (j, on) in [false, true].into_iter().enumerate() {
            labels(on);
            let start = Instant::now();
            let mut acc = 0u64;
            for i in 0..n {
                acc = acc.wrapping_add(cache.get(&black_box(i & 1023)).unwrap_or(0));
            }
            black_box(acc);
            best[j] = best[j].min(start.elapsed().as_nanos() as f64 / n as f64);
        }
    }
    println!(
        "tenant labels off {:.2} ns, on {:.2} ns, ratio {:.3}",
        best[0],
        best[1],
        best[1] / best[0]
    );
}

/// A configuration from TOML text, through a file (as users give it).
fn toml_config(text: &str) -> cache_core::config::Config {
    let path = std::env::temp_dir().join(format!("instr-hit-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("temp file");
    let c = cache_core::config::ConfigSource::file(&path)
        .env_prefix("INSTR_HIT_NONE_")
        .load()
        .expect("valid configuration");
    let _ = std::fs::remove_file(&path);
    c
}
