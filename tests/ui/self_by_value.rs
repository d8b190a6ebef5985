use cache_core::cached;

#[derive(Clone)]
struct Svc;

impl Svc {
    #[cached]
    fn consume(self, id: u64) -> u64 {
        id
    }
}

fn main() {}
