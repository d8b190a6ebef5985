//! [`Broadcast`]: how invalidations reach the other nodes of a tier, and
//! [`LocalBroadcast`], the in-process one.

use std::sync::Arc;

use parking_lot::RwLock;

use super::{BoxFuture, Invalidation, StoreError};

/// A handler of invalidations other nodes publish.
pub type Handler = Arc<dyn Fn(&Invalidation) + Send + Sync>;

/// Publishes invalidations to the other nodes, and hands each node what the
/// others publish. A node ignores its own messages by their `node` field.
pub trait Broadcast: Send + Sync + 'static {
    /// Sends `msg` to every subscriber.
    fn publish(&self, msg: Invalidation) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Calls `handler` with every message published from now on.
    fn subscribe(&self, handler: Handler);
}

/// A [`Broadcast`] within one process: every node is a store handle in it
/// (tests, and single-process tiers over a shared store).
#[derive(Default)]
pub struct LocalBroadcast {
    handlers: RwLock<Vec<Handler>>,
}

impl LocalBroadcast {
    /// A broadcast without subscribers.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Broadcast for LocalBroadcast {
    fn publish(&self, msg: Invalidation) -> BoxFuture<'_, Result<(), StoreError>> {
        let handlers = self.handlers.read().clone();
        Box::pin(async move {
            // Off the store's runtime: a handler may make sync cache calls.
            let delivered = tokio::task::spawn_blocking(move || {
                for h in &handlers {
                    h(&msg);
                }
            })
            .await;
            delivered.map_err(|e| StoreError::Unavailable(format!("delivery failed: {e}")))
        })
    }

    fn subscribe(&self, handler: Handler) {
        self.handlers.write().push(handler);
    }
}
