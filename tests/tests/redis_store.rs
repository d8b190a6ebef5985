//! The Redis store against a real `redis-server`: the glob table through
//! SCAN MATCH, TTLs, hashed keys, sealing, and faults (unreachable, killed,
//! restarted, slow). A missing `redis-server` fails these tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{Pattern, Store};
use cache_tests::{GLOB_TABLE, RedisServer};

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A store with a generous deadline: the first operation also connects, and
/// tests share two cores. Tests about deadlines set their own.
fn store(server: &RedisServer, f: impl FnOnce(&mut RedisOptions)) -> Arc<RedisStore> {
    let mut o = RedisOptions {
        url: server.url(),
        prefix: "t".into(),
        timeout_ms: 2000,
        ..RedisOptions::default()
    };
    f(&mut o);
    RedisStore::connect(o).unwrap()
}

#[tokio::test]
async fn scan_match_agrees_with_the_glob_table() {
    let server = RedisServer::start();
    let s = store(&server, |_| {});
    for &(p, key, want) in GLOB_TABLE {
        s.set("svc:_:act", key, vec![1], None).await.unwrap();
        s.set("svc:_:act", "zzz-other", vec![2], None)
            .await
            .unwrap();
        let pat = Pattern::new(p).unwrap();
        let removed = s.revoke("svc:_:act", &pat).await.unwrap();
        let gone = s.get("svc:_:act", key).await.unwrap().is_none();
        assert_eq!(gone, want, "revoke({p:?}) on {key:?}");
        assert_eq!(
            removed,
            want as u64 + pat.matches("zzz-other") as u64,
            "{p:?}"
        );
        s.clear("svc:_:act").await.unwrap();
    }
    // Other namespaces are never touched by a revoke or a clear.
    s.set("svc:_:act", "k", vec![1], None).await.unwrap();
    s.set("other:_:act", "k", vec![2], None).await.unwrap();
    s.revoke("svc:_:act", &Pattern::new("*").unwrap())
        .await
        .unwrap();
    assert_eq!(s.get("other:_:act", "k").await.unwrap(), Some(vec![2]));
    assert_eq!(s.clear("other:_:act").await.unwrap(), 1);
}

#[tokio::test]
async fn values_expire_with_px_and_keys_follow_the_layout() {
    let server = RedisServer::start();
    let s = store(&server, |_| {});
    s.set(
        "user:acme:get_user",
        "get_user:7",
        b"v".to_vec(),
        Some(Duration::from_millis(1500)),
    )
    .await
    .unwrap();
    let keys = server.cli(&["KEYS", "*"]);
    assert_eq!(keys.trim(), "t:user:acme:get_user:get_user:7");
    let pttl: i64 = server
        .cli(&["PTTL", "t:user:acme:get_user:get_user:7"])
        .trim()
        .parse()
        .unwrap();
    assert!(pttl > 0 && pttl <= 1500, "{pttl}");
    assert!(s.delete("user:acme:get_user", "get_user:7").await.unwrap());
    assert!(!s.delete("user:acme:get_user", "get_user:7").await.unwrap());
}

#[tokio::test]
async fn hashed_keys_keep_argument_values_off_the_server() {
    let server = RedisServer::start();
    let s = store(&server, |o| {
        o.hash_keys = true;
        o.hash_secret = Some("a secret of sixteen bytes or more".into());
    });
    s.set(
        "user:_:get_user",
        "get_user:secret-123",
        b"v".to_vec(),
        None,
    )
    .await
    .unwrap();
    let keys = server.cli(&["KEYS", "*"]);
    assert!(!keys.contains("secret-123"), "{keys}");
    assert_eq!(
        s.get("user:_:get_user", "get_user:secret-123")
            .await
            .unwrap(),
        Some(b"v".to_vec())
    );
    let exact = Pattern::new("get_user:secret-123").unwrap();
    assert_eq!(s.revoke("user:_:get_user", &exact).await.unwrap(), 1);
    let e = s
        .revoke("user:_:get_user", &Pattern::new("get_user:*").unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("hash_keys"), "{e}");
}

#[tokio::test]
async fn sealed_values_are_compressed_encrypted_and_bound_to_their_key() {
    let server = RedisServer::start();
    let s = store(&server, |o| {
        o.encryption_key = Some(KEY.into());
        o.compress_above = Some(64);
    });
    let plain = b"the secret value ".repeat(100);
    s.set("n:_:a", "k", plain.clone(), None).await.unwrap();
    let raw = server.cli(&["GET", "t:n:_:a:k"]);
    assert!(!raw.contains("secret"), "stored encrypted");
    let len: usize = server.cli(&["STRLEN", "t:n:_:a:k"]).trim().parse().unwrap();
    assert!(len < plain.len() / 4, "compressed: {len}");
    assert_eq!(s.get("n:_:a", "k").await.unwrap(), Some(plain.clone()));

    // Copied under another key, it does not open: a counted miss, then gone.
    server.cli(&["COPY", "t:n:_:a:k", "t:n:_:a:other"]);
    assert_eq!(s.get("n:_:a", "other").await.unwrap(), None);
    assert_eq!(s.stats().undecodable, 1);
    assert_eq!(server.cli(&["EXISTS", "t:n:_:a:other"]).trim(), "0");

    // Another key, or none: a miss, never garbage.
    let other = store(&server, |o| {
        o.encryption_key = Some(KEY.replace('0', "f"));
    });
    assert_eq!(other.get("n:_:a", "k").await.unwrap(), None);
    assert_eq!(other.stats().undecodable, 1);
    assert!(
        RedisStore::connect(RedisOptions {
            encryption_key: Some("short".into()),
            ..RedisOptions::default()
        })
        .is_err()
    );
}

#[tokio::test]
async fn unreachable_at_start_fails_fast_and_opens_the_breaker() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = RedisStore::connect(RedisOptions {
        url: format!("redis://127.0.0.1:{port}"),
        breaker_after: 3,
        ..RedisOptions::default()
    })
    .unwrap();
    let started = Instant::now();
    for _ in 0..10 {
        assert!(s.get("n", "k").await.is_err());
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(s.breaker_open());
    let st = s.stats();
    assert!(st.errors >= 3 && st.skipped >= 1, "{st:?}");
}

#[tokio::test]
async fn killed_then_restarted_redis_is_skipped_then_used_again() {
    let mut server = RedisServer::start();
    let s = store(&server, |o| {
        o.breaker_after = 2;
        o.breaker_cooldown_ms = 200;
        o.timeout_ms = 300;
    });
    s.set("n", "k", b"1".to_vec(), None).await.unwrap();
    assert_eq!(s.get("n", "k").await.unwrap(), Some(b"1".to_vec()));

    server.kill();
    for _ in 0..5 {
        let t = Instant::now();
        assert!(s.get("n", "k").await.is_err());
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "bounded: {:?}",
            t.elapsed()
        );
    }
    assert!(s.breaker_open());

    server.restart();
    let t = Instant::now();
    loop {
        if let Ok(v) = s.get("n", "k").await {
            assert_eq!(v, None, "a fresh server is empty");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "redis is back but unused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!s.breaker_open());
    s.set("n", "k", b"2".to_vec(), None).await.unwrap();
    assert_eq!(s.get("n", "k").await.unwrap(), Some(b"2".to_vec()));
}

#[tokio::test]
async fn a_slow_redis_costs_at_most_the_deadline() {
    let server = RedisServer::start();
    let s = store(&server, |o| o.timeout_ms = 50);
    // The first operation also connects: retry it until the link is up.
    let t = Instant::now();
    while s.set("n", "k", b"1".to_vec(), None).await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(5), "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.cli(&["CLIENT", "PAUSE", "1000"]);
    let t = Instant::now();
    let r = s.get("n", "k").await;
    let took = t.elapsed();
    assert!(r.is_err(), "{r:?}");
    assert!(took < Duration::from_millis(300), "{took:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = Instant::now();
    loop {
        if s.get("n", "k").await.is_ok() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tls_is_taken_from_a_rediss_url() {
    let server = RedisServer::start_tls();
    let ca = server.tls_ca().unwrap().to_path_buf();
    let s = RedisStore::connect(RedisOptions {
        url: format!("rediss://127.0.0.1:{}", server.port()),
        tls_ca_file: Some(ca.clone()),
        timeout_ms: 2000,
        ..RedisOptions::default()
    })
    .unwrap();
    s.set("n", "k", b"over tls".to_vec(), None).await.unwrap();
    assert_eq!(s.get("n", "k").await.unwrap(), Some(b"over tls".to_vec()));
    assert!(
        server.cli(&["GET", "cache:n:k"]).contains("over tls"),
        "stored through TLS"
    );

    // Plain text to a TLS port fails, and is just an error.
    let plain = RedisStore::connect(RedisOptions {
        url: format!("redis://127.0.0.1:{}", server.port()),
        ..RedisOptions::default()
    })
    .unwrap();
    assert!(plain.get("n", "k").await.is_err());
    // Without the CA, the server's certificate is not trusted.
    let untrusted = RedisStore::connect(RedisOptions {
        url: format!("rediss://127.0.0.1:{}", server.port()),
        ..RedisOptions::default()
    })
    .unwrap();
    assert!(untrusted.get("n", "k").await.is_err());
    // A CA file with a plain URL is a configuration mistake, said at once.
    let e = RedisStore::connect(RedisOptions {
        url: format!("redis://127.0.0.1:{}", server.port()),
        tls_ca_file: Some(ca),
        ..RedisOptions::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("not rediss://"), "{e}");
}

/// Batched reads, writes and removals: one `MGET`, one pipeline and one
/// `UNLINK`, with the same keys, sealing and misses as single calls; a
/// value that does not open reads as a miss and is removed; and the
/// default (one call per key) of a store without batches agrees.
#[tokio::test]
async fn batches_read_write_and_remove_as_single_calls_do() {
    let server = RedisServer::start();
    let s = store(&server, |o| {
        o.encryption_key = Some(KEY.into());
        o.hash_keys = true;
        o.hash_secret = Some("a secret of sixteen bytes or more".into());
    });
    let memory = cache_core::store::MemoryStore::new();
    let keys: Vec<String> = ["a", "b:c", "ü\\*", "", "absent"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    let entries: Vec<(String, Vec<u8>)> = keys[..4]
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), vec![i as u8; i * 10]))
        .collect();
    for st in [&*s as &dyn Store, &memory] {
        st.set_many("n:_:a", entries.clone(), Some(Duration::from_secs(60)))
            .await
            .unwrap();
        let got = st.get_many("n:_:a", &keys).await.unwrap();
        let mut want: Vec<Option<Vec<u8>>> = entries.iter().map(|e| Some(e.1.clone())).collect();
        want.push(None);
        assert_eq!(got, want);
        for (k, w) in keys.iter().zip(&want) {
            assert_eq!(&st.get("n:_:a", k).await.unwrap(), w, "{k:?}");
        }
        assert_eq!(
            st.get_many("n:_:a", &[]).await.unwrap(),
            Vec::<Option<Vec<u8>>>::new()
        );
        assert_eq!(st.delete_many("n:_:a", &keys[1..]).await.unwrap(), 3);
        assert_eq!(
            st.get_many("n:_:a", &keys).await.unwrap(),
            vec![Some(vec![]), None, None, None, None]
        );
    }
    // One key is left ("a"), hashed, with the batch's TTL.
    let stored = server.cli(&["KEYS", "*"]).trim().to_string();
    assert_eq!(stored, s.remote_key("n:_:a", "a"));
    let pttl: i64 = server.cli(&["PTTL", &stored]).trim().parse().unwrap();
    assert!((50_000..=60_000).contains(&pttl), "{pttl}");

    // A value copied under another key does not open: a miss, then gone.
    let other = s.remote_key("n:_:a", "other");
    server.cli(&["COPY", &stored, &other]);
    let got = s
        .get_many("n:_:a", &["a".to_string(), "other".to_string()])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(vec![]), None]);
    assert_eq!(s.stats().undecodable, 1);
    assert_eq!(server.cli(&["EXISTS", &other]).trim(), "0");
}
