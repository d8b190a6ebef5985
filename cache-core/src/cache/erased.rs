//! The type-erased face of a cache that the registry holds.

use super::*;

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
        #[cfg(feature = "redis")]
        if let Some(t) = self.tier()
            && t.store.options().hash_keys
            && pattern.as_str() != "*"
            && pattern.literal().is_none()
        {
            return Err(crate::redis::hashed_pattern_error(pattern));
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
    #[cfg(feature = "redis")]
    fn apply_remote(&self, msg: &crate::redis::Invalidation) {
        Inner::apply_remote(self, msg)
    }
    fn keys(&self, query: &KeyQuery<'_>) -> Vec<String> {
        Inner::keys(self, query)
    }
    fn stats(&self) -> Stats {
        Inner::stats(self)
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
    fn apply(&self, config: &Config) -> Result<(), ConfigError> {
        Inner::apply(self, config)
    }
}
