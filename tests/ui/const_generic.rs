use cache_core::cached;

#[cached]
fn pad<const N: usize>(x: u64) -> [u64; N] {
    [x; N]
}

fn main() {}
