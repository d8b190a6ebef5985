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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::deploy_cache::{DeployCache, DeployEntry, MethodCacheKey, Status};
use crate::device::Capabilities;
use crate::repl::{RawRepl, ReplError};

/// Why a device call failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The transport failed (disconnect, timeout, protocol).
    #[error(transparent)]
    Repl(ReplError),
    /// The method raised on the device.
    #[error("{method} raised on the device:\n{traceback}")]
    Raised {
        /// The method.
        method: String,
        /// The device's traceback.
        traceback: String,
    },
    /// The code could not be deployed (a syntax error, say).
    #[error("cannot deploy {method}:\n{traceback}")]
    Deploy {
        /// The method.
        method: String,
        /// The device's traceback.
        traceback: String,
    },
    /// The method was called with another number of arguments than its
    /// Python function takes.
    #[error("{method} on the device does not take the {given} argument(s) it was given: {message}")]
    Arity {
        /// The method.
        method: String,
        /// How many arguments the call passed.
        given: usize,
        /// The device's message.
        message: String,
    },
    /// The method's name cannot be a Python identifier (or is one of the
    /// `__dc` names the session itself uses on the device).
    #[error(
        "{0:?} is not a usable Python function name (letters, digits and `_`, not starting with a digit or `__dc`)"
    )]
    BadName(String),
    /// The arguments did not encode.
    #[error("arguments of {method}: {error}")]
    Args {
        /// The method.
        method: String,
        /// Why.
        error: String,
    },
    /// The result did not decode into the declared type.
    #[error("result of {method} is {output:?}, which does not decode: {error}")]
    Result {
        /// The method.
        method: String,
        /// What the device printed.
        output: String,
        /// Why.
        error: String,
    },
}

/// A device and what this session has deployed on it.
pub struct DeviceSession<R, W> {
    repl: RawRepl<R, W>,
    caps: Capabilities,
    cache: Arc<DeployCache>,
    /// Keys deployed (and confirmed) in this session, with their methods.
    deployed: HashMap<String, String>,
    /// Code generated (or found in the cache) in this process, with its
    /// key, by signature: hashed once, not on every call.
    generated: HashMap<String, Arc<Generated>>,
    /// Code generations this session ran.
    generations: u64,
    /// The transport's reset count when `deployed` was last checked.
    resets_seen: u64,
    /// What the device holds, as far as known: method → code tag. Read
    /// from the device when the session opens or reconnects, kept up to
    /// date by deployments, emptied by resets.
    on_device: HashMap<String, String>,
}

/// A method's code and its key on this device.
struct Generated {
    code: String,
    key: MethodCacheKey,
}

/// Lists the methods deployed on the device, with their code tags.
const DISCOVER: &str = "import json\n\
print(json.dumps({k[6:]: v for k, v in globals().items() if k.startswith('__dcm_')}))";

/// What the device holds: method → code tag. A device that cannot say is
/// taken to hold nothing (everything is deployed again).
async fn discover<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    repl: &mut RawRepl<R, W>,
) -> Result<HashMap<String, String>, ReplError> {
    let out = repl.exec_raw(DISCOVER).await?;
    match serde_json::from_str(out.stdout.trim()) {
        Ok(m) if out.stderr.is_empty() => Ok(m),
        _ => {
            tracing::warn!(stdout = %out.stdout, stderr = %out.stderr, "cannot list what the device holds; deploying afresh");
            Ok(HashMap::new())
        }
    }
}

/// Defined on the device with each deployment. `__dc` is what an
/// invocation calls: `__dcc` checks that the method's code is the expected
/// one and calls it with the JSON arguments; `__dco` prints the result as
/// JSON. Short names: on a serial line, bytes are time.
const HELPERS: &str = "def __dc(n, h, a):
    __dco(__dcc(n, h, a))
def __dcc(n, h, a):
    import json
    if globals().get('__dcm_' + n) != h:
        raise NameError('__dc_missing')
    return globals()[n](*json.loads(a))
def __dco(r):
    import json
    print(json.dumps(r))
";

/// Classifies a traceback of the invocation by where it was raised: in
/// `__dcc` itself (the call did not match the function: wrong arity), in
/// `__dco` (the result does not encode), or inside the method.
fn invoke_error(method: &str, given: usize, traceback: String) -> DeviceError {
    let last_frame = traceback
        .lines()
        .rfind(|l| l.trim_start().starts_with("File "))
        .unwrap_or_default()
        .trim_end();
    let last = traceback
        .lines()
        .next_back()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if last_frame.ends_with("in __dcc") && last.starts_with("TypeError") {
        DeviceError::Arity {
            method: method.into(),
            given,
            message: last,
        }
    } else if last_frame.ends_with("in __dco") {
        DeviceError::Result {
            method: method.into(),
            output: String::new(),
            error: format!("json.dumps on the device failed: {last}"),
        }
    } else {
        DeviceError::Raised {
            method: method.into(),
            traceback,
        }
    }
}

fn check_name(name: &str) -> Result<(), DeviceError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !name.starts_with("__dc");
    if ok {
        Ok(())
    } else {
        Err(DeviceError::BadName(name.into()))
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> DeviceSession<R, W> {
    /// Opens a session on a device in the raw REPL, reading its capabilities.
    pub async fn open(mut repl: RawRepl<R, W>, cache: Arc<DeployCache>) -> Result<Self, ReplError> {
        let caps = Capabilities::read(&mut repl).await?;
        let on_device = discover(&mut repl).await?;
        Ok(DeviceSession {
            on_device,
            repl,
            caps,
            cache,
            deployed: HashMap::new(),
            generated: HashMap::new(),
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
            self.generated.clear();
        }
        self.caps = caps;
        self.repl = repl;
        self.resets_seen = self.repl.resets();
        self.deployed.clear();
        self.on_device = discover(&mut self.repl).await?;
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
        let mut m: Vec<&str> = self.on_device.keys().map(String::as_str).collect();
        m.sort_unstable();
        m
    }

    /// Forgets what the device holds (after a reset the session did not
    /// see): everything is deployed again.
    pub fn forget_deployed(&mut self) {
        self.deployed.clear();
        self.on_device.clear();
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

    /// The code for `signature`: generated once per process, or found in the
    /// deployment cache for this device type and firmware.
    fn code_for(&mut self, signature: &str, generate: impl FnOnce() -> String) -> Arc<Generated> {
        if let Some(g) = self.generated.get(signature) {
            return g.clone();
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
        self.generated.insert(signature.to_owned(), g.clone());
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
        if self.repl.resets() != self.resets_seen {
            // The device reset on its own: what it had is gone.
            self.resets_seen = self.repl.resets();
            self.forget_deployed();
        }
        // The cache decides what is current: an entry invalidated, expired
        // or evicted there is generated and deployed afresh.
        if let Some(g) = self.generated.get(signature) {
            if !self.cache.contains(&g.key) {
                let id = g.key.id();
                self.generated.remove(signature);
                self.deployed.remove(&id);
            }
        }
        let generated = self.code_for(signature, generate);
        let (code, key) = (&generated.code, &generated.key);
        let marker = format!("__dcm_{method}");
        // `args` is a tuple: `()` for none, `(x,)` for one.
        let args_value = serde_json::to_value(args).map_err(|e| DeviceError::Args {
            method: method.into(),
            error: e.to_string(),
        })?;
        let args_list = match args_value {
            serde_json::Value::Null => serde_json::Value::Array(Vec::new()),
            list @ serde_json::Value::Array(_) => list,
            one => serde_json::Value::Array(vec![one]),
        };
        let given = args_list.as_array().map_or(0, Vec::len);
        let args_json = args_list.to_string();
        // A JSON string is also a valid Python string literal.
        let literal = serde_json::to_string(&args_json).expect("a string encodes");
        // A short line: on a serial line, bytes are time.
        let invoke = format!("__dc({method:?},{tag:?},{literal})", tag = key.code_tag(),);
        for attempt in 0..2 {
            let id = key.id();
            if !self.deployed.contains_key(&id) {
                // The device holds this code, and the cache vouches for it:
                // only invoke.
                let on_device =
                    self.on_device.get(method).map(String::as_str) == Some(key.code_tag());
                if attempt == 0 && on_device && self.cache.get(key).is_some() {
                    self.deployed.insert(id.clone(), method.to_owned());
                } else {
                    self.deploy(method, key, code, &marker).await?;
                }
            }
            let out = self
                .repl
                .exec_raw(&invoke)
                .await
                .map_err(DeviceError::Repl)?;
            if out.stderr.contains("__dc_missing") || out.stderr.contains("'__dc'") {
                // The device lost the code (a reset the session did not
                // see): send it again.
                self.deployed.remove(&id);
                self.on_device.remove(method);
                continue;
            }
            if !out.stderr.is_empty() {
                return Err(invoke_error(method, given, out.stderr));
            }
            return serde_json::from_str(out.stdout.trim()).map_err(|e| DeviceError::Result {
                method: method.into(),
                output: out.stdout,
                error: e.to_string(),
            });
        }
        Err(DeviceError::Deploy {
            method: method.into(),
            traceback: "the device lost the code again right after deploying it".into(),
        })
    }

    async fn deploy(
        &mut self,
        method: &str,
        key: &MethodCacheKey,
        code: &str,
        marker: &str,
    ) -> Result<(), DeviceError> {
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
        self.deployed.insert(key.id(), method.to_owned());
        self.on_device
            .insert(method.to_owned(), key.code_tag().to_owned());
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
