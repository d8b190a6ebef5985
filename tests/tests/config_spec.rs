//! The specification's own configuration examples load as written: the
//! JSON with a top-level `cache` object and an action's options under
//! `cache`, and the YAML with `consistency`. Loading only (nothing starts).

use std::path::PathBuf;
use std::time::Duration;

use cache_core::config::{Backend, ConfigSource, ConflictResolution, Defaults, Strategy};

fn temp_file(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cache-config-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn the_spec_json_loads_as_written() {
    let json = temp_file(
        "spec.json",
        r#"{
  "cache": {
    "enabled": true,
    "backend": "dht",
    "ttl": 30,
    "replication": 3,
    "prefix": "cache:"
  },
  "services": {
    "user": {
      "actions": {
        "get_user": {
          "cache": {
            "enabled": true,
            "ttl": 300,
            "keys": ["id"]
          }
        }
      }
    }
  }
}"#,
    );
    let c = ConfigSource::file(&json)
        .env_prefix("SPECJ_")
        .load()
        .unwrap();
    assert_eq!(c.enabled, Some(true));
    assert_eq!(c.backend, Some(Backend::named("dht")));
    assert_eq!(c.ttl.unwrap().0, Duration::from_secs(30));
    let d = c.dht_options().unwrap();
    assert_eq!(d.replication(), 3);
    assert_eq!(d.prefix.as_deref(), Some("cache:"));
    let a = &c.services["user"].actions["get_user"];
    assert_eq!(a.enabled, Some(true));
    assert_eq!(a.ttl.unwrap().0, Duration::from_secs(300));
    assert_eq!(a.keys.as_deref(), Some(&["id".to_string()][..]));
}

#[test]
fn the_spec_yaml_loads_as_written() {
    let yaml = temp_file(
        "spec.yaml",
        "cache:\n  backend: dht\n  replication: 3\n  ttl: 3600\n  prefix: \"cache:\"\n  consistency: {strategy: \"eventual\", conflict_resolution: \"last_write_wins\"}\n",
    );
    let c = ConfigSource::file(&yaml)
        .env_prefix("SPECY_")
        .load()
        .unwrap();
    assert_eq!(c.backend, Some(Backend::named("dht")));
    assert_eq!(c.ttl.unwrap().0, Duration::from_secs(3600));
    let k = c.consistency.clone().unwrap();
    assert_eq!(k.strategy, Strategy::Eventual);
    assert_eq!(k.conflict_resolution, ConflictResolution::LastWriteWins);
}

#[test]
fn other_consistency_values_are_errors_that_name_the_supported_ones() {
    for (body, supported) in [
        ("consistency:\n  strategy: strong\n", "eventual"),
        (
            "consistency:\n  conflict_resolution: vector_clock\n",
            "last_write_wins",
        ),
    ] {
        let f = temp_file("bad.yaml", body);
        let e = ConfigSource::file(&f)
            .env_prefix("SPECB_")
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains(supported), "{e}");
    }
}

#[test]
fn dht_options_are_checked_and_the_two_spellings_must_agree() {
    for (body, says) in [
        ("[dht]\nreplication = 0\n", "between 1 and 20"),
        ("replication = 3\n[dht]\nreplication = 5\n", "disagree"),
        ("[dht]\nnetwork = \"a b\"\n", "dht.network"),
        ("[dht]\nbootstraps = []\n", "bootstraps"),
    ] {
        let f = temp_file("bad.toml", body);
        let e = ConfigSource::file(&f)
            .env_prefix("SPECD_")
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{body}: {e}");
    }
}

#[test]
fn cache_backend_dht_from_the_environment_wins_over_the_file() {
    let f = temp_file("env.json", r#"{"cache": {"backend": "memory", "ttl": 5}}"#);
    // SAFETY: this test binary reads these variables only here.
    unsafe {
        std::env::set_var("SPECE_BACKEND", "dht");
        std::env::set_var("SPECE_UNRELATED_THING", "x");
    }
    let c = ConfigSource::file(&f).env_prefix("SPECE_").load().unwrap();
    assert_eq!(c.backend, Some(Backend::named("dht")));
    assert_eq!(c.ttl.unwrap().0, Duration::from_secs(5));
}

#[test]
fn the_top_level_prefix_from_the_environment_is_text_and_wins_over_the_file() {
    // A top-level text field has no section: it once made loading panic.
    let f = temp_file("prefix.toml", "prefix = \"file:\"\n");
    // SAFETY: this test binary reads these variables only here.
    unsafe {
        std::env::set_var("SPECP_PREFIX", "007");
        std::env::set_var("SPECP_DHT__NETWORK", "0x10");
    }
    let c = ConfigSource::file(&f).env_prefix("SPECP_").load().unwrap();
    assert_eq!(c.prefix.as_deref(), Some("007"));
    assert_eq!(c.dht.unwrap().network.as_deref(), Some("0x10"));
}

#[test]
fn the_metrics_section_is_checked_and_read_from_the_environment() {
    for (body, says) in [
        ("[metrics]\nmax_tenants = 0\n", "metrics.max_tenants = 0"),
        ("[metrics]\nmax_tenants = 10001\n", "between 1 and 10000"),
        ("[metrics]\ntenant_label = true\n", "tenant_label"),
        ("[services.a]\ntenant_labels = \"yes\"\n", "tenant_labels"),
    ] {
        let f = temp_file("metrics-bad.toml", body);
        let e = ConfigSource::file(&f)
            .env_prefix("SPECM_BAD_")
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{body}: {e}");
    }
    let f = temp_file("metrics.toml", "[metrics]\nmax_tenants = 7\n");
    // SAFETY: this test binary reads these variables only here.
    unsafe {
        std::env::set_var("SPECM_METRICS__TENANT_LABELS", "true");
        std::env::set_var("SPECM_METRICS__UNRELATED", "x");
    }
    let c = ConfigSource::file(&f).env_prefix("SPECM_").load().unwrap();
    let s = c.resolve(Some("user"), "get", &Default::default());
    assert!(s.tenant_labels);
    assert_eq!(s.max_tenants, 7);
    let f = temp_file(
        "metrics-off.toml",
        "[services.user]\ntenant_labels = false\n",
    );
    let c = ConfigSource::file(&f).env_prefix("SPECM_").load().unwrap();
    assert!(
        !c.resolve(Some("user"), "get", &Default::default())
            .tenant_labels
    );
    assert!(
        c.resolve(Some("other"), "get", &Default::default())
            .tenant_labels
    );
}

#[test]
fn the_seeds_settings_have_its_ranges_and_names() {
    for (body, says) in [
        (
            "max_items = 99\n",
            "max_items = 99: give between 100 and 1000000",
        ),
        (
            "[services.a]\nmax_items = 1000001\n",
            "services.a.max_items",
        ),
        ("max_items = 500\ncapacity = 500\n", "one setting; give one"),
        (
            "eviction = \"fifo\"\n",
            "eviction: unknown eviction policy \"fifo\"",
        ),
        (
            "[actions.f]\neviction_batch_size = 0\n",
            "actions.f.eviction_batch_size = 0",
        ),
        ("eviction_batch_size = 1001\n", "between 1 and 1000"),
        ("sync_interval = \"9s\"\n", "sync_interval"),
        (
            "[services.a.actions.b]\nsync_interval = \"2h\"\n",
            "services.a.actions.b.sync_interval",
        ),
    ] {
        let f = temp_file("seed-bad.toml", body);
        let e = ConfigSource::file(&f)
            .env_prefix("SPECS_BAD_")
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{body}: {e}");
    }
    let f = temp_file(
        "seed.toml",
        "max_items = 5000\neviction = \"lfu\"\neviction_batch_size = 100\nsync_interval = 60\n\
         [services.user]\nmax_items = 200\n[services.user.actions.get]\ncapacity = 300\nsync_interval = \"10s\"\n",
    );
    // SAFETY: this test binary reads these variables only here.
    unsafe { std::env::set_var("SPECS_EVICTION_BATCH_SIZE", "7") };
    let c = ConfigSource::file(&f).env_prefix("SPECS_").load().unwrap();
    let d = Default::default();
    let top = c.resolve(None, "f", &d);
    assert_eq!(top.capacity, 5000);
    assert_eq!(top.eviction, Some(cache_core::Eviction::Lfu));
    assert_eq!(top.eviction_batch_size, 7, "the variable wins");
    assert_eq!(top.sync_interval, Duration::from_secs(60));
    assert_eq!(c.resolve(Some("user"), "other", &d).capacity, 200);
    let get = c.resolve(Some("user"), "get", &d);
    assert_eq!(
        (get.capacity, get.sync_interval),
        (300, Duration::from_secs(10))
    );
    let none = ConfigSource::env_only()
        .env_prefix("SPECS_NONE_")
        .load()
        .unwrap();
    let s = none.resolve(None, "f", &d);
    // The seed's defaults: 100 at its default max_items of 10,000; 1 %
    // of a smaller bound, so a small cache is not emptied at once.
    assert_eq!(
        (s.capacity, s.eviction, s.eviction_batch_size),
        (10_000, None, 100)
    );
    let small = Defaults {
        capacity: Some(500),
        ..Default::default()
    };
    assert_eq!(none.resolve(None, "f", &small).eviction_batch_size, 5);
    assert_eq!(s.sync_interval, Duration::from_secs(300));
}
