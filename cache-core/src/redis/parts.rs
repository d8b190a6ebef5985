//! Redis as the parts a plain store's tier is built from: a [`Broadcast`]
//! over its invalidation channel and a [`Lock`] over `SET NX PX`, so a
//! user's store can borrow either (`backends::register_parts`).

use std::time::Duration;

use super::RedisStore;
use crate::store::broadcast::{Broadcast, Handler};
use crate::store::{BoxFuture, Invalidation, Lock, StoreError};

impl Broadcast for RedisStore {
    fn publish(&self, msg: Invalidation) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.send(msg))
    }

    fn subscribe(&self, handler: Handler) {
        self.on_invalidation(move |msg| handler(msg));
    }
}

impl Lock for RedisStore {
    fn try_lock<'a>(
        &'a self,
        name: &'a str,
        hold: Duration,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let lk = self.named_lock(name);
        Box::pin(self.set_lock(lk, hold.as_millis() as u64))
    }

    fn unlock<'a>(
        &'a self,
        name: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let lk = self.named_lock(name);
        Box::pin(self.release_lock(lk, token))
    }
}

impl RedisStore {
    /// The Redis key of the lock `name`: under the prefix, outside every
    /// namespace's key space (no revoke or clear removes it). With hashed
    /// keys the name is digested, so no key text reaches Redis.
    fn named_lock(&self, name: &str) -> String {
        let name = crate::store::Remote::token(self, name);
        format!("{}:~lock:{name}", self.opts.prefix)
    }
}
