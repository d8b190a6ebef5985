//! The type-erased face of a cache that the registry holds.

use super::*;

/// Listings return this many keys unless told otherwise.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// What [`ErasedCache::keys`] lists.
#[derive(Debug, Clone, Copy)]
pub struct KeyQuery<'a> {
    /// Only keys matching this glob.
    pub pattern: Option<&'a Pattern>,
    /// Only keys stored with this tag.
    pub tag: Option<&'a str>,
    /// At most this many.
    pub limit: usize,
    /// Only this tenant's keys; all tenants' when `None`.
    pub tenant: Option<TenantId>,
}

impl Default for KeyQuery<'_> {
    fn default() -> Self {
        KeyQuery {
            pattern: None,
            tag: None,
            limit: DEFAULT_LIST_LIMIT,
            tenant: None,
        }
    }
}

/// The operations on a cache that need no knowledge of its key and value
/// types. `tenant` scopes an operation to one tenant's entries; `None` means
/// every tenant's.
pub trait ErasedCache: Send + Sync {
    /// The cache's action name.
    fn name(&self) -> &str;
    /// Its identity: the action name in a service, an explicit name, or
    /// `module::path::function`.
    fn identity(&self) -> &str;
    /// The service it belongs to.
    fn service(&self) -> Option<&str>;
    /// Removes the entries whose key text is `key`; returns how many.
    fn invalidate_key_str(&self, key: &str, tenant: Option<TenantId>) -> usize;
    /// Removes the entries whose key text matches `pattern`; an error, and
    /// nothing removed, when a tier cannot select by it.
    fn revoke(&self, pattern: &Pattern, tenant: Option<TenantId>) -> Result<usize, StoreError>;
    /// Whether every tier can select by `pattern`; checked on each cache
    /// before any removes anything, so a refused revoke removes nothing.
    fn check_revoke(&self, pattern: &Pattern) -> Result<(), StoreError>;
    /// Removes the entries stored with `tag`.
    fn invalidate_tag(&self, tag: &str, tenant: Option<TenantId>) -> usize;
    /// Removes every entry.
    fn clear(&self, tenant: Option<TenantId>) -> usize;
    /// Live keys, sorted.
    fn keys(&self, query: &KeyQuery<'_>) -> Vec<String>;
    /// The key texts whose values have every `(index, term)`, as
    /// [`ErasedCache::keys`] lists them; an error when the cache lacks one
    /// of the indexes.
    fn query_keys(
        &self,
        terms: &[(String, String)],
        query: &KeyQuery<'_>,
    ) -> Result<Vec<String>, QueryError> {
        let _ = query;
        Err(QueryError::UnknownIndex {
            name: terms.first().map(|t| t.0.clone()).unwrap_or_default(),
            known: Vec::new(),
        })
    }
    /// The cache's counters.
    fn stats(&self) -> Stats;
    /// Its counters per tenant, each with the entries it holds, when its
    /// meters are labelled by tenant (configuration's `tenant_labels`);
    /// `None` otherwise.
    fn tenant_stats(&self) -> Option<Vec<(TenantRow, Stats)>> {
        None
    }
    /// The store outside the process its tier uses, if one is attached,
    /// and whether values also live in the process (`l1`).
    fn remote(&self) -> Option<(Arc<dyn crate::store::Remote>, bool)> {
        None
    }
    /// Applies an invalidation another node published, to this process only.
    fn apply_remote(&self, msg: &Invalidation);
    /// Whether its entries declare what they depend on.
    fn has_dependencies(&self) -> bool {
        false
    }
    /// Invalidates, here and everywhere, the entries that depend on the key
    /// text `key`; returns the key texts of those this process held.
    fn invalidate_dependants_of(&self, key: &str) -> Vec<String> {
        let _ = key;
        Vec::new()
    }
    /// Checks that `config` fits this cache, changing nothing.
    fn check(&self, config: &Config) -> Result<(), ConfigError>;
    /// Completes once the invalidations this cache sent outside the process
    /// have landed (at most the store's deadline, four times), without
    /// holding a thread: what an async caller awaits after invalidating.
    fn settled(&self) -> crate::store::BoxFuture<'static, ()> {
        Box::pin(async {})
    }
    /// Applies configuration; an error changes nothing.
    fn apply(&self, config: &Config) -> Result<(), ConfigError>;
}

impl<K: CacheKey, V: CacheValue> ErasedCache for Inner<K, V> {
    fn name(&self) -> &str {
        &self.name
    }
    fn identity(&self) -> &str {
        &self.identity
    }
    fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }
    fn invalidate_key_str(&self, key: &str, tenant: Option<TenantId>) -> usize {
        self.invalidate_key_everywhere(key, tenant)
    }
    fn revoke(&self, pattern: &Pattern, tenant: Option<TenantId>) -> Result<usize, StoreError> {
        self.revoke_everywhere(pattern, tenant)
    }
    fn check_revoke(&self, pattern: &Pattern) -> Result<(), StoreError> {
        if let Some(t) = self.tier() {
            return t.remote.check_pattern(pattern);
        }
        let _ = pattern;
        Ok(())
    }
    fn invalidate_tag(&self, tag: &str, tenant: Option<TenantId>) -> usize {
        self.invalidate_tag_everywhere(tag, tenant)
    }
    fn clear(&self, tenant: Option<TenantId>) -> usize {
        self.clear_everywhere(tenant)
    }
    fn apply_remote(&self, msg: &Invalidation) {
        Inner::apply_remote(self, msg)
    }
    fn has_dependencies(&self) -> bool {
        self.deps.is_some()
    }
    fn invalidate_dependants_of(&self, key: &str) -> Vec<String> {
        Inner::invalidate_dependants_of(self, key)
    }
    fn keys(&self, query: &KeyQuery<'_>) -> Vec<String> {
        Inner::keys(self, query)
    }
    fn stats(&self) -> Stats {
        Inner::stats(self)
    }
    fn query_keys(
        &self,
        terms: &[(String, String)],
        query: &KeyQuery<'_>,
    ) -> Result<Vec<String>, QueryError> {
        Inner::query_keys(self, terms, query)
    }
    fn tenant_stats(&self) -> Option<Vec<(TenantRow, Stats)>> {
        Inner::tenant_stats(self)
    }
    fn remote(&self) -> Option<(Arc<dyn crate::store::Remote>, bool)> {
        self.tier().map(|t| (t.remote.clone(), t.l1))
    }
    fn check(&self, config: &Config) -> Result<(), ConfigError> {
        let s = config.resolve_for(
            self.service.as_deref(),
            &self.name,
            &self.identity,
            &self.defaults,
        );
        self.check_backend(&s)?;
        self.key_mask_for(&s).map(|_| ())
    }
    fn settled(&self) -> crate::store::BoxFuture<'static, ()> {
        let Some(t) = self.tier() else {
            return Box::pin(async {});
        };
        let remote = t.remote.clone();
        let wait = remote.deadline() * 4;
        Box::pin(async move {
            // On the bridge, which keeps time whatever the caller's runtime.
            crate::store::bridge::on_bridge(wait, async move {
                while remote.has_pending_invalidations() {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            })
            .await;
        })
    }
    fn apply(&self, config: &Config) -> Result<(), ConfigError> {
        Inner::apply(self, config)
    }
}
