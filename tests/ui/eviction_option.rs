use cache_core::cached;

#[cached(eviction = "lru")]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
