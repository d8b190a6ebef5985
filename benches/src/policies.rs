//! Reference policies for hit-ratio replay: an exact LRU, an exact LFU and
//! Bélády's optimal policy (offline), each counting hits of a replay in
//! which every read that misses inserts its key.

use std::collections::{BTreeSet, HashMap};

/// A policy replayed over keys: `access` reads a key, inserting it on a
/// miss, and says whether it hit.
pub trait Policy {
    /// Reads `key`; true on a hit (a miss inserts it).
    fn access(&mut self, key: u64) -> bool;
}

const NIL: usize = usize::MAX;

/// An exact LRU: a hash map into a doubly linked list over a slab.
pub struct ExactLru {
    cap: usize,
    map: HashMap<u64, usize>,
    nodes: Vec<(u64, usize, usize)>,
    head: usize,
    tail: usize,
}

impl ExactLru {
    /// An LRU of `cap` entries.
    pub fn new(cap: usize) -> Self {
        ExactLru {
            cap,
            map: HashMap::with_capacity(cap),
            nodes: Vec::with_capacity(cap),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (_, prev, next) = self.nodes[i];
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].2 = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].1 = prev;
        }
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].1 = NIL;
        self.nodes[i].2 = self.head;
        if self.head != NIL {
            self.nodes[self.head].1 = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }
}

impl Policy for ExactLru {
    fn access(&mut self, key: u64) -> bool {
        if let Some(&i) = self.map.get(&key) {
            self.unlink(i);
            self.push_front(i);
            return true;
        }
        let i = if self.nodes.len() < self.cap {
            self.nodes.push((key, NIL, NIL));
            self.nodes.len() - 1
        } else {
            let victim = self.tail;
            self.unlink(victim);
            self.map.remove(&self.nodes[victim].0);
            self.nodes[victim].0 = key;
            victim
        };
        self.map.insert(key, i);
        self.push_front(i);
        false
    }
}

/// An exact (in-cache) LFU: evicts the entry read least often while
/// cached, the least recently used among equals.
pub struct ExactLfu {
    cap: usize,
    tick: u64,
    map: HashMap<u64, (u64, u64)>,
    order: BTreeSet<(u64, u64, u64)>,
}

impl ExactLfu {
    /// An LFU of `cap` entries.
    pub fn new(cap: usize) -> Self {
        ExactLfu {
            cap,
            tick: 0,
            map: HashMap::with_capacity(cap),
            order: BTreeSet::new(),
        }
    }
}

impl Policy for ExactLfu {
    fn access(&mut self, key: u64) -> bool {
        self.tick += 1;
        if let Some(e) = self.map.get_mut(&key) {
            self.order.remove(&(e.0, e.1, key));
            *e = (e.0 + 1, self.tick);
            self.order.insert((e.0, e.1, key));
            return true;
        }
        if self.map.len() >= self.cap
            && let Some((_, _, victim)) = self.order.pop_first()
        {
            self.map.remove(&victim);
        }
        self.map.insert(key, (1, self.tick));
        self.order.insert((1, self.tick, key));
        false
    }
}

/// Bélády's optimal policy over a whole trace: evicts the entry read
/// again furthest in the future. Its hit count is the ceiling.
pub fn belady_hits(keys: &[u64], cap: usize) -> u64 {
    let n = keys.len();
    let mut next = vec![usize::MAX; n];
    let mut last: HashMap<u64, usize> = HashMap::new();
    for i in (0..n).rev() {
        if let Some(&j) = last.get(&keys[i]) {
            next[i] = j;
        }
        last.insert(keys[i], i);
    }
    // Resident keys by their next read.
    let mut when: HashMap<u64, usize> = HashMap::with_capacity(cap);
    let mut by_next: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut hits = 0;
    for (i, &k) in keys.iter().enumerate() {
        if let Some(w) = when.get_mut(&k) {
            hits += 1;
            by_next.remove(&(*w, k));
            *w = next[i];
            by_next.insert((next[i], k));
            continue;
        }
        if when.len() >= cap {
            // Never read again or furthest: the last in order.
            if let Some((nx, victim)) = by_next.pop_last() {
                if nx < next[i] {
                    // Keeping the victim serves better than caching k:
                    // bypass (the optimal policy need not insert).
                    by_next.insert((nx, victim));
                    continue;
                }
                when.remove(&victim);
            }
        }
        when.insert(k, next[i]);
        by_next.insert((next[i], k));
    }
    hits
}
