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

    /// Runs the handler at `path` with `body`, as the local process.
    pub async fn request(&self, path: &str, body: Value) -> Result<Value, CacheError> {
        self.request_as("local", path, body).await
    }

    /// Runs the handler at `path` with `body` for `caller`, who is named in
    /// the audit line a mutation writes.
    pub async fn request_as(
        &self,
        caller: &str,
        path: &str,
        body: Value,
    ) -> Result<Value, CacheError> {
        self.handle(caller, path, body)
    }

    fn handle(&self, caller: &str, path: &str, body: Value) -> Result<Value, CacheError> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let [service, "cache", op] = parts[..] else {
            return Err(CacheError::UnknownPath(path.to_owned()));
        };
        if !matches!(op, "clear" | "delete" | "revoke" | "stats" | "keys") {
            return Err(CacheError::UnknownPath(path.to_owned()));
        }
        let caches = self.service_caches(service);
        if caches.is_empty() {
            return Err(CacheError::UnknownService(service.to_owned()));
        }
        let body = if body.is_null() { json!({}) } else { body };
        let bad = |e: serde_json::Error| CacheError::BadRequest {
            path: path.to_owned(),
            message: e.to_string(),
        };
        // A tenant this process never saw may still have entries in a
        // shared store, and on other nodes: it is named all the same.
        let scope = |tenant: &Option<String>| -> Option<Option<TenantId>> {
            match tenant {
                None => Some(None),
                Some(t) => Some(Some(tenant_id(t))),
            }
        };
        let audit = |what: &str, removed: usize| {
            tracing::info!(
                target: "cache_core::audit",
                caller,
                service,
                op,
                removed,
                "cache {op} on {service} by {caller}: {what}, {removed} removed"
            );
        };
        let sum = |f: &dyn Fn(&dyn ErasedCache) -> usize| -> usize {
            caches.iter().map(|c| f(&**c)).sum()
        };
        match op {
            "clear" => {
                let b: ClearBody = serde_json::from_value(body).map_err(bad)?;
                let n = match scope(&b.tenant) {
                    Some(t) => sum(&|c| c.clear(t)),
                    None => 0,
                };
                audit("clear", n);
                Ok(json!({ "service": service, "cleared": n }))
            }
            "delete" => {
                let b: DeleteBody = serde_json::from_value(body).map_err(bad)?;
                check_len(path, "key", &b.key)?;
                let n = match scope(&b.tenant) {
                    Some(t) => sum(&|c| c.invalidate_key_str(&b.key, t)),
                    None => 0,
                };
                audit(&format!("delete {:?}", b.key), n);
                Ok(json!({ "service": service, "key": b.key, "deleted": n }))
            }
            "revoke" => {
                let b: RevokeBody = serde_json::from_value(body).map_err(bad)?;
                let p = Pattern::new(&b.pattern)?;
                for c in &caches {
                    c.check_revoke(&p)?;
                }
                let n = match scope(&b.tenant) {
                    Some(t) => {
                        let mut n = 0;
                        for c in &caches {
                            n += c.revoke(&p, t)?;
                        }
                        n
                    }
                    None => 0,
                };
                audit(&format!("revoke {:?}", b.pattern), n);
                Ok(json!({ "service": service, "pattern": b.pattern, "revoked": n }))
            }
            "stats" => {
                let _: StatsBody = serde_json::from_value(body).map_err(bad)?;
                let mut total = Stats::default();
                let mut actions = serde_json::Map::new();
                for c in &caches {
                    let s = c.stats();
                    total.merge(&s);
                    let entry = actions
                        .entry(c.name().to_owned())
                        .or_insert(json!(Stats::default()));
                    let mut merged: Stats =
                        serde_json::from_value(entry.clone()).unwrap_or_default();
                    merged.merge(&s);
                    *entry = stats_json(&merged);
                }
                let quota = self.quota(service);
                Ok(json!({
                    "service": service,
                    "actions": actions,
                    "total": stats_json(&total),
                    "quota_rejections": quota.rejected(),
                }))
            }
            "keys" => {
                let b: KeysBody = serde_json::from_value(body).map_err(bad)?;
                let p = b.pattern.as_deref().map(Pattern::new).transpose()?;
                let limit = b.limit.unwrap_or(DEFAULT_LIST_LIMIT);
                if limit > MAX_LIST_LIMIT {
                    return Err(CacheError::BadRequest {
                        path: path.to_owned(),
                        message: format!("limit {limit} is over the maximum of {MAX_LIST_LIMIT}"),
                    });
                }
                let Some(tenant) = scope(&b.tenant) else {
                    return Ok(json!({ "service": service, "keys": [] }));
                };
                let q = KeyQuery {
                    pattern: p.as_ref(),
                    tag: b.tag.as_deref(),
                    limit,
                    tenant,
                };
                let mut keys: Vec<String> = caches.iter().flat_map(|c| c.keys(&q)).collect();
                keys.sort();
                keys.truncate(limit);
                Ok(json!({ "service": service, "keys": keys }))
            }
            _ => unreachable!("checked above"),
        }
    }

    /// Maps `event` to key templates or patterns, in code. With a `service`,
    /// only that service's caches are touched.
    pub fn on_event(
        &self,
        event: &str,
        service: Option<&str>,
        keys: &[&str],
    ) -> Result<(), CacheError> {
        for k in keys {
            check_event_template(k).map_err(|message| CacheError::BadTemplate {
                event: event.to_owned(),
                template: (*k).to_owned(),
                message,
            })?;
        }
        self.events.write().push(EventMapping {
            event: event.to_owned(),
            service: service.map(str::to_owned),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        });
        Ok(())
    }

    /// Invalidates the keys and patterns that `event` maps to, filled in from
    /// `payload`; returns how many entries were removed. A string field
    /// `tenant` in the payload scopes it to that tenant. If any template
    /// names a field the payload lacks, nothing is revoked.
    pub async fn publish(&self, event: &str, payload: Value) -> Result<usize, CacheError> {
        init_services();
        let from_config = self.config_events.read().clone();
        let code = self.events.read().clone();
        let mappings = from_config
            .iter()
            .chain(code.iter())
            .filter(|m| m.event == event);
        // Fill every template before touching anything.
        let mut work = Vec::new();
        for m in mappings {
            for t in &m.keys {
                let filled = fill_template(t, &payload).map_err(|e| match e {
                    Fill::Missing(field) => CacheError::MissingField {
                        event: event.to_owned(),
                        template: t.clone(),
                        field,
                    },
                    Fill::Bad(message) => CacheError::BadTemplate {
                        event: event.to_owned(),
                        template: t.clone(),
                        message,
                    },
                })?;
                work.push((m.service.clone(), Pattern::new(&filled)?));
            }
        }
        // Named even if this process never saw it: other nodes and the
        // shared store may hold its entries.
        let scope = payload.get("tenant").and_then(Value::as_str).map(tenant_id);
        let all = self.all();
        let reached = |service: &Option<String>| {
            all.iter()
                .filter(|c| service.is_none() || c.service() == service.as_deref())
                .cloned()
                .collect::<Vec<_>>()
        };
        // Every pattern must be possible everywhere before anything goes.
        for (service, pattern) in &work {
            for c in reached(service) {
                c.check_revoke(pattern)?;
            }
        }
        let mut removed = 0;
        for (service, pattern) in &work {
            for c in reached(service) {
                removed += c.revoke(pattern, scope)?;
            }
        }
        tracing::info!(
            target: "cache_core::audit",
            event,
            removed,
            "event {event}: {removed} entries invalidated"
        );
        Ok(removed)
    }
}

fn stats_json(s: &Stats) -> Value {
    let mut v = json!(s);
    v["hit_rate"] = json!(s.hit_rate());
    v["mean_load_ms"] = json!(s.mean_load_time().as_secs_f64() * 1e3);
    v
}

fn check_len(path: &str, field: &str, v: &str) -> Result<(), CacheError> {
    if v.len() > crate::pattern::MAX_PATTERN_LEN {
        return Err(CacheError::BadRequest {
            path: path.to_owned(),
            message: format!(
                "`{field}` is {} bytes; the limit is {}",
                v.len(),
                crate::pattern::MAX_PATTERN_LEN
            ),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearBody {
    tenant: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    key: String,
    tenant: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    pattern: String,
    tenant: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsBody {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysBody {
    pattern: Option<String>,
    tag: Option<String>,
    limit: Option<usize>,
    tenant: Option<String>,
}

enum Fill {
    Missing(String),
    Bad(String),
}

/// Fills `{field}` (or `{a.b}` for nested fields) from `payload`, by the
/// template grammar keys use ([`cache_common::template`]).
fn fill_template(t: &str, payload: &Value) -> Result<String, Fill> {
    let mut out = String::new();
    for piece in template::parse(t).map_err(|e| Fill::Bad(e.to_string()))? {
        let field = match piece {
            Piece::Text(text) => {
                out.push_str(&text);
                continue;
            }
            Piece::Field(f) => f,
        };
        let mut v = payload;
        for part in field.split('.') {
            v = v.get(part).ok_or_else(|| Fill::Missing(field.clone()))?;
        }
        // The value reads as an argument does in key text (a string's
        // `:` escaped, a long one as its digest), so it names that key.
        let text = match v {
            Value::String(s) => {
                let mut t = String::new();
                crate::key::KeyPart::write_key(s.as_str(), &mut t);
                t
            }
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => return Err(Fill::Missing(field)),
            _ => {
                return Err(Fill::Bad(format!(
                    "field `{field}` is an object or array, not a value"
                )));
            }
        };
        crate::pattern::push_glob_escaped(&mut out, &text);
    }
    Ok(out)
}

/// Builds a service's caches at startup, so its handlers answer before
/// its first call.
pub struct ServiceInit {
    /// The service.
    pub service: &'static str,
    /// Touches each action's cache.
    pub init: fn(),
}
inventory::collect!(ServiceInit);

inventory::submit!(crate::store::InvalidationSink(|msg| registry().deliver(msg)));

/// Runs every service's `init` once.
pub(crate) fn init_services() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for s in inventory::iter::<ServiceInit> {
            tracing::debug!(service = s.service, "registering cache service");
            (s.init)();
        }
    });
}

/// What `#[cache_evict]` removes from its service, rendered at call time.
pub struct EvictPlan {
    /// The service.
    pub service: &'static str,
    /// Exact key texts.
    pub keys: Vec<String>,
    /// Glob patterns.
    pub patterns: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Everything of the service.
    pub all: bool,
}

impl EvictPlan {
    /// Evicts, within the current tenant, from every cache of the service.
    pub fn run(&self) {
        init_services();
        let tenant = Some(crate::namespace::current_tenant());
        let caches = crate::registry::registry().service_caches(self.service);
        let mut removed = 0;
        // A pattern some cache cannot select is done nowhere.
        let patterns: Vec<crate::pattern::Pattern> = self
            .patterns
            .iter()
            .filter_map(|p| match crate::pattern::Pattern::new(p) {
                Ok(p) => match caches.iter().try_for_each(|c| c.check_revoke(&p)) {
                    Ok(()) => Some(p),
                    Err(e) => {
                        tracing::error!(
                            "cache_evict on {}: pattern {p} not revoked: {e}",
                            self.service
                        );
                        None
                    }
                },
                Err(e) => {
                    tracing::error!("cache_evict on {}: {e}", self.service);
                    None
                }
            })
            .collect();
        for c in &caches {
            if self.all {
                removed += c.clear(tenant);
                continue;
            }
            for k in &self.keys {
                removed += c.invalidate_key_str(k, tenant);
            }
            for p in &patterns {
                match c.revoke(p, tenant) {
                    Ok(n) => removed += n,
                    Err(e) => tracing::error!(
                        "cache_evict on {}: pattern {p} not revoked: {e}",
                        self.service
                    ),
                }
            }
            for t in &self.tags {
                removed += c.invalidate_tag(t, tenant);
            }
        }
        tracing::debug!(service = self.service, removed, "cache_evict");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_and_escape() {
        let p = json!({"id": 7, "name": "a*b", "user": {"org": "acme"}});
        let f = |t| {
            fill_template(t, &p).map_err(|e| match e {
                Fill::Missing(f) => format!("missing {f}"),
                Fill::Bad(m) => m,
            })
        };
        assert_eq!(f("get_user:{id}").unwrap(), "get_user:7");
        assert_eq!(f("by_name:{name}").unwrap(), "by_name:a\\*b");
        assert_eq!(f("org:{user.org}:*").unwrap(), "org:acme:*");
        assert_eq!(f("x:{nope}").unwrap_err(), "missing nope");
        assert_eq!(f("lit:{{x}}:{id}").unwrap(), "lit:{x}:7");
        assert!(check_event_template("get_user:{id").is_err());
        assert!(check_event_template("get_user:{}").is_err());
        assert!(check_event_template("a[b:{id}").is_err());
        assert!(check_event_template("get_profile:*").is_ok());
    }
}
