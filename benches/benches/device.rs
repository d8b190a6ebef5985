//! Deployment caching on a device at 115200 baud: the real MicroPython VM
//! behind cache-device's Node launcher, throttled to a serial line's rate.
//! Needs Node.js and the emulator's packages (`npm ci` in
//! cache-device/emulator; scripts/test does it).
//!
//! For a 2 KB and an 8 KB driver, through `#[deploy_cached]` methods taking
//! a 16-byte argument (and a 1-byte one: a cached call's cost is mostly its
//! bytes on the line):
//! - deploy + call: the device and the deployment cache are empty;
//! - cached call: the method is deployed;
//! - after a host restart: a new process (a new `DeployCache` over the same
//!   directory, a new session) calls a method the device still has — a
//!   persistent hit — and, after a device reset as well, redeploys from the
//!   cache without generating the code.
//!
//! Then the cost of raw-paste: 100 consecutive deploys of the 8 KB driver
//! (each after a soft reset and with the cache emptied) on two devices at
//! once, one taking the code in raw-paste mode as a board does (128-byte
//! windows, each acknowledged) and one in the plain raw REPL, interleaved,
//! with every failure counted.
//!
//! Run: `cargo bench -p cache-bench --bench device`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_device::{
    DeployCache, DeviceError, DeviceHandle, DeviceSession, Emulator, Firmware, RawPaste,
    deploy_cached,
};
use tokio::process::{ChildStdin, ChildStdout};

const BAUD: u32 = 115_200;
const ROUNDS: usize = 5;
/// Deploys of each kind in the raw-paste comparison.
const DEPLOYS: usize = 100;

struct Board(DeviceSession<ChildStdout, ChildStdin>);

impl DeviceHandle for Board {
    type Reader = ChildStdout;
    type Writer = ChildStdin;
    fn session(&mut self) -> &mut DeviceSession<ChildStdout, ChildStdin> {
        &mut self.0
    }
}

/// A driver of about `kb` KB: one entry point and helpers, as real ones
/// carry.
fn driver(name: &str, kb: usize) -> String {
    let mut code = format!(
        "def {name}(data):\n    s = 0\n    for b in data:\n        s = (s * 31 + b) & 0xffff\n    return s\n"
    );
    let mut i = 0;
    while code.len() < kb * 1024 {
        code.push_str(&format!(
            "def {name}_helper_{i}(register, value):\n    # register {i} of the sensor\n    return (register << 8 | value) ^ {i}\n"
        ));
        i += 1;
    }
    code
}

impl Board {
    #[deploy_cached]
    async fn checksum_2k(&mut self, data: Vec<u8>) -> Result<u64, DeviceError> {
        driver("checksum_2k", 2)
    }

    #[deploy_cached]
    async fn checksum_8k(&mut self, data: Vec<u8>) -> Result<u64, DeviceError> {
        driver("checksum_8k", 8)
    }

    async fn checksum(&mut self, kb: usize, data: Vec<u8>) -> u64 {
        match kb {
            2 => self.checksum_2k(data).await,
            _ => self.checksum_8k(data).await,
        }
        .expect("the device answers")
    }
}

fn open_cache(dir: &Path) -> Arc<DeployCache> {
    Arc::new(DeployCache::open_dir(dir).expect("the cache directory opens"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run(kb: usize, arg_len: u8, dir: PathBuf) {
    let _ = std::fs::remove_dir_all(&dir);
    let (_device, repl) = Emulator::start(Firmware::V1_27, BAUD)
        .await
        .expect("the emulator starts (needs node and `npm ci` in cache-device/emulator)");
    let mut cache = open_cache(&dir);
    let mut board = Board(DeviceSession::open(repl, cache.clone()).await.unwrap());
    let data: Vec<u8> = (0..arg_len).collect();

    let mut deploy_call = Vec::new();
    for _ in 0..ROUNDS {
        board.0.soft_reset().await.unwrap();
        cache.clear();
        let t = Instant::now();
        board.checksum(kb, data.clone()).await;
        deploy_call.push(t.elapsed());
    }
    let mut cached = Vec::new();
    for _ in 0..ROUNDS * 4 {
        let t = Instant::now();
        board.checksum(kb, data.clone()).await;
        cached.push(t.elapsed());
    }

    // Host restarts; the device keeps its code.
    let mut restart_hit = Vec::new();
    let mut reopen = Vec::new();
    for _ in 0..ROUNDS {
        let repl = board.0.into_repl();
        drop(cache);
        let t = Instant::now();
        cache = open_cache(&dir);
        board = Board(DeviceSession::open(repl, cache.clone()).await.unwrap());
        reopen.push(t.elapsed());
        let t = Instant::now();
        board.checksum(kb, data.clone()).await;
        restart_hit.push(t.elapsed());
        assert_eq!(board.0.generations(), 0, "found in the persistent cache");
    }
    // Host restarts and the device was reset: redeploy from the cache.
    let mut restart_redeploy = Vec::new();
    for _ in 0..ROUNDS {
        board.0.soft_reset().await.unwrap();
        let repl = board.0.into_repl();
        drop(cache);
        cache = open_cache(&dir);
        board = Board(DeviceSession::open(repl, cache.clone()).await.unwrap());
        let t = Instant::now();
        board.checksum(kb, data.clone()).await;
        restart_redeploy.push(t.elapsed());
        assert_eq!(board.0.generations(), 0, "found in the persistent cache");
    }

    let dc = median(deploy_call);
    let c = median(cached);
    let rh = median(restart_hit);
    let rr = median(restart_redeploy);
    let saved = |x: Duration| 100.0 * (1.0 - x.as_secs_f64() / dc.as_secs_f64());
    println!(
        "{kb} KB driver, {arg_len}-byte argument, at {BAUD} baud (medians of {ROUNDS}+ rounds):"
    );
    println!("  deploy + call                {:8.1} ms", ms(dc));
    println!(
        "  cached call                  {:8.1} ms  {:5.1}% faster ({:.0}x)",
        ms(c),
        saved(c),
        dc.as_secs_f64() / c.as_secs_f64()
    );
    println!(
        "  after host restart, 1st call {:8.1} ms  {:5.1}% faster (persistent hit; reopening the session {:.1} ms)",
        ms(rh),
        saved(rh),
        ms(median(reopen))
    );
    println!(
        "  + device reset, 1st call     {:8.1} ms  {:.2}x deploy + call (a redeploy from the cache; nothing generated)",
        ms(rr),
        rr.as_secs_f64() / dc.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One deploy + call of the 8 KB driver after a soft reset, with the cache
/// emptied: its time, or the error.
async fn deploy_8k(board: &mut Board, cache: &DeployCache) -> Result<Duration, String> {
    board.0.soft_reset().await.map_err(|e| e.to_string())?;
    cache.clear();
    let t = Instant::now();
    board
        .checksum_8k(vec![7; 16])
        .await
        .map_err(|e| e.to_string())?;
    Ok(t.elapsed())
}

async fn paste_against_raw(dir: PathBuf) {
    let mut boards = Vec::new();
    for (i, paste) in [RawPaste::Auto, RawPaste::Off].into_iter().enumerate() {
        let d = dir.join(i.to_string());
        let _ = std::fs::remove_dir_all(&d);
        let (device, mut repl) = Emulator::start(Firmware::V1_27, BAUD)
            .await
            .expect("the emulator starts");
        repl.set_raw_paste(paste);
        let cache = open_cache(&d);
        let board = Board(DeviceSession::open(repl, cache.clone()).await.unwrap());
        boards.push((device, board, cache, Vec::new(), 0usize));
    }
    for _ in 0..DEPLOYS {
        for (_, board, cache, times, failures) in boards.iter_mut() {
            match deploy_8k(board, cache).await {
                Ok(t) => times.push(t),
                Err(e) => {
                    eprintln!("a deploy failed: {e}");
                    *failures += 1;
                }
            }
        }
    }
    assert_eq!(
        boards[0].1.0.repl().raw_paste_window(),
        Some(128),
        "raw-paste was used"
    );
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len().max(1) as u32;
    let (paste, raw) = (&boards[0], &boards[1]);
    println!("8 KB driver, {DEPLOYS} consecutive deploys + calls each, at {BAUD} baud:");
    for (name, b) in [("raw-paste (emulated)", paste), ("plain raw REPL", raw)] {
        println!(
            "  {name:22} median {:7.1} ms, mean {:7.1} ms, {} failures",
            ms(median(b.3.clone())),
            ms(mean(&b.3)),
            b.4
        );
    }
    println!(
        "  raw-paste / plain raw REPL: {:.3}x (medians), {:.3}x (means)",
        median(paste.3.clone()).as_secs_f64() / median(raw.3.clone()).as_secs_f64(),
        mean(&paste.3).as_secs_f64() / mean(&raw.3).as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once too.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::temp_dir().join(format!("device-bench-{}", std::process::id()));
    rt.block_on(async {
        for (kb, arg_len) in [(2, 16), (8, 16), (8, 1)] {
            run(kb, arg_len, base.join(format!("{kb}k-{arg_len}"))).await;
        }
        paste_against_raw(base.join("paste")).await;
    });
}
