//! Eviction: which entries a full cache lets go.
//!
//! The default engine (`quick_cache`) evicts by its own scan-resistant policy
//! (a Clock-PRO variant close to S3-FIFO), which is also the fastest here.
//! The other policies select a second engine, [`Ordered`]: sharded maps
//! whose entries are kept in eviction order, so eviction is exact within a
//! shard. Its order is by [`Priority`] first (lower priorities go first;
//! critical entries within their share never go for size), then by the
//! policy: [`Eviction::Lru`] (recency), [`Eviction::Lfu`] (frequency, with
//! ageing) or [`Eviction::TinyLfu`] (a window, then a segmented LRU behind
//! a frequency sketch's admission test, the window sized by hill climbing:
//! W-TinyLFU, as Caffeine does it). Entries can weigh more than one unit;
//! the bound is then on their total weight.

use std::hash::{BuildHasher, Hash};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use quick_cache::DefaultHashBuilder;

mod shard;
mod sketch;
use shard::{Bounds, Shard};

/// How a full cache picks what to evict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Eviction {
    /// The engine's own policy (fastest; scan-resistant).
    #[default]
    Engine,
    /// Least recently used (exact within a shard).
    Lru,
    /// Least frequently used (exact within a shard), with dynamic ageing
    /// (LFU-DA): a new entry's count starts at the count of the last entry
    /// evicted, so old popularity fades without a reset.
    Lfu,
    /// W-TinyLFU: new entries pass an LRU window, then enter the main space
    /// only if a frequency sketch has seen them more often than the entry
    /// they would displace. Best where popularity is skewed and lasting.
    TinyLfu,
}

impl FromStr for Eviction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "engine" | "default" => Ok(Eviction::Engine),
            "lru" => Ok(Eviction::Lru),
            "lfu" => Ok(Eviction::Lfu),
            "tinylfu" | "w-tinylfu" => Ok(Eviction::TinyLfu),
            other => Err(format!(
                "unknown eviction policy {other:?}; expected \"engine\", \"lru\", \"lfu\" or \"tinylfu\""
            )),
        }
    }
}

/// How much an entry is worth keeping: a full cache evicts lower
/// priorities first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Priority {
    /// Evicted first.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Evicted after low and medium entries.
    High,
    /// Never evicted for size while critical entries take no more than
    /// their share of the capacity (`critical_share`, half by default);
    /// beyond it, ranked as high. Expiry and invalidation still remove them.
    Critical,
}

impl Priority {
    /// Its rank in the eviction order (lowest evicted first).
    pub(crate) fn class(self) -> u8 {
        self as u8
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Priority::Low),
            "medium" => Ok(Priority::Medium),
            "high" => Ok(Priority::High),
            "critical" => Ok(Priority::Critical),
            other => Err(format!(
                "unknown priority {other:?}; expected \"low\", \"medium\", \"high\" or \"critical\""
            )),
        }
    }
}

/// The share of the capacity critical entries may take, by default.
pub const DEFAULT_CRITICAL_SHARE: f64 = 0.5;

/// Caches bounded below this use one shard, so their eviction is exact.
const ONE_SHARD_BELOW: u64 = 1024;
const SHARDS: usize = 16;

/// The ordered engine: entries kept in eviction order by priority, then by
/// the policy, in shards each holding a share of the bound.
pub(crate) struct Ordered<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: DefaultHashBuilder,
    /// The whole bound, which the shards split exactly.
    capacity: AtomicU64,
    /// Entries a full LRU or LFU shard evicts at once.
    batch: AtomicUsize,
    critical_permille: AtomicU64,
    /// Whether entries weigh more than one (the batch is then 1).
    weighed: bool,
}

impl<K: Hash + Eq + Clone, V: Clone> Ordered<K, V> {
    /// An engine bounded to `capacity`: entries, or their total weight when
    /// `weighed`. A weighed engine keeps at least 64 MiB a shard, as an
    /// entry heavier than its shard's bound is refused.
    pub(crate) fn new(capacity: u64, policy: Eviction, weighed: bool) -> Self {
        let n = if weighed {
            (capacity >> 26).clamp(1, SHARDS as u64) as usize
        } else if capacity < ONE_SHARD_BELOW {
            1
        } else {
            SHARDS
        };
        let pinned = std::sync::Arc::new(AtomicU64::new(0));
        let me = Ordered {
            shards: Box::new([]),
            hasher: DefaultHashBuilder::default(),
            capacity: AtomicU64::new(capacity.max(1)),
            batch: AtomicUsize::new(1),
            critical_permille: AtomicU64::new((DEFAULT_CRITICAL_SHARE * 1000.0) as u64),
            weighed,
        };
        Ordered {
            shards: (0..n)
                .map(|i| {
                    let cap = me.shard_capacity(i, n);
                    Mutex::new(Shard::new(policy, cap, i as u64 + 1, pinned.clone()))
                })
                .collect(),
            ..me
        }
    }

    /// Shard `i`'s bound: the shards split the whole exactly.
    fn shard_capacity(&self, i: usize, n: usize) -> u64 {
        let total = self.capacity.load(Ordering::Relaxed);
        let n = n as u64;
        (total / n + u64::from((i as u64) < total % n)).max(1)
    }

    fn bounds(&self, i: usize) -> Bounds {
        Bounds {
            capacity: self.shard_capacity(i, self.shards.len()),
            total: self.capacity.load(Ordering::Relaxed),
            batch: if self.weighed {
                1
            } else {
                self.batch.load(Ordering::Relaxed)
            },
            critical_permille: self.critical_permille.load(Ordering::Relaxed),
        }
    }

    fn index(&self, hash: u64) -> usize {
        let n = self.shards.len();
        // The high bits pick the shard; the sketch uses the low ones.
        if n == 1 { 0 } else { (hash >> 56) as usize % n }
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard<K, V>> {
        &self.shards[self.index(hash)]
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let h = self.hasher.hash_one(key);
        self.shard(h).lock().get(key)
    }

    pub(crate) fn peek(&self, key: &K) -> Option<V> {
        let h = self.hasher.hash_one(key);
        self.shard(h).lock().peek(key)
    }

    /// Entries a full LRU or LFU shard evicts at once (at least 1).
    pub(crate) fn set_batch(&self, n: usize) {
        self.batch.store(n.max(1), Ordering::Relaxed);
    }

    /// The share of the capacity (0 to 1) that critical entries may take.
    pub(crate) fn set_critical_share(&self, share: f64) {
        let permille = (share.clamp(0.0, 1.0) * 1000.0).round() as u64;
        self.critical_permille.store(permille, Ordering::Relaxed);
    }

    /// Stores `val` weighing `weight` at `priority`; returns the entries
    /// evicted to make room (possibly the new one: see [`Shard::insert`]).
    pub(crate) fn insert(&self, key: K, val: V, weight: u64, priority: Priority) -> Vec<(K, V)> {
        let h = self.hasher.hash_one(&key);
        let i = self.index(h);
        let b = self.bounds(i);
        self.shards[i]
            .lock()
            .insert(key, val, h, weight, priority, b)
    }

    pub(crate) fn remove_if(&self, key: &K, f: impl FnOnce(&V) -> bool) -> Option<(K, V)> {
        let h = self.hasher.hash_one(key);
        self.shard(h).lock().remove_if(key, f)
    }

    pub(crate) fn retain(&self, f: impl Fn(&K, &V) -> bool) {
        for s in self.shards.iter() {
            s.lock().retain(&f);
        }
    }

    pub(crate) fn entries(&self) -> Vec<(K, V)> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            s.lock().entries(&mut out);
        }
        out
    }

    pub(crate) fn drain(&self) -> Vec<(K, V)> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            s.lock().drain(&mut out);
        }
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Changes the bound; a smaller one evicts the excess now, and returns it.
    pub(crate) fn set_capacity(&self, capacity: u64) -> Vec<(K, V)> {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
        let mut out = Vec::new();
        for (i, s) in self.shards.iter().enumerate() {
            out.extend(s.lock().set_capacity(self.bounds(i)));
        }
        out
    }

    /// The share of the capacity critical entries may take.
    pub(crate) fn critical_share(&self) -> f64 {
        self.critical_permille.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests;
