//! Reaching caches by name: the process-wide [`Registry`].
//!
//! Every `#[cached]` function's cache registers under its action name on
//! first use, within its service if it has one; a [`crate::CacheBuilder`]
//! does when told to. Several caches may share a name (two modules with a
//! `get_user`); an operation by name then acts on each of them.
//!
//! Services get generated handlers, reached with [`Registry::request`]:
//!
//! | path | body | does |
//! |---|---|---|
//! | `{service}/cache/clear` | `{"tenant"?}` | clears the service's caches |
//! | `{service}/cache/delete` | `{"key", "tenant"?}` | deletes one entry |
//! | `{service}/cache/revoke` | `{"pattern", "tenant"?}` | deletes what matches the glob |
//! | `{service}/cache/stats` | | counters per action and in total |
//! | `{service}/cache/keys` | `{"pattern"?, "tag"?, "limit"?, "tenant"?}` | lists keys |
//!
//! A request acts on that service's caches only; with a `tenant`, on that
//! tenant's entries only. Events ([`Registry::publish`]) invalidate the keys
//! that configuration or [`Registry::on_event`] maps them to.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use serde_json::{Value, json};

use cache_common::template::{self, Piece};

pub use crate::cache::{ErasedCache, KeyQuery};
pub use crate::error::{CacheError, RegistryError};
use crate::namespace::{Quota, TenantId, tenant_id};
use crate::pattern::Pattern;
use crate::spec::check_event_template;
use crate::spec::{Config, ConfigError, EventMapping};
use crate::stats::Stats;

mod depends;
mod events;
mod handlers;

pub(crate) use depends::invalidate_dependents;
pub(crate) use events::init_services;
pub use events::{EvictPlan, ServiceInit};

/// Listings return at most this many keys.
pub const MAX_LIST_LIMIT: usize = 10_000;
use crate::cache::DEFAULT_LIST_LIMIT;

/// Every named cache in the process.
#[derive(Default)]
pub struct Registry {
    caches: RwLock<BTreeMap<String, Vec<Weak<dyn ErasedCache>>>>,
    quotas: Mutex<BTreeMap<String, Arc<Quota>>>,
    events: RwLock<Vec<EventMapping>>,
    /// The event mappings of the configuration in force.
    config_events: RwLock<Vec<EventMapping>>,
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

impl Registry {
    /// Registers `cache` under its name. A second live cache with the same
    /// service and identity (an explicit `name` used twice) is refused:
    /// `false`, and the caller keeps it apart from every shared store.
    pub(crate) fn register(&self, name: &str, cache: Weak<dyn ErasedCache>) -> bool {
        let Some(new) = cache.upgrade() else {
            return false;
        };
        let mut map = self.caches.write();
        let clash = map
            .values()
            .flatten()
            .filter_map(Weak::upgrade)
            .find(|c| c.identity() == new.identity() && c.service() == new.service());
        if let Some(c) = clash {
            tracing::error!(
                "a second cache named {:?} (service {:?}) was not registered: names must be unique; it stays in this process only",
                c.identity(),
                c.service()
            );
            return false;
        }
        let list = map.entry(name.to_owned()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(cache);
        true
    }

    /// The caches a name given by a user reaches: a cache's identity
    /// (`module::function`, or its explicit name), `service/action`, or a
    /// bare action name. More than one is an error naming them.
    pub fn resolve(&self, name: &str) -> Result<Arc<dyn ErasedCache>, CacheError> {
        let all = self.all();
        let label = |c: &Arc<dyn ErasedCache>| match c.service() {
            Some(s) => format!("{s}/{}", c.name()),
            None => c.identity().to_owned(),
        };
        let exact: Vec<_> = all
            .iter()
            .filter(|c| c.service().is_none() && c.identity() == name || label(c) == name)
            .cloned()
            .collect();
        let found = if exact.is_empty() {
            all.iter().filter(|c| c.name() == name).cloned().collect()
        } else {
            exact
        };
        match found.len() {
            0 => Err(CacheError::UnknownCache(name.to_owned())),
            1 => Ok(found.into_iter().next().expect("one")),
            _ => {
                let mut candidates: Vec<String> = found.iter().map(label).collect();
                candidates.sort();
                Err(CacheError::Ambiguous {
                    name: name.to_owned(),
                    candidates,
                })
            }
        }
    }

    /// The quota shared by `service`'s caches.
    pub(crate) fn quota(&self, service: &str) -> Arc<Quota> {
        self.quotas
            .lock()
            .entry(service.to_owned())
            .or_default()
            .clone()
    }

    fn all(&self) -> Vec<Arc<dyn ErasedCache>> {
        self.caches
            .read()
            .values()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The live caches named `name`.
    pub fn caches(&self, name: &str) -> Vec<Arc<dyn ErasedCache>> {
        self.caches
            .read()
            .get(name)
            .map(|l| l.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// The live caches of `service`.
    pub fn service_caches(&self, service: &str) -> Vec<Arc<dyn ErasedCache>> {
        init_services();
        self.all()
            .into_iter()
            .filter(|c| c.service() == Some(service))
            .collect()
    }

    /// The names of all live caches, sorted.
    pub fn names(&self) -> Vec<String> {
        self.caches
            .read()
            .iter()
            .filter(|(_, l)| l.iter().any(|w| w.strong_count() > 0))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The names of all services with a live cache, sorted.
    pub fn services(&self) -> Vec<String> {
        init_services();
        let mut s: Vec<String> = self
            .all()
            .iter()
            .filter_map(|c| c.service().map(str::to_owned))
            .collect();
        s.sort();
        s.dedup();
        s
    }

    fn each<T>(&self, name: &str, f: impl Fn(&dyn ErasedCache) -> T) -> Result<Vec<T>, CacheError> {
        let c = self.resolve(name)?;
        Ok(vec![f(&*c)])
    }

    /// Removes the entry with key text `key` from the caches named `name`.
    pub fn invalidate(&self, name: &str, key: &str) -> Result<bool, CacheError> {
        Ok(self
            .each(name, |c| c.invalidate_key_str(key, None))?
            .into_iter()
            .any(|n| n > 0))
    }

    /// Removes what matches `pattern` from the caches named `name`.
    pub fn revoke(&self, name: &str, pattern: &str) -> Result<usize, CacheError> {
        let p = Pattern::new(pattern)?;
        for r in self.each(name, |c| c.check_revoke(&p))? {
            r?;
        }
        let mut n = 0;
        for r in self.each(name, |c| c.revoke(&p, None))? {
            n += r?;
        }
        Ok(n)
    }

    /// Removes the entries tagged `tag` from the caches named `name`.
    pub fn invalidate_tag(&self, name: &str, tag: &str) -> Result<usize, CacheError> {
        Ok(self
            .each(name, |c| c.invalidate_tag(tag, None))?
            .into_iter()
            .sum())
    }

    /// Clears the caches named `name`.
    pub fn clear(&self, name: &str) -> Result<usize, CacheError> {
        Ok(self.each(name, |c| c.clear(None))?.into_iter().sum())
    }

    /// Up to `limit` keys of the caches named `name`, sorted.
    pub fn keys(
        &self,
        name: &str,
        pattern: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, CacheError> {
        let p = pattern.map(Pattern::new).transpose()?;
        let q = KeyQuery {
            pattern: p.as_ref(),
            limit: limit.min(MAX_LIST_LIMIT),
            ..KeyQuery::default()
        };
        let mut all: Vec<String> = self
            .each(name, |c| c.keys(&q))?
            .into_iter()
            .flatten()
            .collect();
        all.sort();
        all.truncate(q.limit);
        Ok(all)
    }

    /// The summed counters of the caches named `name`.
    pub fn stats(&self, name: &str) -> Result<Stats, CacheError> {
        let mut total = Stats::default();
        for s in self.each(name, |c| c.stats())? {
            total.merge(&s);
        }
        Ok(total)
    }

    /// Delivers an invalidation from another node to the cache it names.
    pub(crate) fn deliver(&self, msg: &crate::store::Invalidation) {
        // Each cache checks that the message names it.
        for c in self.all() {
            c.apply_remote(msg);
        }
    }

    /// Checks that `config` fits every live cache, without applying it.
    pub(crate) fn check_config(&self, config: &Config) -> Result<(), ConfigError> {
        // An `[actions.NAME]` section must reach one cache.
        for name in config.actions.keys() {
            let plain: Vec<_> = self
                .all()
                .into_iter()
                .filter(|c| c.service().is_none())
                .collect();
            let exact = plain.iter().any(|c| c.identity() == name);
            let mut bare: Vec<String> = plain
                .iter()
                .filter(|c| c.name() == name)
                .map(|c| c.identity().to_owned())
                .collect();
            if !exact && bare.len() > 1 {
                bare.sort();
                return Err(ConfigError::Mismatch(format!(
                    "actions.{name} names several caches: {}; name one (as actions.\"{}\")",
                    bare.join(", "),
                    bare[0]
                )));
            }
        }
        self.all().iter().try_for_each(|c| c.check(config))
    }

    /// Applies `config` to every live cache.
    pub(crate) fn apply_config(&self, config: &Config) -> Result<(), ConfigError> {
        self.remember(config);
        let mut first = None;
        for c in self.all() {
            if let Err(e) = c.apply(config) {
                tracing::error!("{e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Keeps what the registry itself reads of the configuration in force:
    /// its event mappings.
    pub(crate) fn remember(&self, config: &Config) {
        *self.config_events.write() = config.events.clone();
    }
}
