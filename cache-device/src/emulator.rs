//! The test device: the real MicroPython VM (the WebAssembly build from npm)
//! behind `cache-device/emulator/launcher.mjs`, on a child process's stdio
//! or a loopback TCP port. The launcher runs the VM in a worker thread and
//! speaks to its line as a board does: raw-paste with a board's window,
//! Ctrl-C as `KeyboardInterrupt` (a restart with the boot banner when code
//! cannot be reached for 2 s), `MPY: soft reboot`, a reset button; it exits
//! when its input ends. Its header comment has the details.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::repl::{RawPaste, RawRepl, ReplError};

/// A session with the emulated device, over its process's pipes.
pub type EmulatorSession = crate::session::DeviceSession<ChildStdout, ChildStdin>;

/// The firmware versions the emulator carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// MicroPython 1.27.0.
    V1_27,
    /// MicroPython 1.29.0-6.
    V1_29,
}

impl Firmware {
    fn arg(self) -> &'static str {
        match self {
            Firmware::V1_27 => "1.27",
            Firmware::V1_29 => "1.29",
        }
    }
}

/// What a raw-paste request meets on the emulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasteSupport {
    /// The launcher speaks raw-paste as a board does (`R\x01`, a 128-byte
    /// window, `\x01` for each window taken) and runs the code on the VM.
    #[default]
    Emulated,
    /// `R\x00`: firmware that knows raw-paste but has it off.
    Refused,
    /// Firmware from before raw-paste, which re-prints the raw REPL banner.
    Unknown,
    /// The VM's own raw-paste, only to show what it does: its stdin has no
    /// source, so it answers `R\x01` and a window, ends the paste at once and
    /// gets stuck. The launcher stops it; the device then answers nothing
    /// until a Ctrl-C goes unanswered for 2 s and restarts it (the boot
    /// banner, as after a hard reset). The REPL has raw-paste off on it.
    Native,
}

impl PasteSupport {
    fn arg(self) -> &'static str {
        match self {
            PasteSupport::Native => "native",
            PasteSupport::Emulated => "emulate",
            PasteSupport::Refused => "refuse",
            PasteSupport::Unknown => "old",
        }
    }
}

/// How to start the emulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatorOptions {
    /// The firmware.
    pub firmware: Firmware,
    /// The line rate in baud; 0 is unthrottled.
    pub baud: u32,
    /// What a raw-paste request meets.
    pub raw_paste: PasteSupport,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            firmware: Firmware::V1_27,
            baud: 115_200,
            raw_paste: PasteSupport::Emulated,
        }
    }
}

/// A running emulated device. Dropping it ends the process.
pub struct Emulator {
    child: Child,
}

/// The emulator's directory in this repository.
pub fn emulator_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("emulator")
}

impl Emulator {
    /// Starts a device with `firmware` at `baud` (0: unthrottled), speaking
    /// raw-paste as a board does, and enters its raw REPL.
    pub async fn start(
        firmware: Firmware,
        baud: u32,
    ) -> Result<(Emulator, RawRepl<ChildStdout, ChildStdin>), ReplError> {
        Emulator::start_with(EmulatorOptions {
            firmware,
            baud,
            raw_paste: PasteSupport::Emulated,
        })
        .await
    }

    /// Starts a device on this process's pipes and enters its raw REPL;
    /// raw-paste is negotiated unless the VM's own (stuck) one is there.
    pub async fn start_with(
        options: EmulatorOptions,
    ) -> Result<(Emulator, RawRepl<ChildStdout, ChildStdin>), ReplError> {
        let mut child = spawn(options, false)?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut repl = RawRepl::new(stdout, stdin, Duration::from_secs(10));
        if options.raw_paste == PasteSupport::Native {
            repl.set_raw_paste(RawPaste::Off);
        }
        repl.enter().await?;
        Ok((Emulator { child }, repl))
    }

    /// Starts a device that serves its REPL on a loopback TCP port, as a
    /// board behind a serial-to-network bridge would; returns its address.
    pub async fn listen(options: EmulatorOptions) -> Result<(Emulator, SocketAddr), ReplError> {
        let mut child = spawn(options, true)?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| ReplError::Timeout {
                waiting_for: "the emulator's port".into(),
                after: Duration::from_secs(10),
                got: String::new(),
            })??;
        let port: u16 = line
            .as_deref()
            .and_then(|l| l.strip_prefix("listening "))
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| ReplError::Protocol {
                waiting_for: "\"listening PORT\" from the emulator".into(),
                got: line.clone().unwrap_or_default(),
            })?;
        Ok((Emulator { child }, SocketAddr::from(([127, 0, 0, 1], port))))
    }

    /// Presses the reset button: the device restarts (everything defined is
    /// gone), prints its boot banner unprompted and waits in the friendly
    /// REPL.
    pub async fn press_reset(&self) -> Result<(), ReplError> {
        let pid = self.child.id().ok_or_else(|| ReplError::Closed {
            waiting_for: "the device to reset".into(),
        })?;
        // The shell's own `kill`: no procps needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -USR1 {pid}")])
            .status()
            .await?;
        if !status.success() {
            return Err(ReplError::Io(std::io::Error::other(format!(
                "`kill -USR1 {pid}` failed: {status}"
            ))));
        }
        Ok(())
    }

    /// Ends the device, as unplugging a board would.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// The launcher's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Closes the launcher's input, if this handle still holds it (a
    /// [`listen`](Emulator::listen)ing device; a piped one's input is the
    /// REPL's writer, closed by dropping the REPL), and waits up to `within`
    /// for the launcher to exit: its status, or `None` if it still runs.
    pub async fn exited(
        &mut self,
        within: Duration,
    ) -> Result<Option<std::process::ExitStatus>, std::io::Error> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.map(Some),
            Err(_) => Ok(None),
        }
    }
}

fn spawn(options: EmulatorOptions, listen: bool) -> Result<Child, ReplError> {
    let dir = emulator_dir();
    if !dir.join("node_modules").join("mp127").exists() {
        return Err(ReplError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "the emulator's npm packages are missing: run `npm ci` in {} (scripts/test does)",
                dir.display()
            ),
        )));
    }
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("launcher.mjs"))
        .args([
            "--firmware",
            options.firmware.arg(),
            "--baud",
            &options.baud.to_string(),
            "--raw-paste",
            options.raw_paste.arg(),
        ])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if listen {
        cmd.arg("--listen");
    }
    cmd.spawn().map_err(|e| {
        ReplError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot start node ({e}): install Node.js, e.g. `apt-get install nodejs npm`"),
        ))
    })
}
