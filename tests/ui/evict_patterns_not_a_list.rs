use cache_core::{cache_evict, cache_service};

struct Svc;

#[cache_service(name = "svc")]
impl Svc {
    #[cache_evict(patterns = "get_user:*")]
    fn reset(&self) {}
}

fn main() {}
