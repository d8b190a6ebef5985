//! Tenant labels on the meters: off by default, one series per tenant up
//! to `max_tenants` when on, the rest in one overflow series; names that
//! cannot collide; and counts kept across a dropped cache. The tests share
//! the process's configuration, so they take turns.

use cache_core::namespace::tenant_id;
use cache_core::{Cache, CacheBuilder, TenantId, cache_service, cached, with_tenant};
use std::sync::Mutex;

/// Held by each test: they set the process's configuration.
static TURN: Mutex<()> = Mutex::new(());

#[derive(Clone)]
struct Desk;

#[cache_service(name = "ops_tenants")]
impl Desk {
    #[cached]
    fn seat(&self, id: u64) -> String {
        format!("seat {id} for {:?}", cache_core::current_tenant().name())
    }
}

/// Every series of `name` for the cache `seat`, by its labels after
/// `cache`, `service` and `tier` (sorted as the exporter writes them).
fn seat_series(text: &str, name: &str) -> Vec<(String, f64)> {
    let head = format!(r#"{name}{{cache="seat",service="ops_tenants",tier="l1""#);
    let mut out: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&head))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once(' ').unwrap();
            (sorted_labels(labels), value.parse().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `,a="x",b="y"}` as `a="x",b="y"`, sorted by name (values escaped as
/// written).
fn sorted_labels(text: &str) -> String {
    let mut labels = Vec::new();
    let mut rest = text.trim_start_matches(',');
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut end = 0;
        let bytes = after.as_bytes();
        while bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        labels.push(format!(r#"{name}="{}""#, &after[..end]));
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels.sort();
    labels.join(",")
}

/// Tenant labels: off by default (no `tenant` label at all); when
/// configured, one series per tenant up to `max_tenants`, the rest in one
/// overflow series, hostile names escaped, and entries counted per tenant.
#[test]
fn tenant_labels_are_off_by_default_and_bounded_when_on() {
    use cache_core::config;
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let d = Desk;
    with_tenant("acme", || d.seat(1));
    with_tenant("acme", || d.seat(1));
    let text = cache_core::metrics::prometheus_text();
    assert_eq!(
        seat_series(&text, "cache_gets_total"),
        vec![
            (r#"result="hit""#.into(), 1.0),
            (r#"result="miss""#.into(), 1.0)
        ]
    );
    let seat_lines = || text.lines().filter(|l| l.contains(r#"cache="seat""#));
    assert!(seat_lines().count() > 0);
    assert!(
        !seat_lines().any(|l| l.contains("tenant=")),
        "no tenant label unless asked:\n{text}"
    );

    let on = serde_json::json!({
        "metrics": {"max_tenants": 3},
        "services": {"ops_tenants": {"tenant_labels": true}},
    });
    config::set(serde_json::from_value(on).unwrap()).unwrap();
    let weird = "we\"ird\\\nna%me}";
    with_tenant("acme", || d.seat(1)); // hit
    with_tenant("acme", || d.seat(2)); // miss
    for _ in 0..2 {
        with_tenant("globex", || d.seat(1)); // miss, hit
        with_tenant(weird, || d.seat(1)); // miss, hit
    }
    d.seat(1); // no tenant: beyond the bound
    with_tenant("initech", || d.seat(1)); // beyond the bound
    let text = cache_core::metrics::prometheus_text();
    cache_tests::prometheus::promtool_check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let gets = seat_series(&text, "cache_gets_total");
    let expect = |t: &str, hit: f64, miss: f64| {
        for (result, n) in [("hit", hit), ("miss", miss)] {
            let labels = format!(r#"result="{result}",tenant="{t}""#);
            assert!(
                gets.contains(&(labels.clone(), n)),
                "{labels} = {n}: {gets:?}"
            );
        }
    };
    expect("acme", 1.0, 1.0);
    expect("globex", 1.0, 1.0);
    // Backslashes and percent signs percent-encoded, the rest escaped.
    expect(r#"we\"ird%5C\nna%25me}"#, 1.0, 1.0);
    let overflow = r#"tenant="",tenant_overflow="true""#;
    assert!(
        gets.contains(&(format!(r#"result="miss",{overflow}"#), 2.0)),
        "{gets:?}"
    );
    // The series from before stays as it was: nothing counted twice.
    assert!(gets.contains(&(r#"result="hit""#.into(), 1.0)), "{gets:?}");
    assert_eq!(gets.len(), 2 + 2 * 3 + 2, "{gets:?}");
    let sizes = seat_series(&text, "cache_size");
    for (t, n) in [("acme", 2.0), ("globex", 1.0), ("initech", 0.0)] {
        let found = sizes.iter().find(|(l, _)| l == &format!(r#"tenant="{t}""#));
        assert_eq!(found.map(|f| f.1), (n > 0.0).then_some(n), "{t}: {sizes:?}");
    }
    assert!(sizes.contains(&(overflow.into(), 2.0)), "{sizes:?}");
    assert!(
        sizes.contains(&(String::new(), 0.0)),
        "the untenanted size: {sizes:?}"
    );

    // Off again: counts go to the cache's own series only.
    config::set(cache_core::config::Config::default()).unwrap();
    with_tenant("acme", || d.seat(1));
    let gets = seat_series(&cache_core::metrics::prometheus_text(), "cache_gets_total");
    assert!(
        gets.contains(&(r#"result="hit",tenant="acme""#.into(), 1.0)),
        "{gets:?}"
    );
    // The cache's own series counts everything since it started.
    assert!(gets.contains(&(r#"result="hit""#.into(), 5.0)), "{gets:?}");
}

fn tenant_of(k: &(String, u64)) -> TenantId {
    tenant_id(&k.0)
}

fn labels_on() {
    let cfg = serde_json::json!({"metrics": {"max_tenants": 3},
        "services": {"svc_m": {"tenant_labels": true}}});
    cache_core::config::set(serde_json::from_value(cfg).unwrap()).unwrap();
}

fn build(name: &str, service: &str) -> Cache<(String, u64), u64> {
    CacheBuilder::new()
        .name(name)
        .service(service)
        .register(true)
        .tenant_of(tenant_of)
        .build()
}

/// `metric`'s series of cache `name`, by their labels other than `cache`,
/// `service` and `tier`.
fn series(text: &str, metric: &str, name: &str) -> Vec<(String, f64)> {
    let head = format!(r#"{metric}{{cache="{name}","#);
    let mut out: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&head))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once(' ').unwrap();
            let labels = sorted_labels(labels);
            let labels: Vec<&str> = labels
                .split(',')
                .filter(|l| !l.starts_with("service=") && !l.starts_with("tier="))
                .collect();
            (labels.join(","), value.parse().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Breaks an outside attack found, kept: a cache dropped before any
/// scrape lost what it counted.
#[test]
fn counts_of_a_cache_dropped_before_a_scrape_are_kept() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    labels_on();
    let c = build("m_dropped", "svc_m");
    with_tenant("acme", || {
        c.insert(("acme".into(), 1), 1);
        assert_eq!(c.get(&("acme".into(), 1)), Some(1));
    });
    drop(c);
    let c = build("m_dropped", "svc_m");
    c.insert(("acme".into(), 2), 2);
    let text = cache_core::metrics::prometheus_text();
    let puts = series(&text, "cache_puts_total", "m_dropped");
    assert_eq!(puts, vec![(r#"tenant="acme""#.into(), 2.0)], "{text}");
    let hits = series(&text, "cache_gets_total", "m_dropped");
    assert!(
        hits.contains(&(r#"result="hit",tenant="acme""#.into(), 1.0)),
        "{hits:?}"
    );
    drop(c);
    // Without tenant labels too.
    let plain = build("m_dropped_plain", "svc_plain");
    plain.insert(("x".into(), 1), 1);
    drop(plain);
    let text = cache_core::metrics::prometheus_text();
    assert_eq!(
        series(&text, "cache_puts_total", "m_dropped_plain"),
        vec![(String::new(), 1.0)]
    );
}

/// Breaks an outside attack found, kept: entries stored before the label
/// was turned on were reported under the overflow series though the
/// bound was not reached.
#[test]
fn entries_stored_before_labels_were_on_count_for_their_tenant() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let c = build("m_before", "svc_m_before");
    c.insert(("acme".into(), 1), 1);
    let cfg = serde_json::json!({"metrics": {"max_tenants": 3},
        "services": {"svc_m_before": {"tenant_labels": true}}});
    cache_core::config::set(serde_json::from_value(cfg).unwrap()).unwrap();
    let text = cache_core::metrics::prometheus_text();
    let size = series(&text, "cache_size", "m_before");
    assert!(
        size.contains(&(r#"tenant="acme""#.into(), 1.0)),
        "one tenant, bound 3: {size:?}"
    );
    assert!(
        !size.iter().any(|(l, _)| l.contains("tenant_overflow")),
        "{size:?}"
    );
}
