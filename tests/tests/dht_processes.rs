//! Five DHT peers as separate OS processes on 127.0.0.1: kill -9 the one
//! that wrote (and so holds) every entry, and every entry is still
//! readable from each of the others.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = env!("CARGO_BIN_EXE_dht_node");

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

impl Peer {
    fn start(network: &str, bootstrap: Option<&str>) -> Peer {
        let mut cmd = Command::new(NODE);
        cmd.arg(network).args(bootstrap);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the dht_node binary runs");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut addr = String::new();
        stdout.read_line(&mut addr).unwrap();
        assert!(addr.contains("/p2p/"), "no address: {addr:?}");
        Peer {
            child,
            stdin,
            stdout,
            addr: addr.trim().to_owned(),
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        answer.trim().to_owned()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn killing_one_of_five_peers_loses_no_entry() {
    let mut first = Peer::start("procs", None);
    let boot = first.addr.clone();
    let mut peers: Vec<Peer> = (1..5).map(|_| Peer::start("procs", Some(&boot))).collect();
    let t = Instant::now();
    while peers
        .iter_mut()
        .any(|p| p.ask("peers").parse::<usize>().unwrap_or(0) < 3)
    {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the peers did not connect"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let n = 20;
    for i in 0..n {
        assert_eq!(first.ask(&format!("set ns k{i} v{i}")), "ok");
    }
    std::thread::sleep(Duration::from_millis(500));
    // The writer holds its own copy of every entry; the other copies
    // live on the replicas. The writer dies.
    for i in 0..n {
        let copies = peers
            .iter_mut()
            .map(|p| p.ask(&format!("holds ns k{i}")))
            .filter(|a| a == "yes")
            .count();
        assert!(
            (2..=3).contains(&copies),
            "k{i} has {copies} copies besides the writer's"
        );
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    // Every entry is still readable, from every surviving peer.
    std::thread::sleep(Duration::from_millis(1500));
    for p in peers.iter_mut() {
        for i in 0..n {
            assert_eq!(p.ask(&format!("get ns k{i}")), format!("v{i}"), "k{i}");
        }
    }
}
