//! mpremote 1.29 (from PyPI), the MicroPython project's own client of
//! boards, against the emulated device over TCP (`socket://`) and over a
//! pseudo-terminal, in each raw-paste mode a board may have; and the
//! project's own transport on the same device after mpremote used it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cache_device::{
    DeployCache, DeviceError, DeviceHandle, DeviceSession, Emulator, EmulatorOptions, Firmware,
    PasteSupport, TcpRepl, deploy_cached,
};
use cache_tests::launcher::cpu_share;
use cache_tests::mpremote::{PtyLine, Run, mpremote, python};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The modes a board's firmware may have, each of which mpremote handles.
const MODES: [PasteSupport; 3] = [
    PasteSupport::Emulated,
    PasteSupport::Refused,
    PasteSupport::Unknown,
];
/// The bound on each mpremote run.
const WAIT: Duration = Duration::from_secs(20);

fn options(firmware: Firmware, raw_paste: PasteSupport) -> EmulatorOptions {
    EmulatorOptions {
        firmware,
        baud: 115_200,
        raw_paste,
    }
}

/// A device as mpremote reaches it: its address, and what keeps it up.
struct Reached {
    url: String,
    _device: Emulator,
    _pty: Option<PtyLine>,
}

async fn over_tcp(options: EmulatorOptions) -> Reached {
    let (device, addr) = Emulator::listen(options).await.unwrap();
    Reached {
        url: format!("socket://{addr}"),
        _device: device,
        _pty: None,
    }
}

async fn over_pty(options: EmulatorOptions) -> Reached {
    let (device, repl) = Emulator::start_with(options).await.unwrap();
    let (out, input) = repl.into_inner();
    let pty = PtyLine::new(out, input);
    Reached {
        url: pty.path().to_string(),
        _device: device,
        _pty: Some(pty),
    }
}

fn client(script: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(script)
        .display()
        .to_string()
}

/// A 4 KB script and what it prints.
fn script_4k() -> (PathBuf, String) {
    let mut code = String::new();
    let mut i = 0u64;
    while code.len() < 4096 {
        code.push_str(&format!("v{i} = {i} * {i}  # a line of the script\n"));
        i += 1;
    }
    let names: Vec<String> = (0..i).map(|k| format!("v{k}")).collect();
    code.push_str(&format!("print(sum([{}]))\n", names.join(", ")));
    let path = std::env::temp_dir().join(format!("mpremote-4k-{}.py", std::process::id()));
    std::fs::write(&path, &code).unwrap();
    (path, format!("{}\n", (0..i).map(|k| k * k).sum::<u64>()))
}

fn failed_with(r: &Run, lines: &[&str], what: &str) {
    assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{what}: {r:?}");
    let text = r.text();
    for line in lines {
        assert!(text.contains(line), "{what}: no {line:?} in {text:?}");
    }
}

/// Every command a board's user runs, with its expected output, in bounded
/// time; then an interrupt of a long sleep through mpremote's transport.
async fn commands(reached: &Reached, what: &str) {
    let url = reached.url.as_str();
    let r = mpremote(
        url,
        &[
            "exec",
            "print(6 * 7)",
            "+",
            "eval",
            "1 + 2",
            "+",
            "exec",
            "x = 5",
        ],
        WAIT,
    )
    .await;
    assert!(r.ok(), "{what}: {r:?}");
    assert_eq!(r.stdout, "42\n3\n", "{what}");

    // `resume` keeps what the device holds; `soft-reset` clears it.
    let r = mpremote(url, &["resume", "exec", "print(x)"], WAIT).await;
    assert!(r.ok(), "{what}: {r:?}");
    assert_eq!(r.stdout, "5\n", "{what}");
    let r = mpremote(
        url,
        &["soft-reset", "+", "resume", "exec", "print(x)"],
        WAIT,
    )
    .await;
    failed_with(
        &r,
        &[
            "Traceback (most recent call last):",
            "NameError: name 'x' isn't defined",
        ],
        what,
    );

    // Files, which stay over the soft reset each mpremote run begins with.
    let r = mpremote(url, &["exec", "open('kept.txt', 'w').write('hi')"], WAIT).await;
    assert!(r.ok(), "{what}: {r:?}");
    let r = mpremote(url, &["fs", "ls", "+", "fs", "cat", "kept.txt"], WAIT).await;
    assert!(r.ok(), "{what}: {r:?}");
    assert!(r.stdout.contains(" kept.txt\n"), "{what}: {r:?}");
    assert!(r.stdout.ends_with("hi"), "{what}: {r:?}");

    // A new file copied in (mpremote tells it is new by OSError 2), then
    // imported; a missing file is mpremote's clear error.
    let local = std::env::temp_dir().join(format!("mpremote-mod-{}.py", std::process::id()));
    std::fs::write(&local, "print('imported')\n").unwrap();
    let r = mpremote(
        url,
        &[
            "fs",
            "cp",
            &local.display().to_string(),
            ":copied.py",
            "+",
            "exec",
            "import copied",
        ],
        WAIT,
    )
    .await;
    assert!(r.ok(), "{what}: {r:?}");
    assert!(r.stdout.ends_with("imported\n"), "{what}: {r:?}");
    let r = mpremote(url, &["fs", "cat", ":missing.txt"], WAIT).await;
    assert!(
        !r.ok() && r.text().contains("No such file"),
        "{what}: {r:?}"
    );

    let (script, expected) = script_4k();
    let r = mpremote(url, &["run", &script.display().to_string()], WAIT).await;
    assert!(r.ok(), "{what}: {r:?}");
    assert_eq!(r.stdout, expected, "{what}: a 4 KB script");

    let r = mpremote(
        url,
        &["exec", "def f():\n    raise ValueError('boom')\nf()"],
        WAIT,
    )
    .await;
    failed_with(
        &r,
        &[
            "Traceback (most recent call last):",
            "line 2, in f",
            "ValueError: boom",
        ],
        what,
    );

    let r = python(&[&client("mpremote_interrupt.py"), url], WAIT).await;
    assert!(r.ok(), "{what}: {r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON line");
    assert!(
        v["err"].as_str().unwrap().contains("KeyboardInterrupt"),
        "{what}: {v}"
    );
    let took = v["took"].as_f64().unwrap();
    assert!(took < 2.0, "{what}: the interrupt took {took:.2} s");
}

#[tokio::test(flavor = "multi_thread")]
async fn mpremote_works_over_tcp_in_every_paste_mode() {
    for mode in MODES {
        let reached = over_tcp(options(Firmware::V1_27, mode)).await;
        commands(&reached, &format!("tcp, 1.27, {mode:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mpremote_works_over_a_pty_in_every_paste_mode() {
    for mode in MODES {
        let reached = over_pty(options(Firmware::V1_29, mode)).await;
        commands(&reached, &format!("pty, 1.29, {mode:?}")).await;
    }
}

/// `mpremote repl` on a terminal passes a typed Ctrl-C to the device, which
/// interrupts a sleep as a board does.
#[tokio::test(flavor = "multi_thread")]
async fn a_ctrl_c_typed_into_mpremote_repl_interrupts_a_sleep() {
    for firmware in [Firmware::V1_27, Firmware::V1_29] {
        let reached = over_pty(options(firmware, PasteSupport::Emulated)).await;
        let r = python(&[&client("mpremote_repl.py"), &reached.url], WAIT).await;
        assert!(r.ok(), "{firmware:?}: {r:?}");
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON line");
        let took = v["took"].as_f64().unwrap();
        assert!(took < 2.0, "{firmware:?}: {took:.2} s; {v}");
    }
}

/// With the VM's own raw-paste, mpremote waits for output that never comes;
/// when it gives up, the launcher has not been spinning, and it exits when
/// its input ends.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_vms_own_raw_paste_the_launcher_ends_cleanly_when_mpremote_gives_up() {
    let (mut device, addr) = Emulator::listen(options(Firmware::V1_27, PasteSupport::Native))
        .await
        .unwrap();
    let url = format!("socket://{addr}");
    let r = mpremote(&url, &["exec", "print(1)"], Duration::from_secs(4)).await;
    assert!(
        r.status.is_none(),
        "mpremote waited until it was stopped: {r:?}"
    );
    let pid = device.pid().unwrap();
    let busy = tokio::task::spawn_blocking(move || cpu_share(pid, Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(busy < 0.3, "the launcher used {busy:.2} of a core");
    let status = device.exited(Duration::from_secs(5)).await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// A board the project reaches over TCP.
struct TcpBoard(DeviceSession<OwnedReadHalf, OwnedWriteHalf>);

impl DeviceHandle for TcpBoard {
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;
    fn session(&mut self) -> &mut DeviceSession<OwnedReadHalf, OwnedWriteHalf> {
        &mut self.0
    }
}

impl TcpBoard {
    #[deploy_cached]
    async fn triple(&mut self, x: i64) -> Result<i64, DeviceError> {
        "def triple(x):\n    return 3 * x\n"
    }
}

/// After mpremote used the device, `#[deploy_cached]` methods find their
/// code where mpremote left it (`resume`), and redeploy it, from the
/// deployment cache, where mpremote's soft reset cleared it.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_cached_methods_survive_mpremote_or_redeploy_after_its_soft_reset() {
    let (_device, addr) = Emulator::listen(options(Firmware::V1_27, PasteSupport::Emulated))
        .await
        .unwrap();
    let url = format!("socket://{addr}");
    let dir = std::env::temp_dir().join(format!("mpremote-deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = Arc::new(DeployCache::open_dir(&dir).unwrap());
    let connect = || TcpRepl::connect_tcp(addr, Duration::from_secs(10));
    let mut b = TcpBoard(
        DeviceSession::open(connect().await.unwrap(), cache.clone())
            .await
            .unwrap(),
    );
    assert_eq!(b.triple(2).await.unwrap(), 6);
    assert_eq!(cache.stats().deploys, 1);

    // mpremote resumes: no soft reset, and it sees the deployed function.
    let r = mpremote(&url, &["resume", "exec", "print(triple(5))"], WAIT).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.stdout, "15\n");
    b.0.reconnect(connect().await.unwrap()).await.unwrap();
    assert_eq!(b.triple(3).await.unwrap(), 9);
    assert_eq!(cache.stats().deploys, 1, "found on the device");

    // mpremote's usual commands soft-reset the device first.
    let r = mpremote(&url, &["exec", "print('hello')"], WAIT).await;
    assert!(r.ok(), "{r:?}");
    b.0.reconnect(connect().await.unwrap()).await.unwrap();
    assert_eq!(b.triple(4).await.unwrap(), 12);
    assert_eq!(cache.stats().deploys, 2, "redeployed");
    assert_eq!(b.0.generations(), 1, "from the cache: generated once");
    let _ = std::fs::remove_dir_all(&dir);
}
