//! The values configuration holds: durations within bounds, backend
//! names, and secrets read as text.

use super::*;

/// A duration in configuration: integer seconds or a string such as `"500ms"`.
///
/// It must be more than zero (a TTL of 0 would cache nothing: leave the
/// field out for no expiry) and at most [`MAX_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// The longest TTL or TTI configuration accepts: ten years (what every
/// store outside the process can hold as milliseconds).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A duration within bounds, or why not.
fn bounded<E: serde::de::Error>(
    d: Duration,
    shown: &dyn fmt::Display,
) -> Result<ConfigDuration, E> {
    if d.is_zero() {
        return Err(E::custom(format!(
            "invalid duration {shown}: 0 would cache nothing; leave the field out for no expiry"
        )));
    }
    if d > MAX_DURATION {
        return Err(E::custom(format!(
            "invalid duration {shown}: more than the limit of 10 years (3650d)"
        )));
    }
    Ok(ConfigDuration(d))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "integer seconds or a duration string such as \"500ms\", \"2m\" or \"1h30m\"",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                bounded(Duration::from_secs(v), &v)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("invalid duration {v}: it is negative"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match parse_duration_ms(v) {
                    Ok(ms) => bounded(Duration::from_millis(ms), &format_args!("{v:?}")),
                    Err(why) => Err(E::custom(format!(
                        "invalid duration {v:?}: {why}; use integer seconds or a string such as \"500ms\", \"2m\" or \"1h30m\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes in configuration: a string such as `"64MiB"` or
/// `"512KB"`, or an integer number of bytes; at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or \"512KB\", or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("invalid byte size {v}: it is negative"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                cache_common::parse_bytes(v)
                    .map(ByteSize)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

/// Where cached values live: `"memory"`, `"redis"`, `"tiered"`, or the
/// name of another store (`"disk"`, or one registered with
/// `cache_core::backends::register`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// In this process (the default).
    #[default]
    Memory,
    /// In Redis only (feature `redis`).
    Redis,
    /// In this process (L1) and in the store `l2` names (default Redis),
    /// with invalidations carried to every node.
    Tiered,
    /// In the named store only.
    Store(String),
}

impl Backend {
    /// The name configuration writes.
    pub fn name(&self) -> &str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
            Backend::Tiered => "tiered",
            Backend::Store(n) => n,
        }
    }

    /// The backend a name stands for.
    pub fn named(name: &str) -> Backend {
        match name {
            "memory" => Backend::Memory,
            "redis" => Backend::Redis,
            "tiered" => Backend::Tiered,
            other => Backend::Store(other.to_owned()),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Backend {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if name.trim().is_empty() || name.trim() != name {
            return Err(serde::de::Error::custom(format!(
                "backend {name:?}: name a store (memory, redis, tiered, disk, or a registered one)"
            )));
        }
        Ok(Backend::named(&name))
    }
}

/// A secret read as text whatever it looks like (`token = 123456` is the
/// text `123456`), and never echoed in an error.
pub(crate) fn secret_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a secret as text")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(E::custom(
                "a secret that reads as a decimal number loses digits: quote it",
            ))
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}
