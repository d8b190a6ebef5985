use cache_core::cached;

#[cached(ttl = "5 parsecs")]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
