//! A second process for the disk store's tests.
//!
//! - `warm <path> <n>`: calls a `#[cached]` function (backend `disk` by
//!   configuration) for ids `0..n`, then exits;
//! - `churn <path>`: writes `k<i>` with a self-checking value, deletes every
//!   third key it wrote, and prints `set k<i>` or `deleted k<i>` after each
//!   acknowledged operation, until it is killed.

use std::io::Write;
use std::sync::Arc;

use cache_core::disk::DiskStore;
use cache_core::{Store, cached};

#[cached(name = "warm_fetch")]
fn fetch(id: u64) -> String {
    format!("computed by the child: {id}")
}

/// A value that carries its own check: the key, a payload, and a digest.
pub fn checked_value(key: &str, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = key.bytes().cycle().take(len).collect();
    let sum = cache_tests::check_sum(&v);
    v.extend_from_slice(&sum.to_be_bytes());
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("warm") => {
            let (path, n) = (&args[2], args[3].parse::<u64>().unwrap());
            let cfg: cache_core::config::Config = serde_json::from_value(serde_json::json!({
                "actions": {"warm_fetch": {"backend": "disk"}},
                "disk": {"path": path},
            }))
            .unwrap();
            cache_core::config::set(cfg).unwrap();
            for id in 0..n {
                fetch(id);
            }
            println!("done");
        }
        Some("churn") => {
            let store = Arc::new(DiskStore::open(&args[2]).unwrap());
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut out = std::io::stdout().lock();
            for i in 0u64.. {
                let key = format!("k{i}");
                let value = checked_value(&key, 64 + (i as usize * 37) % 4000);
                rt.block_on(store.set("churn", &key, value, None)).unwrap();
                writeln!(out, "set {key}").unwrap();
                out.flush().unwrap();
                if i % 3 == 2 {
                    let gone = format!("k{}", i - 1);
                    rt.block_on(store.delete("churn", &gone)).unwrap();
                    writeln!(out, "deleted {gone}").unwrap();
                    out.flush().unwrap();
                }
            }
        }
        _ => {
            eprintln!("usage: disk_child warm <path> <n> | churn <path>");
            std::process::exit(2);
        }
    }
}
