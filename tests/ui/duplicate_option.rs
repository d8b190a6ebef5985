use cache_core::cached;

#[cached(ttl = 60, ttl = 30)]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
