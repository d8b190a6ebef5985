//! Keys: how arguments become a cache key and how that key reads as text.
//!
//! A cache is keyed by the *values* of the arguments (a `u64`, a tuple), so a
//! hit never builds a string. The text form (`get_user:123`) is rendered only
//! when something needs it: a trace event, a pattern, a key listing.
//!
//! Each argument renders through [`KeyPart`] when its type implements it
//! (integers, `bool`, `char`, short strings, and any user type that opts in);
//! any other `Hash` type renders as `#` and a 16-hex-digit blake3 digest of
//! its hash input, so a struct or a long string keeps the key short.

use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};

/// Strings up to this many bytes appear in keys as they are; longer ones as a digest.
pub const MAX_INLINE_STR: usize = 64;

/// A value with a short, readable text form for keys.
///
/// Implement it for an identifier type to make it appear in keys as text
/// instead of as a digest.
pub trait KeyPart {
    /// Appends this value's key text to `out`.
    fn write_key(&self, out: &mut String);
}

macro_rules! display_parts {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            #[inline]
            fn write_key(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
display_parts!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool, char
);

impl KeyPart for str {
    fn write_key(&self, out: &mut String) {
        if self.len() <= MAX_INLINE_STR {
            out.push_str(self);
        } else {
            write_digest(self, out);
        }
    }
}

impl KeyPart for String {
    fn write_key(&self, out: &mut String) {
        self.as_str().write_key(out)
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out)
    }
}

impl<T: KeyPart> KeyPart for Option<T> {
    fn write_key(&self, out: &mut String) {
        match self {
            Some(v) => v.write_key(out),
            None => out.push_str("None"),
        }
    }
}

impl KeyPart for () {
    fn write_key(&self, _out: &mut String) {}
}

macro_rules! tuple_parts {
    ($($name:ident . $idx:tt),+) => {
        impl<$($name: KeyPart),+> KeyPart for ($($name,)+) {
            fn write_key(&self, out: &mut String) {
                let mut first = true;
                $(
                    if !std::mem::take(&mut first) {
                        out.push(':');
                    }
                    self.$idx.write_key(out);
                )+
                let _ = first;
            }
        }
    };
}
tuple_parts!(A.0);
tuple_parts!(A.0, B.1);
tuple_parts!(A.0, B.1, C.2);
tuple_parts!(A.0, B.1, C.2, D.3);
tuple_parts!(A.0, B.1, C.2, D.3, E.4);
tuple_parts!(A.0, B.1, C.2, D.3, E.4, F.5);

/// Feeds `Hash` input into blake3.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let h = self.0.finalize();
        u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The 64-bit blake3 digest of a value's `Hash` input.
///
/// It is stable for one build on one platform (`Hash` feeds `usize` lengths
/// in native width), which is what a key within a deployment needs.
pub fn digest<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = Blake3Hasher(blake3::Hasher::new());
    value.hash(&mut h);
    h.finish()
}

/// Appends `#` and the 16-hex-digit [`digest`] of `value`.
pub fn write_digest<T: Hash + ?Sized>(value: &T, out: &mut String) {
    let _ = write!(out, "#{:016x}", digest(value));
}

/// Renders a key with a function into a `String`.
pub fn render_with<K>(key: &K, render: fn(&K, &mut String)) -> String {
    let mut s = String::new();
    render(key, &mut s);
    s
}

/// Shows a key through its render function without allocating unless printed.
pub struct DisplayKey<'a, K>(pub &'a K, pub fn(&K, &mut String));

impl<K> fmt::Display for DisplayKey<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_with(self.0, self.1))
    }
}

/// Argument wrapper that picks [`KeyPart`] when the type has it and a digest otherwise.
///
/// Generated code calls `(&KeyArg(&x)).write_arg(out)`; method resolution
/// prefers the [`ViaKeyPart`] impl on `&KeyArg` and falls back to
/// [`ViaHash`] on `KeyArg`.
#[doc(hidden)]
pub struct KeyArg<'a, T: ?Sized>(pub &'a T);

impl<T: ?Sized> Clone for KeyArg<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for KeyArg<'_, T> {}

#[doc(hidden)]
pub trait ViaKeyPart {
    fn write_arg(self, out: &mut String);
}

impl<T: KeyPart + ?Sized> ViaKeyPart for &KeyArg<'_, T> {
    #[inline]
    fn write_arg(self, out: &mut String) {
        self.0.write_key(out)
    }
}

#[doc(hidden)]
pub trait ViaHash {
    fn write_arg(self, out: &mut String);
}

impl<T: Hash + ?Sized> ViaHash for KeyArg<'_, T> {
    fn write_arg(self, out: &mut String) {
        write_digest(self.0, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Hash)]
    #[allow(dead_code)]
    struct User {
        id: u64,
        name: &'static str,
    }

    fn arg<T: ?Sized>(x: &T, f: impl FnOnce(KeyArg<'_, T>, &mut String)) -> String {
        let mut s = String::new();
        f(KeyArg(x), &mut s);
        s
    }

    #[test]
    fn scalars_and_short_strings_are_text() {
        assert_eq!(arg(&123u64, |a, o| (&a).write_arg(o)), "123");
        assert_eq!(arg("bob", |a, o| (&a).write_arg(o)), "bob");
        assert_eq!(render_with(&(1u32, "x".to_string()), <_>::write_key), "1:x");
    }

    // `(&a)` is the autoref that generated code uses to prefer `KeyPart`.
    #[allow(clippy::needless_borrow)]
    #[test]
    fn structs_and_long_strings_are_digests() {
        let u = User { id: 1, name: "a" };
        let s = arg(&u, |a, o| (&a).write_arg(o));
        assert!(s.starts_with('#') && s.len() == 17, "{s}");
        let other = arg(&User { id: 2, name: "a" }, |a, o| (&a).write_arg(o));
        assert_ne!(s, other);
        let long = "y".repeat(MAX_INLINE_STR + 1);
        let s = arg(long.as_str(), |a, o| (&a).write_arg(o));
        assert_eq!(s.len(), 17);
    }
}
