//! The MicroPython raw REPL, over any async byte stream (serial port, a
//! child process's stdio, TCP).
//!
//! Enter with Ctrl-A and expect `raw REPL; CTRL-B to exit\r\n>`; send code
//! and Ctrl-D; expect `OK`, stdout up to `\x04`, stderr (the traceback) up to
//! `\x04`, and the prompt `>`. Ctrl-D on an empty line is a soft reset.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const RAW_BANNER: &[u8] = b"raw REPL; CTRL-B to exit\r\n>";

/// Why a REPL exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    /// The stream failed.
    #[error("device I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The device closed the stream (disconnected, or reset).
    #[error("the device closed the connection while we waited for {waiting_for}")]
    Closed {
        /// What was expected.
        waiting_for: String,
    },
    /// The device did not answer in time.
    #[error("no {waiting_for} from the device within {after:?}; it sent {got:?}")]
    Timeout {
        /// What was expected.
        waiting_for: String,
        /// How long we waited.
        after: Duration,
        /// What arrived meanwhile.
        got: String,
    },
    /// The device answered something the protocol does not allow here.
    #[error("unexpected answer while waiting for {waiting_for}: {got:?}")]
    Protocol {
        /// What was expected.
        waiting_for: String,
        /// What arrived.
        got: String,
    },
    /// The code raised an exception on the device.
    #[error("exception on the device:\n{traceback}")]
    Exception {
        /// The traceback the device printed.
        traceback: String,
        /// What the code printed before it raised.
        stdout: String,
    },
}

/// What one execution printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// The traceback, empty when the code ran to its end.
    pub stderr: String,
}

/// A raw REPL session.
pub struct RawRepl<R, W> {
    reader: R,
    writer: W,
    buf: Vec<u8>,
    timeout: Duration,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> RawRepl<R, W> {
    /// A session over `reader` and `writer`; each wait is bounded by `timeout`.
    pub fn new(reader: R, writer: W, timeout: Duration) -> Self {
        RawRepl {
            reader,
            writer,
            buf: Vec::new(),
            timeout,
        }
    }

    /// Sets how long each wait for the device may take.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ReplError> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Reads until `pattern`; returns what came before it and consumes both.
    async fn read_until(&mut self, pattern: &[u8], what: &str) -> Result<Vec<u8>, ReplError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(i) = find(&self.buf, pattern) {
                let before = self.buf[..i].to_vec();
                self.buf.drain(..i + pattern.len());
                return Ok(before);
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.reader.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(ReplError::Timeout {
                        waiting_for: what.into(),
                        after: self.timeout,
                        got: String::from_utf8_lossy(&self.buf).into_owned(),
                    });
                }
            };
            if n == 0 {
                return Err(ReplError::Closed {
                    waiting_for: what.into(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Discards what arrives until the device has been quiet for `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Result<(), ReplError> {
        let mut chunk = [0u8; 4096];
        while let Ok(r) = tokio::time::timeout(quiet, self.reader.read(&mut chunk)).await {
            if r? == 0 {
                return Err(ReplError::Closed {
                    waiting_for: "the device to settle".into(),
                });
            }
        }
        self.buf.clear();
        Ok(())
    }

    /// Interrupts whatever runs and enters the raw REPL.
    pub async fn enter(&mut self) -> Result<(), ReplError> {
        self.send(b"\r\x03\x03").await?;
        self.drain(Duration::from_millis(100)).await?;
        self.send(b"\r\x01").await?;
        self.read_until(RAW_BANNER, "the raw REPL banner").await?;
        Ok(())
    }

    /// Runs `code` and returns what it printed, the traceback included.
    pub async fn exec_raw(&mut self, code: &str) -> Result<Output, ReplError> {
        for chunk in code.as_bytes().chunks(256) {
            self.send(chunk).await?;
        }
        self.send(b"\x04").await?;
        let before = self.read_until(b"OK", "OK").await?;
        if !before.is_empty() {
            return Err(ReplError::Protocol {
                waiting_for: "OK".into(),
                got: String::from_utf8_lossy(&before).into_owned(),
            });
        }
        let stdout = self.read_until(b"\x04", "the end of stdout").await?;
        let stderr = self.read_until(b"\x04", "the end of stderr").await?;
        self.read_until(b">", "the prompt").await?;
        Ok(Output {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Runs `code`; an exception on the device is an error with its traceback.
    pub async fn exec(&mut self, code: &str) -> Result<String, ReplError> {
        let out = self.exec_raw(code).await?;
        if out.stderr.is_empty() {
            Ok(out.stdout)
        } else {
            Err(ReplError::Exception {
                traceback: out.stderr,
                stdout: out.stdout,
            })
        }
    }

    /// Soft-resets the device (Ctrl-D on an empty raw-REPL line): everything
    /// defined over the REPL is gone. Returns in the raw REPL.
    pub async fn soft_reset(&mut self) -> Result<(), ReplError> {
        self.send(b"\x04").await?;
        self.read_until(b"soft reboot", "the soft reboot banner")
            .await?;
        self.read_until(RAW_BANNER, "the raw REPL banner").await?;
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
