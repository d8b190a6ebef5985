//! `#[deploy_cached]` on a device handle: a thermostat board running
//! MicroPython, reached over its raw REPL at 115200 baud. Each method's body
//! yields the MicroPython code; it is deployed once per device type,
//! firmware and code hash, and afterwards only invoked.
//!
//! The board is the real MicroPython VM (WebAssembly) behind the project's
//! Node launcher: run `npm ci` in `cache-device/emulator` first (scripts/test
//! does). The deployment cache lives in `$CACHE_DEVICE_DIR` (default: a
//! directory under the system temp dir), so a second run finds the code on
//! disk.
//!
//! Run: `cargo run -p cache-examples --bin device`.

use std::sync::Arc;
use std::time::Instant;

use cache_device::{
    DeployCache, DeviceError, DeviceHandle, DeviceSession, Emulator, Firmware, deploy_cached,
};
use serde::{Deserialize, Serialize};
use tokio::process::{ChildStdin, ChildStdout};

/// A thermostat board: its session, and the device process behind it.
struct Thermostat {
    session: DeviceSession<ChildStdout, ChildStdin>,
}

impl DeviceHandle for Thermostat {
    type Reader = ChildStdout;
    type Writer = ChildStdin;
    fn session(&mut self) -> &mut DeviceSession<ChildStdout, ChildStdin> {
        &mut self.session
    }
}

/// A linear calibration of the sensors, fitted on the device.
#[derive(Debug, Deserialize)]
struct Calibration {
    offset: f64,
    scale: f64,
    samples: u32,
}

/// A reference reading to fit against.
#[derive(Debug, Serialize)]
struct Reference {
    raw: f64,
    celsius: f64,
}

/// The sensor driver: a table of coefficients and a few helpers, the size a
/// small real driver has (about 3 KB).
fn sensor_driver() -> String {
    let mut code = String::from("_COEFF = [");
    code.push_str(
        &(0..64)
            .map(|i| format!("{}.{}", 20 + i % 7, i % 10))
            .collect::<Vec<_>>()
            .join(", "),
    );
    code.push_str(
        "]\n\
         def _raw(sensor):\n    return _COEFF[sensor % len(_COEFF)] * 10\n\
         def read_temperature(sensor):\n    return round(_raw(sensor) / 10 + sensor * 0.25, 2)\n",
    );
    for i in 0..40 {
        code.push_str(&format!(
            "def _register_{i}(value):\n    # register {i}: mask and shift as the datasheet says\n    return (value >> {s}) & 0xff\n",
            s = i % 8
        ));
    }
    code
}

impl Thermostat {
    /// Reads one sensor, in degrees Celsius.
    #[deploy_cached]
    async fn read_temperature(&mut self, sensor: u8) -> Result<f64, DeviceError> {
        sensor_driver()
    }

    /// Fits offset and scale to reference readings, on the device.
    #[deploy_cached(name = "fit")]
    async fn calibrate(&mut self, refs: Vec<Reference>) -> Result<Calibration, DeviceError> {
        "def fit(refs):\n\
         \x20   n = len(refs)\n\
         \x20   mx = sum(r['raw'] for r in refs) / n\n\
         \x20   my = sum(r['celsius'] for r in refs) / n\n\
         \x20   sxx = sum((r['raw'] - mx) ** 2 for r in refs)\n\
         \x20   sxy = sum((r['raw'] - mx) * (r['celsius'] - my) for r in refs)\n\
         \x20   scale = sxy / sxx\n\
         \x20   return {'offset': my - scale * mx, 'scale': scale, 'samples': n}\n"
    }

    /// Fails on the device: the error comes back typed, with the traceback.
    #[deploy_cached]
    async fn self_test(&mut self) -> Result<bool, DeviceError> {
        "def self_test():\n    raise OSError(19)  # ENODEV: no sensor on the bus\n"
    }
}

fn ms(t: Instant) -> String {
    format!("{:.1} ms", t.elapsed().as_secs_f64() * 1e3)
}

fn open_cache(dir: &std::path::Path) -> Arc<DeployCache> {
    Arc::new(DeployCache::open_dir(dir).expect("the deployment cache directory opens"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("CACHE_DEVICE_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::env::temp_dir().join("cache-device-example"));
    let cache = open_cache(&dir);
    println!(
        "deployment cache: {} ({} entries on disk)",
        dir.display(),
        cache.len()
    );

    let (_board, repl) = Emulator::start(Firmware::V1_27, 115_200).await?;
    let mut t = Thermostat {
        session: DeviceSession::open(repl, cache.clone()).await?,
    };
    let caps = t.session.capabilities().clone();
    println!("device: {} / firmware {}", caps.device_type, caps.firmware);

    let start = Instant::now();
    let c = t.read_temperature(3).await?;
    println!("read_temperature(3) = {c} °C, first call: {}", ms(start));
    let start = Instant::now();
    let c = t.read_temperature(5).await?;
    println!("read_temperature(5) = {c} °C, deployed: {}", ms(start));

    let refs = vec![
        Reference {
            raw: 100.0,
            celsius: 20.5,
        },
        Reference {
            raw: 200.0,
            celsius: 40.1,
        },
        Reference {
            raw: 300.0,
            celsius: 59.8,
        },
    ];
    let cal = t.calibrate(refs).await?;
    println!(
        "calibrate: offset {:.3}, scale {:.4} over {} samples",
        cal.offset, cal.scale, cal.samples
    );
    match t.self_test().await {
        Err(DeviceError::Raised { traceback, .. }) => {
            println!(
                "self_test raised on the device: {}",
                traceback.lines().last().unwrap_or("")
            )
        }
        other => println!("self_test: {other:?}"),
    }

    // The board resets: the code is gone from it; the next call sends it
    // again from the cache, without generating it.
    t.session.soft_reset().await?;
    let start = Instant::now();
    let c = t.read_temperature(3).await?;
    println!(
        "after a soft reset: {c} °C, redeployed from the cache: {}",
        ms(start)
    );

    // The host restarts (a new cache over the same directory, a new
    // session); the board keeps its code: a persistent hit.
    let repl = t.session.into_repl();
    drop(cache);
    let cache = open_cache(&dir);
    let mut t = Thermostat {
        session: DeviceSession::open(repl, cache.clone()).await?,
    };
    let start = Instant::now();
    let c = t.read_temperature(3).await?;
    println!(
        "after a host restart: {c} °C, {} (code generated this run: {})",
        ms(start),
        t.session.generations()
    );

    // New firmware: nothing of the old firmware is used; compaction drops
    // the old firmware's entries.
    let (_new_board, repl) = Emulator::start(Firmware::V1_29, 115_200).await?;
    let mut t2 = Thermostat {
        session: DeviceSession::open(repl, cache.clone()).await?,
    };
    let new_fw = t2.session.capabilities().firmware.clone();
    let start = Instant::now();
    let c = t2.read_temperature(3).await?;
    println!("firmware {new_fw}: {c} °C, deployed anew: {}", ms(start));
    let dropped = cache.compact(Some(&caps.device_type), Some(&new_fw));
    println!(
        "compaction dropped {dropped} entries of firmware {}",
        caps.firmware
    );

    let s = cache.stats();
    println!(
        "cache stats since the host restart: {} hits, {} misses, {} deploys, {} ms of deployment saved",
        s.hits, s.misses, s.deploys, s.saved_ms
    );
    Ok(())
}
