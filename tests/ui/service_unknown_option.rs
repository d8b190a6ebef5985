use cache_core::cache_service;

struct Svc;

#[cache_service(name = "svc", ttl = 60)]
impl Svc {}

fn main() {}
