//! The deployment cache: which code was deployed for which device type,
//! firmware and method, kept across restarts.
//!
//! An entry is keyed by [`MethodCacheKey`]: the device type, the firmware,
//! the method's signature and the blake3 hash of its code. Entries live in
//! memory and, with persistence on, one file each in the cache directory,
//! written to a temporary name of the writer's own and renamed into place
//! (temporary files a crash left behind are removed on open). Every file
//! carries a checksum, or with `mac_key` a keyed MAC so that files written
//! by anyone without the key are refused; its code is hashed again on load.
//! A corrupt, truncated, foreign or tampered entry is dropped and logged,
//! never used; a file that cannot be read is reported and left alone.
//!
//! Times are wall-clock milliseconds since the Unix epoch (with the system
//! clock), so expiry counts across restarts. A hit records its access in
//! memory; the file is rewritten at most once per `access_flush`.

use std::collections::HashMap;

use crate::recency::Entries;

mod entry;
mod files;
mod format;
mod meters;

pub use entry::{DeployEntry, MethodCacheKey, Status};

use format::{decode, encode};
use meters::Counters;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_core::Clock;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The deployment cache's settings. Its `Debug` hides `mac_key`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployCacheConfig {
    /// At most this many entries; the least recently used go first.
    pub max_entries: usize,
    /// An entry expires this long after its deployment.
    pub expiry: Duration,
    /// An entry expires after this long unused.
    pub inactive_expiry: Duration,
    /// Where entries are kept across restarts.
    pub dir: Option<PathBuf>,
    /// Whether entries are kept across restarts.
    pub persistence: bool,
    /// Whether stored code is compressed.
    pub compression: bool,
    /// A secret that keys each file's MAC: files written without it (by
    /// another program or user) are refused. Never shown by `Debug`.
    #[serde(skip_serializing)]
    pub mac_key: Option<String>,
    /// A hit's access time reaches the file at most this often.
    pub access_flush: Duration,
}

impl std::fmt::Debug for DeployCacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployCacheConfig")
            .field("max_entries", &self.max_entries)
            .field("expiry", &self.expiry)
            .field("inactive_expiry", &self.inactive_expiry)
            .field("dir", &self.dir)
            .field("persistence", &self.persistence)
            .field("compression", &self.compression)
            .field("mac_key", &self.mac_key.as_ref().map(|_| "<redacted>"))
            .field("access_flush", &self.access_flush)
            .finish()
    }
}

impl Default for DeployCacheConfig {
    fn default() -> Self {
        DeployCacheConfig {
            max_entries: 1000,
            expiry: Duration::from_secs(24 * 3600),
            inactive_expiry: Duration::from_secs(6 * 3600),
            dir: None,
            persistence: true,
            compression: true,
            mac_key: None,
            access_flush: Duration::from_secs(60),
        }
    }
}

/// The cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeployStats {
    /// Lookups that found a usable entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Deployments recorded.
    pub deploys: u64,
    /// Deployment time that hits saved, in milliseconds.
    pub saved_ms: u64,
    /// Files dropped because they were corrupt, truncated, foreign or
    /// tampered with.
    pub corrupt_dropped: u64,
    /// Files that could not be read (left in place).
    pub read_errors: u64,
}

/// Deployed code by [`MethodCacheKey`], in memory and on disk.
pub struct DeployCache {
    cfg: DeployCacheConfig,
    clock: Clock,
    entries: Mutex<Entries<DeployEntry>>,
    counters: Arc<Counters>,
    /// The MAC key derived from `mac_key`.
    mac: Option<[u8; 32]>,
    /// The access time each entry's file holds, to rewrite it only when
    /// `access_flush` has passed since.
    flushed: Mutex<HashMap<String, u64>>,
}

/// Milliseconds since the Unix epoch.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl DeployCache {
    /// Opens a persistent cache in `dir` with the default settings and the
    /// system clock, loading what the directory holds.
    pub fn open_dir(dir: impl Into<PathBuf>) -> std::io::Result<DeployCache> {
        DeployCache::open(
            DeployCacheConfig {
                dir: Some(dir.into()),
                ..DeployCacheConfig::default()
            },
            Clock::System,
        )
    }

    /// Opens the cache, loading what its directory holds.
    pub fn open(cfg: DeployCacheConfig, clock: Clock) -> std::io::Result<DeployCache> {
        if cfg.mac_key.as_deref().is_some_and(|k| k.len() < 16) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "deployment cache: mac_key must be at least 16 bytes long",
            ));
        }
        let mac = cfg
            .mac_key
            .as_ref()
            .map(|k| blake3::derive_key("cache-device deployment cache mac v1", k.as_bytes()));
        let cache = DeployCache {
            entries: Mutex::new(Entries::default()),
            counters: Counters::registered(),
            flushed: Mutex::new(HashMap::new()),
            mac,
            clock,
            cfg,
        };
        if let Some(dir) = cache.dir() {
            std::fs::create_dir_all(dir)?;
            for f in std::fs::read_dir(dir)? {
                let path = f?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.ends_with(".tmp") {
                    cache.remove_stale_temp(&path);
                    continue;
                }
                if path.extension().and_then(|e| e.to_str()) != Some("entry") {
                    continue;
                }
                let bytes = match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        // Not corruption: the file may be fine once readable.
                        tracing::error!(
                            "cannot read deployment cache entry {}: {e}; left in place",
                            path.display()
                        );
                        cache.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                match decode(&bytes, cache.mac.as_ref()) {
                    // A copy under another name would outlive invalidation
                    // of the entry it copies: only `<id>.entry` counts.
                    Ok(e) if path.file_stem().and_then(|n| n.to_str()) != Some(&e.key.id()) => {
                        tracing::warn!(
                            "ignoring deployment cache file {}: it holds entry {}, which lives in {}.entry",
                            path.display(),
                            e.key.id(),
                            e.key.id()
                        );
                        cache.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(e) => {
                        let id = e.key.id();
                        cache.flushed.lock().insert(id.clone(), e.last_accessed);
                        cache.entries.lock().insert(id, e.last_accessed, e);
                    }
                    Err(why) => {
                        tracing::warn!("dropping deployment cache entry {}: {why}", path.display());
                        cache.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            cache.enforce_bound(None);
        }
        Ok(cache)
    }

    /// Removes the least recently used entries (never `keep`) until the
    /// bound holds.
    fn enforce_bound(&self, keep: Option<&str>) {
        let mut evicted = Vec::new();
        {
            let mut entries = self.entries.lock();
            while entries.len() > self.cfg.max_entries.max(1) {
                let Some(oldest) = entries.oldest_except(keep) else {
                    break;
                };
                entries.remove(&oldest);
                evicted.push(oldest);
            }
        }
        for old in evicted {
            self.remove_file(&old);
        }
    }

    /// The cache's time: wall-clock milliseconds since the Unix epoch with
    /// the system clock, so expiry survives restarts; a manual clock's time
    /// in tests.
    fn now(&self) -> u64 {
        match &self.clock {
            Clock::System => wall_ms(),
            other => other.now_ms(),
        }
    }

    fn dir(&self) -> Option<&Path> {
        self.cfg.dir.as_deref().filter(|_| self.cfg.persistence)
    }

    fn expired(&self, e: &DeployEntry, now: u64) -> bool {
        now.saturating_sub(e.deployed_at) >= self.cfg.expiry.as_millis() as u64
            || now.saturating_sub(e.last_accessed) >= self.cfg.inactive_expiry.as_millis() as u64
    }

    /// Whether a live, successful entry for `key` is here (not counted as a
    /// use).
    pub fn contains(&self, key: &MethodCacheKey) -> bool {
        let now = self.now();
        self.entries
            .lock()
            .get(&key.id())
            .is_some_and(|e| e.status == Status::Deployed && !self.expired(e, now))
    }

    /// The keys of the entries held, live or not yet compacted.
    pub fn keys(&self) -> Vec<MethodCacheKey> {
        self.entries
            .lock()
            .values()
            .map(|e| e.key.clone())
            .collect()
    }

    /// The live, successful entry for `key`, marked as used.
    pub fn get(&self, key: &MethodCacheKey) -> Option<DeployEntry> {
        let now = self.now();
        let id = key.id();
        let mut entries = self.entries.lock();
        let live = entries
            .get(&id)
            .is_some_and(|e| e.status == Status::Deployed && !self.expired(e, now));
        if !live {
            if entries.remove(&id).is_some() {
                self.remove_file(&id);
            }
            drop(entries);
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let e = entries.touch(&id, now).expect("checked");
        e.last_accessed = now;
        e.access_count += 1;
        let out = e.clone();
        drop(entries);
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        self.counters
            .saved_ms
            .fetch_add(out.deployment_ms, Ordering::Relaxed);
        // The access reaches the file lazily: not one write per hit.
        let flushed = self.flushed.lock().get(&id).copied().unwrap_or(0);
        if now.saturating_sub(flushed) >= self.cfg.access_flush.as_millis() as u64 {
            self.write_file(&out);
        }
        Some(out)
    }

    /// Records a deployment; the least recently used entries make room.
    pub fn put(&self, entry: DeployEntry) {
        let id = entry.key.id();
        self.counters.deploys.fetch_add(1, Ordering::Relaxed);
        self.entries
            .lock()
            .insert(id.clone(), entry.last_accessed, entry.clone());
        self.enforce_bound(Some(&id));
        self.write_file(&entry);
    }

    /// Removes the entry for `key`; true if there was one.
    pub fn invalidate(&self, key: &MethodCacheKey) -> bool {
        let id = key.id();
        let removed = self.entries.lock().remove(&id).is_some();
        self.remove_file(&id);
        removed
    }

    /// Removes every entry; returns how many there were.
    pub fn clear(&self) -> usize {
        let ids: Vec<String> = self.entries.lock().drain();
        for id in &ids {
            self.remove_file(id);
        }
        ids.len()
    }

    /// Removes expired entries, and those of firmware other than `firmware`
    /// for the same device type, if given; returns how many went.
    pub fn compact(&self, device_type: Option<&str>, firmware: Option<&str>) -> usize {
        let now = self.now();
        let gone: Vec<String> = {
            let mut entries = self.entries.lock();
            let ids: Vec<String> = entries
                .iter()
                .filter(|(_, e)| {
                    self.expired(e, now)
                        || (device_type.is_none_or(|t| t == e.key.device_type)
                            && firmware.is_some_and(|f| f != e.key.firmware))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for id in &ids {
                entries.remove(id);
            }
            ids
        };
        for id in &gone {
            self.remove_file(id);
        }
        gone.len()
    }

    /// Writes every entry whose last access its file does not hold yet.
    pub fn flush(&self) {
        let stale: Vec<DeployEntry> = {
            let flushed = self.flushed.lock();
            self.entries
                .lock()
                .iter()
                .filter(|(id, e)| flushed.get(*id).copied() != Some(e.last_accessed))
                .map(|(_, e)| e.clone())
                .collect()
        };
        for e in &stale {
            self.write_file(e);
        }
    }

    /// The newest live entry for `signature` on this device type and
    /// firmware, whatever its code hash: the code to redeploy without
    /// generating it again. Finding none counts as a miss (the code is
    /// generated and deployed).
    pub fn find(&self, device_type: &str, firmware: &str, signature: &str) -> Option<DeployEntry> {
        let found = self.find_quiet(device_type, firmware, signature);
        if found.is_none() {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    fn find_quiet(
        &self,
        device_type: &str,
        firmware: &str,
        signature: &str,
    ) -> Option<DeployEntry> {
        let now = self.now();
        self.entries
            .lock()
            .values()
            .filter(|e| {
                e.key.device_type == device_type
                    && e.key.firmware == firmware
                    && e.key.signature == signature
                    && e.status == Status::Deployed
                    && !self.expired(e, now)
            })
            .max_by_key(|e| e.deployed_at)
            .cloned()
    }

    /// The cache's time, in milliseconds (since the Unix epoch with the
    /// system clock).
    pub fn now_ms(&self) -> u64 {
        self.now()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache's counters.
    pub fn stats(&self) -> DeployStats {
        self.counters.snapshot()
    }
}

impl Drop for DeployCache {
    fn drop(&mut self) {
        // Accesses not yet on disk get there now.
        self.flush();
        self.counters.retire();
    }
}
