//! `#[deploy_cached]` on a device handle, against the real MicroPython VM.

use std::sync::Arc;

use cache_device::{
    DeployCache, DeviceError, DeviceHandle, DeviceSession, Emulator, Firmware, deploy_cached,
};
use serde::{Deserialize, Serialize};
use tokio::process::{ChildStdin, ChildStdout};

/// A sensor board: the handle the methods hang off.
struct Board {
    session: DeviceSession<ChildStdout, ChildStdin>,
    _device: Emulator,
}

impl DeviceHandle for Board {
    type Reader = ChildStdout;
    type Writer = ChildStdin;
    fn session(&mut self) -> &mut DeviceSession<ChildStdout, ChildStdin> {
        &mut self.session
    }
}

#[derive(Debug, Serialize)]
struct Window {
    from: u32,
    to: u32,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Summary {
    count: u32,
    total: u64,
}

/// An error type of the application's own.
#[derive(Debug)]
enum AppError {
    Device(DeviceError),
}

impl From<DeviceError> for AppError {
    fn from(e: DeviceError) -> Self {
        AppError::Device(e)
    }
}

const SCALE: &str = "def scale(x, k):\n    return x * k\n";

impl Board {
    #[deploy_cached]
    async fn scale(&mut self, x: i64, k: i64) -> Result<i64, DeviceError> {
        SCALE
    }

    /// An early `return` in the body yields the code too (7, not 0).
    #[deploy_cached]
    async fn uptime_ticks(&mut self) -> Result<u32, DeviceError> {
        if std::hint::black_box(true) {
            return "def uptime_ticks():\n    return 7\n".to_string();
        }
        "def uptime_ticks():\n    return 0\n".to_string()
    }

    /// Structs go in as JSON objects and come back into the declared type.
    #[deploy_cached(name = "summarize")]
    async fn summary(&mut self, w: Window, samples: Vec<u64>) -> Result<Summary, AppError> {
        let mut code = String::from("def summarize(w, samples):\n");
        code.push_str("    picked = samples[w['from']:w['to']]\n");
        code.push_str("    return {'count': len(picked), 'total': sum(picked)}\n");
        code
    }

    #[deploy_cached]
    async fn fails(&mut self, why: String) -> Result<(), AppError> {
        "def fails(why):\n    raise ValueError(why)\n"
    }

    /// Borrowed arguments serialize as owned ones do.
    #[deploy_cached]
    pub async fn label(&mut self, name: &str, bytes: &[u8]) -> Result<String, DeviceError> {
        "def label(name, bytes):\n    return name + ':' + str(sum(bytes))\n"
    }

    /// The Python function takes one argument; the method passes two.
    #[deploy_cached]
    async fn mismatched(&mut self, a: u8, b: u8) -> Result<u8, DeviceError> {
        "def mismatched(a):\n    return a\n"
    }

    /// The code defines another name than the method's.
    #[deploy_cached]
    async fn undefined(&mut self) -> Result<u8, DeviceError> {
        "def something_else():\n    return 1\n"
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("deploy-cached-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn board(dir: &std::path::Path) -> (Board, Arc<DeployCache>) {
    let cache = Arc::new(DeployCache::open_dir(dir).unwrap());
    let (device, repl) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    let session = DeviceSession::open(repl, cache.clone()).await.unwrap();
    (
        Board {
            session,
            _device: device,
        },
        cache,
    )
}

#[tokio::test]
async fn methods_deploy_once_and_then_only_invoke() {
    let d = temp("once");
    let (mut b, cache) = board(&d).await;
    assert_eq!(b.scale(6, 7).await.unwrap(), 42);
    assert_eq!(b.scale(-2, 5).await.unwrap(), -10);
    assert_eq!(b.uptime_ticks().await.unwrap(), 7);
    let s = cache.stats();
    assert_eq!(s.deploys, 2, "one deploy per method");
    assert_eq!(b.session.generations(), 2);
    assert_eq!(b.session.deployed_methods(), ["scale", "uptime_ticks"]);

    // A reset loses the code on the device; the next call redeploys it from
    // the cache without generating it again.
    b.session.soft_reset().await.unwrap();
    assert!(b.session.deployed_methods().is_empty());
    assert_eq!(b.scale(3, 3).await.unwrap(), 9);
    assert_eq!(b.session.deployed_methods(), ["scale"]);
    assert_eq!(cache.stats().deploys, 3);
    assert_eq!(b.session.generations(), 2);

    // Invalidating one key: that method is generated and deployed afresh;
    // the other is not.
    assert_eq!(b.uptime_ticks().await.unwrap(), 7);
    let deploys = cache.stats().deploys;
    let key = cache
        .keys()
        .into_iter()
        .find(|k| k.signature.ends_with("as scale"))
        .expect("scale's entry");
    assert!(cache.invalidate(&key));
    assert_eq!(b.scale(4, 4).await.unwrap(), 16);
    assert_eq!(b.uptime_ticks().await.unwrap(), 7);
    assert_eq!(cache.stats().deploys, deploys + 1);
    assert_eq!(b.session.generations(), 3);

    // Invalidating everything: each method once more.
    cache.clear();
    assert_eq!(b.scale(1, 1).await.unwrap(), 1);
    assert_eq!(b.uptime_ticks().await.unwrap(), 7);
    assert_eq!(cache.stats().deploys, deploys + 3);
    assert_eq!(b.session.generations(), 5);
}

#[tokio::test]
async fn structs_travel_as_json_and_errors_are_typed() {
    let d = temp("json");
    let (mut b, _) = board(&d).await;
    let s = b
        .summary(Window { from: 1, to: 3 }, vec![10, 20, 30, 40])
        .await
        .unwrap();
    assert_eq!(
        s,
        Summary {
            count: 2,
            total: 50
        }
    );

    match b.fails("bad sensor".into()).await {
        Err(AppError::Device(DeviceError::Raised { method, traceback })) => {
            assert_eq!(method, "fails");
            assert!(traceback.contains("ValueError: bad sensor"), "{traceback}");
        }
        other => panic!("{other:?}"),
    }
    match b.mismatched(1, 2).await {
        Err(DeviceError::Arity { method, given, .. }) => {
            assert_eq!((method.as_str(), given), ("mismatched", 2));
        }
        other => panic!("{other:?}"),
    }
    match b.undefined().await {
        Err(DeviceError::Deploy { traceback, .. }) => {
            assert!(
                traceback.contains("does not define a function undefined"),
                "{traceback}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.label("adc", &[1, 2, 3]).await.unwrap(), "adc:6");
    // The session still works after each of those.
    assert_eq!(b.scale(2, 2).await.unwrap(), 4);
}

#[tokio::test]
async fn the_signature_tells_handles_apart() {
    // Another handle type with a method of the same name and types, but
    // other code: each gets its own.
    cache_tests::device_handle!(Other);
    impl Other {
        #[deploy_cached]
        async fn scale(&mut self, x: i64, k: i64) -> Result<i64, DeviceError> {
            "def scale(x, k):\n    return x + k\n"
        }
    }
    let d = temp("two");
    let (mut b, cache) = board(&d).await;
    assert_eq!(b.scale(6, 7).await.unwrap(), 42);
    let (_dev, repl) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    let mut o = Other(DeviceSession::open(repl, cache).await.unwrap());
    assert_eq!(o.scale(6, 7).await.unwrap(), 13);
    assert_eq!(b.scale(6, 7).await.unwrap(), 42);
}
