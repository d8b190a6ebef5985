//! The device emulator's launcher driven byte by byte, as a board's serial
//! line is: for what the tests check below the REPL transport (banners,
//! interrupts, restarts, exits), and the CPU a process uses.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The raw REPL's banner, with its prompt.
pub const RAW_BANNER: &str = "raw REPL; CTRL-B to exit\r\n>";

/// The launcher script in this repository.
pub fn script() -> PathBuf {
    cache_device::emulator::emulator_dir().join("launcher.mjs")
}

/// A launcher process on pipes.
pub struct Launcher {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Launcher {
    /// Starts `node launcher.mjs` with `args`, unthrottled unless `args`
    /// say otherwise.
    pub fn start(args: &[&str]) -> Launcher {
        let dir = cache_device::emulator::emulator_dir();
        assert!(
            dir.join("node_modules").join("mp127").exists(),
            "the emulator's npm packages are missing: run `npm ci` in {} (scripts/test does)",
            dir.display()
        );
        let mut cmd = Command::new("node");
        cmd.arg(script());
        if !args.contains(&"--baud") {
            cmd.args(["--baud", "0"]);
        }
        let mut child = cmd
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs the launcher (install Node.js: `apt-get install nodejs npm`)");
        let mut stdout = child.stdout.take().expect("piped");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Launcher {
            child,
            stdin,
            rx,
            seen: Vec::new(),
        }
    }

    /// Starts a launcher with `args` and enters the device's raw REPL.
    pub fn raw(args: &[&str]) -> Launcher {
        let mut l = Launcher::start(args);
        l.expect(">>> ", Duration::from_secs(10));
        l.send(b"\r\x01");
        l.expect(RAW_BANNER, Duration::from_secs(5));
        l
    }

    /// The launcher's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `bytes` to the device.
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("input still open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Reads until `needle` arrives within `within`: everything up to and
    /// including it (the rest stays for the next read), or, on a timeout,
    /// an error with what did arrive.
    pub fn read_until(&mut self, needle: &[u8], within: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.seen.windows(needle.len()).position(|w| w == needle) {
                let rest = self.seen.split_off(i + needle.len());
                return Ok(std::mem::replace(&mut self.seen, rest));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.seen.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "waited {within:?} for {:?}; got {:?}",
                        String::from_utf8_lossy(needle),
                        String::from_utf8_lossy(&self.seen)
                    ));
                }
            }
        }
    }

    /// Like [`read_until`](Launcher::read_until), as text, panicking on a
    /// timeout.
    pub fn expect(&mut self, needle: &str, within: Duration) -> String {
        let got = self.read_until(needle.as_bytes(), within);
        String::from_utf8_lossy(&got.unwrap_or_else(|e| panic!("{e}"))).into_owned()
    }

    /// Everything that arrives over `d`.
    pub fn collect_for(&mut self, d: Duration) -> String {
        let deadline = Instant::now() + d;
        while let Ok(chunk) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&std::mem::take(&mut self.seen)).into_owned()
    }

    /// Closes the device's input and waits up to `within` for the launcher
    /// to exit: its status, or `None` if it still runs.
    pub fn close_and_wait(&mut self, within: Duration) -> Option<ExitStatus> {
        drop(self.stdin.take());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Runs `code` in the raw REPL: sends it and Ctrl-D, and returns what
    /// the device answers up to its next prompt (`OK…\x04…\x04>`).
    pub fn run(&mut self, code: &str) -> String {
        self.send(format!("{code}\x04").as_bytes());
        self.expect("\x04>", Duration::from_secs(5))
    }

    /// Closes the device's input and asserts that the launcher exits with
    /// status 0 within `within`; `what` names the case in the failure.
    pub fn exits_cleanly(&mut self, within: Duration, what: &str) {
        let status = self.close_and_wait(within);
        assert!(status.is_some_and(|s| s.success()), "{what}: {status:?}");
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The share of one core that process `pid` (all its threads) used over
/// `over`, from its CPU times in `/proc`.
pub fn cpu_share(pid: u32, over: Duration) -> f64 {
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
        // The fields after the command name (which may hold spaces): utime
        // and stime are the 12th and 13th.
        let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let (t0, a) = (Instant::now(), ticks());
    std::thread::sleep(over);
    let b = ticks();
    // Linux reports CPU times in clock ticks of 1/100 s (USER_HZ).
    (b - a) as f64 / 100.0 / t0.elapsed().as_secs_f64()
}
