//! Memory per index entry: the bytes a cache's indexes hold, counted by a
//! global allocator, divided by their postings (term, key pairs).
//!
//! `cargo run --release -p cache-bench --example index_memory` builds the
//! same files into a cache with the four metadata indexes and into one
//! without, at 10,000 and 1,000,000 entries, and prints the difference.

use cache_bench::alloc::{Counting, live};

use cache_bench::metadata::{files, with_indexes};
use cache_core::CacheBuilder;

#[global_allocator]
static A: Counting = Counting;

fn main() {
    for n in [10_000usize, 1_000_000] {
        let all = files(n);
        let entries = || all.iter().map(|f| (f.path.clone(), f.clone()));
        let before = live();
        let plain = CacheBuilder::<String, _>::new().capacity(n * 2).build();
        plain.insert_many(entries());
        let plain_bytes = live() - before;
        drop(plain);
        let before = live();
        let indexed = with_indexes(CacheBuilder::new().capacity(n * 2)).build();
        indexed.insert_many(entries());
        let indexed_bytes = live() - before;
        let sizes = indexed.index_sizes();
        let extra = (indexed_bytes - plain_bytes) as f64;
        println!(
            "{n} entries: cache {:.1} MB, with 4 indexes {:.1} MB; indexes {:.1} MB for {} keys, {} terms, {} postings: {:.1} bytes per posting ({:.0} per key)",
            plain_bytes as f64 / 1e6,
            indexed_bytes as f64 / 1e6,
            extra / 1e6,
            sizes.keys,
            sizes.terms,
            sizes.postings,
            extra / sizes.postings as f64,
            extra / sizes.keys as f64,
        );
    }
}
