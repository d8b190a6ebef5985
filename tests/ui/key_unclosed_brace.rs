use cache_core::cached;

#[cached(key = "user:{id")]
fn get_user(id: u64) -> String {
    id.to_string()
}

fn main() {}
