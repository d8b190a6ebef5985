//! Priorities under pressure: a high-priority set keeps its hits while a
//! larger Zipf workload churns the cache.
//!
//! `cargo run --release -p cache-bench --example priority_hits` replays
//! 3,000,000 reads: 90 % Zipf 0.9 over 100,000 keys, 10 % uniform over a
//! set of 2,000 keys, through caches of 5,000 entries. Each key is read,
//! and inserted on a miss; the high set's keys at `Priority::High` where
//! the cache has priorities. It prints the hit ratio of the high set and
//! of all reads.

use cache_bench::traces::{Rng, zipf};
use cache_core::{Cache, Eviction, Priority};

const HIGH: u64 = 2_000;
const READS: usize = 3_000_000;
const CAP: usize = 5_000;

fn main() {
    let base = zipf(100_000, 0.9, READS, 7);
    let mut rng = Rng(11);
    // The high set's keys have the top bit set; Zipf's are hashed ranks.
    let reads: Vec<(u64, bool)> = base
        .into_iter()
        .map(|k| {
            if rng.unit() < 0.1 {
                ((1 << 63) | (rng.bits() % HIGH), true)
            } else {
                (k & !(1 << 63), false)
            }
        })
        .collect();
    println!("| cache ({CAP} entries) | high set hit % | all reads hit % |");
    println!("|---|---|---|");
    let ours = |e: Eviction| {
        Cache::<u64, ()>::builder()
            .capacity(CAP)
            .eviction(e)
            .build()
    };
    let quick = quick_cache::sync::Cache::<u64, ()>::new(CAP);
    let moka = moka::sync::Cache::<u64, ()>::new(CAP as u64);
    type Access<'a> = Box<dyn FnMut(u64, bool) -> bool + 'a>;
    let with_priority = |c: Cache<u64, ()>| -> Access<'static> {
        Box::new(move |k, high| {
            if c.get(&k).is_some() {
                return true;
            }
            let p = if high {
                Priority::High
            } else {
                Priority::Medium
            };
            c.insert_with_priority(k, (), p);
            false
        })
    };
    let runs: Vec<(&str, Access)> = vec![
        (
            "cache-core, tinylfu, high set at `high`",
            with_priority(ours(Eviction::TinyLfu)),
        ),
        (
            "cache-core, lru, high set at `high`",
            with_priority(ours(Eviction::Lru)),
        ),
        ("cache-core, tinylfu, no priorities", {
            let c = ours(Eviction::TinyLfu);
            Box::new(move |k, _| c.get(&k).is_some() || (c.insert(k, ()), false).1)
        }),
        ("cache-core, default engine", {
            let c = ours(Eviction::Engine);
            Box::new(move |k, _| c.get(&k).is_some() || (c.insert(k, ()), false).1)
        }),
        (
            "quick_cache",
            Box::new(move |k, _| quick.get(&k).is_some() || (quick.insert(k, ()), false).1),
        ),
        (
            "moka",
            Box::new(move |k, _| moka.get(&k).is_some() || (moka.insert(k, ()), false).1),
        ),
    ];
    for (name, mut access) in runs {
        let (mut high_reads, mut high_hits, mut hits) = (0u64, 0u64, 0u64);
        for &(k, high) in &reads {
            let hit = access(k, high);
            hits += hit as u64;
            if high {
                high_reads += 1;
                high_hits += hit as u64;
            }
        }
        println!(
            "| {name} | {:.2} | {:.2} |",
            high_hits as f64 * 100.0 / high_reads as f64,
            hits as f64 * 100.0 / READS as f64
        );
    }
}
