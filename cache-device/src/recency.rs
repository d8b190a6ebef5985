//! The deployment cache's entries with their order of use, so the bound on
//! entries drops the least recently used one without scanning them all.

use std::collections::{BTreeSet, HashMap};

use crate::deploy_cache::DeployEntry;

/// Entries by id, and `(last_accessed, id)` in order.
#[derive(Default)]
pub(crate) struct Entries {
    map: HashMap<String, DeployEntry>,
    order: BTreeSet<(u64, String)>,
}

impl Entries {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&DeployEntry> {
        self.map.get(id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &DeployEntry)> {
        self.map.iter()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &DeployEntry> {
        self.map.values()
    }

    /// Inserts or replaces the entry `id`.
    pub(crate) fn insert(&mut self, id: String, e: DeployEntry) {
        if let Some(old) = self.map.get(&id) {
            self.order.remove(&(old.last_accessed, id.clone()));
        }
        self.order.insert((e.last_accessed, id.clone()));
        self.map.insert(id, e);
    }

    /// Removes the entry `id`.
    pub(crate) fn remove(&mut self, id: &str) -> Option<DeployEntry> {
        let e = self.map.remove(id)?;
        self.order.remove(&(e.last_accessed, id.to_owned()));
        Some(e)
    }

    /// Marks `id` used at `now`; returns the updated entry.
    pub(crate) fn touch(&mut self, id: &str, now: u64) -> Option<DeployEntry> {
        let e = self.map.get_mut(id)?;
        self.order.remove(&(e.last_accessed, id.to_owned()));
        e.last_accessed = now;
        e.access_count += 1;
        self.order.insert((now, id.to_owned()));
        Some(e.clone())
    }

    /// The least recently used id other than `keep`.
    pub(crate) fn oldest_except(&self, keep: Option<&str>) -> Option<String> {
        self.order
            .iter()
            .find(|(_, id)| Some(id.as_str()) != keep)
            .map(|(_, id)| id.clone())
    }

    /// Removes every entry; returns their ids.
    pub(crate) fn drain(&mut self) -> Vec<String> {
        self.order.clear();
        self.map.drain().map(|(k, _)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_follows_inserts_touches_and_removals() {
        let e = |t: u64| DeployEntry {
            key: crate::deploy_cache::MethodCacheKey {
                device_type: "d".into(),
                firmware: "f".into(),
                signature: "s".into(),
                code_hash: "h".into(),
            },
            code: String::new(),
            method_name: "m".into(),
            deployed_at: 0,
            last_accessed: t,
            access_count: 0,
            deployment_ms: 0,
            status: crate::deploy_cache::Status::Deployed,
            metadata: Default::default(),
        };
        let mut m = Entries::default();
        m.insert("a".into(), e(1));
        m.insert("b".into(), e(2));
        m.insert("c".into(), e(3));
        assert_eq!(m.oldest_except(None).as_deref(), Some("a"));
        assert_eq!(m.oldest_except(Some("a")).as_deref(), Some("b"));
        m.touch("a", 10);
        assert_eq!(m.oldest_except(None).as_deref(), Some("b"));
        m.insert("b".into(), e(20));
        assert_eq!(m.oldest_except(None).as_deref(), Some("c"));
        m.remove("c");
        assert_eq!(m.oldest_except(None).as_deref(), Some("a"));
        assert_eq!(m.len(), 2);
        assert_eq!(m.order.len(), 2, "no stale order entries");
        assert_eq!(m.drain().len(), 2);
        assert!(m.oldest_except(None).is_none());
    }
}
