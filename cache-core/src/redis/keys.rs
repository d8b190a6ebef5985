//! Values, locks, tag sets, generations and SCAN-based removal.

use super::*;

impl RedisStore {
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

    pub(super) fn lock_key(&self, ns: &str, key: &str) -> String {
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
        self.set_lock(self.lock_key(ns, key), ms)
            .await
            .ok()
            .flatten()
    }

    /// Releases the load lock if this node still holds it.
    pub(crate) async fn unlock(&self, ns: &str, key: &str, token: &str) {
        let _ = self.release_lock(self.lock_key(ns, key), token).await;
    }

    /// `SET lk token NX PX ms`: the token when taken, `None` when another
    /// holds `lk`.
    pub(super) async fn set_lock(&self, lk: String, ms: u64) -> Result<Option<String>, StoreError> {
        let token = format!("{}-{}", self.node, rand_seed());
        let t = token.clone();
        let r: Option<String> = self
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
            .await?;
        Ok(r.map(|_| token))
    }

    /// Deletes `lk` if `token` still holds it.
    pub(super) async fn release_lock(&self, lk: String, token: &str) -> Result<(), StoreError> {
        let token = token.to_owned();
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        );
        self.guarded(Op::Invalidate, "unlock", |mut c| async move {
            script.key(lk).arg(token).invoke_async::<i64>(&mut c).await
        })
        .await
        .map(|_| ())
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

    pub(super) async fn scan_unlink(&self, pattern: String) -> Result<u64, StoreError> {
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
    pub(super) async fn scan_keys(&self, glob: &str) -> Result<Vec<String>, StoreError> {
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
    pub(super) async fn masters(&self) -> Result<Vec<(String, u16)>, StoreError> {
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
    pub(super) async fn scan_step(
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
    pub(super) async fn scan_unlink_on(
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
    pub(super) async fn unlink_all(&self, keys: Vec<String>) -> Result<u64, StoreError> {
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
