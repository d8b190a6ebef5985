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

mod remote;
pub(crate) use crate::store::bridge::{block_on_bridge, bridge};

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

/// The circuit breaker.
struct Breaker {
    after: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// Nanoseconds since `origin` when the breaker may probe; 0 = closed.
    open_until: AtomicU64,
    probing: AtomicBool,
    origin: Instant,
}

impl Breaker {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Whether an operation may go to Redis now.
    fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        // Open: after the cooldown, one caller probes.
        self.now() >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("redis is reachable again; the circuit breaker closed");
        }
        self.probing.store(false, Ordering::Release);
    }

    fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.after || self.probing.load(Ordering::Acquire) {
            let until = self.now() + self.cooldown.as_nanos() as u64;
            self.open_until.store(until.max(1), Ordering::Release);
        }
        self.probing.store(false, Ordering::Release);
    }

    fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

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

/// The error of a pattern that cannot select hashed keys.
pub(crate) fn hashed_pattern_error(pattern: &Pattern) -> StoreError {
    StoreError::Unsupported(format!(
        "with hash_keys, Redis holds keyed digests of keys: pattern {pattern} can only be `*` or an exact key"
    ))
}

/// How the store reaches Redis: one server, or a cluster.
enum Link {
    Single(ConnectionManager),
    Cluster(Box<ClusterLink>),
}

struct ClusterLink {
    client: ClusterClient,
    /// Connected on first use, so the cluster may be down at start.
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

/// A connection for one operation.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

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

impl RedisOptions {
    /// Checks everything that can be checked without connecting: the URL
    /// (or cluster nodes), the CA file, the encryption key, and that
    /// `hash_keys` has a secret. Configuration calls it before applying
    /// anything.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |m: String| StoreError::Unavailable(m);
        if let Some(k) = &self.encryption_key {
            Sealer::default().encryption_key_hex(k).map_err(bad)?;
        }
        match &self.hash_secret {
            Some(s) if s.len() < 16 => {
                return Err(bad(
                    "redis: hash_secret must be at least 16 bytes long".into()
                ));
            }
            None if self.hash_keys && self.encryption_key.is_none() => {
                return Err(bad(
                    "redis: hash_keys needs a secret to key its digests: set hash_secret (or encryption_key)".into(),
                ));
            }
            _ => {}
        }
        if self.cluster_nodes.is_empty() {
            client_for(self)?;
        } else {
            ClusterClientBuilder::new(self.cluster_nodes.clone())
                .build()
                .map_err(|e| bad(cluster_error(&self.cluster_nodes, &e)))?;
        }
        Ok(())
    }
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
            Some(k) if self.opts.hash_keys => {
                let h = blake3::keyed_hash(k, key.as_bytes());
                let mut out = String::with_capacity(33);
                out.push('#');
                for b in &h.as_bytes()[..16] {
                    use std::fmt::Write as _;
                    let _ = write!(out, "{b:02x}");
                }
                out
            }
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

    fn log(&self, what: &str, e: &dyn std::fmt::Display) {
        let now = self.read_breaker.now() / 1_000_000;
        let last = self.last_log.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= self.opts.log_every_ms)
            && self
                .last_log
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "redis {what} failed: {e} ({} errors so far; calls compute values meanwhile)",
                self.counters.errors.load(Ordering::Relaxed)
            );
        }
    }

    /// A connection: the manager's, or the cluster's (connecting it first).
    async fn conn(&self) -> redis::RedisResult<Conn> {
        match &self.link {
            Link::Single(m) => Ok(Conn::Single(m.clone())),
            Link::Cluster(link) => {
                let mut g = link.conn.lock().await;
                if let Some(c) = &*g {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let c = link.client.get_async_connection().await?;
                *g = Some(c.clone());
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// Runs one operation under its breaker and the deadline. Error text
    /// never carries the URL's password.
    async fn guarded<T, F, Fut>(&self, op: Op, what: &str, run: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let breaker = match op {
            Op::Read => Some(&self.read_breaker),
            Op::Write => Some(&self.write_breaker),
            Op::Invalidate => None,
        };
        if let Some(b) = breaker
            && !b.allow()
        {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable("circuit breaker open".into()));
        }
        let deadline = Duration::from_millis(self.opts.timeout_ms.max(1));
        let call = async {
            let c = self.conn().await?;
            run(c).await
        };
        let r = match tokio::time::timeout(deadline, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Unavailable(scrub(
                e.to_string(),
                &self.opts.url,
            ))),
            Err(_) => Err(StoreError::Timeout(deadline)),
        };
        match &r {
            Ok(_) => {
                if let Some(b) = breaker {
                    b.success()
                }
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(b) = breaker {
                    b.failure();
                }
                self.log(what, e);
            }
        }
        r
    }

    /// Runs an invalidation now, waiting at most `wait`; if it fails, it
    /// joins the outbox, retried every `breaker_cooldown` until it
    /// succeeds. While the outbox holds anything, this node reads nothing
    /// from Redis, so it never serves what a pending invalidation removes.
    /// Returns whether it was applied now.
    pub(crate) fn invalidate_or_queue(self: &Arc<Self>, job: Job, wait: Duration) -> bool {
        // Into the outbox first: from now until it is applied, this node
        // reads nothing from Redis, so no read races the delete.
        let alone = {
            let mut outbox = self.outbox.lock();
            outbox.push_back(job.clone());
            self.pending.store(outbox.len() as u64, Ordering::Release);
            outbox.len() == 1
        };
        if !alone {
            // Keep the order: behind the ones already waiting.
            self.retry_soon();
            return false;
        }
        if let Some(Ok(())) = block_on_bridge(wait, job(self.clone())) {
            self.done(&job);
            return true;
        }
        tracing::warn!(
            "a redis invalidation could not be applied now; it is retried until it is, and this node reads nothing from redis meanwhile"
        );
        self.retry_soon();
        false
    }

    /// Takes an applied job off the outbox (once, however many ran it).
    fn done(&self, job: &Job) {
        let mut outbox = self.outbox.lock();
        if outbox.front().is_some_and(|j| Arc::ptr_eq(j, job)) {
            outbox.pop_front();
        }
        self.pending.store(outbox.len() as u64, Ordering::Release);
    }

    /// Starts the outbox's retry task unless it runs.
    fn retry_soon(self: &Arc<Self>) {
        if self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = Duration::from_millis(self.opts.breaker_cooldown_ms.clamp(10, 60_000));
        bridge().spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(store) = weak.upgrade() else { return };
                loop {
                    let Some(job) = store.outbox.lock().front().cloned() else {
                        break;
                    };
                    if job(store.clone()).await.is_err() {
                        break;
                    }
                    store.done(&job);
                }
                let outbox = store.outbox.lock();
                if outbox.is_empty() {
                    store.retrying.store(false, Ordering::Release);
                    tracing::info!("pending redis invalidations applied");
                    return;
                }
            }
        });
    }

    /// Whether invalidations wait to be applied in Redis.
    pub fn has_pending_invalidations(&self) -> bool {
        self.pending.load(Ordering::Acquire) != 0
    }

    /// Calls `f` for every invalidation another node publishes.
    pub(crate) fn on_invalidation(&self, f: impl Fn(&Invalidation) + Send + Sync + 'static) {
        self.handlers.write().push(Arc::new(f));
    }

    /// Publishes an invalidation for the other nodes.
    pub(crate) async fn publish(&self, mut msg: Invalidation) -> Result<(), StoreError> {
        msg.node = self.node;
        let payload = serde_json::to_string(&msg).expect("serializes");
        let ch = channel(&self.opts.prefix);
        self.guarded(Op::Invalidate, "publish", |mut c| async move {
            c.publish::<_, _, ()>(ch, payload).await
        })
        .await
    }

    fn on_push(self: &Arc<Self>, push: PushInfo) {
        match push.kind {
            redis::PushKind::Message => {}
            // While the channel is down, other nodes' invalidations are
            // lost: once it is back, every local copy goes (as Redis's
            // client-side caching flushes its tracking table). Until then
            // local copies still serve, so an outage fails no call. The
            // connection comes back only when a command is sent, so a node
            // that serves everything locally pings until it is back.
            redis::PushKind::Disconnection => {
                if !self.channel_lost.swap(true, Ordering::AcqRel) {
                    self.ping_until_back();
                }
                return;
            }
            redis::PushKind::Subscribe => {
                if self.channel_lost.swap(false, Ordering::AcqRel) {
                    self.counters
                        .resubscriptions
                        .fetch_add(1, Ordering::Relaxed);
                    self.flush_locals();
                }
                return;
            }
            _ => return,
        }
        // data: [channel, payload]
        let Some(redis::Value::BulkString(bytes)) = push.data.get(1) else {
            return;
        };
        let Ok(msg) = serde_json::from_slice::<Invalidation>(bytes) else {
            tracing::warn!("ignoring a malformed invalidation message");
            return;
        };
        if msg.node == self.node {
            return;
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let handlers = self.handlers.read().clone();
        for h in handlers {
            h(&msg);
        }
    }

    /// Sends a PING every 250 ms until the channel is subscribed again
    /// (each command lets the connection manager reconnect, and it then
    /// resubscribes by itself).
    fn ping_until_back(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        bridge().spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(store) = weak.upgrade() else { return };
                if !store.channel_lost.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(mut c) = store.conn().await {
                    let ping = redis::cmd("PING");
                    let _ = tokio::time::timeout(
                        Duration::from_millis(store.opts.timeout_ms.max(50)),
                        ping.query_async::<String>(&mut c),
                    )
                    .await;
                }
            }
        });
    }

    /// Tells every cache over this store to drop its local copies.
    fn flush_locals(&self) {
        let msg = Invalidation {
            // Names the store, so only caches over it flush.
            node: self.node,
            cache: String::new(),
            op: "flush".into(),
            arg: String::new(),
            tenant: None,
        };
        let handlers = self.handlers.read().clone();
        for h in handlers {
            h(&msg);
        }
    }

    /// Reads and opens the value at `key` of `ns`; an undecodable one is a
    /// counted miss, and is deleted. While invalidations are pending, reads
    /// nothing (a miss), since Redis may still hold what they remove.
    pub async fn get_bytes(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if self.has_pending_invalidations() {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let rk = self.remote_key(ns, key);
        let k = rk.clone();
        let raw: Option<Vec<u8>> = self
            .guarded(Op::Read, "GET", |mut c| async move { c.get(k).await })
            .await?;
        let Some(raw) = raw else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        match self.sealer.open(&raw, rk.as_bytes()) {
            Ok(v) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(v))
            }
            Err(e) => {
                self.count_undecodable(&rk, &e);
                let _ = self
                    .guarded(Op::Invalidate, "UNLINK", |mut c| async move {
                        c.unlink::<_, ()>(rk).await
                    })
                    .await;
                Ok(None)
            }
        }
    }

    pub(crate) fn count_undecodable(&self, rk: &str, e: &CodecError) {
        self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            key = rk,
            "dropping a value from redis that does not open or decode: {e}"
        );
    }

    fn lock_key(&self, ns: &str, key: &str) -> String {
        // Outside every namespace's key space, so no revoke removes it.
        let rk = self.remote_key(ns, key);
        // `~` starts no service segment (it is escaped in names).
        format!(
            "{}:~lock:{}",
            self.opts.prefix,
            &rk[self.opts.prefix.len() + 1..]
        )
    }

    /// Tries to take the load lock of `key`; `Some(token)` when taken.
    pub(crate) async fn try_lock(&self, ns: &str, key: &str) -> Option<String> {
        let ms = self.opts.lock_ms?;
        let lk = self.lock_key(ns, key);
        let token = format!("{}-{}", self.node, rand_seed());
        let t = token.clone();
        let r: Result<Option<String>, _> = self
            .guarded(Op::Write, "SET NX", |mut c| async move {
                redis::cmd("SET")
                    .arg(lk)
                    .arg(t)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms.max(1))
                    .query_async(&mut c)
                    .await
            })
            .await;
        match r {
            Ok(Some(_)) => Some(token),
            _ => None,
        }
    }

    /// Releases the load lock if this node still holds it.
    pub(crate) async fn unlock(&self, ns: &str, key: &str, token: &str) {
        let lk = self.lock_key(ns, key);
        let token = token.to_owned();
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        );
        let _ = self
            .guarded(Op::Invalidate, "unlock", |mut c| async move {
                script.key(lk).arg(token).invoke_async::<i64>(&mut c).await
            })
            .await;
    }

    /// Waits, at most the lock's time, for another node to store `key`.
    pub(crate) async fn wait_for(&self, ns: &str, key: &str) -> Option<Vec<u8>> {
        let ms = self.opts.lock_ms?;
        let deadline = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Ok(Some(v)) = self.get_bytes(ns, key).await {
                return Some(v);
            }
        }
        None
    }

    /// Removes the keys that match the SCAN pattern `glob` and pass
    /// `filter` (given the whole Redis key); returns how many.
    pub(crate) async fn scan_delete(
        &self,
        glob: &str,
        filter: Option<&KeyFilter>,
    ) -> Result<u64, StoreError> {
        match &self.link {
            Link::Single(_) => self.scan_unlink_on(glob, None, filter).await,
            Link::Cluster(_) => {
                // Keys live on every master: scan each.
                let mut removed = 0;
                for node in self.masters().await? {
                    removed += self.scan_unlink_on(glob, Some(node), filter).await?;
                }
                Ok(removed)
            }
        }
    }

    async fn scan_unlink(&self, pattern: String) -> Result<u64, StoreError> {
        self.scan_delete(&pattern, None).await
    }

    /// The Redis key of the set of `ns`'s keys stored with tag `tag`.
    pub(crate) fn tag_key(&self, ns: &str, tag: &str) -> String {
        // `~` starts no service segment (it is escaped in names).
        format!("{}:~tags:{ns}:{}", self.opts.prefix, self.key_token(tag))
    }

    /// The SCAN pattern of the tag sets of `tag` in the namespaces `ns_glob`.
    pub(crate) fn tag_glob(&self, ns_glob: &str, tag: &str) -> String {
        let mut g = String::new();
        crate::__private::push_glob_escaped(&mut g, &format!("{}:~tags:", self.opts.prefix));
        g.push_str(ns_glob);
        g.push(':');
        crate::__private::push_glob_escaped(&mut g, &self.key_token(tag));
        g
    }

    /// Stores a value and records its key in the set of each of its tags
    /// (which lives as long as its newest member).
    pub(crate) async fn set_tagged(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        tags: &[String],
        generation: Option<(String, u64)>,
    ) -> Result<(), StoreError> {
        if tags.is_empty() && generation.is_none() {
            return self.set(ns, key, value, ttl).await;
        }
        let rk = self.remote_key(ns, key);
        let sealed = self.sealer.seal(value, rk.as_bytes())?;
        let tag_keys: Vec<String> = tags.iter().map(|t| self.tag_key(ns, t)).collect();
        let ttl_ms = ttl.map_or(0, |t| (t.as_millis() as u64).max(1));
        if let Some((gen_key, expected)) = generation
            && let Link::Single(_) = &self.link
        {
            // Stored only if the generation is the one the lookup read.
            let script = redis::Script::new(SET_IF_GEN);
            let stored: i64 = self
                .guarded(Op::Write, "SET", |mut c| async move {
                    let mut inv = script.prepare_invoke();
                    inv.key(&rk).key(gen_key);
                    for tk in &tag_keys {
                        inv.key(tk);
                    }
                    inv.arg(sealed).arg(ttl_ms).arg(expected.to_string());
                    inv.invoke_async(&mut c).await
                })
                .await?;
            if stored == 0 {
                tracing::debug!("a value loaded before an invalidation was not stored in redis");
            }
            return Ok(());
        }
        self.guarded(Op::Write, "SET", |mut c| async move {
            let mut set = redis::cmd("SET");
            set.arg(&rk).arg(sealed);
            if ttl_ms != 0 {
                set.arg("PX").arg(ttl_ms);
            }
            set.query_async::<()>(&mut c).await?;
            for tk in tag_keys {
                // One key per command: tag sets may sit on another slot.
                redis::cmd("SADD")
                    .arg(&tk)
                    .arg(&rk)
                    .query_async::<()>(&mut c)
                    .await?;
                if ttl_ms != 0 {
                    redis::cmd("PEXPIRE")
                        .arg(&tk)
                        .arg(ttl_ms)
                        .query_async::<()>(&mut c)
                        .await?
                } else {
                    redis::cmd("PERSIST")
                        .arg(&tk)
                        .query_async::<()>(&mut c)
                        .await?
                }
            }
            Ok(())
        })
        .await
    }

    /// The Redis key of a cache's invalidation generation (`cache` is its
    /// escaped `service:identity`).
    pub(crate) fn gen_key(&self, cache: &str) -> String {
        // `~` starts no service segment (it is escaped in names).
        format!("{}:~gen:{cache}", self.opts.prefix)
    }

    /// Reads the value at `key` of `ns` and, on one server, the cache's
    /// generation in the same round trip (a cluster cannot read both in
    /// one command: no generation, and loads store unconditionally).
    pub(crate) async fn get_with_gen(
        &self,
        ns: &str,
        key: &str,
        gen_key: &str,
    ) -> Result<(Option<Vec<u8>>, Option<u64>), StoreError> {
        if self.has_pending_invalidations() || matches!(self.link, Link::Cluster(_)) {
            return Ok((self.get_bytes(ns, key).await?, None));
        }
        let rk = self.remote_key(ns, key);
        let keys = vec![rk.clone(), gen_key.to_owned()];
        let mut got: Vec<Option<Vec<u8>>> = self
            .guarded(Op::Read, "MGET", |mut c| async move {
                redis::cmd("MGET").arg(keys).query_async(&mut c).await
            })
            .await?;
        let generation = got
            .pop()
            .flatten()
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .parse::<u64>()
                    .unwrap_or(u64::MAX)
            })
            .unwrap_or(0);
        match got.pop().flatten() {
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                Ok((None, Some(generation)))
            }
            Some(raw) => match self.sealer.open(&raw, rk.as_bytes()) {
                Ok(v) => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    Ok((Some(v), Some(generation)))
                }
                Err(e) => {
                    self.count_undecodable(&rk, &e);
                    let _ = self.unlink_keys(vec![rk]).await;
                    Ok((None, Some(generation)))
                }
            },
        }
    }

    /// Moves the cache's generation on, before an invalidation removes
    /// anything. A full Redis refuses it, and refuses the writes it guards
    /// too, so that refusal is no failure.
    pub(crate) async fn bump_gen(&self, gen_key: &str) -> Result<(), StoreError> {
        let k = gen_key.to_owned();
        match self
            .guarded(Op::Invalidate, "INCR", |mut c| async move {
                c.incr::<_, _, i64>(k, 1).await
            })
            .await
        {
            Err(StoreError::Unavailable(m)) if m.contains("OOM") => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// UNLINKs these keys.
    pub(crate) async fn unlink_keys(&self, keys: Vec<String>) -> Result<u64, StoreError> {
        self.unlink_all(keys).await
    }

    /// The SCAN pattern of every tag set in the namespaces `ns_glob`.
    pub(crate) fn tag_glob_all(&self, ns_glob: &str) -> String {
        let mut g = String::new();
        crate::__private::push_glob_escaped(&mut g, &format!("{}:~tags:", self.opts.prefix));
        g.push_str(ns_glob);
        g.push_str(":*");
        g
    }

    /// Removes the tag sets matching `glob` that pass `filter`, and with
    /// `members` the keys they hold.
    pub(crate) async fn delete_tagged(
        &self,
        glob: &str,
        filter: &KeyFilter,
        members: bool,
    ) -> Result<u64, StoreError> {
        let sets = self.scan_keys(glob).await?;
        let mut removed = 0;
        for set in sets.into_iter().filter(|s| filter(s)) {
            if !members {
                self.unlink_all(vec![set]).await?;
                continue;
            }
            let s = set.clone();
            let members: Vec<String> = self
                .guarded(Op::Invalidate, "SMEMBERS", |mut c| async move {
                    c.smembers(s).await
                })
                .await?;
            if !members.is_empty() {
                removed += self.unlink_all(members).await?;
            }
            self.unlink_all(vec![set]).await?;
        }
        Ok(removed)
    }

    /// Every key matching `glob`, on one server or every master.
    async fn scan_keys(&self, glob: &str) -> Result<Vec<String>, StoreError> {
        let nodes: Vec<Option<(String, u16)>> = match &self.link {
            Link::Single(_) => vec![None],
            Link::Cluster(_) => self.masters().await?.into_iter().map(Some).collect(),
        };
        let mut out = Vec::new();
        for node in nodes {
            let mut cursor = 0;
            loop {
                let (next, keys) = self.scan_step(glob, cursor, node.clone()).await?;
                out.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(out)
    }

    /// The cluster's masters, from `CLUSTER NODES`.
    async fn masters(&self) -> Result<Vec<(String, u16)>, StoreError> {
        let text: String = self
            .guarded(Op::Invalidate, "CLUSTER NODES", |mut c| async move {
                redis::cmd("CLUSTER").arg("NODES").query_async(&mut c).await
            })
            .await?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let flags = f.get(2)?;
                if !flags.contains("master") || flags.contains("fail") {
                    return None;
                }
                let addr = f.get(1)?.split('@').next()?;
                let (host, port) = addr.rsplit_once(':')?;
                Some((host.to_string(), port.parse().ok()?))
            })
            .collect())
    }

    /// One SCAN step on one server or one cluster node.
    async fn scan_step(
        &self,
        pattern: &str,
        cursor: u64,
        node: Option<(String, u16)>,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(self.opts.scan_count);
        self.guarded(Op::Invalidate, "SCAN", |c| async move {
            match (c, node) {
                (Conn::Cluster(mut c), Some((host, port))) => {
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    let v = c.route_command(cmd, routing).await?;
                    Ok(redis::from_redis_value(v)?)
                }
                (mut c, _) => cmd.query_async(&mut c).await,
            }
        })
        .await
    }

    /// SCAN MATCH and UNLINK in batches, on one server or one cluster node.
    async fn scan_unlink_on(
        &self,
        pattern: &str,
        node: Option<(String, u16)>,
        filter: Option<&KeyFilter>,
    ) -> Result<u64, StoreError> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, mut keys) = self.scan_step(pattern, cursor, node.clone()).await?;
            if let Some(f) = filter {
                keys.retain(|k| f(k));
            }
            if !keys.is_empty() {
                removed += self.unlink_all(keys).await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// UNLINK in one command on one server; key by key in a cluster, where
    /// the keys of one command must share a slot.
    async fn unlink_all(&self, keys: Vec<String>) -> Result<u64, StoreError> {
        if let Link::Single(_) = &self.link {
            return self
                .guarded(Op::Invalidate, "UNLINK", |mut c| async move {
                    c.unlink(keys).await
                })
                .await;
        }
        let mut n = 0;
        for k in keys {
            n += self
                .guarded(Op::Invalidate, "UNLINK", |mut c| async move {
                    c.unlink::<_, u64>(k).await
                })
                .await?;
        }
        Ok(n)
    }
}

/// A client for the URL: TLS for `rediss://` (trusting `tls_ca_file`, or the
/// system's roots), credentials and database from the URL.
fn client_for(opts: &RedisOptions) -> Result<redis::Client, StoreError> {
    let bad = |m: String| StoreError::Unavailable(m);
    let url = with_resp3(&opts.url);
    if url.starts_with("rediss://") {
        // rustls needs a process-wide crypto provider; ring is the one built in.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let result = match (&opts.tls_ca_file, url.starts_with("rediss://")) {
        (Some(ca), true) => {
            let pem = std::fs::read(ca)
                .map_err(|e| bad(format!("cannot read tls_ca_file {}: {e}", ca.display())))?;
            redis::Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        (Some(_), false) => {
            return Err(bad(format!(
                "tls_ca_file is set but the url {:?} is not rediss://",
                redact_url(&opts.url)
            )));
        }
        (None, _) => redis::Client::open(url.as_str()),
    };
    result.map_err(|e| {
        bad(scrub(
            format!("invalid redis url {:?}: {e}", redact_url(&opts.url)),
            &opts.url,
        ))
    })
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

impl Store for RedisStore {
    fn get<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(self.get_bytes(ns, key))
    }

    fn set<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let rk = self.remote_key(ns, key);
            let sealed = self.sealer.seal(value, rk.as_bytes())?;
            self.guarded(Op::Write, "SET", |mut c| async move {
                let mut cmd = redis::cmd("SET");
                cmd.arg(rk).arg(sealed);
                if let Some(t) = ttl {
                    cmd.arg("PX").arg((t.as_millis() as u64).max(1));
                }
                cmd.query_async::<()>(&mut c).await
            })
            .await
        })
    }

    fn delete<'a>(&'a self, ns: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let rk = self.remote_key(ns, key);
            let n: u64 = self
                .guarded(Op::Invalidate, "UNLINK", |mut c| async move {
                    c.unlink(rk).await
                })
                .await?;
            Ok(n > 0)
        })
    }

    fn revoke<'a>(
        &'a self,
        ns: &'a str,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let p = self.remote_pattern(ns, pattern)?;
            self.scan_unlink(p).await
        })
    }

    fn clear<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut p = String::new();
            crate::__private::push_glob_escaped(&mut p, &format!("{}:{ns}:", self.opts.prefix));
            self.scan_unlink(p + "*").await
        })
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
