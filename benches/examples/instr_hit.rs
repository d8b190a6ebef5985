//! Counts what a hit costs in instructions, for `valgrind --tool=callgrind`
//! (repeatable where wall time on a shared machine is not):
//! `instr_hit ours|quick N` does N hits on a warm set of 1024 keys;
//! `instr_hit miss N` does N misses (each a load, a store and an eviction).
use std::hint::black_box;

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
