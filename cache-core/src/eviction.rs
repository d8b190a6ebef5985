//! Eviction policies: the engine's own, or sampled LRU and LFU.
//!
//! The default engine (`quick_cache`) evicts by its own scan-resistant policy
//! (a Clock-PRO variant close to S3-FIFO), which is also the fastest here.
//! [`Eviction::Lru`] and [`Eviction::Lfu`] select a second engine: sharded maps
//! that, when full, look at a sample of entries and evict the least recently
//! or least frequently used of them, as Redis's `allkeys-lru` and
//! `allkeys-lfu` do. A shard of up to [`SAMPLES`] entries is scanned whole, so
//! small caches evict exactly.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;
use quick_cache::DefaultHashBuilder;

/// How a full cache picks what to evict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Eviction {
    /// The engine's own policy (fastest; scan-resistant).
    #[default]
    Engine,
    /// Least recently used, from a sample.
    Lru,
    /// Least frequently used, from a sample; counts halve after the shard has
    /// turned over eight times, so old popularity fades.
    Lfu,
}

impl FromStr for Eviction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "engine" | "default" => Ok(Eviction::Engine),
            "lru" => Ok(Eviction::Lru),
            "lfu" => Ok(Eviction::Lfu),
            other => Err(format!(
                "unknown eviction policy {other:?}; expected \"lru\", \"lfu\" or \"engine\""
            )),
        }
    }
}

/// Entries a full shard looks at to choose a victim.
pub const SAMPLES: usize = 16;

/// LFU counts halve after this many turnovers of a shard's capacity...
const AGING_TURNOVERS: usize = 8;
/// ...and never more often than every this many inserts.
const MIN_AGING_INSERTS: usize = 64;

/// Caches up to this capacity use one shard, so their eviction is exact up to
/// [`SAMPLES`] entries.
const ONE_SHARD_BELOW: usize = 1024;
const SHARDS: usize = 16;

struct Slot<K, V> {
    key: K,
    val: V,
    last: AtomicU64,
    hits: AtomicU64,
}

struct Shard<K, V> {
    index: HashMap<K, usize, DefaultHashBuilder>,
    slots: Vec<Slot<K, V>>,
    tick: AtomicU64,
    rng: u64,
    turnover: usize,
}

/// The sampled LRU/LFU engine.
pub(crate) struct Sampled<K, V> {
    shards: Box<[RwLock<Shard<K, V>>]>,
    hasher: DefaultHashBuilder,
    lfu: bool,
    shard_cap: AtomicUsize,
    /// Entries a full shard evicts at once.
    batch: AtomicUsize,
}

impl<K: Hash + Eq + Clone, V: Clone> Shard<K, V> {
    fn touch(&self, i: usize) {
        let s = &self.slots[i];
        s.last.store(
            self.tick.fetch_add(1, Ordering::Relaxed) + 1,
            Ordering::Relaxed,
        );
        s.hits.fetch_add(1, Ordering::Relaxed);
    }

    fn remove_at(&mut self, i: usize) -> (K, V) {
        let slot = self.slots.swap_remove(i);
        self.index.remove(&slot.key);
        if let Some(moved) = self.slots.get(i) {
            *self.index.get_mut(&moved.key).expect("indexed") = i;
        }
        (slot.key, slot.val)
    }

    fn next_rand(&mut self) -> usize {
        // xorshift64: cheap, and good enough to spread samples.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x as usize
    }

    fn victim(&mut self, lfu: bool) -> usize {
        let n = self.slots.len();
        let score = |s: &Slot<K, V>| {
            let last = s.last.load(Ordering::Relaxed);
            if lfu {
                (s.hits.load(Ordering::Relaxed), last)
            } else {
                (last, 0)
            }
        };
        let candidates: Vec<usize> = if n <= SAMPLES {
            (0..n).collect()
        } else {
            (0..SAMPLES).map(|_| self.next_rand() % n).collect()
        };
        candidates
            .into_iter()
            .min_by_key(|&i| score(&self.slots[i]))
            .expect("a full shard has entries")
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Sampled<K, V> {
    pub(crate) fn new(capacity: usize, policy: Eviction) -> Self {
        let shards = if capacity < ONE_SHARD_BELOW {
            1
        } else {
            SHARDS
        };
        Sampled {
            shards: (0..shards)
                .map(|i| {
                    RwLock::new(Shard {
                        index: HashMap::with_hasher(DefaultHashBuilder::default()),
                        slots: Vec::new(),
                        tick: AtomicU64::new(0),
                        rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
                        turnover: 0,
                    })
                })
                .collect(),
            hasher: DefaultHashBuilder::default(),
            lfu: policy == Eviction::Lfu,
            shard_cap: AtomicUsize::new(capacity.div_ceil(shards).max(1)),
            batch: AtomicUsize::new(1),
        }
    }

    fn shard(&self, key: &K) -> &RwLock<Shard<K, V>> {
        let n = self.shards.len();
        &self.shards[if n == 1 {
            0
        } else {
            self.hasher.hash_one(key) as usize % n
        }]
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let sh = self.shard(key).read();
        let i = *sh.index.get(key)?;
        sh.touch(i);
        Some(sh.slots[i].val.clone())
    }

    pub(crate) fn peek(&self, key: &K) -> Option<V> {
        let sh = self.shard(key).read();
        sh.index.get(key).map(|&i| sh.slots[i].val.clone())
    }

    /// Entries a full shard evicts at once (at least 1).
    pub(crate) fn set_batch(&self, n: usize) {
        self.batch.store(n.max(1), Ordering::Relaxed);
    }

    /// Stores `val`; returns the entries evicted to make room: none, or
    /// the batch size (or all the shard holds, if fewer).
    pub(crate) fn insert(&self, key: K, val: V) -> Vec<(K, V)> {
        let mut sh = self.shard(&key).write();
        if let Some(&i) = sh.index.get(&key) {
            sh.slots[i].val = val;
            sh.touch(i);
            return Vec::new();
        }
        let cap = self.shard_cap.load(Ordering::Relaxed);
        let mut evicted = Vec::new();
        if sh.slots.len() >= cap {
            let n = self.batch.load(Ordering::Relaxed).min(sh.slots.len());
            for _ in 0..n {
                let v = sh.victim(self.lfu);
                evicted.push(sh.remove_at(v));
            }
        }
        sh.turnover += 1;
        if self.lfu && sh.turnover >= (cap * AGING_TURNOVERS).max(MIN_AGING_INSERTS) {
            sh.turnover = 0;
            for s in &sh.slots {
                let h = s.hits.load(Ordering::Relaxed);
                s.hits.store(h / 2, Ordering::Relaxed);
            }
        }
        let i = sh.slots.len();
        let t = sh.tick.fetch_add(1, Ordering::Relaxed) + 1;
        sh.index.insert(key.clone(), i);
        sh.slots.push(Slot {
            key,
            val,
            last: AtomicU64::new(t),
            hits: AtomicU64::new(1),
        });
        evicted
    }

    pub(crate) fn remove_if(&self, key: &K, f: impl FnOnce(&V) -> bool) -> Option<(K, V)> {
        let mut sh = self.shard(key).write();
        let i = *sh.index.get(key)?;
        if !f(&sh.slots[i].val) {
            return None;
        }
        Some(sh.remove_at(i))
    }

    pub(crate) fn retain(&self, f: impl Fn(&K, &V) -> bool) {
        for shard in self.shards.iter() {
            let mut sh = shard.write();
            let mut i = 0;
            while i < sh.slots.len() {
                if f(&sh.slots[i].key, &sh.slots[i].val) {
                    i += 1;
                } else {
                    sh.remove_at(i);
                }
            }
        }
    }

    pub(crate) fn entries(&self) -> Vec<(K, V)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let sh = shard.read();
            out.extend(sh.slots.iter().map(|s| (s.key.clone(), s.val.clone())));
        }
        out
    }

    pub(crate) fn drain(&self) -> Vec<(K, V)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut sh = shard.write();
            sh.index.clear();
            out.extend(sh.slots.drain(..).map(|s| (s.key, s.val)));
        }
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().slots.len()).sum()
    }

    /// Changes the bound; a smaller one evicts the excess now.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        let cap = capacity.div_ceil(self.shards.len()).max(1);
        self.shard_cap.store(cap, Ordering::Relaxed);
        for shard in self.shards.iter() {
            let mut sh = shard.write();
            while sh.slots.len() > cap {
                let v = sh.victim(self.lfu);
                sh.remove_at(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let c = Sampled::new(3, Eviction::Lru);
        for k in 0..3u64 {
            assert!(c.insert(k, k).is_empty());
        }
        c.get(&0);
        c.get(&2);
        assert_eq!(c.insert(3, 3).first().map(|e| e.0), Some(1));
        c.get(&0);
        assert_eq!(c.insert(4, 4).first().map(|e| e.0), Some(2));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn lfu_evicts_the_least_frequently_used() {
        let c = Sampled::new(3, Eviction::Lfu);
        for k in 0..3u64 {
            c.insert(k, k);
        }
        for _ in 0..5 {
            c.get(&0);
            c.get(&1);
        }
        c.get(&2);
        assert_eq!(c.insert(3, 3).first().map(|e| e.0), Some(2));
        assert!(c.peek(&0).is_some() && c.peek(&1).is_some());
    }

    #[test]
    fn a_full_shard_evicts_exactly_its_batch() {
        let c = Sampled::new(10, Eviction::Lru);
        c.set_batch(4);
        for k in 0..10u64 {
            assert!(c.insert(k, k).is_empty());
        }
        let out: Vec<u64> = c.insert(10, 10).into_iter().map(|e| e.0).collect();
        assert_eq!(out, vec![0, 1, 2, 3], "the four least recently used");
        assert_eq!(c.len(), 7);
        c.set_batch(1000);
        for k in 11..14u64 {
            assert!(c.insert(k, k).is_empty());
        }
        assert_eq!(c.insert(14, 14).len(), 10, "no more than it holds");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn removal_keeps_the_index_consistent() {
        let c = Sampled::new(100, Eviction::Lru);
        for k in 0..10u64 {
            c.insert(k, k * 10);
        }
        assert_eq!(c.remove_if(&3, |_| true), Some((3, 30)));
        assert_eq!(c.remove_if(&4, |v| *v == 0), None);
        c.retain(|k, _| k % 2 == 0);
        let mut keys: Vec<u64> = c.entries().into_iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, vec![0, 2, 4, 6, 8]);
        for k in keys {
            assert_eq!(c.get(&k), Some(k * 10));
        }
        assert_eq!(c.drain().len(), 5);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn policies_parse() {
        assert_eq!("lru".parse(), Ok(Eviction::Lru));
        assert_eq!("lfu".parse(), Ok(Eviction::Lfu));
        assert!(
            "random"
                .parse::<Eviction>()
                .unwrap_err()
                .contains("expected")
        );
    }
}
