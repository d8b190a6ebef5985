use cache_core::cached;

#[cached(enabled = "yes")]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
