//! Deploy once, then only invoke: against the real MicroPython VM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_device::{DeployCache, DeviceError, DeviceSession, Emulator, Firmware};
use serde::Deserialize;

const SIG: &str = "Sensor::scale(x: i64, k: i64) -> i64";

fn scale_code() -> String {
    "def scale(x, k):\n    return x * k\n".to_string()
}

fn cache(dir: &std::path::Path) -> Arc<DeployCache> {
    Arc::new(DeployCache::open_dir(dir).unwrap())
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("device-session-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test]
async fn deploys_once_then_only_invokes_and_redeploys_after_a_reset() {
    let d = temp("once");
    let c = cache(&d);
    let (_dev, repl) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    let mut s = DeviceSession::open(repl, c.clone()).await.unwrap();

    let v: i64 = s.call("scale", SIG, scale_code, &(21, 2)).await.unwrap();
    assert_eq!(v, 42);
    assert_eq!(c.stats().deploys, 1);
    for i in 0..5 {
        let v: i64 = s
            .call("scale", SIG, || unreachable!("generated twice"), &(i, 3))
            .await
            .unwrap();
        assert_eq!(v, i * 3);
    }
    assert_eq!(c.stats().deploys, 1, "deployed once");
    assert_eq!(s.generations(), 1);

    // After a reset, the next call sends the code again, without generating it.
    s.soft_reset().await.unwrap();
    let v: i64 = s
        .call("scale", SIG, || unreachable!("generated again"), &(5, 5))
        .await
        .unwrap();
    assert_eq!(v, 25);
    assert_eq!(c.stats().deploys, 2);

    // A reset the session did not see: the device's marker is gone, so the
    // call notices and redeploys.
    s.repl().exec("globals().clear()").await.unwrap();
    let v: i64 = s
        .call("scale", SIG, || unreachable!(), &(2, 2))
        .await
        .unwrap();
    assert_eq!(v, 4);
    assert_eq!(c.stats().deploys, 3);
}

#[tokio::test]
async fn a_new_host_process_finds_the_code_in_the_persistent_cache() {
    let d = temp("restart");
    let (_dev, repl) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    // The first host process deploys.
    let mut s = DeviceSession::open(repl, cache(&d)).await.unwrap();
    let _: i64 = s.call("scale", SIG, scale_code, &(1, 1)).await.unwrap();

    // The host restarts; the device keeps running. The new session reads
    // what the device holds, the cache vouches for it: only an invocation.
    let repl = s.into_repl();
    let c2 = cache(&d);
    let mut s2 = DeviceSession::open(repl, c2.clone()).await.unwrap();
    assert_eq!(s2.deployed_methods(), ["scale"]);
    let v: i64 = s2
        .call("scale", SIG, || unreachable!("regenerated"), &(6, 7))
        .await
        .unwrap();
    assert_eq!(v, 42);
    assert_eq!(s2.generations(), 0);
    let st = c2.stats();
    assert_eq!((st.hits, st.deploys), (1, 0), "a persistent hit");

    // Another host process, and a fresh device: the code comes from the
    // cache, not from generating it, and is deployed.
    let c3 = cache(&d);
    let (_dev2, repl3) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    let mut s3 = DeviceSession::open(repl3, c3.clone()).await.unwrap();
    assert!(s3.deployed_methods().is_empty());
    let v: i64 = s3
        .call("scale", SIG, || unreachable!("regenerated"), &(6, 7))
        .await
        .unwrap();
    assert_eq!(v, 42);
    assert_eq!(s3.generations(), 0);
    assert_eq!(c3.stats().deploys, 1);
}

#[tokio::test]
async fn a_firmware_change_never_uses_the_old_firmwares_entry() {
    let d = temp("firmware");
    let c = cache(&d);
    let (_a, r127) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    let mut s127 = DeviceSession::open(r127, c.clone()).await.unwrap();
    let _: i64 = s127.call("scale", SIG, scale_code, &(1, 1)).await.unwrap();
    let (_b, r129) = Emulator::start(Firmware::V1_29, 0).await.unwrap();
    let mut s129 = DeviceSession::open(r129, c.clone()).await.unwrap();
    let v: i64 = s129.call("scale", SIG, scale_code, &(2, 3)).await.unwrap();
    assert_eq!(v, 6);
    assert_eq!(s129.generations(), 1, "nothing was found for 1.29");
    assert_eq!(c.stats().deploys, 2);
    let fw129 = s129.capabilities().firmware.clone();
    let ty = s129.capabilities().device_type.clone();
    assert_eq!(c.compact(Some(&ty), Some(&fw129)), 1, "the 1.27 entry goes");
}

#[derive(Debug, Deserialize, PartialEq)]
struct Reading {
    channel: u8,
    volts: f64,
}

#[tokio::test]
async fn results_decode_and_errors_are_typed() {
    let d = temp("errors");
    let (_dev, repl) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    let mut s = DeviceSession::open(repl, cache(&d)).await.unwrap();
    let r: Reading = s
        .call(
            "read",
            "read(ch)",
            || "def read(ch):\n    return {'channel': ch, 'volts': ch / 4}\n".into(),
            &(2,),
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        Reading {
            channel: 2,
            volts: 0.5
        }
    );

    match s
        .call::<_, i64>(
            "boom",
            "boom()",
            || "def boom():\n    raise OSError(5)\n".into(),
            &(),
        )
        .await
    {
        Err(DeviceError::Raised { traceback, .. }) => {
            assert!(traceback.contains("OSError"), "{traceback}")
        }
        other => panic!("{other:?}"),
    }
    match s
        .call::<_, i64>("bad", "bad()", || "def bad(:\n    pass\n".into(), &())
        .await
    {
        Err(DeviceError::Deploy { traceback, .. }) => {
            assert!(traceback.contains("SyntaxError"), "{traceback}")
        }
        other => panic!("{other:?}"),
    }
    match s.call::<_, i64>("scale", SIG, scale_code, &(1, 2, 3)).await {
        Err(DeviceError::Arity { given, message, .. }) => {
            assert_eq!(given, 3);
            assert!(message.starts_with("TypeError"), "{message}")
        }
        other => panic!("wrong arity: {other:?}"),
    }
    // A TypeError inside the method is the method's, not an arity error.
    match s
        .call::<_, i64>(
            "inner",
            "inner(x)",
            || "def inner(x):\n    return len(x, x)\n".into(),
            &(1,),
        )
        .await
    {
        Err(DeviceError::Raised { traceback, .. }) => {
            assert!(traceback.contains("TypeError"), "{traceback}")
        }
        other => panic!("{other:?}"),
    }
    // A result json cannot encode is a result error, not garbage.
    match s
        .call::<_, i64>(
            "odd",
            "odd()",
            || "def odd():\n    return object()\n".into(),
            &(),
        )
        .await
    {
        // MicroPython's json.dumps writes the object's repr, which does not decode.
        Err(DeviceError::Result { output, .. }) => {
            assert!(output.starts_with("<object"), "{output}")
        }
        other => panic!("{other:?}"),
    }
    match s.call::<_, String>("scale", SIG, scale_code, &(1, 2)).await {
        Err(DeviceError::Result { output, .. }) => assert_eq!(output.trim(), "2"),
        other => panic!("{other:?}"),
    }
    // Names like the session's own helpers do not collide with them.
    for name in ["call", "out"] {
        let v: String = s
            .call(
                name,
                name,
                || format!("def {name}(x):\n    return x + '!'\n"),
                &("hi",),
            )
            .await
            .unwrap();
        assert_eq!(v, "hi!");
    }
    assert!(matches!(
        s.call::<_, i64>("__dc_call", "x", String::new, &()).await,
        Err(DeviceError::BadName(_))
    ));
    assert!(matches!(
        s.call::<_, i64>("not a name", "x", String::new, &()).await,
        Err(DeviceError::BadName(_))
    ));
}

#[tokio::test]
async fn at_115200_baud_a_cached_call_is_far_cheaper_than_deploying() {
    let d = temp("baud");
    let (_dev, repl) = Emulator::start(Firmware::V1_27, 115_200).await.unwrap();
    let mut s = DeviceSession::open(repl, cache(&d)).await.unwrap();
    // About 2 KB of code, as a real driver might be.
    let code = || {
        let mut c = String::from(
            "def checksum(data):\n    s = 0\n    for b in data:\n        s = (s * 31 + b) & 0xffff\n    return s\n",
        );
        for i in 0..60 {
            c.push_str(&format!("def helper_{i}(x):\n    return x + {i}\n"));
        }
        c
    };
    let t = Instant::now();
    let a: u64 = s
        .call("checksum", "checksum(data)", code, &(vec![1u8, 2, 3],))
        .await
        .unwrap();
    let deploy_and_call = t.elapsed();
    let t = Instant::now();
    let b: u64 = s
        .call("checksum", "checksum(data)", code, &(vec![1u8, 2, 3],))
        .await
        .unwrap();
    let call = t.elapsed();
    assert_eq!(a, b);
    assert!(
        deploy_and_call > Duration::from_millis(150),
        "{deploy_and_call:?}"
    );
    assert!(
        call * 3 < deploy_and_call,
        "cached {call:?} vs deploy {deploy_and_call:?}"
    );
}
