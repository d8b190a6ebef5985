//! How the store reaches Redis: one server or a cluster, the client, the
//! options' checks, and each operation's deadline, breaker and logging.

use super::*;

/// How the store reaches Redis: one server, or a cluster.
pub(super) enum Link {
    Single(ConnectionManager),
    Cluster(Box<ClusterLink>),
}

pub(super) struct ClusterLink {
    pub(super) client: ClusterClient,
    /// Connected on first use, so the cluster may be down at start.
    pub(super) conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

/// A connection for one operation.
#[derive(Clone)]
pub(super) enum Conn {
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

/// A client for the URL: TLS for `rediss://` (trusting `tls_ca_file`, or the
/// system's roots), credentials and database from the URL.
pub(super) fn client_for(opts: &RedisOptions) -> Result<redis::Client, StoreError> {
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
    pub(super) fn log(&self, what: &str, e: &dyn std::fmt::Display) {
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
    pub(super) async fn conn(&self) -> redis::RedisResult<Conn> {
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
    pub(super) async fn guarded<T, F, Fut>(
        &self,
        op: Op,
        what: &str,
        run: F,
    ) -> Result<T, StoreError>
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
                self.tracker.success();
                if let Some(b) = breaker {
                    b.success()
                }
            }
            Err(e) => {
                self.tracker.failure(e);
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(b) = breaker {
                    b.failure();
                }
                self.log(what, e);
            }
        }
        r
    }
}
