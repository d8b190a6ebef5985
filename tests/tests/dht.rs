//! The DHT backend in one process: several peers on loopback TCP, each a
//! real libp2p swarm. Values cross peers, live on the peers that should
//! hold them, expire, converge, stay invalidated after a partition heals,
//! and never cross networks; a peer alone computes and does not fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::codec::RemoteCodec;
use cache_core::config::{Backend, ConfigDuration, RemoteOptions};
use cache_core::dht::DhtStore;
use cache_core::{Cache, Remote, Store, TenantId};
use cache_tests::dht::{eventually, get, network, network_with, opts, rt};

#[test]
fn values_cross_peers_and_live_where_they_should() {
    let rt = rt();
    let peers = network("places", 5);
    for i in 0..8 {
        let k = format!("key-{i}");
        rt.block_on(peers[0].set("ns", &k, format!("v{i}").into_bytes(), None))
            .unwrap();
        // Every peer reads it.
        for p in &peers {
            assert_eq!(
                get(&rt, p, "ns", &k),
                Some(format!("v{i}").into_bytes()),
                "{k}"
            );
        }
    }
    // Each entry is held by at least min(replication, peers) record
    // stores and at most replication + 1 (the writer's own copy): not
    // everywhere, and not in one shared map.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..8 {
        let k = format!("key-{i}");
        let holders = peers.iter().filter(|p| p.holds("ns", &k)).count();
        assert!((3..=4).contains(&holders), "{k} is held by {holders} peers");
    }
    // Another namespace's key of the same text is another entry.
    assert_eq!(get(&rt, &peers[3], "other", "key-0"), None);
}

#[test]
fn entries_expire_everywhere() {
    let rt = rt();
    let peers = network("expiry", 3);
    rt.block_on(peers[0].set("ns", "k", b"v".to_vec(), Some(Duration::from_millis(1200))))
        .unwrap();
    assert_eq!(get(&rt, &peers[2], "ns", "k"), Some(b"v".to_vec()));
    std::thread::sleep(Duration::from_millis(1500));
    for p in &peers {
        assert_eq!(get(&rt, p, "ns", "k"), None, "expired");
    }
}

#[test]
fn concurrent_writers_converge_on_one_value() {
    let rt = rt();
    let peers = network("converge", 5);
    for round in 0..5 {
        let k = format!("k{round}");
        std::thread::scope(|s| {
            for (i, p) in peers.iter().enumerate() {
                let k = k.clone();
                s.spawn(move || {
                    let rt = self::rt();
                    let _ = rt.block_on(p.set("ns", &k, format!("w{i}").into_bytes(), None));
                });
            }
        });
        // Reads repair older replicas; after a round of reads, every peer
        // answers the same value.
        std::thread::sleep(Duration::from_millis(300));
        for p in &peers {
            let _ = get(&rt, p, "ns", &k);
        }
        std::thread::sleep(Duration::from_millis(300));
        let seen: Vec<_> = peers.iter().map(|p| get(&rt, p, "ns", &k)).collect();
        assert!(seen[0].is_some(), "{k}");
        assert!(
            seen.iter().all(|v| *v == seen[0]),
            "{k}: peers disagree: {seen:?}"
        );
    }
}

#[test]
fn a_revoked_key_stays_gone_after_a_partitioned_replica_rejoins() {
    let rt = rt();
    let peers = network("partition", 5);
    rt.block_on(peers[0].set("ns", "user:1", b"old".to_vec(), None))
        .unwrap();
    rt.block_on(peers[0].set("ns", "user:2", b"old".to_vec(), None))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // A replica other than the writer is cut off, holding the old values.
    let away = peers[1..]
        .iter()
        .find(|p| p.holds("ns", "user:1"))
        .expect("a replica besides the writer")
        .clone();
    away.isolate(true);
    eventually("the replica to be cut off", || {
        rt.block_on(away.peers()) == 0
    });
    // Meanwhile one key is deleted and the other revoked by pattern.
    rt.block_on(peers[0].delete("ns", "user:1")).unwrap();
    let p = cache_core::Pattern::new("user:2*").unwrap();
    rt.block_on(peers[0].revoke("ns", &p)).unwrap();
    for q in peers.iter().filter(|q| !Arc::ptr_eq(q, &away)) {
        assert_eq!(get(&rt, q, "ns", "user:1"), None);
        assert_eq!(get(&rt, q, "ns", "user:2"), None);
    }
    // It comes back and republishes what it held (every second here).
    away.isolate(false);
    eventually("the replica to rejoin", || rt.block_on(away.peers()) >= 2);
    std::thread::sleep(Duration::from_millis(2500));
    for q in &peers {
        assert_eq!(get(&rt, q, "ns", "user:1"), None, "a deleted key came back");
        assert_eq!(get(&rt, q, "ns", "user:2"), None, "a revoked key came back");
    }
    // A new write after the revoke is a value again.
    rt.block_on(peers[2].set("ns", "user:2", b"new".to_vec(), None))
        .unwrap();
    assert_eq!(get(&rt, &peers[4], "ns", "user:2"), Some(b"new".to_vec()));
}

#[test]
fn two_networks_never_see_each_others_entries() {
    let rt = rt();
    let alpha = network("alpha", 3);
    rt.block_on(alpha[0].set("ns", "k", b"alpha".to_vec(), None))
        .unwrap();
    // A peer of another network pointed straight at alpha's peers.
    let beta = DhtStore::start(&opts("beta", &alpha[0].listen_addrs())).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(get(&rt, &beta, "ns", "k"), None);
    rt.block_on(beta.set("ns", "k", b"beta".to_vec(), None))
        .unwrap();
    assert_eq!(get(&rt, &alpha[2], "ns", "k"), Some(b"alpha".to_vec()));
    assert_eq!(get(&rt, &beta, "ns", "k"), Some(b"beta".to_vec()));
}

type Key = (TenantId, u64);

fn cache_on(remote: Arc<dyn Remote>, mode: Backend) -> Cache<Key, String> {
    cache_core::CacheBuilder::with_render(|k: &Key, out| out.push_str(&format!("get_user:{}", k.1)))
        .name("get_user")
        .key_text_prefix("get_user:")
        .service("user")
        .tenant_of(|k| k.0)
        .remote_codec(Some(RemoteCodec::postcard()))
        .remote(remote, mode)
        .build()
}

#[test]
fn tiered_caches_share_values_and_invalidations_reach_every_l1() {
    let peers = network("tiers", 3);
    let caches: Vec<_> = peers
        .iter()
        .map(|p| cache_on(p.tier(&RemoteOptions::default()).unwrap(), Backend::Tiered))
        .collect();
    let loads = AtomicUsize::new(0);
    let load = |v: &str| {
        loads.fetch_add(1, Ordering::SeqCst);
        v.to_string()
    };
    let k = (TenantId::NONE, 7);
    assert_eq!(caches[0].get_or_insert_with(k, || load("first")), "first");
    for c in &caches[1..] {
        assert_eq!(c.get_or_insert_with(k, || load("again")), "first");
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "one computation in the network"
    );
    assert!(caches.iter().all(|c| c.contains_key(&k)));
    // An invalidation on one peer drops every L1 copy and the DHT's.
    assert!(caches[1].invalidate(&k));
    eventually("every L1 to drop the key", || {
        caches.iter().all(|c| !c.contains_key(&k))
    });
    assert_eq!(caches[2].get_or_insert_with(k, || load("fresh")), "fresh");
    assert_eq!(caches[0].get_or_insert_with(k, || load("unused")), "fresh");
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

#[test]
fn a_peer_alone_computes_and_never_fails() {
    // Its bootstrap peer does not exist.
    let nobody = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGVh5zJ1S4m7bqZyAZxXY5hKJbW7yEdaF8nGEGWTPKdu8";
    let lone = DhtStore::start(&opts("lonely", &[nobody.to_string()])).unwrap();
    let cache = cache_on(
        lone.tier(&RemoteOptions::default()).unwrap(),
        Backend::named("dht"),
    );
    let loads = AtomicUsize::new(0);
    let t = Instant::now();
    for i in 0..3 {
        let v = cache.get_or_insert_with((TenantId::NONE, i), || {
            loads.fetch_add(1, Ordering::SeqCst);
            format!("v{i}")
        });
        assert_eq!(v, format!("v{i}"));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    // Its own store still serves what it wrote.
    let again = cache.get_or_insert_with((TenantId::NONE, 0), || "recomputed".into());
    assert_eq!(again, "v0");
}

#[test]
fn when_a_holder_leaves_its_entries_are_copied_to_another_peer() {
    let rt = rt();
    // Periodic republication is out of the picture: only a peer leaving
    // triggers the copy.
    let peers = network_with("churn", 5, |o| {
        o.republish = Some(ConfigDuration(Duration::from_secs(600)));
    });
    let writer = &peers[0];
    rt.block_on(writer.set("ns", "k", b"v".to_vec(), None))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let replicas = |live: &dyn Fn(&Arc<DhtStore>) -> bool| {
        peers[1..]
            .iter()
            .filter(|p| live(p) && p.holds("ns", "k"))
            .count()
    };
    assert_eq!(replicas(&|_| true), 3, "three replicas besides the writer");
    let gone = peers[1..]
        .iter()
        .find(|p| p.holds("ns", "k"))
        .unwrap()
        .clone();
    gone.isolate(true);
    let live = |p: &Arc<DhtStore>| !Arc::ptr_eq(p, &gone);
    assert_eq!(replicas(&live), 2);
    eventually("a live peer to take the leaver's copy", || {
        replicas(&live) == 3
    });
    assert_eq!(get(&rt, &peers[4], "ns", "k"), Some(b"v".to_vec()));
}

#[test]
fn a_key_file_keeps_the_peer_id_across_restarts_and_a_bad_one_is_an_error() {
    let dir = std::env::temp_dir().join(format!("dht-key-{}", std::process::id()));
    let path = dir.join("peer.key");
    let _ = std::fs::remove_file(&path);
    let mut o = opts("keys", &[]);
    o.key_file = Some(path.clone());
    let first = DhtStore::start(&o).unwrap().peer_id();
    assert_eq!(std::fs::read(&path).unwrap().len(), 32);
    let again = DhtStore::start(&o).unwrap().peer_id();
    assert_eq!(first, again, "the same identity after a restart");
    std::fs::write(&path, b"not a key").unwrap();
    let e = DhtStore::start(&o).unwrap_err().to_string();
    assert!(e.contains("dht.key_file") && e.contains("32-byte"), "{e}");
}

#[test]
fn large_values_are_compressed_and_too_large_ones_skipped_without_failing() {
    let rt = rt();
    let peers = network("sizes", 2);
    // 200 KB that compresses well: stored, and read back whole.
    let big = b"0123456789abcdef".repeat(12_800);
    rt.block_on(peers[0].set("ns", "big", big.clone(), None))
        .unwrap();
    assert_eq!(get(&rt, &peers[1], "ns", "big"), Some(big));
    // 200 KB that does not compress: not stored, counted, no error.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    rt.block_on(peers[0].set("ns", "noise", noise, None))
        .unwrap();
    assert_eq!(peers[0].too_big(), 1);
    assert_eq!(get(&rt, &peers[1], "ns", "noise"), None);
}

#[test]
fn an_invalidation_no_majority_took_is_an_error_and_a_counted_fault() {
    let rt = rt();
    let peers = network("faults", 3);
    rt.block_on(peers[0].set("ns", "k", b"v".to_vec(), None))
        .unwrap();
    let cut = &peers[0];
    cut.isolate(true);
    eventually("the peer to be cut off", || rt.block_on(cut.peers()) == 0);
    let before = cut.faults();
    // Its routing table still names the others, so it needs two of them.
    let r = rt.block_on(cut.delete("ns", "k"));
    assert!(
        r.is_err(),
        "a delete no replica took was reported done: {r:?}"
    );
    assert!(cut.faults() > before, "the fault was not counted");
    // Once back, the retried delete is acknowledged.
    cut.isolate(false);
    eventually("the peer to rejoin", || rt.block_on(cut.peers()) >= 1);
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(cut.delete("ns", "k")).unwrap();
    assert_eq!(get(&rt, &peers[2], "ns", "k"), None);
}
