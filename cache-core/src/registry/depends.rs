//! Dependency invalidation across the registry (see [`crate::depend`]).

use super::events::init_services;
use super::registry;

/// Invalidates what depends on the key text `key`, in every registered
/// cache with dependencies, here and everywhere; then, from the entries
/// this process held, what depends on those (templates the closure could
/// not resolve), each key text once, so cycles end.
pub(crate) fn invalidate_dependents(key: &str) {
    init_services();
    crate::depend::init_dependants();
    let caches: Vec<_> = registry()
        .all()
        .into_iter()
        .filter(|c| c.has_dependencies())
        .collect();
    if caches.is_empty() {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    let mut queue = vec![key.to_owned()];
    while let Some(k) = queue.pop() {
        if !seen.insert(k.clone()) {
            continue;
        }
        for c in &caches {
            queue.extend(c.invalidate_dependants_of(&k));
        }
    }
}
