//! Queries over the secondary indexes ([`crate::index`]).

use super::*;

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    pub(super) fn query(&self, q: &Query) -> Result<Vec<(K, V)>, QueryError> {
        let terms = match &self.indexes {
            Some(ix) => ix.resolve(q)?,
            None => match q.terms.first() {
                Some((name, _)) => {
                    return Err(QueryError::UnknownIndex {
                        name: name.clone(),
                        known: Vec::new(),
                    });
                }
                None => Vec::new(),
            },
        };
        let keys: Vec<K> = match (&self.indexes, terms.is_empty()) {
            (Some(ix), false) => ix.candidates(&terms),
            _ => {
                let all = std::cell::RefCell::new(Vec::new());
                self.map.retain(|k, _| {
                    all.borrow_mut().push(k.clone());
                    true
                });
                all.into_inner()
            }
        };
        let mut texted: Vec<(String, K)> = keys
            .into_iter()
            .filter(|k| self.in_scope(k, q.tenant))
            .map(|k| (render_with(&k, self.render), k))
            .filter(|(s, _)| q.pattern.as_ref().is_none_or(|p| p.matches(s)))
            .collect();
        texted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let now = if self.expires() {
            self.clock.now_ms()
        } else {
            0
        };
        let mut out = Vec::new();
        for (_, k) in texted {
            if out.len() >= q.limit {
                break;
            }
            // Checked again against the entry read now: a change the
            // index has not caught up with never yields a wrong value.
            let Some(e) = self.map.peek(&k) else {
                continue;
            };
            if self.expires() && self.dead(e.expires_at.get(), e.meta.as_ref(), now) {
                continue;
            }
            if let Some(ix) = &self.indexes
                && !ix.matches(&e.value, &terms)
            {
                continue;
            }
            out.push((k, e.value));
        }
        Ok(out)
    }
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// [`ErasedCache::query_keys`]: a query with the listing's glob,
    /// tenant, tag and limit.
    pub(super) fn query_keys(
        &self,
        terms: &[(String, String)],
        q: &KeyQuery<'_>,
    ) -> Result<Vec<String>, QueryError> {
        let mut query = Query::new();
        query.terms = terms.to_vec();
        query.pattern = q.pattern.cloned();
        query.tenant = q.tenant;
        if q.tag.is_none() {
            query.limit = q.limit;
        }
        let tagged: Option<HashSet<K>> = q
            .tag
            .map(|t| self.tag_index.lock().get(t).cloned().unwrap_or_default());
        let mut out: Vec<String> = self
            .query(&query)?
            .into_iter()
            .filter(|(k, _)| tagged.as_ref().is_none_or(|t| t.contains(k)))
            .map(|(k, _)| render_with(&k, self.render))
            .collect();
        out.truncate(q.limit);
        Ok(out)
    }
}

impl<K: CacheKey, V: CacheValue> Cache<K, V> {
    /// The live entries that match `query`, sorted by key text, at most
    /// `query.limit` of them. It reads only what is cached: no loader
    /// runs, and no lookup is counted. An index the cache does not have is
    /// an error naming the ones it has.
    ///
    /// A query with terms reads the index, starting from the term with
    /// the fewest keys; one without visits every entry.
    pub fn query(&self, query: &Query) -> Result<Vec<(K, V)>, QueryError> {
        self.inner.query(query)
    }

    /// The names of the cache's indexes.
    pub fn index_names(&self) -> Vec<String> {
        self.inner
            .indexes
            .as_ref()
            .map_or_else(Vec::new, |ix| ix.names())
    }

    /// How much the cache's indexes hold now. An expired entry counts
    /// until something removes it (a lookup of it, or
    /// [`Cache::purge_expired`]), as it does in [`Cache::len`]; queries
    /// never return it.
    pub fn index_sizes(&self) -> IndexSizes {
        self.inner
            .indexes
            .as_ref()
            .map_or_else(IndexSizes::default, |ix| ix.sizes())
    }
}
