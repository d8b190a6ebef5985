use cache_core::cached;

#[cached(key = "user:{id}", tags = ["org:{org}"])]
fn get_user(id: u64, org: u64) -> String {
    format!("{id}@{org}")
}

fn main() {}
