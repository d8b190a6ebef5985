//! Shared by the integration tests: the glob table, and a real
//! `redis-server` on a free loopback port that tests can kill and restart.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

fn free_port() -> u16 {
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
        };
        s.restart();
        s
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
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
