//! Entries with their order of use, so a bound on entries drops the least
//! recently used one without scanning them all (the deployment cache's).

use std::collections::{BTreeSet, HashMap};

/// Entries by id with the time each was last used, and `(time, id)` in
/// order.
pub(crate) struct Entries<E> {
    map: HashMap<String, (u64, E)>,
    order: BTreeSet<(u64, String)>,
}

impl<E> Default for Entries<E> {
    fn default() -> Self {
        Entries {
            map: HashMap::new(),
            order: BTreeSet::new(),
        }
    }
}

impl<E> Entries<E> {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&E> {
        self.map.get(id).map(|(_, e)| e)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &E)> {
        self.map.iter().map(|(k, (_, e))| (k, e))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &E> {
        self.map.values().map(|(_, e)| e)
    }

    /// Inserts or replaces the entry `id`, last used `at`.
    pub(crate) fn insert(&mut self, id: String, at: u64, e: E) {
        if let Some((old, _)) = self.map.get(&id) {
            self.order.remove(&(*old, id.clone()));
        }
        self.order.insert((at, id.clone()));
        self.map.insert(id, (at, e));
    }

    /// Removes the entry `id`.
    pub(crate) fn remove(&mut self, id: &str) -> Option<E> {
        let (at, e) = self.map.remove(id)?;
        self.order.remove(&(at, id.to_owned()));
        Some(e)
    }

    /// Marks `id` used `at`; the entry, for the caller to update.
    pub(crate) fn touch(&mut self, id: &str, at: u64) -> Option<&mut E> {
        let (old, e) = self.map.get_mut(id)?;
        self.order.remove(&(*old, id.to_owned()));
        *old = at;
        self.order.insert((at, id.to_owned()));
        Some(e)
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
        let mut m: Entries<&str> = Entries::default();
        m.insert("a".into(), 1, "A");
        m.insert("b".into(), 2, "B");
        m.insert("c".into(), 3, "C");
        assert_eq!(m.oldest_except(None).as_deref(), Some("a"));
        assert_eq!(m.oldest_except(Some("a")).as_deref(), Some("b"));
        assert_eq!(m.touch("a", 10).map(|e| *e), Some("A"));
        assert_eq!(m.oldest_except(None).as_deref(), Some("b"));
        m.insert("b".into(), 20, "B2");
        assert_eq!(m.get("b"), Some(&"B2"));
        assert_eq!(m.oldest_except(None).as_deref(), Some("c"));
        assert_eq!(m.remove("c"), Some("C"));
        assert_eq!(m.oldest_except(None).as_deref(), Some("a"));
        assert_eq!((m.len(), m.order.len()), (2, 2), "no stale order entries");
        assert_eq!(m.drain().len(), 2);
        assert!(m.oldest_except(None).is_none());
    }
}
