//! What the launcher says on its line, byte for byte, as a board would:
//! banners, interrupts, restarts, and its own end.

use std::time::{Duration, Instant};

use cache_tests::launcher::{Launcher, RAW_BANNER, cpu_share};

const FIRMWARES: [&str; 2] = ["1.27", "1.29"];
const SECOND: Duration = Duration::from_secs(1);

/// A device of `firmware` in its raw REPL.
fn raw(firmware: &str, paste: &str) -> Launcher {
    Launcher::raw(&["--firmware", firmware, "--raw-paste", paste])
}

/// A soft reset prints what boards print since MicroPython 1.20: clients
/// such as mpremote wait for "soft reboot".
#[test]
fn a_soft_reset_prints_what_a_board_prints() {
    for firmware in FIRMWARES {
        let mut l = raw(firmware, "emulate");
        l.run("x = 1");
        l.send(b"\x04");
        let said = l.expect(RAW_BANNER, 5 * SECOND);
        assert_eq!(
            said,
            format!("OK\r\nMPY: soft reboot\r\n{RAW_BANNER}"),
            "{firmware}"
        );
        assert!(
            l.run("print(x)").contains("NameError"),
            "{firmware}: x is gone"
        );
    }
}

/// Ctrl-C while code sleeps: a KeyboardInterrupt at once, in the raw REPL
/// and the friendly one, and the clock reads true afterwards.
#[test]
fn ctrl_c_interrupts_a_sleep_with_keyboard_interrupt() {
    for firmware in FIRMWARES {
        let mut l = raw(firmware, "emulate");
        l.send(b"import time\nt = time.ticks_ms()\ntime.sleep(10)\x04");
        l.expect("OK", 5 * SECOND);
        std::thread::sleep(SECOND);
        let t = Instant::now();
        l.send(b"\x03");
        let said = l.expect("\x04>", 2 * SECOND);
        assert!(t.elapsed() < 2 * SECOND, "{firmware}: {:?}", t.elapsed());
        assert_eq!(said, "\x04KeyboardInterrupt: \r\n\x04>", "{firmware}");
        let said = l.run("print(time.ticks_diff(time.ticks_ms(), t))");
        let ms: i64 = said
            .trim_start_matches("OK")
            .split('\n')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{said:?}"));
        assert!((900..3000).contains(&ms), "{firmware}: {ms} ms passed");

        // Each kind of sleep (they count milliseconds or microseconds).
        for sleep in ["time.sleep_ms(10_000)", "time.sleep_us(10_000_000)"] {
            l.send(format!("{sleep}\x04").as_bytes());
            l.expect("OK", 5 * SECOND);
            std::thread::sleep(SECOND / 2);
            let t = Instant::now();
            l.send(b"\x03");
            l.expect("KeyboardInterrupt", 2 * SECOND);
            assert!(
                t.elapsed() < SECOND,
                "{firmware}, {sleep}: {:?}",
                t.elapsed()
            );
            l.expect("\x04>", SECOND);
        }

        // The friendly REPL, as a user types.
        l.send(b"\x02");
        l.expect(">>> ", 5 * SECOND);
        l.send(b"time.sleep(10)\r");
        l.expect("time.sleep(10)\r\n", 5 * SECOND);
        std::thread::sleep(SECOND / 2);
        let t = Instant::now();
        l.send(b"\x03");
        l.expect("KeyboardInterrupt", 2 * SECOND);
        l.expect(">>> ", 2 * SECOND);
        assert!(t.elapsed() < 2 * SECOND, "{firmware}: {:?}", t.elapsed());
    }
}

/// A Ctrl-C with nothing running is input: the raw REPL clears its line,
/// and nothing restarts.
#[test]
fn ctrl_c_with_nothing_running_clears_the_line_and_restarts_nothing() {
    let mut l = raw("1.27", "emulate");
    l.run("x = 7");
    assert_eq!(l.run("print(1\x03print(x)"), "OK7\n\x04\x04>");
    assert_eq!(l.collect_for(3 * SECOND), "", "no restart, no banner");
    assert_eq!(l.run("print(x)"), "OK7\n\x04\x04>");
}

/// A busy loop never reads the clock, so the VM cannot be reached: a Ctrl-C
/// unanswered for 2 s restarts the device as a hard reset would (the boot
/// banner), and what was sent after the Ctrl-C still arrives.
#[test]
fn a_busy_loop_ends_in_a_restart_2_s_after_a_ctrl_c() {
    for firmware in FIRMWARES {
        let mut l = raw(firmware, "emulate");
        l.run("x = 1");
        l.send(b"while True:\n    pass\n\x04");
        l.expect("OK", 5 * SECOND);
        std::thread::sleep(SECOND / 2);
        let t = Instant::now();
        // What mpremote sends to take over a board: interrupt, raw REPL.
        l.send(b"\r\x03\r\x01");
        let said = l.expect(RAW_BANNER, 6 * SECOND);
        let took = t.elapsed();
        assert!(
            took >= 2 * SECOND && took < 4 * SECOND,
            "{firmware}: {took:?}"
        );
        assert!(
            said.starts_with(&format!("\r\nMicroPython v{firmware}")),
            "{firmware}: the boot banner: {said:?}"
        );
        assert!(l.run("print(x)").contains("NameError"), "{firmware}");
        assert_eq!(l.run("print(3)"), "OK3\n\x04\x04>");
    }
}

/// The launcher ends when its input does, whatever the device is doing,
/// and an idle device costs no CPU.
#[test]
fn the_launcher_exits_when_its_input_ends_and_idles_without_spinning() {
    let mut l = raw("1.27", "emulate");
    let idle = cpu_share(l.pid(), SECOND);
    assert!(idle < 0.1, "an idle device used {idle:.2} of a core");
    l.send(b"while True:\n    pass\n\x04");
    l.expect("OK", 5 * SECOND);
    l.exits_cleanly(3 * SECOND, "in a busy loop");

    let mut l = raw("1.27", "emulate");
    l.send(b"import time\ntime.sleep(30)\x04");
    l.expect("OK", 5 * SECOND);
    l.exits_cleanly(3 * SECOND, "in a sleep");
}

/// The VM's own raw-paste (`native`) gets stuck where no input reaches it:
/// the launcher stops it rather than spin, a Ctrl-C restarts the device,
/// and the launcher still exits when its input ends.
#[test]
fn the_vms_own_raw_paste_does_not_spin_and_does_not_hold_the_launcher() {
    for firmware in FIRMWARES {
        let mut l = raw(firmware, "native");
        l.send(b"\x05A\x01");
        assert_eq!(
            l.read_until(b"\x04", 5 * SECOND).unwrap(),
            b"R\x01\x80\x00\x01\x04",
            "{firmware}"
        );
        std::thread::sleep(SECOND / 2);
        let busy = cpu_share(l.pid(), SECOND);
        assert!(busy < 0.3, "{firmware}: stuck, it used {busy:.2} of a core");
        l.send(b"\r\x03\r\x01");
        l.expect(RAW_BANNER, 6 * SECOND);
        assert_eq!(l.run("print(5)"), "OK5\n\x04\x04>");

        // Stuck again, and the input ends.
        l.send(b"\x05A\x01");
        l.expect("\x04", 5 * SECOND);
        l.exits_cleanly(3 * SECOND, firmware);
    }
}

/// An emulated raw paste answers as a board: R\x01, a 128-byte window and a
/// first \x01, one \x01 for each window taken, \x04 at the end; a Ctrl-C
/// ends it with a KeyboardInterrupt.
#[test]
fn an_emulated_raw_paste_speaks_as_a_board() {
    let mut l = raw("1.29", "emulate");
    l.send(b"\x05A\x01");
    assert_eq!(l.expect("\x01", 5 * SECOND), "R\x01");
    assert_eq!(l.read_until(b"\x01", 5 * SECOND).unwrap(), b"\x80\x00\x01");
    let code = format!("s = {}1\nprint(s)\n", "1 + ".repeat(70));
    assert!(code.len() > 256 && code.len() < 384, "{}", code.len());
    l.send(code.as_bytes());
    // Two windows taken: two \x01.
    assert_eq!(l.expect("\x01", 5 * SECOND), "\x01");
    assert_eq!(l.expect("\x01", 5 * SECOND), "\x01");
    // End of data: acknowledged, then the output as the raw REPL gives it.
    l.send(b"\x04");
    assert_eq!(l.expect("\x04>", 5 * SECOND), "\x0471\n\x04\x04>");

    l.send(b"\x05A\x01");
    l.read_until(b"\x80\x00\x01", 5 * SECOND).unwrap();
    l.send(b"print(1)\n\x03");
    assert_eq!(
        l.expect("\x04>", 5 * SECOND),
        "\x04\x04KeyboardInterrupt: \r\n\x04>"
    );
}

/// Code that ends the device's thread (the VM can reach its host through
/// the `js` module) restarts the device at once, as a board whose firmware
/// crashed: the boot banner.
#[test]
fn a_device_whose_code_ends_its_thread_boots_again() {
    let mut l = raw("1.27", "emulate");
    l.send(b"import js\njs.process.exit(3)\x04");
    let said = l.expect(">>> ", 5 * SECOND);
    assert!(said.contains("MicroPython v1.27"), "{said:?}");
    l.send(b"\r\x01");
    l.expect(RAW_BANNER, 5 * SECOND);
    assert_eq!(l.run("print(4)"), "OK4\n\x04\x04>");
}

/// Bytes beyond ASCII arrive whole, in the raw REPL and in a raw paste.
#[test]
fn utf8_code_and_output_arrive_whole() {
    let mut l = raw("1.29", "emulate");
    assert_eq!(
        l.run("print('héllo €', len('héllo €'))"),
        "OKhéllo € 7\n\x04\x04>"
    );
    l.send(b"\x05A\x01");
    l.read_until(b"\x80\x00\x01", 5 * SECOND).unwrap();
    assert_eq!(
        l.run("s = 'ünïcødé ✓'\nprint(s, len(s))\n"),
        "\x04ünïcødé ✓ 9\n\x04\x04>"
    );
}
