//! Hit ratio on real traces and synthetic workloads, against the peers.
//!
//! `cargo run --release -p cache-bench --example hit_ratio [-- oltp]`
//! replays each workload through each policy: for every key it reads, and
//! inserts on a miss (as moka's mokabench does); the hit ratio is hits /
//! reads. The traces are from Nimrod Megiddo and Dharmendra S. Modha,
//! "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST '03; they are
//! read from `../shared/traces/` (or `CACHE_TRACES`), never copied here.
//!
//! It prints a Markdown table per workload and writes every figure to
//! `target/hit_ratio.csv` for `scripts/hit-ratio-chart`.

use std::io::Write;
use std::time::Instant;

use cache_bench::policies::{ExactLfu, ExactLru, Policy, belady_hits};
use cache_bench::traces::{read_trace, zipf, zipf_with_scans};
use cache_core::{Cache, Eviction};
use cached::Cached;

struct Ours(Cache<u64, ()>);
impl Policy for Ours {
    fn access(&mut self, key: u64) -> bool {
        if self.0.get(&key).is_some() {
            return true;
        }
        self.0.insert(key, ());
        false
    }
}

struct Quick(quick_cache::sync::Cache<u64, ()>);
impl Policy for Quick {
    fn access(&mut self, key: u64) -> bool {
        if self.0.get(&key).is_some() {
            return true;
        }
        self.0.insert(key, ());
        false
    }
}

struct Moka(moka::sync::Cache<u64, ()>);
impl Policy for Moka {
    fn access(&mut self, key: u64) -> bool {
        if self.0.get(&key).is_some() {
            return true;
        }
        self.0.insert(key, ());
        false
    }
}

struct CachedLru(cached::LruCache<u64, ()>);
impl Policy for CachedLru {
    fn access(&mut self, key: u64) -> bool {
        if self.0.cache_get(&key).is_some() {
            return true;
        }
        self.0.cache_set(key, ());
        false
    }
}

/// The policies compared, by name.
const POLICIES: [&str; 10] = [
    "cache-core",
    "cache-core tinylfu",
    "cache-core lru",
    "cache-core lfu",
    "quick_cache",
    "moka",
    "cached LRU",
    "exact LRU",
    "exact LFU",
    "Bélády (ceiling)",
];

/// The peers whose best the default engine is compared with.
const PEERS: [&str; 3] = ["quick_cache", "moka", "cached LRU"];

fn policy(name: &str, cap: usize) -> Box<dyn Policy> {
    let ours = |e: Eviction| {
        // One entry at a time, as the peers and the exact policies evict.
        Box::new(Ours(
            Cache::builder()
                .capacity(cap)
                .eviction(e)
                .eviction_batch_size(1)
                .build(),
        )) as Box<dyn Policy>
    };
    match name {
        "cache-core" => ours(Eviction::Engine),
        "cache-core lru" => ours(Eviction::Lru),
        "cache-core lfu" => ours(Eviction::Lfu),
        "cache-core tinylfu" => ours(Eviction::TinyLfu),
        "quick_cache" => Box::new(Quick(quick_cache::sync::Cache::new(cap))),
        "moka" => Box::new(Moka(moka::sync::Cache::new(cap as u64))),
        "cached LRU" => Box::new(CachedLru(cached::LruCache::new(cap))),
        "exact LRU" => Box::new(ExactLru::new(cap)),
        "exact LFU" => Box::new(ExactLfu::new(cap)),
        other => unreachable!("{other}"),
    }
}

fn hit_ratio(name: &str, keys: &[u64], cap: usize) -> f64 {
    let hits = if name.starts_with("Bélády") {
        belady_hits(keys, cap)
    } else {
        let mut p = policy(name, cap);
        keys.iter().filter(|&&k| p.access(k)).count() as u64
    };
    hits as f64 * 100.0 / keys.len() as f64
}

fn main() -> std::io::Result<()> {
    let only_oltp = std::env::args().any(|a| a == "oltp");
    let mut workloads: Vec<(String, Vec<u64>, Vec<usize>)> = vec![(
        "OLTP".into(),
        read_trace("OLTP")?,
        vec![250, 500, 1_000, 2_000, 5_000],
    )];
    if !only_oltp {
        for t in ["P2", "P3", "P6"] {
            workloads.push((t.into(), read_trace(t)?, vec![16_384, 65_536, 262_144]));
        }
        let keys = 100_000;
        let sizes = vec![keys / 200, keys / 10];
        for s in [0.9, 1.0] {
            workloads.push((
                format!("Zipf {s}, 100k keys"),
                zipf(keys, s, 2_000_000, 1),
                sizes.clone(),
            ));
        }
        workloads.push((
            "Zipf 0.9 + scans of 20k keys every 50k reads".into(),
            zipf_with_scans(keys, 0.9, 2_000_000, 50_000, 20_000),
            sizes,
        ));
    }
    let csv_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/hit_ratio.csv");
    let mut csv = std::fs::File::create(csv_path)?;
    writeln!(csv, "workload,size,policy,hit_ratio")?;
    for (name, keys, sizes) in &workloads {
        println!("\n### {name} ({} reads)\n", keys.len());
        println!(
            "| size | {} | default vs best peer | best of default and tinylfu vs best peer |",
            POLICIES.join(" | ")
        );
        println!("|---|{}---|---|", "---|".repeat(POLICIES.len()));
        for &cap in sizes {
            let t = Instant::now();
            let ratios: Vec<f64> = POLICIES.iter().map(|p| hit_ratio(p, keys, cap)).collect();
            for (p, r) in POLICIES.iter().zip(&ratios) {
                writeln!(csv, "\"{name}\",{cap},{p},{r:.3}")?;
            }
            let best_peer = PEERS
                .iter()
                .map(|p| ratios[POLICIES.iter().position(|q| q == p).unwrap()])
                .fold(f64::MIN, f64::max);
            let cells: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "| {cap} | {} | {:+.2} | {:+.2} |",
                cells.join(" | "),
                ratios[0] - best_peer,
                ratios[0].max(ratios[1]) - best_peer
            );
            eprintln!("  ({name} at {cap}: {:?})", t.elapsed());
        }
    }
    eprintln!("wrote {csv_path}");
    Ok(())
}
