//! The disk store (feature `disk`): a [`Store`] in one `redb` file, so a
//! single machine's cache is warm after a restart.
//!
//! - Each write, delete, revoke and clear is one ACID transaction, committed
//!   durably before it is acknowledged: a crash (even `kill -9`) mid-write
//!   loses nothing committed, and a delete that returned stays deleted.
//! - Values keep their TTL as a wall-clock deadline and read as absent once
//!   it passes.
//! - A file that is not a store of this kind, or is corrupt, is an error at
//!   open naming the path, never a panic.
//!
//! Configuration: `backend = "disk"` (or `l2 = "disk"`), and
//!
//! ```toml
//! [disk]
//! path = "/var/cache/myapp/cache.redb"
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::pattern::Pattern;
use crate::store::{BoxFuture, Remote, Store, StoreError, StoreRemote};

/// Entries by `(namespace, key)`: an 8-byte big-endian deadline (ms since
/// the Unix epoch, 0 for none), then the value.
const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("cache-entries-v1");

/// How long one disk operation may take before it counts as failed.
pub const DISK_TIMEOUT: Duration = Duration::from_secs(2);

/// A [`Store`] in a `redb` file.
pub struct DiskStore {
    path: PathBuf,
    db: Arc<Database>,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("path", &self.path)
            .finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unavailable(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("disk store {}: {what}: {e}", path.display()))
}

impl DiskStore {
    /// Opens the store at `path`, creating it (and its directory) if absent.
    /// A file that is not such a store, a corrupt one, or one another process
    /// holds open is an error.
    pub fn open(path: impl AsRef<Path>) -> Result<DiskStore, StoreError> {
        let path = canonical(path.as_ref())?;
        // redb parses what it finds; whatever a damaged file makes it do, a
        // caller gets an error.
        let opened = std::panic::catch_unwind(|| Database::create(&path));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(unavailable(&path, "in use", "another process has it open"));
            }
            Ok(Err(e)) => return Err(unavailable(&path, "not a cache file, or corrupt", e)),
            Err(_) => {
                return Err(unavailable(
                    &path,
                    "not a cache file, or corrupt",
                    "the file could not be read",
                ));
            }
        };
        let store = DiskStore {
            path,
            db: Arc::new(db),
        };
        // The table exists from the start, and a foreign redb file with a
        // table of another shape is refused here.
        store.write(|t| {
            let _ = t;
            Ok(())
        })?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut redb::Table<(&str, &str), &[u8]>) -> Result<T, redb::StorageError>,
    ) -> Result<T, StoreError> {
        let p = &self.path;
        let tx = self
            .db
            .begin_write()
            .map_err(|e| unavailable(p, "write", e))?;
        let out = {
            let mut t = tx
                .open_table(ENTRIES)
                .map_err(|e| unavailable(p, "not a cache file", e))?;
            f(&mut t).map_err(|e| unavailable(p, "write", e))?
        };
        tx.commit().map_err(|e| unavailable(p, "commit", e))?;
        Ok(out)
    }

    fn read(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let p = &self.path;
        let tx = self
            .db
            .begin_read()
            .map_err(|e| unavailable(p, "read", e))?;
        let t = match tx.open_table(ENTRIES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(unavailable(p, "read", e)),
        };
        let Some(v) = t.get((ns, key)).map_err(|e| unavailable(p, "read", e))? else {
            return Ok(None);
        };
        let v = v.value();
        let Some((deadline, value)) = v.split_first_chunk::<8>() else {
            return Err(unavailable(p, "read", "an entry without its header"));
        };
        let deadline = u64::from_be_bytes(*deadline);
        if deadline != 0 && now_ms() >= deadline {
            return Ok(None);
        }
        Ok(Some(value.to_vec()))
    }

    /// Removes the keys of `ns` that `keep` refuses; returns how many.
    fn remove_where(&self, ns: &str, gone: impl Fn(&str) -> bool) -> Result<u64, StoreError> {
        self.write(|t| {
            let mut n = 0;
            // Keys of `ns` sort together: from ("ns", "") up to the next ns.
            let doomed: Vec<String> = t
                .range((ns, "")..)?
                .map_while(|r| match r {
                    Ok((k, _)) => {
                        let (kns, key) = k.value();
                        (kns == ns).then(|| Ok(key.to_owned()))
                    }
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|k| gone(k))
                .collect();
            for k in &doomed {
                if t.remove((ns, k.as_str()))?.is_some() {
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

/// `path` with its directory created and resolved, so two spellings of one
/// file are one name.
fn canonical(path: &Path) -> Result<PathBuf, StoreError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(path, "cannot create its directory", e))?;
    }
    Ok(match (dir, path.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    })
}

/// Runs blocking disk work off the async runtime's workers.
fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> BoxFuture<'static, Result<T, StoreError>> {
    Box::pin(async move {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => h
                .spawn_blocking(f)
                .await
                .map_err(|e| StoreError::Unavailable(format!("disk store: {e}")))?,
            Err(_) => f(),
        }
    })
}

impl DiskStore {
    fn handle(&self) -> DiskStore {
        DiskStore {
            path: self.path.clone(),
            db: self.db.clone(),
        }
    }
}

impl Store for DiskStore {
    fn get<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let (me, ns, key) = (self.handle(), ns.to_owned(), key.to_owned());
        blocking(move || me.read(&ns, &key))
    }

    fn set<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (me, ns, key) = (self.handle(), ns.to_owned(), key.to_owned());
        blocking(move || {
            let deadline = ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as u64).max(1));
            let mut v = Vec::with_capacity(8 + value.len());
            v.extend_from_slice(&deadline.to_be_bytes());
            v.extend_from_slice(&value);
            me.write(|t| {
                t.insert((ns.as_str(), key.as_str()), v.as_slice())
                    .map(|_| ())
            })
        })
    }

    fn delete<'a>(&'a self, ns: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (me, ns, key) = (self.handle(), ns.to_owned(), key.to_owned());
        blocking(move || me.write(|t| Ok(t.remove((ns.as_str(), key.as_str()))?.is_some())))
    }

    fn revoke<'a>(
        &'a self,
        ns: &'a str,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let (me, ns, pattern) = (self.handle(), ns.to_owned(), pattern.clone());
        blocking(move || me.remove_where(&ns, |k| pattern.matches(k)))
    }

    fn clear<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        let (me, ns) = (self.handle(), ns.to_owned());
        blocking(move || me.remove_where(&ns, |_| true))
    }
}

/// The disk store `config` names, opened once per path in the process.
fn open_configured(config: &crate::spec::Config) -> Result<Arc<dyn Remote>, StoreError> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Arc<StoreRemote>>>> = OnceLock::new();
    let path = config
        .disk
        .as_ref()
        .map(|d| d.path.clone())
        .ok_or_else(|| {
            StoreError::Unsupported(
                "backend \"disk\" needs a path: [disk] path = \"...\" (or CACHE_DISK__PATH)".into(),
            )
        })?;
    let path = canonical(&path)?;
    let mut open = OPEN.get_or_init(Default::default).lock();
    if let Some(r) = open.get(&path) {
        return Ok(r.clone());
    }
    let store = DiskStore::open(&path)?;
    let remote = StoreRemote::with_options(
        "disk",
        Arc::new(store),
        None,
        DISK_TIMEOUT,
        &config.remote.clone().unwrap_or_default(),
    )?;
    open.insert(path, remote.clone());
    Ok(remote)
}

inventory::submit!(crate::store::backends::Factory {
    name: "disk",
    open: open_configured,
});
