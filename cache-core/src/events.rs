//! Listeners: code that wants to see what a cache does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::key::render_with;

/// What happened to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A lookup found a live entry.
    Hit,
    /// A lookup found none.
    Miss,
    /// A value was stored.
    Insert,
    /// An entry was removed to make room.
    Evict,
    /// An entry was found, or swept, past its TTL or TTI.
    Expire,
    /// An entry was removed by invalidate, revoke, tag or clear.
    Invalidate,
}

/// One event, as a listener sees it.
pub struct CacheEvent<'a, K> {
    /// What happened.
    pub kind: EventKind,
    /// The name of the cache.
    pub cache: &'a str,
    /// The key it happened to.
    pub key: &'a K,
    pub(crate) render: fn(&K, &mut String),
}

impl<K> CacheEvent<'_, K> {
    /// The key's text form, such as `get_user:123`.
    pub fn key_string(&self) -> String {
        render_with(self.key, self.render)
    }
}

/// Identifies a listener so it can be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

type ListenerFn<K> = Arc<dyn Fn(&CacheEvent<'_, K>) + Send + Sync>;
type ListenerList<K> = Arc<Vec<(ListenerId, ListenerFn<K>)>>;

pub(crate) struct Listeners<K> {
    active: AtomicBool,
    next: AtomicU64,
    list: RwLock<ListenerList<K>>,
}

impl<K> Default for Listeners<K> {
    fn default() -> Self {
        Listeners {
            active: AtomicBool::new(false),
            next: AtomicU64::new(0),
            list: RwLock::new(Arc::new(Vec::new())),
        }
    }
}

impl<K> Listeners<K> {
    /// Whether any listener is registered; checked before building an event.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, f: ListenerFn<K>) -> ListenerId {
        let id = ListenerId(self.next.fetch_add(1, Ordering::Relaxed));
        let mut list = self.list.write();
        let mut v = Vec::clone(&list);
        v.push((id, f));
        *list = Arc::new(v);
        self.active.store(true, Ordering::Relaxed);
        id
    }

    pub(crate) fn remove(&self, id: ListenerId) -> bool {
        let mut list = self.list.write();
        let mut v = Vec::clone(&list);
        let before = v.len();
        v.retain(|(i, _)| *i != id);
        let removed = v.len() != before;
        self.active.store(!v.is_empty(), Ordering::Relaxed);
        *list = Arc::new(v);
        removed
    }

    /// Calls every listener; none of the cache's locks is held.
    #[cold]
    pub(crate) fn fire(&self, kind: EventKind, cache: &str, key: &K, render: fn(&K, &mut String)) {
        let list = self.list.read().clone();
        let ev = CacheEvent {
            kind,
            cache,
            key,
            render,
        };
        for (_, f) in list.iter() {
            // A listener that panics breaks neither the others nor the
            // cache's own bookkeeping, which it interrupts.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&ev))).is_err() {
                tracing::error!(cache, "a cache listener panicked on a {kind:?} event");
            }
        }
    }
}
