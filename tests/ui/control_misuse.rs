use cache_core::cached;
use std::time::Duration;

#[cached(priority = "urgent")]
fn unknown_priority(id: u64) -> u64 {
    id
}

#[cached(priority = 3)]
fn priority_not_a_string(id: u64) -> u64 {
    id
}

#[cached(capacity_bytes = "lots")]
fn bad_size(id: u64) -> u64 {
    id
}

#[cached(capacity_bytes = 0)]
fn zero_size(id: u64) -> u64 {
    id
}

#[cached(ttl_fn)]
fn ttl_fn_without_a_function(id: u64) -> u64 {
    id
}

fn seconds(v: &u64) -> u64 {
    *v
}

#[cached(ttl_fn = seconds)]
fn ttl_fn_of_the_wrong_type(id: u64) -> u64 {
    id
}

#[cached(depends_on = ["get_user:{uid}"])]
fn depends_on_an_unknown_argument(id: u64) -> u64 {
    id
}

#[cached(depends_on = [1])]
fn depends_on_a_number(id: u64) -> u64 {
    id
}

#[cached(depends_on = [])]
fn depends_on_nothing(id: u64) -> u64 {
    id
}

#[cached(key = "k:{id}", depends_on = ["user:{lang}"])]
fn depends_on_an_argument_outside_the_key(id: u64, lang: String) -> u64 {
    let _ = lang;
    id
}

fn main() {
    let _ = Duration::ZERO;
}
