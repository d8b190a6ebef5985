use cache_core::cached;

struct Svc {
    name: String,
}

impl Svc {
    #[cached]
    fn name(&self, id: u64) -> &str {
        let _ = id;
        &self.name
    }
}

fn main() {}
