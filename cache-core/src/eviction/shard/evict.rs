//! How a shard makes room: the window's bound, LFU ageing, and the choice
//! of victims (TinyLFU's admission test among them).

use std::hash::Hash;

use super::*;

impl<K: Hash + Eq + Clone, V: Clone> Shard<K, V> {
    /// Lets the climber move the window's bound, under TinyLFU.
    pub(super) fn adapt_window(&mut self) {
        let cap = self.capacity;
        if let Some(amount) = self.climber.as_mut().and_then(|c| c.adjustment(cap)) {
            let next = (self.window_max as f64 + amount).clamp(1.0, cap as f64);
            self.window_max = next as u64;
        }
    }

    /// Halves LFU counts once the shard has turned over often enough.
    pub(super) fn age_counts(&mut self) {
        if self.policy != Eviction::Lfu {
            return;
        }
        self.turnover += 1;
        let every = (self.capacity.min(self.index.len() as u64 + 1) * AGING_TURNOVERS)
            .max(MIN_AGING_INSERTS);
        if self.turnover < every {
            return;
        }
        self.turnover = 0;
        let evictable: Vec<u32> = self.order.iter().map(|r| r.4).collect();
        self.order.clear();
        for i in evictable {
            let s = self.slot_mut(i);
            s.hits /= 2;
            self.order.insert(self.rank(i));
        }
    }

    fn next_rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Evicts until the shard is within its bound (LRU and LFU: at least a
    /// batch once over it). The entry just stored, `new`, goes only if its
    /// priority is below the rest's (LFU would otherwise pick it at once);
    /// under TinyLFU, the entries the window lets go compete with the main
    /// space's victim.
    pub(super) fn evict(&mut self, new: u32, b: Bounds) -> Vec<(K, V)> {
        let mut out = Vec::new();
        let mut candidates = Vec::new();
        if self.policy == Eviction::TinyLfu {
            while self.window_weight > self.window_max {
                let Some(&(_, i)) = self.window.first() else {
                    break;
                };
                self.detach(i);
                self.attach(i, Place::Probation);
                candidates.push(i);
            }
        }
        if self.weight <= b.capacity {
            return out;
        }
        let batch = if self.policy == Eviction::TinyLfu {
            1
        } else {
            b.batch.max(1)
        };
        let mut n = 0;
        while self.weight > b.capacity || n < batch {
            let over = self.weight > b.capacity;
            let Some(victim) = self.victim(&mut candidates, Some(new), over) else {
                break;
            };
            if victim == new && self.weight <= b.capacity {
                // A batch never takes the entry just stored.
                break;
            }
            out.push(self.remove_at(victim));
            n += 1;
            if self.index.is_empty() {
                break;
            }
        }
        out
    }

    /// The entry to evict next: the lowest class's oldest (or least used)
    /// evictable entry, unless, under TinyLFU, it is seen more often than
    /// the window's candidate, which then goes instead.
    /// `over` says whether the shard is over its bound: only then may the
    /// window's or a pinned entry go (a batch takes evictable entries only).
    pub(super) fn victim(
        &mut self,
        candidates: &mut Vec<u32>,
        new: Option<u32>,
        over: bool,
    ) -> Option<u32> {
        let mut it = self.order.iter();
        let first = match (it.next(), it.next()) {
            (Some(a), Some(b)) if Some(a.4) == new && a.0 == b.0 => Some(*b),
            (a, _) => a.copied(),
        };
        // A window entry of a lower class than the main space's lowest
        // goes first (the window is small: a scan finds its oldest).
        let main_class = first.map_or(u8::MAX, |r| r.0);
        if let Some(c) = (0..main_class.min(4)).find(|&c| self.window_classes[c as usize] > 0) {
            return self
                .window
                .iter()
                .map(|&(_, i)| i)
                .find(|&i| self.slot(i).class == c)
                .or(first.map(|r| r.4));
        }
        let Some(first) = first else {
            // Nothing evictable in the main space: the window's oldest,
            // then, as a last resort, the oldest pinned entry.
            if !over {
                return None;
            }
            return self
                .window
                .first()
                .or_else(|| self.pinned.first())
                .map(|&(_, i)| i);
        };
        let victim = first.4;
        while let Some(&cand) = candidates.last() {
            if self.slots[cand as usize].is_none() || cand == victim {
                candidates.pop();
                continue;
            }
            let (c, v) = (self.slot(cand), self.slot(victim));
            if c.class > v.class {
                return Some(victim);
            }
            let (cf, vf) = match &self.sketch {
                Some(sk) => (sk.frequency(c.hash), sk.frequency(v.hash)),
                None => return Some(victim),
            };
            candidates.pop();
            if cf > vf || (cf >= WARM_CANDIDATE && self.next_rand() & 127 == 0) {
                return Some(victim);
            }
            return Some(cand);
        }
        Some(victim)
    }
}
