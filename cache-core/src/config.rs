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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use figment::Figment;
use figment::providers::{Env, Format, Json, Toml, Yaml};
use parking_lot::RwLock;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use cache_common::parse_duration_ms;

/// A duration in configuration: integer seconds or a string such as `"500ms"`.
///
/// It must be more than zero (a TTL of 0 would cache nothing: leave the
/// field out for no expiry) and at most [`MAX_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// The longest TTL or TTI configuration accepts: ten years (what every
/// store outside the process can hold as milliseconds).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A duration within bounds, or why not.
fn bounded<E: serde::de::Error>(
    d: Duration,
    shown: &dyn fmt::Display,
) -> Result<ConfigDuration, E> {
    if d.is_zero() {
        return Err(E::custom(format!(
            "invalid duration {shown}: 0 would cache nothing; leave the field out for no expiry"
        )));
    }
    if d > MAX_DURATION {
        return Err(E::custom(format!(
            "invalid duration {shown}: more than the limit of 10 years (3650d)"
        )));
    }
    Ok(ConfigDuration(d))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "integer seconds or a duration string such as \"500ms\", \"2m\" or \"1h30m\"",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                bounded(Duration::from_secs(v), &v)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("invalid duration {v}: it is negative"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match parse_duration_ms(v) {
                    Ok(ms) => bounded(Duration::from_millis(ms), &format_args!("{v:?}")),
                    Err(why) => Err(E::custom(format!(
                        "invalid duration {v:?}: {why}; use integer seconds or a string such as \"500ms\", \"2m\" or \"1h30m\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

/// Where cached values live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process (the default).
    #[default]
    Memory,
    /// In Redis only (feature `redis`).
    Redis,
    /// In this process (L1) and in Redis (L2), with invalidations broadcast
    /// to every node (feature `redis`).
    Tiered,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The system-wide switch.
    pub enabled: Option<bool>,
    /// Where values live.
    pub backend: Option<Backend>,
    /// Default time to live.
    pub ttl: Option<ConfigDuration>,
    /// Default time to idle.
    pub tti: Option<ConfigDuration>,
    /// Default bound on entries per cache.
    pub capacity: Option<usize>,
    /// Per service.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Per function outside any service, by action name.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionConfig>,
    /// Events and the keys they invalidate.
    #[serde(default)]
    pub events: Vec<EventMapping>,
    /// The HTTP admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// How to reach Redis, for the `redis` and `tiered` backends.
    #[cfg(feature = "redis")]
    pub redis: Option<crate::redis::RedisOptions>,
}

/// One service's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service's switch.
    pub enabled: Option<bool>,
    /// Where its actions' values live.
    pub backend: Option<Backend>,
    /// Time to live for its actions.
    pub ttl: Option<ConfigDuration>,
    /// Time to idle for its actions.
    pub tti: Option<ConfigDuration>,
    /// Bound on entries per action.
    pub capacity: Option<usize>,
    /// Bound on entries per namespace (this service and one tenant), across
    /// its actions.
    pub quota: Option<usize>,
    /// Per action.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionConfig>,
}

/// One action's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The action's switch.
    pub enabled: Option<bool>,
    /// Time to live.
    pub ttl: Option<ConfigDuration>,
    /// Time to idle.
    pub tti: Option<ConfigDuration>,
    /// Bound on entries.
    pub capacity: Option<usize>,
    /// Where values live.
    pub store: Option<Backend>,
    /// The arguments that form the key (service actions only).
    pub keys: Option<Vec<String>>,
}

/// An event and the keys or patterns it invalidates. `{field}` in a key is
/// filled from the event's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMapping {
    /// The event's name, such as `user.updated`.
    pub event: String,
    /// The service whose caches it touches; all caches when absent.
    pub service: Option<String>,
    /// Key templates or glob patterns, such as `get_user:{id}`.
    pub keys: Vec<String>,
}

/// The HTTP admin API's settings. Its `Debug` hides the token.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The bearer token the admin API requires.
    #[serde(default, deserialize_with = "secret_text")]
    pub token: Option<String>,
}

/// A secret read as text whatever it looks like (`token = 123456` is the
/// text `123456`), and never echoed in an error.
pub(crate) fn secret_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a secret as text")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(E::custom(
                "a secret that reads as a decimal number loses digits: quote it",
            ))
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What an action's attribute (or a cache's builder) sets in code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// Whether caching is on.
    pub enabled: bool,
    /// Time to live.
    pub ttl: Option<Duration>,
    /// Time to idle.
    pub tti: Option<Duration>,
    /// Bound on entries, when set explicitly.
    pub capacity: Option<usize>,
}

/// The settings one cache runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Whether it caches at all.
    pub enabled: bool,
    /// Time to live.
    pub ttl: Option<Duration>,
    /// Time to idle.
    pub tti: Option<Duration>,
    /// Bound on entries.
    pub capacity: usize,
    /// The arguments that form the key; all of the key template's when `None`.
    pub keys: Option<Vec<String>>,
    /// Where values live.
    pub backend: Backend,
}

impl Config {
    /// The settings of `action` (in `service`, if any), given the values its
    /// attribute sets in code.
    pub fn resolve(&self, service: Option<&str>, action: &str, code: &Defaults) -> Settings {
        self.resolve_for(service, action, action, code)
    }

    /// [`Config::resolve`] for a cache whose identity may be longer than
    /// its action name (`module::function`): `[actions]` is looked up by
    /// the identity first.
    pub fn resolve_for(
        &self,
        service: Option<&str>,
        action: &str,
        identity: &str,
        code: &Defaults,
    ) -> Settings {
        let svc = service.and_then(|s| self.services.get(s));
        let act = match service {
            Some(_) => svc.and_then(|s| s.actions.get(action)),
            None => self
                .actions
                .get(identity)
                .or_else(|| self.actions.get(action)),
        };
        let dur = |d: Option<ConfigDuration>| d.map(|d| d.0);
        Settings {
            enabled: self.enabled.unwrap_or(true)
                && svc.and_then(|s| s.enabled).unwrap_or(true)
                && act.and_then(|a| a.enabled).unwrap_or(code.enabled),
            ttl: dur(act.and_then(|a| a.ttl))
                .or(code.ttl)
                .or(dur(svc.and_then(|s| s.ttl)))
                .or(dur(self.ttl)),
            tti: dur(act.and_then(|a| a.tti))
                .or(code.tti)
                .or(dur(svc.and_then(|s| s.tti)))
                .or(dur(self.tti)),
            capacity: act
                .and_then(|a| a.capacity)
                .or(code.capacity)
                .or(svc.and_then(|s| s.capacity))
                .or(self.capacity)
                .unwrap_or(crate::cache::DEFAULT_CAPACITY),
            keys: act.and_then(|a| a.keys.clone()),
            backend: act
                .and_then(|a| a.store)
                .or(svc.and_then(|s| s.backend))
                .or(self.backend)
                .unwrap_or_default(),
        }
    }

    /// The entry quota of `service`'s namespaces; 0 means none.
    pub fn quota(&self, service: &str) -> usize {
        self.services
            .get(service)
            .and_then(|s| s.quota)
            .unwrap_or(0)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let cap_err = |field: String, v: usize| {
            (v == 0).then(|| ConfigError::Invalid {
                origin: origin.to_string(),
                message: format!("{field} = 0: a capacity must be at least 1"),
            })
        };
        let mut errs = Vec::new();
        errs.extend(self.capacity.and_then(|v| cap_err("capacity".into(), v)));
        for (s, sc) in &self.services {
            errs.extend(
                sc.capacity
                    .and_then(|v| cap_err(format!("services.{s}.capacity"), v)),
            );
            for (a, ac) in &sc.actions {
                errs.extend(
                    ac.capacity
                        .and_then(|v| cap_err(format!("services.{s}.actions.{a}.capacity"), v)),
                );
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            for k in &e.keys {
                if let Err(why) = crate::registry::check_event_template(k) {
                    errs.push(ConfigError::Invalid {
                        origin: origin.to_string(),
                        message: format!("events[{i}].keys: {k:?}: {why}"),
                    });
                }
            }
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis
            && let Err(e) = r.validate()
        {
            errs.push(ConfigError::Invalid {
                origin: origin.to_string(),
                message: format!("redis: {e}"),
            });
        }
        match errs.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Why configuration could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist or cannot be read.
    #[error("cannot read configuration file {path}: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file's extension names no format this crate reads.
    #[error("configuration file {0} has no known format: name it .toml, .json, .yaml or .yml")]
    UnknownFormat(PathBuf),
    /// A value is malformed, unknown, or out of range.
    #[error("invalid configuration ({origin}): {message}")]
    Invalid {
        /// The file or environment variables.
        origin: String,
        /// What is wrong: field, value and expectation.
        message: String,
    },
    /// The configuration names something the code does not have.
    #[error("{0}")]
    Mismatch(String),
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
        let cfg: Config =
            fig.merge(env)
                .merge(texts)
                .extract()
                .map_err(|e| ConfigError::Invalid {
                    origin: origin.clone(),
                    message: e.to_string().replace('\n', "; "),
                })?;
        cfg.validate(&origin)?;
        Ok(cfg)
    }
}

/// The fields whose variables are text whatever they look like
/// (lower case, sections joined by `__`, the prefix left out).
const TEXT_FIELDS: &[&str] = &[
    "admin__token",
    "redis__url",
    "redis__prefix",
    "redis__hash_secret",
    "redis__encryption_key",
    "redis__tls_ca_file",
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
        #[cfg(feature = "redis")]
        ("redis", Some(f)) => fields::<crate::redis::RedisOptions>()
            .iter()
            .any(|x| x == f),
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
        let (section, field) = key.split_once("__").expect("text fields are nested");
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
    let mut st = state().write();
    st.get_or_insert(State { source, config }).config.clone()
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
