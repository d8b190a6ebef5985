//! The Redis store as a [`Store`]: single operations, and the batched
//! ones (`MGET`, pipelined `SET`, multi-key `UNLINK`).

use super::*;

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

    fn get_many<'a>(
        &'a self,
        ns: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, StoreError>> {
        Box::pin(self.get_many_bytes(ns, keys))
    }

    fn set_many<'a>(
        &'a self,
        ns: &'a str,
        entries: Vec<(String, Vec<u8>)>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.set_many_bytes(ns, entries, ttl))
    }

    fn delete_many<'a>(
        &'a self,
        ns: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(0);
            }
            let rks: Vec<String> = keys.iter().map(|k| self.remote_key(ns, k)).collect();
            self.guarded(Op::Invalidate, "UNLINK", |mut c| async move {
                c.unlink(rks).await
            })
            .await
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

impl RedisStore {
    /// Reads and opens the values at `keys` of `ns` with one `MGET` (split
    /// by slot on a cluster); as [`RedisStore::get_bytes`] for each.
    pub async fn get_many_bytes(
        &self,
        ns: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.has_pending_invalidations() {
            self.counters
                .skipped
                .fetch_add(keys.len() as u64, Ordering::Relaxed);
            return Ok(vec![None; keys.len()]);
        }
        let rks: Vec<String> = keys.iter().map(|k| self.remote_key(ns, k)).collect();
        let ask = rks.clone();
        let raw: Vec<Option<Vec<u8>>> = self
            .guarded(Op::Read, "MGET", |mut c| async move {
                redis::cmd("MGET").arg(ask).query_async(&mut c).await
            })
            .await?;
        if raw.len() != rks.len() {
            return Err(StoreError::Unavailable(format!(
                "MGET of {} keys answered {} values",
                rks.len(),
                raw.len()
            )));
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut bad = Vec::new();
        for (raw, rk) in raw.into_iter().zip(rks) {
            let Some(raw) = raw else {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                out.push(None);
                continue;
            };
            match self.sealer.open(&raw, rk.as_bytes()) {
                Ok(v) => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    out.push(Some(v));
                }
                Err(e) => {
                    self.count_undecodable(&rk, &e);
                    bad.push(rk);
                    out.push(None);
                }
            }
        }
        if !bad.is_empty() {
            let _ = self
                .guarded(Op::Invalidate, "UNLINK", |mut c| async move {
                    c.unlink::<_, ()>(bad).await
                })
                .await;
        }
        Ok(out)
    }

    /// Seals and stores each entry with `ttl`: one pipeline on a single
    /// server; one `SET` per key on a cluster, whose slots a pipeline may
    /// not span.
    pub async fn set_many_bytes(
        &self,
        ns: &str,
        entries: Vec<(String, Vec<u8>)>,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut sealed = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let rk = self.remote_key(ns, &k);
            let v = self.sealer.seal(v, rk.as_bytes())?;
            sealed.push((rk, v));
        }
        let set = |rk: String, v: Vec<u8>| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(rk).arg(v);
            if let Some(t) = ttl {
                cmd.arg("PX").arg((t.as_millis() as u64).max(1));
            }
            cmd
        };
        if self.opts.cluster_nodes.is_empty() {
            if sealed.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for (rk, v) in sealed {
                pipe.add_command(set(rk, v)).ignore();
            }
            return self
                .guarded(Op::Write, "SET (pipelined)", |mut c| async move {
                    pipe.query_async::<()>(&mut c).await
                })
                .await;
        }
        for (rk, v) in sealed {
            let cmd = set(rk, v);
            self.guarded(Op::Write, "SET", |mut c| async move {
                cmd.query_async::<()>(&mut c).await
            })
            .await?;
        }
        Ok(())
    }
}
