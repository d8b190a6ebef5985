//! [`Lock`]: a lock across nodes on one missed key, so that one node
//! computes it while the others wait for its value.
//!
//! Optional: without one, each node that misses a key computes it (within
//! a node, single-flight already makes that one computation). Redis
//! implements it with `SET NX PX` and a checked delete; [`MemoryStore`]
//! implements it in the process, so the tier's lock is tested without a
//! server; a user's store registers one with
//! [`backends::register_parts`](super::backends::register_parts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{BoxFuture, MemoryStore, Store, StoreError};
use crate::store::remote::Lookup;

/// A lock across nodes, held for a bounded time.
pub trait Lock: Send + Sync + 'static {
    /// Takes the lock `name` for at most `hold`: `Ok(Some(token))` when
    /// taken, `Ok(None)` when another holder has it.
    fn try_lock<'a>(
        &'a self,
        name: &'a str,
        hold: Duration,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    /// Releases `name` if `token` still holds it (a lock whose time ran out
    /// may have been taken by another).
    fn unlock<'a>(&'a self, name: &'a str, token: &'a str)
    -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A lock's holder in the process: its token and when its time runs out.
pub(super) type Held = HashMap<String, (String, u64)>;

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

impl Lock for MemoryStore {
    fn try_lock<'a>(
        &'a self,
        name: &'a str,
        hold: Duration,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let now = self.clock.now_ms();
        let mut locks = self.locks.lock();
        let taken = match locks.get(name) {
            Some((_, until)) if *until > now => None,
            _ => {
                let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed).to_string();
                let until = now.saturating_add((hold.as_millis() as u64).max(1));
                locks.insert(name.to_owned(), (token.clone(), until));
                Some(token)
            }
        };
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn unlock<'a>(
        &'a self,
        name: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut locks = self.locks.lock();
        if locks.get(name).is_some_and(|(t, _)| t == token) {
            locks.remove(name);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A lock as a [`StoreRemote`](super::StoreRemote) uses it.
#[derive(Clone)]
pub(crate) struct TierLock {
    pub(crate) lock: std::sync::Arc<dyn Lock>,
    /// How long the holder may take, and the others wait.
    pub(crate) hold: Duration,
}

impl TierLock {
    /// The lock's name for a stored key (which names its cache, tenant
    /// and key mask).
    pub(crate) fn name(stored_key: &str) -> String {
        format!("~lock:{stored_key}")
    }

    /// After a miss on `key`: take the lock (compute, then unlock), or wait
    /// at most `hold` for the holder's value, reading `key` of `ns` in
    /// `store` every 10 ms (the bytes as stored). Each store call is bounded
    /// by `bound`; a lock that cannot be reached is a miss.
    pub(crate) async fn after_miss(
        &self,
        store: &dyn Store,
        ns: &str,
        key: &str,
        bound: Duration,
    ) -> Lookup {
        let name = Self::name(key);
        match tokio::time::timeout(bound, self.lock.try_lock(&name, self.hold)).await {
            Ok(Ok(Some(token))) => return Lookup::Locked(token, None),
            Ok(Ok(None)) => {}
            _ => return Lookup::Missing(None),
        }
        let deadline = Instant::now() + self.hold;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Ok(Ok(Some(b))) = tokio::time::timeout(bound, store.get(ns, key)).await {
                return Lookup::Found(b);
            }
        }
        Lookup::Missing(None)
    }
}
