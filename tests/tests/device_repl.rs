//! The raw REPL transport against the real MicroPython VM (WebAssembly),
//! run by cache-device's Node launcher. Missing Node or npm packages fail
//! these tests with how to install them.

use std::time::{Duration, Instant};

use cache_device::{Capabilities, Emulator, Firmware, ReplError};

#[tokio::test]
async fn code_runs_and_exceptions_come_back_with_their_traceback() {
    let (_dev, mut repl) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    assert_eq!(repl.exec("print(6 * 7)").await.unwrap(), "42\n");
    repl.exec("def f(x):\n    return x * 2\n").await.unwrap();
    assert_eq!(repl.exec("print(f(21))").await.unwrap(), "42\n");
    match repl
        .exec("print('before')\nraise ValueError('bad input')")
        .await
    {
        Err(ReplError::Exception { traceback, stdout }) => {
            assert_eq!(stdout, "before\n");
            assert!(traceback.contains("ValueError: bad input"), "{traceback}");
            assert!(traceback.starts_with("Traceback"), "{traceback}");
        }
        other => panic!("expected an exception, got {other:?}"),
    }
    // The session is still usable after an exception.
    assert_eq!(repl.exec("print(f(1))").await.unwrap(), "2\n");
    let out = repl
        .exec_raw("import json\nprint(json.dumps({'a': [1, 2]}))")
        .await
        .unwrap();
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("{\"a\": [1, 2]}\n", "")
    );
}

#[tokio::test]
async fn capabilities_tell_device_type_and_firmware_apart() {
    let (_a, mut r127) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    let (_b, mut r129) = Emulator::start(Firmware::V1_29, 0).await.unwrap();
    let c127 = Capabilities::read(&mut r127).await.unwrap();
    let c129 = Capabilities::read(&mut r129).await.unwrap();
    assert_eq!(c127.device_type, "webassembly/JS with Emscripten/pyscript");
    assert_eq!(c127.device_type, c129.device_type);
    assert!(
        c127.firmware.contains("v1.27.0") && c127.firmware.ends_with("/mpy774"),
        "{}",
        c127.firmware
    );
    assert!(c129.firmware.contains("v1.29.0"), "{}", c129.firmware);
    assert_ne!(
        c127.firmware, c129.firmware,
        "same _mpy, different firmware"
    );
}

#[tokio::test]
async fn a_soft_reset_forgets_what_was_defined() {
    let (_dev, mut repl) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    repl.exec("x = 1").await.unwrap();
    repl.soft_reset().await.unwrap();
    match repl.exec("print(x)").await {
        Err(ReplError::Exception { traceback, .. }) => {
            assert!(traceback.contains("NameError"), "{traceback}")
        }
        other => panic!("x survived the reset: {other:?}"),
    }
}

#[tokio::test]
async fn a_disconnected_device_is_an_error_not_a_hang() {
    let (dev, mut repl) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    dev.kill().await;
    let t = Instant::now();
    let e = repl.exec("print(1)").await.unwrap_err();
    assert!(
        matches!(e, ReplError::Closed { .. } | ReplError::Io(_)),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_line_rate_is_that_of_a_serial_port() {
    let (_dev, mut repl) = Emulator::start(Firmware::V1_27, 115_200).await.unwrap();
    // 4 KB of code at 115200 baud (11.5 KB/s) takes about 350 ms to send.
    let code = format!("s = '{}'\nprint(len(s))", "x".repeat(4000));
    let t = Instant::now();
    assert_eq!(repl.exec(&code).await.unwrap(), "4000\n");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let t = Instant::now();
    repl.exec("print(1)").await.unwrap();
    assert!(t.elapsed() < took / 4, "a short call is fast");
}
