use cache_core::cache_evict;

struct Svc;

impl Svc {
    #[cache_evict(keys = ["get:{id}"])]
    fn update(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
