//! What a session knows about each method on its device, in one place: the
//! code for the method's signature and its key, the code tag the device
//! holds under the method's name, and whether that was confirmed since the
//! last reset.

use std::collections::HashMap;
use std::sync::Arc;

use crate::deploy_cache::MethodCacheKey;

/// A method's code and its key on this device.
pub(crate) struct Generated {
    pub(crate) code: String,
    pub(crate) key: MethodCacheKey,
}

/// One method, by its name on the device.
#[derive(Default)]
struct Method {
    /// The code for the signature last called under this name (generated
    /// or found in the deployment cache once per process, not per call).
    code: Option<(String, Arc<Generated>)>,
    /// The code tag the device holds under this name, if known: read from
    /// the device when the session opens or reconnects, set by a
    /// deployment, emptied by a reset.
    held: Option<String>,
    /// Whether `held` was deployed, or vouched for by the deployment
    /// cache, in this session since the last reset: only invoke.
    confirmed: bool,
}

/// The deployment state of one session.
#[derive(Default)]
pub(crate) struct Deployments {
    methods: HashMap<String, Method>,
}

impl Deployments {
    /// A state that knows only what the device listed (method → tag).
    pub(crate) fn listed(held: HashMap<String, String>) -> Self {
        let mut d = Deployments::default();
        d.relist(held);
        d
    }

    /// After a reconnect: what the device lists now, nothing confirmed.
    pub(crate) fn relist(&mut self, held: HashMap<String, String>) {
        self.forget_device();
        for (method, tag) in held {
            self.methods.entry(method).or_default().held = Some(tag);
        }
    }

    /// After a reset: the device holds nothing; the code is kept.
    pub(crate) fn forget_device(&mut self) {
        for m in self.methods.values_mut() {
            m.held = None;
            m.confirmed = false;
        }
    }

    /// After a change of device type or firmware: no code of the old one
    /// is used.
    pub(crate) fn forget_code(&mut self) {
        for m in self.methods.values_mut() {
            m.code = None;
        }
    }

    /// The code known for `method` under `signature`.
    pub(crate) fn code(&self, method: &str, signature: &str) -> Option<Arc<Generated>> {
        match &self.methods.get(method)?.code {
            Some((s, g)) if s == signature => Some(g.clone()),
            _ => None,
        }
    }

    /// Records the code for `method` under `signature`.
    pub(crate) fn set_code(&mut self, method: &str, signature: &str, g: Arc<Generated>) {
        let m = self.methods.entry(method.to_owned()).or_default();
        m.code = Some((signature.to_owned(), g));
    }

    /// Drops the code of `method` (its cache entry is gone): it is
    /// generated, or found, and deployed afresh.
    pub(crate) fn drop_code(&mut self, method: &str) {
        if let Some(m) = self.methods.get_mut(method) {
            m.code = None;
            m.confirmed = false;
        }
    }

    /// Whether the device holds `tag` under `method`, as far as known.
    pub(crate) fn holds(&self, method: &str, tag: &str) -> bool {
        self.methods
            .get(method)
            .is_some_and(|m| m.held.as_deref() == Some(tag))
    }

    /// Whether the device holds `tag` under `method` and this session
    /// confirmed it.
    pub(crate) fn confirmed(&self, method: &str, tag: &str) -> bool {
        self.holds(method, tag) && self.methods[method].confirmed
    }

    /// The device holds `tag` under `method`, confirmed.
    pub(crate) fn confirm(&mut self, method: &str, tag: &str) {
        let m = self.methods.entry(method.to_owned()).or_default();
        m.held = Some(tag.to_owned());
        m.confirmed = true;
    }

    /// The device turned out not to hold `method`.
    pub(crate) fn lost(&mut self, method: &str) {
        if let Some(m) = self.methods.get_mut(method) {
            m.held = None;
            m.confirmed = false;
        }
    }

    /// The methods the device holds, as far as known, sorted.
    pub(crate) fn on_device(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .methods
            .iter()
            .filter(|(_, m)| m.held.is_some())
            .map(|(k, _)| k.as_str())
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(code: &str) -> Arc<Generated> {
        Arc::new(Generated {
            code: code.into(),
            key: MethodCacheKey::new("t", "1.0", "f()", code),
        })
    }

    #[test]
    fn a_reset_forgets_the_device_and_keeps_the_code() {
        let mut d = Deployments::listed(HashMap::from([("f".into(), "aa".into())]));
        assert!(d.holds("f", "aa") && !d.confirmed("f", "aa"));
        d.set_code("f", "f()", generated("x"));
        d.confirm("f", "aa");
        assert!(d.confirmed("f", "aa"));
        assert!(!d.confirmed("f", "bb"), "another code under the same name");
        d.forget_device();
        assert!(!d.holds("f", "aa") && d.on_device().is_empty());
        assert!(d.code("f", "f()").is_some(), "the code stays");
        assert!(d.code("f", "f(x)").is_none(), "another signature");
        d.forget_code();
        assert!(d.code("f", "f()").is_none());
    }

    #[test]
    fn dropped_code_is_no_longer_confirmed() {
        let mut d = Deployments::default();
        d.set_code("f", "f()", generated("x"));
        d.confirm("f", "aa");
        d.drop_code("f");
        assert!(d.code("f", "f()").is_none() && !d.confirmed("f", "aa"));
        assert!(d.holds("f", "aa"), "the device may still hold it");
        d.lost("f");
        assert_eq!(d.on_device(), Vec::<&str>::new());
    }
}
