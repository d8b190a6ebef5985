//! Single-flight: concurrent misses on one key run the loader once.
//!
//! Each key in flight has its own [`Flight`]; the map that finds it is locked
//! only to join or leave, never while a loader runs. The leader's guard
//! releases the waiters however the load ends: with a value they all share,
//! or, on an error, a panic or a cancelled future, with nothing, so that they
//! retry and one of them leads.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use quick_cache::DefaultHashBuilder;

const SHARDS: usize = 16;

/// A leader's error, shared with its waiters when its type can be cloned.
pub(crate) type SharedErr = Arc<dyn std::any::Any + Send + Sync>;

enum State<V> {
    Running(Vec<Waker>),
    Done(V),
    /// The load returned an error: the waiters get it when it can be
    /// shared; otherwise each computes for itself, at once and side by
    /// side, instead of retrying one after another.
    Failed(Option<SharedErr>),
    Abandoned,
}

/// What a waiter gets when the leader finishes.
pub(crate) enum Waited<V> {
    /// The leader's value.
    Value(V),
    /// The leader's load failed: its error if shared, else compute
    /// without waiting again.
    Failed(Option<SharedErr>),
    /// The leader panicked or was cancelled: join again (one leads).
    Retry,
}

/// One key's load in progress.
pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    /// The thread of a sync caller that started it: if that thread asks
    /// for the same key again (a load that calls itself), waiting would
    /// never end. 0 when an async task leads (it may move between threads).
    leader: u64,
}

/// A number of the calling thread's own, cheap to read.
fn thread_token() -> u64 {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: Cell<u64> = const { Cell::new(0) };
    }
    TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

impl<V: Clone> Flight<V> {
    fn new(sync_leader: bool) -> Self {
        Flight {
            state: Mutex::new(State::Running(Vec::new())),
            leader: if sync_leader { thread_token() } else { 0 },
        }
    }

    /// Whether a sync caller on the calling thread leads this flight.
    pub(crate) fn led_here(&self) -> bool {
        self.leader == thread_token()
    }

    /// Whether an async task leads this flight.
    pub(crate) fn led_by_task(&self) -> bool {
        self.leader == 0
    }

    fn finish(&self, outcome: Option<&V>, failed: Option<Option<SharedErr>>) {
        let wakers = {
            let mut st = self.state.lock();
            let next = match (outcome, failed) {
                (Some(v), _) => State::Done(v.clone()),
                (None, Some(err)) => State::Failed(err),
                (None, None) => State::Abandoned,
            };
            match std::mem::replace(&mut *st, next) {
                State::Running(w) => w,
                _ => Vec::new(),
            }
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Waits for the leader to finish: awaited by async callers, and by
    /// sync ones through [`block_on`].
    pub(crate) fn wait_async(self: Arc<Self>) -> WaitFuture<V> {
        WaitFuture { flight: self }
    }
}

/// Resolves when the leader finishes; see [`Flight::wait`].
pub(crate) struct WaitFuture<V> {
    flight: Arc<Flight<V>>,
}

impl<V: Clone> Future for WaitFuture<V> {
    type Output = Waited<V>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Waited<V>> {
        let mut st = self.flight.state.lock();
        match &mut *st {
            State::Running(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
            State::Done(v) => Poll::Ready(Waited::Value(v.clone())),
            State::Failed(e) => Poll::Ready(Waited::Failed(e.clone())),
            State::Abandoned => Poll::Ready(Waited::Retry),
        }
    }
}

/// Wakes the thread that [`block_on`] parked.
struct Unpark {
    thread: std::thread::Thread,
    woken: std::sync::atomic::AtomicBool,
}

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Drives `fut` to completion on the calling thread, parking it while the
/// future waits: how sync callers run the one load path that async callers
/// await. Nothing in that path needs a runtime of the caller's (store I/O
/// runs on the bridge runtime), so this works inside one or outside any.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    thread_local! {
        static PARKER: (Arc<Unpark>, Waker) = {
            let unpark = Arc::new(Unpark {
                thread: std::thread::current(),
                woken: std::sync::atomic::AtomicBool::new(false),
            });
            let waker = Waker::from(unpark.clone());
            (unpark, waker)
        };
    }
    let mut fut = std::pin::pin!(fut);
    PARKER.with(|(unpark, waker)| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
            // Parked until woken; a stray unpark only polls once more.
            while !unpark.woken.swap(false, Ordering::Acquire) {
                std::thread::park();
            }
        }
    })
}

type Shard<K, V> = Mutex<HashMap<K, Arc<Flight<V>>, DefaultHashBuilder>>;

/// How many invalidation counters keys are spread over: an invalidation of
/// one key discards only the loads of keys that share its counter.
const EPOCHS: usize = 256;

/// The invalidation count that concerned a key when its load began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Epoch {
    slot: usize,
    at: u64,
    /// Whether replacements count too (a load's epoch), or only
    /// invalidations (a prime's: two primes never undo each other).
    loads: bool,
}

/// Every key's invalidation count at one moment, for values read in bulk
/// after it (a full load): [`Flights::epoch_in`] gives a key's.
pub(crate) struct EpochSnapshot {
    all: u64,
    keys: Box<[u64]>,
}

/// The flights of one cache, and its invalidation counters.
pub(crate) struct Flights<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: DefaultHashBuilder,
    /// Bumped by an invalidation of the whole cache (or of a pattern, tag
    /// or tenant).
    all: AtomicU64,
    /// Bumped by an invalidation of one key, by the key's hash.
    keys: Box<[AtomicU64]>,
    /// Bumped when a value replaces a key's (a prime or an insert), by the
    /// key's hash: loads under way of it store nothing, primes go on.
    replaced: Box<[AtomicU64]>,
    /// One per counter of `keys`: held by a load's store across its last
    /// check of the counts and its insert, and passed through by every
    /// invalidation after its bump, so an invalidation that returns has
    /// seen (and removed) every value stored from before it.
    stores: Box<[Mutex<()>]>,
}

/// The outcome of joining a key's flight.
pub(crate) enum Join<V> {
    /// No load was running: the caller now leads one.
    Leader(Arc<Flight<V>>),
    /// A load is running: wait on it.
    Follower(Arc<Flight<V>>),
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    pub(crate) fn new() -> Self {
        Flights {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(DefaultHashBuilder::default())))
                .collect(),
            hasher: DefaultHashBuilder::default(),
            all: AtomicU64::new(0),
            keys: (0..EPOCHS).map(|_| AtomicU64::new(0)).collect(),
            replaced: (0..EPOCHS).map(|_| AtomicU64::new(0)).collect(),
            stores: (0..EPOCHS).map(|_| Mutex::new(())).collect(),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K, V> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    fn slot(&self, key: &K) -> usize {
        // The high bits: the low ones pick the shard.
        (self.hasher.hash_one(key) >> 32) as usize % EPOCHS
    }

    fn count_at(&self, slot: usize, loads: bool) -> u64 {
        // They only grow, so the sum changes whenever one does.
        let n = self
            .all
            .load(Ordering::Acquire)
            .wrapping_add(self.keys[slot].load(Ordering::Acquire));
        if loads {
            n.wrapping_add(self.replaced[slot].load(Ordering::Acquire))
        } else {
            n
        }
    }

    /// The invalidation count that concerns `key`: it changes whenever the
    /// whole cache, or `key` (or a key sharing its counter), is invalidated.
    /// A load stores its value only if it has not [changed](Self::changed)
    /// since the load began.
    pub(crate) fn epoch_of(&self, key: &K) -> Epoch {
        let slot = self.slot(key);
        Epoch {
            slot,
            at: self.count_at(slot, true),
            loads: true,
        }
    }

    /// The invalidation count that concerns `key`, for a value that
    /// replaces whatever the cache holds (a prime): only invalidations
    /// count, not other replacements.
    pub(crate) fn prime_epoch_of(&self, key: &K) -> Epoch {
        let slot = self.slot(key);
        Epoch {
            slot,
            at: self.count_at(slot, false),
            loads: false,
        }
    }

    /// Every key's invalidation count now.
    pub(crate) fn snapshot(&self) -> EpochSnapshot {
        // `all` first, as `count_at` reads it: a bump between the reads
        // makes the snapshot newer, never older, than the moment it began.
        let all = self.all.load(Ordering::Acquire);
        EpochSnapshot {
            all,
            keys: self
                .keys
                .iter()
                .map(|k| k.load(Ordering::Acquire))
                .collect(),
        }
    }

    /// `key`'s invalidation count when `snap` was taken, as a prime's
    /// epoch.
    pub(crate) fn epoch_in(&self, snap: &EpochSnapshot, key: &K) -> Epoch {
        let slot = self.slot(key);
        Epoch {
            slot,
            at: snap.all.wrapping_add(snap.keys[slot]),
            loads: false,
        }
    }

    /// Whether an invalidation that concerns the key of `e` came since.
    pub(crate) fn changed(&self, e: Epoch) -> bool {
        self.count_at(e.slot, e.loads) != e.at
    }

    /// Marks an invalidation of `key` (before it is removed): its load under
    /// way stores nothing, and new callers do not join it.
    pub(crate) fn bump_key(&self, key: &K) {
        let slot = self.slot(key);
        self.keys[slot].fetch_add(1, Ordering::AcqRel);
        // A store that checked the counts before the bump finishes its
        // insert first, so the caller's removal, which follows, sees it.
        drop(self.stores[slot].lock());
        self.shard(key).lock().remove(key);
    }

    /// Runs `insert` unless an invalidation concerning the key of `e` came
    /// since; true if it ran. An invalidation waits for it (see `stores`),
    /// so a value from before an invalidation never outlives its return.
    pub(crate) fn insert_if_current(&self, e: Epoch, insert: impl FnOnce()) -> bool {
        let _one = self.stores[e.slot].lock();
        if self.changed(e) {
            return false;
        }
        insert();
        true
    }

    /// [`Flights::insert_if_current`] for a value that replaces what loads
    /// under way of `key` would store: after the insert, still under the
    /// lock, its counter moves, so those loads store nothing.
    /// With no epoch, it inserts whatever came before (a write).
    pub(crate) fn replace_if_current(
        &self,
        key: &K,
        e: Option<Epoch>,
        insert: impl FnOnce(),
    ) -> bool {
        let slot = self.slot(key);
        let _one = self.stores[slot].lock();
        if e.is_some_and(|e| self.changed(e)) {
            return false;
        }
        insert();
        self.replaced[slot].fetch_add(1, Ordering::AcqRel);
        self.shard(key).lock().remove(key);
        true
    }

    /// Marks an invalidation of many keys: every load under way stores
    /// nothing, and new callers start new loads.
    pub(crate) fn bump_all(&self) {
        self.all.fetch_add(1, Ordering::AcqRel);
        for s in self.stores.iter() {
            drop(s.lock());
        }
        self.detach_all();
    }

    /// Joins the flight for `key`, starting one if none runs (led by a
    /// sync caller on this thread when `sync`, else by an async task).
    pub(crate) fn join(&self, key: &K, sync: bool) -> Join<V> {
        let mut map = self.shard(key).lock();
        if let Some(f) = map.get(key) {
            return Join::Follower(f.clone());
        }
        let f = Arc::new(Flight::new(sync));
        map.insert(key.clone(), f.clone());
        Join::Leader(f)
    }

    /// Starts a flight only if none runs (for background refresh).
    pub(crate) fn try_lead(&self, key: &K) -> Option<Arc<Flight<V>>> {
        match self.join(key, false) {
            Join::Leader(f) => Some(f),
            Join::Follower(_) => None,
        }
    }

    /// Ends a flight led by the caller and releases its waiters.
    pub(crate) fn land(&self, key: &K, flight: &Arc<Flight<V>>, outcome: Option<&V>) {
        self.end(key, flight, outcome, None)
    }

    /// Ends a flight whose load returned an error: its waiters get `err`,
    /// or without it compute for themselves.
    pub(crate) fn fail(&self, key: &K, flight: &Arc<Flight<V>>, err: Option<SharedErr>) {
        self.end(key, flight, None, Some(err))
    }

    fn end(
        &self,
        key: &K,
        flight: &Arc<Flight<V>>,
        outcome: Option<&V>,
        failed: Option<Option<SharedErr>>,
    ) {
        {
            let mut map = self.shard(key).lock();
            if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
                map.remove(key);
            }
        }
        flight.finish(outcome, failed);
    }

    /// Forgets every load in flight: callers from now on start new ones.
    /// The loads keep running and release their own waiters.
    pub(crate) fn detach_all(&self) {
        for shard in self.shards.iter() {
            let mut map = shard.lock();
            if !map.is_empty() {
                map.clear();
            }
        }
    }

    /// How many loads are in flight.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
