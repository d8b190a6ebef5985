//! What `cache-core` and `cache-macros` share, so that an attribute and a
//! configuration file read exactly the same spellings:
//! - [`duration`]: `500ms`, `2m`, `1h30m`, `1d`;
//! - [`template`]: `"user:{id}"` templates, for keys, tags and event
//!   mappings alike;
//! - [`bytes`]: `64MiB`, `512KB`.
//!
//! Its one dependency is `bytesize`, and no user needs it directly.

#![warn(missing_docs)]

pub mod bytes;
pub mod duration;
pub mod template;

pub use bytes::parse_bytes;
pub use duration::parse_duration_ms;
