//! Probes and assertions in generated code: how a result counts for
//! `cache_errors` and `cache_none`, and checks spanned at an argument or
//! return type, so a misuse reads as an error at that token.

/// How a result counts for `cache_errors` and `cache_none`.
#[derive(PartialEq, Eq)]
pub enum Outcome {
    /// An `Err`.
    Err,
    /// A `None`.
    None,
    /// Anything else.
    Value,
}

/// Wraps a result so method resolution can tell `Result` and `Option` apart.
pub struct Probe<'a, T>(pub &'a T);

impl<T> Clone for Probe<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Probe<'_, T> {}

/// Probes a `Result` (picked first by autoref).
pub trait ProbeResult {
    /// How it counts.
    fn outcome(self) -> Outcome;
}
impl<T, E> ProbeResult for &Probe<'_, Result<T, E>> {
    #[inline]
    fn outcome(self) -> Outcome {
        if self.0.is_err() {
            Outcome::Err
        } else {
            Outcome::Value
        }
    }
}

/// Probes an `Option`.
pub trait ProbeOption {
    /// How it counts.
    fn outcome(self) -> Outcome;
}
impl<T> ProbeOption for &Probe<'_, Option<T>> {
    #[inline]
    fn outcome(self) -> Outcome {
        if self.0.is_none() {
            Outcome::None
        } else {
            Outcome::Value
        }
    }
}

/// Probes any other value: always a value.
pub trait ProbePlain {
    /// How it counts.
    fn outcome(self) -> Outcome;
}

impl<T> ProbePlain for Probe<'_, T> {
    #[inline]
    fn outcome(self) -> Outcome {
        Outcome::Value
    }
}

/// Checks an argument type can be part of a key; spanned at the argument.
#[inline(always)]
pub fn assert_key_arg<T: std::hash::Hash + Eq + Clone + Send + Sync + 'static>() {}

/// Checks a return type can be cached; spanned at the return type.
#[inline(always)]
pub fn assert_value<T: Clone + Send + Sync + 'static>() {}
