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
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pattern::Pattern;

/// The default bound on entries.
pub const DEFAULT_CAPACITY: usize = 10_000;

mod check;
mod dht;
#[cfg(feature = "redis")]
mod redis;
mod remote;
mod resolve;
mod values;

pub(crate) use check::check_event_template;
pub use dht::{
    ConflictResolution, Consistency, DEFAULT_RECORD_TTL, DEFAULT_REPLICATION, DhtOptions,
    MAX_REPLICATION, Strategy,
};
#[cfg(feature = "redis")]
pub use redis::{RedisOptions, redact_url};
pub use remote::RemoteOptions;
pub use resolve::{DEFAULT_SYNC_INTERVAL, Settings, default_eviction_batch};
pub(crate) use values::secret_text;
pub use values::{Backend, ByteSize, ConfigDuration, MAX_DURATION};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
    /// The seed's name for `capacity` (100 to 1,000,000).
    pub max_items: Option<usize>,
    /// How a full cache picks what to evict: `engine` (the default),
    /// `lru`, `lfu` or `tinylfu`; read when a cache is built.
    pub eviction: Option<String>,
    /// Entries a full `lru` or `lfu` cache bounded by count evicts at once
    /// (1 to 1,000; default 1 % of the bound, at most 100).
    pub eviction_batch_size: Option<usize>,
    /// The priority of its entries: `low`, `medium` (the default), `high`
    /// or `critical`; read when a cache is built.
    pub priority: Option<String>,
    /// The share of the capacity critical entries may take (0 to 1;
    /// default 0.5).
    pub critical_share: Option<f64>,
    /// A bound on the entries' total weight in bytes (`"64MiB"`), instead
    /// of their number; read when a cache is built.
    pub capacity_bytes: Option<ByteSize>,
    /// Time between a synchronised cache's syncs (10 s to 1 h; default
    /// 5 min).
    pub sync_interval: Option<ConfigDuration>,
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
    /// What the meters carry (feature `metrics`).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Where the disk store keeps its file, for `backend = "disk"`.
    pub disk: Option<DiskOptions>,
    /// Keys and values in stores outside the process other than Redis:
    /// hashing, compression, encryption.
    pub remote: Option<RemoteOptions>,
    /// How to reach Redis, for the `redis` and `tiered` backends.
    #[cfg(feature = "redis")]
    pub redis: Option<RedisOptions>,
    /// How to join the peer-to-peer network, for `backend = "dht"`.
    pub dht: Option<DhtOptions>,
    /// The spec's top-level spelling of `dht.replication`.
    pub replication: Option<usize>,
    /// The spec's top-level spelling of `dht.prefix`.
    pub prefix: Option<String>,
    /// How replicas agree (only eventual, last-write-wins).
    pub consistency: Option<Consistency>,
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
#[non_exhaustive]
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
    /// The seed's name for `capacity`.
    pub max_items: Option<usize>,
    /// How its full caches evict.
    pub eviction: Option<String>,
    /// Entries a full `lru` or `lfu` cache evicts at once.
    pub eviction_batch_size: Option<usize>,
    /// The priority of its entries: `low`, `medium` (the default), `high`
    /// or `critical`; read when a cache is built.
    pub priority: Option<String>,
    /// The share of the capacity critical entries may take (0 to 1;
    /// default 0.5).
    pub critical_share: Option<f64>,
    /// A bound on the entries' total weight in bytes (`"64MiB"`), instead
    /// of their number; read when a cache is built.
    pub capacity_bytes: Option<ByteSize>,
    /// Time between syncs.
    pub sync_interval: Option<ConfigDuration>,
    /// Bound on entries per namespace (this service and one tenant), across
    /// its actions.
    pub quota: Option<usize>,
    /// Whether its actions' meters carry a `tenant` label; overrides
    /// `metrics.tenant_labels`.
    pub tenant_labels: Option<bool>,
    /// Per action.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionConfig>,
}

/// One action's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ActionConfig {
    /// The action's switch.
    pub enabled: Option<bool>,
    /// Time to live.
    pub ttl: Option<ConfigDuration>,
    /// Time to idle.
    pub tti: Option<ConfigDuration>,
    /// Bound on entries.
    pub capacity: Option<usize>,
    /// The seed's name for `capacity`.
    pub max_items: Option<usize>,
    /// How it evicts when full.
    pub eviction: Option<String>,
    /// Entries it evicts at once when full (`lru` or `lfu`).
    pub eviction_batch_size: Option<usize>,
    /// The priority of its entries: `low`, `medium` (the default), `high`
    /// or `critical`; read when a cache is built.
    pub priority: Option<String>,
    /// The share of the capacity critical entries may take (0 to 1;
    /// default 0.5).
    pub critical_share: Option<f64>,
    /// A bound on the entries' total weight in bytes (`"64MiB"`), instead
    /// of their number; read when a cache is built.
    pub capacity_bytes: Option<ByteSize>,
    /// Time between syncs.
    pub sync_interval: Option<ConfigDuration>,
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
#[non_exhaustive]
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
    /// Whether `GET /ready` waits until every backend outside the process
    /// has been reached once (default true). Calls never fail on a backend
    /// fault, so a service may choose to take traffic before.
    #[serde(default)]
    pub ready_requires_backends: Option<bool>,
}

impl AdminConfig {
    /// [`AdminConfig::ready_requires_backends`], defaulted.
    pub fn ready_requires_backends(&self) -> bool {
        self.ready_requires_backends.unwrap_or(true)
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ready_requires_backends", &self.ready_requires_backends)
            .finish()
    }
}

/// The `[metrics]` section: what the meters carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Whether the meters of a service's caches carry a `tenant` label
    /// (default false: each tenant multiplies the series).
    pub tenant_labels: Option<bool>,
    /// With tenant labels, how many tenants per cache get series of their
    /// own (default 100); the rest share one series labelled
    /// `tenant_overflow="true"`.
    pub max_tenants: Option<usize>,
}

/// The most `metrics.max_tenants` may be.
pub const MAX_TENANT_SERIES: usize = 10_000;

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

impl Config {
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
    /// The `[dht]` options in force, with the spec's top-level
    /// `replication` and `prefix`; an error when the two spellings
    /// disagree or the options cannot be used.
    pub fn dht_options(&self) -> Result<DhtOptions, String> {
        let mut d = self.dht.clone().unwrap_or_default();
        match (d.replication, self.replication) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "replication = {b} and dht.replication = {a} disagree; give one"
                ));
            }
            (None, r) => d.replication = r,
            _ => {}
        }
        match (&d.prefix, &self.prefix) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "prefix = {b:?} and dht.prefix = {a:?} disagree; give one"
                ));
            }
            (None, p) => d.prefix = p.clone(),
            _ => {}
        }
        d.check()?;
        Ok(d)
    }
}

/// Why configuration could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
