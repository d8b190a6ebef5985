//! The hit path of cache-core against its peers, side by side in one run:
//! raw `quick_cache`, raw `moka`, and the `cached` crate's own `#[cached]`.
//! Each runs on one thread and on two. Keys are u64 over a warm set of 1024.
//! Also: an async hit, and what a miss adds over the bare function.
//!
//! `scripts/bench-report` turns the results into the README's ratio table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEYS: u64 = 1024;
const CAP: usize = 10_000;

#[cache_core::cached(ttl = 60, capacity = 10_000)]
fn ours(x: u64) -> u64 {
    x.wrapping_mul(31)
}

#[cache_core::cached(ttl = 60, capacity = 10_000)]
async fn ours_async(x: u64) -> u64 {
    x.wrapping_mul(31)
}

#[cached::macros::cached(max_size = 10_000)]
fn theirs(x: u64) -> u64 {
    x.wrapping_mul(31)
}

#[inline(never)]
fn bare(x: u64) -> u64 {
    black_box(x).wrapping_mul(31)
}

#[cache_core::cached(capacity = 10_000)]
fn ours_miss(x: u64) -> u64 {
    bare(x)
}

/// Polls a future once with a no-op waker: an async hit is ready at once.
fn poll_ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("hits are ready"),
    }
}

/// Runs `op` on `threads` threads, `iters` times each, and returns the wall time.
fn parallel(threads: usize, iters: u64, op: impl Fn(u64) -> u64 + Sync) -> Duration {
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            let (op, barrier) = (&op, &barrier);
            s.spawn(move || {
                barrier.wait();
                let mut acc = 0u64;
                for i in 0..iters {
                    acc = acc.wrapping_add(op((i + t * 512) & (KEYS - 1)));
                }
                black_box(acc);
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn hit(c: &mut Criterion) {
    let qc: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(CAP);
    let mk: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(CAP as u64);
    for k in 0..KEYS {
        qc.insert(k, k);
        mk.insert(k, k);
        ours(k);
        theirs(k);
        poll_ready(ours_async(k));
    }
    let ops: [(&str, &(dyn Fn(u64) -> u64 + Sync)); 4] = [
        ("cache_core", &|k| ours(k)),
        ("quick_cache", &|k| qc.get(&k).unwrap_or(0)),
        ("cached", &|k| theirs(k)),
        ("moka", &|k| mk.get(&k).unwrap_or(0)),
    ];

    let mut g = c.benchmark_group("hit_1t");
    g.throughput(Throughput::Elements(1));
    for (name, op) in ops {
        g.bench_function(name, |b| {
            let mut k = 0u64;
            b.iter(|| {
                k = (k + 1) & (KEYS - 1);
                op(black_box(k))
            })
        });
    }
    // An async hit as async code sees it: awaited in place by a task (here
    // one that loops over hits, polled once: every hit is ready at once).
    g.bench_function("cache_core_async", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let acc = poll_ready(async {
                let mut acc = 0u64;
                for i in 0..iters {
                    acc = acc.wrapping_add(ours_async(black_box(i & (KEYS - 1))).await);
                }
                acc
            });
            black_box(acc);
            start.elapsed()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("hit_2t");
    g.throughput(Throughput::Elements(2));
    for (name, op) in ops {
        g.bench_function(name, |b| b.iter_custom(|iters| parallel(2, iters, op)));
    }
    g.finish();

    let mut g = c.benchmark_group("miss");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_fn", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            bare(k)
        })
    });
    // Every call is a new key: lookup, single-flight, store and an eviction.
    g.bench_function("cache_core", |b| {
        let mut k = 1u64 << 40;
        b.iter(|| {
            k += 1;
            ours_miss(k)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hit
}
criterion_main!(benches);
