//! The Redis store on a real three-master Redis Cluster: values spread over
//! the masters, revoke and clear scan every master, and invalidations reach
//! another node's L1.

use std::time::{Duration, Instant};

use cache_core::codec::RemoteCodec;
use cache_core::config::Backend;
use cache_core::redis::{RedisOptions, RedisStore};
use cache_core::{Cache, CacheBuilder, Pattern, Store};
use cache_tests::RedisCluster;

fn options(cluster: &RedisCluster) -> RedisOptions {
    RedisOptions {
        cluster_nodes: cluster.urls(),
        prefix: "cl".into(),
        timeout_ms: 2000,
        ..RedisOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_clear_scan_every_master() {
    let cluster = RedisCluster::start();
    let s = RedisStore::connect(options(&cluster)).unwrap();
    for i in 0..200 {
        s.set("svc:_:act", &format!("k{i}"), vec![1], None)
            .await
            .unwrap();
    }
    s.set("other:_:act", "k1", vec![2], None).await.unwrap();
    let per_node = cluster.keys_per_node();
    assert!(
        per_node.iter().all(|&n| n > 0),
        "keys spread over every master: {per_node:?}"
    );
    assert_eq!(s.get("svc:_:act", "k42").await.unwrap(), Some(vec![1]));

    // Batches span the masters: MGET and UNLINK split by slot, SET per key.
    let keys: Vec<String> = (0..50).map(|i| format!("batch{i}")).collect();
    let entries = keys
        .iter()
        .map(|k| (k.clone(), k.as_bytes().to_vec()))
        .collect();
    s.set_many("svc:_:act", entries, None).await.unwrap();
    let got = s.get_many("svc:_:act", &keys).await.unwrap();
    assert!(
        keys.iter()
            .zip(&got)
            .all(|(k, v)| v.as_deref() == Some(k.as_bytes()))
    );
    assert_eq!(s.delete_many("svc:_:act", &keys).await.unwrap(), 50);
    assert!(
        s.get_many("svc:_:act", &keys)
            .await
            .unwrap()
            .iter()
            .all(Option::is_none)
    );

    // k1, k10..k19, k100..k199: 111 keys, on all three masters.
    let revoked = s
        .revoke("svc:_:act", &Pattern::new("k1*").unwrap())
        .await
        .unwrap();
    assert_eq!(revoked, 111);
    assert_eq!(s.get("svc:_:act", "k150").await.unwrap(), None);
    assert_eq!(s.get("svc:_:act", "k42").await.unwrap(), Some(vec![1]));

    assert_eq!(s.clear("svc:_:act").await.unwrap(), 89);
    assert_eq!(cluster.keys(), 1, "only the other namespace's key is left");
}

fn node(cluster: &RedisCluster) -> (Cache<u64, String>, std::sync::Arc<RedisStore>) {
    let store = RedisStore::connect(options(cluster)).unwrap();
    let cache = CacheBuilder::with_render(|id: &u64, out: &mut String| {
        out.push_str(&format!("get_user:{id}"))
    })
    .name("get_user")
    .service("user")
    .remote_codec(Some(RemoteCodec::postcard()))
    .remote(store.clone(), Backend::Tiered)
    .build();
    (cache, store)
}

#[test]
fn invalidations_cross_nodes_through_the_cluster() {
    let cluster = RedisCluster::start();
    let (a, sa) = node(&cluster);
    let (b, sb) = node(&cluster);
    let t = Instant::now();
    while !(sa.is_subscribed() && sb.is_subscribed()) {
        assert!(t.elapsed() < Duration::from_secs(10), "not subscribed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(a.get_or_insert_with(7, || "from A".into()), "from A");
    assert_eq!(
        b.get_or_insert_with(7, || "from B".into()),
        "from A",
        "an L2 hit"
    );
    a.revoke_str("get_user:*").unwrap();
    let t = Instant::now();
    while b.contains_key(&7) {
        assert!(t.elapsed() < Duration::from_secs(5), "B kept its copy");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(b.get_or_insert_with(7, || "from B".into()), "from B");
}
