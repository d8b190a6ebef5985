//! Each entry's file: written whole to a temporary name and renamed,
//! removed with its entry, and crashed writers' leftovers cleaned up.

use super::*;

/// A temporary file name of this writer's own.
pub(super) fn temp_name(path: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    path.with_extension(format!("{}.{n}.tmp", std::process::id()))
}

impl DeployCache {
    /// Removes a temporary file a crashed writer left, once it is old
    /// enough that no live writer can still be renaming it.
    pub(super) fn remove_stale_temp(&self, path: &Path) {
        let old = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= Duration::from_secs(60));
        if old {
            let _ = std::fs::remove_file(path);
        }
    }

    pub(super) fn path(&self, id: &str) -> Option<PathBuf> {
        self.dir().map(|d| d.join(format!("{id}.entry")))
    }

    pub(super) fn write_file(&self, e: &DeployEntry) {
        let Some(path) = self.path(&e.key.id()) else {
            return;
        };
        let tmp = temp_name(&path);
        let bytes = encode(e, self.cfg.compression, self.mac.as_ref());
        let done = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, &path));
        if done.is_ok() {
            self.flushed.lock().insert(e.key.id(), e.last_accessed);
        }
        if let Err(err) = done {
            tracing::warn!(
                "cannot persist deployment cache entry {}: {err}",
                path.display()
            );
            let _ = std::fs::remove_file(&tmp);
        }
    }

    pub(super) fn remove_file(&self, id: &str) {
        self.flushed.lock().remove(id);
        if let Some(p) = self.path(id) {
            let _ = std::fs::remove_file(p);
        }
    }
}
