//! One DHT peer as its own process, for the multi-process tests:
//! `dht_node NETWORK [BOOTSTRAP_ADDR]` prints its address on the first
//! line, then answers one line per command read on stdin:
//! `set NS KEY VALUE` → `ok`, `get NS KEY` → the value or `-`,
//! `holds NS KEY` → `yes` or `no`, `peers` → a count.

use std::io::{BufRead, Write};
use std::time::Duration;

use cache_core::Store;
use cache_core::config::{ConfigDuration, DhtOptions};
use cache_core::dht::DhtStore;

fn main() {
    let mut args = std::env::args().skip(1);
    let network = args.next().expect("a network");
    let mut o = DhtOptions::default();
    o.network = Some(network);
    o.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    o.bootstrap = args.collect();
    o.replication = Some(3);
    o.republish = Some(ConfigDuration(Duration::from_secs(1)));
    o.query_timeout = Some(ConfigDuration(Duration::from_secs(2)));
    let peer = DhtStore::start(&o).expect("the peer starts");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", peer.listen_addrs()[0]).unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let parts: Vec<&str> = line.split_whitespace().collect();
        let answer = match parts.as_slice() {
            ["set", ns, k, v] => rt
                .block_on(peer.set(ns, k, v.as_bytes().to_vec(), None))
                .map_or_else(|e| format!("error {e}"), |()| "ok".into()),
            ["get", ns, k] => match rt.block_on(peer.get(ns, k)) {
                Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
                Ok(None) => "-".into(),
                Err(e) => format!("error {e}"),
            },
            ["holds", ns, k] => if peer.holds(ns, k) { "yes" } else { "no" }.into(),
            ["peers"] => rt.block_on(peer.peers()).to_string(),
            _ => format!("error unknown command {line:?}"),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}
