use cache_core::cached;

struct Svc {
    n: u64,
}

impl Svc {
    #[cached]
    fn next(&mut self, id: u64) -> u64 {
        self.n += id;
        self.n
    }
}

fn main() {}
