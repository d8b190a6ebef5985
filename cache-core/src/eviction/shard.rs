//! One shard of the ordered engine: entries in a slab, ordered for
//! eviction by priority first, then by the policy (recency, frequency, or
//! TinyLFU's segments), with weights and pinned critical entries.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::atomic::Ordering;

use quick_cache::DefaultHashBuilder;

use super::sketch::{Climber, Sketch};
use super::{Eviction, Priority};

mod evict;

/// LFU counts halve after this many turnovers of a shard's capacity (so
/// old popularity fades: at 8, OLTP gains 14 points over an exact LFU but
/// Zipf loses 3; at 128 every workload measured is at or above it)...
const AGING_TURNOVERS: u64 = 128;
/// ...and never more often than every this many inserts.
const MIN_AGING_INSERTS: u64 = 64;
/// TinyLFU's protected segment's share of the main space.
const PROTECTED_SHARE: f64 = 0.8;
/// A candidate at least this frequent is admitted at random, 1 time in
/// 128, against a victim as frequent, so that colliding hashes cannot keep
/// a popular key out for good (Caffeine does the same).
const WARM_CANDIDATE: u8 = 6;

/// Where an entry sits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    /// TinyLFU's admission window (LRU).
    Window,
    /// TinyLFU's main space, seen once there.
    Probation,
    /// TinyLFU's main space, seen again there.
    Protected,
    /// LRU's or LFU's only space.
    Main,
    /// A critical entry within its share: never evicted for size.
    Pinned,
}

struct Slot<K, V> {
    key: K,
    val: V,
    hash: u64,
    weight: u64,
    tick: u64,
    hits: u64,
    /// Its priority's rank, lowest evicted first (a critical entry beyond
    /// its share ranks as high).
    class: u8,
    place: Place,
}

/// The eviction order's key: class, segment, then the policy's score; the
/// slab index makes it unique.
type Rank = (u8, u8, u64, u64, u32);

/// A shard: its entries and their eviction order.
pub(super) struct Shard<K, V> {
    index: HashMap<K, u32, DefaultHashBuilder>,
    slots: Vec<Option<Slot<K, V>>>,
    free: Vec<u32>,
    /// Evictable entries of the main space (all of them, for LRU and LFU).
    order: BTreeSet<Rank>,
    window: BTreeSet<(u64, u32)>,
    /// How many window entries each class has.
    window_classes: [u32; 4],
    protected: BTreeSet<(u64, u32)>,
    pinned: BTreeSet<(u64, u32)>,
    tick: u64,
    weight: u64,
    window_weight: u64,
    protected_weight: u64,
    pinned_weight: u64,
    window_max: u64,
    /// The bound the last insert was given.
    capacity: u64,
    sketch: Option<Sketch>,
    climber: Option<Climber>,
    /// Inserts since LFU counts last halved.
    turnover: u64,
    /// The weight of pinned entries in every shard (the critical share is
    /// of the whole cache).
    pinned_total: std::sync::Arc<std::sync::atomic::AtomicU64>,
    rng: u64,
    policy: Eviction,
}

/// What a shard's insert is told: its bound, how many to evict at once,
/// and the critical share.
#[derive(Clone, Copy)]
pub(super) struct Bounds {
    /// This shard's bound.
    pub(super) capacity: u64,
    /// The whole cache's.
    pub(super) total: u64,
    pub(super) batch: usize,
    /// Thousandths of the capacity that pinned entries may take.
    pub(super) critical_permille: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Shard<K, V> {
    pub(super) fn new(
        policy: Eviction,
        capacity: u64,
        seed: u64,
        pinned_total: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        let tiny = policy == Eviction::TinyLfu;
        Shard {
            index: HashMap::with_hasher(DefaultHashBuilder::default()),
            slots: Vec::new(),
            free: Vec::new(),
            order: BTreeSet::new(),
            window: BTreeSet::new(),
            window_classes: [0; 4],
            protected: BTreeSet::new(),
            pinned: BTreeSet::new(),
            tick: 0,
            weight: 0,
            window_weight: 0,
            protected_weight: 0,
            pinned_weight: 0,
            window_max: (capacity / 100).max(1),
            capacity,
            sketch: tiny.then(|| Sketch::new(capacity.min(1 << 20) as usize)),
            climber: tiny.then(|| Climber::new(capacity)),
            turnover: 0,
            pinned_total,
            rng: 0x9E37_79B9_7F4A_7C15 ^ seed,
            policy,
        }
    }

    fn slot(&self, i: u32) -> &Slot<K, V> {
        self.slots[i as usize].as_ref().expect("indexed slot")
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot<K, V> {
        self.slots[i as usize].as_mut().expect("indexed slot")
    }

    fn rank(&self, i: u32) -> Rank {
        let s = self.slot(i);
        match (self.policy, s.place) {
            (Eviction::Lfu, _) => (s.class, 0, s.hits, s.tick, i),
            (_, Place::Protected) => (s.class, 1, s.tick, 0, i),
            _ => (s.class, 0, s.tick, 0, i),
        }
    }

    /// Takes entry `i` out of its place's order.
    fn detach(&mut self, i: u32) {
        let (place, tick, w) = {
            let s = self.slot(i);
            (s.place, s.tick, s.weight)
        };
        match place {
            Place::Window => {
                self.window.remove(&(tick, i));
                self.window_weight -= w;
                self.window_classes[self.slot(i).class as usize] -= 1;
            }
            Place::Pinned => {
                self.pinned.remove(&(tick, i));
                self.pinned_weight -= w;
                self.pinned_total.fetch_sub(w, Ordering::Relaxed);
            }
            Place::Protected => {
                self.order.remove(&self.rank(i));
                self.protected.remove(&(tick, i));
                self.protected_weight -= w;
            }
            Place::Probation | Place::Main => {
                self.order.remove(&self.rank(i));
            }
        }
    }

    /// Puts entry `i` at `place`, as its most recent entry.
    fn attach(&mut self, i: u32, place: Place) {
        self.tick += 1;
        let tick = self.tick;
        let w = {
            let s = self.slot_mut(i);
            s.place = place;
            s.tick = tick;
            s.weight
        };
        match place {
            Place::Window => {
                self.window.insert((tick, i));
                self.window_weight += w;
                self.window_classes[self.slot(i).class as usize] += 1;
            }
            Place::Pinned => {
                self.pinned.insert((tick, i));
                self.pinned_weight += w;
                self.pinned_total.fetch_add(w, Ordering::Relaxed);
            }
            Place::Protected => {
                self.protected.insert((tick, i));
                self.protected_weight += w;
                self.order.insert(self.rank(i));
            }
            Place::Probation | Place::Main => {
                self.order.insert(self.rank(i));
            }
        }
    }

    /// The place a new or re-prioritised entry takes.
    fn place_for(&mut self, i: u32, priority: Priority, b: Bounds) -> Place {
        let w = self.slot(i).weight;
        // Of the whole cache: shards fill unevenly. Shards pinning at once
        // may pass the share by an entry each.
        let share = b.total.saturating_mul(b.critical_permille) / 1000;
        let pinned = priority == Priority::Critical
            && self.pinned_total.load(Ordering::Relaxed) + w <= share
            && self.pinned_weight + w <= b.capacity;
        self.slot_mut(i).class = match priority {
            Priority::Critical => Priority::High.class(),
            p => p.class(),
        };
        if pinned {
            Place::Pinned
        } else if self.policy == Eviction::TinyLfu {
            Place::Window
        } else {
            Place::Main
        }
    }

    fn touch(&mut self, i: u32) {
        // Out of the order before its rank changes.
        self.detach(i);
        let (place, hash) = {
            let s = self.slot_mut(i);
            s.hits += 1;
            (s.place, s.hash)
        };
        if let Some(sk) = &mut self.sketch {
            sk.increment(hash);
        }
        match place {
            Place::Probation | Place::Protected => {
                self.attach(i, Place::Protected);
                self.rebalance_protected();
            }
            p => self.attach(i, p),
        }
    }

    /// Demotes the protected segment's oldest entries to probation while it
    /// holds more than its share of the main space.
    fn rebalance_protected(&mut self) {
        let cap = self.capacity;
        let max = ((cap.saturating_sub(self.window_max)) as f64 * PROTECTED_SHARE) as u64;
        while self.protected_weight > max {
            let Some(&(_, i)) = self.protected.first() else {
                break;
            };
            self.detach(i);
            self.attach(i, Place::Probation);
        }
    }

    /// A hit: the entry's value, and its place updated.
    pub(super) fn get(&mut self, key: &K) -> Option<V> {
        let i = *self.index.get(key)?;
        self.touch(i);
        if let Some(c) = &mut self.climber {
            c.record(true);
        }
        Some(self.slot(i).val.clone())
    }

    pub(super) fn peek(&self, key: &K) -> Option<V> {
        self.index.get(key).map(|&i| self.slot(i).val.clone())
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Stores `val` (replacing the key's value, which is not reported) and
    /// returns what left to make room: possibly the new entry itself, when
    /// it weighs more than the shard holds or, under TinyLFU, loses to the
    /// entry it would displace.
    pub(super) fn insert(
        &mut self,
        key: K,
        val: V,
        hash: u64,
        weight: u64,
        priority: Priority,
        b: Bounds,
    ) -> Vec<(K, V)> {
        self.capacity = b.capacity;
        if weight > b.capacity {
            let mut out = Vec::new();
            if let Some(old) = self.remove(&key) {
                drop(old);
            }
            out.push((key, val));
            return out;
        }
        let (i, kept) = if let Some(&i) = self.index.get(&key) {
            self.detach(i);
            let s = self.slot_mut(i);
            let (old, place) = (s.weight, s.place);
            s.val = val;
            s.weight = weight;
            s.hits += 1;
            self.weight = self.weight - old + weight;
            (i, (place != Place::Pinned).then_some(place))
        } else {
            if let Some(sk) = &mut self.sketch {
                sk.increment(hash);
            }
            if let Some(c) = &mut self.climber {
                c.record(false);
            }
            let slot = Slot {
                key: key.clone(),
                val,
                hash,
                weight,
                tick: 0,
                hits: 1,
                class: 0,
                place: Place::Main,
            };
            let i = match self.free.pop() {
                Some(i) => {
                    self.slots[i as usize] = Some(slot);
                    i
                }
                None => {
                    self.slots.push(Some(slot));
                    (self.slots.len() - 1) as u32
                }
            };
            self.index.insert(key, i);
            self.weight += weight;
            self.age_counts();
            (i, None)
        };
        let fresh = self.place_for(i, priority, b);
        let place = match (fresh, kept) {
            // A replaced value keeps its entry's place, unless it is pinned now.
            (Place::Pinned, _) | (_, None) => fresh,
            (_, Some(p)) => p,
        };
        self.attach(i, place);
        self.adapt_window();
        self.evict(i, b)
    }

    fn remove_at(&mut self, i: u32) -> (K, V) {
        self.detach(i);
        let s = self.slots[i as usize].take().expect("indexed slot");
        self.free.push(i);
        self.index.remove(&s.key);
        self.weight -= s.weight;
        (s.key, s.val)
    }

    pub(super) fn remove(&mut self, key: &K) -> Option<(K, V)> {
        let i = *self.index.get(key)?;
        Some(self.remove_at(i))
    }

    pub(super) fn remove_if(&mut self, key: &K, f: impl FnOnce(&V) -> bool) -> Option<(K, V)> {
        let i = *self.index.get(key)?;
        if !f(&self.slot(i).val) {
            return None;
        }
        Some(self.remove_at(i))
    }

    pub(super) fn retain(&mut self, mut f: impl FnMut(&K, &V) -> bool) {
        let gone: Vec<u32> = self
            .index
            .values()
            .copied()
            .filter(|&i| {
                let s = self.slot(i);
                !f(&s.key, &s.val)
            })
            .collect();
        for i in gone {
            self.remove_at(i);
        }
    }

    pub(super) fn entries(&self, out: &mut Vec<(K, V)>) {
        out.extend(
            self.slots
                .iter()
                .flatten()
                .map(|s| (s.key.clone(), s.val.clone())),
        );
    }

    pub(super) fn drain(&mut self, out: &mut Vec<(K, V)>) {
        let cap = self.capacity;
        let policy = self.policy;
        let seed = self.rng;
        let pinned = self.pinned_total.clone();
        pinned.fetch_sub(self.pinned_weight, Ordering::Relaxed);
        let old = std::mem::replace(self, Shard::new(policy, cap, seed, pinned));
        out.extend(old.slots.into_iter().flatten().map(|s| (s.key, s.val)));
    }

    /// A new bound; a smaller one evicts the excess now.
    pub(super) fn set_capacity(&mut self, b: Bounds) -> Vec<(K, V)> {
        self.capacity = b.capacity;
        self.window_max = self.window_max.min(b.capacity).max(1);
        let mut out = Vec::new();
        let mut none = Vec::new();
        while self.weight > b.capacity {
            let Some(v) = self.victim(&mut none, None, true) else {
                break;
            };
            out.push(self.remove_at(v));
        }
        out
    }
}
