use cache_core::cached;

struct Conn;

#[cached]
fn connect(id: u64) -> Conn {
    let _ = id;
    Conn
}

fn main() {}
