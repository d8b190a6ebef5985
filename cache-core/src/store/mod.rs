//! Stores: where encoded values live when they leave the process's own cache.
//!
//! A [`Store`] holds bytes under a namespace (a service, a tenant) and a key,
//! each with its own TTL. It is async and object-safe so a Redis or disk
//! store plugs in behind `Arc<dyn Store>`. [`TypedStore`] puts a [`Codec`] in
//! front of one: a value that no longer decodes reads as a miss and is
//! counted, never returned. [`MemoryStore`] is the in-process reference
//! implementation, and the behaviour every other store must match.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;

pub mod adapter;
pub mod backends;
pub mod bridge;
pub mod broadcast;
pub mod lock;
pub mod remote;
pub mod state;

use crate::codec::{Codec, CodecError, Postcard};
use crate::pattern::Pattern;
pub use adapter::StoreRemote;
pub use broadcast::{Broadcast, LocalBroadcast};
pub use lock::Lock;
pub use remote::Remote;
pub use state::Health;

/// A boxed, sendable future, as [`Store`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or answered an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The operation did not finish in time.
    #[error("store operation timed out after {0:?}")]
    Timeout(Duration),
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The store cannot do this operation (such as a glob revoke over
    /// hashed keys); nothing was done.
    #[error("{0}")]
    Unsupported(String),
}

/// Bytes by namespace and key, with a TTL per entry.
pub trait Store: Send + Sync + 'static {
    /// The bytes under `key`, if present and not expired.
    fn get<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
    /// Stores `value` under `key`; `ttl` of `None` keeps it until removed.
    fn set<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Removes `key`; true if it was present.
    fn delete<'a>(&'a self, ns: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Removes the keys of `ns` that match `pattern`; returns how many.
    fn revoke<'a>(
        &'a self,
        ns: &'a str,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// Removes every key of `ns`; returns how many.
    fn clear<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// The bytes under each of `keys`, in order. The default reads them
    /// one at a time; a store with a batch read (Redis's `MGET`) overrides
    /// it.
    fn get_many<'a>(
        &'a self,
        ns: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(self.get(ns, k).await?);
            }
            Ok(out)
        })
    }
    /// Stores each `(key, value)` with `ttl`. The default writes them one
    /// at a time, stopping at the first error (the ones before it are
    /// stored); a store with batched writes overrides it.
    fn set_many<'a>(
        &'a self,
        ns: &'a str,
        entries: Vec<(String, Vec<u8>)>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for (k, v) in entries {
                self.set(ns, &k, v, ttl).await?;
            }
            Ok(())
        })
    }
    /// Removes each of `keys`; returns how many were present. The default
    /// removes them one at a time.
    fn delete_many<'a>(
        &'a self,
        ns: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut n = 0;
            for k in keys {
                n += u64::from(self.delete(ns, k).await?);
            }
            Ok(n)
        })
    }
    /// Adds what only the store knows to `health` (peers, a breaker, a
    /// channel); the tier over it fills in reachability and errors.
    fn report(&self, health: &mut Health) {
        let _ = health;
    }
}

type Slot = (Vec<u8>, u64);

/// An in-process [`Store`], and [`Lock`].
#[derive(Default)]
pub struct MemoryStore {
    clock: Clock,
    data: Mutex<HashMap<String, HashMap<String, Slot>>>,
    locks: Mutex<lock::Held>,
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store on `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        MemoryStore {
            clock,
            data: Mutex::default(),
            locks: Mutex::default(),
        }
    }

    fn remove_where(&self, ns: &str, pred: impl Fn(&str) -> bool) -> u64 {
        let mut data = self.data.lock();
        let Some(m) = data.get_mut(ns) else { return 0 };
        let before = m.len();
        m.retain(|k, _| !pred(k));
        (before - m.len()) as u64
    }
}

impl Store for MemoryStore {
    fn get<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let now = self.clock.now_ms();
        let mut data = self.data.lock();
        let out = match data.get_mut(ns) {
            Some(m) => match m.get(key) {
                Some((_, exp)) if now >= *exp => {
                    m.remove(key);
                    None
                }
                Some((v, _)) => Some(v.clone()),
                None => None,
            },
            None => None,
        };
        Box::pin(std::future::ready(Ok(out)))
    }

    fn set<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let exp = ttl.map_or(u64::MAX, |t| {
            self.clock.now_ms().saturating_add(t.as_millis() as u64)
        });
        self.data
            .lock()
            .entry(ns.to_owned())
            .or_default()
            .insert(key.to_owned(), (value, exp));
        Box::pin(std::future::ready(Ok(())))
    }

    fn delete<'a>(&'a self, ns: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let removed = self
            .data
            .lock()
            .get_mut(ns)
            .is_some_and(|m| m.remove(key).is_some());
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn revoke<'a>(
        &'a self,
        ns: &'a str,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let n = self.remove_where(ns, |k| pattern.matches(k));
        Box::pin(std::future::ready(Ok(n)))
    }

    fn clear<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        let n = self.data.lock().remove(ns).map_or(0, |m| m.len() as u64);
        Box::pin(std::future::ready(Ok(n)))
    }
}

/// A [`Store`] seen through a [`Codec`] for values of type `V`.
pub struct TypedStore<V, C: Codec = Postcard> {
    store: Arc<dyn Store>,
    codec: C,
    ns: String,
    undecodable: AtomicU64,
    _v: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> TypedStore<V, Postcard> {
    /// Values of `V` in namespace `ns` of `store`, with the postcard codec.
    pub fn new(store: Arc<dyn Store>, ns: impl Into<String>) -> Self {
        Self::with_codec(store, ns, Postcard)
    }
}

impl<V: Serialize + DeserializeOwned, C: Codec> TypedStore<V, C> {
    /// Values of `V` in namespace `ns` of `store`, with `codec`.
    pub fn with_codec(store: Arc<dyn Store>, ns: impl Into<String>, codec: C) -> Self {
        TypedStore {
            store,
            codec,
            ns: ns.into(),
            undecodable: AtomicU64::new(0),
            _v: PhantomData,
        }
    }

    /// The value under `key`. One that does not decode (another type, another
    /// format, corrupt bytes) is a miss: it is logged, counted and deleted.
    pub async fn get(&self, key: &str) -> Result<Option<V>, StoreError> {
        let Some(bytes) = self.store.get(&self.ns, key).await? else {
            return Ok(None);
        };
        match self.codec.decode(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                self.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(ns = %self.ns, key, "dropping an entry that does not decode: {e}");
                let _ = self.store.delete(&self.ns, key).await;
                Ok(None)
            }
        }
    }

    /// Encodes and stores `value` under `key`.
    pub async fn set(&self, key: &str, value: &V, ttl: Option<Duration>) -> Result<(), StoreError> {
        let bytes = self.codec.encode(value)?;
        self.store.set(&self.ns, key, bytes, ttl).await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.store.delete(&self.ns, key).await
    }

    /// Removes what matches `pattern`.
    pub async fn revoke(&self, pattern: &Pattern) -> Result<u64, StoreError> {
        self.store.revoke(&self.ns, pattern).await
    }

    /// Removes everything in the namespace.
    pub async fn clear(&self) -> Result<u64, StoreError> {
        self.store.clear(&self.ns).await
    }

    /// How many reads found bytes that did not decode.
    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }
}

/// A message on the invalidation channel, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invalidation {
    /// The node that sent it, so it ignores its own.
    pub node: u64,
    /// The cache: its service and identity segments, `service:identity`.
    pub cache: String,
    /// `key` (by its token), `pattern`, `tag` (by its token) or `clear`.
    pub op: String,
    /// The key's or tag's token (its text, or with `hash_keys` a keyed
    /// digest: no argument value travels), or the pattern.
    pub arg: String,
    /// The tenant's name, if scoped.
    pub tenant: Option<String>,
}

/// Where invalidations from other nodes go. The registry submits one at
/// link time, so a store delivers to it without importing it.
pub struct InvalidationSink(pub fn(&Invalidation));
inventory::collect!(InvalidationSink);

/// Hands `msg` to every [`InvalidationSink`].
pub fn deliver_invalidation(msg: &Invalidation) {
    for sink in inventory::iter::<InvalidationSink> {
        (sink.0)(msg);
    }
}
