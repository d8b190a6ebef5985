use cache_core::cache_service;

struct Svc;

#[cache_service(name = "user service")]
impl Svc {}

fn main() {}
