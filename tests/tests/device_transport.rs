//! Raw-paste negotiation, resets, TCP and serial transports, against the
//! real MicroPython VM run by cache-device's Node launcher; what the
//! launcher says on its line (`line`, and the breaks an outside attack
//! found, `attacks`); mpremote as a second client (`mpremote_client`).

#[path = "device_transport/attacks.rs"]
mod attacks;
#[path = "device_transport/line.rs"]
mod line;
#[path = "device_transport/mpremote_client.rs"]
mod mpremote_client;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_device::{
    DeployCache, DeviceSession, Emulator, EmulatorOptions, Firmware, PasteSupport, RawPaste,
    ReplError, SerialRepl, TcpRepl,
};

fn options(raw_paste: PasteSupport) -> EmulatorOptions {
    EmulatorOptions {
        firmware: Firmware::V1_27,
        baud: 0,
        raw_paste,
    }
}

/// About 2 KB, so a raw paste takes many 128-byte windows.
fn long_program() -> String {
    let mut code = String::from("total = 0\n");
    for i in 0..150 {
        code.push_str(&format!("total += {i}\n"));
    }
    code.push_str("print(total)\n");
    code
}

fn cache(name: &str) -> Arc<DeployCache> {
    let dir = std::env::temp_dir().join(format!("device-transport-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Arc::new(DeployCache::open_dir(dir).unwrap())
}

#[tokio::test]
async fn raw_paste_is_used_where_the_device_has_it() {
    let (_dev, mut repl) = Emulator::start_with(options(PasteSupport::Emulated))
        .await
        .unwrap();
    assert_eq!(repl.raw_paste_window(), None, "not negotiated yet");
    // Code that fits a board's input buffer goes in the raw REPL at once.
    assert_eq!(repl.exec("print(1)").await.unwrap(), "1\n");
    assert_eq!(repl.raw_paste_window(), None, "not for short code");
    let expected = (0..150).sum::<i32>();
    assert_eq!(
        repl.exec(&long_program()).await.unwrap(),
        format!("{expected}\n")
    );
    assert_eq!(repl.raw_paste_window(), Some(128), "a board's window");
    // Exceptions and empty programs, in raw-paste mode too.
    match repl.exec("raise KeyError('k')").await {
        Err(ReplError::Exception { traceback, .. }) => {
            assert!(traceback.contains("KeyError"), "{traceback}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(repl.exec("").await.unwrap(), "");
    assert_eq!(
        repl.exec("print(total)").await.unwrap(),
        format!("{expected}\n")
    );
    // A session deploys through it.
    let mut s = DeviceSession::open(repl, cache("paste")).await.unwrap();
    let v: i64 = s
        .call(
            "twice",
            "twice(x)",
            || "def twice(x):\n    return 2 * x\n".into(),
            &(21,),
        )
        .await
        .unwrap();
    assert_eq!(v, 42);
}

#[tokio::test]
async fn refused_or_unknown_raw_paste_falls_back_to_the_raw_repl() {
    for support in [PasteSupport::Refused, PasteSupport::Unknown] {
        let (_dev, mut repl) = Emulator::start_with(options(support)).await.unwrap();
        let expected = format!("{}\n", (0..150).sum::<i32>());
        assert_eq!(
            repl.exec(&long_program()).await.unwrap(),
            expected,
            "{support:?}"
        );
        assert_eq!(repl.raw_paste_window(), None, "{support:?}");
        assert_eq!(
            repl.exec("print(total)").await.unwrap(),
            expected,
            "{support:?}"
        );
    }
}

#[tokio::test]
async fn the_vms_own_raw_paste_gets_stuck_without_spinning_and_a_ctrl_c_brings_the_device_back() {
    // Emulator::start_with turns raw-paste off on the VM's own implementation.
    let (mut dev, mut repl) = Emulator::start_with(options(PasteSupport::Native))
        .await
        .unwrap();
    assert_eq!(repl.exec("x = 1\nprint(x)").await.unwrap(), "1\n");
    assert_eq!(repl.raw_paste_window(), None);

    // Turned on, the VM answers R\x01 and never runs the code: the wait ends
    // with an error, not a hang.
    repl.set_raw_paste(RawPaste::Auto);
    repl.set_timeout(Duration::from_millis(500));
    let t = Instant::now();
    let e = repl.exec(&long_program()).await.unwrap_err();
    assert!(matches!(e, ReplError::Timeout { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));

    // The launcher stops the stuck VM rather than spin with it.
    let pid = dev.pid().expect("the launcher runs");
    let busy = cache_tests::launcher::cpu_share(pid, Duration::from_secs(1));
    assert!(
        busy < 0.3,
        "the launcher used {busy:.2} of a core while stuck"
    );

    // The device answers nothing until a Ctrl-C goes unanswered for 2 s and
    // restarts it, as a hard reset: the boot banner, then the raw REPL, with
    // what was defined gone.
    repl.set_raw_paste(RawPaste::Off);
    repl.set_timeout(Duration::from_secs(10));
    let t = Instant::now();
    match repl.exec("print(x)").await {
        Err(ReplError::Exception { traceback, .. }) => {
            assert!(traceback.contains("NameError"), "{traceback}")
        }
        other => panic!("{other:?}"),
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(repl.exec("print(2)").await.unwrap(), "2\n");

    // Its input closed, the launcher exits.
    drop(repl);
    let status = dev.exited(Duration::from_secs(5)).await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[tokio::test]
async fn a_reset_button_press_is_detected_and_the_next_call_redeploys() {
    let (dev, repl) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    let c = cache("reset");
    let mut s = DeviceSession::open(repl, c.clone()).await.unwrap();
    let code = || "def inc(x):\n    return x + 1\n".to_string();
    let v: i64 = s.call("inc", "inc(x)", code, &(1,)).await.unwrap();
    assert_eq!(v, 2);
    assert_eq!(c.stats().deploys, 1);

    // The board resets on its own and waits in the friendly REPL.
    dev.press_reset().await.unwrap();
    // A board takes a moment to boot and print its banner.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v: i64 = s
        .call("inc", "inc(x)", || unreachable!("generated again"), &(2,))
        .await
        .unwrap();
    assert_eq!(v, 3);
    assert_eq!(s.repl().resets(), 1, "the reset was seen");
    assert_eq!(c.stats().deploys, 2, "redeployed from the cache");
    assert_eq!(s.generations(), 1);
}

#[tokio::test]
async fn tcp_carries_the_repl_and_a_lost_connection_is_an_error_then_a_reconnect() {
    let opts = options(PasteSupport::Emulated);
    let (dev, addr) = Emulator::listen(opts).await.unwrap();
    let repl = TcpRepl::connect_tcp(addr, Duration::from_secs(5))
        .await
        .unwrap();
    let c = cache("tcp");
    let mut s = DeviceSession::open(repl, c.clone()).await.unwrap();
    let code = || "def neg(x):\n    return -x\n".to_string();
    let v: i64 = s.call("neg", "neg(x)", code, &(5,)).await.unwrap();
    assert_eq!(v, -5);

    // Unplugged: an error, quickly.
    dev.kill().await;
    let t = Instant::now();
    let e = s
        .call::<_, i64>("neg", "neg(x)", code, &(6,))
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{e}");

    // Plugged in again (a fresh device, now with firmware 1.29): the session
    // continues on the new connection, and redeploys without generating.
    let (_dev2, addr) = Emulator::listen(EmulatorOptions {
        firmware: Firmware::V1_29,
        ..opts
    })
    .await
    .unwrap();
    let repl = TcpRepl::connect_tcp(addr, Duration::from_secs(5))
        .await
        .unwrap();
    let before = s.capabilities().firmware.clone();
    s.reconnect(repl).await.unwrap();
    assert_ne!(
        s.capabilities().firmware,
        before,
        "the firmware is read again"
    );
    let v: i64 = s.call("neg", "neg(x)", code, &(7,)).await.unwrap();
    assert_eq!(v, -7);
    assert_eq!(c.stats().deploys, 2);
}

#[tokio::test]
async fn a_closed_tcp_port_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = match TcpRepl::connect_tcp(addr, Duration::from_secs(2)).await {
        Err(e) => e,
        Ok(_) => panic!("connected to a closed port"),
    };
    assert!(matches!(e, ReplError::Io(_)), "{e:?}");
}

#[tokio::test]
async fn a_serial_port_carries_the_repl() {
    use tokio_serial::{SerialPort, SerialStream};
    // A pseudo-terminal pair: the device on one end, bridged to the
    // emulator's pipes; the host opens the other end by its path.
    let (master, slave) = SerialStream::pair().expect("a pseudo-terminal pair");
    let path = slave.name().expect("the pty has a path");
    drop(slave);
    let (dev, device_side) = Emulator::start(Firmware::V1_27, 0).await.unwrap();
    let (mut dev_out, mut dev_in) = device_side.into_inner();
    let (mut m_read, mut m_write) = tokio::io::split(master);
    tokio::spawn(async move { tokio::io::copy(&mut dev_out, &mut m_write).await });
    tokio::spawn(async move { tokio::io::copy(&mut m_read, &mut dev_in).await });

    let mut repl = SerialRepl::open_serial(&path, 115_200, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(repl.exec("print(6 * 7)").await.unwrap(), "42\n");
    let expected = (0..150).sum::<i32>();
    assert_eq!(
        repl.exec(&long_program()).await.unwrap(),
        format!("{expected}\n")
    );
    assert_eq!(repl.raw_paste_window(), Some(128), "raw-paste over the pty");
    let mut s = DeviceSession::open(repl, cache("serial")).await.unwrap();
    let v: String = s
        .call(
            "hello",
            "hello(n)",
            || "def hello(n):\n    return 'hi ' + n\n".into(),
            &("pty",),
        )
        .await
        .unwrap();
    assert_eq!(v, "hi pty");
    drop(dev);
}

#[tokio::test]
async fn a_missing_serial_port_is_a_clear_error() {
    let e = match SerialRepl::open_serial("/dev/does-not-exist", 115_200, Duration::from_secs(1))
        .await
    {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a missing port"),
    };
    assert!(e.contains("/dev/does-not-exist"), "{e}");
}
