//! What a DHT record holds, and under which key.
//!
//! A record's value is an [`Envelope`]: a value, a tombstone or a
//! namespace's revocations, with the time it was written, its writer and
//! its expiry. Replicas keep the newest write of a key (ties broken by the
//! writer), and merge revocations instead of replacing them, so concurrent
//! writers converge and a revocation is never lost to another.
//!
//! Keys are `prefix`, a kind byte, the namespace's length and the
//! namespace, then (for values) the key: injective by construction.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The envelope's format version, its first byte.
const VERSION: u8 = 2;

/// At most this many revocations per namespace are kept apart; past it
/// they collapse into one of everything (removing more, never less).
pub(crate) const MAX_REVOCATIONS: usize = 1000;

/// At most this many bytes of patterns per namespace, for the same reason
/// (a record must stay well under the store's value limit).
pub(crate) const MAX_REVOCATION_BYTES: usize = 32 * 1024;

/// One write of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// When it was written: milliseconds since the Unix epoch.
    pub(crate) written_ms: u64,
    /// The writer's peer id, which breaks ties between equal times.
    pub(crate) writer: Vec<u8>,
    /// The writer's count of its writes: orders two writes of one writer
    /// in the same millisecond.
    pub(crate) seq: u64,
    /// When it expires (milliseconds since the Unix epoch), if it does.
    pub(crate) expires_ms: Option<u64>,
    /// What was written.
    pub(crate) body: Body,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// A value's bytes (zstd-compressed when `compressed`).
    Value { bytes: Vec<u8>, compressed: bool },
    /// The key was deleted: older values are gone.
    Tombstone,
    /// A namespace's revocations: each pattern, and when it was revoked.
    /// Values written until then whose key matches are gone.
    Revocations(Vec<(String, u64)>),
}

/// Milliseconds since the Unix epoch (so times compare across nodes and
/// restarts).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Envelope {
    /// The record's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend(postcard::to_allocvec(self).expect("an envelope encodes"));
        out
    }

    /// An envelope from a record's bytes; `None` for bytes of another
    /// version or none at all.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Envelope> {
        match bytes.split_first() {
            Some((&VERSION, rest)) => postcard::from_bytes(rest).ok(),
            _ => None,
        }
    }

    /// When and by whom it was written, in the order writes win.
    fn stamp(&self) -> (u64, &[u8], u64) {
        (self.written_ms, &self.writer, self.seq)
    }

    /// Whether this write comes after `other`: by time, then by writer,
    /// then by the writer's own count.
    pub(crate) fn newer_than(&self, other: &Envelope) -> bool {
        self.stamp() > other.stamp()
    }

    /// Whether it has expired at `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }

    /// What a replica keeps of two writes of one key: the newer, or for
    /// revocations both, merged (the later time of each pattern); revocations
    /// older than `keep_ms` are dropped, as no value that old is left.
    pub(crate) fn merge(self, other: Envelope, keep_ms: u64) -> Envelope {
        match (self.body, other.body) {
            (Body::Revocations(a), Body::Revocations(b)) => {
                let mut all = std::collections::BTreeMap::new();
                for (p, at) in a.into_iter().chain(b) {
                    let e = all.entry(p).or_insert(at);
                    *e = (*e).max(at);
                }
                let horizon = now_ms().saturating_sub(keep_ms);
                all.retain(|_, at| *at >= horizon);
                let mut list: Vec<(String, u64)> = all.into_iter().collect();
                let bytes: usize = list.iter().map(|(p, _)| p.len() + 10).sum();
                if list.len() > MAX_REVOCATIONS || bytes > MAX_REVOCATION_BYTES {
                    let latest = list.iter().map(|(_, at)| *at).max().unwrap_or(0);
                    list = vec![("*".to_owned(), latest)];
                }
                let mine = (self.written_ms, &self.writer, self.seq);
                let theirs = (other.written_ms, &other.writer, other.seq);
                let (written_ms, writer, seq) = if mine >= theirs {
                    (self.written_ms, self.writer, self.seq)
                } else {
                    (other.written_ms, other.writer, other.seq)
                };
                Envelope {
                    written_ms,
                    writer,
                    seq,
                    expires_ms: max_expiry(self.expires_ms, other.expires_ms),
                    body: Body::Revocations(list),
                }
            }
            (a, b) => {
                let mine = Envelope { body: a, ..self };
                let theirs = Envelope { body: b, ..other };
                if theirs.newer_than(&mine) {
                    theirs
                } else {
                    mine
                }
            }
        }
    }
}

fn max_expiry(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

fn key_of(prefix: &str, kind: u8, ns: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + ns.len() + 16);
    k.extend_from_slice(prefix.as_bytes());
    k.push(kind);
    k.extend_from_slice(&(ns.len() as u64).to_be_bytes());
    k.extend_from_slice(ns.as_bytes());
    k
}

/// The record key of `key`'s value in namespace `ns`.
pub(crate) fn value_key(prefix: &str, ns: &str, key: &str) -> Vec<u8> {
    let mut k = key_of(prefix, b'v', ns);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The record key of namespace `ns`'s revocations.
pub(crate) fn revocations_key(prefix: &str, ns: &str) -> Vec<u8> {
    key_of(prefix, b'r', ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(at: u64, writer: &[u8], body: Body) -> Envelope {
        Envelope {
            written_ms: at,
            writer: writer.to_vec(),
            seq: 0,
            expires_ms: None,
            body,
        }
    }

    fn value(b: &[u8]) -> Body {
        Body::Value {
            bytes: b.to_vec(),
            compressed: false,
        }
    }

    #[test]
    fn the_newer_write_wins_whatever_the_order_and_ties_go_to_the_writer() {
        let old = env(10, b"a", value(b"old"));
        let new = env(20, b"a", value(b"new"));
        assert_eq!(old.clone().merge(new.clone(), u64::MAX), new);
        assert_eq!(new.clone().merge(old, u64::MAX), new);
        let tie_a = env(30, b"a", value(b"A"));
        let tie_b = env(30, b"b", Body::Tombstone);
        assert_eq!(tie_a.clone().merge(tie_b.clone(), u64::MAX), tie_b);
        assert_eq!(tie_b.clone().merge(tie_a, u64::MAX), tie_b);
    }

    #[test]
    fn revocations_merge_and_collapse_past_the_bound() {
        let now = now_ms();
        let a = env(now, b"a", Body::Revocations(vec![("x*".into(), now)]));
        let b = env(
            now - 5,
            b"b",
            Body::Revocations(vec![("y*".into(), now - 5), ("x*".into(), now - 9)]),
        );
        let m = a.clone().merge(b.clone(), 60_000);
        assert_eq!(
            m.body,
            Body::Revocations(vec![("x*".into(), now), ("y*".into(), now - 5)])
        );
        assert_eq!(b.merge(a, 60_000).body, m.body, "the order does not matter");
        let many = (0..=MAX_REVOCATIONS as u64)
            .map(|i| (format!("k{i}"), now - i))
            .collect();
        let big = env(now, b"a", Body::Revocations(many));
        let m = big.merge(env(now, b"a", Body::Revocations(vec![])), 60_000);
        assert_eq!(m.body, Body::Revocations(vec![("*".into(), now)]));
    }

    #[test]
    fn one_writers_writes_in_one_millisecond_are_ordered_by_its_count() {
        let a = Envelope {
            seq: 1,
            ..env(10, b"w", value(b"first"))
        };
        let b = Envelope {
            seq: 2,
            ..env(10, b"w", Body::Tombstone)
        };
        assert_eq!(a.clone().merge(b.clone(), u64::MAX), b);
        assert_eq!(b.clone().merge(a, u64::MAX), b);
    }

    #[test]
    fn long_revocation_patterns_collapse_before_the_record_grows_too_large() {
        let now = now_ms();
        let mut acc = env(now, b"a", Body::Revocations(vec![]));
        for i in 0..200 {
            let p = format!("{i:04}{}*", "x".repeat(1000));
            acc = acc.merge(env(now, b"a", Body::Revocations(vec![(p, now)])), 60_000);
            assert!(acc.encode().len() < 2 * MAX_REVOCATION_BYTES, "at {i}");
        }
        // Past the bound everything counts as revoked (removing more,
        // never less).
        let Body::Revocations(list) = &acc.body else {
            panic!("{acc:?}")
        };
        assert!(list.contains(&("*".to_string(), now)), "{list:?}");
    }

    #[test]
    fn envelopes_round_trip_and_foreign_bytes_are_refused() {
        let e = Envelope {
            expires_ms: Some(99),
            ..env(1, b"w", value(b"v"))
        };
        assert_eq!(Envelope::decode(&e.encode()), Some(e));
        assert_eq!(Envelope::decode(b""), None);
        assert_eq!(Envelope::decode(&[2, 0, 0]), None);
        assert_eq!(Envelope::decode(&[VERSION, 0xff, 0xff]), None);
    }

    #[test]
    fn keys_are_injective_across_namespaces_and_kinds() {
        assert_ne!(value_key("p", "ab", "c"), value_key("p", "a", "bc"));
        assert_ne!(value_key("p", "a", ""), revocations_key("p", "a"));
        assert_ne!(value_key("p", "", "a"), value_key("p", "a", ""));
    }
}
