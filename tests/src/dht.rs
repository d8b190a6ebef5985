//! What the DHT tests share: peers on loopback TCP with short intervals,
//! a network of them, and waiting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::Store;
use cache_core::config::{ConfigDuration, DhtOptions};
use cache_core::dht::DhtStore;

/// A two-thread runtime for driving store calls.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A peer of `network` on loopback, joining through `bootstrap`:
/// replication 3, records kept 10 min, republished every second.
pub fn opts(network: &str, bootstrap: &[String]) -> DhtOptions {
    let mut o = DhtOptions::default();
    o.network = Some(network.into());
    o.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    o.bootstrap = bootstrap.to_vec();
    o.replication = Some(3);
    o.record_ttl = Some(ConfigDuration(Duration::from_secs(600)));
    o.republish = Some(ConfigDuration(Duration::from_secs(1)));
    o.query_timeout = Some(ConfigDuration(Duration::from_secs(2)));
    o
}

/// `n` peers of `network`, each joining through the ones before it.
pub fn network(network: &str, n: usize) -> Vec<Arc<DhtStore>> {
    network_with(network, n, |_| {})
}

/// [`network`], each peer's options changed by `f`.
pub fn network_with(network: &str, n: usize, f: impl Fn(&mut DhtOptions)) -> Vec<Arc<DhtStore>> {
    let start = |boot: &[String]| {
        let mut o = opts(network, boot);
        f(&mut o);
        DhtStore::start(&o).unwrap()
    };
    // Each peer joins through every earlier one, so the mesh is whole at
    // once rather than after Kademlia's lookups (which, on two busy cores,
    // once took longer than the wait below).
    let mut peers: Vec<Arc<DhtStore>> = Vec::with_capacity(n);
    for _ in 0..n {
        let boot: Vec<String> = peers.iter().flat_map(|p| p.listen_addrs()).collect();
        peers.push(start(&boot));
    }
    let rt = rt();
    // Every peer connected to every other before anything is written, so
    // that no later arrival moves where entries should live.
    eventually("every peer to know the others", || {
        peers.iter().all(|p| rt.block_on(p.peers()) >= n - 1)
    });
    // Routing tables fill in the background: let them settle.
    std::thread::sleep(Duration::from_millis(500));
    peers
}

/// Waits (at most 15 s) until `f` holds, or fails naming `what`.
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `k` of namespace `ns`, read through `p`.
pub fn get(rt: &tokio::runtime::Runtime, p: &DhtStore, ns: &str, k: &str) -> Option<Vec<u8>> {
    rt.block_on(p.get(ns, k)).unwrap()
}
