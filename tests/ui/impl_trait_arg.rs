use cache_core::cached;

#[cached]
fn describe(x: impl std::fmt::Display) -> String {
    x.to_string()
}

fn main() {}
