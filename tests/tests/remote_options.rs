//! `[remote]` for stores other than Redis: with `hash_keys` no argument
//! value reaches the store (keys are keyed digests), with `encryption_key`
//! no value does (XChaCha20-Poly1305), and the cache still reads its values
//! back, invalidates exact keys, and refuses patterns it cannot select.

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::config::{self, Config};
use cache_core::{backends, cached};
use cache_tests::RecordingStore;
use serde_json::json;

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn secret_fetch(who: String) -> String {
    CALLS.fetch_add(1, Ordering::SeqCst);
    format!("SENTINEL-VALUE for {who}")
}

fn config(v: serde_json::Value) -> Config {
    serde_json::from_value(v).unwrap()
}

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

#[test]
fn hashed_and_encrypted_keys_and_values_never_reach_the_store_in_clear() {
    let glass = std::sync::Arc::new(RecordingStore::default());
    backends::register("glass", glass.clone()).unwrap();

    // Settings that cannot work are refused, naming the field.
    for (remote, why) in [
        (json!({"hash_keys": true}), "needs a secret"),
        (
            json!({"hash_keys": true, "hash_secret": "short"}),
            "16 bytes",
        ),
        (json!({"encryption_key": "not hex"}), "encryption"),
    ] {
        let e = config::set(config(json!({"remote": remote})))
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{e}");
        assert!(!e.contains("not hex") || why == "encryption", "{e}");
    }

    let cfg = config(json!({
        "remote": {"hash_keys": true, "hash_secret": "a secret of twenty bytes", "encryption_key": KEY},
        "actions": {"secret_fetch": {"backend": "glass"}}
    }));
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains("twenty") && !shown.contains(KEY) && shown.contains("<redacted>"),
        "{shown}"
    );
    config::set(cfg).unwrap();
    let arg = "SENTINEL-ARG-123".to_string();
    assert_eq!(
        secret_fetch(arg.clone()),
        "SENTINEL-VALUE for SENTINEL-ARG-123"
    );
    assert_eq!(glass.len(), 1);
    assert!(
        !glass.contains(b"SENTINEL-ARG"),
        "an argument reached the store"
    );
    assert!(
        !glass.contains(b"SENTINEL-VALUE"),
        "a value reached the store in clear"
    );
    assert!(!glass.contains(b"secret of twenty"));

    // Read back through the digest and the cipher.
    assert_eq!(
        secret_fetch(arg.clone()),
        "SENTINEL-VALUE for SENTINEL-ARG-123"
    );
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "served from the store");

    // A glob cannot select digests: refused, nothing removed.
    let e = secret_fetch_cache()
        .revoke_str("secret_fetch:SENTINEL*")
        .unwrap_err()
        .to_string();
    assert!(e.contains("hash_keys"), "{e}");
    assert_eq!(glass.len(), 1);
    // An exact key can: it is its digest.
    secret_fetch_cache()
        .revoke_str("secret_fetch:SENTINEL-ARG-123")
        .unwrap();
    assert_eq!(glass.len(), 0, "the exact key left the store");
    secret_fetch(arg.clone());
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(glass.len(), 1);
    secret_fetch_cache().invalidate(&arg);
    assert_eq!(glass.len(), 0, "invalidate reached the store");
}
