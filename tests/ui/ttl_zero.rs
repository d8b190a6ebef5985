use cache_core::cached;

#[cached(ttl = 0)]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
