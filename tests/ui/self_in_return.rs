use cache_core::cached;

#[derive(Clone)]
struct Node {
    id: u64,
}

impl Node {
    #[cached]
    fn load(&self, id: u64) -> Option<Self> {
        Some(Node { id: id + self.id })
    }
}

fn main() {}
