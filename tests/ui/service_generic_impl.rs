use cache_core::{cache_service, cached};

struct Svc<T>(T);

#[cache_service(name = "svc")]
impl<T: Clone + Send + Sync + 'static> Svc<T> {
    #[cached]
    fn get(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
