//! Layered configuration: global, then service, then action.
//!
//! It is read from a TOML, JSON or YAML file (`CACHE_CONFIG=path`, or
//! [`init`] with a [`ConfigSource`]) and from `CACHE_*` environment variables,
//! which override the file: `CACHE_ENABLED=false`, `CACHE_TTL=30`,
//! `CACHE_SERVICES__USER__ACTIONS__GET_USER__TTL=5m` (`__` separates levels).
//! It applies at runtime: [`reload`] (or [`watch`]) re-reads the sources and
//! every cache picks up the new values. An invalid source is one clear error
//! naming the file or variable, the field and the value, and the previous
//! configuration stays in force. Unknown fields are rejected.
//!
//! ```toml
//! enabled = true
//! ttl = "10m"
//!
//! [services.user]
//! ttl = "5m"
//! quota = 10000            # entries per (service, tenant) namespace
//!
//! [services.user.actions.get_user]
//! ttl = 60
//! keys = ["id"]            # the arguments that form the key
//!
//! [[events]]
//! event = "user.updated"
//! service = "user"
//! keys = ["get_user:{id}", "get_profile:*"]
//! ```
//!
//! For each setting of an action the most specific source wins: the
//! action's configuration, then its attribute in code, then its service's
//! configuration, then the global one. Caching is on only where the global,
//! service and action switches all allow it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use figment::Figment;
use figment::providers::{Env, Format, Json, Toml, Yaml};
use parking_lot::RwLock;
use serde::Serialize;

pub use crate::spec::{
    ActionConfig, AdminConfig, Backend, Config, ConfigDuration, ConfigError, ConflictResolution,
    Consistency, DEFAULT_RECORD_TTL, DEFAULT_REPLICATION, DEFAULT_SYNC_INTERVAL, Defaults,
    DhtOptions, DiskOptions, EventMapping, MAX_DURATION, MAX_REPLICATION, MAX_TENANT_SERIES,
    MetricsConfig, RemoteOptions, ServiceConfig, Settings, Strategy, default_eviction_batch,
};

inventory::submit!(crate::cache::Registrar {
    config: current,
    quota: |service| crate::registry::registry().quota(service),
    register: |name, cache| crate::registry::registry().register(name, cache),
    dependents: crate::registry::invalidate_dependents,
});

/// Checks the backends' sections (a Redis URL, its secrets), which needs
/// the backends' own code.
fn check_backends(cfg: &Config, origin: &str) -> Result<(), ConfigError> {
    let invalid = |field: &str, e: crate::store::StoreError| ConfigError::Invalid {
        origin: origin.to_string(),
        message: format!("{field}: {e}"),
    };
    for (field, name) in cfg.store_names() {
        match name.as_str() {
            "tiered" | "memory" => {}
            _ if !crate::store::backends::is_known(&name) => {
                return Err(invalid(&field, crate::store::backends::unknown(&name)));
            }
            // Redis is reached lazily (it may be down now); its options
            // are checked below. A DHT peer starts when a cache first
            // uses it; its options were checked with the rest.
            "redis" | "dht" => {}
            // Any other store opens now, so a bad one changes nothing.
            _ => {
                crate::store::backends::open(&name, cfg).map_err(|e| invalid(&field, e))?;
            }
        }
    }
    if let Some(r) = &cfg.remote {
        let bad = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        if r.hash_keys {
            r.hash_key().map_err(bad)?;
        }
        #[cfg(feature = "seal")]
        if let Some(k) = &r.encryption_key {
            crate::seal::Sealer::default()
                .encryption_key_hex(k)
                .map_err(|e| bad(format!("remote: {e}")))?;
        }
        #[cfg(not(feature = "seal"))]
        if r.seals() {
            return Err(bad(
                "remote: compress_above and encryption_key need cache-core's `seal` feature".into(),
            ));
        }
    }
    #[cfg(feature = "redis")]
    if let Some(r) = &cfg.redis
        && let Err(e) = r.validate()
    {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!("redis: {e}"),
        });
    }
    let _ = (cfg, origin);
    Ok(())
}

/// Where configuration is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    file: Option<PathBuf>,
    env_prefix: String,
}

impl Default for ConfigSource {
    fn default() -> Self {
        ConfigSource {
            file: None,
            env_prefix: "CACHE_".into(),
        }
    }
}

impl ConfigSource {
    /// The file named by `CACHE_CONFIG`, if set, and `CACHE_*` variables.
    pub fn from_env() -> Self {
        ConfigSource {
            file: std::env::var_os("CACHE_CONFIG").map(PathBuf::from),
            ..Default::default()
        }
    }

    /// `path` and `CACHE_*` variables.
    pub fn file(path: impl AsRef<Path>) -> Self {
        ConfigSource {
            file: Some(path.as_ref().to_path_buf()),
            ..Default::default()
        }
    }

    /// No file, only environment variables.
    pub fn env_only() -> Self {
        ConfigSource::default()
    }

    /// Reads variables with this prefix instead of `CACHE_`.
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.env_prefix = prefix.into();
        self
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads and validates the configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut fig = Figment::new();
        let mut origin = format!("{}* environment variables", self.env_prefix);
        if let Some(path) = &self.file {
            std::fs::metadata(path).map_err(|e| ConfigError::Unreadable {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            fig = match ext.to_ascii_lowercase().as_str() {
                "toml" => fig.merge(Toml::file_exact(path)),
                "json" => fig.merge(Json::file_exact(path)),
                "yaml" | "yml" => fig.merge(Yaml::file_exact(path)),
                _ => return Err(ConfigError::UnknownFormat(path.clone())),
            };
            origin = format!("{} and {origin}", path.display());
        }
        // Only variables that name a known field are read (a `CACHE_DIR`
        // meant for another program is none of ours), and text fields take
        // the variable as written (`CACHE_ADMIN__TOKEN=123456` is text).
        let env = Env::prefixed(&self.env_prefix)
            .filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                env_key_known(&k) && !TEXT_FIELDS.contains(&k.as_str())
            })
            .split("__");
        let texts = figment::providers::Serialized::globals(env_texts(&self.env_prefix));
        let invalid = |e: figment::Error| ConfigError::Invalid {
            origin: origin.clone(),
            message: e.to_string().replace('\n', "; "),
        };
        // The spec's layout (a top-level `cache` object, and an action's
        // options under `cache`) is read as the flat one.
        let mut value: serde_json::Value =
            fig.merge(env).merge(texts).extract().map_err(invalid)?;
        hoist_cache_sections(&mut value);
        let cfg: Config = Figment::from(figment::providers::Serialized::defaults(value))
            .extract()
            .map_err(invalid)?;
        cfg.validate(&origin)?;
        check_backends(&cfg, &origin)?;
        Ok(cfg)
    }
}

/// Moves the options of a `cache` object up into the object holding it:
/// at the top level (the spec's `{"cache": {"backend": "dht", ...}}`) and
/// in each action (`services.user.actions.get_user.cache`). An option
/// given both ways keeps the outer one, so `CACHE_*` variables still win
/// over a file that uses the spec's layout.
fn hoist_cache_sections(value: &mut serde_json::Value) {
    fn hoist(obj: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(serde_json::Value::Object(inner)) = obj.remove("cache") {
            for (k, v) in inner {
                obj.entry(k).or_insert(v);
            }
        }
    }
    let Some(root) = value.as_object_mut() else {
        return;
    };
    hoist(root);
    let Some(serde_json::Value::Object(services)) = root.get_mut("services") else {
        return;
    };
    for service in services.values_mut() {
        if let Some(serde_json::Value::Object(actions)) = service.get_mut("actions") {
            for action in actions.values_mut() {
                if let Some(a) = action.as_object_mut() {
                    hoist(a);
                }
            }
        }
    }
}

/// The fields whose variables are text whatever they look like
/// (lower case, sections joined by `__`, the prefix left out).
const TEXT_FIELDS: &[&str] = &[
    "admin__token",
    "disk__path",
    "remote__hash_secret",
    "remote__encryption_key",
    "redis__url",
    "redis__prefix",
    "redis__hash_secret",
    "redis__encryption_key",
    "redis__tls_ca_file",
    "prefix",
    "dht__network",
    "dht__prefix",
    "dht__key_file",
];

/// Whether an environment key (lower case, prefix left out) names a field
/// of the configuration: a top-level one, or one of a fixed section's.
/// Service and action names are the user's, so anything under them counts.
fn env_key_known(key: &str) -> bool {
    fn fields<T: Serialize + Default>() -> Vec<String> {
        match serde_json::to_value(T::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
    let mut parts = key.split("__");
    let top = parts.next().unwrap_or("");
    if !fields::<Config>().iter().any(|f| f == top) {
        return false;
    }
    let inner = parts.next();
    match (top, inner) {
        ("admin", Some(f)) => fields::<AdminConfig>().iter().any(|x| x == f),
        ("metrics", Some(f)) => fields::<crate::spec::MetricsConfig>()
            .iter()
            .any(|x| x == f),
        ("disk", Some(f)) => fields::<crate::spec::DiskOptions>().iter().any(|x| x == f),
        ("remote", Some(f)) => fields::<crate::spec::RemoteOptions>()
            .iter()
            .any(|x| x == f),
        #[cfg(feature = "redis")]
        ("redis", Some(f)) => fields::<crate::spec::RedisOptions>().iter().any(|x| x == f),
        _ => true,
    }
}

/// The text fields set by variables, as written, nested by section.
fn env_texts(prefix: &str) -> serde_json::Value {
    let prefix = prefix.to_ascii_lowercase();
    let mut root = serde_json::Map::new();
    for (k, v) in std::env::vars() {
        let k = k.to_ascii_lowercase();
        let Some(key) = k.strip_prefix(&prefix) else {
            continue;
        };
        if !TEXT_FIELDS.contains(&key) {
            continue;
        }
        let Some((section, field)) = key.split_once("__") else {
            // A top-level field, such as the spec's `prefix`.
            root.insert(key.to_owned(), serde_json::Value::String(v));
            continue;
        };
        let entry = root
            .entry(section.to_owned())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(m) = entry {
            m.insert(field.to_owned(), serde_json::Value::String(v));
        }
    }
    serde_json::Value::Object(root)
}

struct State {
    source: ConfigSource,
    config: Arc<Config>,
}

fn state() -> &'static RwLock<Option<State>> {
    static S: OnceLock<RwLock<Option<State>>> = OnceLock::new();
    S.get_or_init(|| RwLock::new(None))
}

/// The configuration in force. Without [`init`], the first call reads
/// [`ConfigSource::from_env`]; if that fails the error is logged and the
/// defaults apply.
pub fn current() -> Arc<Config> {
    if let Some(s) = &*state().read() {
        return s.config.clone();
    }
    let source = ConfigSource::from_env();
    let config = match source.load() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!("cache configuration ignored, defaults apply: {e}");
            Arc::new(Config::default())
        }
    };
    let config = {
        let mut st = state().write();
        st.get_or_insert(State { source, config }).config.clone()
    };
    crate::registry::registry().remember(&config);
    config
}

/// Reads `source`, makes it the configuration in force, and applies it to
/// every cache. On error nothing changes.
pub fn init(source: ConfigSource) -> Result<Arc<Config>, ConfigError> {
    let config = Arc::new(source.load()?);
    crate::registry::registry().check_config(&config)?;
    *state().write() = Some(State {
        source,
        config: config.clone(),
    });
    crate::registry::registry().apply_config(&config)?;
    Ok(config)
}

/// Makes `config` the configuration in force (keeping the current source for
/// [`reload`]) and applies it to every cache.
pub fn set(config: Config) -> Result<Arc<Config>, ConfigError> {
    config.validate("code")?;
    check_backends(&config, "code")?;
    crate::registry::registry().check_config(&config)?;
    let config = Arc::new(config);
    {
        let mut st = state().write();
        let source = st.take().map(|s| s.source).unwrap_or_default();
        *st = Some(State {
            source,
            config: config.clone(),
        });
    }
    crate::registry::registry().apply_config(&config)?;
    Ok(config)
}

/// Re-reads the sources of the configuration in force and applies them. On
/// error the previous configuration stays in force.
pub fn reload() -> Result<Arc<Config>, ConfigError> {
    let source = match &*state().read() {
        Some(s) => s.source.clone(),
        None => ConfigSource::from_env(),
    };
    init(source)
}

/// Stops a [`watch`] when dropped.
pub struct WatchHandle {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Polls the configuration file every `interval` and [`reload`]s it when it
/// changes. Errors are logged; the previous configuration stays in force.
pub fn watch(interval: Duration) -> WatchHandle {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let path = state().read().as_ref().and_then(|s| s.source.file.clone());
    let mut last: Option<SystemTime> = path.as_deref().and_then(modified);
    let spawned = std::thread::Builder::new()
        .name("cache-config-watch".into())
        .spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(interval);
                let Some(p) = state().read().as_ref().and_then(|s| s.source.file.clone()) else {
                    continue;
                };
                let now = modified(&p);
                if now != last {
                    last = now;
                    match reload() {
                        Ok(_) => {
                            tracing::info!("cache configuration reloaded from {}", p.display())
                        }
                        Err(e) => tracing::error!("cache configuration not reloaded: {e}"),
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot watch the cache configuration: {e}");
    }
    WatchHandle { stop }
}
