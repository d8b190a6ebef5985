use cache_core::{cache_evict, cache_service, cached};

struct Svc;

#[cache_service(name = "svc")]
impl Svc {
    #[cached]
    #[cache_evict(all)]
    fn get(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
