//! [`Remote`]: what a cache's tier asks of a store outside the process.
//!
//! A [`Store`](super::Store) holds bytes by namespace and key. The tier needs
//! more: one round trip that reads a value and the cache's invalidation
//! generation, a write that lands only if no invalidation came since, a lock
//! so one node computes a missed key, and invalidations that reach the store
//! and every other node even while the store is down. Redis does all of it;
//! [`StoreRemote`](super::StoreRemote) does what a plain `Store` and a
//! [`Broadcast`](super::Broadcast) allow, erring towards removing more.
//!
//! Every method that does I/O returns a `'static` future the tier runs on
//! the [bridge](super::bridge) runtime, so sync and async callers share one
//! path and no caller's runtime runs store I/O.

use std::sync::Arc;
use std::time::Duration;

use super::{BoxFuture, StoreError};
use crate::codec::CodecError;
use crate::pattern::Pattern;

/// The cache's invalidation generation when a lookup read it: a value
/// computed after it is stored only if no invalidation came since. `None`
/// when the store keeps no generations (or the read failed).
pub type Gen = Option<u64>;

/// What an L2 lookup found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Lookup {
    /// The stored bytes.
    Found(Vec<u8>),
    /// Absent, and this node now holds the load lock (its token).
    Locked(String, Gen),
    /// Absent: compute.
    Missing(Gen),
}

/// Which of a cache's entries an invalidation removes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Op {
    /// One key, by its remote part (its text less the cache's prefix).
    Key(String),
    /// Keys whose text matches the pattern.
    Pattern(Pattern),
    /// Entries stored with the tag.
    Tag(String),
    /// Every entry.
    Clear,
}

/// An invalidation of one cache's entries, everywhere.
#[derive(Debug, Clone)]
pub struct Invalidate {
    /// The cache on the invalidation channel: its escaped service and
    /// identity segments, `service:identity`.
    pub cache: String,
    /// The escaped service segment (empty outside a service).
    pub service_seg: String,
    /// The escaped identity segment.
    pub identity_seg: String,
    /// The literal that key texts start with and remote parts leave out.
    pub text_prefix: String,
    /// The tenant scoped to (`Some("")`: calls without a tenant); `None`:
    /// every tenant.
    pub tenant: Option<String>,
    /// The namespace of the scoped tenant's entries under the key mask in
    /// force, when `tenant` is set.
    pub ns: Option<String>,
    /// What to remove.
    pub op: Op,
}

/// The part of a key's text a store keeps: the text less `prefix`; a text
/// without the prefix (never, by construction) is marked so it cannot meet
/// a real part.
pub fn part_of(text: &str, prefix: &str) -> String {
    match text.strip_prefix(prefix) {
        Some(rest) => rest.to_owned(),
        None => format!("\\!{text}"),
    }
}

/// What stands for `text` outside the process when keys are hashed: `#`
/// and 128 bits of its blake3 digest keyed with `key`.
pub fn keyed_token(key: &[u8; 32], text: &str) -> String {
    use std::fmt::Write as _;
    let h = blake3::keyed_hash(key, text.as_bytes());
    let mut out = String::with_capacity(33);
    out.push('#');
    for b in &h.as_bytes()[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The error of a pattern that cannot select hashed keys.
pub fn hashed_pattern_error(pattern: &Pattern) -> StoreError {
    StoreError::Unsupported(format!(
        "with hash_keys, the store holds keyed digests of keys: pattern {pattern} can only be `*` or an exact key"
    ))
}

/// Whether `pattern` can select hashed keys: only `*` and an exact key can.
pub fn check_hashed_pattern(pattern: &Pattern) -> Result<(), StoreError> {
    if pattern.as_str() != "*" && pattern.literal().is_none() {
        return Err(hashed_pattern_error(pattern));
    }
    Ok(())
}

/// The key text a stored part stands for; see [`part_of`].
pub fn text_of(part: &str, prefix: &str) -> String {
    match part.strip_prefix("\\!") {
        Some(text) => text.to_owned(),
        None => format!("{prefix}{part}"),
    }
}

/// A store outside the process, as a cache's tier uses it.
pub trait Remote: Send + Sync + 'static {
    /// The store's name, for logs and [`Cache::backend`](crate::Cache::backend).
    fn name(&self) -> &str {
        "remote"
    }
    /// This process's id on the invalidation channel.
    fn node(&self) -> u64;
    /// Calls `handler` with each invalidation another node publishes.
    fn subscribe(&self, handler: super::broadcast::Handler) {
        let _ = handler;
    }
    /// How long a sync caller waits for one operation.
    fn deadline(&self) -> Duration;
    /// With a lock across nodes, how long a node waits for the holder's
    /// value; `None` without one.
    fn lock_wait(&self) -> Option<Duration> {
        None
    }
    /// What stands for `text` (a key's part, or a tag) outside the process:
    /// the text, or with hashed keys a keyed digest.
    fn token(&self, text: &str) -> String {
        text.to_owned()
    }
    /// Where the value of `key` in `ns` lives, as the store names it (a
    /// Redis key, say): what leaves the process for that key.
    fn location(&self, ns: &str, key: &str) -> String {
        format!("{ns}:{}", self.token(key))
    }
    /// Whether the store can remove keys by `pattern`; an error (and
    /// nothing done) when it cannot, such as a glob over hashed keys.
    fn check_pattern(&self, pattern: &Pattern) -> Result<(), StoreError> {
        let _ = pattern;
        Ok(())
    }
    /// Reads `key` in `ns` with the generation of `cache`; with a lock
    /// configured, takes it or waits for the holder's value.
    fn lookup(
        self: Arc<Self>,
        cache: String,
        ns: String,
        key: String,
    ) -> BoxFuture<'static, Lookup>;
    /// Releases a lock [`Remote::lookup`] took.
    fn unlock(self: Arc<Self>, ns: String, key: String, token: String) -> BoxFuture<'static, ()> {
        let _ = (ns, key, token);
        Box::pin(async {})
    }
    /// Stores `bytes`, with `tags`; with a generation, only if `cache`'s is
    /// still that one.
    #[allow(clippy::too_many_arguments)]
    fn write(
        self: Arc<Self>,
        cache: String,
        ns: String,
        key: String,
        bytes: Vec<u8>,
        ttl: Option<Duration>,
        tags: Vec<String>,
        generation: Gen,
    ) -> BoxFuture<'static, ()>;
    /// Carries an invalidation to the store and to the other nodes. It
    /// returns at once; an invalidation the store cannot apply now waits,
    /// retried in order, and the store serves no reads meanwhile. An error
    /// means it cannot be done at all, and nothing was.
    fn invalidate(self: Arc<Self>, inv: Invalidate) -> Result<(), StoreError>;
    /// Whether invalidations wait to be applied (the store serves this
    /// node no reads meanwhile).
    fn has_pending_invalidations(&self) -> bool {
        false
    }
    /// Counts and logs a stored value that does not decode; it reads as a
    /// miss.
    fn undecodable(&self, ns: &str, key: &str, error: &CodecError);
    /// The store's state, for health checks and metrics.
    fn health(&self) -> super::Health {
        super::Health::named(self.name())
    }
}
