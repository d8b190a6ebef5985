//! Reaching caches by name: the process-wide [`Registry`].
//!
//! Every `#[cached]` function's cache registers under its action name on
//! first use; a [`crate::CacheBuilder`] does when told to. Several caches may
//! share a name (two modules with a `get_user`); an operation by name then
//! acts on each of them.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::RwLock;

use crate::pattern::{Pattern, PatternError};
use crate::stats::Stats;

/// The operations on a cache that need no knowledge of its key and value types.
pub trait ErasedCache: Send + Sync {
    /// The cache's name.
    fn name(&self) -> &str;
    /// Removes the entry whose key text is `key`.
    fn invalidate_key_str(&self, key: &str) -> bool;
    /// Removes the entries whose key text matches `pattern`.
    fn revoke(&self, pattern: &Pattern) -> usize;
    /// Removes the entries stored with `tag`.
    fn invalidate_tag(&self, tag: &str) -> usize;
    /// Removes every entry.
    fn clear(&self) -> usize;
    /// Up to `limit` live keys matching `pattern`.
    fn keys(&self, pattern: Option<&Pattern>, limit: usize) -> Vec<String>;
    /// The cache's counters.
    fn stats(&self) -> Stats;
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No live cache has this name.
    #[error(
        "no cache named {0:?} is registered (a #[cached] function registers on its first call)"
    )]
    UnknownCache(String),
    /// The pattern is malformed.
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// Every named cache in the process.
#[derive(Default)]
pub struct Registry {
    caches: RwLock<BTreeMap<String, Vec<Weak<dyn ErasedCache>>>>,
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

impl Registry {
    pub(crate) fn register(&self, name: &str, cache: Weak<dyn ErasedCache>) {
        let mut map = self.caches.write();
        let list = map.entry(name.to_owned()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(cache);
    }

    /// The live caches named `name`.
    pub fn caches(&self, name: &str) -> Vec<Arc<dyn ErasedCache>> {
        self.caches
            .read()
            .get(name)
            .map(|l| l.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
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

    fn each<T>(
        &self,
        name: &str,
        f: impl Fn(&dyn ErasedCache) -> T,
    ) -> Result<Vec<T>, RegistryError> {
        let caches = self.caches(name);
        if caches.is_empty() {
            return Err(RegistryError::UnknownCache(name.to_owned()));
        }
        Ok(caches.iter().map(|c| f(&**c)).collect())
    }

    /// Removes the entry with key text `key` from the caches named `name`.
    pub fn invalidate(&self, name: &str, key: &str) -> Result<bool, RegistryError> {
        Ok(self
            .each(name, |c| c.invalidate_key_str(key))?
            .into_iter()
            .any(|x| x))
    }

    /// Removes what matches `pattern` from the caches named `name`.
    pub fn revoke(&self, name: &str, pattern: &str) -> Result<usize, RegistryError> {
        let p = Pattern::new(pattern)?;
        Ok(self.each(name, |c| c.revoke(&p))?.into_iter().sum())
    }

    /// Removes the entries tagged `tag` from the caches named `name`.
    pub fn invalidate_tag(&self, name: &str, tag: &str) -> Result<usize, RegistryError> {
        Ok(self
            .each(name, |c| c.invalidate_tag(tag))?
            .into_iter()
            .sum())
    }

    /// Clears the caches named `name`.
    pub fn clear(&self, name: &str) -> Result<usize, RegistryError> {
        Ok(self.each(name, |c| c.clear())?.into_iter().sum())
    }

    /// Up to `limit` keys of the caches named `name`, sorted.
    pub fn keys(
        &self,
        name: &str,
        pattern: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, RegistryError> {
        let p = pattern.map(Pattern::new).transpose()?;
        let mut all: Vec<String> = self
            .each(name, |c| c.keys(p.as_ref(), limit))?
            .into_iter()
            .flatten()
            .collect();
        all.sort();
        all.truncate(limit);
        Ok(all)
    }

    /// The summed counters of the caches named `name`.
    pub fn stats(&self, name: &str) -> Result<Stats, RegistryError> {
        let mut total = Stats::default();
        for s in self.each(name, |c| c.stats())? {
            total.merge(&s);
        }
        Ok(total)
    }
}
