//! A session with one device: deploy a method's code once, then only invoke it.
//!
//! The device is the source of truth for what is deployed: deployed code
//! sets a marker global holding a tag of its hash, and every invocation
//! checks it first. A session reads the markers when it opens or reconnects
//! (a new host process finds the code the device kept, and only invokes it);
//! a reset empties them. A missing marker means the code is sent again, from
//! the deployment cache, without generating it again. Arguments travel as
//! JSON and are read with `json.loads`; results come back through
//! `json.dumps`.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::deploy_cache::{DeployCache, DeployEntry, MethodCacheKey, Status};
use crate::deployment::{Deployments, Generated};
use crate::device::Capabilities;
pub use crate::error::DeviceError;
use crate::protocol::{HELPERS, Missing, check_name, discover, encode_args, invoke_error};
use crate::repl::{RawRepl, ReplError};

/// A device and what this session has deployed on it.
pub struct DeviceSession<R, W> {
    repl: RawRepl<R, W>,
    caps: Capabilities,
    cache: Arc<DeployCache>,
    /// Each method's code, and what the device holds.
    state: Deployments,
    /// Code generations this session ran.
    generations: u64,
    /// The transport's reset count when `state` was last checked.
    resets_seen: u64,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> DeviceSession<R, W> {
    /// Opens a session on a device in the raw REPL, reading its capabilities.
    pub async fn open(mut repl: RawRepl<R, W>, cache: Arc<DeployCache>) -> Result<Self, ReplError> {
        let caps = Capabilities::read(&mut repl).await?;
        let state = Deployments::listed(discover(&mut repl).await?);
        Ok(DeviceSession {
            state,
            repl,
            caps,
            cache,
            generations: 0,
            resets_seen: 0,
        })
    }

    /// Continues on a new connection to the device (after a disconnect, or
    /// when the board came back on another port): reads the capabilities
    /// again and forgets what was deployed. After a firmware change, no code
    /// or entry of the old firmware is used.
    pub async fn reconnect(&mut self, mut repl: RawRepl<R, W>) -> Result<(), ReplError> {
        let caps = Capabilities::read(&mut repl).await?;
        if caps != self.caps {
            tracing::info!(from = ?self.caps, to = ?caps, "the device changed");
            self.state.forget_code();
        }
        self.caps = caps;
        self.repl = repl;
        self.resets_seen = self.repl.resets();
        let held = discover(&mut self.repl).await?;
        self.state.relist(held);
        Ok(())
    }

    /// The device's type and firmware.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// How often this session generated code.
    pub fn generations(&self) -> u64 {
        self.generations
    }

    /// The methods this session knows to be on the device, sorted: deployed
    /// or confirmed since the session opened, or since the last reset or
    /// reconnect.
    pub fn deployed_methods(&self) -> Vec<&str> {
        self.state.on_device()
    }

    /// Forgets what the device holds (after a reset the session did not
    /// see): everything is deployed again.
    pub fn forget_deployed(&mut self) {
        self.state.forget_device();
    }

    /// Ends the session, handing back the transport (the device keeps what
    /// was deployed).
    pub fn into_repl(self) -> RawRepl<R, W> {
        self.repl
    }

    /// The transport, for raw access.
    pub fn repl(&mut self) -> &mut RawRepl<R, W> {
        &mut self.repl
    }

    /// Soft-resets the device; the next call redeploys.
    pub async fn soft_reset(&mut self) -> Result<(), ReplError> {
        self.repl.soft_reset().await?;
        self.forget_deployed();
        Ok(())
    }

    /// The code for `method` under `signature`: generated once per
    /// process, or found in the deployment cache for this device type and
    /// firmware.
    fn code_for(
        &mut self,
        method: &str,
        signature: &str,
        generate: impl FnOnce() -> String,
    ) -> Arc<Generated> {
        if let Some(g) = self.state.code(method, signature) {
            return g;
        }
        let (device_type, firmware) = (&self.caps.device_type, &self.caps.firmware);
        let code = match self.cache.find(device_type, firmware, signature) {
            Some(e) => e.code,
            None => {
                self.generations += 1;
                generate()
            }
        };
        let key = MethodCacheKey::new(device_type, firmware, signature, &code);
        let g = Arc::new(Generated { code, key });
        self.state.set_code(method, signature, g.clone());
        g
    }

    /// Calls `method` with `args` (a tuple: `()`, `(x,)`, `(x, y)`) on the
    /// device, deploying its code first if the device does not have it.
    pub async fn call<A: Serialize, T: DeserializeOwned>(
        &mut self,
        method: &str,
        signature: &str,
        generate: impl FnOnce() -> String,
        args: &A,
    ) -> Result<T, DeviceError> {
        check_name(method)?;
        let (args_json, given) = encode_args(method, args)?;
        self.reconcile(method, signature);
        let generated = self.code_for(method, signature, generate);
        for attempt in 0..2 {
            self.ensure_deployed(method, &generated, attempt == 0)
                .await?;
            match self.invoke(method, &generated.key, &args_json, given).await {
                Err(Missing) => {
                    // The device lost the code (a reset the session did
                    // not see): send it again.
                    self.state.lost(method);
                }
                Ok(result) => return result,
            }
        }
        Err(DeviceError::Deploy {
            method: method.into(),
            traceback: "the device lost the code again right after deploying it".into(),
        })
    }

    /// Brings the session's state up to date before a call: a reset of the
    /// device forgets what it held, and the deployment cache decides what
    /// is current (code whose entry was invalidated, expired or evicted is
    /// generated, or found, and deployed afresh).
    fn reconcile(&mut self, method: &str, signature: &str) {
        if self.repl.resets() != self.resets_seen {
            self.resets_seen = self.repl.resets();
            self.state.forget_device();
        }
        if let Some(g) = self.state.code(method, signature)
            && !self.cache.contains(&g.key)
        {
            self.state.drop_code(method);
        }
    }

    /// Deploys `g` unless the device holds it and this session confirmed
    /// that, or (on a first attempt) the device lists it and the deployment
    /// cache vouches for it.
    async fn ensure_deployed(
        &mut self,
        method: &str,
        g: &Generated,
        first_attempt: bool,
    ) -> Result<(), DeviceError> {
        let tag = g.key.code_tag();
        if self.state.confirmed(method, tag) {
            return Ok(());
        }
        if first_attempt && self.state.holds(method, tag) && self.cache.get(&g.key).is_some() {
            self.state.confirm(method, tag);
            return Ok(());
        }
        self.deploy(method, &g.key, &g.code).await
    }

    /// Runs the deployed `method` on `args_json`; `Err(Missing)` when the
    /// device does not hold its code.
    async fn invoke<T: DeserializeOwned>(
        &mut self,
        method: &str,
        key: &MethodCacheKey,
        args_json: &str,
        given: usize,
    ) -> Result<Result<T, DeviceError>, Missing> {
        // A JSON string is also a valid Python string literal; a short
        // line, as on a serial line bytes are time.
        let literal = serde_json::to_string(args_json).expect("a string encodes");
        let invoke = format!("__dc({method:?},{tag:?},{literal})", tag = key.code_tag());
        let out = match self.repl.exec_raw(&invoke).await {
            Ok(out) => out,
            Err(e) => return Ok(Err(DeviceError::Repl(e))),
        };
        if out.stderr.contains("__dc_missing") || out.stderr.contains("'__dc'") {
            return Err(Missing);
        }
        if !out.stderr.is_empty() {
            return Ok(Err(invoke_error(method, given, out.stderr)));
        }
        Ok(
            serde_json::from_str(out.stdout.trim()).map_err(|e| DeviceError::Result {
                method: method.into(),
                output: out.stdout,
                error: e.to_string(),
            }),
        )
    }

    async fn deploy(
        &mut self,
        method: &str,
        key: &MethodCacheKey,
        code: &str,
    ) -> Result<(), DeviceError> {
        let marker = format!("__dcm_{method}");
        let started = Instant::now();
        // The marker is set only once the code ran and defined the method;
        // the helpers check it, call, and print the result as JSON.
        let program = format!(
            "{code}\n\
             if not callable(globals().get({method:?})):\n    \
             raise NameError('the code does not define a function {method}')\n\
             {marker} = {tag:?}\n\
             {HELPERS}",
            tag = key.code_tag(),
        );
        let out = self
            .repl
            .exec_raw(&program)
            .await
            .map_err(DeviceError::Repl)?;
        if !out.stderr.is_empty() {
            return Err(DeviceError::Deploy {
                method: method.into(),
                traceback: out.stderr,
            });
        }
        let now = self.cache.now_ms();
        self.cache.put(DeployEntry {
            key: key.clone(),
            code: code.to_owned(),
            method_name: method.to_owned(),
            deployed_at: now,
            last_accessed: now,
            access_count: 0,
            deployment_ms: started.elapsed().as_millis() as u64,
            status: Status::Deployed,
            metadata: Default::default(),
        });
        self.state.confirm(method, key.code_tag());
        Ok(())
    }
}

/// A device handle whose `#[deploy_cached]` methods run on its session.
///
/// ```ignore
/// struct Board { session: DeviceSession<ChildStdout, ChildStdin> }
///
/// impl DeviceHandle for Board {
///     type Reader = ChildStdout;
///     type Writer = ChildStdin;
///     fn session(&mut self) -> &mut DeviceSession<ChildStdout, ChildStdin> {
///         &mut self.session
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a device handle",
    label = "#[deploy_cached] methods run on the handle's DeviceSession",
    note = "implement `cache_device::DeviceHandle` for `{Self}`, returning its `DeviceSession`"
)]
pub trait DeviceHandle {
    /// The stream the device answers on.
    type Reader: AsyncRead + Unpin;
    /// The stream code is sent on.
    type Writer: AsyncWrite + Unpin;
    /// The session the methods run on.
    fn session(&mut self) -> &mut DeviceSession<Self::Reader, Self::Writer>;
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> DeviceHandle for DeviceSession<R, W> {
    type Reader = R;
    type Writer = W;
    fn session(&mut self) -> &mut DeviceSession<R, W> {
        self
    }
}

/// What the body of a `#[deploy_cached]` method may yield: the MicroPython
/// source of the method.
#[diagnostic::on_unimplemented(
    message = "the body of a #[deploy_cached] method yields MicroPython source, not `{Self}`",
    label = "expected a `String` or `&str` of Python code",
    note = "end the body with the code, e.g. `\"def read(pin):\\n    return pin\\n\"`"
)]
pub trait IntoCode {
    /// The source.
    fn into_code(self) -> String;
}

impl IntoCode for String {
    fn into_code(self) -> String {
        self
    }
}

impl IntoCode for &str {
    fn into_code(self) -> String {
        self.to_owned()
    }
}

impl IntoCode for std::borrow::Cow<'_, str> {
    fn into_code(self) -> String {
        self.into_owned()
    }
}
