//! The configuration schema and resolved settings, as pure data: what a
//! file or `CACHE_*` variables may say, how the layers resolve for one
//! action ([`Config::resolve`]), and the checks that need no I/O.
//!
//! Loading, reloading and watching live in the `config` module, which
//! re-exports these types; backends read their own sections from here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use cache_common::parse_duration_ms;
use cache_common::template::{self, Piece};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pattern::Pattern;

/// The default bound on entries.
pub const DEFAULT_CAPACITY: usize = 10_000;

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

/// Where cached values live: `"memory"`, `"redis"`, `"tiered"`, or the
/// name of another store (`"disk"`, or one registered with
/// `cache_core::backends::register`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// In this process (the default).
    #[default]
    Memory,
    /// In Redis only (feature `redis`).
    Redis,
    /// In this process (L1) and in the store `l2` names (default Redis),
    /// with invalidations carried to every node.
    Tiered,
    /// In the named store only.
    Store(String),
}

impl Backend {
    /// The name configuration writes.
    pub fn name(&self) -> &str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
            Backend::Tiered => "tiered",
            Backend::Store(n) => n,
        }
    }

    /// The backend a name stands for.
    pub fn named(name: &str) -> Backend {
        match name {
            "memory" => Backend::Memory,
            "redis" => Backend::Redis,
            "tiered" => Backend::Tiered,
            other => Backend::Store(other.to_owned()),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Backend {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if name.trim().is_empty() || name.trim() != name {
            return Err(serde::de::Error::custom(format!(
                "backend {name:?}: name a store (memory, redis, tiered, disk, or a registered one)"
            )));
        }
        Ok(Backend::named(&name))
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The system-wide switch.
    pub enabled: Option<bool>,
    /// Where values live.
    pub backend: Option<Backend>,
    /// The store behind each node's L1 when `backend = "tiered"` (default
    /// `"redis"`).
    pub l2: Option<String>,
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
    /// Where the disk store keeps its file, for `backend = "disk"`.
    pub disk: Option<DiskOptions>,
    /// How to reach Redis, for the `redis` and `tiered` backends.
    #[cfg(feature = "redis")]
    pub redis: Option<RedisOptions>,
}

/// The `[disk]` section: where the disk store (feature `disk`) keeps its
/// file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskOptions {
    /// The store's file, created (with its directory) if absent.
    pub path: PathBuf,
}

/// One service's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service's switch.
    pub enabled: Option<bool>,
    /// Where its actions' values live.
    pub backend: Option<Backend>,
    /// The store behind L1 for `backend = "tiered"`.
    pub l2: Option<String>,
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
    /// Where values live (`store` is accepted too, its earlier name).
    #[serde(alias = "store")]
    pub backend: Option<Backend>,
    /// The store behind L1 for `backend = "tiered"`.
    pub l2: Option<String>,
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
    /// Where values live, when the attribute says (`backend = "..."`).
    pub backend: Option<Backend>,
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
    /// The store behind L1 when `backend` is tiered.
    pub l2: String,
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
                .unwrap_or(DEFAULT_CAPACITY),
            keys: act.and_then(|a| a.keys.clone()),
            backend: act
                .and_then(|a| a.backend.clone())
                .or_else(|| code.backend.clone())
                .or_else(|| svc.and_then(|s| s.backend.clone()))
                .or_else(|| self.backend.clone())
                .unwrap_or_default(),
            l2: act
                .and_then(|a| a.l2.clone())
                .or_else(|| svc.and_then(|s| s.l2.clone()))
                .or_else(|| self.l2.clone())
                .unwrap_or_else(|| "redis".to_string()),
        }
    }

    /// The entry quota of `service`'s namespaces; 0 means none.
    pub fn quota(&self, service: &str) -> usize {
        self.services
            .get(service)
            .and_then(|s| s.quota)
            .unwrap_or(0)
    }

    /// Every store name the configuration uses, with its field.
    pub fn store_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut add = |field: String, b: &Option<Backend>, l2: &Option<String>| {
            if let Some(b) = b {
                out.push((format!("{field}backend"), b.name().to_owned()));
            }
            if let Some(l) = l2 {
                out.push((format!("{field}l2"), l.clone()));
            }
        };
        add(String::new(), &self.backend, &self.l2);
        for (s, sc) in &self.services {
            add(format!("services.{s}."), &sc.backend, &sc.l2);
            for (a, ac) in &sc.actions {
                add(format!("services.{s}.actions.{a}."), &ac.backend, &ac.l2);
            }
        }
        for (a, ac) in &self.actions {
            add(format!("actions.{a}."), &ac.backend, &ac.l2);
        }
        out
    }

    /// Checks what can be checked of the data alone: capacities and event
    /// templates. Backend settings are checked by their backends.
    pub(crate) fn validate(&self, origin: &str) -> Result<(), ConfigError> {
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
        for (field, name) in self.store_names() {
            if name.is_empty() || matches!(name.as_str(), "tiered") && field.ends_with("l2") {
                errs.push(ConfigError::Invalid {
                    origin: origin.to_string(),
                    message: format!("{field} = {name:?}: name a store outside the process"),
                });
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            for k in &e.keys {
                if let Err(why) = check_event_template(k) {
                    errs.push(ConfigError::Invalid {
                        origin: origin.to_string(),
                        message: format!("events[{i}].keys: {k:?}: {why}"),
                    });
                }
            }
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

#[cfg(feature = "redis")]
/// How to reach and use Redis; the `[redis]` section of the configuration.
///
/// Its `Debug` shows no secret: the URL's password, `hash_secret` and
/// `encryption_key` read as `<redacted>`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]` (RESP3 is added).
    pub url: String,
    /// The first segment of every key.
    pub prefix: String,
    /// Deadline of one operation, in milliseconds.
    pub timeout_ms: u64,
    /// Store a keyed digest of each key instead of its text, so no argument
    /// value reaches Redis (nor the invalidation channel). Needs
    /// `hash_secret` or `encryption_key`.
    pub hash_keys: bool,
    /// The secret that keys the digests of `hash_keys` (any string; at
    /// least 16 bytes). Without it, one is derived from `encryption_key`.
    #[serde(deserialize_with = "secret_text")]
    pub hash_secret: Option<String>,
    /// Compress values larger than this many bytes.
    pub compress_above: Option<usize>,
    /// 64 hex digits: encrypt values with XChaCha20-Poly1305.
    #[serde(deserialize_with = "secret_text")]
    pub encryption_key: Option<String>,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_after: u32,
    /// How long the breaker stays open before a probe, in milliseconds.
    pub breaker_cooldown_ms: u64,
    /// At most one error log line per this many milliseconds.
    pub log_every_ms: u64,
    /// Keys per SCAN step when revoking.
    pub scan_count: usize,
    /// Redis Cluster: the URLs of some of its nodes. When set, `url` is
    /// ignored; revoke and clear scan every master.
    pub cluster_nodes: Vec<String>,
    /// A PEM file of the CA that signed the server's certificate, for
    /// `rediss://` URLs; without it the system's roots are trusted.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// If set, a node that misses takes a lock across nodes (`SET NX PX`,
    /// held at most this many milliseconds); the others wait up to as long
    /// for its value in Redis before computing it themselves.
    pub lock_ms: Option<u64>,
}

#[cfg(feature = "redis")]
impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "cache".into(),
            timeout_ms: 50,
            hash_keys: false,
            hash_secret: None,
            compress_above: None,
            encryption_key: None,
            breaker_after: 5,
            breaker_cooldown_ms: 1000,
            log_every_ms: 10_000,
            scan_count: 500,
            tls_ca_file: None,
            cluster_nodes: Vec::new(),
            lock_ms: None,
        }
    }
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("RedisOptions")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("hash_keys", &self.hash_keys)
            .field("hash_secret", &secret(&self.hash_secret))
            .field("compress_above", &self.compress_above)
            .field("encryption_key", &secret(&self.encryption_key))
            .field("breaker_after", &self.breaker_after)
            .field("breaker_cooldown_ms", &self.breaker_cooldown_ms)
            .field("log_every_ms", &self.log_every_ms)
            .field("scan_count", &self.scan_count)
            .field(
                "cluster_nodes",
                &self
                    .cluster_nodes
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("tls_ca_file", &self.tls_ca_file)
            .field("lock_ms", &self.lock_ms)
            .finish()
    }
}

#[cfg(feature = "redis")]
/// `url` with the password (and a user alone) replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = auth.split_once(':').map_or("", |(u, _)| u);
    let shown = if user.is_empty() {
        format!("<redacted>@{host}")
    } else {
        format!("{user}:<redacted>@{host}")
    };
    match scheme {
        Some(s) => format!("{s}://{shown}"),
        None => shown,
    }
}

/// Checks an event key template: its braces, and that it is a valid pattern
/// once filled.
pub(crate) fn check_event_template(t: &str) -> Result<(), String> {
    let mut sample = String::new();
    for piece in template::parse(t).map_err(|e| e.to_string())? {
        match piece {
            Piece::Text(text) => sample.push_str(&text),
            Piece::Field(_) => sample.push('x'),
        }
    }
    Pattern::new(&sample).map(|_| ()).map_err(|e| e.to_string())
}
