//! Backends by name: what `backend = "<name>"` and `l2 = "<name>"` in the
//! configuration reach.
//!
//! - `"memory"` as an L2 is one in-process [`MemoryStore`] shared by every
//!   cache of the process, with an in-process [`LocalBroadcast`];
//! - `"redis"` (feature `redis`) and `"disk"` (feature `disk`) are built in,
//!   opened from their configuration sections;
//! - any other name is a store a user registered with [`register`] (or
//!   [`register_with`], to give it a [`Broadcast`], or [`register_parts`],
//!   to give it a [`Lock`] too) before configuration names it.
//!
//! Built-in backends submit a [`Factory`] at link time, so this layer names
//! none of them.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use super::adapter::StoreRemote;
use super::broadcast::{Broadcast, LocalBroadcast};
use super::lock::Lock;
use super::remote::Remote;
use super::{MemoryStore, Store, StoreError};
use crate::spec::Config;

/// How long one operation of a registered store may take before it counts
/// as failed (a miss, or an invalidation that waits to be retried).
pub const STORE_TIMEOUT: Duration = Duration::from_millis(500);

/// Names a user store may not take.
const RESERVED: &[&str] = &["memory", "tiered", "redis", "disk", "dht"];

/// A built-in backend: its name, and how to open it from configuration.
pub struct Factory {
    /// The name configuration uses.
    pub name: &'static str,
    /// Opens (or returns the already open) store for `config`.
    pub open: fn(&Config) -> Result<Arc<dyn Remote>, StoreError>,
}
inventory::collect!(Factory);

/// What a registered store's tier is built from besides the store: each
/// optional.
#[derive(Default, Clone)]
pub struct Parts {
    broadcast: Option<Arc<dyn Broadcast>>,
    lock: Option<(Arc<dyn Lock>, Duration)>,
}

impl Parts {
    /// No broadcast and no lock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Carries invalidations to the other processes' L1s.
    pub fn broadcast(mut self, broadcast: Arc<dyn Broadcast>) -> Self {
        self.broadcast = Some(broadcast);
        self
    }

    /// A lock across processes on missed keys: one computes, the others
    /// wait at most `hold` for its value.
    pub fn lock(mut self, lock: Arc<dyn Lock>, hold: Duration) -> Self {
        self.lock = Some((lock, hold));
        self
    }
}

struct Registered {
    store: Arc<dyn Store>,
    parts: Parts,
    /// The tier over it, made when configuration first names it (with the
    /// `[remote]` options then in force).
    remote: Mutex<Option<Arc<StoreRemote>>>,
}

fn registry() -> &'static Mutex<BTreeMap<String, Arc<Registered>>> {
    static R: OnceLock<Mutex<BTreeMap<String, Arc<Registered>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Registers `store` under `name`, for `backend = "<name>"` (values only
/// there) and `l2 = "<name>"` (behind each node's own L1). Invalidations
/// reach the store; with no [`Broadcast`], other processes' L1s do not hear
/// of them, so use [`register_with`] for a tier shared by several processes.
///
/// Call it before configuration names the store. A name already taken, or
/// a built-in one, is an error.
pub fn register(name: &str, store: Arc<dyn Store>) -> Result<(), StoreError> {
    add(name, store, Parts::new())
}

/// [`register`], with a [`Broadcast`] that carries invalidations to the
/// other nodes.
pub fn register_with(
    name: &str,
    store: Arc<dyn Store>,
    broadcast: Arc<dyn Broadcast>,
) -> Result<(), StoreError> {
    add(name, store, Parts::new().broadcast(broadcast))
}

/// [`register`], with the [`Parts`] given: a [`Broadcast`], a [`Lock`].
pub fn register_parts(name: &str, store: Arc<dyn Store>, parts: Parts) -> Result<(), StoreError> {
    add(name, store, parts)
}

fn add(name: &str, store: Arc<dyn Store>, parts: Parts) -> Result<(), StoreError> {
    if name.is_empty() || RESERVED.contains(&name) {
        return Err(StoreError::Unsupported(format!(
            "{name:?} cannot name a registered store: it is empty or built in ({})",
            RESERVED.join(", ")
        )));
    }
    let mut r = registry().lock();
    if r.contains_key(name) {
        return Err(StoreError::Unsupported(format!(
            "a store is already registered as {name:?}"
        )));
    }
    r.insert(
        name.to_owned(),
        Arc::new(Registered {
            store,
            parts,
            remote: Mutex::new(None),
        }),
    );
    Ok(())
}

/// The names configuration may use for a store: built-in ones of this
/// build, then registered ones.
pub fn names() -> Vec<String> {
    let mut out = vec!["memory".to_string()];
    out.extend(
        inventory::iter::<Factory>
            .into_iter()
            .map(|f| f.name.to_string()),
    );
    out.extend(registry().lock().keys().cloned());
    out
}

/// Whether configuration may name `name` as a store.
pub fn is_known(name: &str) -> bool {
    name == "memory"
        || inventory::iter::<Factory>
            .into_iter()
            .any(|f| f.name == name)
        || registry().lock().contains_key(name)
}

/// The process-wide in-process L2.
fn memory() -> Arc<dyn Remote> {
    static M: OnceLock<Arc<StoreRemote>> = OnceLock::new();
    M.get_or_init(|| {
        let r = StoreRemote::new(
            "memory",
            Arc::new(MemoryStore::new()),
            Some(Arc::new(LocalBroadcast::new())),
            STORE_TIMEOUT,
        );
        r.on_invalidation(super::deliver_invalidation);
        r
    })
    .clone()
}

/// Opens the store `name` names under `config`; every cache that names it
/// shares one.
pub fn open(name: &str, config: &Config) -> Result<Arc<dyn Remote>, StoreError> {
    if name == "memory" {
        return Ok(memory());
    }
    if let Some(f) = inventory::iter::<Factory>
        .into_iter()
        .find(|f| f.name == name)
    {
        return (f.open)(config);
    }
    let reg = registry().lock().get(name).cloned();
    match reg {
        Some(r) => {
            let mut slot = r.remote.lock();
            if let Some(remote) = &*slot {
                return Ok(remote.clone());
            }
            let remote = StoreRemote::with_options(
                name,
                r.store.clone(),
                r.parts.broadcast.clone(),
                STORE_TIMEOUT,
                &config.remote.clone().unwrap_or_default(),
            )?;
            if let Some((lock, hold)) = &r.parts.lock {
                remote.set_lock(lock.clone(), *hold)?;
            }
            remote.on_invalidation(super::deliver_invalidation);
            *slot = Some(remote.clone());
            Ok(remote)
        }
        None => Err(unknown(name)),
    }
}

/// The error for a name no store answers to.
pub fn unknown(name: &str) -> StoreError {
    StoreError::Unsupported(format!(
        "no store is named {name:?}; stores are: {} (register one with cache_core::backends::register before loading configuration)",
        names().join(", ")
    ))
}
