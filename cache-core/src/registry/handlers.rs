//! The handlers a service gets: `{service}/cache/clear|delete|revoke|stats|keys`.

use super::*;

impl Registry {
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
        let out = self.handle(caller, path, body)?;
        // What a mutation removed has left the stores outside the process
        // when the answer comes (awaited, not blocking a thread).
        if let Some((service, _)) = path.split_once('/') {
            for c in self.service_caches(service) {
                c.settled().await;
            }
        }
        Ok(out)
    }

    pub(super) fn handle(
        &self,
        caller: &str,
        path: &str,
        body: Value,
    ) -> Result<Value, CacheError> {
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
                let mut keys: Vec<String> = match &b.terms {
                    None => caches.iter().flat_map(|c| c.keys(&q)).collect(),
                    Some(terms) => {
                        let terms: Vec<(String, String)> =
                            terms.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                        // Only actions with every index named can match.
                        let mut keys = Vec::new();
                        let mut known = std::collections::BTreeSet::new();
                        let mut any = false;
                        for c in &caches {
                            match c.query_keys(&terms, &q) {
                                Ok(k) => {
                                    any = true;
                                    keys.extend(k);
                                }
                                Err(crate::index::QueryError::UnknownIndex {
                                    known: k, ..
                                }) => known.extend(k),
                            }
                        }
                        if !any {
                            let names: Vec<&String> = terms.iter().map(|(n, _)| n).collect();
                            return Err(CacheError::BadRequest {
                                path: path.to_owned(),
                                message: format!(
                                    "no action of {service} has every index of {names:?}; its indexes: {}",
                                    if known.is_empty() {
                                        "none".to_string()
                                    } else {
                                        known.into_iter().collect::<Vec<_>>().join(", ")
                                    }
                                ),
                            });
                        }
                        keys
                    }
                };
                keys.sort();
                keys.truncate(limit);
                Ok(json!({ "service": service, "keys": keys }))
            }
            _ => unreachable!("checked above"),
        }
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
    /// Index terms every listed key's value must have.
    #[serde(rename = "where")]
    terms: Option<std::collections::BTreeMap<String, String>>,
    pattern: Option<String>,
    tag: Option<String>,
    limit: Option<usize>,
    tenant: Option<String>,
}
