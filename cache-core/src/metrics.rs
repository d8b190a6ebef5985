//! Meters for Prometheus, or any other [`metrics`](::metrics) recorder
//! (feature `metrics`), named as Micrometer names cache meters.
//!
//! Nothing is recorded on the hit path. [`record`] reads every cache's
//! striped counters and every backend's state and writes them to the
//! current recorder: the admin router's `GET /metrics` does that at each
//! scrape, and [`report_every`] does it on an interval for a recorder the
//! application installed. Load times are the one meter recorded as they
//! happen (a histogram, on the miss path).
//!
//! | meter | labels | from |
//! |---|---|---|
//! | `cache_gets_total` | `result="hit"` | [`Stats::hits`] |
//! | `cache_gets_total` | `result="miss"` | [`Stats::misses`] |
//! | `cache_puts_total` | | [`Stats::inserts`] |
//! | `cache_evictions_total` | `cause="size"` | [`Stats::evictions`] |
//! | `cache_evictions_total` | `cause="expired"` | [`Stats::expirations`] |
//! | `cache_evictions_total` | `cause="explicit"` | [`Stats::invalidations`] |
//! | `cache_size` (gauge) | | [`Stats::entries`] |
//! | `cache_load_duration_seconds_count` | `result="success"` | [`Stats::loads`] |
//! | `cache_load_duration_seconds_sum` | `result="success"` | [`Stats::load_nanos`] |
//! | `cache_load_duration_seconds_count` | `result="failure"` | [`Stats::load_failures`] |
//! | `cache_tier_errors_total` | `backend` | [`Health::errors`] |
//! | `cache_breaker_open` (gauge) | `backend` | [`Health::breaker_open`] |
//! | `cache_backend_up` (gauge) | `backend` | [`Health::reachable`] |
//! | `cache_dht_peers` (gauge) | `backend` | [`Health::peers`] |
//!
//! Every cache meter carries `cache` (its identity), `service` (empty
//! outside one) and `tier` (`l1` when values live in the process, `l2`
//! when only outside it).
//!
//! With `[metrics] tenant_labels = true` (or a service's own
//! `tenant_labels`), the meters of a service's caches carry `tenant` too,
//! one series per tenant: `tenant=""` for callers without one. Each cache
//! gives its first `max_tenants` tenants (default 100) series of their own;
//! the rest share one labelled `tenant=""` and `tenant_overflow="true"`.
//! A tenant's `%` and `\` appear percent-encoded ([`label_text`]).
//! A hit then leaves the inlined hit path (about 5 ns more; nothing changes
//! while the label is off), and each scrape visits every key to count
//! `cache_size` per tenant. The load-time histogram has no tenant label.
//!
//! A counter covers every cache of its labels since the process started,
//! those dropped or rebuilt included, so it never goes down; `cache_size`
//! is what the live ones hold (0 once none is).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::metrics::{Label, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use parking_lot::{Mutex, RwLock};

use crate::cache::ErasedCache;
use crate::registry::registry;
use crate::stats::Stats;
use crate::store::Health;
use crate::tenant_counts::TenantRow;

type Source = Arc<dyn Fn() + Send + Sync>;

static SOURCES: RwLock<Vec<Source>> = RwLock::new(Vec::new());

/// Adds meters of another part (such as `cache-device`'s deployment
/// cache): `source` is called by every [`record`], inside the recorder it
/// writes to, and records its own meters with the `metrics` macros.
pub fn add_source(source: impl Fn() + Send + Sync + 'static) {
    SOURCES.write().push(Arc::new(source));
}

/// Which caches a meter's series covers: service, identity, tier, and
/// the tenant's row when meters are labelled by tenant.
type SeriesKey = (String, String, &'static str, Option<SeriesTenant>);

/// A tenant's part of a series key: its name (empty without one), or the
/// overflow row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SeriesTenant {
    /// A tenant with a row of its own; empty for callers without a tenant.
    Named(String),
    /// The row shared by tenants beyond `max_tenants`.
    Overflow,
}

impl From<TenantRow> for SeriesTenant {
    fn from(r: TenantRow) -> Self {
        match r {
            TenantRow::Own(t) => SeriesTenant::Named(label_text(&t.name().unwrap_or_default())),
            TenantRow::Overflow => SeriesTenant::Overflow,
        }
    }
}

/// Per series: the caches seen so far, with what they counted when last
/// seen, and the counts of those that are gone.
#[derive(Default)]
struct Series {
    live: Vec<(Weak<dyn ErasedCache>, Stats)>,
    retired: Stats,
}

static SERIES: Mutex<BTreeMap<SeriesKey, Series>> = Mutex::new(BTreeMap::new());

/// Every series' counts: for a counter, what its caches counted since the
/// process started, those dropped or rebuilt included (so it never goes
/// down); for `entries`, what the live ones hold now (0 once none is).
pub fn cache_stats() -> BTreeMap<SeriesKey, Stats> {
    let reg = registry();
    let mut now: Vec<(SeriesKey, Arc<dyn ErasedCache>, Stats)> = Vec::new();
    for name in reg.names() {
        for c in reg.caches(&name) {
            let tier = match c.remote() {
                Some((_, false)) => "l2",
                _ => "l1",
            };
            let service = c.service().unwrap_or("").to_owned();
            let identity = c.identity().to_owned();
            match c.tenant_stats() {
                Some(rows) => {
                    for (row, s) in rows {
                        let key = (service.clone(), identity.clone(), tier, Some(row.into()));
                        now.push((key, c.clone(), s));
                    }
                }
                None => {
                    let s = c.stats();
                    now.push(((service, identity, tier, None), c, s));
                }
            }
        }
    }
    let mut series = SERIES.lock();
    // Caches dropped since the last reading: their last counts replace
    // what was last read of them (or stand alone, if never read).
    for r in crate::tenant_counts::take_retired() {
        for (row, s) in r.rows {
            let key = (
                r.service.clone(),
                r.identity.clone(),
                r.tier,
                row.map(SeriesTenant::from),
            );
            let entry = series.entry(key).or_default();
            if let Some(i) = entry.live.iter().position(|(w, _)| {
                w.strong_count() == 0 && w.as_ptr() as *const () as usize == r.addr
            }) {
                entry.live.remove(i);
            }
            entry.retired.merge(&s);
            entry.retired.entries = 0;
        }
    }
    // A live cache no longer reported under a series (its tenant labels
    // were turned on or off) keeps its counts there, but holds nothing.
    for entry in series.values_mut() {
        for (_, last) in entry.live.iter_mut() {
            last.entries = 0;
        }
    }
    for (key, c, s) in now {
        let entry = series.entry(key).or_default();
        let weak = Arc::downgrade(&c);
        match entry.live.iter_mut().find(|(w, _)| Weak::ptr_eq(w, &weak)) {
            Some((_, last)) => *last = s,
            None => entry.live.push((weak, s)),
        }
    }
    let mut out = BTreeMap::new();
    for (key, entry) in series.iter_mut() {
        let Series { live, retired } = entry;
        live.retain(|(w, last)| {
            let alive = w.strong_count() > 0;
            if !alive {
                retired.merge(last);
                retired.entries = 0;
            }
            alive
        });
        let mut total = *retired;
        for (_, s) in live.iter() {
            total.merge(s);
        }
        out.insert(key.clone(), total);
    }
    out
}

/// A tenant's name as a label value: `%` and `\` percent-encoded (`%25`,
/// `%5C`), so no two names share a label. The Prometheus exporter drops or
/// moves a backslash before a quote or a line feed (`a\"b` and `a"b` both
/// read `a\"b`); without backslashes its escaping is exact.
pub fn label_text(name: &str) -> String {
    name.replace('%', "%25").replace('\\', "%5C")
}

/// Describes every meter (its help text and unit) to the current recorder.
pub fn describe() {
    describe_counter!("cache_gets_total", "Lookups, by result (hit or miss)");
    describe_counter!("cache_puts_total", "Values stored");
    describe_counter!(
        "cache_evictions_total",
        "Entries removed, by cause: size (capacity), expired (TTL or TTI), explicit (invalidation)"
    );
    describe_gauge!("cache_size", "Entries in the cache now");
    describe_histogram!(
        LOAD_DURATION,
        ::metrics::Unit::Seconds,
        "Time the cached function took on a miss, by result"
    );
    describe_counter!(
        "cache_tier_errors_total",
        "Operations on a backend outside the process that failed or timed out"
    );
    describe_gauge!(
        "cache_breaker_open",
        "1 while a backend's circuit breaker skips it"
    );
    describe_gauge!(
        "cache_backend_up",
        "1 when a backend's last operation succeeded"
    );
    describe_gauge!("cache_dht_peers", "Peers a DHT backend is connected to");
}

/// Writes the current value of every meter to the current recorder (the
/// global one, or one set with `metrics::with_local_recorder`).
pub fn record() {
    describe();
    for ((service, cache, tier, tenant), s) in cache_stats() {
        let labels = |extra: Option<(&'static str, &'static str)>| {
            let mut l = vec![
                Label::new("cache", cache.clone()),
                Label::new("service", service.clone()),
                Label::from_static_parts("tier", tier),
            ];
            match &tenant {
                None => {}
                Some(SeriesTenant::Named(t)) => l.push(Label::new("tenant", t.clone())),
                Some(SeriesTenant::Overflow) => {
                    l.push(Label::from_static_parts("tenant", ""));
                    l.push(Label::from_static_parts("tenant_overflow", "true"));
                }
            }
            if let Some((k, v)) = extra {
                l.push(Label::from_static_parts(k, v));
            }
            l
        };
        counter!("cache_gets_total", labels(Some(("result", "hit")))).absolute(s.hits);
        counter!("cache_gets_total", labels(Some(("result", "miss")))).absolute(s.misses);
        counter!("cache_puts_total", labels(None)).absolute(s.inserts);
        counter!("cache_evictions_total", labels(Some(("cause", "size")))).absolute(s.evictions);
        counter!("cache_evictions_total", labels(Some(("cause", "expired"))))
            .absolute(s.expirations);
        counter!("cache_evictions_total", labels(Some(("cause", "explicit"))))
            .absolute(s.invalidations);
        gauge!("cache_size", labels(None)).set(s.entries as f64);
    }
    for b in crate::health::backends() {
        record_backend(&b.health());
    }
    let sources: Vec<Source> = SOURCES.read().clone();
    for s in sources {
        s();
    }
}

fn record_backend(h: &Health) {
    let l = || vec![Label::new("backend", h.backend.clone())];
    counter!("cache_tier_errors_total", l()).absolute(h.errors);
    gauge!("cache_breaker_open", l()).set(if h.breaker_open { 1.0 } else { 0.0 });
    gauge!("cache_backend_up", l()).set(if h.reachable == Some(true) { 1.0 } else { 0.0 });
    if let Some(p) = h.peers {
        gauge!("cache_dht_peers", l()).set(p as f64);
    }
}

/// Calls [`record`] every `interval` on a thread of its own, for a
/// recorder the application installed globally (StatsD, OpenTelemetry, its
/// own Prometheus exporter). The thread runs until the process ends.
pub fn report_every(interval: Duration) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cache-metrics".into())
        .spawn(move || {
            loop {
                record();
                std::thread::sleep(interval);
            }
        })
}

pub use crate::meter::LOAD_DURATION;

/// Every meter in the Prometheus text format (0.0.4), from the process's
/// own recorder: what the admin router's `GET /metrics` serves. The
/// global recorder, if the application installed one, is not touched.
pub fn prometheus_text() -> String {
    let rec = crate::meter::prometheus();
    ::metrics::with_local_recorder(rec, record);
    rec.handle().render()
}

#[cfg(test)]
mod tests {
    use super::label_text;
    use std::collections::HashMap;

    /// Every string of up to five characters over the ones that matter:
    /// no two share a label, and no label has a backslash.
    #[test]
    fn label_text_is_injective_and_has_no_backslash() {
        let alphabet = ['%', '\\', '2', '5', 'C', '"', '\n'];
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut words = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for w in &words {
                for c in alphabet {
                    next.push(format!("{w}{c}"));
                }
            }
            for w in &next {
                let l = label_text(w);
                assert!(!l.contains('\\'), "{w:?} -> {l:?}");
                if let Some(other) = seen.insert(l.clone(), w.clone()) {
                    panic!("{other:?} and {w:?} both read {l:?}");
                }
            }
            words = next;
        }
        assert_eq!(label_text(""), "");
    }
}
