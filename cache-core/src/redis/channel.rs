//! The invalidation channel: publishing, RESP3 pushes, resubscription,
//! and what a node drops when the channel was lost.

use super::*;

impl RedisStore {
    /// Publishes an invalidation for the other nodes.
    pub(crate) async fn publish(&self, mut msg: Invalidation) -> Result<(), StoreError> {
        msg.node = self.node;
        self.send(msg).await
    }

    /// Publishes `msg` as it is (a [`Broadcast`](crate::store::Broadcast)
    /// user names its own node).
    pub(super) async fn send(&self, msg: Invalidation) -> Result<(), StoreError> {
        let payload = serde_json::to_string(&msg).expect("serializes");
        let ch = channel(&self.opts.prefix);
        self.guarded(Op::Invalidate, "publish", |mut c| async move {
            c.publish::<_, _, ()>(ch, payload).await
        })
        .await
    }

    pub(super) fn on_push(self: &Arc<Self>, push: PushInfo) {
        match push.kind {
            redis::PushKind::Message => {}
            // While the channel is down, other nodes' invalidations are
            // lost: once it is back, every local copy goes (as Redis's
            // client-side caching flushes its tracking table). Until then
            // local copies still serve, so an outage fails no call. The
            // connection comes back only when a command is sent, so a node
            // that serves everything locally pings until it is back.
            redis::PushKind::Disconnection => {
                if !self.channel_lost.swap(true, Ordering::AcqRel) {
                    self.ping_until_back();
                }
                return;
            }
            redis::PushKind::Subscribe => {
                if self.channel_lost.swap(false, Ordering::AcqRel) {
                    self.counters
                        .resubscriptions
                        .fetch_add(1, Ordering::Relaxed);
                    self.flush_locals();
                }
                return;
            }
            _ => return,
        }
        // data: [channel, payload]
        let Some(redis::Value::BulkString(bytes)) = push.data.get(1) else {
            return;
        };
        let Ok(msg) = serde_json::from_slice::<Invalidation>(bytes) else {
            tracing::warn!("ignoring a malformed invalidation message");
            return;
        };
        if msg.node == self.node {
            return;
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let handlers = self.handlers.read().clone();
        for h in handlers {
            h(&msg);
        }
    }

    /// Sends a PING every 250 ms until the channel is subscribed again
    /// (each command lets the connection manager reconnect, and it then
    /// resubscribes by itself).
    pub(super) fn ping_until_back(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        bridge().spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(store) = weak.upgrade() else { return };
                if !store.channel_lost.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(mut c) = store.conn().await {
                    let ping = redis::cmd("PING");
                    let _ = tokio::time::timeout(
                        Duration::from_millis(store.opts.timeout_ms.max(50)),
                        ping.query_async::<String>(&mut c),
                    )
                    .await;
                }
            }
        });
    }

    /// Tells every cache over this store to drop its local copies.
    pub(super) fn flush_locals(&self) {
        let msg = Invalidation {
            // Names the store, so only caches over it flush.
            node: self.node,
            cache: String::new(),
            op: "flush".into(),
            arg: String::new(),
            tenant: None,
        };
        let handlers = self.handlers.read().clone();
        for h in handlers {
            h(&msg);
        }
    }
}
