use cache_core::{cache_put, cache_service, cached};

#[derive(Clone)]
struct Svc;

#[cache_service(name = "svc")]
impl Svc {
    #[cached]
    fn get_user(&self, id: u64) -> u64 {
        id
    }

    #[cache_put(get_user)]
    fn update(&self, id: u64) -> String {
        id.to_string()
    }
}

fn main() {}
