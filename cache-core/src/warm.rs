//! Warming: running a function over many inputs ahead of demand, a bounded
//! number at a time, with progress through `tracing` and counts at the end.
//!
//! Calling a `#[cached]` function warms its cache (a miss computes and
//! stores, a hit costs nothing), so `warm(ids, 8, |id| get_user(id))` primes
//! it for those arguments. `Cache::warm_from` and `Cache::warm_keys` warm a
//! typed cache from a [`Source`](crate::source::Source).

use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::future::Either;

/// What a warm run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmReport {
    /// Inputs it was given.
    pub total: usize,
    /// Inputs whose call succeeded.
    pub succeeded: usize,
    /// Inputs for which there was nothing (`None`, or a source without the
    /// key).
    pub absent: usize,
    /// Inputs whose call failed (an `Err`, or a panic).
    pub failed: usize,
    /// Values not stored: their key was invalidated while they were read
    /// (or the cache refused them), so they may be stale.
    pub skipped: usize,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// How long the run took.
    pub took: Duration,
}

impl WarmReport {
    /// A report of `total` values of which `stored` were stored and
    /// `skipped` were not.
    pub(crate) fn counted(total: usize, stored: usize, skipped: usize, took: Duration) -> Self {
        WarmReport {
            total,
            succeeded: stored,
            skipped,
            took,
            ..WarmReport::default()
        }
    }
}

/// How one warming call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warmed {
    /// It produced a value.
    Value,
    /// There was nothing to produce.
    Absent,
    /// A value was produced and not stored.
    Skipped,
    /// It failed, saying why.
    Failed(String),
}

/// What a warming call returns: `()` (or any value through
/// [`Warmed::Value`]), an `Option` (`None` counts as absent) or a `Result`
/// (`Err` counts as failed).
pub trait WarmOutcome {
    /// How the call ended.
    fn warmed(&self) -> Warmed;
}

impl WarmOutcome for () {
    fn warmed(&self) -> Warmed {
        Warmed::Value
    }
}

impl WarmOutcome for Warmed {
    fn warmed(&self) -> Warmed {
        self.clone()
    }
}

impl<T> WarmOutcome for Option<T> {
    fn warmed(&self) -> Warmed {
        match self {
            Some(_) => Warmed::Value,
            None => Warmed::Absent,
        }
    }
}

impl<T: WarmOutcome, E: Display> WarmOutcome for Result<T, E> {
    fn warmed(&self) -> Warmed {
        match self {
            Ok(t) => t.warmed(),
            Err(e) => Warmed::Failed(e.to_string()),
        }
    }
}

/// Tallies a run and reports progress about every tenth of the way.
struct Tally {
    total: usize,
    done: AtomicUsize,
    counts: Mutex<WarmReport>,
    started: Instant,
    label: String,
}

impl Tally {
    fn new(total: usize, label: &str) -> Self {
        tracing::info!(target: "cache_core::warm", total, "warming {label}");
        Tally {
            total,
            done: AtomicUsize::new(0),
            counts: Mutex::new(WarmReport {
                total,
                ..WarmReport::default()
            }),
            started: Instant::now(),
            label: label.to_string(),
        }
    }

    fn record(&self, outcome: Warmed) {
        {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            match outcome {
                Warmed::Value => c.succeeded += 1,
                Warmed::Absent => c.absent += 1,
                Warmed::Skipped => c.skipped += 1,
                Warmed::Failed(e) => {
                    c.failed += 1;
                    if c.first_error.is_none() {
                        tracing::warn!(target: "cache_core::warm", "warming {}: {e}", self.label);
                        c.first_error = Some(e);
                    }
                }
            }
        }
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let step = self.total.div_ceil(10).max(1);
        if done.is_multiple_of(step) && done < self.total {
            tracing::info!(
                target: "cache_core::warm",
                done,
                total = self.total,
                "warming {}: {}%",
                self.label,
                done * 100 / self.total
            );
        }
    }

    fn finish(self) -> WarmReport {
        let mut r = self.counts.into_inner().unwrap_or_else(|p| p.into_inner());
        r.took = self.started.elapsed();
        tracing::info!(
            target: "cache_core::warm",
            total = r.total,
            succeeded = r.succeeded,
            absent = r.absent,
            failed = r.failed,
            skipped = r.skipped,
            took_ms = r.took.as_millis() as u64,
            "warmed {}",
            self.label
        );
        r
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> Warmed {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    Warmed::Failed(format!("panicked: {what}"))
}

/// Calls `f` on each input, at most `concurrency` (at least 1) at a time on
/// scoped threads, and returns the counts. A call that panics counts as
/// failed; the others go on.
pub fn warm<A, R, F>(inputs: impl IntoIterator<Item = A>, concurrency: usize, f: F) -> WarmReport
where
    A: Send,
    R: WarmOutcome,
    F: Fn(A) -> R + Sync,
{
    warm_labelled("inputs", inputs, concurrency, f)
}

/// [`warm`], naming what it warms in its progress lines.
pub fn warm_labelled<A, R, F>(
    label: &str,
    inputs: impl IntoIterator<Item = A>,
    concurrency: usize,
    f: F,
) -> WarmReport
where
    A: Send,
    R: WarmOutcome,
    F: Fn(A) -> R + Sync,
{
    let inputs: Vec<A> = inputs.into_iter().collect();
    let tally = Tally::new(inputs.len(), label);
    let workers = concurrency.max(1).min(inputs.len());
    let queue = Mutex::new(inputs.into_iter());
    let next = || queue.lock().unwrap_or_else(|p| p.into_inner()).next();
    let work = || {
        while let Some(a) = next() {
            let outcome = catch_unwind(AssertUnwindSafe(|| f(a).warmed()));
            tally.record(outcome.unwrap_or_else(panic_text));
        }
    };
    if workers <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    tally.finish()
}

/// The async [`warm`]: polls at most `concurrency` (at least 1) of the
/// calls' futures at a time, in the caller's task.
pub async fn warm_async<A, R, F, Fut>(
    inputs: impl IntoIterator<Item = A>,
    concurrency: usize,
    f: F,
) -> WarmReport
where
    R: WarmOutcome,
    F: Fn(A) -> Fut,
    Fut: Future<Output = R>,
{
    let inputs: Vec<A> = inputs.into_iter().collect();
    let tally = Tally::new(inputs.len(), "inputs");
    let tally_ref = &tally;
    futures_util::stream::iter(inputs)
        .map(|a| match catch_unwind(AssertUnwindSafe(|| f(a))) {
            // A panic in `f` itself, before any future, fails this input.
            Ok(fut) => Either::Left(AssertUnwindSafe(fut).catch_unwind()),
            Err(p) => Either::Right(std::future::ready(Err(p))),
        })
        .buffer_unordered(concurrency.max(1))
        .for_each(|outcome| {
            tally_ref.record(outcome.map_or_else(panic_text, |r| r.warmed()));
            std::future::ready(())
        })
        .await;
    tally.finish()
}
