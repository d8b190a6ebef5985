//! A cache over a peer-to-peer DHT: five nodes as separate processes on
//! 127.0.0.1, each with its own process-local L1 in front of the shared
//! DHT (`backend = "tiered"`, `l2 = "dht"`).
//!
//! It shows a value computed on one node served by another, an
//! invalidation crossing the network to every L1, and a node killed
//! (`kill -9`) without losing an entry. Run it with
//! `cargo run -p cache-examples --bin dht_cluster`; it exits non-zero if
//! any of that does not happen.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::config::{Backend, ConfigDuration, DhtOptions, RemoteOptions};
use cache_core::dht::DhtStore;
use cache_core::{Cache, CacheBuilder, codec::RemoteCodec};

const NETWORK: &str = "dht-cluster-example";

/// The node: a tiered `get_user` cache over this process's DHT peer,
/// driven by one command per line on stdin.
fn node(bootstrap: Vec<String>) {
    let mut o = DhtOptions::default();
    o.network = Some(NETWORK.into());
    o.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    o.bootstrap = bootstrap;
    o.replication = Some(3);
    o.query_timeout = Some(ConfigDuration(Duration::from_secs(2)));
    let peer = DhtStore::start(&o).expect("the peer starts");
    let tier = peer.tier(&RemoteOptions::default()).expect("a tier");
    let cache: Cache<u64, String> =
        CacheBuilder::with_render(|id: &u64, out| out.push_str(&format!("get_user:{id}")))
            .name("get_user")
            .key_text_prefix("get_user:")
            .service("user")
            .remote_codec(Some(RemoteCodec::postcard()))
            .remote(tier, Backend::Tiered)
            .build();
    let computed = AtomicUsize::new(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", peer.listen_addrs()[0]).unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["get", id] => {
                let id: u64 = id.parse().unwrap_or(0);
                let before = computed.load(Ordering::SeqCst);
                let v = cache.get_or_insert_with(id, || {
                    computed.fetch_add(1, Ordering::SeqCst);
                    format!("user {id} (loaded by pid {})", std::process::id())
                });
                let how = if computed.load(Ordering::SeqCst) > before {
                    "computed here"
                } else {
                    "served from the cache"
                };
                format!("{v} | {how}")
            }
            ["has", id] => {
                let id: u64 = id.parse().unwrap_or(0);
                if cache.contains_key(&id) { "yes" } else { "no" }.into()
            }
            ["invalidate", id] => {
                let id: u64 = id.parse().unwrap_or(0);
                cache.invalidate(&id);
                "ok".into()
            }
            ["peers"] => rt.block_on(peer.peers()).to_string(),
            _ => format!("unknown command {line:?}"),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}

/// A node process, seen from the orchestrator.
struct Node {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

impl Node {
    fn start(name: &str, bootstrap: Option<&str>) -> Node {
        let me = std::env::current_exe().expect("this program's path");
        let mut child = Command::new(me)
            .arg("node")
            .args(bootstrap)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a node starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut addr = String::new();
        stdout.read_line(&mut addr).unwrap();
        Node {
            name: name.into(),
            child,
            stdin,
            stdout,
            addr: addr.trim().into(),
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        let answer = answer.trim().to_owned();
        println!("  {} <- {line:<14} -> {answer}", self.name);
        answer
    }

    fn ask_quietly(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        answer.trim().to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check(ok: bool, what: &str) {
    if !ok {
        eprintln!("FAILED: {what}");
        std::process::exit(1);
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        check(t.elapsed() < Duration::from_secs(15), what);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("node") {
        node(args.collect());
        return;
    }
    println!("starting five nodes (separate processes) on 127.0.0.1");
    let mut a = Node::start("A", None);
    let boot = a.addr.clone();
    let mut rest: Vec<Node> = ["B", "C", "D", "E"]
        .iter()
        .map(|n| Node::start(n, Some(&boot)))
        .collect();
    wait_for("the nodes to find each other", || {
        rest.iter_mut()
            .chain(std::iter::once(&mut a))
            .all(|n| n.ask_quietly("peers").parse::<usize>().unwrap_or(0) >= 3)
    });
    std::thread::sleep(Duration::from_millis(500));

    println!("\n1. a value computed on A is served by E without computing it");
    check(a.ask("get 42").ends_with("computed here"), "A computes 42");
    check(
        rest[3].ask("get 42").ends_with("served from the cache"),
        "E reads 42 from the DHT",
    );

    println!("\n2. an invalidation on B reaches every node's L1 and the DHT");
    check(
        rest[1].ask("get 42").ends_with("served from the cache"),
        "C caches 42",
    );
    check(rest[1].ask("has 42") == "yes", "C holds 42 in its L1");
    rest[0].ask("invalidate 42");
    wait_for("C's L1 to drop 42", || {
        rest[1].ask_quietly("has 42") == "no"
    });
    rest[1].ask("has 42");
    check(
        rest[2].ask("get 42").ends_with("computed here"),
        "D recomputes 42",
    );

    println!("\n3. A, which wrote every entry below, is killed with SIGKILL");
    for id in 1..=5 {
        a.ask(&format!("get {id}"));
    }
    std::thread::sleep(Duration::from_millis(500));
    a.child.kill().expect("kill -9");
    a.child.wait().unwrap();
    println!("  A killed");
    for id in 1..=5 {
        check(
            rest[3]
                .ask(&format!("get {id}"))
                .ends_with("served from the cache"),
            "E still reads every entry A wrote",
        );
    }
    println!("\nall three held");
}
