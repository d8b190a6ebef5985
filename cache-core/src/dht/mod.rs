//! The peer-to-peer store (feature `dht`): entries live in the network's
//! Kademlia DHT, on the `replication` peers closest to each key, and
//! invalidations travel by gossipsub.
//!
//! [`DhtStore`] is a [`Store`] and a [`Broadcast`], so a cache's tier over
//! it is a [`StoreRemote`] like any other store's: `backend = "dht"`
//! (values only in the network) or `backend = "tiered"`, `l2 = "dht"` (an
//! L1 in front, kept coherent by the same broadcast).
//!
//! - **Last write wins.** Each record is an envelope with its write time
//!   and writer; replicas refuse older writes, a reader takes the newest
//!   answer and corrects the peers that answered older ones.
//! - **Invalidation.** A delete writes a tombstone, a revoke or clear adds
//!   to the namespace's revocations (merged, never replaced), each stored on
//!   a majority of the replicas before it counts as done, and outliving the
//!   values it removes: a peer that was away cannot bring an old value back.
//! - **Faults.** A peer without peers, an unreachable bootstrap or a slow
//!   query is a miss (the value is computed), never a failed call; a peer
//!   alone keeps trying to join. An invalidation that no majority of the
//!   replicas took is not reported done: the tier retries it, and serves no
//!   reads from the DHT meanwhile. Faults are counted and logged at most
//!   once per 10 s.

mod lww;
mod node;
mod record;
mod setup;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::futures::future::join;
use libp2p::kad::{Record, RecordKey};
use libp2p::{Multiaddr, PeerId, identity};
use tokio::sync::oneshot;

use crate::pattern::Pattern;
use crate::spec::DhtOptions;
use crate::store::bridge::{block_on_bridge, bridge};
use crate::store::broadcast::{Broadcast, Handler};
use crate::store::{BoxFuture, Invalidation, Store, StoreError, StoreRemote};
use node::{Command, MAX_VALUE, Node, NodeConfig};
use record::{Body, Envelope, now_ms, revocations_key, value_key};
use setup::identity_from;

/// One peer of the cache's network, as a store.
pub struct DhtStore {
    node: Node,
    prefix: String,
    replication: usize,
    record_ttl: Duration,
    query_timeout: Duration,
    /// Values too large for a record even compressed: not stored.
    too_big: AtomicU64,
    warned_big: AtomicBool,
    /// Queries and writes that timed out or failed (each a miss, or an
    /// invalidation the tier retries).
    faults: AtomicU64,
    /// This peer's count of its writes (orders its writes within one
    /// millisecond).
    seq: AtomicU64,
    /// When a fault was last logged (milliseconds since the Unix epoch):
    /// at most one line per [`FAULT_LOG_EVERY`].
    fault_logged_ms: AtomicU64,
}

/// How often faults are logged at most.
const FAULT_LOG_EVERY: Duration = Duration::from_secs(10);

impl std::fmt::Debug for DhtStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtStore")
            .field("peer", &self.node.peer)
            .finish()
    }
}

impl DhtStore {
    /// Starts a peer as `opts` says, on the stores' runtime, and waits
    /// until it listens. Bad options are an error; an unreachable bootstrap
    /// peer is not (the peer keeps trying).
    pub fn start(opts: &DhtOptions) -> Result<Arc<DhtStore>, StoreError> {
        opts.check().map_err(StoreError::Unsupported)?;
        let keypair = match &opts.key_file {
            Some(p) => identity_from(p)?,
            None => identity::Keypair::generate_ed25519(),
        };
        let listen = if opts.listen.is_empty() {
            vec!["/ip4/0.0.0.0/tcp/0".to_string()]
        } else {
            opts.listen.clone()
        };
        let listen = listen
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .map_err(|e| StoreError::Unsupported(format!("dht.listen: {a:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bootstrap = opts
            .bootstrap
            .iter()
            .map(|a| node::peer_addr(a).map_err(StoreError::Unsupported))
            .collect::<Result<Vec<_>, _>>()?;
        let query_timeout = opts.query_timeout.map_or(Duration::from_secs(2), |d| d.0);
        let cfg = NodeConfig {
            network: opts.network().to_owned(),
            keypair,
            listen,
            bootstrap,
            replication: opts.replication(),
            record_ttl: opts.record_ttl(),
            republish: opts.republish.map_or(Duration::from_secs(30), |d| d.0),
            query_timeout,
        };
        let rt = bridge().handle().clone();
        let started = block_on_bridge(Duration::from_secs(15), async move {
            Node::start(cfg, &rt).await
        })
        .unwrap_or_else(|| Err(StoreError::Timeout(Duration::from_secs(15))))?;
        Ok(Arc::new(DhtStore {
            node: started,
            prefix: opts.prefix.clone().unwrap_or_default(),
            replication: opts.replication(),
            record_ttl: opts.record_ttl(),
            query_timeout,
            too_big: AtomicU64::new(0),
            warned_big: AtomicBool::new(false),
            faults: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            fault_logged_ms: AtomicU64::new(0),
        }))
    }

    /// This peer's id.
    pub fn peer_id(&self) -> String {
        self.node.peer.to_string()
    }

    /// The addresses this peer listens on, each ending in `/p2p/<its id>`:
    /// what another peer's `dht.bootstrap` names.
    pub fn listen_addrs(&self) -> Vec<String> {
        self.node
            .addrs
            .lock()
            .iter()
            .map(|a| format!("{a}/p2p/{}", self.node.peer))
            .collect()
    }

    /// Whether this peer's own record store holds the record of `key` in
    /// `ns` (where entries live; for tests and diagnostics).
    pub fn holds(&self, ns: &str, key: &str) -> bool {
        self.node
            .held
            .lock()
            .contains(&value_key(&self.prefix, ns, key))
    }

    /// The keys of the records this peer's own store holds (diagnostics:
    /// what leaves a process for this peer).
    #[doc(hidden)]
    pub fn held_record_keys(&self) -> Vec<Vec<u8>> {
        self.node.held.lock().iter().cloned().collect()
    }

    /// How many peers this one is connected to.
    pub async fn peers(&self) -> usize {
        let (reply, rx) = oneshot::channel();
        if self.node.tx.send(Command::Peers { reply }).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// Cuts this peer off from the others, or lets it join again: a
    /// network partition, for tests of what a peer that was away brings
    /// back.
    #[doc(hidden)]
    pub fn isolate(&self, on: bool) {
        let _ = self.node.tx.send(Command::Isolate(on));
    }

    /// Queries and writes that timed out or failed.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// Counts a fault, and logs it unless one was logged recently.
    fn fault(&self, what: &str) {
        let n = self.faults.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        let last = self.fault_logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= FAULT_LOG_EVERY.as_millis() as u64
            && self
                .fault_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                faults = n,
                "dht: {what} (a miss or a retry; logged at most every 10 s)"
            );
        }
    }

    /// Values not stored because they were too large even compressed.
    pub fn too_big(&self) -> u64 {
        self.too_big.load(Ordering::Relaxed)
    }

    /// Every answer for `key`, within the query timeout (none on a fault).
    async fn query(&self, key: Vec<u8>) -> Vec<(Option<PeerId>, Record)> {
        let (local, local_rx) = oneshot::channel();
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Get {
            key: RecordKey::new(&key),
            local,
            reply,
        };
        if self.node.tx.send(cmd).is_err() {
            self.fault("the peer stopped");
            return Vec::new();
        }
        // This peer's own copy: what a lookup that times out still has.
        let own = local_rx.await.ok().flatten().map(|r| (None, r));
        // Kademlia ends the query at `query_timeout` with what it found;
        // the extra time is for that.
        match tokio::time::timeout(self.query_timeout + Duration::from_millis(500), rx).await {
            Ok(Ok(found)) => found,
            Ok(Err(_)) => {
                self.fault("the peer stopped");
                own.into_iter().collect()
            }
            Err(_) => {
                self.fault("a lookup timed out");
                own.into_iter().collect()
            }
        }
    }

    /// Stores `env` under `key` on `quorum` of the peers that should hold
    /// it (as many as are connected, at most).
    async fn write(&self, key: Vec<u8>, env: &Envelope, quorum: usize) -> Result<(), StoreError> {
        let mut record = Record::new(RecordKey::new(&key), env.encode());
        record.publisher = Some(self.node.peer);
        let keep = env
            .expires_ms
            .map_or(self.record_ttl, |e| {
                Duration::from_millis(e.saturating_sub(now_ms())).min(self.record_ttl)
            })
            .max(Duration::from_secs(1));
        record.expires = Some(Instant::now() + keep);
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Put {
            record,
            quorum,
            reply,
        };
        self.node
            .tx
            .send(cmd)
            .map_err(|_| StoreError::Unavailable("dht: the node stopped".into()))?;
        let r = match tokio::time::timeout(self.query_timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(StoreError::Unavailable(format!("dht: {e}"))),
            Ok(Err(_)) => Err(StoreError::Unavailable("dht: the node stopped".into())),
            Err(_) => Err(StoreError::Timeout(self.query_timeout)),
        };
        if let Err(e) = &r {
            self.fault(&format!("a write failed: {e}"));
        }
        r
    }

    /// A majority of the replicas: what an invalidation waits for.
    fn majority(&self) -> usize {
        self.replication / 2 + 1
    }

    fn envelope(&self, body: Body, expires_ms: Option<u64>) -> Envelope {
        Envelope {
            written_ms: now_ms(),
            writer: self.node.peer.to_bytes(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            expires_ms,
            body,
        }
    }

    async fn revoke_pattern(&self, ns: &str, pattern: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let env = self.envelope(
            Body::Revocations(vec![(pattern.to_owned(), now)]),
            Some(now + self.record_ttl.as_millis() as u64),
        );
        let key = revocations_key(&self.prefix, ns);
        self.write(key, &env, self.majority()).await
    }

    /// The newest answer, after the namespace's revocations, and the peers
    /// that answered an older one.
    fn settle(
        &self,
        key: &str,
        values: Vec<(Option<PeerId>, Record)>,
        revocations: Vec<(Option<PeerId>, Record)>,
    ) -> (Option<(Envelope, Record)>, Vec<PeerId>) {
        let mut newest: Option<(Envelope, Record)> = None;
        let mut answers = Vec::new();
        for (peer, r) in values {
            let Some(env) = Envelope::decode(&r.value) else {
                continue;
            };
            answers.push((peer, env.clone()));
            if newest.as_ref().is_none_or(|(n, _)| env.newer_than(n)) {
                newest = Some((env, r));
            }
        }
        let Some((env, rec)) = newest else {
            return (None, Vec::new());
        };
        let stale: Vec<PeerId> = answers
            .iter()
            .filter(|(_, e)| env.newer_than(e))
            .filter_map(|(p, _)| *p)
            .collect();
        let revoked = revocations
            .iter()
            .filter_map(|(_, r)| Envelope::decode(&r.value))
            .filter_map(|e| match e.body {
                Body::Revocations(list) => Some(list),
                _ => None,
            })
            .flatten()
            .any(|(p, at)| at >= env.written_ms && Pattern::new(&p).is_ok_and(|p| p.matches(key)));
        if revoked {
            return (None, stale);
        }
        (Some((env, rec)), stale)
    }
}

impl Store for DhtStore {
    fn get<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let vk = value_key(&self.prefix, ns, key);
            let rk = revocations_key(&self.prefix, ns);
            let (values, revocations) = join(self.query(vk), self.query(rk)).await;
            let (newest, stale) = self.settle(key, values, revocations);
            let Some((env, rec)) = newest else {
                return Ok(None);
            };
            if !stale.is_empty() {
                // Read repair: the peers that answered an older write get
                // the newest.
                let _ = self.node.tx.send(Command::PutTo {
                    record: rec,
                    peers: stale,
                });
            }
            if env.expired(now_ms()) {
                return Ok(None);
            }
            match env.body {
                Body::Value { bytes, compressed } if compressed => {
                    zstd::bulk::decompress(&bytes, 64 * MAX_VALUE)
                        .map(Some)
                        .map_err(|e| {
                            StoreError::Unavailable(format!(
                                "dht: a value does not decompress: {e}"
                            ))
                        })
                }
                Body::Value { bytes, .. } => Ok(Some(bytes)),
                _ => Ok(None),
            }
        })
    }

    fn set<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let room = MAX_VALUE - 512;
            let body = if value.len() <= room {
                Body::Value {
                    bytes: value,
                    compressed: false,
                }
            } else {
                match zstd::bulk::compress(&value, 3) {
                    Ok(z) if z.len() <= room => Body::Value {
                        bytes: z,
                        compressed: true,
                    },
                    _ => {
                        self.too_big.fetch_add(1, Ordering::Relaxed);
                        if !self.warned_big.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                "dht: a value of {} bytes is too large for a record even compressed; such values are not stored in the DHT (counted in too_big)",
                                value.len()
                            );
                        }
                        return Ok(());
                    }
                }
            };
            let expires = ttl.map(|t| now_ms().saturating_add(t.as_millis() as u64));
            let env = self.envelope(body, expires);
            // Kept here whatever the peers say, and republished to them:
            // a value no peer took yet is not an error.
            if let Err(e) = self.write(value_key(&self.prefix, ns, key), &env, 1).await {
                tracing::debug!("dht: a value reached no replica yet: {e}");
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, ns: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            // The tombstone outlives any value it removes.
            let expires = now_ms() + self.record_ttl.as_millis() as u64;
            let env = self.envelope(Body::Tombstone, Some(expires));
            self.write(value_key(&self.prefix, ns, key), &env, self.majority())
                .await?;
            // The network cannot tell whether the key was there.
            Ok(false)
        })
    }

    fn revoke<'a>(
        &'a self,
        ns: &'a str,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            self.revoke_pattern(ns, pattern.as_str()).await?;
            Ok(0)
        })
    }

    fn clear<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            self.revoke_pattern(ns, "*").await?;
            Ok(0)
        })
    }

    fn report(&self, health: &mut crate::store::Health) {
        health.peers = Some(self.node.connected.load(Ordering::Relaxed));
        // Queries that timed out answer from the local copy, so the tier
        // above never sees them fail.
        health.errors += self.faults();
    }
}

impl Broadcast for DhtStore {
    fn publish(&self, msg: Invalidation) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let bytes = serde_json::to_vec(&msg).expect("an invalidation encodes");
            let (reply, rx) = oneshot::channel();
            self.node
                .tx
                .send(Command::Publish { bytes, reply })
                .map_err(|_| StoreError::Unavailable("dht: the node stopped".into()))?;
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StoreError::Unavailable(format!("dht: publish: {e}"))),
                Err(_) => Err(StoreError::Unavailable("dht: the node stopped".into())),
            }
        })
    }

    fn subscribe(&self, handler: Handler) {
        self.node.handlers.write().push(handler);
    }
}

impl DhtStore {
    /// This peer as a cache's tier, hashing, compressing and encrypting as
    /// `remote` says; invalidations other peers publish reach this
    /// process's caches.
    pub fn tier(
        self: &Arc<Self>,
        remote: &crate::spec::RemoteOptions,
    ) -> Result<Arc<StoreRemote>, StoreError> {
        let r = StoreRemote::with_options(
            "dht",
            self.clone(),
            Some(self.clone() as Arc<dyn Broadcast>),
            self.query_timeout * 2 + Duration::from_millis(500),
            remote,
        )?;
        r.on_invalidation(crate::store::deliver_invalidation);
        Ok(r)
    }
}
