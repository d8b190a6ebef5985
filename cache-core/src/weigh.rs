//! What an entry weighs, for caches bounded in bytes (`capacity_bytes`).
//!
//! [`Weigh`] estimates the memory a value holds: its own size plus what it
//! owns on the heap. It is implemented for the common standard types; a
//! cache whose key or value type lacks it counts their inline sizes only
//! (the `#[cached]` attribute picks the best available, as
//! [`WeighProbe`] shows), and a builder may give any weigher.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::mem::size_of;
use std::sync::Arc;

/// What each entry costs beyond its key and value in the engine's tables
/// (hash slot, order links, expiry): an estimate, charged to every entry.
pub const ENTRY_OVERHEAD: u64 = 48;

/// An estimate of the memory a value holds, in bytes.
///
/// ```
/// use cache_core::Weigh;
/// assert_eq!(7u64.weigh(), 8);
/// assert_eq!(String::from("hello").weigh(), 24 + 5);
/// assert!(vec![String::from("a"); 3].weigh() >= 24 + 3 * 25);
/// ```
pub trait Weigh {
    /// Bytes the value owns on the heap (0 for inline values).
    fn heap_bytes(&self) -> usize {
        0
    }

    /// Its inline size plus [`Weigh::heap_bytes`].
    fn weigh(&self) -> usize
    where
        Self: Sized,
    {
        size_of::<Self>() + self.heap_bytes()
    }
}

macro_rules! inline_only {
    ($($t:ty),*) => { $(impl Weigh for $t {})* };
}
inline_only!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    std::time::Duration,
    std::time::SystemTime
);

impl Weigh for String {
    fn heap_bytes(&self) -> usize {
        self.capacity()
    }
}

impl Weigh for Box<str> {
    fn heap_bytes(&self) -> usize {
        self.len()
    }
}

impl Weigh for Arc<str> {
    fn heap_bytes(&self) -> usize {
        // Shared, but a cache usually holds the only long-lived handle.
        self.len() + 2 * size_of::<usize>()
    }
}

impl<T: Weigh> Weigh for Vec<T> {
    fn heap_bytes(&self) -> usize {
        self.capacity() * size_of::<T>() + self.iter().map(Weigh::heap_bytes).sum::<usize>()
    }
}

impl<T: Weigh> Weigh for VecDeque<T> {
    fn heap_bytes(&self) -> usize {
        self.capacity() * size_of::<T>() + self.iter().map(Weigh::heap_bytes).sum::<usize>()
    }
}

impl<T: Weigh> Weigh for Box<T> {
    fn heap_bytes(&self) -> usize {
        size_of::<T>() + (**self).heap_bytes()
    }
}

impl<T: Weigh> Weigh for Arc<T> {
    fn heap_bytes(&self) -> usize {
        2 * size_of::<usize>() + size_of::<T>() + (**self).heap_bytes()
    }
}

impl<T: Weigh> Weigh for Option<T> {
    fn heap_bytes(&self) -> usize {
        self.as_ref().map_or(0, Weigh::heap_bytes)
    }
}

impl<T: Weigh, E: Weigh> Weigh for Result<T, E> {
    fn heap_bytes(&self) -> usize {
        match self {
            Ok(t) => t.heap_bytes(),
            Err(e) => e.heap_bytes(),
        }
    }
}

impl<K: Weigh, V: Weigh, S> Weigh for HashMap<K, V, S> {
    fn heap_bytes(&self) -> usize {
        // hashbrown: a slot per bucket plus a control byte.
        self.capacity() * (size_of::<(K, V)>() + 1)
            + self
                .iter()
                .map(|(k, v)| k.heap_bytes() + v.heap_bytes())
                .sum::<usize>()
    }
}

impl<T: Weigh, S> Weigh for HashSet<T, S> {
    fn heap_bytes(&self) -> usize {
        self.capacity() * (size_of::<T>() + 1) + self.iter().map(Weigh::heap_bytes).sum::<usize>()
    }
}

impl<K: Weigh, V: Weigh> Weigh for BTreeMap<K, V> {
    fn heap_bytes(&self) -> usize {
        // B-tree nodes run about two thirds full.
        self.len() * size_of::<(K, V)>() * 3 / 2
            + self
                .iter()
                .map(|(k, v)| k.heap_bytes() + v.heap_bytes())
                .sum::<usize>()
    }
}

macro_rules! tuples {
    ($(($($n:tt $t:ident),+))*) => {$(
        impl<$($t: Weigh),+> Weigh for ($($t,)+) {
            fn heap_bytes(&self) -> usize {
                0 $(+ self.$n.heap_bytes())+
            }
        }
    )*};
}
tuples!((0 A) (0 A, 1 B) (0 A, 1 B, 2 C) (0 A, 1 B, 2 C, 3 D) (0 A, 1 B, 2 C, 3 D, 4 E)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F));

/// The weight of an entry whose key and value implement [`Weigh`].
pub fn weigh_entry<K: Weigh, V: Weigh>(k: &K, v: &V) -> u64 {
    (k.weigh() + v.weigh()) as u64 + ENTRY_OVERHEAD
}

/// The weight of an entry from the inline sizes of its types alone.
pub fn weigh_inline<K, V>(_: &K, _: &V) -> u64 {
    (size_of::<K>() + size_of::<V>()) as u64 + ENTRY_OVERHEAD
}

/// Picks a weigher for generated code: [`weigh_entry`] when both types
/// implement [`Weigh`], [`weigh_inline`] otherwise (autoref
/// specialisation: `(&&WeighProbe::<K, V>::new()).weigher()`).
pub struct WeighProbe<K, V>(std::marker::PhantomData<fn(K, V)>);

impl<K, V> WeighProbe<K, V> {
    /// A probe for `K` and `V`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        WeighProbe(std::marker::PhantomData)
    }
}

/// The probe's choice when both types implement [`Weigh`].
pub trait ViaWeigh<K, V> {
    /// The weigher.
    fn weigher(&self) -> fn(&K, &V) -> u64;
}

impl<K: Weigh, V: Weigh> ViaWeigh<K, V> for &WeighProbe<K, V> {
    fn weigher(&self) -> fn(&K, &V) -> u64 {
        weigh_entry::<K, V>
    }
}

/// The probe's fallback: inline sizes.
pub trait ViaSize<K, V> {
    /// The weigher.
    fn weigher(&self) -> fn(&K, &V) -> u64;
}

impl<K, V> ViaSize<K, V> for WeighProbe<K, V> {
    fn weigher(&self) -> fn(&K, &V) -> u64 {
        weigh_inline::<K, V>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_borrow)]
    fn the_probe_prefers_weigh_and_falls_back_to_sizes() {
        let w = (&&WeighProbe::<u64, String>::new()).weigher();
        assert_eq!(w(&1, &"x".repeat(1000)), 8 + 24 + 1000 + ENTRY_OVERHEAD);
        struct Opaque(#[allow(dead_code)] [u8; 40]);
        let w = (&&WeighProbe::<u64, Opaque>::new()).weigher();
        assert_eq!(w(&1, &Opaque([0; 40])), 8 + 40 + ENTRY_OVERHEAD);
    }

    #[test]
    fn containers_count_their_heap() {
        let v: Vec<u32> = Vec::with_capacity(10);
        assert_eq!(v.weigh(), 24 + 40);
        let t = (String::from("ab"), 3u8);
        assert_eq!(t.heap_bytes(), 2);
        assert_eq!(Some(String::from("abc")).heap_bytes(), 3);
    }
}
