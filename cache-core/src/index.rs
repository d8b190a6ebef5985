//! Secondary indexes over cached values, and the queries that read them.
//!
//! A cache declares named indexes, each a function from a value to the
//! terms it is found under (`language` → `["python"]`, `function` → every
//! function name). The index maps each term to the keys whose value has it.
//!
//! The index follows the map, not the operations: after every change to a
//! key's entry (insert, replace, eviction, expiry, invalidation, clear) the
//! cache calls [`Indexes::resync`], which, under the index's lock, reads the
//! entry the map holds *now* and indexes exactly its terms. Whatever order
//! concurrent changes land in, the last resync of a key sees the map's last
//! state, so the index converges on the map. A query still checks each
//! value it returns against its terms, so a resync not yet run never makes
//! it return a value that does not match.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::namespace::TenantId;
use crate::pattern::Pattern;

/// The terms a value is found under in one index.
pub type IndexFn<V> = Arc<dyn Fn(&V) -> Vec<String> + Send + Sync>;

/// What a query asks for: equality terms on indexes (all must hold), an
/// optional glob over the key text, a tenant, and a limit.
///
/// ```
/// use cache_core::index::Query;
/// let q = Query::new().eq("language", "python").eq("function", "main").limit(10);
/// # let _ = q;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Query {
    /// `(index, term)` pairs; a value matches when it has every one.
    pub terms: Vec<(String, String)>,
    /// Only keys whose text matches this glob.
    pub pattern: Option<Pattern>,
    /// Only this tenant's entries; every tenant's when `None`.
    pub tenant: Option<TenantId>,
    /// At most this many results: the first in key-text order.
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            terms: Vec::new(),
            pattern: None,
            tenant: None,
            limit: usize::MAX,
        }
    }
}

impl Query {
    /// A query that matches every live entry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also requires `term` in the index `index`.
    pub fn eq(mut self, index: impl Into<String>, term: impl Into<String>) -> Self {
        self.terms.push((index.into(), term.into()));
        self
    }

    /// Also requires the key text to match `pattern`.
    pub fn matching(mut self, pattern: Pattern) -> Self {
        self.pattern = Some(pattern);
        self
    }

    /// Only `tenant`'s entries.
    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// At most `limit` results.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// Why a query could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query names an index the cache does not have.
    #[error("no index named {name:?}; this cache has {}", known_list(.known))]
    UnknownIndex {
        /// The name asked for.
        name: String,
        /// The cache's indexes.
        known: Vec<String>,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none (declare one with CacheBuilder::index)".to_string()
    } else {
        known.join(", ")
    }
}

/// Sizes of an index set, for memory accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexSizes {
    /// Keys with at least one term.
    pub keys: usize,
    /// Distinct terms, over every index.
    pub terms: usize,
    /// (term, key) pairs, over every index.
    pub postings: usize,
}

/// One term of one index: its position among the definitions, and the text.
type Term = (usize, Arc<str>);

/// A fast hasher, seeded per map (foldhash, through quick_cache).
type Fast = quick_cache::DefaultHashBuilder;

/// A key's number in the index: postings hold these, not keys, so a
/// posting costs a few bytes and intersections hash integers.
type Id = u32;

struct State<K> {
    /// Per index: term → the ids of the keys with it.
    postings: Vec<HashMap<Arc<str>, HashSet<Id, Fast>, Fast>>,
    /// Per indexed key: its id.
    ids: HashMap<K, Id, Fast>,
    /// Per id: its key and the terms it is indexed under now (`None`
    /// when the id is free).
    slots: Vec<Option<(K, Box<[Term]>)>>,
    /// Ids free for reuse.
    free: Vec<Id>,
}

/// The indexes of one cache.
pub(crate) struct Indexes<K, V> {
    defs: Vec<(String, IndexFn<V>)>,
    state: Mutex<State<K>>,
}

impl<K, V> fmt::Debug for Indexes<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.defs.iter().map(|(n, _)| n))
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V> Indexes<K, V> {
    /// Indexes with these definitions (a later one of the same name
    /// replaces the earlier).
    pub(crate) fn new(defs: Vec<(String, IndexFn<V>)>) -> Self {
        let mut unique: Vec<(String, IndexFn<V>)> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for (name, f) in defs {
            match at.get(&name) {
                Some(&i) => unique[i].1 = f,
                None => {
                    at.insert(name.clone(), unique.len());
                    unique.push((name, f));
                }
            }
        }
        let n = unique.len();
        Indexes {
            defs: unique,
            state: Mutex::new(State {
                postings: (0..n).map(|_| HashMap::default()).collect(),
                ids: HashMap::default(),
                slots: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    /// The indexes' names.
    pub(crate) fn names(&self) -> Vec<String> {
        self.defs.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Re-indexes `key` from the entry the map holds now: `current` is
    /// called under the index's lock and returns that entry's value, or
    /// `None` when the key has none.
    pub(crate) fn resync(&self, key: &K, current: impl FnOnce() -> Option<V>) {
        let mut st = self.state.lock();
        let value = current();
        let new: Box<[Term]> = match &value {
            Some(v) => self.terms(v),
            None => Box::default(),
        };
        let State {
            postings,
            ids,
            slots,
            free,
        } = &mut *st;
        let old = ids.get(key).copied().map(|id| {
            let (k, terms) = slots[id as usize].take().expect("an id in use has a slot");
            for (i, t) in terms.iter() {
                let list = &mut postings[*i];
                if let Some(set) = list.get_mut(t) {
                    set.remove(&id);
                    if set.is_empty() {
                        list.remove(t);
                    }
                }
            }
            (id, k)
        });
        let (id, k) = match (old, new.is_empty()) {
            (Some((id, _)), true) => {
                ids.remove(key);
                free.push(id);
                return;
            }
            (None, true) => return,
            (Some(old), false) => old,
            (None, false) => {
                let id = match free.pop() {
                    Some(id) => id,
                    None => {
                        // More keys than ids cannot be held: 2^32 entries
                        // would not fit in memory first.
                        let id = Id::try_from(slots.len()).expect("fewer than 2^32 indexed keys");
                        slots.push(None);
                        id
                    }
                };
                ids.insert(key.clone(), id);
                (id, key.clone())
            }
        };
        // Each term's text is held once, by its posting list; the key's
        // list of terms shares it.
        let mut new = new;
        for (i, t) in new.iter_mut() {
            let list = &mut postings[*i];
            if let Some((shared, _)) = list.get_key_value(&**t) {
                *t = shared.clone();
            }
            list.entry(t.clone()).or_default().insert(id);
        }
        slots[id as usize] = Some((k, new));
    }

    /// Every term of `v`, deduplicated.
    fn terms(&self, v: &V) -> Box<[Term]> {
        let mut out: Vec<Term> = Vec::new();
        for i in 0..self.defs.len() {
            let mut ts = self.call(i, v);
            ts.sort();
            ts.dedup();
            out.extend(ts.into_iter().map(|t| (i, Arc::<str>::from(t))));
        }
        out.into_boxed_slice()
    }

    /// The terms index `i` gives `v`. A function that panics gives none
    /// (logged): the value is not found by that index, and the cache's
    /// own bookkeeping, which runs around this call, is not cut short.
    fn call(&self, i: usize, v: &V) -> Vec<String> {
        let (name, f) = &self.defs[i];
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(v))) {
            Ok(ts) => ts,
            Err(_) => {
                tracing::error!(
                    "cache index {name:?}: its function panicked; the value is left out of it"
                );
                Vec::new()
            }
        }
    }

    /// The query's terms as positions; an error naming an unknown index.
    pub(crate) fn resolve<'q>(&self, q: &'q Query) -> Result<Vec<(usize, &'q str)>, QueryError> {
        q.terms
            .iter()
            .map(|(name, term)| {
                self.defs
                    .iter()
                    .position(|(n, _)| n == name)
                    .map(|i| (i, term.as_str()))
                    .ok_or_else(|| QueryError::UnknownIndex {
                        name: name.clone(),
                        known: self.names(),
                    })
            })
            .collect()
    }

    /// The keys indexed under every one of `terms` (which is not empty),
    /// starting from the smallest posting list.
    pub(crate) fn candidates(&self, terms: &[(usize, &str)]) -> Vec<K> {
        let st = self.state.lock();
        let mut sets = Vec::with_capacity(terms.len());
        for (i, t) in terms {
            match st.postings[*i].get(*t) {
                Some(set) => sets.push(set),
                None => return Vec::new(),
            }
        }
        sets.sort_by_key(|s| s.len());
        let Some((first, rest)) = sets.split_first() else {
            return Vec::new();
        };
        first
            .iter()
            .filter(|id| rest.iter().all(|s| s.contains(*id)))
            .filter_map(|&id| st.slots[id as usize].as_ref().map(|(k, _)| k.clone()))
            .collect()
    }

    /// Whether `v` has every one of `terms`.
    pub(crate) fn matches(&self, v: &V, terms: &[(usize, &str)]) -> bool {
        let mut computed: Vec<Option<Vec<String>>> = vec![None; self.defs.len()];
        terms.iter().all(|(i, t)| {
            let ts = computed[*i].get_or_insert_with(|| self.call(*i, v));
            ts.iter().any(|x| x == t)
        })
    }

    /// Every key indexed now.
    pub(crate) fn keys(&self) -> Vec<K> {
        self.state.lock().ids.keys().cloned().collect()
    }

    /// How much the indexes hold now.
    pub(crate) fn sizes(&self) -> IndexSizes {
        let st = self.state.lock();
        IndexSizes {
            keys: st.ids.len(),
            terms: st.postings.iter().map(HashMap::len).sum(),
            postings: st
                .postings
                .iter()
                .flat_map(|p| p.values())
                .map(HashSet::len)
                .sum(),
        }
    }
}
