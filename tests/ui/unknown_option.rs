use cache_core::cached;

#[cached(ttl = 60, max_size = 10)]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
