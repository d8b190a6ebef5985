//! Why a device call failed.

use crate::repl::ReplError;

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
