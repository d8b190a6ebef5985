use cache_core::cached;

#[cached(eviction = "random")]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
