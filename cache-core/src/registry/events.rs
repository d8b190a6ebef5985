//! Events and what they invalidate, `#[cache_evict]` plans, and the
//! services built at startup.

use super::*;

impl Registry {
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
        for c in self.all() {
            c.settled().await;
        }
        Ok(removed)
    }
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
