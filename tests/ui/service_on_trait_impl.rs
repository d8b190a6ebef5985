use cache_core::cache_service;

trait Repo {
    fn get(&self, id: u64) -> u64;
}

struct Svc;

#[cache_service(name = "svc")]
impl Repo for Svc {
    fn get(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
