//! The `[redis]` section.

use super::*;

/// How to reach and use Redis; the `[redis]` section of the configuration.
///
/// Its `Debug` shows no secret: the URL's password, `hash_secret` and
/// `encryption_key` read as `<redacted>`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]` (RESP3 is added).
    pub url: String,
    /// The first segment of every key.
    pub prefix: String,
    /// Deadline of one operation, in milliseconds.
    pub timeout_ms: u64,
    /// Store a keyed digest of each key instead of its text, so no argument
    /// value reaches Redis (nor the invalidation channel). Needs
    /// `hash_secret` or `encryption_key`.
    pub hash_keys: bool,
    /// The secret that keys the digests of `hash_keys` (any string; at
    /// least 16 bytes). Without it, one is derived from `encryption_key`.
    #[serde(deserialize_with = "secret_text")]
    pub hash_secret: Option<String>,
    /// Compress values larger than this many bytes.
    pub compress_above: Option<usize>,
    /// 64 hex digits: encrypt values with XChaCha20-Poly1305.
    #[serde(deserialize_with = "secret_text")]
    pub encryption_key: Option<String>,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_after: u32,
    /// How long the breaker stays open before a probe, in milliseconds.
    pub breaker_cooldown_ms: u64,
    /// At most one error log line per this many milliseconds.
    pub log_every_ms: u64,
    /// Keys per SCAN step when revoking.
    pub scan_count: usize,
    /// Redis Cluster: the URLs of some of its nodes. When set, `url` is
    /// ignored; revoke and clear scan every master.
    pub cluster_nodes: Vec<String>,
    /// A PEM file of the CA that signed the server's certificate, for
    /// `rediss://` URLs; without it the system's roots are trusted.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// If set, a node that misses takes a lock across nodes (`SET NX PX`,
    /// held at most this many milliseconds); the others wait up to as long
    /// for its value in Redis before computing it themselves.
    pub lock_ms: Option<u64>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "cache".into(),
            timeout_ms: 50,
            hash_keys: false,
            hash_secret: None,
            compress_above: None,
            encryption_key: None,
            breaker_after: 5,
            breaker_cooldown_ms: 1000,
            log_every_ms: 10_000,
            scan_count: 500,
            tls_ca_file: None,
            cluster_nodes: Vec::new(),
            lock_ms: None,
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("RedisOptions")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("hash_keys", &self.hash_keys)
            .field("hash_secret", &secret(&self.hash_secret))
            .field("compress_above", &self.compress_above)
            .field("encryption_key", &secret(&self.encryption_key))
            .field("breaker_after", &self.breaker_after)
            .field("breaker_cooldown_ms", &self.breaker_cooldown_ms)
            .field("log_every_ms", &self.log_every_ms)
            .field("scan_count", &self.scan_count)
            .field(
                "cluster_nodes",
                &self
                    .cluster_nodes
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("tls_ca_file", &self.tls_ca_file)
            .field("lock_ms", &self.lock_ms)
            .finish()
    }
}

/// `url` with the password (and a user alone) replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = auth.split_once(':').map_or("", |(u, _)| u);
    let shown = if user.is_empty() {
        format!("<redacted>@{host}")
    } else {
        format!("{user}:<redacted>@{host}")
    };
    match scheme {
        Some(s) => format!("{s}://{shown}"),
        None => shown,
    }
}
