//! [`CacheError`]: why an operation on a cache named at run time failed.

use crate::pattern::PatternError;
use crate::spec::ConfigError;
use crate::store::StoreError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// No live cache has this name.
    #[error(
        "no cache named {0:?} is registered (a #[cached] function registers on its first call)"
    )]
    UnknownCache(String),
    /// No service has this name.
    #[error("no service named {0:?} is registered")]
    UnknownService(String),
    /// The path names no handler.
    #[error("no handler at {0:?}; paths are {{service}}/cache/{{clear|delete|revoke|stats|keys}}")]
    UnknownPath(String),
    /// The request body is malformed.
    #[error("bad request to {path}: {message}")]
    BadRequest {
        /// The handler's path.
        path: String,
        /// What is wrong with the body.
        message: String,
    },
    /// A pattern is malformed.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// An event's payload lacks a field one of its key templates names.
    #[error(
        "event {event:?}: payload has no field `{field}`, which key template {template:?} names; nothing was revoked"
    )]
    MissingField {
        /// The event.
        event: String,
        /// The template.
        template: String,
        /// The missing field.
        field: String,
    },
    /// An event mapping is malformed.
    #[error("event {event:?}: key template {template:?}: {message}")]
    BadTemplate {
        /// The event.
        event: String,
        /// The template.
        template: String,
        /// What is wrong.
        message: String,
    },
    /// Configuration could not be applied.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A name matches several caches: name one of the candidates.
    #[error("{name:?} names several caches: {}; use one of these names", candidates.join(", "))]
    Ambiguous {
        /// The name given.
        name: String,
        /// The names that reach one cache each.
        candidates: Vec<String>,
    },
    /// A tier cannot do the operation (a glob revoke over hashed keys);
    /// nothing was done.
    #[error(transparent)]
    Remote(#[from] StoreError),
}

/// The error type of registry operations, under its earlier name.
pub type RegistryError = CacheError;
