//! Layered configuration from files and environment variables, applied at
//! runtime. Global configuration is process-wide, so the tests that change
//! it run as one sequential test; loading alone is checked in parallel.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::config::{self, ConfigSource, Defaults};
use cache_core::{ConfigError, cache_service, cached, registry, with_tenant};
use serde_json::json;

fn temp_file(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cache-config-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Each loading test reads its own variable prefix, so they do not collide.
fn source(file: &PathBuf, prefix: &str) -> ConfigSource {
    ConfigSource::file(file).env_prefix(prefix)
}

#[test]
fn the_three_formats_load_the_same_configuration() {
    let toml = temp_file(
        "a.toml",
        r#"
ttl = "10m"
[services.user]
ttl = 300
quota = 5
[services.user.actions.get_user]
enabled = false
keys = ["id"]
[[events]]
event = "user.updated"
service = "user"
keys = ["get_user:{id}"]
"#,
    );
    let json = temp_file(
        "a.json",
        r#"{"ttl": "10m", "services": {"user": {"ttl": 300, "quota": 5,
            "actions": {"get_user": {"enabled": false, "keys": ["id"]}}}},
            "events": [{"event": "user.updated", "service": "user", "keys": ["get_user:{id}"]}]}"#,
    );
    let yaml = temp_file(
        "a.yaml",
        "ttl: 10m\nservices:\n  user:\n    ttl: 300\n    quota: 5\n    actions:\n      get_user:\n        enabled: false\n        keys: [id]\nevents:\n  - event: user.updated\n    service: user\n    keys: [\"get_user:{id}\"]\n",
    );
    let a = source(&toml, "NOPE1_").load().unwrap();
    assert_eq!(source(&json, "NOPE1_").load().unwrap(), a);
    assert_eq!(source(&yaml, "NOPE1_").load().unwrap(), a);
    assert_eq!(a.ttl.unwrap().0, Duration::from_secs(600));
    assert_eq!(a.quota("user"), 5);
}

#[test]
fn layering_prefers_the_most_specific_setting() {
    let f = temp_file(
        "layers.toml",
        r#"
ttl = 10
tti = 20
capacity = 100
[services.user]
ttl = 30
capacity = 50
[services.user.actions.get_user]
ttl = 40
"#,
    );
    let c = source(&f, "NOPE2_").load().unwrap();
    let code = Defaults {
        enabled: true,
        ttl: Some(Duration::from_secs(35)),
        ..Defaults::default()
    };
    let s = c.resolve(Some("user"), "get_user", &code);
    assert_eq!(
        s.ttl,
        Some(Duration::from_secs(40)),
        "action config beats code"
    );
    let s = c.resolve(Some("user"), "get_profile", &code);
    assert_eq!(
        s.ttl,
        Some(Duration::from_secs(35)),
        "code beats service config"
    );
    assert_eq!(s.capacity, 50, "service beats global");
    assert_eq!(s.tti, Some(Duration::from_secs(20)), "global applies last");
    let s = c.resolve(
        Some("user"),
        "get_profile",
        &Defaults {
            enabled: true,
            ..Defaults::default()
        },
    );
    assert_eq!(s.ttl, Some(Duration::from_secs(30)));
    let s = c.resolve(
        None,
        "square",
        &Defaults {
            enabled: true,
            ..Defaults::default()
        },
    );
    assert_eq!((s.ttl, s.capacity), (Some(Duration::from_secs(10)), 100));
}

#[test]
fn invalid_configuration_names_the_file_the_field_and_the_value() {
    let f = temp_file("bad.toml", "[services.user]\nttl = \"5 parsecs\"\n");
    let e = source(&f, "NOPE3_").load().unwrap_err().to_string();
    assert!(e.contains("bad.toml"), "{e}");
    assert!(e.contains("services.user.ttl"), "{e}");
    assert!(e.contains("5 parsecs"), "{e}");

    let f = temp_file(
        "unknown.toml",
        "[services.user]\nttl = 5\ncolour = \"blue\"\n",
    );
    let e = source(&f, "NOPE4_").load().unwrap_err().to_string();
    assert!(e.contains("unknown field") && e.contains("colour"), "{e}");

    let f = temp_file("type.json", r#"{"capacity": "lots"}"#);
    let e = source(&f, "NOPE5_").load().unwrap_err().to_string();
    assert!(e.contains("capacity") && e.contains("lots"), "{e}");

    let f = temp_file("zero.yaml", "capacity: 0\n");
    let e = source(&f, "NOPE6_").load().unwrap_err().to_string();
    assert!(e.contains("capacity = 0"), "{e}");

    let f = temp_file(
        "events.toml",
        "[[events]]\nevent = \"x\"\nkeys = [\"get_user:{id\"]\n",
    );
    let e = source(&f, "NOPE7_").load().unwrap_err().to_string();
    assert!(
        e.contains("events[0].keys") && e.contains("unclosed"),
        "{e}"
    );

    let f = temp_file("backend.toml", "backend = \"floppy\"\n");
    let e = source(&f, "NOPE8_").load().unwrap_err().to_string();
    assert!(e.contains("floppy") && e.contains("memory"), "{e}");

    let e = source(&PathBuf::from("/nonexistent/cache.toml"), "NOPE9_")
        .load()
        .unwrap_err();
    assert!(matches!(e, ConfigError::Unreadable { .. }), "{e}");
    let f = temp_file("conf.ini", "ttl=1");
    assert!(matches!(
        source(&f, "NOPE10_").load(),
        Err(ConfigError::UnknownFormat(_))
    ));
}

#[test]
fn environment_variables_override_the_file() {
    let f = temp_file("env.toml", "ttl = 60\n[services.user]\nttl = 30\n");
    // SAFETY: no other test reads or writes variables with this prefix.
    unsafe {
        std::env::set_var("ENVTEST_TTL", "5m");
        std::env::set_var("ENVTEST_ENABLED", "false");
        std::env::set_var("ENVTEST_SERVICES__USER__ACTIONS__GET_USER__CAPACITY", "7");
    }
    let c = source(&f, "ENVTEST_").load().unwrap();
    assert_eq!(c.ttl.unwrap().0, Duration::from_secs(300));
    assert_eq!(c.enabled, Some(false));
    assert_eq!(c.services["user"].ttl.unwrap().0, Duration::from_secs(30));
    assert_eq!(c.services["user"].actions["get_user"].capacity, Some(7));

    unsafe { std::env::set_var("ENVTEST2_TTL", "soon") };
    let e = ConfigSource::env_only()
        .env_prefix("ENVTEST2_")
        .load()
        .unwrap_err()
        .to_string();
    assert!(e.contains("ENVTEST2_") && e.contains("soon"), "{e}");
}

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn plain(id: u64) -> u64 {
    LOADS.fetch_add(1, Ordering::SeqCst);
    id
}

#[derive(Clone)]
struct Accounts {
    loads: Arc<AtomicUsize>,
}

#[cache_service(name = "accounts")]
impl Accounts {
    #[cached(ttl = 60)]
    fn balance(&self, id: u64, verbose: bool) -> String {
        self.loads.fetch_add(1, Ordering::SeqCst);
        format!("{id}:{verbose}")
    }

    #[cached]
    fn owner(&self, id: u64) -> u64 {
        self.loads.fetch_add(1, Ordering::SeqCst);
        id
    }
}

/// One sequential story: the global configuration and what it does to caches.
#[tokio::test]
async fn configuration_applies_at_runtime_and_reloads() {
    let svc = Accounts {
        loads: Arc::default(),
    };
    let loads = || svc.loads.load(Ordering::SeqCst);
    let file = temp_file("runtime.toml", "[services.accounts]\nttl = 30\n");
    config::init(ConfigSource::file(&file).env_prefix("RUNTIME_")).unwrap();

    svc.balance(1, true);
    svc.balance(1, true);
    assert_eq!(loads(), 1);
    let settings = Accounts::balance_cache().settings();
    assert_eq!(
        settings.ttl,
        Some(Duration::from_secs(60)),
        "code beats service"
    );
    assert_eq!(
        Accounts::owner_cache().settings().ttl,
        Some(Duration::from_secs(30))
    );

    // Per action: the key is built from `id` alone.
    std::fs::write(
        &file,
        "[services.accounts]\nttl = 30\n[services.accounts.actions.balance]\nkeys = [\"id\"]\nttl = \"2m\"\n",
    )
    .unwrap();
    config::reload().unwrap();
    assert_eq!(
        Accounts::balance_cache().settings().ttl,
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        Accounts::balance_cache().settings().keys,
        Some(vec!["id".to_string()])
    );
    svc.balance(2, true);
    assert_eq!(
        svc.balance(2, false),
        "2:true",
        "verbose is not part of the key"
    );
    assert_eq!(Accounts::balance_cache().keys(None, 10), vec!["balance:2"]);
    assert_eq!(loads(), 2);

    // A config naming a key argument the action lacks is refused whole.
    std::fs::write(
        &file,
        "[services.accounts.actions.balance]\nkeys = [\"account\"]\nttl = 1\n",
    )
    .unwrap();
    let e = config::reload().unwrap_err().to_string();
    assert!(
        e.contains("accounts.balance") && e.contains("`account`") && e.contains("id, verbose"),
        "{e}"
    );
    assert_eq!(
        Accounts::balance_cache().settings().ttl,
        Some(Duration::from_secs(120)),
        "the previous configuration stays in force"
    );

    // An invalid file: one clear error, previous configuration kept.
    std::fs::write(&file, "ttl = \"forever\"\n").unwrap();
    let e = config::reload().unwrap_err().to_string();
    assert!(e.contains("runtime.toml") && e.contains("forever"), "{e}");
    svc.balance(2, true);
    assert_eq!(loads(), 2, "still cached");

    // Off per action, per service, and system-wide.
    std::fs::write(
        &file,
        "[services.accounts.actions.owner]\nenabled = false\n",
    )
    .unwrap();
    config::reload().unwrap();
    svc.owner(1);
    svc.owner(1);
    assert_eq!(loads(), 4, "owner is off");
    svc.balance(3, true);
    svc.balance(3, true);
    assert_eq!(loads(), 5, "balance is still on");

    std::fs::write(&file, "[services.accounts]\nenabled = false\n").unwrap();
    config::reload().unwrap();
    svc.balance(3, true);
    assert_eq!(
        loads(),
        6,
        "the service is off, and turning it off emptied it"
    );

    std::fs::write(&file, "enabled = false\n").unwrap();
    config::reload().unwrap();
    plain(1);
    plain(1);
    assert_eq!(LOADS.load(Ordering::SeqCst), 2, "off system-wide");

    // Back on, with a quota of two entries per namespace and an event.
    std::fs::write(
        &file,
        "[services.accounts]\nquota = 2\n[[events]]\nevent = \"account.closed\"\nservice = \"accounts\"\nkeys = [\"owner:{id}\"]\n",
    )
    .unwrap();
    config::reload().unwrap();
    plain(1);
    plain(1);
    assert_eq!(LOADS.load(Ordering::SeqCst), 3, "on again");
    let before = loads();
    for id in 10..14 {
        svc.owner(id);
    }
    for id in 10..14 {
        svc.owner(id);
    }
    assert_eq!(
        loads(),
        before + 4 + 2,
        "only two entries fit the namespace"
    );
    let stats = registry()
        .request("accounts/cache/stats", json!({}))
        .await
        .unwrap();
    assert!(stats["quota_rejections"].as_u64().unwrap() >= 2);
    // Another tenant's namespace has its own room.
    with_tenant("other", || {
        svc.owner(20);
        svc.owner(20);
    });
    assert_eq!(loads(), before + 7);

    // The event from configuration removes owner:10.
    assert_eq!(
        registry()
            .publish("account.closed", json!({"id": 10}))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        registry()
            .publish("account.closed", json!({"id": 10}))
            .await
            .unwrap(),
        0
    );

    // A watcher picks up a changed file by itself.
    let _watch = config::watch(Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(&file, "[services.accounts.actions.owner]\nttl = 99\n").unwrap();
    let mut seen = false;
    for _ in 0..200 {
        if Accounts::owner_cache().settings().ttl == Some(Duration::from_secs(99)) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen, "the watcher reloaded the file");
}

/// Variables that name no field of ours are not read (the file still
/// counts), and a text field's variable is text whatever it looks like.
#[test]
fn only_known_variables_are_read_and_typed_by_their_field() {
    let file = temp_file("unrelated.toml", "ttl = 30\n");
    // SAFETY: this test's own prefix; no other test reads these.
    unsafe {
        std::env::set_var("UNREL_DIR", "/var/cache/other-program");
        std::env::set_var("UNREL_VERSION", "3");
        std::env::set_var("UNREL_ADMIN__TOKEN", "123456");
        std::env::set_var("UNREL_REDIS__PREFIX", "42");
    }
    let cfg = source(&file, "UNREL_").load().unwrap();
    assert_eq!(
        cfg.ttl.unwrap().0,
        Duration::from_secs(30),
        "the file counts"
    );
    assert_eq!(cfg.admin.token.as_deref(), Some("123456"));
    assert_eq!(cfg.redis.as_ref().unwrap().prefix, "42");
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("123456"), "Debug shows the token: {shown}");
}

#[test]
fn durations_out_of_bounds_are_errors_naming_the_field() {
    for (body, says) in [
        ("ttl = 0\n", "0 would cache nothing"),
        ("[services.s]\ntti = \"0s\"\n", "0 would cache nothing"),
        ("ttl = \"3000000000000h\"\n", "10 years"),
        ("ttl = 9223372036854775807\n", "10 years"),
        ("ttl = \"3651d\"\n", "10 years"),
    ] {
        let file = temp_file("bounds.toml", body);
        let e = source(&file, "BOUNDS_").load().unwrap_err().to_string();
        assert!(e.contains(says), "{body:?}: {e}");
        assert!(
            e.contains("ttl") || e.contains("tti"),
            "names the field: {e}"
        );
    }
    let file = temp_file("bounds-ok.toml", "ttl = \"3650d\"\n");
    assert!(source(&file, "BOUNDS_").load().is_ok());
}

/// Redis settings are checked before anything is applied, and their
/// secrets never show in `Debug` or in errors.
#[test]
fn redis_settings_are_validated_and_secrets_stay_hidden() {
    let key = "ab".repeat(32);
    let file = temp_file(
        "secrets.toml",
        &format!(
            "[redis]\nurl = \"redis://:hunter2-pw@127.0.0.1:1\"\nencryption_key = \"{key}\"\nhash_secret = \"a long enough secret\"\n"
        ),
    );
    let cfg = source(&file, "SECRETS_").load().unwrap();
    let shown = format!("{cfg:?}");
    for secret in ["hunter2-pw", key.as_str(), "a long enough secret"] {
        assert!(!shown.contains(secret), "Debug shows {secret}: {shown}");
    }
    let bad = temp_file(
        "secrets-bad.toml",
        "[redis]\nurl = \"redis://:hunter2-pw@127.0.0.1:1\"\nhash_keys = true\n",
    );
    let e = source(&bad, "SECRETS_").load().unwrap_err().to_string();
    assert!(e.contains("hash_secret"), "{e}");
    let bad_url = temp_file(
        "secrets-url.toml",
        "[redis]\nurl = \"nope://:hunter2-pw@127.0.0.1:1\"\n",
    );
    let e = source(&bad_url, "SECRETS_").load().unwrap_err().to_string();
    assert!(e.contains("invalid redis url"), "{e}");
    assert!(
        !e.contains("hunter2-pw"),
        "the error shows the password: {e}"
    );
}

/// No error shows a password or a token, whatever shape they come in.
#[test]
fn no_error_shows_a_secret() {
    for (name, body) in [
        (
            "tls.toml",
            "[redis]\nurl = \"redis://user:hunter2pw@127.0.0.1:6379\"\ntls_ca_file = \"/etc/hosts\"\n",
        ),
        (
            "noscheme.toml",
            "[redis]\nurl = \"user:hunter2pw@127.0.0.1:6379\"\n",
        ),
        (
            "cluster.toml",
            "[redis]\ncluster_nodes = [\"user:hunter2pw@x\"]\n",
        ),
        ("token.toml", "[admin]\ntoken = 1.5\n"),
    ] {
        let file = temp_file(name, body);
        match source(&file, "NOSECRET_").load() {
            Err(e) => {
                let e = e.to_string();
                assert!(
                    !e.contains("hunter2pw") && !e.contains("1.5"),
                    "{name}: {e}"
                );
            }
            Ok(cfg) => panic!("{name} loaded: {cfg:?}"),
        }
    }
    // A token that reads as a number is the text of that number.
    let file = temp_file("numtoken.toml", "[admin]\ntoken = 123456789\n");
    let cfg = source(&file, "NOSECRET_").load().unwrap();
    assert_eq!(cfg.admin.token.as_deref(), Some("123456789"));
}
