//! The runtime that stores outside the process run on.
//!
//! It outlives any caller's runtime, and sync code reaches it from anywhere:
//! a sync caller waits a bounded time for a future run here, and an async
//! caller awaits the spawned task, so no store I/O ever runs on (or blocks)
//! a worker thread of the caller's runtime.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// The bridge runtime: one worker thread, started on first use.
pub fn bridge() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cache-store")
            .enable_all()
            .build()
            .expect("the store runtime starts")
    })
}

/// Runs `fut` on the bridge runtime and waits for it, from sync code, at
/// most `deadline`; `None` when it did not finish in time.
pub fn block_on_bridge<T: Send + 'static>(
    deadline: Duration,
    fut: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    bridge().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv_timeout(deadline).ok()
}

/// A runtime that only keeps time, so a deadline fires even while a store
/// blocks the bridge's workers (and whatever runtime the caller has).
fn timer() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cache-store-timer")
            .enable_time()
            .build()
            .expect("the store timer starts")
    })
}

/// Runs `fut` on the bridge runtime and awaits it from async code, at most
/// `deadline`; `None` when it did not finish in time (or failed).
pub async fn on_bridge<T: Send + 'static>(
    deadline: Duration,
    fut: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
    let late = tx.clone();
    bridge().spawn(async move {
        let out = fut.await;
        if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(Some(out));
        }
    });
    timer().spawn(async move {
        tokio::time::sleep(deadline).await;
        if let Some(tx) = late.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(None);
        }
    });
    rx.await.ok().flatten()
}
