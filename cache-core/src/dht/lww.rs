//! The record store each peer keeps: Kademlia's in-memory store behind
//! last-write-wins. A write older than the one held is refused (the held
//! one stays), revocations merge, and a record that is no envelope of ours
//! is not stored at all.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use libp2p::PeerId;
use libp2p::kad::store::{self, MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use parking_lot::Mutex;

use super::record::Envelope;

/// The keys a peer's store holds, readable from outside its task (tests
/// count where entries live).
pub(crate) type Held = Arc<Mutex<HashSet<Vec<u8>>>>;

/// Last-write-wins over Kademlia's memory store.
pub(crate) struct LwwStore {
    inner: MemoryStore,
    held: Held,
    /// How long revocations are kept (the record TTL, in milliseconds).
    keep_ms: u64,
}

impl LwwStore {
    /// An empty store for `peer`, holding up to `max_records` records of at
    /// most `max_value_bytes`.
    pub(crate) fn new(
        peer: PeerId,
        max_records: usize,
        max_value_bytes: usize,
        keep_ms: u64,
        held: Held,
    ) -> Self {
        let cfg = MemoryStoreConfig {
            max_records,
            max_value_bytes,
            ..MemoryStoreConfig::default()
        };
        LwwStore {
            inner: MemoryStore::with_config(peer, cfg),
            held,
            keep_ms,
        }
    }
}

impl LwwStore {
    /// Stores a record written here, when no peer is there to take it.
    pub(crate) fn put_local(&mut self, r: Record) -> Result<(), String> {
        RecordStore::put(self, r).map_err(|e| format!("{e:?}"))
    }
}

impl RecordStore for LwwStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.inner.get(k)
    }

    fn put(&mut self, mut r: Record) -> store::Result<()> {
        let Some(new) = Envelope::decode(&r.value) else {
            // Not ours (another program on the port, or a corrupt write):
            // accepted on the wire, never kept or served.
            tracing::debug!("refusing a DHT record that is no cache envelope");
            return Ok(());
        };
        if let Some(old) = self
            .inner
            .get(&r.key)
            .and_then(|o| Envelope::decode(&o.value))
        {
            let merged = old.clone().merge(new, self.keep_ms);
            if merged == old {
                // Older than (or the same as) what is held.
                return Ok(());
            }
            r.value = merged.encode();
        }
        let key = r.key.to_vec();
        self.inner.put(r)?;
        self.held.lock().insert(key);
        Ok(())
    }

    fn remove(&mut self, k: &RecordKey) {
        self.inner.remove(k);
        self.held.lock().remove(k.as_ref());
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        self.inner.add_provider(record)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        self.inner.remove_provider(k, p)
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{Body, Envelope};
    use super::*;

    fn record(at: u64, body: Body) -> Record {
        let env = Envelope {
            written_ms: at,
            writer: b"w".to_vec(),
            seq: 0,
            expires_ms: None,
            body,
        };
        Record::new(RecordKey::new(&b"k"), env.encode())
    }

    fn held(s: &LwwStore) -> Body {
        Envelope::decode(&s.get(&RecordKey::new(&b"k")).unwrap().value)
            .unwrap()
            .body
    }

    #[test]
    fn an_older_write_arriving_later_is_refused() {
        let mut s = LwwStore::new(PeerId::random(), 100, 1 << 16, u64::MAX, Held::default());
        let value = |b: &[u8]| Body::Value {
            bytes: b.to_vec(),
            compressed: false,
        };
        s.put(record(20, value(b"new"))).unwrap();
        s.put(record(10, value(b"old"))).unwrap();
        assert_eq!(held(&s), value(b"new"));
        // A tombstone newer than the value replaces it; the value written
        // before it, replicated again by a peer that was away, does not.
        s.put(record(30, Body::Tombstone)).unwrap();
        s.put(record(20, value(b"new"))).unwrap();
        assert_eq!(held(&s), Body::Tombstone);
        // Bytes that are no envelope are never kept.
        s.put(Record::new(RecordKey::new(&b"x"), b"junk".to_vec()))
            .unwrap();
        assert!(s.get(&RecordKey::new(&b"x")).is_none());
    }
}
