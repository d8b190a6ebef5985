use cache_core::{cache_evict, cache_service};

struct Svc;

#[cache_service(name = "svc")]
impl Svc {
    #[cache_evict(keys = ["get_user:{id}", id])]
    fn update(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
