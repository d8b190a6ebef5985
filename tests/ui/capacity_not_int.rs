use cache_core::cached;

#[cached(capacity = "big")]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
