//! The Redis store (feature `redis`): values in Redis, invalidations across
//! nodes on a pub/sub channel, and a circuit breaker so that a Redis outage
//! never fails a call.
//!
//! Keys are `prefix:service:tenant:action:key` (`_` for no service or
//! tenant); the action segment keeps two actions with custom key templates
//! apart. With `hash_keys`, the key text becomes a blake3 digest, so raw
//! argument values never reach the server; patterns then select whole
//! actions only. Values use the crate's codec (format version, type
//! fingerprint, postcard), optionally compressed and encrypted ([`Sealer`]).
//!
//! Every operation has a deadline (50 ms by default). After `breaker_after`
//! consecutive failures the breaker opens: operations are skipped (a miss, or
//! nothing stored) until `breaker_cooldown` has passed, when one probe goes
//! through; its success closes the breaker. Errors are counted and logged at
//! most once per `log_every`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, Cmd, Pipeline, PushInfo, RedisFuture, Value};
use serde::Serialize;

use crate::codec::CodecError;
use crate::pattern::Pattern;
use crate::seal::Sealer;
use crate::store::{BoxFuture, Store, StoreError};

pub use crate::spec::{RedisOptions, redact_url};
pub use crate::store::Invalidation;

mod breaker;
mod channel;
mod keys;
mod link;
mod outbox;
mod parts;
mod remote;
mod store;

pub(crate) use crate::store::bridge::{block_on_bridge, bridge};
use breaker::Breaker;
use link::{ClusterLink, Conn, Link, client_for};

/// The URL's password (or lone credential), if it has one.
fn password_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (auth, _) = rest.rsplit_once('@')?;
    Some(auth.split_once(':').map_or(auth, |(_, p)| p)).filter(|p| !p.is_empty())
}

/// Why cluster nodes were refused, with no node's password in it.
fn cluster_error(nodes: &[String], e: &dyn std::fmt::Display) -> String {
    let shown: Vec<String> = nodes.iter().map(|u| redact_url(u)).collect();
    let mut text = format!("invalid redis cluster nodes {shown:?}: {e}");
    for n in nodes {
        text = scrub(text, n);
    }
    text
}

/// Removes every occurrence of the URL's password from `text`.
fn scrub(text: String, url: &str) -> String {
    match password_of(url) {
        Some(p) => text.replace(p, "<redacted>"),
        None => text,
    }
}

/// Counters of one store's traffic and trouble.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RemoteStats {
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found none.
    pub misses: u64,
    /// Operations that failed or timed out.
    pub errors: u64,
    /// Operations skipped while the breaker was open.
    pub skipped: u64,
    /// Values that did not open or decode (counted as misses too).
    pub undecodable: u64,
    /// Invalidations received from other nodes.
    pub invalidations_received: u64,
    /// Invalidations not yet applied in Redis (it was unreachable): until
    /// they are, this node reads nothing from Redis.
    pub pending_invalidations: u64,
    /// Times the invalidation channel was lost, each of which emptied the
    /// local tier of every cache over this store.
    pub resubscriptions: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    undecodable: AtomicU64,
    received: AtomicU64,
    resubscriptions: AtomicU64,
}

/// What an operation is, for the circuit breakers: reads and writes have
/// one each, so a full Redis that refuses writes still serves reads;
/// invalidations pass every breaker, since they must be done.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
    Invalidate,
}

/// A remote invalidation: run until it succeeds.
pub(crate) type Job = Arc<
    dyn Fn(Arc<RedisStore>) -> crate::store::BoxFuture<'static, Result<(), StoreError>>
        + Send
        + Sync,
>;

type Handler = Arc<dyn Fn(&Invalidation) + Send + Sync>;

/// Stores a value (KEYS[1]) and records it in its tag sets (KEYS[3..]),
/// only if the cache's generation (KEYS[2]) is still ARGV[3]; ARGV[1] is the
/// value, ARGV[2] its TTL in ms (0: none).
const SET_IF_GEN: &str = r"
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[3] then return 0 end
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if ARGV[2] == '0' then
    redis.call('PERSIST', KEYS[i])
  else
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 1
";

/// Keeps the Redis keys a revoke should remove, from those its SCAN found.
pub(crate) type KeyFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub(crate) use crate::store::remote::hashed_pattern_error;

/// A Redis-backed [`Store`].
pub struct RedisStore {
    link: Link,
    opts: RedisOptions,
    sealer: Sealer,
    /// The key of `hash_keys` digests.
    hash_key: Option<[u8; 32]>,
    read_breaker: Breaker,
    write_breaker: Breaker,
    /// Invalidations that failed, in order, retried until they succeed.
    outbox: Mutex<std::collections::VecDeque<Job>>,
    pending: AtomicU64,
    retrying: AtomicBool,
    counters: Counters,
    /// Outcomes of operations, for health checks.
    tracker: crate::store::state::Tracker,
    last_log: AtomicU64,
    node: u64,
    handlers: Arc<RwLock<Vec<Handler>>>,
    subscribed: AtomicBool,
    /// The invalidation channel dropped and has not been subscribed again.
    channel_lost: AtomicBool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.opts.prefix)
            .field("node", &self.node)
            .finish()
    }
}

fn channel(prefix: &str) -> String {
    format!("{prefix}:invalidate")
}

fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}/?protocol=resp3").replace("//?", "/?")
    }
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

impl RedisStore {
    /// A store for `opts`. It connects lazily, so Redis may be down now; it
    /// subscribes to the invalidation channel, and keeps resubscribing.
    pub fn connect(opts: RedisOptions) -> Result<Arc<RedisStore>, StoreError> {
        let bad = |m: String| StoreError::Unavailable(m);
        let sealer = Sealer::default().compress_above(opts.compress_above);
        let sealer = match &opts.encryption_key {
            Some(k) => sealer.encryption_key_hex(k).map_err(bad)?,
            None => sealer,
        };
        let hash_key = match (&opts.hash_secret, &opts.encryption_key) {
            (Some(s), _) if s.len() < 16 => {
                return Err(bad(
                    "redis: hash_secret must be at least 16 bytes long".into()
                ));
            }
            (Some(s), _) => Some(blake3::derive_key("cache-core hash_keys v1", s.as_bytes())),
            (None, Some(k)) => Some(blake3::derive_key(
                "cache-core hash_keys from encryption_key v1",
                k.as_bytes(),
            )),
            (None, None) if opts.hash_keys => {
                return Err(bad(
                    "redis: hash_keys needs a secret to key its digests: set hash_secret (or encryption_key)".into(),
                ));
            }
            (None, None) => None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
        let timeout = Duration::from_millis(opts.timeout_ms.max(1));
        let link = if opts.cluster_nodes.is_empty() {
            let client = client_for(&opts)?;
            let config = ConnectionManagerConfig::new()
                .set_push_sender(tx)
                .set_automatic_resubscription()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            let _enter = bridge().enter();
            Link::Single(
                ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(|e| bad(format!("redis: {e}")))?,
            )
        } else {
            let client = ClusterClientBuilder::new(opts.cluster_nodes.clone())
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx)
                .response_timeout(timeout)
                .connection_timeout(timeout.max(Duration::from_millis(200)))
                .build()
                .map_err(|e| bad(cluster_error(&opts.cluster_nodes, &e)))?;
            Link::Cluster(Box::new(ClusterLink {
                client,
                conn: tokio::sync::Mutex::new(None),
            }))
        };
        let breaker = || Breaker {
            after: opts.breaker_after.max(1),
            cooldown: Duration::from_millis(opts.breaker_cooldown_ms),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            origin: Instant::now(),
        };
        let store = Arc::new(RedisStore {
            link,
            read_breaker: breaker(),
            write_breaker: breaker(),
            outbox: Mutex::default(),
            pending: AtomicU64::new(0),
            retrying: AtomicBool::new(false),
            hash_key,
            sealer,
            counters: Counters::default(),
            tracker: Default::default(),
            last_log: AtomicU64::new(0),
            node: crate::key::digest(&(
                std::process::id(),
                Instant::now().elapsed().as_nanos(),
                &opts.prefix,
                rand_seed(),
            )),
            handlers: Arc::default(),
            subscribed: AtomicBool::new(false),
            channel_lost: AtomicBool::new(false),
            opts,
        });
        // Deliver invalidations from other nodes to the handlers.
        let weak = Arc::downgrade(&store);
        bridge().spawn(async move {
            while let Some(push) = rx.recv().await {
                let Some(store) = weak.upgrade() else { break };
                // Off this runtime's one worker: a listener the delivery
                // fires may make sync calls that wait on this runtime.
                let done = tokio::task::spawn_blocking(move || store.on_push(push)).await;
                if done.is_err() {
                    tracing::error!("delivering an invalidation panicked");
                }
            }
        });
        // Subscribe, retrying while Redis is unreachable; the manager then
        // resubscribes by itself after each reconnect.
        let weak = Arc::downgrade(&store);
        bridge().spawn(async move {
            loop {
                let Some(store) = weak.upgrade() else { break };
                let ch = channel(&store.opts.prefix);
                let subscribed = match store.conn().await {
                    Ok(Conn::Single(mut c)) => c.subscribe(&ch).await,
                    Ok(Conn::Cluster(mut c)) => c.subscribe(&ch).await,
                    Err(e) => Err(e),
                };
                drop(store);
                match subscribed {
                    Ok(()) => {
                        if let Some(s) = weak.upgrade() {
                            s.subscribed.store(true, Ordering::Release);
                            s.tracker.success();
                        }
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        });
        Ok(store)
    }

    /// The options the store runs with.
    pub fn options(&self) -> &RedisOptions {
        &self.opts
    }

    /// This node's id on the invalidation channel.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// The store's counters.
    pub fn stats(&self) -> RemoteStats {
        let c = &self.counters;
        RemoteStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            undecodable: c.undecodable.load(Ordering::Relaxed),
            invalidations_received: c.received.load(Ordering::Relaxed),
            pending_invalidations: self.pending.load(Ordering::Relaxed),
            resubscriptions: c.resubscriptions.load(Ordering::Relaxed),
        }
    }

    /// Whether the store listens on the invalidation channel yet.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Whether a circuit breaker is open (reads or writes are being skipped).
    pub fn breaker_open(&self) -> bool {
        self.read_breaker.is_open() || self.write_breaker.is_open()
    }

    /// Whether the read breaker is open.
    pub fn read_breaker_open(&self) -> bool {
        self.read_breaker.is_open()
    }

    /// Whether the write breaker is open.
    pub fn write_breaker_open(&self) -> bool {
        self.write_breaker.is_open()
    }

    /// What the remote key holds in place of a key's text: the text itself,
    /// or with `hash_keys` `#` and a 128-bit keyed digest of it.
    pub fn key_token(&self, key: &str) -> String {
        match &self.hash_key {
            Some(k) if self.opts.hash_keys => crate::store::remote::keyed_token(k, key),
            _ => key.to_owned(),
        }
    }

    /// The Redis key of `key` in namespace `ns` (`service:tenant:action`,
    /// escaped segments): `prefix:ns:` and the key's [token](Self::key_token).
    pub fn remote_key(&self, ns: &str, key: &str) -> String {
        format!("{}:{ns}:{}", self.opts.prefix, self.key_token(key))
    }

    /// The SCAN pattern for `pattern` in `ns`: the fixed part escaped.
    fn remote_pattern(&self, ns: &str, pattern: &Pattern) -> Result<String, StoreError> {
        let mut base = String::new();
        crate::__private::push_glob_escaped(&mut base, &format!("{}:{ns}:", self.opts.prefix));
        if self.opts.hash_keys {
            return match (pattern.as_str(), pattern.literal()) {
                ("*", _) => Ok(base + "*"),
                (_, Some(k)) => {
                    crate::__private::push_glob_escaped(&mut base, &self.key_token(k));
                    Ok(base)
                }
                _ => Err(hashed_pattern_error(pattern)),
            };
        }
        Ok(base + pattern.as_str())
    }
}

inventory::submit!(crate::store::backends::Factory {
    name: "redis",
    open: |cfg| {
        let opts = cfg.redis.clone().unwrap_or_default();
        shared(&opts).map(|s| s as Arc<dyn crate::store::Remote>)
    },
});

/// Stores shared by every cache of the process, by options.
pub(crate) fn shared(opts: &RedisOptions) -> Result<Arc<RedisStore>, StoreError> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<RedisStore>>>> = OnceLock::new();
    let key = serde_json::to_string(opts).expect("serializes");
    let mut map = STORES.get_or_init(Default::default).lock();
    if let Some(s) = map.get(&key) {
        return Ok(s.clone());
    }
    let s = RedisStore::connect(opts.clone())?;
    s.on_invalidation(crate::store::deliver_invalidation);
    map.insert(key, s.clone());
    Ok(s)
}
