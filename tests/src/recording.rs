//! [`RecordingStore`]: a user's store that counts and keeps what it is
//! given.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::store::BoxFuture;
use cache_core::{Pattern, Store, StoreError};

/// A store written outside cache-core, as a user would: it keeps bytes in
/// a map per namespace (no TTL), counts each operation, can be searched for
/// what it was given, and can be made to misbehave.
#[derive(Default)]
pub struct RecordingStore {
    data: Mutex<HashMap<String, HashMap<String, Vec<u8>>>>,
    gets: AtomicUsize,
    sets: AtomicUsize,
    deletes: AtomicUsize,
    revokes: AtomicUsize,
    clears: AtomicUsize,
    /// Removals panic while set (a store with a bug).
    pub panic_on_remove: AtomicBool,
    /// Reads block their thread this long while set (a store doing sync I/O).
    pub block_reads_ms: AtomicU64,
}

impl RecordingStore {
    /// Calls so far: get, set, delete, revoke, clear.
    pub fn count(&self) -> [usize; 5] {
        [
            self.gets.load(Ordering::SeqCst),
            self.sets.load(Ordering::SeqCst),
            self.deletes.load(Ordering::SeqCst),
            self.revokes.load(Ordering::SeqCst),
            self.clears.load(Ordering::SeqCst),
        ]
    }
    /// Entries held, over every namespace.
    pub fn len(&self) -> usize {
        self.data.lock().unwrap().values().map(HashMap::len).sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `needle` appears in any namespace, key or value it holds.
    pub fn contains(&self, needle: &[u8]) -> bool {
        let has = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        self.data
            .lock()
            .unwrap()
            .iter()
            .any(|(ns, m)| has(ns.as_bytes()) || m.iter().any(|(k, v)| has(k.as_bytes()) || has(v)))
    }
}

impl Store for RecordingStore {
    fn get<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let block = self.block_reads_ms.load(Ordering::SeqCst);
        if block != 0 {
            std::thread::sleep(Duration::from_millis(block));
        }
        let v = self
            .data
            .lock()
            .unwrap()
            .get(ns)
            .and_then(|m| m.get(key).cloned());
        Box::pin(async move { Ok(v) })
    }
    fn set<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        value: Vec<u8>,
        _ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.data
            .lock()
            .unwrap()
            .entry(ns.to_owned())
            .or_default()
            .insert(key.to_owned(), value);
        Box::pin(async { Ok(()) })
    }
    fn delete<'a>(&'a self, ns: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panic_on_remove.load(Ordering::SeqCst), "a store bug");
        let hit = self
            .data
            .lock()
            .unwrap()
            .get_mut(ns)
            .is_some_and(|m| m.remove(key).is_some());
        Box::pin(async move { Ok(hit) })
    }
    fn revoke<'a>(
        &'a self,
        ns: &'a str,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.revokes.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panic_on_remove.load(Ordering::SeqCst), "a store bug");
        let mut data = self.data.lock().unwrap();
        let n = data.get_mut(ns).map_or(0, |m| {
            let before = m.len();
            m.retain(|k, _| !pattern.matches(k));
            (before - m.len()) as u64
        });
        Box::pin(async move { Ok(n) })
    }
    fn clear<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.clears.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panic_on_remove.load(Ordering::SeqCst), "a store bug");
        let n = self
            .data
            .lock()
            .unwrap()
            .remove(ns)
            .map_or(0, |m| m.len() as u64);
        Box::pin(async move { Ok(n) })
    }
}
