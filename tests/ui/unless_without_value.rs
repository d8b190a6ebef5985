use cache_core::cached;

#[cached(unless)]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
