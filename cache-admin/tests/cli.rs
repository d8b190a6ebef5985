//! The `cache-admin` binary against a service served on loopback: every
//! command, tables and `--json`, and an exit code for each kind of failure.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::cache_service;

const TOKEN: &str = "cli-token-5b1";

static LOADS: AtomicU64 = AtomicU64::new(0);

/// The tests share one service: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Clone)]
struct Shop;

#[cache_service(name = "shop")]
impl Shop {
    #[cached]
    fn product(&self, id: u64) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        format!("product {id}")
    }

    #[cached(index(size = |n: &usize| vec![n.to_string()]))]
    fn search(&self, q: String) -> usize {
        q.len()
    }
}

/// The admin router, served once for every test of this binary.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                cache_core::http::serve_on(l, TOKEN).await.unwrap();
            });
        });
        rx.recv().unwrap()
    })
}

/// Runs the CLI with only the environment given (plus `PATH`), and an
/// unrelated `CACHE_*` variable that must not matter.
fn cli(args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cache-admin"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CACHE_TTL", "not a number")
        .env("CACHE_ADMIN_URL", format!("http://{}", server()));
    if let Some(t) = token {
        c.env("CACHE_ADMIN_TOKEN", t);
    }
    let out = c.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_against_a_served_service() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ok = |args: &[&str]| {
        let (code, out, err) = cli(args, Some(TOKEN));
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    let stats = || -> serde_json::Value {
        serde_json::from_str(&ok(&["--json", "stats", "shop"])).unwrap()
    };
    ok(&["clear", "shop"]);
    let base = stats();
    for id in 1..=5 {
        Shop.product(id);
    }
    Shop.product(1);

    let out = ok(&["services"]);
    assert!(
        out.contains("SERVICE") && out.contains("shop") && out.contains("product"),
        "{out}"
    );

    let json = stats();
    let delta = |field: &str| {
        json["actions"]["product"][field].as_u64().unwrap()
            - base["actions"]["product"][field].as_u64().unwrap_or(0)
    };
    assert_eq!((delta("hits"), delta("misses")), (1, 5));
    assert_eq!(json["total"]["entries"], 5);
    let table = ok(&["stats", "shop"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("product"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.len(), 11, "{table}");
    let hits = json["actions"]["product"]["hits"].to_string();
    let misses = json["actions"]["product"]["misses"].to_string();
    assert_eq!(&cells[1..3], &[hits.as_str(), misses.as_str()], "{table}");
    assert_eq!(cells[4], "5", "entries: {table}");

    let keys = ok(&["keys", "shop", "--pattern", "product:[12]"]);
    assert_eq!(keys, "product:1\nproduct:2\n");
    assert_eq!(ok(&["keys", "shop", "--limit", "2"]).lines().count(), 2);

    assert_eq!(ok(&["delete", "shop", "product:1"]), "deleted 1\n");
    let before = LOADS.load(Ordering::SeqCst);
    Shop.product(1);
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        before + 1,
        "a deleted key is computed again"
    );

    assert_eq!(ok(&["revoke", "shop", "product:[23]"]), "revoked 2\n");
    assert_eq!(ok(&["keys", "shop"]), "product:1\nproduct:4\nproduct:5\n");
    assert_eq!(ok(&["clear", "shop"]), "cleared 3\n");
    assert_eq!(ok(&["keys", "shop"]), "");

    let health = ok(&["health"]);
    assert!(health.starts_with("status ok (ready: yes"), "{health}");
    let metrics = ok(&["metrics"]);
    assert!(metrics.contains("cache_gets_total{"), "{metrics}");
}

/// A key's text is the caller's: control characters in it reach the
/// operator's terminal only escaped, and one key stays one line.
#[test]
fn hostile_key_text_cannot_drive_the_terminal() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    Shop.search("\u{1b}]0;owned\u{7}\u{1b}[2J\nfake-key\r\u{9b}31m".to_owned());
    let (code, out, err) = cli(&["keys", "shop", "--pattern", "search:*"], Some(TOKEN));
    assert_eq!(code, 0, "{err}");
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert_eq!(out.lines().count(), 1, "{out:?}");
    let (_, json, _) = cli(
        &["--json", "keys", "shop", "--pattern", "search:*"],
        Some(TOKEN),
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        v["keys"][0].as_str().unwrap().contains('\u{1b}'),
        "--json keeps the text exact"
    );
}

#[test]
fn each_failure_has_its_exit_code() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    Shop.product(9);
    let (code, out, err) = cli(&["stats", "shop"], None);
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert!(
        err.contains("no token: pass --token or set CACHE_ADMIN_TOKEN"),
        "{err}"
    );
    let (code, _, err) = cli(&["stats", "shop"], Some("wrong"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refused") && !err.contains("wrong"), "{err}");
    let (code, _, err) = cli(&["--token", "wrong", "clear", "shop"], Some(TOKEN));
    assert_eq!(code, 3, "--token wins over the environment: {err}");

    let (code, _, err) = cli(&["stats", "no-such-service"], Some(TOKEN));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("no-such-service"), "{err}");
    let (code, _, err) = cli(&["revoke", "shop", "a[b"], Some(TOKEN));
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("bracket"), "{err}");
    // A hostile service name stays one path segment.
    let (code, _, err) = cli(&["stats", "../shop/cache/clear?x=/"], Some(TOKEN));
    assert_eq!(code, 4, "{err}");
    let before = LOADS.load(Ordering::SeqCst);
    Shop.product(9);
    assert_eq!(LOADS.load(Ordering::SeqCst), before, "nothing was cleared");

    let (code, _, err) = cli(&["--url", "http://127.0.0.1:1", "health"], Some(TOKEN));
    assert_eq!(code, 7, "{err}");
    let (code, _, err) = cli(&["--url", "ftp://x", "health"], Some(TOKEN));
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = cli(&["no-such-command"], Some(TOKEN));
    assert_eq!(code, 2);
}

/// A reader that closed the pipe before the answer came (`| head -1`) ends
/// the command quietly: exit 0 and nothing on stderr, not a panic.
#[test]
fn a_closed_pipe_ends_quietly() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    Shop.product(10);
    for args in [
        &["metrics"][..],
        &["--json", "stats", "shop"],
        &["services"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_cache-admin"))
            .env_clear()
            .env("CACHE_ADMIN_URL", format!("http://{}", server()))
            .env("CACHE_ADMIN_TOKEN", TOKEN)
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn keys_by_index_terms() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for q in ["ab", "cd", "xyz"] {
        Shop.search(q.to_string());
    }
    let run = |args: &[&str]| cli(args, Some(TOKEN));
    let (code, out, err) = run(&["keys", "shop", "--where", "size=2"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "search:ab\nsearch:cd\n");
    let (code, out, _) = run(&[
        "keys",
        "shop",
        "--where",
        "size=3",
        "--pattern",
        "search:x*",
    ]);
    assert_eq!((code, out.as_str()), (0, "search:xyz\n"));
    let (code, _, err) = run(&["keys", "shop", "--where", "size"]);
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(err.contains("INDEX=TERM"), "{err}");
    let (code, _, err) = run(&["keys", "shop", "--where", "colour=red"]);
    assert_ne!(code, 0);
    assert!(err.contains("its indexes: size"), "{err}");
}
