//! The `[dht]` section and `consistency`: how a node joins the cache's
//! peer-to-peer network (`backend = "dht"`, feature `dht`), as pure data.

use super::*;

/// The default number of peers that hold each entry.
pub const DEFAULT_REPLICATION: usize = 3;
/// The most peers configuration may ask to hold each entry.
pub const MAX_REPLICATION: usize = 20;
/// How long peers keep a record when `record_ttl` is not given.
pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(3600);

/// How a node takes part in the DHT: its network, addresses and peers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DhtOptions {
    /// The network's id: nodes of different networks never see each
    /// other's entries (letters, digits, `-`, `_` and `.`). Default
    /// `"default"`.
    pub network: Option<String>,
    /// Multiaddrs to listen on (default `/ip4/0.0.0.0/tcp/0`).
    pub listen: Vec<String>,
    /// Multiaddrs of peers to join through, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// How many peers hold each entry (default 3, at most 20).
    pub replication: Option<usize>,
    /// How long peers keep a record (default one hour): at least as long
    /// as the longest entry TTL, which still expires entries on its own.
    pub record_ttl: Option<ConfigDuration>,
    /// Put before every record key, such as `"cache:"`.
    pub prefix: Option<String>,
    /// A file holding this node's identity (an ed25519 key, created if
    /// absent), for a peer id that survives restarts.
    pub key_file: Option<PathBuf>,
    /// How often records are copied again to the peers that should hold
    /// them (default 30 s); also when a peer joins or leaves.
    pub republish: Option<ConfigDuration>,
    /// How long one DHT query may take before the call computes the value
    /// (default 2 s, at least 100 ms).
    pub query_timeout: Option<ConfigDuration>,
}

impl DhtOptions {
    /// The network id in force.
    pub fn network(&self) -> &str {
        self.network.as_deref().unwrap_or("default")
    }

    /// The replication factor in force.
    pub fn replication(&self) -> usize {
        self.replication.unwrap_or(DEFAULT_REPLICATION)
    }

    /// How long peers keep a record.
    pub fn record_ttl(&self) -> Duration {
        self.record_ttl.map_or(DEFAULT_RECORD_TTL, |d| d.0)
    }

    /// Why these options cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let net = self.network();
        if net.is_empty()
            || !net
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "dht.network = {net:?}: use letters, digits, `-`, `_` and `.` (it names the network's protocols)"
            ));
        }
        if let Some(r) = self.replication
            && !(1..=MAX_REPLICATION).contains(&r)
        {
            return Err(format!(
                "dht.replication = {r}: it must be between 1 and {MAX_REPLICATION}"
            ));
        }
        let within = |name: &str, d: Option<ConfigDuration>, min: Duration| match d {
            Some(ConfigDuration(d)) if d < min || d > MAX_DURATION => Err(format!(
                "dht.{name} = {d:?}: it must be between {min:?} and {} days",
                MAX_DURATION.as_secs() / 86_400
            )),
            _ => Ok(()),
        };
        within("record_ttl", self.record_ttl, Duration::from_secs(1))?;
        within("republish", self.republish, Duration::from_secs(1))?;
        within(
            "query_timeout",
            self.query_timeout,
            Duration::from_millis(100),
        )?;
        for a in &self.bootstrap {
            let (addr, _) = a.rsplit_once("/p2p/").unwrap_or((a, ""));
            if !addr.contains("/tcp/") {
                return Err(format!(
                    "dht.bootstrap: {a:?} needs a TCP address before /p2p/, such as /ip4/10.0.0.5/tcp/4001/p2p/<peer id>"
                ));
            }
        }
        if self.record_ttl().as_secs() < 1 {
            return Err(
                "dht.record_ttl: at least one second (the DHT counts whole seconds)".into(),
            );
        }
        Ok(())
    }
}

/// How replicas agree: the spec's `consistency` section. Only eventual
/// consistency with last-write-wins exists; anything else is an error
/// that names them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Consistency {
    /// `"eventual"`.
    pub strategy: Strategy,
    /// `"last_write_wins"`.
    pub conflict_resolution: ConflictResolution,
}

/// How replicas converge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Replicas converge after writes stop.
    #[default]
    Eventual,
}

/// Which of two writes of one key a replica keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConflictResolution {
    /// The one written last (by its timestamp; ties by writer).
    #[default]
    LastWriteWins,
}
