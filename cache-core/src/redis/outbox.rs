//! Invalidations that could not reach Redis, kept in order and retried.

use super::*;

impl RedisStore {
    /// Runs an invalidation now, waiting at most `wait`; if it fails, it
    /// joins the outbox, retried every `breaker_cooldown` until it
    /// succeeds. While the outbox holds anything, this node reads nothing
    /// from Redis, so it never serves what a pending invalidation removes.
    /// Returns whether it was applied now.
    pub(crate) fn invalidate_or_queue(self: &Arc<Self>, job: Job, wait: Duration) -> bool {
        // Into the outbox first: from now until it is applied, this node
        // reads nothing from Redis, so no read races the delete.
        let alone = {
            let mut outbox = self.outbox.lock();
            outbox.push_back(job.clone());
            self.pending.store(outbox.len() as u64, Ordering::Release);
            outbox.len() == 1
        };
        if !alone {
            // Keep the order: behind the ones already waiting.
            self.retry_soon();
            return false;
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // A runtime's worker must not wait for Redis: the job runs on
            // the bridge, and this node reads nothing from Redis until it
            // is applied.
            let (me, job) = (self.clone(), job.clone());
            bridge().spawn(async move {
                match tokio::spawn(job(me.clone())).await {
                    Ok(Ok(())) => me.done(&job),
                    _ => me.retry_soon(),
                }
            });
            return false;
        }
        if let Some(Ok(())) = block_on_bridge(wait, job(self.clone())) {
            self.done(&job);
            return true;
        }
        tracing::warn!(
            "a redis invalidation could not be applied now; it is retried until it is, and this node reads nothing from redis meanwhile"
        );
        self.retry_soon();
        false
    }

    /// Takes an applied job off the outbox (once, however many ran it).
    pub(super) fn done(&self, job: &Job) {
        let mut outbox = self.outbox.lock();
        if outbox.front().is_some_and(|j| Arc::ptr_eq(j, job)) {
            outbox.pop_front();
        }
        self.pending.store(outbox.len() as u64, Ordering::Release);
    }

    /// Starts the outbox's retry task unless it runs.
    pub(super) fn retry_soon(self: &Arc<Self>) {
        if self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = Duration::from_millis(self.opts.breaker_cooldown_ms.clamp(10, 60_000));
        bridge().spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(store) = weak.upgrade() else { return };
                loop {
                    let Some(job) = store.outbox.lock().front().cloned() else {
                        break;
                    };
                    // Its own task, so a job that panics is a failed attempt.
                    if !matches!(tokio::spawn(job(store.clone())).await, Ok(Ok(()))) {
                        break;
                    }
                    store.done(&job);
                }
                let outbox = store.outbox.lock();
                if outbox.is_empty() {
                    store.retrying.store(false, Ordering::Release);
                    tracing::info!("pending redis invalidations applied");
                    return;
                }
            }
        });
    }

    /// Whether invalidations wait to be applied in Redis.
    pub fn has_pending_invalidations(&self) -> bool {
        self.pending.load(Ordering::Acquire) != 0
    }

    /// Calls `f` for every invalidation another node publishes.
    pub(crate) fn on_invalidation(&self, f: impl Fn(&Invalidation) + Send + Sync + 'static) {
        self.handlers.write().push(Arc::new(f));
    }
}
