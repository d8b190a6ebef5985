use cache_core::cached;

#[cached(tags = [user])]
fn get_user(id: u64) -> String {
    id.to_string()
}

fn main() {}
