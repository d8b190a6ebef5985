use cache_core::cached;

#[cached]
fn log(x: u64) {
    println!("{x}");
}

fn main() {}
