//! mpremote, the MicroPython project's own client of boards, as a second
//! client of the emulated device: from PyPI, pinned with hashes in
//! `cache-device/emulator/requirements.txt`, installed by `scripts/test`
//! into `cache-device/emulator/.venv`. Also a pseudo-terminal carrying the
//! device, as a USB serial port would.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cache_device::emulator::emulator_dir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::process::Command;

/// The virtual environment mpremote is installed in.
pub fn venv() -> PathBuf {
    emulator_dir().join(".venv")
}

/// A program of the virtual environment; a clear failure when it is missing.
fn program(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, or `python3 -m venv {venv} && {venv}/bin/pip install --require-hashes -r {req}`",
        path.display(),
        venv = venv().display(),
        req = emulator_dir().join("requirements.txt").display(),
    );
    path
}

/// What one run of a client did.
#[derive(Debug)]
pub struct Run {
    /// Its exit status; `None` when it was still running at its deadline
    /// and was killed (a client giving up).
    pub status: Option<ExitStatus>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl Run {
    /// Whether it exited with success.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// stdout, then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `mpremote connect DEVICE ARGS…` (mpremote chains commands joined by
/// `+`), killing it at `within`.
pub async fn mpremote(device: &str, args: &[&str], within: Duration) -> Run {
    let mut all = vec!["connect", device];
    all.extend_from_slice(args);
    run(program("mpremote"), &all, within).await
}

/// Runs the virtual environment's Python (mpremote's modules importable) on
/// `args`, killing it at `within`.
pub async fn python(args: &[&str], within: Duration) -> Run {
    run(program("python"), args, within).await
}

async fn run(program: PathBuf, args: &[&str], within: Duration) -> Run {
    let started = Instant::now();
    let mut child = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let out = tokio::spawn(read_all(child.stdout.take().expect("piped")));
    let err = tokio::spawn(read_all(child.stderr.take().expect("piped")));
    let status = match tokio::time::timeout(within, child.wait()).await {
        Ok(status) => Some(status.unwrap()),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    Run {
        status,
        stdout: out.await.unwrap(),
        stderr: err.await.unwrap(),
        took: started.elapsed(),
    }
}

async fn read_all(mut r: impl AsyncRead + Unpin) -> String {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// A device on a pseudo-terminal: what arrives on the terminal goes to the
/// device and back, for as long as this lives. A client opens [`path`]
/// (PtyLine::path) as a serial port, and may close and reopen it: this
/// holds a descriptor of the client's side too, so a client closing it does
/// not end the line.
pub struct PtyLine {
    path: String,
    _keep: std::fs::File,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl PtyLine {
    /// Bridges the device's byte streams (its output, its input) to a new
    /// pseudo-terminal.
    pub fn new(
        mut device_out: impl AsyncRead + Unpin + Send + 'static,
        mut device_in: impl AsyncWrite + Unpin + Send + 'static,
    ) -> PtyLine {
        use std::os::unix::fs::OpenOptionsExt;
        use tokio_serial::SerialPort;
        let (master, slave) = tokio_serial::SerialStream::pair().expect("a pseudo-terminal");
        let path = slave.name().expect("the terminal has a path");
        // A descriptor of the client's side without the lock serialport
        // takes (clients such as pyserial lock the port for themselves);
        // O_NOCTTY, so the terminal does not become this process's.
        let keep = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(0o400)
            .open(&path)
            .expect("the terminal opens");
        drop(slave);
        let (mut m_read, mut m_write) = tokio::io::split(master);
        let tasks = vec![
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut device_out, &mut m_write).await;
            }),
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut m_read, &mut device_in).await;
            }),
        ];
        PtyLine {
            path,
            _keep: keep,
            tasks,
        }
    }

    /// The terminal's path, for a client to open.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for PtyLine {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
