use cache_core::cached;

#[cached]
fn bump(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

fn main() {}
