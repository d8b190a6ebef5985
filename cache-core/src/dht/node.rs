//! One peer of the network: a libp2p swarm (Kademlia for records,
//! gossipsub for invalidations, identify for addresses) driven by a task on
//! the bridge runtime, and the handle that sends it commands.
//!
//! Networks are kept apart by their protocol names (`/cache/{network}/...`):
//! a peer of another network connects but speaks none of them. Kademlia
//! runs in server mode (on loopback a peer never learns an external
//! address), without caching records at extra peers (so an entry lives on
//! the peers that should hold it, and at most one more).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{
    self, KBucketDistance, KBucketKey, QueryId, QueryResult, Quorum, Record, RecordKey,
};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, gossipsub, identify, identity, noise,
    tcp, yamux,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};

use super::lww::{Held, LwwStore};
use crate::store::broadcast::Handler;
use crate::store::{Invalidation, StoreError};

/// The largest record value accepted (after compression).
pub(crate) const MAX_VALUE: usize = 64 * 1024;

/// The answers to a lookup: who answered (`None`: this peer) and what.
pub(crate) type Answers = Vec<(Option<PeerId>, Record)>;

/// What the swarm was asked to do.
pub(crate) enum Command {
    /// Every answer for `key` (the local copy included), and at once
    /// this peer's own copy (what a query that times out still has).
    Get {
        key: RecordKey,
        local: oneshot::Sender<Option<Record>>,
        reply: oneshot::Sender<Answers>,
    },
    /// Stores `record` here and on the peers closest to its key; the reply
    /// says whether `quorum` of them took it (no peers: only here, `Ok`).
    Put {
        record: Record,
        quorum: usize,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stores `record` on `peers` (a read that saw them answer an older
    /// version corrects them).
    PutTo { record: Record, peers: Vec<PeerId> },
    /// Sends an invalidation to every other peer.
    Publish {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// How many peers are connected.
    Peers { reply: oneshot::Sender<usize> },
    /// Cuts this peer off from the others (`true`) or lets it join again:
    /// a network partition, for tests.
    Isolate(bool),
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    kad: kad::Behaviour<LwwStore>,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
}

/// How a peer is set up.
pub(crate) struct NodeConfig {
    pub(crate) network: String,
    pub(crate) keypair: identity::Keypair,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) bootstrap: Vec<(PeerId, Multiaddr)>,
    pub(crate) replication: usize,
    pub(crate) record_ttl: Duration,
    pub(crate) republish: Duration,
    pub(crate) query_timeout: Duration,
}

/// The handle of a running peer. Dropping every handle stops its task.
pub(crate) struct Node {
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) peer: PeerId,
    pub(crate) addrs: Arc<Mutex<Vec<Multiaddr>>>,
    pub(crate) held: Held,
    pub(crate) handlers: Arc<RwLock<Vec<Handler>>>,
    /// Peers connected now, kept by the swarm's task.
    pub(crate) connected: Arc<AtomicUsize>,
}

fn protocol(network: &str, what: &str) -> String {
    format!("/cache/{network}/{what}")
}

fn build(cfg: &NodeConfig, held: Held) -> Result<Swarm<Behaviour>, String> {
    let net = cfg.network.clone();
    let (replication, record_ttl) = (cfg.replication, cfg.record_ttl);
    let (republish, query_timeout) = (cfg.republish, cfg.query_timeout);
    let swarm = SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| format!("the transport: {e}"))?
        .with_behaviour(|key: &identity::Keypair| {
            let local = key.public().to_peer_id();
            let kad_proto = StreamProtocol::try_from_owned(protocol(&net, "kad/1.0.0"))
                .map_err(|e| format!("{e}"))?;
            let mut k = kad::Config::new(kad_proto);
            k.set_replication_factor(NonZeroUsize::new(replication.max(1)).expect("at least 1"))
                .set_record_ttl(Some(record_ttl))
                .set_publication_interval(Some(republish))
                // Re-replication is this node's own (`replicate`), which
                // reaches the same peers as the publisher's put.
                .set_replication_interval(None)
                .set_query_timeout(query_timeout)
                .set_max_packet_size(4 * MAX_VALUE)
                .set_caching(kad::Caching::Disabled)
                .set_periodic_bootstrap_interval(Some(Duration::from_secs(30)));
            let keep_ms = record_ttl.as_millis() as u64;
            let store = LwwStore::new(local, 100_000, 2 * MAX_VALUE, keep_ms, held);
            let mut kad = kad::Behaviour::with_config(local, store, k);
            kad.set_mode(Some(kad::Mode::Server));
            let g = gossipsub::ConfigBuilder::default()
                .protocol_id_prefix(protocol(&net, "meshsub"))
                .heartbeat_initial_delay(Duration::from_millis(100))
                .heartbeat_interval(Duration::from_millis(500))
                .mesh_n(4)
                .mesh_n_low(2)
                .mesh_n_high(8)
                .mesh_outbound_min(1)
                .validation_mode(gossipsub::ValidationMode::Strict)
                .build()
                .map_err(|e| format!("gossipsub: {e:?}"))?;
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), g)?;
            let identify = identify::Behaviour::new(
                identify::Config::new(protocol(&net, "1.0.0"), key.public())
                    .with_agent_version(format!("cache-core/{}", env!("CARGO_PKG_VERSION"))),
            );
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                kad,
                gossipsub,
                identify,
            })
        })
        .map_err(|e| format!("the behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    Ok(swarm)
}

impl Node {
    /// Starts a peer on `rt`: listening, joining through the bootstrap
    /// peers (retried while it has none), serving records and invalidations.
    pub(crate) async fn start(
        cfg: NodeConfig,
        rt: &tokio::runtime::Handle,
    ) -> Result<Node, StoreError> {
        let held: Held = Default::default();
        let handlers: Arc<RwLock<Vec<Handler>>> = Default::default();
        let addrs: Arc<Mutex<Vec<Multiaddr>>> = Default::default();
        let connected: Arc<AtomicUsize> = Default::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let peer = cfg.keypair.public().to_peer_id();
        let task = Task {
            topic: gossipsub::IdentTopic::new(protocol(&cfg.network, "invalidations")),
            kad_proto: protocol(&cfg.network, "kad/1.0.0"),
            handlers: handlers.clone(),
            addrs: addrs.clone(),
            connected: connected.clone(),
            gets: HashMap::new(),
            puts: HashMap::new(),
            ready: Some(ready_tx),
            isolated: false,
            replicate_at: None,
        };
        let held2 = held.clone();
        rt.spawn(async move {
            let mut swarm = match build(&cfg, held2) {
                Ok(s) => s,
                Err(e) => {
                    if let Some(r) = task.ready {
                        let _ = r.send(Err(e));
                    }
                    return;
                }
            };
            task.run(&mut swarm, cfg, rx).await;
        });
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(Node {
                tx,
                peer,
                addrs,
                held,
                handlers,
                connected,
            }),
            Ok(Ok(Err(e))) => Err(StoreError::Unavailable(format!("dht: {e}"))),
            _ => Err(StoreError::Unavailable(
                "dht: the node did not start listening within 10 s".into(),
            )),
        }
    }
}

/// The state of the swarm's task.
struct Task {
    topic: gossipsub::IdentTopic,
    kad_proto: String,
    handlers: Arc<RwLock<Vec<Handler>>>,
    addrs: Arc<Mutex<Vec<Multiaddr>>>,
    connected: Arc<AtomicUsize>,
    gets: HashMap<QueryId, (Answers, oneshot::Sender<Answers>)>,
    puts: HashMap<QueryId, oneshot::Sender<Result<(), String>>>,
    ready: Option<oneshot::Sender<Result<(), String>>>,
    isolated: bool,
    /// When to copy this peer's records to the peers that should hold
    /// them: soon after a peer joins or leaves.
    replicate_at: Option<tokio::time::Instant>,
}

impl Task {
    async fn run(
        mut self,
        swarm: &mut Swarm<Behaviour>,
        cfg: NodeConfig,
        mut rx: mpsc::UnboundedReceiver<Command>,
    ) {
        for a in &cfg.listen {
            if let Err(e) = swarm.listen_on(a.clone()) {
                if let Some(r) = self.ready.take() {
                    let _ = r.send(Err(format!("cannot listen on {a}: {e}")));
                }
                return;
            }
        }
        if let Err(e) = swarm.behaviour_mut().gossipsub.subscribe(&self.topic) {
            tracing::warn!("dht: cannot subscribe to invalidations: {e}");
        }
        join(swarm, &cfg.bootstrap);
        let mut retry = tokio::time::interval(Duration::from_secs(2));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut republish =
            tokio::time::interval_at(tokio::time::Instant::now() + cfg.republish, cfg.republish);
        republish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Isolate(on)) => {
                        self.isolated = on;
                        if on {
                            let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
                            for p in peers {
                                let _ = swarm.disconnect_peer_id(p);
                            }
                        } else {
                            join(swarm, &cfg.bootstrap);
                        }
                    }
                    Some(c) => self.command(swarm, c),
                    // Every handle is gone: the peer leaves.
                    None => return,
                },
                ev = swarm.select_next_some() => self.event(swarm, ev),
                _ = tokio::time::sleep_until(
                    self.replicate_at.unwrap_or_else(tokio::time::Instant::now)
                ), if self.replicate_at.is_some() => {
                    self.replicate_at = None;
                    replicate(swarm, cfg.replication);
                }
                _ = republish.tick() => {
                    if !self.isolated {
                        replicate(swarm, cfg.replication);
                    }
                }
                _ = retry.tick() => {
                    // A peer alone keeps trying to join.
                    if !self.isolated
                        && swarm.connected_peers().next().is_none()
                        && !cfg.bootstrap.is_empty()
                    {
                        join(swarm, &cfg.bootstrap);
                    }
                }
            }
        }
    }

    fn command(&mut self, swarm: &mut Swarm<Behaviour>, cmd: Command) {
        match cmd {
            Command::Get { key, local, reply } => {
                let kad = &mut swarm.behaviour_mut().kad;
                let _ = local.send(kad.store_mut().get(&key).map(|r| r.into_owned()));
                let id = kad.get_record(key);
                self.gets.insert(id, (Vec::new(), reply));
            }
            Command::Put {
                record,
                quorum,
                reply,
            } => {
                let kad = &mut swarm.behaviour_mut().kad;
                // Peers of this network (others may be connected too).
                let peers: usize = kad.kbuckets().map(|b| b.num_entries()).sum();
                let quorum = quorum.min(peers);
                if quorum == 0 {
                    // Nobody to tell: kept here, and copied to peers by
                    // republication once there are some.
                    let r = kad.store_mut().put_local(record);
                    let _ = reply.send(r);
                    return;
                }
                let q = Quorum::N(NonZeroUsize::new(quorum).expect("checked"));
                match kad.put_record(record, q) {
                    Ok(id) => {
                        self.puts.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("{e:?}")));
                    }
                }
            }
            Command::PutTo { record, peers } => {
                let kad = &mut swarm.behaviour_mut().kad;
                kad.put_record_to(record, peers.into_iter(), Quorum::One);
            }
            Command::Publish { bytes, reply } => {
                let g = &mut swarm.behaviour_mut().gossipsub;
                let r = match g.publish(self.topic.clone(), bytes) {
                    Ok(_) => Ok(()),
                    // Alone: nobody holds a copy to drop.
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
                        if swarm
                            .behaviour_mut()
                            .kad
                            .kbuckets()
                            .all(|b| b.num_entries() == 0) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(format!("{e}")),
                };
                let _ = reply.send(r);
            }
            Command::Peers { reply } => {
                let _ = reply.send(swarm.connected_peers().count());
            }
            // Handled by the loop, which knows the bootstrap peers.
            Command::Isolate(_) => {}
        }
    }

    fn event(&mut self, swarm: &mut Swarm<Behaviour>, ev: SwarmEvent<BehaviourEvent>) {
        if matches!(
            ev,
            SwarmEvent::ConnectionEstablished { .. } | SwarmEvent::ConnectionClosed { .. }
        ) {
            self.connected
                .store(swarm.connected_peers().count(), Ordering::Relaxed);
        }
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if self.isolated => {
                let _ = swarm.disconnect_peer_id(peer_id);
            }
            // A peer joined or left: which peers should hold a record may
            // have changed (debounced, so a burst costs one pass).
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                is_new_peer: true,
                ..
            }))
            | SwarmEvent::ConnectionClosed {
                num_established: 0,
                ..
            } if self.replicate_at.is_none() && !self.isolated => {
                self.replicate_at = Some(tokio::time::Instant::now() + Duration::from_millis(500));
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                self.addrs.lock().push(address);
                if let Some(r) = self.ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            }))
                // Kademlia learns a dialling peer's address only from
                // identify; peers of other networks speak none of ours.
                if info.protocols.iter().any(|p| p.as_ref() == self.kad_proto) => {
                    for a in info.listen_addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, a);
                    }
                }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                ..
            })) => match result {
                QueryResult::GetRecord(r) => {
                    if let Some((found, _)) = self.gets.get_mut(&id)
                        && let Ok(kad::GetRecordOk::FoundRecord(p)) = r
                    {
                        found.push((p.peer, p.record));
                    }
                    if step.last
                        && let Some((found, reply)) = self.gets.remove(&id)
                    {
                        let _ = reply.send(found);
                    }
                }
                QueryResult::PutRecord(r) => {
                    if let Some(reply) = self.puts.remove(&id) {
                        let _ = reply.send(r.map(|_| ()).map_err(|e| format!("{e:?}")));
                    }
                }
                _ => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => match serde_json::from_slice::<Invalidation>(&message.data) {
                Ok(msg) => {
                    let handlers = self.handlers.read().clone();
                    // Off the swarm's task: a handler may make cache calls
                    // that reach this peer.
                    tokio::task::spawn_blocking(move || {
                        for h in &handlers {
                            h(&msg);
                        }
                    });
                }
                Err(_) => tracing::warn!("dht: ignoring a malformed invalidation"),
            },
            _ => {}
        }
    }
}

/// Copies every live record this peer holds to the peers that should hold
/// it (each keeps the newest write, so this never undoes a newer one).
///
/// Those are the `replication` peers closest to its key, this one
/// included, other than its publisher, whose own copy is the one extra:
/// the set the publisher's first put reached, among the peers connected
/// now. A plain `put_record` from a replica would rank every peer but
/// itself and reach one peer too many.
fn replicate(swarm: &mut Swarm<Behaviour>, replication: usize) {
    let local = *swarm.local_peer_id();
    // The routing table keeps a peer that just left for a while; only
    // peers connected now can take a copy.
    let connected: std::collections::HashSet<PeerId> = swarm.connected_peers().copied().collect();
    let kad = &mut swarm.behaviour_mut().kad;
    let now = std::time::Instant::now();
    let records: Vec<Record> = kad
        .store_mut()
        .records()
        .filter(|r| r.expires.is_none_or(|e| e > now))
        .map(|r| r.into_owned())
        .collect();
    for r in records {
        let key = KBucketKey::new(r.key.clone());
        let publisher = r.publisher.unwrap_or(local);
        let own = KBucketKey::from(local).distance(&key);
        let mut ranked: Vec<(KBucketDistance, PeerId)> = kad
            .get_closest_local_peers(&key)
            .filter(|k| connected.contains(k.preimage()))
            .take(replication + 1)
            .map(|k| (k.distance(&key), *k.preimage()))
            .collect();
        ranked.push((own, local));
        ranked.sort();
        let targets: Vec<PeerId> = ranked
            .into_iter()
            .filter(|(_, p)| *p != publisher)
            .take(replication)
            .map(|(_, p)| p)
            .filter(|p| *p != local)
            .collect();
        if !targets.is_empty() {
            kad.put_record_to(r, targets.into_iter(), Quorum::One);
        }
    }
}

/// Dials the bootstrap peers and starts looking for the others.
fn join(swarm: &mut Swarm<Behaviour>, bootstrap: &[(PeerId, Multiaddr)]) {
    for (peer, addr) in bootstrap {
        swarm.behaviour_mut().kad.add_address(peer, addr.clone());
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::debug!("dht: cannot dial {addr}: {e}");
        }
    }
    if !bootstrap.is_empty() {
        let _ = swarm.behaviour_mut().kad.bootstrap();
    }
}

/// `addr` split into the address and the peer id its `/p2p/` part names.
pub(crate) fn peer_addr(addr: &str) -> Result<(PeerId, Multiaddr), String> {
    let mut a: Multiaddr = addr
        .parse()
        .map_err(|e| format!("dht.bootstrap: {addr:?} is no multiaddr: {e}"))?;
    match a.pop() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Ok((peer, a)),
        _ => Err(format!(
            "dht.bootstrap: {addr:?} must end with /p2p/<peer id>"
        )),
    }
}
