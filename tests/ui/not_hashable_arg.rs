use cache_core::cached;

struct Query {
    text: String,
}

#[cached]
fn run(q: Query) -> usize {
    q.text.len()
}

fn main() {}
