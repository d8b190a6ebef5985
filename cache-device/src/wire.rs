//! How a `#[deploy_cached]` method's arguments and result travel: as JSON,
//! through the calls its expansion makes.

use crate::DeviceError;
use crate::session::DeviceHandle;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An argument of a `#[deploy_cached]` method.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a #[deploy_cached] method",
    label = "arguments travel to the device as JSON",
    note = "derive or implement `serde::Serialize` for `{Self}`"
)]
pub trait Arg {
    /// The argument as JSON.
    fn to_json(&self, method: &str) -> Result<Value, DeviceError>;
}
impl<T: Serialize + ?Sized> Arg for T {
    fn to_json(&self, method: &str) -> Result<Value, DeviceError> {
        serde_json::to_value(self).map_err(|e| DeviceError::Args {
            method: method.into(),
            error: e.to_string(),
        })
    }
}

/// The result type of a `#[deploy_cached]` method.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the result of a #[deploy_cached] method",
    label = "results come back from the device as JSON",
    note = "derive or implement `serde::Deserialize` for `{Self}`"
)]
pub trait Ret: Sized {
    /// The result, from what the device returned.
    fn from_json(v: Value, method: &str) -> Result<Self, DeviceError>;
}
impl<T: DeserializeOwned> Ret for T {
    fn from_json(v: Value, method: &str) -> Result<Self, DeviceError> {
        T::deserialize(&v).map_err(|e| DeviceError::Result {
            method: method.into(),
            output: v.to_string(),
            error: e.to_string(),
        })
    }
}

/// What a `#[deploy_cached]` method expands to: the arguments are
/// already JSON, and so is the result.
pub async fn call<H: DeviceHandle + ?Sized>(
    handle: &mut H,
    method: &str,
    signature: &str,
    generate: impl FnOnce() -> String,
    args: &[Value],
) -> Result<Value, DeviceError> {
    handle
        .session()
        .call(method, signature, generate, &args)
        .await
}
