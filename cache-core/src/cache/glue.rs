//! What generated code calls on a cache: fallible loads that share a
//! clonable error with their waiters, and refreshes in the background.

use super::*;

/// A cache whose loads may fail with `E`: `(&TryLoad::new(c)).load(..)`
/// shares a failed load's error with its waiters when `E: Clone`
/// ([`ViaSharedErr`]), and otherwise lets each waiter compute
/// ([`ViaOwnErr`]).
pub struct TryLoad<'a, K, V, E>(pub &'a Cache<K, V>, std::marker::PhantomData<fn() -> E>);

impl<K, V, E> Clone for TryLoad<'_, K, V, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V, E> Copy for TryLoad<'_, K, V, E> {}

impl<'a, K, V, E> TryLoad<'a, K, V, E> {
    /// Wraps `cache`.
    pub fn new(cache: &'a Cache<K, V>) -> Self {
        TryLoad(cache, std::marker::PhantomData)
    }
}

/// Loads sharing a failed load's clonable error with the waiters.
pub trait ViaSharedErr<'a, K, V, E> {
    /// The value, from the cache or `f`.
    fn load(self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E>;
    /// The value, from the cache or `f`, without blocking.
    fn load_async<F: std::future::Future<Output = Result<V, E>> + 'a>(
        self,
        key: K,
        f: F,
    ) -> impl std::future::Future<Output = Result<V, E>> + 'a;
}

impl<'a, K: CacheKey, V: CacheValue, E: Clone + Send + Sync + 'static> ViaSharedErr<'a, K, V, E>
    for &TryLoad<'a, K, V, E>
{
    fn load(self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        self.0.get_or_try_insert_with_shared(key, f)
    }
    fn load_async<F: std::future::Future<Output = Result<V, E>> + 'a>(
        self,
        key: K,
        f: F,
    ) -> impl std::future::Future<Output = Result<V, E>> + 'a {
        let c = self.0;
        c.get_or_try_insert_with_shared_async(key, f)
    }
}

/// Loads whose errors stay with their callers.
pub trait ViaOwnErr<'a, K, V, E> {
    /// The value, from the cache or `f`.
    fn load(self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E>;
    /// The value, from the cache or `f`, without blocking.
    fn load_async<F: std::future::Future<Output = Result<V, E>> + 'a>(
        self,
        key: K,
        f: F,
    ) -> impl std::future::Future<Output = Result<V, E>> + 'a;
}

impl<'a, K: CacheKey, V: CacheValue, E: 'a> ViaOwnErr<'a, K, V, E> for TryLoad<'a, K, V, E> {
    fn load(self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        self.0.get_or_try_insert_with(key, f)
    }
    fn load_async<F: std::future::Future<Output = Result<V, E>> + 'a>(
        self,
        key: K,
        f: F,
    ) -> impl std::future::Future<Output = Result<V, E>> + 'a {
        let c = self.0;
        c.get_or_try_insert_with_async(key, f)
    }
}

/// Runs a refresh of a sync function on its own thread.
pub fn refresh_in_thread(f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name("cache-refresh".into())
        .spawn(f)
    {
        tracing::warn!("cache refresh not started: {e}");
    }
}

/// Runs a refresh of an async function as a tokio task. Outside a tokio
/// runtime the refresh is dropped and the entry lives until its TTL.
pub fn refresh_in_task(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(fut);
        }
        Err(_) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!("refresh-ahead needs a tokio runtime; refreshes are skipped")
            });
        }
    }
}
