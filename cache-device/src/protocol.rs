//! What a session says to its device, and how the device's answers read:
//! the listing of deployed methods, the helpers every invocation goes
//! through, argument encoding and the classification of tracebacks.

use std::collections::HashMap;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::DeviceError;
use crate::repl::{RawRepl, ReplError};

/// Lists the methods deployed on the device, with their code tags.
pub(crate) const DISCOVER: &str = "import json\n\
print(json.dumps({k[6:]: v for k, v in globals().items() if k.startswith('__dcm_')}))";

/// What the device holds: method → code tag. A device that cannot say is
/// taken to hold nothing (everything is deployed again).
pub(crate) async fn discover<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
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
pub(crate) const HELPERS: &str = "def __dc(n, h, a):
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
pub(crate) fn invoke_error(method: &str, given: usize, traceback: String) -> DeviceError {
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

/// The device no longer holds a method's code.
pub(crate) struct Missing;

/// `args` (a tuple: `()` for none, `(x,)` for one) as a JSON list, and
/// its length.
pub(crate) fn encode_args<A: Serialize>(
    method: &str,
    args: &A,
) -> Result<(String, usize), DeviceError> {
    let value = serde_json::to_value(args).map_err(|e| DeviceError::Args {
        method: method.into(),
        error: e.to_string(),
    })?;
    let list = match value {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(list) => list,
        one => vec![one],
    };
    let given = list.len();
    Ok((serde_json::Value::Array(list).to_string(), given))
}

pub(crate) fn check_name(name: &str) -> Result<(), DeviceError> {
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
