use cache_core::cached;

fn terms(v: &u64) -> Vec<String> {
    vec![v.to_string()]
}

#[cached(index)]
fn no_list(x: u64) -> u64 {
    x
}

#[cached(index())]
fn empty_list(x: u64) -> u64 {
    x
}

#[cached(index(parity = terms, parity = terms))]
fn twice(x: u64) -> u64 {
    x
}

#[cached(index(a::b = terms))]
fn path_name(x: u64) -> u64 {
    x
}

#[cached(index(parity))]
fn no_function(x: u64) -> u64 {
    x
}

fn main() {}
