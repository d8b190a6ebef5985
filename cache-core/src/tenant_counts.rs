//! Counts per tenant, for meters labelled by tenant.
//!
//! Off by default (configuration's `[metrics] tenant_labels`): a tenant
//! label multiplies every meter's series by the number of tenants. When on,
//! a cache counts its lookups, stores and removals per tenant as well, and
//! its hits leave the inlined hit path for the general one. The first
//! `max_tenants` tenants a cache sees get counts of their own; the rest
//! share one overflow row, so the number of series stays bounded whatever
//! tenants callers invent.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::namespace::TenantId;
use crate::stats::{Counter, Stats};

/// The default bound on tenants with counts of their own, per cache.
pub const DEFAULT_MAX_TENANTS: usize = 100;

/// One row: a count per [`Counter`].
#[derive(Default)]
struct Row([AtomicU64; 8]);

impl Row {
    fn add(&self, c: Counter, n: u64) {
        self.0[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn stats(&self) -> Stats {
        let get = |c: Counter| self.0[c as usize].load(Ordering::Relaxed);
        Stats {
            hits: get(Counter::Hit),
            misses: get(Counter::Miss),
            inserts: get(Counter::Insert),
            evictions: get(Counter::Eviction),
            expirations: get(Counter::Expiration),
            invalidations: get(Counter::Invalidation),
            loads: get(Counter::Load),
            load_nanos: get(Counter::LoadNanos),
            ..Stats::default()
        }
    }
}

/// Which row a tenant's counts are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TenantRow {
    /// The tenant's own row ([`TenantId::NONE`] for callers without one).
    Own(TenantId),
    /// The row shared by tenants beyond the bound.
    Overflow,
}

/// One slot of a table: a tenant (its index plus one; 0 while free) and
/// its row.
#[derive(Default)]
struct Slot {
    id: AtomicU32,
    row: Row,
}

/// An open-addressed table of rows that only grows: a lookup is a
/// multiply and a few loads, no lock (rows are claimed under one). It holds at most half its slots, so
/// probes stay short; a later table takes the tenants a raised bound lets
/// in beyond that.
struct Table {
    slots: Box<[Slot]>,
    used: AtomicUsize,
    next: OnceLock<Box<Table>>,
}

impl Table {
    fn new(tenants: usize) -> Table {
        let len = (tenants * 2).next_power_of_two().max(16);
        Table {
            slots: (0..len).map(|_| Slot::default()).collect(),
            used: AtomicUsize::new(0),
            next: OnceLock::new(),
        }
    }

    fn room(&self) -> usize {
        self.slots.len() / 2
    }

    /// Where the probe for `id` starts.
    fn start(&self, id: u32) -> usize {
        (id.wrapping_mul(0x9E37_79B9) >> 7) as usize & (self.slots.len() - 1)
    }

    /// The row of `id` in this table, if it has one.
    fn find(&self, id: u32) -> Option<&Row> {
        let mask = self.slots.len() - 1;
        let mut i = self.start(id);
        loop {
            let s = &self.slots[i];
            match s.id.load(Ordering::Acquire) {
                x if x == id => return Some(&s.row),
                0 => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Gives `id` a row in this table (the caller holds the claim lock
    /// and knows `id` has none); `None` when the table is at its room.
    fn claim(&self, id: u32) -> Option<&Row> {
        if self.used.load(Ordering::Relaxed) >= self.room() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.start(id);
        while self.slots[i].id.load(Ordering::Relaxed) != 0 {
            i = (i + 1) & mask;
        }
        self.used.fetch_add(1, Ordering::Relaxed);
        let s = &self.slots[i];
        s.id.store(id, Ordering::Release);
        Some(&s.row)
    }
}

/// One cache's counts per tenant.
pub(crate) struct TenantCounts {
    max: AtomicUsize,
    /// Tenants with rows of their own (at most `max`).
    rows: AtomicUsize,
    table: OnceLock<Table>,
    /// Held while a tenant is given a row.
    claim_lock: Mutex<()>,
    overflow: Row,
}

impl Default for TenantCounts {
    fn default() -> Self {
        TenantCounts {
            max: AtomicUsize::new(DEFAULT_MAX_TENANTS),
            rows: AtomicUsize::new(0),
            table: OnceLock::new(),
            claim_lock: Mutex::new(()),
            overflow: Row::default(),
        }
    }
}

impl TenantCounts {
    /// Bounds the tenants with rows of their own from now on; those that
    /// already have one keep it.
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// The bound on tenants with rows of their own.
    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    fn tables(&self) -> impl Iterator<Item = &Table> {
        std::iter::successors(self.table.get(), |t| t.next.get().map(|b| &**b))
    }

    /// The row of `t`, if it has one of its own.
    fn find(&self, t: TenantId) -> Option<&Row> {
        let id = t.index().wrapping_add(1);
        self.tables().find_map(|table| table.find(id))
    }

    /// Counts `n` of `c` for tenant `t`.
    #[inline]
    pub(crate) fn add(&self, t: TenantId, c: Counter, n: u64) {
        match self.find(t) {
            Some(row) => row.add(c, n),
            None => self.add_new(t, c, n),
        }
    }

    /// [`TenantCounts::add`] for a tenant without a row yet: one is
    /// claimed while the bound allows, else the overflow row counts it.
    #[cold]
    fn add_new(&self, t: TenantId, c: Counter, n: u64) {
        // Rows are claimed one at a time, and a claim's slot is written
        // before `rows` counts it: a full count read here means `t` either
        // has its row already (found below) or never will.
        if self.rows.load(Ordering::Acquire) >= self.max() {
            return match self.find(t) {
                Some(row) => row.add(c, n),
                None => self.overflow.add(c, n),
            };
        }
        let _claiming = self.claim_lock.lock();
        if let Some(row) = self.find(t) {
            return row.add(c, n);
        }
        let max = self.max();
        if self.rows.load(Ordering::Relaxed) >= max {
            return self.overflow.add(c, n);
        }
        let id = t.index().wrapping_add(1);
        let mut table = self.table.get_or_init(|| Table::new(max));
        let row = loop {
            match table.claim(id) {
                Some(row) => break row,
                None => table = table.next.get_or_init(|| Box::new(Table::new(max))),
            }
        };
        self.rows.fetch_add(1, Ordering::Release);
        row.add(c, n);
    }

    /// The row `t` is counted in, claiming one of its own while the bound
    /// allows (for entries stored before the label was turned on).
    pub(crate) fn claim(&self, t: TenantId) -> TenantRow {
        if self.find(t).is_none() {
            self.add_new(t, Counter::Hit, 0);
        }
        self.row_of(t)
    }

    /// Which row `t` is counted in now.
    pub(crate) fn row_of(&self, t: TenantId) -> TenantRow {
        match self.find(t) {
            Some(_) => TenantRow::Own(t),
            None => TenantRow::Overflow,
        }
    }

    /// Every row's counts (`entries` left at 0), the overflow row last and
    /// only once it counted something.
    pub(crate) fn snapshot(&self) -> Vec<(TenantRow, Stats)> {
        let mut out: Vec<(TenantRow, Stats)> = Vec::new();
        for table in self.tables() {
            for s in table.slots.iter() {
                let id = s.id.load(Ordering::Acquire);
                if id != 0 {
                    let t = TenantId::from_index(id.wrapping_sub(1));
                    out.push((TenantRow::Own(t), s.row.stats()));
                }
            }
        }
        out.sort_by_key(|(t, _)| *t);
        let o = self.overflow.stats();
        if o != Stats::default() {
            out.push((TenantRow::Overflow, o));
        }
        out
    }
}

/// A registered cache's last counts, handed over when it is dropped so
/// that the meters keep what it counted since their last reading.
#[cfg(feature = "metrics")]
#[derive(Debug, Clone)]
pub struct Retired {
    /// Its service (empty outside one).
    pub service: String,
    /// Its identity.
    pub identity: String,
    /// `l1` or `l2`, as the meters label it.
    pub tier: &'static str,
    /// Its address while it lived, to tell it from the meters' record of it.
    pub addr: usize,
    /// Its counts: one row, or one per tenant when labelled by tenant.
    pub rows: Vec<(Option<TenantRow>, Stats)>,
}

#[cfg(feature = "metrics")]
static RETIRED: parking_lot::Mutex<Vec<Retired>> = parking_lot::Mutex::new(Vec::new());

/// Hands a dropped cache's last counts to the meters.
#[cfg(feature = "metrics")]
pub(crate) fn retire(r: Retired) {
    RETIRED.lock().push(r);
}

/// The dropped caches' counts handed over since the last call.
#[cfg(feature = "metrics")]
pub fn take_retired() -> Vec<Retired> {
    std::mem::take(&mut *RETIRED.lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::tenant_id;

    #[test]
    fn tenants_beyond_the_bound_share_the_overflow_row() {
        let c = TenantCounts::default();
        c.set_max(2);
        let (a, b, x) = (tenant_id("tc-a"), tenant_id("tc-b"), tenant_id("tc-x"));
        c.add(a, Counter::Hit, 1);
        c.add(b, Counter::Miss, 1);
        c.add(x, Counter::Hit, 1);
        c.add(x, Counter::Insert, 1);
        c.add(a, Counter::Hit, 1);
        let s = c.snapshot();
        assert_eq!(s.len(), 3);
        let two_hits = Stats {
            hits: 2,
            ..Stats::default()
        };
        assert_eq!(s[0], (TenantRow::Own(a), two_hits));
        assert_eq!(s[1].1.misses, 1);
        assert_eq!(s[2].0, TenantRow::Overflow);
        assert_eq!((s[2].1.hits, s[2].1.inserts), (1, 1));
        assert_eq!(c.row_of(x), TenantRow::Overflow);
        assert_eq!(c.row_of(b), TenantRow::Own(b));
    }

    /// A bound raised after the first table was made lets more tenants in
    /// (into a second table); eight threads adding at once lose no count
    /// and give no tenant two rows.
    #[test]
    fn a_raised_bound_and_concurrent_adders_lose_nothing() {
        let ids: Vec<TenantId> = (0..40)
            .map(|i| tenant_id(&format!("tc-many-{i}")))
            .collect();
        for _ in 0..200 {
            let c = TenantCounts::default();
            c.set_max(3);
            c.add(ids[0], Counter::Hit, 1);
            c.set_max(30);
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        for t in &ids {
                            c.add(*t, Counter::Miss, 1);
                        }
                    });
                }
            });
            let snap = c.snapshot();
            let own: Vec<_> = snap
                .iter()
                .filter(|(r, _)| matches!(r, TenantRow::Own(_)))
                .collect();
            assert_eq!(own.len(), 30, "{snap:?}");
            assert!(own.iter().all(|(_, s)| s.misses == 8), "{snap:?}");
            let total: u64 = snap.iter().map(|(_, s)| s.misses).sum();
            assert_eq!(total, 8 * 40);
            assert_eq!(snap.last().unwrap().0, TenantRow::Overflow);
            assert_eq!(snap.last().unwrap().1.misses, 8 * 10);
        }
    }
}
