//! `depends_on`: invalidating a key invalidates what depends on it,
//! transitively, across services, with cycles.

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::{cache_service, cached, registry};

static USERS: AtomicUsize = AtomicUsize::new(0);
static PROFILES: AtomicUsize = AtomicUsize::new(0);
static PAGES: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn get_user(id: u64) -> String {
    USERS.fetch_add(1, Ordering::SeqCst);
    format!("user {id}")
}

#[cached(depends_on = ["get_user:{uid}"])]
fn user_profile(uid: u64) -> String {
    PROFILES.fetch_add(1, Ordering::SeqCst);
    format!("profile of {}", get_user(uid))
}

#[cached(depends_on = ["user_profile:{id}"])]
fn page(id: u64, lang: String) -> String {
    PAGES.fetch_add(1, Ordering::SeqCst);
    format!("{lang}: {}", user_profile(id))
}

fn counts() -> (usize, usize, usize) {
    (
        USERS.load(Ordering::SeqCst),
        PROFILES.load(Ordering::SeqCst),
        PAGES.load(Ordering::SeqCst),
    )
}

#[test]
fn invalidating_a_key_invalidates_its_dependants_transitively() {
    page(7, "en".into());
    page(7, "fr".into());
    page(8, "en".into());
    assert_eq!(counts(), (2, 2, 3));
    page(7, "en".into());
    assert_eq!(counts(), (2, 2, 3), "all cached");

    assert!(get_user_cache().invalidate(&7));
    assert!(!user_profile_cache().contains_key(&7), "a direct dependant");
    assert!(
        !page_cache().contains_key(&(7, "en".to_string())),
        "and its own"
    );
    assert!(!page_cache().contains_key(&(7, "fr".to_string())));
    assert!(
        page_cache().contains_key(&(8, "en".to_string())),
        "another id stays"
    );
    page(7, "en".into());
    assert_eq!(counts(), (3, 3, 4), "recomputed once each");

    // The key text reaches them too, as the admin API and events give it.
    assert!(registry().invalidate("get_user", "get_user:8").unwrap());
    assert!(!page_cache().contains_key(&(8, "en".to_string())));

    // Replacing a value invalidates what was computed from the old one.
    page(7, "en".into());
    let before = counts();
    get_user_cache().insert(7, "renamed".into());
    assert_eq!(page(7, "en".into()), "en: profile of renamed");
    assert_eq!(counts(), (before.0, before.1 + 1, before.2 + 1));
}

static A: AtomicUsize = AtomicUsize::new(0);
static B: AtomicUsize = AtomicUsize::new(0);

#[cached(depends_on = ["ring_b:{n}"])]
fn ring_a(n: u64) -> u64 {
    A.fetch_add(1, Ordering::SeqCst);
    n
}

#[cached(depends_on = ["ring_a:{n}"])]
fn ring_b(n: u64) -> u64 {
    B.fetch_add(1, Ordering::SeqCst);
    n
}

#[test]
fn a_cycle_of_dependencies_ends() {
    ring_a(1);
    ring_b(1);
    ring_a(2);
    assert!(ring_a_cache().invalidate(&1));
    assert!(!ring_b_cache().contains_key(&1), "its dependant goes");
    assert!(ring_a_cache().contains_key(&2));
    ring_a(1);
    ring_b(1);
    assert_eq!((A.load(Ordering::SeqCst), B.load(Ordering::SeqCst)), (3, 2));
}

pub struct Orders;

static ORDERS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn get_customer(id: u64) -> String {
    format!("customer {id}")
}

#[cache_service(name = "orders")]
impl Orders {
    #[action(cache(depends_on = ["get_customer:{customer}"]))]
    pub fn orders_of(&self, customer: u64) -> Vec<String> {
        ORDERS.fetch_add(1, Ordering::SeqCst);
        vec![format!("order of {}", get_customer(customer))]
    }
}

#[test]
fn dependants_in_another_service_are_invalidated() {
    let s = Orders;
    s.orders_of(40);
    s.orders_of(40);
    assert_eq!(ORDERS.load(Ordering::SeqCst), 1);
    get_customer_cache().invalidate(&40);
    s.orders_of(40);
    assert_eq!(ORDERS.load(Ordering::SeqCst), 2, "the service's entry went");
}
