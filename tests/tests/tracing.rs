//! Hits and misses are debug-level tracing events naming the key.
//!
//! A binary of its own: `tracing` caches each callsite's interest globally,
//! so another test hitting the same callsite on another thread while this
//! one installs its thread-local subscriber could make the events vanish.

use cache_core::cached;

#[cached]
fn traced_user(id: u64) -> u64 {
    id
}

#[test]
fn hits_and_misses_are_traced_with_the_key() {
    let out = cache_tests::CapturedLog::default();
    let o = out.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || o.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(sub, || {
        traced_user(123);
        traced_user(123);
    });
    let text = out.text();
    assert!(text.contains("cache miss traced_user:123"), "{text}");
    assert!(text.contains("cache hit traced_user:123"), "{text}");
}
