use cache_core::{action, cache_service};

struct Svc;

#[cache_service(name = "svc")]
impl Svc {
    #[action(cache(ttl = "soon"))]
    fn get(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
