//! The byte store contract and the codec envelope: a value whose type or
//! format changed reads back as a miss, never as garbage.

use std::sync::Arc;
use std::time::Duration;

use cache_core::codec::{FORMAT_VERSION, type_fingerprint};
use cache_core::{Clock, Codec, CodecError, MemoryStore, Pattern, Postcard, Store, TypedStore};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserV1 {
    id: u64,
    name: String,
}

mod v2 {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct UserV1 {
        pub id: u64,
        pub email: Option<String>,
        pub name: String,
    }
}

#[test]
fn envelope_roundtrip_and_rejections() {
    let u = UserV1 {
        id: 7,
        name: "ada".into(),
    };
    let bytes = Postcard.encode(&u).unwrap();
    assert_eq!(bytes[0], FORMAT_VERSION);
    assert_eq!(&bytes[1..9], &type_fingerprint::<UserV1>().to_le_bytes());
    assert_eq!(Postcard.decode::<UserV1>(&bytes).unwrap(), u);

    assert!(matches!(
        Postcard.decode::<v2::UserV1>(&bytes),
        Err(CodecError::TypeMismatch { .. })
    ));
    assert!(matches!(
        Postcard.decode::<UserV1>(&bytes[..4]),
        Err(CodecError::Truncated(4))
    ));
    let mut other_version = bytes.clone();
    other_version[0] = 99;
    assert!(matches!(
        Postcard.decode::<UserV1>(&other_version),
        Err(CodecError::Version { found: 99 })
    ));
    let mut cut = bytes.clone();
    cut.truncate(bytes.len() - 2);
    assert!(matches!(
        Postcard.decode::<UserV1>(&cut),
        Err(CodecError::Payload(_))
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Postcard.decode::<UserV1>(&longer),
        Err(CodecError::Payload(_))
    ));
}

#[tokio::test]
async fn memory_store_contract() {
    let (clock, time) = Clock::manual();
    let s = MemoryStore::with_clock(clock);
    s.set(
        "user",
        "get_user:1",
        b"a".to_vec(),
        Some(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    s.set("user", "get_user:2", b"b".to_vec(), None)
        .await
        .unwrap();
    s.set("user", "get_profile:1", b"c".to_vec(), None)
        .await
        .unwrap();
    s.set("order", "get_user:1", b"other service".to_vec(), None)
        .await
        .unwrap();

    assert_eq!(
        s.get("user", "get_user:1").await.unwrap(),
        Some(b"a".to_vec())
    );
    time.advance(Duration::from_secs(10));
    assert_eq!(s.get("user", "get_user:1").await.unwrap(), None, "expired");

    let p = Pattern::new("get_user:*").unwrap();
    assert_eq!(s.revoke("user", &p).await.unwrap(), 1);
    assert_eq!(
        s.get("order", "get_user:1").await.unwrap(),
        Some(b"other service".to_vec())
    );
    assert!(s.delete("user", "get_profile:1").await.unwrap());
    assert!(!s.delete("user", "get_profile:1").await.unwrap());
    assert_eq!(s.clear("order").await.unwrap(), 1);
    assert_eq!(s.clear("nothing").await.unwrap(), 0);
}

#[tokio::test]
async fn typed_store_reads_a_changed_type_as_a_miss() {
    let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let old = TypedStore::<UserV1>::new(raw.clone(), "user");
    let new = TypedStore::<v2::UserV1>::new(raw.clone(), "user");
    let u = UserV1 {
        id: 1,
        name: "ada".into(),
    };
    old.set("get_user:1", &u, None).await.unwrap();
    assert_eq!(old.get("get_user:1").await.unwrap(), Some(u));
    assert_eq!(new.get("get_user:1").await.unwrap(), None);
    assert_eq!(new.undecodable(), 1);
    // The undecodable entry is gone, so it is not decoded again.
    assert_eq!(raw.get("user", "get_user:1").await.unwrap(), None);

    raw.set("user", "corrupt", vec![1, 2, 3], None)
        .await
        .unwrap();
    assert_eq!(old.get("corrupt").await.unwrap(), None);
    assert_eq!(old.undecodable(), 1);
}
