//! Load timings through the [`metrics`] facade (feature `metrics`): the one
//! meter recorded as it happens, on the miss path. Every other meter is read
//! from a cache's counters when exported, so a hit costs
//! nothing more with the feature on.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Label;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// The histogram of load times, by `cache`, `service` and `result`.
pub const LOAD_DURATION: &str = "cache_load_duration_seconds";

/// The process's own Prometheus recorder: never installed globally (the
/// application keeps that slot), written to by every load and, at each
/// scrape, by the exporting layer above.
pub(crate) fn prometheus() -> &'static PrometheusRecorder {
    static REC: OnceLock<PrometheusRecorder> = OnceLock::new();
    // Built on a thread of its own: a load may run on a thread with a
    // small stack, and building the recorder takes more than a load does.
    REC.get_or_init(|| {
        std::thread::scope(|s| s.spawn(build).join().expect("building the recorder"))
    })
}

fn build() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(LOAD_DURATION.into()),
            &[
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
            ],
        )
        .expect("the buckets are not empty")
        .build_recorder()
}

/// Records one load of `cache` (in `service`) that took `took`.
pub(crate) fn load(service: Option<&str>, cache: &str, took: Duration, ok: bool) {
    let record = || {
        let labels = vec![
            Label::new("cache", cache.to_owned()),
            Label::new("service", service.unwrap_or("").to_owned()),
            Label::from_static_parts("result", if ok { "success" } else { "failure" }),
        ];
        metrics::histogram!(LOAD_DURATION, labels).record(took.as_secs_f64());
    };
    record();
    metrics::with_local_recorder(prometheus(), record);
}
