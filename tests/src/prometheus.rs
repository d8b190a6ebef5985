//! A real Prometheus (Debian's `prometheus` package) scraping the admin
//! router on loopback, queried through its HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const INSTALL: &str =
    "install it with `apt-get install prometheus` (scripts/test does this for you)";

/// A `prometheus` server of the test's own, scraping every second.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts one that scrapes each `(job, target, token)`'s `/metrics`
    /// with the token as its bearer credentials.
    pub fn start(jobs: &[(&str, SocketAddr, &str)]) -> Prometheus {
        let port = super::free_port();
        let dir =
            std::env::temp_dir().join(format!("cache-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n",
        );
        for (job, target, token) in jobs {
            config.push_str(&format!(
                "  - job_name: {job}\n    metrics_path: /metrics\n    authorization:\n      credentials: \"{token}\"\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ));
        }
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus ({e}): {INSTALL}"));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "prometheus did not listen on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Prometheus { child, addr, dir }
    }

    /// The sum of the values of an instant query's series; `None` when it
    /// has none (yet).
    pub async fn query(&self, promql: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, _, body) = super::http::request(self.addr, "GET", &path, None, None).await;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        if result.is_empty() {
            return None;
        }
        Some(
            result
                .iter()
                .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// Waits (up to 30 s) until `promql` reads `want`; the last reading
    /// otherwise, in the panic message.
    pub async fn wait_for(&self, promql: &str, want: f64) {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < Duration::from_secs(30) {
            last = self.query(promql).await;
            if last == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("prometheus read {promql} as {last:?}, not {want}, within 30 s");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes everything but letters and digits.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs `promtool check metrics` on `text`; its complaints, if any.
pub fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): {INSTALL}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
