//! Removals by scope: pattern, key text, tag, tenant, dependants; and
//! listing keys.

use super::*;

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// An entry's tags: those the cache gives, and what it depends on
    /// (under [`crate::depend::DEP_TAG`]).
    pub(super) fn tags_of(&self, key: &K) -> Vec<String> {
        let mut tags = self.tags.map(|f| f(key)).unwrap_or_default();
        if let Some(d) = &self.deps {
            let args = (d.args)(key);
            tags.extend(
                d.templates
                    .iter()
                    .filter_map(|t| crate::depend::render(t, &args))
                    .map(|text| format!("{}{text}", crate::depend::DEP_TAG)),
            );
        }
        tags
    }

    /// Invalidates what depends on `key`'s entry, everywhere, after the
    /// entry was invalidated or replaced.
    pub(super) fn invalidate_dependants(&self, key: &K) {
        if let Some(f) = self.cascade
            && crate::depend::declared()
        {
            f(&render_with(key, self.render));
        }
    }

    /// Removes every entry in `scope` whose key text satisfies `pred`.
    pub(super) fn remove_where(
        &self,
        scope: Option<TenantId>,
        pred: impl Fn(&str) -> bool,
    ) -> usize {
        self.bump();
        // `retain` takes `Fn`, hence the cells; events fire after it returns.
        let removed = std::cell::RefCell::new(Vec::new());
        let buf = std::cell::RefCell::new(String::new());
        self.map.retain(|k, e| {
            if !self.in_scope(k, scope) {
                return true;
            }
            let mut s = buf.borrow_mut();
            s.clear();
            (self.render)(k, &mut s);
            let hit = pred(&s);
            if hit {
                removed.borrow_mut().push((k.clone(), e.meta.cloned()));
            }
            !hit
        });
        let removed = removed.into_inner();
        for (k, meta) in &removed {
            self.removed(
                k,
                meta.as_ref(),
                EventKind::Invalidate,
                Counter::Invalidation,
            );
        }
        removed.len()
    }

    pub(super) fn revoke(&self, pattern: &Pattern, scope: Option<TenantId>) -> usize {
        self.remove_where(scope, |s| pattern.matches(s))
    }

    pub(super) fn invalidate_key_str(&self, key: &str, scope: Option<TenantId>) -> usize {
        self.remove_where(scope, |s| s == key)
    }

    pub(super) fn invalidate_tag(&self, tag: &str, scope: Option<TenantId>) -> usize {
        self.invalidate_tag_keys(tag, scope).len()
    }

    /// [`Inner::invalidate_tag`], returning the keys it removed.
    pub(super) fn invalidate_tag_keys(&self, tag: &str, scope: Option<TenantId>) -> Vec<K> {
        // Even with no entry tagged yet: a load under way must not store.
        self.bump();
        let keys: Vec<K> = {
            let mut idx = self.tag_index.lock();
            let Some(set) = idx.get_mut(tag) else {
                return Vec::new();
            };
            let keys: Vec<K> = set
                .iter()
                .filter(|k| self.in_scope(k, scope))
                .cloned()
                .collect();
            for k in &keys {
                set.remove(k);
            }
            if set.is_empty() {
                idx.remove(tag);
            }
            keys
        };
        keys.into_iter().filter(|k| self.invalidate(k)).collect()
    }

    pub(super) fn clear(&self, scope: Option<TenantId>) -> usize {
        self.bump();
        if scope.is_some() {
            return self.remove_where(scope, |_| true);
        }
        let drained = self.map.drain();
        for (k, e) in &drained {
            self.removed(
                k,
                e.meta.as_ref(),
                EventKind::Invalidate,
                Counter::Invalidation,
            );
        }
        drained.len()
    }

    pub(super) fn keys(&self, q: &KeyQuery<'_>) -> Vec<String> {
        let now = if self.expires() {
            self.clock.now_ms()
        } else {
            0
        };
        let tagged: Option<HashSet<K>> = q
            .tag
            .map(|t| self.tag_index.lock().get(t).cloned().unwrap_or_default());
        let mut out = Vec::new();
        for (k, e) in self.map.entries() {
            if (self.expires() && self.dead(e.expires_at.get(), e.meta.as_ref(), now))
                || !self.in_scope(&k, q.tenant)
                || tagged.as_ref().is_some_and(|t| !t.contains(&k))
            {
                continue;
            }
            let s = render_with(&k, self.render);
            if q.pattern.is_none_or(|p| p.matches(&s)) {
                out.push(s);
            }
        }
        // The first `limit` in order, not the first `limit` found.
        out.sort();
        out.truncate(q.limit);
        out
    }

    /// Removes entries by pattern here, and in L2 and the other nodes' L1s.
    /// A pattern the remote tier cannot select (a glob over hashed keys) is
    /// an error, and nothing is removed anywhere.
    pub(super) fn revoke_everywhere(
        &self,
        pattern: &Pattern,
        scope: Option<TenantId>,
    ) -> Result<usize, StoreError> {
        self.propagate(RemoteOp::Pattern(pattern.clone()), scope)?;
        Ok(self.revoke(pattern, scope))
    }

    // Each `..._everywhere` starts the remote part first: from then until it
    // is applied this node reads nothing from Redis, so no load between the
    // two parts can bring the old value back from there.

    /// Removes an entry by its key text here and everywhere.
    pub(super) fn invalidate_key_everywhere(&self, key: &str, scope: Option<TenantId>) -> usize {
        let _ = self.propagate(RemoteOp::Key(key.to_owned()), scope);
        let n = self.invalidate_key_str(key, scope);
        if let Some(f) = self.cascade
            && crate::depend::declared()
        {
            f(key);
        }
        n
    }

    /// Invalidates, here and everywhere, the entries that depend on the key
    /// text `key`; returns the key texts of those this process held.
    pub(super) fn invalidate_dependants_of(&self, key: &str) -> Vec<String> {
        // Only a cache whose templates can name the key: the others keep
        // their loads under way (a tag invalidation stops them all).
        let Some(deps) = &self.deps else {
            return Vec::new();
        };
        if !deps.templates.iter().any(|t| match t.first() {
            Some(cache_common::template::Piece::Text(lead)) => key.starts_with(lead.as_str()),
            _ => true,
        }) {
            return Vec::new();
        }
        let tag = format!("{}{key}", crate::depend::DEP_TAG);
        let _ = self.propagate(RemoteOp::Tag(tag.clone()), None);
        self.invalidate_tag_keys(&tag, None)
            .iter()
            .map(|k| render_with(k, self.render))
            .collect()
    }

    /// Clears here and everywhere.
    pub(super) fn clear_everywhere(&self, scope: Option<TenantId>) -> usize {
        let _ = self.propagate(RemoteOp::Clear, scope);
        self.clear(scope)
    }

    /// Removes a tag's entries here, in L2 (through its tag sets), and in
    /// the other nodes' L1s.
    pub(super) fn invalidate_tag_everywhere(&self, tag: &str, scope: Option<TenantId>) -> usize {
        let _ = self.propagate(RemoteOp::Tag(tag.to_owned()), scope);
        self.invalidate_tag(tag, scope)
    }
}
