//! A `#[cache_service]` whose methods' attributes are not imported: the
//! service consumes `#[cached]`, `#[action]`, `#[cache_evict]` and
//! `#[cache_put]` itself. (`service.rs` imports them all, and must not
//! warn that the imports are unused.)

use std::sync::atomic::{AtomicUsize, Ordering};

static LOADS: AtomicUsize = AtomicUsize::new(0);

struct Plain;

#[cache_core::cache_service(name = "no_imports")]
impl Plain {
    #[cached(ttl = 60)]
    fn double(&self, x: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        x * 2
    }

    #[action(cache(ttl = 60))]
    fn triple(&self, x: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        x * 3
    }

    #[cache_put(double)]
    fn set_double(&self, x: u64, to: u64) -> u64 {
        to + x - x
    }

    #[cache_evict(all)]
    fn forget(&self) {}
}

/// A second service in the same module brings the attributes in again:
/// the two glob imports do not clash.
struct Other;

#[cache_core::cache_service(name = "no_imports_other")]
impl Other {
    #[cached]
    fn id(&self, x: u64) -> u64 {
        x
    }
}

#[test]
fn unimported_attributes_cache_put_and_evict_inside_a_service() {
    let s = Plain;
    assert_eq!(s.double(2), 4);
    assert_eq!(s.double(2), 4);
    assert_eq!(s.triple(2), 6);
    assert_eq!(s.triple(2), 6);
    assert_eq!(LOADS.load(Ordering::SeqCst), 2, "each action loaded once");
    assert_eq!(s.set_double(2, 40), 40);
    assert_eq!(s.double(2), 40, "the put value is what the next call reads");
    s.forget();
    assert_eq!(s.double(2), 4, "evicted: computed again");
    assert_eq!(LOADS.load(Ordering::SeqCst), 3);
    assert_eq!(Other.id(7), 7);
}
