use cache_core::cached;

#[cached(backend = "")]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
