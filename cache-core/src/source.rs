//! Sources: where a cache's values come from (a database, a service), for
//! read-through on a miss, a full load at start, and incremental
//! synchronisation. [`Synced`](crate::Synced) drives one.

use std::time::{Duration, SystemTime};

/// Why a source could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source does not offer this operation (a source may implement
    /// only [`Source::load`]).
    #[error("the source cannot {0}")]
    Unsupported(&'static str),
    /// The source failed (unreachable, locked, malformed data).
    #[error("the source failed: {0}")]
    Failed(String),
}

/// What changed in a source since a cursor.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Changes<K, V> {
    /// Keys added or changed, with their values now.
    pub upserts: Vec<(K, V)>,
    /// Keys removed.
    pub deletes: Vec<K>,
    /// Where the next call continues from.
    pub cursor: String,
}

impl<K, V> Changes<K, V> {
    /// Changes up to `cursor`.
    pub fn new(upserts: Vec<(K, V)>, deletes: Vec<K>, cursor: impl Into<String>) -> Self {
        Changes {
            upserts,
            deletes,
            cursor: cursor.into(),
        }
    }
}

/// Where values come from. Only [`Source::load`] is required; a source
/// that also lists everything, or its changes, can be synchronised.
pub trait Source<K, V>: Send + Sync + 'static {
    /// The value of `key`, or `None` when the source has none.
    fn load(&self, key: &K) -> Result<Option<V>, SourceError>;

    /// Every value, with a cursor from which [`Source::changes`] goes on
    /// (empty when the source lists no changes).
    fn load_all(&self) -> Result<(Vec<(K, V)>, String), SourceError> {
        Err(SourceError::Unsupported("load everything"))
    }

    /// What changed since `cursor`.
    fn changes(&self, cursor: &str) -> Result<Changes<K, V>, SourceError> {
        let _ = cursor;
        Err(SourceError::Unsupported("list changes"))
    }
}

/// A shared source is a source.
impl<K, V, S: Source<K, V> + ?Sized> Source<K, V> for std::sync::Arc<S> {
    fn load(&self, key: &K) -> Result<Option<V>, SourceError> {
        (**self).load(key)
    }

    fn load_all(&self) -> Result<(Vec<(K, V)>, String), SourceError> {
        (**self).load_all()
    }

    fn changes(&self, cursor: &str) -> Result<Changes<K, V>, SourceError> {
        (**self).changes(cursor)
    }
}

/// What one synchronisation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Whether it loaded everything (else it applied changes).
    pub full: bool,
    /// Values stored.
    pub upserts: usize,
    /// Entries removed.
    pub deletes: usize,
    /// How long it took.
    pub took: Duration,
}

/// A synchronised cache's record of its syncs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStats {
    /// Syncs that succeeded.
    pub syncs: u64,
    /// Syncs that failed (the cache kept what it held).
    pub failures: u64,
    /// Read-through loads from the source.
    pub loads: u64,
    /// When the last successful sync ended.
    pub last_success: Option<SystemTime>,
    /// What it did.
    pub last: Option<SyncReport>,
    /// The last failure's message, until a sync succeeds.
    pub last_error: Option<String>,
    /// Where the next incremental sync continues from.
    pub cursor: Option<String>,
}
