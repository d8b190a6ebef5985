//! Namespaces: which service and tenant an entry belongs to, and quotas.
//!
//! Every cache belongs to a service (or to none, for a plain `#[cached]`
//! function). Within a service, the caller's tenant is part of each key, so
//! tenants never see each other's entries. The tenant is set for a block of
//! code with [`with_tenant`] (sync) or [`scope`] (async: it is set around each
//! poll, so it follows the future across threads on any executor).
//!
//! A quota bounds the entries of one namespace, a (service, tenant) pair,
//! across all of the service's caches. At the bound, new values are still
//! returned but not stored.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use parking_lot::{Mutex, RwLock};

/// A tenant, interned. `TenantId::NONE` is the namespace without a tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(u32);

impl TenantId {
    /// No tenant.
    pub const NONE: TenantId = TenantId(0);

    /// The interned number, unique per name in this process (0 for
    /// [`TenantId::NONE`]).
    pub(crate) fn index(self) -> u32 {
        self.0
    }

    /// The tenant whose [`TenantId::index`] is `i`.
    pub(crate) fn from_index(i: u32) -> TenantId {
        TenantId(i)
    }

    /// The tenant's name, or `None` for [`TenantId::NONE`].
    pub fn name(self) -> Option<Arc<str>> {
        if self == TenantId::NONE {
            return None;
        }
        tenants().names.read().get(self.0 as usize - 1).cloned()
    }
}

#[derive(Default)]
struct Tenants {
    ids: RwLock<HashMap<Arc<str>, u32>>,
    names: RwLock<Vec<Arc<str>>>,
}

fn tenants() -> &'static Tenants {
    static T: OnceLock<Tenants> = OnceLock::new();
    T.get_or_init(Tenants::default)
}

/// The id of the tenant named `name` (created on first use). An empty name
/// is [`TenantId::NONE`].
pub fn tenant_id(name: &str) -> TenantId {
    if name.is_empty() {
        return TenantId::NONE;
    }
    let t = tenants();
    if let Some(&id) = t.ids.read().get(name) {
        return TenantId(id);
    }
    let mut ids = t.ids.write();
    if let Some(&id) = ids.get(name) {
        return TenantId(id);
    }
    let mut names = t.names.write();
    let name: Arc<str> = name.into();
    names.push(name.clone());
    let id = names.len() as u32;
    ids.insert(name, id);
    TenantId(id)
}

/// The id of the tenant named `name`, if one has been used.
pub fn existing_tenant_id(name: &str) -> Option<TenantId> {
    if name.is_empty() {
        return Some(TenantId::NONE);
    }
    tenants().ids.read().get(name).map(|&id| TenantId(id))
}

thread_local! {
    static CURRENT: Cell<TenantId> = const { Cell::new(TenantId::NONE) };
}

/// The tenant of the code running now.
#[inline]
pub fn current_tenant() -> TenantId {
    CURRENT.with(Cell::get)
}

/// Restores the previous tenant when dropped, also on panic.
struct Restore(TenantId);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

fn enter(t: TenantId) -> Restore {
    Restore(CURRENT.with(|c| c.replace(t)))
}

/// Runs `f` with `tenant` as the current tenant.
pub fn with_tenant<R>(tenant: &str, f: impl FnOnce() -> R) -> R {
    let _restore = enter(tenant_id(tenant));
    f()
}

/// Runs `fut` with `tenant` as the current tenant, on whatever thread polls it.
pub fn scope<F: Future>(tenant: &str, fut: F) -> TenantScope<F> {
    TenantScope {
        tenant: tenant_id(tenant),
        fut,
    }
}

/// A future that runs with a tenant set; see [`scope`].
pub struct TenantScope<F> {
    tenant: TenantId,
    fut: F,
}

impl<F: Future> Future for TenantScope<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of `self`.
        let this = unsafe { self.get_unchecked_mut() };
        let _restore = enter(this.tenant);
        unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx)
    }
}

/// Entry counts of one service's namespaces, against a limit.
#[derive(Default)]
pub(crate) struct Quota {
    limit: AtomicUsize,
    counts: Mutex<HashMap<TenantId, usize>>,
    rejected: AtomicU64,
}

impl Quota {
    /// Sets the limit per namespace; 0 means none.
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Counts a new entry of `t` if the namespace has room.
    pub(crate) fn admit(&self, t: TenantId) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut counts = self.counts.lock();
        let n = counts.entry(t).or_default();
        if limit != 0 && *n >= limit {
            drop(counts);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        *n += 1;
        true
    }

    /// Uncounts an entry of `t` that left its cache.
    pub(crate) fn release(&self, t: TenantId) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&t) {
            *n = n.saturating_sub(1);
        }
    }

    /// Entries counted in `t`'s namespace.
    #[cfg(test)]
    pub(crate) fn count(&self, t: TenantId) -> usize {
        self.counts.lock().get(&t).copied().unwrap_or(0)
    }

    /// Values not stored because a namespace was full.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// Appends one segment of a remote namespace with `\\`, `:` and `~`
/// escaped by a `\\`, so a segment ends at its first unescaped `:`.
pub fn push_segment(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, '\\' | ':' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The namespace of a cache's entries outside the process,
/// `service:tenant:identity`, each segment escaped; no service and no tenant
/// are empty segments (names are never empty). `mask` names the key
/// arguments in use when configuration left some out (`~` and the bits), so
/// keys made of different arguments never meet.
pub fn remote_namespace(
    service: Option<&str>,
    tenant: Option<&str>,
    identity: &str,
    mask: Option<u64>,
) -> String {
    let mut ns = String::new();
    push_segment(&mut ns, service.unwrap_or(""));
    ns.push(':');
    push_segment(&mut ns, tenant.unwrap_or(""));
    ns.push(':');
    push_segment(&mut ns, identity);
    if let Some(m) = mask {
        use std::fmt::Write as _;
        let _ = write!(ns, "~{m:x}");
    }
    ns
}

/// Splits `s` after its first segment (up to the first unescaped `:`):
/// `(segment, rest after the colon)`, or `None` when no `:` ends it.
pub fn split_segment(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b':' => return Some((&s[..i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_intern_and_scope() {
        let a = tenant_id("acme");
        assert_eq!(tenant_id("acme"), a);
        assert_ne!(tenant_id("globex"), a);
        assert_eq!(a.name().as_deref(), Some("acme"));
        assert_eq!(current_tenant(), TenantId::NONE);
        with_tenant("acme", || {
            assert_eq!(current_tenant(), a);
            with_tenant("", || assert_eq!(current_tenant(), TenantId::NONE));
            assert_eq!(current_tenant(), a);
        });
        assert_eq!(current_tenant(), TenantId::NONE);
        let r = std::panic::catch_unwind(|| with_tenant("acme", || panic!("x")));
        assert!(r.is_err());
        assert_eq!(current_tenant(), TenantId::NONE, "restored after a panic");
    }

    #[test]
    fn segments_are_escaped_and_split_back() {
        let ns = remote_namespace(Some("a:b"), Some("_"), "m::f~1\\", Some(3));
        assert_eq!(ns, "a\\:b:_:m\\:\\:f\\~1\\\\~3");
        let (svc, rest) = split_segment(&ns).unwrap();
        assert_eq!(svc, "a\\:b");
        let (tenant, id) = split_segment(rest).unwrap();
        assert_eq!((tenant, id), ("_", "m\\:\\:f\\~1\\\\~3"));
        assert_eq!(split_segment(id), None);
        assert_ne!(
            remote_namespace(None, None, "x", None),
            remote_namespace(Some(""), Some("_"), "x", None)
        );
    }

    #[test]
    fn quota_admits_up_to_the_limit_per_namespace() {
        let q = Quota::default();
        q.set_limit(2);
        let (a, b) = (tenant_id("qa"), tenant_id("qb"));
        assert!(q.admit(a) && q.admit(a));
        assert!(!q.admit(a));
        assert!(q.admit(b));
        q.release(a);
        assert!(q.admit(a));
        assert_eq!((q.count(a), q.count(b), q.rejected()), (2, 1, 1));
    }
}
