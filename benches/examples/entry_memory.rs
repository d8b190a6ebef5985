//! Memory per entry at 1,000,000 entries, against the peers: the bytes a
//! full cache holds, counted by a global allocator, divided by its entries.
//!
//! `cargo run --release -p cache-bench --example entry_memory` fills each
//! cache with 1,000,000 `u64 → u64` entries (and `u64 → String` of 32
//! bytes) and prints bytes per entry beyond the keys and values themselves
//! (16 bytes for `u64 → u64`).

use cache_bench::alloc::{Counting, live};

use cache_core::{Cache, Eviction};

#[global_allocator]
static A: Counting = Counting;

const N: u64 = 1_000_000;

/// Bytes per entry that building and filling a cache with `fill` holds.
fn per_entry<C>(build: impl FnOnce() -> C, fill: impl Fn(&C, u64)) -> f64 {
    let before = live();
    let c = build();
    for k in 0..N {
        fill(&c, k);
    }
    let after = live();
    drop(c);
    (after - before) as f64 / N as f64
}

fn main() {
    let cap = N as usize;
    println!("| cache | bytes per `u64 → u64` entry | bytes per `u64 → String(32)` entry |");
    println!("|---|---|---|");
    let s = "x".repeat(32);
    let row = |name: &str, a: f64, b: f64| println!("| {name} | {a:.0} | {b:.0} |");
    let ours = |e: Eviction| {
        move || {
            Cache::<u64, u64>::builder()
                .capacity(cap)
                .eviction(e)
                .build()
        }
    };
    let ours_s = |e: Eviction| {
        move || {
            Cache::<u64, String>::builder()
                .capacity(cap)
                .eviction(e)
                .build()
        }
    };
    row(
        "cache-core (default engine)",
        per_entry(ours(Eviction::Engine), |c, k| c.insert(k, k)),
        per_entry(ours_s(Eviction::Engine), |c, k| c.insert(k, s.clone())),
    );
    row(
        "cache-core, `capacity_bytes`",
        per_entry(
            || Cache::<u64, u64>::builder().capacity_bytes(1 << 30).build(),
            |c, k| c.insert(k, k),
        ),
        per_entry(
            || {
                Cache::<u64, String>::builder()
                    .capacity_bytes(1 << 30)
                    .weigher(cache_core::weigh::weigh_entry)
                    .build()
            },
            |c, k| c.insert(k, s.clone()),
        ),
    );
    for (name, e) in [
        ("cache-core, `tinylfu`", Eviction::TinyLfu),
        ("cache-core, `lru`", Eviction::Lru),
    ] {
        row(
            name,
            per_entry(ours(e), |c, k| c.insert(k, k)),
            per_entry(ours_s(e), |c, k| c.insert(k, s.clone())),
        );
    }
    row(
        "quick_cache",
        per_entry(
            || quick_cache::sync::Cache::<u64, u64>::new(cap),
            |c, k| c.insert(k, k),
        ),
        per_entry(
            || quick_cache::sync::Cache::<u64, String>::new(cap),
            |c, k| c.insert(k, s.clone()),
        ),
    );
    row(
        "moka",
        per_entry(
            || moka::sync::Cache::<u64, u64>::new(N),
            |c, k| {
                c.insert(k, k);
                if k % 10_000 == 0 {
                    c.run_pending_tasks();
                }
            },
        ),
        per_entry(
            || moka::sync::Cache::<u64, String>::new(N),
            |c, k| {
                c.insert(k, s.clone());
                if k % 10_000 == 0 {
                    c.run_pending_tasks();
                }
            },
        ),
    );
}
