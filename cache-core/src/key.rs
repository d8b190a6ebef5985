//! Keys: how arguments become a cache key and how that key reads as text.
//!
//! A cache is keyed by the *values* of the arguments (a `u64`, a tuple), so a
//! hit never builds a string. The text form (`get_user:123`) is rendered only
//! when something needs it: a trace event, a pattern, a key listing, and the
//! key of a value that leaves the process.
//!
//! ## The text form is injective
//! Within one cache, two different keys never render the same text, whatever
//! the strings in them contain:
//! - integers and `bool` read as themselves;
//! - strings and `char`s up to [`MAX_INLINE_STR`] bytes read as themselves
//!   with `\`, `:`, `(` and `)` escaped by a `\`, and a leading `#` too;
//! - longer strings, and any argument that is not a [`KeyPart`], read as `#`
//!   and 32 hex digits: a 128-bit blake3 digest of a stable encoding of the
//!   value (postcard when the type is `Serialize`, else its `Hash` input
//!   with every integer fixed to little-endian and `usize` to 64 bits), so
//!   a digest means the same on every platform and build;
//! - `Option`s read as `None` or `Some(..)`, tuples as their parts joined by
//!   `:`, `()` as nothing.
//!
//! Only structure puts an unescaped `:`, `(`, `)` or leading `#` into the
//! text, so the text can be parsed back into its parts: distinct keys of one
//! type never share it. Key templates keep this by separating arguments with
//! a `:` (the macro checks it). A [`KeyPart`] written by hand must keep the
//! same promise, for example by writing its strings with [`write_escaped`].

use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};

/// Strings up to this many bytes appear in keys as they are; longer ones as a digest.
pub const MAX_INLINE_STR: usize = 64;

/// A value with a short, readable text form for keys.
///
/// Implement it for an identifier type to make it appear in keys as text
/// instead of as a digest. Distinct values must write distinct text with no
/// unescaped `:`, `(`, `)` or leading `#` (see [`write_escaped`]), or two
/// keys could share an entry outside the process.
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
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool
);

/// Appends `s` with the key text's escapes: `\`, `:`, `(` and `)` anywhere,
/// and `#` at the start, each behind a `\`.
pub fn write_escaped(s: &str, out: &mut String) {
    for (i, c) in s.char_indices() {
        if matches!(c, '\\' | ':' | '(' | ')') || (c == '#' && i == 0) {
            out.push('\\');
        }
        out.push(c);
    }
}

impl KeyPart for char {
    fn write_key(&self, out: &mut String) {
        write_escaped(self.encode_utf8(&mut [0; 4]), out)
    }
}

impl KeyPart for str {
    fn write_key(&self, out: &mut String) {
        if self.len() <= MAX_INLINE_STR {
            write_escaped(self, out);
        } else {
            push_digest(&blake3::hash(self.as_bytes()), out);
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

impl<T: KeyPart + ?Sized> KeyPart for Box<T> {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out)
    }
}

impl<T: KeyPart> KeyPart for Option<T> {
    fn write_key(&self, out: &mut String) {
        match self {
            Some(v) => {
                out.push_str("Some(");
                v.write_key(out);
                out.push(')');
            }
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

/// Feeds a value's `Hash` input into blake3 in a form that is the same on
/// every platform: integers little-endian, `usize` and `isize` as 64 bits.
struct StableHasher(blake3::Hasher);

macro_rules! le_writes {
    ($($m:ident: $t:ty as $as:ty),*) => {$(
        fn $m(&mut self, i: $t) {
            self.0.update(&(i as $as).to_le_bytes());
        }
    )*};
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        let h = self.0.finalize();
        u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    le_writes!(
        write_u8: u8 as u8, write_u16: u16 as u16, write_u32: u32 as u32,
        write_u64: u64 as u64, write_u128: u128 as u128, write_usize: usize as u64,
        write_i8: i8 as i8, write_i16: i16 as i16, write_i32: i32 as i32,
        write_i64: i64 as i64, write_i128: i128 as i128, write_isize: isize as i64
    );
}

/// A 64-bit blake3 digest of a value's `Hash` input, the same on every platform.
pub fn digest<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = StableHasher(blake3::Hasher::new());
    value.hash(&mut h);
    h.finish()
}

/// The 128-bit digest of a value's `Hash` input that keys show for it.
pub fn digest128<T: Hash + ?Sized>(value: &T) -> [u8; 16] {
    let mut h = StableHasher(blake3::Hasher::new());
    value.hash(&mut h);
    first16(&h.0.finalize())
}

fn first16(h: &blake3::Hash) -> [u8; 16] {
    h.as_bytes()[..16].try_into().expect("16 bytes")
}

fn push_digest(h: &blake3::Hash, out: &mut String) {
    out.push('#');
    for b in first16(h) {
        let _ = write!(out, "{b:02x}");
    }
}

/// Appends `#` and the 32-hex-digit [`digest128`] of `value`.
pub fn write_digest<T: Hash + ?Sized>(value: &T, out: &mut String) {
    let mut h = StableHasher(blake3::Hasher::new());
    value.hash(&mut h);
    push_digest(&h.0.finalize(), out);
}

/// Appends `#` and 32 hex digits of the blake3 digest of `value`'s postcard
/// encoding: stable across builds, compilers and platforms. A value whose
/// `Serialize` fails is digested from its `Hash` input instead.
pub fn write_serde_digest<T: serde::Serialize + Hash + ?Sized>(value: &T, out: &mut String) {
    struct Feed(blake3::Hasher);
    impl postcard::ser_flavors::Flavor for Feed {
        type Output = blake3::Hasher;
        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            self.0.update(&[data]);
            Ok(())
        }
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            self.0.update(data);
            Ok(())
        }
        fn finalize(self) -> postcard::Result<blake3::Hasher> {
            Ok(self.0)
        }
    }
    match postcard::serialize_with_flavor(value, Feed(blake3::Hasher::new())) {
        Ok(h) => push_digest(&h.finalize(), out),
        // A custom `Serialize` that fails: its `Hash` input still tells
        // values apart (marked so it never equals a serde digest).
        Err(_) => {
            let mut h = StableHasher(blake3::Hasher::new_derive_key(
                "cache-core key hash fallback",
            ));
            value.hash(&mut h);
            push_digest(&h.0.finalize(), out);
        }
    }
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

/// Argument wrapper that picks the best text form a type has: its
/// [`KeyPart`] text, else a digest of its serde encoding, else a digest of
/// its `Hash` input.
///
/// Generated code calls `(&&KeyArg(&x)).write_arg(out)`; method resolution
/// prefers [`ViaKeyPart`] on `&&KeyArg`, then [`ViaSerialize`] on `&KeyArg`,
/// then [`ViaHash`] on `KeyArg`.
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

impl<T: KeyPart + ?Sized> ViaKeyPart for &&KeyArg<'_, T> {
    #[inline]
    fn write_arg(self, out: &mut String) {
        self.0.write_key(out)
    }
}

#[doc(hidden)]
pub trait ViaSerialize {
    fn write_arg(self, out: &mut String);
}

impl<T: serde::Serialize + Hash + ?Sized> ViaSerialize for &KeyArg<'_, T> {
    fn write_arg(self, out: &mut String) {
        write_serde_digest(self.0, out)
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

    #[derive(Hash, serde::Serialize)]
    #[allow(dead_code)]
    struct User {
        id: u64,
        name: &'static str,
    }

    #[derive(Hash)]
    #[allow(dead_code)]
    struct HashOnly(u64);

    fn arg<T: ?Sized>(x: &T, f: impl FnOnce(KeyArg<'_, T>, &mut String)) -> String {
        let mut s = String::new();
        f(KeyArg(x), &mut s);
        s
    }

    // `(&&a)` is the autoref that generated code uses to prefer `KeyPart`.
    #[allow(clippy::needless_borrow)]
    #[test]
    fn scalars_and_short_strings_are_text() {
        assert_eq!(arg(&123u64, |a, o| (&&a).write_arg(o)), "123");
        assert_eq!(arg("bob", |a, o| (&&a).write_arg(o)), "bob");
        assert_eq!(render_with(&(1u32, "x".to_string()), <_>::write_key), "1:x");
        assert_eq!(
            render_with(&"a:b\\(c)#d", <_>::write_key),
            "a\\:b\\\\\\(c\\)#d"
        );
        assert_eq!(render_with(&"#ab", <_>::write_key), "\\#ab");
        assert_eq!(render_with(&Some("None"), <_>::write_key), "Some(None)");
        assert_eq!(render_with(&None::<&str>, <_>::write_key), "None");
    }

    #[allow(clippy::needless_borrow)]
    #[test]
    fn structs_and_long_strings_are_128_bit_digests() {
        let u = User { id: 1, name: "a" };
        let s = arg(&u, |a, o| (&&a).write_arg(o));
        assert!(s.starts_with('#') && s.len() == 33, "{s}");
        let other = arg(&User { id: 2, name: "a" }, |a, o| (&&a).write_arg(o));
        assert_ne!(s, other);
        let h = arg(&HashOnly(1), |a, o| (&&a).write_arg(o));
        assert!(h.starts_with('#') && h.len() == 33, "{h}");
        let long = "y".repeat(MAX_INLINE_STR + 1);
        let s = arg(long.as_str(), |a, o| (&&a).write_arg(o));
        assert_eq!(s.len(), 33);
    }
}
