//! Times variants of the hit path in tight loops, to see where time goes.
use std::hint::black_box;
use std::time::{Duration, Instant};

#[cache_core::cached(ttl = 60, capacity = 10_000)]
fn ours(x: u64) -> u64 {
    x.wrapping_mul(31)
}

#[cache_core::cached(ttl = 60, capacity = 10_000)]
async fn ours_async(x: u64) -> u64 {
    x.wrapping_mul(31)
}

fn poll_ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!(),
    }
}

#[derive(Clone)]
struct Fat {
    v: u64,
    _a: u64,
    _b: u64,
    _m: Option<std::sync::Arc<u64>>,
}

#[derive(Clone, Copy, Default)]
struct Log;
impl<K, V> quick_cache::Lifecycle<K, V> for Log {
    type RequestState = Vec<(K, V)>;
    fn on_evict(&self, st: &mut Self::RequestState, k: K, v: V) {
        st.push((k, v));
    }
}

fn time(name: &str, n: u64, mut f: impl FnMut(u64) -> u64) {
    let start = Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(f(black_box(i & 1023)));
    }
    black_box(acc);
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{name:<28} {ns:6.2} ns");
}

fn main() {
    let n = 30_000_000;
    let qc: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(10_000);
    let qf: quick_cache::sync::Cache<u64, Fat> = quick_cache::sync::Cache::new(10_000);
    let plain: cache_core::Cache<u64, u64> = cache_core::Cache::new(10_000);
    let ttl: cache_core::Cache<u64, u64> = cache_core::Cache::builder()
        .ttl(Duration::from_secs(60))
        .build();
    let ql: quick_cache::sync::Cache<
        u64,
        Fat,
        quick_cache::UnitWeighter,
        quick_cache::DefaultHashBuilder,
        Log,
    > = quick_cache::sync::Cache::with(
        10_000,
        10_000,
        quick_cache::UnitWeighter,
        Default::default(),
        Log,
    );
    let qa = std::sync::Arc::new(quick_cache::sync::Cache::<u64, Fat>::new(10_000));
    for k in 0..1024 {
        ql.insert(
            k,
            Fat {
                v: k,
                _a: 0,
                _b: 0,
                _m: None,
            },
        );
        qa.insert(
            k,
            Fat {
                v: k,
                _a: 0,
                _b: 0,
                _m: None,
            },
        );
        qc.insert(k, k);
        qf.insert(
            k,
            Fat {
                v: k,
                _a: 0,
                _b: 0,
                _m: None,
            },
        );
        plain.insert(k, k);
        ttl.insert(k, k);
        ours(k);
        poll_ready(ours_async(k));
    }
    for _ in 0..2 {
        time("quick_cache u64", n, |k| qc.get(&k).unwrap_or(0));
        time("quick_cache 32B entry", n, |k| {
            qf.get(&k).map_or(0, |f| f.v)
        });
        time("quick_cache 32B + Log", n, |k| {
            ql.get(&k).map_or(0, |f| f.v)
        });
        time("quick_cache 32B in Arc", n, |k| {
            qa.get(&k).map_or(0, |f| f.v)
        });
        time("Cache::get no ttl", n, |k| plain.get(&k).unwrap_or(0));
        time("Cache::get ttl", n, |k| ttl.get(&k).unwrap_or(0));
        time("#[cached] ttl", n, ours);
        time("#[cached] async (moved)", n, |k| poll_ready(ours_async(k)));
        let start = Instant::now();
        let acc = poll_ready(async {
            let mut acc = 0u64;
            for i in 0..n {
                acc = acc.wrapping_add(ours_async(black_box(i & 1023)).await);
            }
            acc
        });
        black_box(acc);
        println!(
            "{:<28} {:6.2} ns",
            "#[cached] async awaited",
            start.elapsed().as_nanos() as f64 / n as f64
        );
    }
}
