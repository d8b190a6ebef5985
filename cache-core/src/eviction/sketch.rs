//! TinyLFU's parts: a frequency sketch that forgets, and the hill climber
//! that sizes the admission window (Einziger, Friedman and Manes, "TinyLFU:
//! A Highly Efficient Cache Admission Policy", 2017; the climber is
//! Caffeine's).

/// Counters saturate here (4 bits' worth, as in the paper).
const MAX_COUNT: u8 = 15;
/// Rows of the count-min sketch; an estimate is the least of its counters.
const ROWS: usize = 4;
/// Counters per row for each entry of the cache: with fewer, collisions
/// blur the estimates (P6 at 64K entries: 55.8 % with 1, 57.2 % with 8).
const WIDTH_PER_ENTRY: usize = 8;
const SEEDS: [u64; ROWS] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x27D4_EB2F_1656_67C5,
];

/// A count-min sketch of how often keys were seen lately: every
/// `10 × width` additions halve all counts, so old popularity fades.
pub(super) struct Sketch {
    counts: Box<[u8]>,
    mask: usize,
    additions: usize,
    period: usize,
}

impl Sketch {
    /// A sketch for a cache of about `entries` (rounded up to a power of
    /// two, at least 64 and at most 2^20): [`WIDTH_PER_ENTRY`] counters a
    /// row per entry, halved every `10 × entries` additions.
    pub(super) fn new(entries: usize) -> Self {
        let entries = entries.clamp(64, 1 << 20).next_power_of_two();
        let width = entries * WIDTH_PER_ENTRY;
        Sketch {
            counts: vec![0; width * ROWS].into_boxed_slice(),
            mask: width - 1,
            additions: 0,
            period: entries * 10,
        }
    }

    fn slot(&self, hash: u64, row: usize) -> usize {
        let h = hash.wrapping_mul(SEEDS[row]);
        row * (self.mask + 1) + ((h >> 32) as usize & self.mask)
    }

    /// Counts one sighting of the key with `hash`.
    pub(super) fn increment(&mut self, hash: u64) {
        let mut grew = false;
        for row in 0..ROWS {
            let i = self.slot(hash, row);
            if self.counts[i] < MAX_COUNT {
                self.counts[i] += 1;
                grew = true;
            }
        }
        if grew {
            self.additions += 1;
            if self.additions >= self.period {
                self.age();
            }
        }
    }

    /// How often the key with `hash` was seen lately (an overestimate at
    /// worst).
    pub(super) fn frequency(&self, hash: u64) -> u8 {
        (0..ROWS)
            .map(|row| self.counts[self.slot(hash, row)])
            .min()
            .unwrap_or(0)
    }

    fn age(&mut self) {
        for c in self.counts.iter_mut() {
            *c /= 2;
        }
        self.additions /= 2;
    }
}

/// Caffeine's hill climber: after each sample of `20 × capacity` reads it
/// moves the window's bound by a step, in the direction that raised the hit
/// ratio; the step shrinks while the ratio is steady, and restarts when the
/// workload changes.
pub(super) struct Climber {
    hits: u64,
    misses: u64,
    previous: f64,
    step: f64,
}

/// The first step, and a restarted one: 1 % of the capacity. Caffeine's
/// 6.25 % wins 2.5 points on OLTP but loses 3 on P6, where every move of
/// the window costs; 1 % over samples of 20 × the capacity keeps most of
/// the first and all but 0.4 of the second.
const STEP: f64 = 0.01;
/// Reads per sample, per entry of the capacity.
const SAMPLE: u64 = 20;
/// A steady step decays by this much per sample.
const DECAY: f64 = 0.98;
/// A change of the hit ratio this large restarts the step.
const RESTART: f64 = 0.05;

impl Climber {
    pub(super) fn new(capacity: u64) -> Self {
        Climber {
            hits: 0,
            misses: 0,
            previous: 0.0,
            step: -STEP * capacity as f64,
        }
    }

    pub(super) fn record(&mut self, hit: bool) {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }

    /// The change to make to the window's bound, once a sample is complete.
    pub(super) fn adjustment(&mut self, capacity: u64) -> Option<f64> {
        let n = self.hits + self.misses;
        if n < capacity.saturating_mul(SAMPLE).max(1_000) {
            return None;
        }
        let rate = self.hits as f64 / n as f64;
        let change = rate - self.previous;
        let amount = if change >= 0.0 { self.step } else { -self.step };
        self.step = if change.abs() >= RESTART {
            STEP * capacity as f64 * amount.signum()
        } else {
            DECAY * amount
        };
        self.previous = rate;
        self.hits = 0;
        self.misses = 0;
        Some(amount)
    }
}
