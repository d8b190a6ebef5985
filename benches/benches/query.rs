//! Index queries against a brute-force scan of the same files, at 10,000
//! and 1,000,000 entries: the metadata-cache seed's query (python files
//! defining `main` under `src/`, first 10) and a selective one (files
//! defining one class, all of them). Each pair is checked to agree first.

use std::hint::black_box;
use std::time::Duration;

use cache_bench::metadata::{
    class_query, files, indexed_cache, python_mains, scan_class, scan_python_mains,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn queries(c: &mut Criterion) {
    for n in [10_000usize, 1_000_000] {
        let all = files(n);
        let cache = indexed_cache(&all);
        let q = python_mains(10);
        assert_eq!(cache.query(&q).unwrap(), scan_python_mains(&all, 10));
        let cq = class_query("Class7");
        assert_eq!(cache.query(&cq).unwrap(), scan_class(&all, "Class7"));

        let mut g = c.benchmark_group(format!("query/{n}"));
        if n > 100_000 {
            g.sample_size(10).measurement_time(Duration::from_secs(8));
        }
        g.bench_function("index: python+main+src/*, limit 10", |b| {
            b.iter(|| black_box(cache.query(black_box(&q)).unwrap()))
        });
        g.bench_function("scan: python+main+src/*, limit 10", |b| {
            b.iter(|| black_box(scan_python_mains(black_box(&all), 10)))
        });
        g.bench_function("index: class", |b| {
            b.iter(|| black_box(cache.query(black_box(&cq)).unwrap()))
        });
        g.bench_function("scan: class", |b| {
            b.iter(|| black_box(scan_class(black_box(&all), "Class7")))
        });
        g.finish();
    }
}

criterion_group!(benches, queries);
criterion_main!(benches);
