//! Where entries live: the engines, and what an entry holds.

use super::*;

#[derive(Clone)]
pub(super) struct Entry<V> {
    pub(super) value: V,
    /// Never 0 (times start at 1 ms), so `Option<Entry>` needs no tag of
    /// its own: a hit copies one word less.
    pub(super) expires_at: std::num::NonZeroU64,
    pub(super) meta: Option<Arc<Meta>>,
}

/// The rarely used parts of an entry, kept out of line so that the entry a
/// hit copies stays small. Present when the cache has a TTI, refresh-ahead,
/// or tags.
pub(super) struct Meta {
    pub(super) accessed: AtomicU64,
    pub(super) loaded_at: u64,
    pub(super) tags: Box<[String]>,
}

/// Collects evicted entries so events fire after the engine's lock is released.
#[derive(Clone, Copy, Default)]
pub(super) struct EvictLog;

/// The entries one insert evicted: usually one, held without allocating.
pub(super) struct Evicted<K, V> {
    pub(super) first: Option<(K, Entry<V>)>,
    pub(super) rest: Vec<(K, Entry<V>)>,
}

impl<K, V> Default for Evicted<K, V> {
    fn default() -> Self {
        Evicted {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<K, V> Evicted<K, V> {
    pub(super) fn drain(self) -> impl Iterator<Item = (K, Entry<V>)> {
        self.first.into_iter().chain(self.rest)
    }
}

impl<K, V> Lifecycle<K, Entry<V>> for EvictLog {
    type RequestState = Evicted<K, V>;
    fn on_evict(&self, state: &mut Self::RequestState, key: K, val: Entry<V>) {
        state.push(key, val);
    }
}

impl<K, V> Lifecycle<K, Plain<V>> for EvictLog {
    type RequestState = Evicted<K, V>;
    fn on_evict(&self, state: &mut Self::RequestState, key: K, val: Plain<V>) {
        state.push(key, val.into());
    }
}

impl<K, V> Evicted<K, V> {
    pub(super) fn push(&mut self, key: K, val: Entry<V>) {
        if self.first.is_none() {
            self.first = Some((key, val));
        } else {
            self.rest.push((key, val));
        }
    }
}

/// An entry without metadata: what a hit copies out of the engine of a
/// cache without TTI, refresh-ahead or tags. Two words for a word-sized
/// value, so `Option<Plain<u64>>` comes back in registers.
#[derive(Clone)]
pub(super) struct Plain<V> {
    pub(super) value: V,
    pub(super) expires_at: std::num::NonZeroU64,
}

impl<V> From<Plain<V>> for Entry<V> {
    #[inline]
    fn from(p: Plain<V>) -> Self {
        Entry {
            value: p.value,
            expires_at: p.expires_at,
            meta: None,
        }
    }
}

/// What a predicate over entries sees: when the entry expires, and its
/// metadata.
#[derive(Clone, Copy)]
pub(super) struct Stamp<'a> {
    pub(super) expires_at: u64,
    pub(super) meta: Option<&'a Arc<Meta>>,
}

impl<'a, V> From<&'a Entry<V>> for Stamp<'a> {
    fn from(e: &'a Entry<V>) -> Self {
        Stamp {
            expires_at: e.expires_at.get(),
            meta: e.meta.as_ref(),
        }
    }
}

impl<V> From<&Plain<V>> for Stamp<'_> {
    fn from(e: &Plain<V>) -> Self {
        Stamp {
            expires_at: e.expires_at.get(),
            meta: None,
        }
    }
}

pub(super) type Quick<K, V> = QuickCache<K, Entry<V>, UnitWeighter, DefaultHashBuilder, EvictLog>;
pub(super) type QuickWeighed<K, V> =
    QuickCache<K, Entry<V>, EntryWeigher<K, V>, DefaultHashBuilder, EvictLog>;

/// How much an entry weighs: the cache's weigher over its key and value.
pub(super) struct EntryWeigher<K, V>(pub(super) fn(&K, &V) -> u64);

impl<K, V> Clone for EntryWeigher<K, V> {
    fn clone(&self) -> Self {
        EntryWeigher(self.0)
    }
}

impl<K, V> quick_cache::Weighter<K, Entry<V>> for EntryWeigher<K, V> {
    fn weight(&self, key: &K, val: &Entry<V>) -> u64 {
        (self.0)(key, &val.value).max(1)
    }
}
pub(super) type QuickPlain<K, V> =
    QuickCache<K, Plain<V>, UnitWeighter, DefaultHashBuilder, EvictLog>;

/// Where entries live: `quick_cache` (without metadata when the cache needs
/// none, which keeps a hit's copy small; with a weigher when the bound is
/// in bytes), or the ordered engine (LRU, LFU, TinyLFU, priorities).
pub(super) enum Engine<K, V> {
    Plain(QuickPlain<K, V>),
    Quick(Quick<K, V>),
    Weighed(QuickWeighed<K, V>, fn(&K, &V) -> u64),
    Ordered(Ordered<K, Entry<V>>, Option<fn(&K, &V) -> u64>),
}

/// `quick_cache`'s share of a shard for hot entries: an entry heavier than
/// that is never admitted.
const HOT_ALLOCATION: f64 = 0.97;

pub(super) fn quick_options(capacity: usize) -> quick_cache::Options {
    OptionsBuilder::new()
        .estimated_items_capacity(capacity)
        .weight_capacity(capacity as u64)
        .build()
        .expect("capacity options are valid")
}

impl<K: CacheKey, V: CacheValue> Engine<K, V> {
    /// An engine for `capacity` entries (or, with a weigher, that total
    /// weight); `meta` says whether entries carry metadata (TTI,
    /// refresh-ahead, tags).
    pub(super) fn new(
        capacity: usize,
        eviction: Eviction,
        meta: bool,
        weigher: Option<fn(&K, &V) -> u64>,
    ) -> Self {
        match (eviction, weigher) {
            (Eviction::Engine, Some(w)) => Engine::Weighed(
                QuickCache::with_options(
                    OptionsBuilder::new()
                        .hot_allocation(HOT_ALLOCATION)
                        .estimated_items_capacity((capacity / 64).clamp(16, 1 << 20))
                        // Shards split the bound: each keeps at least 64 KiB, so
                        // a small bound still holds what fits in it.
                        .shards((capacity >> 16).clamp(1, 64).next_power_of_two())
                        .weight_capacity(capacity as u64)
                        .build()
                        .expect("capacity options are valid"),
                    EntryWeigher(w),
                    DefaultHashBuilder::default(),
                    EvictLog,
                ),
                w,
            ),
            (Eviction::Engine, None) if meta => Engine::Quick(QuickCache::with_options(
                quick_options(capacity),
                UnitWeighter,
                DefaultHashBuilder::default(),
                EvictLog,
            )),
            (Eviction::Engine, None) => Engine::Plain(QuickCache::with_options(
                quick_options(capacity),
                UnitWeighter,
                DefaultHashBuilder::default(),
                EvictLog,
            )),
            (policy, w) => Engine::Ordered(Ordered::new(capacity as u64, policy, w.is_some()), w),
        }
    }

    /// The share of the capacity critical entries may take, where the
    /// engine has priorities.
    pub(super) fn critical_share(&self) -> Option<f64> {
        match self {
            Engine::Ordered(m, _) => Some(m.critical_share()),
            _ => None,
        }
    }

    /// Whether the engine orders entries by priority.
    pub(super) fn has_priorities(&self) -> bool {
        matches!(self, Engine::Ordered(..))
    }

    /// Whether entries keep their metadata (an engine without it drops it).
    pub(super) fn keeps_meta(&self) -> bool {
        !matches!(self, Engine::Plain(_))
    }

    pub(super) fn get(&self, key: &K) -> Option<Entry<V>> {
        match self {
            Engine::Plain(m) => m.get(key).map(Entry::from),
            Engine::Quick(m) => m.get(key),
            Engine::Weighed(m, _) => m.get(key),
            Engine::Ordered(m, _) => m.get(key),
        }
    }

    pub(super) fn peek(&self, key: &K) -> Option<Entry<V>> {
        match self {
            Engine::Plain(m) => m.peek(key).map(Entry::from),
            Engine::Quick(m) => m.peek(key),
            Engine::Weighed(m, _) => m.peek(key),
            Engine::Ordered(m, _) => m.peek(key),
        }
    }

    /// Stores `entry`, collecting what left to make room; true when the
    /// engine refused the new entry itself (then any older value of the key
    /// is gone too, and the entry is among the evicted).
    pub(super) fn insert(
        &self,
        key: K,
        entry: Entry<V>,
        priority: Priority,
        evicted: &mut Evicted<K, V>,
    ) -> bool {
        match self {
            Engine::Plain(m) => {
                let plain = Plain {
                    value: entry.value,
                    expires_at: entry.expires_at,
                };
                m.insert_with_lifecycle(key, plain, evicted);
                false
            }
            Engine::Quick(m) => {
                m.insert_with_lifecycle(key, entry, evicted);
                false
            }
            Engine::Weighed(m, w) => {
                // What `quick_cache` would refuse (more than a shard's hot
                // share), refused here, where it is known.
                let hot = ((m.shard_capacity() as f64 * HOT_ALLOCATION) as u64).max(1);
                if w(&key, &entry.value).max(1) > hot {
                    if let Some((k, old)) = m.remove(&key) {
                        drop((k, old));
                    }
                    evicted.push(key, entry);
                    return true;
                }
                m.insert_with_lifecycle(key, entry, evicted);
                false
            }
            Engine::Ordered(m, w) => {
                let weight = w.map_or(1, |w| w(&key, &entry.value).max(1));
                let mut refused = false;
                for (k, e) in m.insert(key.clone(), entry, weight, priority) {
                    refused |= k == key;
                    evicted.push(k, e);
                }
                refused
            }
        }
    }

    pub(super) fn remove_if(
        &self,
        key: &K,
        f: impl FnOnce(Stamp<'_>) -> bool,
    ) -> Option<(K, Entry<V>)> {
        match self {
            Engine::Plain(m) => m
                .remove_if(key, |e| f(e.into()))
                .map(|(k, e)| (k, e.into())),
            Engine::Quick(m) => m.remove_if(key, |e| f(e.into())),
            Engine::Weighed(m, _) => m.remove_if(key, |e| f(e.into())),
            Engine::Ordered(m, _) => m.remove_if(key, |e| f(e.into())),
        }
    }

    pub(super) fn remove(&self, key: &K) -> Option<(K, Entry<V>)> {
        self.remove_if(key, |_| true)
    }

    pub(super) fn retain(&self, f: impl Fn(&K, Stamp<'_>) -> bool) {
        match self {
            Engine::Plain(m) => m.retain(|k, e| f(k, e.into())),
            Engine::Quick(m) => m.retain(|k, e| f(k, e.into())),
            Engine::Weighed(m, _) => m.retain(|k, e| f(k, e.into())),
            Engine::Ordered(m, _) => m.retain(|k, e| f(k, e.into())),
        }
    }

    pub(super) fn entries(&self) -> Vec<(K, Entry<V>)> {
        match self {
            Engine::Plain(m) => m.iter().map(|(k, e)| (k, e.into())).collect(),
            Engine::Quick(m) => m.iter().collect(),
            Engine::Weighed(m, _) => m.iter().collect(),
            Engine::Ordered(m, _) => m.entries(),
        }
    }

    pub(super) fn drain(&self) -> Vec<(K, Entry<V>)> {
        match self {
            Engine::Plain(m) => m.drain().map(|(k, e)| (k, e.into())).collect(),
            Engine::Quick(m) => m.drain().collect(),
            Engine::Weighed(m, _) => m.drain().collect(),
            Engine::Ordered(m, _) => m.drain(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Engine::Plain(m) => m.len(),
            Engine::Quick(m) => m.len(),
            Engine::Weighed(m, _) => m.len(),
            Engine::Ordered(m, _) => m.len(),
        }
    }

    /// Entries a full LRU or LFU cache evicts at once; the engine's own
    /// policy evicts as it sees fit.
    pub(super) fn set_batch(&self, n: usize) {
        if let Engine::Ordered(m, _) = self {
            m.set_batch(n);
        }
    }

    /// The share of the capacity critical entries may take.
    pub(super) fn set_critical_share(&self, share: f64) {
        if let Engine::Ordered(m, _) = self {
            m.set_critical_share(share);
        }
    }

    pub(super) fn set_capacity(&self, capacity: usize) {
        match self {
            Engine::Plain(m) => m.set_capacity(capacity as u64),
            Engine::Quick(m) => m.set_capacity(capacity as u64),
            Engine::Weighed(m, _) => m.set_capacity(capacity as u64),
            Engine::Ordered(m, _) => {
                m.set_capacity(capacity as u64);
            }
        }
    }
}
