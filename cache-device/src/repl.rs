//! The MicroPython raw REPL, over any async byte stream (serial port, a
//! child process's stdio, TCP).
//!
//! Enter with Ctrl-A and expect `raw REPL; CTRL-B to exit\r\n>`; send code
//! and Ctrl-D; expect `OK`, stdout up to `\x04`, stderr (the traceback) up to
//! `\x04`, and the prompt `>`. Ctrl-D on an empty line is a soft reset.
//!
//! Raw-paste mode (`\x05A\x01`) is negotiated on the first execution of
//! code longer than [`PLAIN_MAX`] bytes: a device answering `R\x01` and a
//! window size takes the code in windows, and announces each free window
//! with `\x01`; `R\x00` (understood, not supported) and anything else (older
//! firmware, which re-prints the raw REPL banner) fall back to the standard
//! raw REPL for the connection. Shorter code (an invocation) goes in the
//! standard raw REPL at once: it fits any board's input buffer, and the
//! raw-paste handshake would cost it a round trip.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

const RAW_BANNER: &[u8] = b"raw REPL; CTRL-B to exit\r\n>";

/// The longest code sent in the standard raw REPL where raw-paste may be
/// used: MicroPython's default input buffer (`MICROPY_REPL_STDIN_BUFFER_MAX`),
/// less the Ctrl-D that ends the code, so no board can overflow.
pub const PLAIN_MAX: usize = 255;

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

/// Whether code goes to the device in raw-paste mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawPaste {
    /// Negotiate on the first execution of code longer than [`PLAIN_MAX`],
    /// and fall back to the standard raw REPL where the device refuses or
    /// does not know raw-paste.
    Auto,
    /// Standard raw REPL only: for devices that claim raw-paste but cannot
    /// do it (the WebAssembly port's own raw-paste answers `R\x01` and then
    /// gets stuck).
    Off,
}

/// What the negotiation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PasteState {
    Untried,
    Window(u16),
    Unsupported,
}

/// A raw REPL session.
pub struct RawRepl<R, W> {
    reader: R,
    writer: W,
    buf: Vec<u8>,
    timeout: Duration,
    paste: RawPaste,
    paste_state: PasteState,
    resets: u64,
    /// An exchange broke off: the device's state is unknown until the raw
    /// REPL is entered again.
    broken: bool,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> RawRepl<R, W> {
    /// A session over `reader` and `writer`; each wait is bounded by `timeout`.
    pub fn new(reader: R, writer: W, timeout: Duration) -> Self {
        RawRepl {
            reader,
            writer,
            buf: Vec::new(),
            timeout,
            paste: RawPaste::Auto,
            paste_state: PasteState::Untried,
            resets: 0,
            broken: false,
        }
    }

    /// Sets whether raw-paste mode may be used (default: [`RawPaste::Auto`]).
    pub fn set_raw_paste(&mut self, paste: RawPaste) {
        self.paste = paste;
    }

    /// The raw-paste window the device granted, once negotiated; `None`
    /// before the first execution, and where the standard raw REPL is used.
    pub fn raw_paste_window(&self) -> Option<u16> {
        match self.paste_state {
            PasteState::Window(w) if self.paste == RawPaste::Auto => Some(w),
            _ => None,
        }
    }

    /// The streams, to hand them on.
    pub fn into_inner(self) -> (R, W) {
        (self.reader, self.writer)
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

    /// Reads more into the buffer, waiting at most until `deadline`.
    async fn fill(&mut self, deadline: tokio::time::Instant, what: &str) -> Result<(), ReplError> {
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
            self.fill(deadline, what).await?;
        }
    }

    /// Reads exactly `n` bytes.
    async fn read_exact_n(&mut self, n: usize, what: &str) -> Result<Vec<u8>, ReplError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while self.buf.len() < n {
            self.fill(deadline, what).await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// A byte the device already sent, without waiting for one.
    async fn try_byte(&mut self, what: &str) -> Result<Option<u8>, ReplError> {
        if self.buf.is_empty() {
            let mut chunk = [0u8; 256];
            let reader = &mut self.reader;
            let n = poll_fn(|cx| {
                let mut rb = ReadBuf::new(&mut chunk);
                match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(rb.filled().len()))),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Ready(Ok(None)),
                }
            })
            .await?;
            match n {
                None => return Ok(None),
                Some(0) => {
                    return Err(ReplError::Closed {
                        waiting_for: what.into(),
                    });
                }
                Some(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(Some(self.buf.remove(0)))
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
        self.broken = true;
        self.send(b"\r\x03\x03").await?;
        self.drain(Duration::from_millis(100)).await?;
        self.send(b"\r\x01").await?;
        self.read_until(RAW_BANNER, "the raw REPL banner").await?;
        self.broken = false;
        Ok(())
    }

    /// How often the device reset on its own (a reset button, a watchdog, a
    /// brown-out) or an exchange broke off, so that the raw REPL was entered
    /// again. Whatever was defined on the device may be gone.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Before an exchange: a device that spoke unprompted (the boot banner
    /// of a reset) or an exchange that broke off means the raw REPL must be
    /// entered again.
    async fn ensure_ready(&mut self) -> Result<(), ReplError> {
        let mut unsolicited = std::mem::take(&mut self.buf);
        while let Some(b) = self.try_byte("the device to be ready").await? {
            unsolicited.push(b);
        }
        if !unsolicited.is_empty() || self.broken {
            tracing::warn!(
                said = %String::from_utf8_lossy(&unsolicited),
                broken = self.broken,
                "the device reset or an exchange broke off; entering the raw REPL again"
            );
            self.resets += 1;
            self.enter().await?;
        }
        Ok(())
    }

    /// Runs `code` and returns what it printed, the traceback included.
    pub async fn exec_raw(&mut self, code: &str) -> Result<Output, ReplError> {
        self.ensure_ready().await?;
        self.broken = true;
        let out = self.exec_inner(code).await?;
        self.broken = false;
        Ok(out)
    }

    async fn exec_inner(&mut self, code: &str) -> Result<Output, ReplError> {
        // Ctrl-D on an empty line would be a soft reset, not an empty program.
        let code = if code.is_empty() { "pass" } else { code };
        if self.paste == RawPaste::Auto
            && code.len() > PLAIN_MAX
            && self.paste_state != PasteState::Unsupported
            && let Some(window) = self.request_paste().await?
        {
            return self.paste_code(code.as_bytes(), window).await;
        }
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
        self.follow().await
    }

    /// Asks for raw-paste mode: the window when the device enters it, and
    /// `None` (for the rest of the connection) when it does not.
    async fn request_paste(&mut self) -> Result<Option<u16>, ReplError> {
        self.send(b"\x05A\x01").await?;
        let head = self.read_exact_n(2, "the answer to raw-paste").await?;
        let first = self.paste_state == PasteState::Untried;
        match &head[..] {
            b"R\x01" => {
                let w = self.read_exact_n(2, "the raw-paste window").await?;
                let window = u16::from_le_bytes([w[0], w[1]]);
                if window == 0 {
                    return Err(ReplError::Protocol {
                        waiting_for: "a raw-paste window".into(),
                        got: "0".into(),
                    });
                }
                self.paste_state = PasteState::Window(window);
            }
            b"R\x00" => self.paste_state = PasteState::Unsupported,
            _ => {
                // Older firmware took `\x01` as entering the raw REPL again.
                let mut seen = head;
                seen.append(&mut self.buf);
                self.buf = seen;
                self.read_until(RAW_BANNER, "the raw REPL banner after a raw-paste request")
                    .await?;
                self.paste_state = PasteState::Unsupported;
            }
        }
        if first {
            tracing::debug!(state = ?self.paste_state, "raw-paste negotiated");
        }
        Ok(match self.paste_state {
            PasteState::Window(w) => Some(w),
            _ => None,
        })
    }

    /// Sends `code` in raw-paste mode, within the windows the device grants,
    /// and reads what it printed.
    async fn paste_code(&mut self, code: &[u8], window: u16) -> Result<Output, ReplError> {
        let window = usize::from(window);
        let mut remain = window;
        let mut sent = 0;
        while sent < code.len() {
            // Take the flow-control bytes that arrived; wait for one when
            // the window is used up.
            loop {
                let byte = if remain == 0 {
                    Some(self.read_exact_n(1, "raw-paste flow control").await?[0])
                } else {
                    self.try_byte("raw-paste flow control").await?
                };
                match byte {
                    None => break,
                    Some(0x01) => remain += window,
                    Some(0x04) => {
                        // The device ended the paste early (it ran out of
                        // memory, say): acknowledge, and read its report.
                        self.send(b"\x04").await?;
                        return self.follow().await;
                    }
                    Some(other) => {
                        return Err(ReplError::Protocol {
                            waiting_for: "raw-paste flow control".into(),
                            got: format!("{:?}", other as char),
                        });
                    }
                }
            }
            let n = remain.min(code.len() - sent);
            self.send(&code[sent..sent + n]).await?;
            remain -= n;
            sent += n;
        }
        self.send(b"\x04").await?;
        let before = self.read_until(b"\x04", "the end of the raw paste").await?;
        if before.iter().any(|&b| b != 0x01) {
            return Err(ReplError::Protocol {
                waiting_for: "the end of the raw paste".into(),
                got: String::from_utf8_lossy(&before).into_owned(),
            });
        }
        self.follow().await
    }

    /// Reads an execution's stdout, stderr and the prompt.
    async fn follow(&mut self) -> Result<Output, ReplError> {
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
        self.ensure_ready().await?;
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

/// The REPL of a device on TCP (a serial-to-network bridge, or a board's
/// own socket REPL).
pub type TcpRepl = RawRepl<tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf>;

impl TcpRepl {
    /// Connects to a device's REPL on `addr` and enters the raw REPL; each
    /// wait, the connection included, is bounded by `timeout`.
    pub async fn connect_tcp(
        addr: impl tokio::net::ToSocketAddrs,
        timeout: Duration,
    ) -> Result<TcpRepl, ReplError> {
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ReplError::Timeout {
                waiting_for: "the TCP connection".into(),
                after: timeout,
                got: String::new(),
            })??;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let mut repl = RawRepl::new(reader, writer, timeout);
        repl.enter().await?;
        Ok(repl)
    }
}

/// The REPL of a board on a serial port.
#[cfg(feature = "serial")]
pub type SerialRepl = RawRepl<
    tokio::io::ReadHalf<tokio_serial::SerialStream>,
    tokio::io::WriteHalf<tokio_serial::SerialStream>,
>;

#[cfg(feature = "serial")]
impl SerialRepl {
    /// Opens the serial port at `path` (`/dev/ttyUSB0`, `/dev/ttyACM0`,
    /// `COM3`) at `baud`, 8N1, and enters the raw REPL; each wait is bounded
    /// by `timeout`.
    pub async fn open_serial(
        path: &str,
        baud: u32,
        timeout: Duration,
    ) -> Result<SerialRepl, ReplError> {
        use tokio_serial::SerialPortBuilderExt;
        let port = tokio_serial::new(path, baud)
            .open_native_async()
            .map_err(|e| {
                ReplError::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("cannot open serial port {path}: {e}"),
                ))
            })?;
        let (reader, writer) = tokio::io::split(port);
        let mut repl = RawRepl::new(reader, writer, timeout);
        repl.enter().await?;
        Ok(repl)
    }
}
