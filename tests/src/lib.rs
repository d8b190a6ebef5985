//! Shared by the integration tests: the glob table, a real `redis-server`
//! on a free loopback port that tests can kill and restart, and a device
//! handle for `#[deploy_cached]` tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod dht;
pub mod http;
pub mod launcher;
pub mod mpremote;
pub mod prometheus;
mod recording;
pub mod tiering;
pub mod webdriver;

pub use recording::RecordingStore;

/// A `tracing` writer that keeps what it is given, for tests to read.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// (pattern, key, matches) — each row as Redis 7's `KEYS pattern` and
/// `SCAN 0 MATCH pattern` answer (checked against a real server).
pub const GLOB_TABLE: &[(&str, &str, bool)] = &[
    ("*", "", true),
    ("*", "get_user:1", true),
    ("get_user:*", "get_user:1", true),
    ("get_user:*", "get_user:", true),
    ("get_user:*", "get_users:1", false),
    ("*:1", "get_user:1", true),
    ("*:1", "get_user:10", false),
    ("get_*:1*", "get_user:123", true),
    ("a*b*c", "abc", true),
    ("a*b*c", "aXbYc", true),
    ("a*b*c", "aXbY", false),
    ("a**b", "ab", true),
    ("?", "a", true),
    ("?", "", false),
    ("?", "ab", false),
    ("h?llo", "hello", true),
    ("h?llo", "hllo", false),
    ("h[ae]llo", "hello", true),
    ("h[ae]llo", "hallo", true),
    ("h[ae]llo", "hillo", false),
    ("h[^e]llo", "hallo", true),
    ("h[^e]llo", "hello", false),
    ("h[a-b]llo", "hbllo", true),
    ("h[a-b]llo", "hcllo", false),
    ("h[b-a]llo", "hallo", true),
    ("[0-9]", "5", true),
    ("[0-9]", "a", false),
    ("user:[1-3]", "user:2", true),
    ("user:[1-3]", "user:4", false),
    ("[abc-]]", "]", true),
    ("[abc-]]", "b", true),
    ("[abc-]]", "-", false),
    ("[-a]", "-", true),
    ("[]]", "]", false),
    ("[\\]]", "]", true),
    ("[\\-]", "-", true),
    ("[a\\-z]", "b", false),
    ("[a\\-z]", "-", true),
    ("\\*", "*", true),
    ("\\*", "a", false),
    ("a\\?b", "a?b", true),
    ("a\\?b", "axb", false),
    ("\\[a]", "[a]", true),
    ("\\\\", "\\", true),
    ("key:{id}", "key:{id}", true),
    ("café:*", "café:1", true),
    ("*é", "café", true),
    ("", "", true),
    ("", "a", false),
    ("abc", "abc", true),
    ("abc", "abcd", false),
    ("abc*", "ab", false),
];

/// A `redis-server` of the test's own, on a free loopback port.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
    password: Option<String>,
    /// The CA certificate, when the server speaks TLS only.
    tls_ca: Option<std::path::PathBuf>,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl RedisServer {
    /// Starts a server; fails with how to install it when it is missing.
    pub fn start() -> RedisServer {
        let mut s = RedisServer {
            port: free_port(),
            child: None,
            extra: Vec::new(),
            password: None,
            tls_ca: None,
        };
        s.restart();
        s
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts a server whose default user needs `password`.
    pub fn start_with_password(password: &str) -> RedisServer {
        let mut s = RedisServer {
            port: free_port(),
            child: None,
            extra: vec!["--requirepass".into(), password.into()],
            password: Some(password.into()),
            tls_ca: None,
        };
        s.restart();
        s
    }

    /// Starts a server that speaks TLS only, with a certificate for
    /// 127.0.0.1 signed by a CA made here with `openssl`.
    pub fn start_tls() -> RedisServer {
        let dir =
            std::env::temp_dir().join(format!("redis-tls-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let st = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| {
                    panic!("cannot run openssl ({e}): install it with `apt-get install openssl`")
                });
            assert!(st.success(), "openssl {args:?} failed");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=cache-test-ca",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let port = free_port();
        let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let mut s = RedisServer {
            port,
            child: None,
            extra: vec![
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                p("server.crt"),
                "--tls-key-file".into(),
                p("server.key"),
                "--tls-ca-cert-file".into(),
                p("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            password: None,
            tls_ca: Some(dir.join("ca.crt")),
        };
        s.restart();
        s
    }

    /// The CA certificate of a TLS server.
    pub fn tls_ca(&self) -> Option<&std::path::Path> {
        self.tls_ca.as_deref()
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let plain_port = if self.tls_ca.is_some() { 0 } else { self.port };
        let child = Command::new("redis-server")
            .args(["--port", &plain_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it with `apt-get install redis-server` \
                     (scripts/test does this for you)"
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `redis-cli` against the server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        if let Some(ca) = &self.tls_ca {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = cmd.args(args).output().unwrap_or_else(|e| {
            panic!("cannot run redis-cli ({e}): install it with `apt-get install redis-tools`")
        });
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters on loopback, made with `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them.
    pub fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "redis-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let mut s = RedisServer {
                    port: free_port(),
                    child: None,
                    extra: vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                        "--dir".into(),
                        dir.to_string_lossy().into_owned(),
                    ],
                    password: None,
                    tls_ca: None,
                };
                s.extra.push("--cluster-config-file".into());
                s.extra.push(format!("nodes-{}.conf", s.port));
                s.restart();
                s
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli: install it with `apt-get install redis-tools`");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let started = Instant::now();
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the cluster did not form"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    /// `redis://` URLs of the nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The number of keys on all nodes.
    pub fn keys(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.cli(&["DBSIZE"]).trim().parse::<usize>().unwrap_or(0))
            .sum()
    }

    /// Keys per node, to show that keys spread over the masters.
    pub fn keys_per_node(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| n.cli(&["DBSIZE"]).trim().parse::<usize>().unwrap_or(0))
            .collect()
    }
}

/// Declares `struct $name(EmulatorSession)`, a device handle for
/// `#[deploy_cached]` methods on the emulated device.
#[macro_export]
macro_rules! device_handle {
    ($name:ident) => {
        struct $name(::cache_device::EmulatorSession);

        impl ::cache_device::DeviceHandle for $name {
            type Reader = <::cache_device::EmulatorSession as ::cache_device::DeviceHandle>::Reader;
            type Writer = <::cache_device::EmulatorSession as ::cache_device::DeviceHandle>::Writer;
            fn session(&mut self) -> &mut ::cache_device::EmulatorSession {
                &mut self.0
            }
        }
    };
}

/// A 64-bit check of `bytes` (FNV-1a), for values that carry their own.
pub fn check_sum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `value` ends with the check of what precedes it.
pub fn check_ok(value: &[u8]) -> bool {
    value.len() >= 8 && {
        let (body, sum) = value.split_at(value.len() - 8);
        check_sum(body).to_be_bytes() == sum
    }
}
