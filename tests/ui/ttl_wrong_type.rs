use cache_core::cached;

#[cached(ttl = true)]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
