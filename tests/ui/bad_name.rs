use cache_core::cached;

#[cached(name = "get user")]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
