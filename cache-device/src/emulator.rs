//! The test device: the real MicroPython VM (the WebAssembly build from npm)
//! behind `cache-device/emulator/launcher.mjs`, on a child process's stdio.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::repl::{RawRepl, ReplError};

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

/// A running emulated device. Dropping it ends the process.
pub struct Emulator {
    child: Child,
}

/// The emulator's directory in this repository.
pub fn emulator_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("emulator")
}

impl Emulator {
    /// Starts a device with `firmware` at `baud` (0: unthrottled) and enters
    /// its raw REPL.
    pub async fn start(
        firmware: Firmware,
        baud: u32,
    ) -> Result<(Emulator, RawRepl<ChildStdout, ChildStdin>), ReplError> {
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
        let mut child = Command::new("node")
            .arg(dir.join("launcher.mjs"))
            .args(["--firmware", firmware.arg(), "--baud", &baud.to_string()])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ReplError::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot start node ({e}): install Node.js, e.g. `apt-get install nodejs npm`"),
                ))
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut repl = RawRepl::new(stdout, stdin, Duration::from_secs(10));
        repl.enter().await?;
        Ok((Emulator { child }, repl))
    }

    /// Ends the device, as unplugging a board would.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
