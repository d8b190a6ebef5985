//! The disk store (redb) in real processes: a cache warm after a restart,
//! `kill -9` at random points without a corrupt value or a resurrected
//! delete, and files that are not stores refused at open.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cache_core::config::{self, Config};
use cache_core::disk::DiskStore;
use cache_core::{Pattern, Store, cached};
use cache_tests::check_ok;

const CHILD: &str = env!("CARGO_BIN_EXE_disk_child");

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cache-disk-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

static FETCHES: AtomicUsize = AtomicUsize::new(0);

#[cached(name = "warm_fetch")]
fn fetch(id: u64) -> String {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    format!("computed by the parent: {id}")
}

/// Store behaviour, in process: TTL on read, revoke by pattern within a
/// namespace, clear of one namespace, and the data surviving a reopen.
#[test]
fn the_store_honours_ttl_patterns_and_namespaces() {
    let dir = temp_dir("basics");
    let path = dir.join("c.redb");
    let rt = rt();
    {
        let s = DiskStore::open(&path).unwrap();
        rt.block_on(async {
            s.set("a", "user:1", b"one".to_vec(), None).await.unwrap();
            s.set("a", "user:2", b"two".to_vec(), None).await.unwrap();
            s.set("a", "order:1", b"o1".to_vec(), None).await.unwrap();
            s.set("b", "user:1", b"b1".to_vec(), None).await.unwrap();
            s.set("a", "short", b"s".to_vec(), Some(Duration::from_millis(30)))
                .await
                .unwrap();
            assert_eq!(
                s.get("a", "short").await.unwrap().as_deref(),
                Some(&b"s"[..])
            );
        });
        std::thread::sleep(Duration::from_millis(60));
        rt.block_on(async {
            assert_eq!(s.get("a", "short").await.unwrap(), None, "past its TTL");
            let p = Pattern::new("user:*").unwrap();
            assert_eq!(s.revoke("a", &p).await.unwrap(), 2);
            assert_eq!(
                s.get("b", "user:1").await.unwrap().as_deref(),
                Some(&b"b1"[..])
            );
            assert!(s.delete("a", "order:1").await.unwrap());
            assert!(!s.delete("a", "order:1").await.unwrap());
            s.set("a", "x", b"x".to_vec(), None).await.unwrap();
        });
    }
    let s = DiskStore::open(&path).unwrap();
    rt.block_on(async {
        assert_eq!(
            s.get("a", "x").await.unwrap().as_deref(),
            Some(&b"x"[..]),
            "reopened"
        );
        assert_eq!(s.get("a", "user:1").await.unwrap(), None);
        assert_eq!(s.clear("b").await.unwrap(), 1);
        assert_eq!(
            s.get("a", "x").await.unwrap().as_deref(),
            Some(&b"x"[..]),
            "only b cleared"
        );
    });
}

/// A child process fills a `#[cached]` function's disk store and exits;
/// this process, by configuration alone, reads every value from disk.
#[test]
fn a_cache_is_warm_after_a_restart() {
    let dir = temp_dir("warm");
    let path = dir.join("warm.redb");
    let out = Command::new(CHILD)
        .args(["warm", path.to_str().unwrap(), "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "actions": {"warm_fetch": {"backend": "disk"}},
        "disk": {"path": path},
    }))
    .unwrap();
    config::set(cfg).unwrap();
    for id in 0..5 {
        assert_eq!(fetch(id), format!("computed by the child: {id}"));
    }
    assert_eq!(FETCHES.load(Ordering::SeqCst), 0, "all five came from disk");
    assert_eq!(fetch(5), "computed by the parent: 5");
    assert_eq!(FETCHES.load(Ordering::SeqCst), 1);
}

/// A seed from the clock, for kill times.
fn seed() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// `kill -9` at random points while a child writes and deletes: every value
/// read back is whole, every acknowledged write is there unless it was
/// deleted, and no acknowledged delete comes back.
#[test]
fn kill_9_mid_write_loses_nothing_acknowledged() {
    let dir = temp_dir("kill");
    let path = dir.join("churn.redb");
    let rt = rt();
    let mut seed = seed();
    let mut total_sets = 0;
    for round in 0..6 {
        let mut child = Command::new(CHILD)
            .args(["churn", path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = Duration::from_millis(40 + (seed >> 33) % 300);
        std::thread::sleep(wait);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let acked_sets: BTreeSet<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("set ").map(str::to_owned))
            .collect();
        let acked_deletes: HashSet<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("deleted ").map(str::to_owned))
            .collect();
        total_sets += acked_sets.len();

        let s = DiskStore::open(&path)
            .unwrap_or_else(|e| panic!("round {round}: reopen after kill -9: {e}"));
        rt.block_on(async {
            for k in &acked_deletes {
                assert_eq!(
                    s.get("churn", k).await.unwrap(),
                    None,
                    "round {round}: acknowledged delete of {k} came back"
                );
            }
            for k in acked_sets.difference(&acked_deletes.iter().cloned().collect()) {
                let v = s.get("churn", k).await.unwrap();
                // k<3m+1> is deleted by a later step: the kill may come after
                // that delete committed and before it was acknowledged.
                let doomed = k[1..].parse::<u64>().unwrap() % 3 == 1;
                match v {
                    Some(v) => assert!(check_ok(&v), "round {round}: {k} is corrupt"),
                    None if doomed => {}
                    None => panic!("round {round}: acknowledged {k} lost"),
                }
            }
            // Whatever else is there (a write the kill cut off after its
            // commit) is whole too; then start the next round clean.
            for i in 0..(acked_sets.len() as u64 + 4) {
                if let Some(v) = s.get("churn", &format!("k{i}")).await.unwrap() {
                    assert!(check_ok(&v), "round {round}: k{i} is corrupt");
                }
            }
            s.clear("churn").await.unwrap();
        });
    }
    assert!(
        total_sets > 6,
        "the child wrote too little to test: {total_sets}"
    );
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// Files that are not stores (random bytes, text, a truncated store) are
/// an error at open that names the path, never a panic; configuration
/// pointing at one is refused.
#[test]
fn files_that_are_not_stores_are_refused_at_open() {
    let dir = temp_dir("corrupt");
    let noise: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("noise.redb", noise),
        (
            "text.redb",
            b"this is a configuration file, not a store\n".to_vec(),
        ),
        ("tiny.redb", vec![0u8; 3]),
    ];
    for (name, bytes) in &cases {
        let p = dir.join(name);
        write_file(&p, bytes);
        let e = DiskStore::open(&p).unwrap_err().to_string();
        assert!(
            e.contains(name) && e.contains("not a cache file, or corrupt"),
            "{name}: {e}"
        );
    }

    // A store cut in half: refused, or opened with nothing corrupt in it.
    let p = dir.join("cut.redb");
    {
        let s = DiskStore::open(&p).unwrap();
        let rt = rt();
        rt.block_on(async {
            for i in 0..200 {
                let k = format!("k{i}");
                let mut v = vec![i as u8; 300];
                v.extend_from_slice(&cache_tests::check_sum(&v.clone()).to_be_bytes());
                s.set("n", &k, v, None).await.unwrap();
            }
        });
    }
    let len = std::fs::metadata(&p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let t = Instant::now();
    match DiskStore::open(&p) {
        Err(e) => assert!(e.to_string().contains("cut.redb"), "{e}"),
        Ok(s) => {
            let rt = rt();
            rt.block_on(async {
                for i in 0..200 {
                    if let Ok(Some(v)) = s.get("n", &format!("k{i}")).await {
                        assert!(check_ok(&v), "k{i} is corrupt after the cut");
                    }
                }
            });
        }
    }
    assert!(t.elapsed() < Duration::from_secs(30), "open did not hang");

    // Configuration naming a corrupt file is refused as a whole.
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "actions": {"corrupt_fetch": {"backend": "disk"}},
        "disk": {"path": dir.join("noise.redb")},
    }))
    .unwrap();
    corrupt_fetch(1);
    let e = config::set(cfg).unwrap_err().to_string();
    assert!(e.contains("noise.redb") && e.contains("corrupt"), "{e}");
    assert_eq!(corrupt_fetch(1), 1, "the cache still answers");
}

#[cached(name = "corrupt_fetch")]
fn corrupt_fetch(id: u64) -> u64 {
    id
}
