//! Writes that replace a key's value everywhere: `insert` and
//! `#[cache_put]`.

use super::*;

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// Replaces `key`'s value here and in every tier: what was there, and
    /// what loads under way would store, is invalidated first.
    pub(super) fn put(&self, key: K, value: V) {
        self.put_at(key, value, self.priority(), None);
    }

    /// [`Inner::put`] at `priority`, for `ttl_ms` if given (else the
    /// value's own TTL, or the cache's). Whatever depends on the key is
    /// invalidated.
    pub(super) fn put_at(&self, key: K, value: V, priority: Priority, ttl_ms: Option<u64>) {
        let ttl = ttl_ms.or_else(|| self.ttl_of(&value));
        // The key, kept to invalidate its dependants, when any may exist.
        let k = (self.cascade.is_some() && crate::depend::declared()).then(|| key.clone());
        if self.tier().is_some() {
            let text = render_with(&key, self.render);
            let _ = self.propagate(RemoteOp::Key(text), Some(self.tenant(&key)));
            if ttl.is_some() {
                block_on(self.remote_set(&key, &value, None, ttl));
            }
        }
        match ttl {
            // Loads under way store nothing after it; primes are not undone.
            Some(ttl) => {
                self.store_entry(key, value, ttl, Guard::Replace(None), priority);
            }
            // A value with no time to live replaces the old one by nothing.
            None => {
                self.invalidate(&key);
            }
        }
        if let Some(k) = k {
            self.invalidate_dependants(&k);
        }
    }
}
