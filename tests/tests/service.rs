//! `#[cache_service]`: actions, generated handlers, evict and put, tenants
//! and events. Configuration is left alone here (see `config.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::{
    CacheError, action, cache_evict, cache_put, cache_service, cached, registry, tenant_scope,
    with_tenant,
};
use parking_lot_free::Db;
use serde_json::json;

/// A tiny stand-in database that counts its queries.
mod parking_lot_free {
    use super::*;
    #[derive(Default)]
    pub struct Db {
        pub rows: std::sync::Mutex<HashMap<u64, String>>,
        pub queries: AtomicUsize,
    }
}

#[derive(Debug, Clone, PartialEq)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Error {
    NotFound(u64),
}

#[derive(Clone)]
struct UserService {
    db: Arc<Db>,
}

#[cache_service(name = "user")]
impl UserService {
    fn new() -> Self {
        let db = Db::default();
        for id in 1..=5 {
            db.rows.lock().unwrap().insert(id, format!("user{id}"));
        }
        UserService { db: Arc::new(db) }
    }

    fn queries(&self) -> usize {
        self.db.queries.load(Ordering::SeqCst)
    }

    #[cached(ttl = 60, tags = ["user:{id}"])]
    async fn get_user(&self, id: u64) -> Result<User, Error> {
        self.db.queries.fetch_add(1, Ordering::SeqCst);
        let name = self.db.rows.lock().unwrap().get(&id).cloned();
        name.map(|name| User { id, name })
            .ok_or(Error::NotFound(id))
    }

    #[action(cache(ttl = 60))]
    async fn get_profile(&self, id: u64) -> Result<String, Error> {
        self.db.queries.fetch_add(1, Ordering::SeqCst);
        Ok(format!("profile of {id}"))
    }

    #[action(cache)]
    fn count(&self) -> usize {
        self.db.queries.fetch_add(1, Ordering::SeqCst);
        self.db.rows.lock().unwrap().len()
    }

    /// A bare `#[action]` stays uncached.
    #[action]
    fn uncached(&self) -> usize {
        self.db.queries.fetch_add(1, Ordering::SeqCst)
    }

    #[cache_evict(keys = ["get_user:{id}", "get_profile:{id}"])]
    async fn update_user(&self, id: u64, name: String) -> Result<(), Error> {
        let mut rows = self.db.rows.lock().unwrap();
        match rows.get_mut(&id) {
            Some(n) => {
                *n = name;
                Ok(())
            }
            None => Err(Error::NotFound(id)),
        }
    }

    #[cache_evict(patterns = ["get_*:{id}"], before = true)]
    fn touch(&self, id: u64) -> u64 {
        id
    }

    #[cache_evict(tags = ["user:{id}"])]
    fn retag(&self, id: u64) -> u64 {
        id
    }

    #[cache_evict(all)]
    fn reset(&self) {}

    #[cache_put(get_user)]
    async fn rename(&self, id: u64, name: &str) -> Result<User, Error> {
        self.db.rows.lock().unwrap().insert(id, name.to_string());
        Ok(User {
            id,
            name: name.to_string(),
        })
    }
}

/// Each test uses its own service, so parallel tests do not share caches.
#[derive(Clone)]
struct Orders {
    calls: Arc<AtomicUsize>,
}

#[cache_service(name = "orders")]
impl Orders {
    #[cached]
    fn get_order(&self, id: u64, region: &str) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("order {id} in {region}")
    }
}

#[tokio::test]
async fn actions_cache_and_writes_evict() {
    let svc = UserService::new();
    svc.get_user(1).await.unwrap();
    svc.get_user(1).await.unwrap();
    svc.get_profile(1).await.unwrap();
    svc.get_profile(1).await.unwrap();
    svc.count();
    svc.count();
    svc.uncached();
    svc.uncached();
    assert_eq!(
        svc.queries(),
        5,
        "get_user, get_profile, count once each; uncached twice"
    );

    // A failing write evicts nothing.
    assert_eq!(
        svc.update_user(99, "x".into()).await,
        Err(Error::NotFound(99))
    );
    svc.get_user(1).await.unwrap();
    assert_eq!(svc.queries(), 5);

    // A successful write evicts both keys; the next reads see the new name.
    svc.update_user(1, "ada".into()).await.unwrap();
    assert_eq!(svc.get_user(1).await.unwrap().name, "ada");
    svc.get_profile(1).await.unwrap();
    assert_eq!(svc.queries(), 7);

    // Patterns, before the call.
    svc.touch(1);
    svc.get_user(1).await.unwrap();
    svc.get_profile(1).await.unwrap();
    assert_eq!(svc.queries(), 9);

    // Tags.
    svc.retag(1);
    svc.get_user(1).await.unwrap();
    svc.get_profile(1).await.unwrap();
    assert_eq!(svc.queries(), 10, "only get_user carries the tag");

    // Everything.
    svc.reset();
    svc.get_user(1).await.unwrap();
    svc.get_profile(1).await.unwrap();
    svc.count();
    assert_eq!(svc.queries(), 13);
}

#[tokio::test]
async fn cache_put_stores_the_result_under_the_actions_key() {
    let svc = UserService::new();
    let renamed = svc.rename(3, "grace").await.unwrap();
    let before = svc.queries();
    assert_eq!(svc.get_user(3).await.unwrap(), renamed);
    assert_eq!(svc.queries(), before, "served from the put");
}

#[tokio::test]
async fn handlers_act_on_their_service_only() {
    let orders = Orders {
        calls: Arc::default(),
    };
    for id in 1..=4 {
        orders.get_order(id, "eu");
    }
    let r = registry();
    let keys = r.request("orders/cache/keys", json!({})).await.unwrap();
    assert_eq!(
        keys["keys"],
        json!([
            "get_order:1:eu",
            "get_order:2:eu",
            "get_order:3:eu",
            "get_order:4:eu"
        ])
    );
    let r1 = r
        .request(
            "orders/cache/keys",
            json!({"pattern": "get_order:[12]:*", "limit": 1}),
        )
        .await
        .unwrap();
    assert_eq!(r1["keys"], json!(["get_order:1:eu"]));

    let d = r
        .request("orders/cache/delete", json!({"key": "get_order:1:eu"}))
        .await
        .unwrap();
    assert_eq!(d["deleted"], 1);
    let v = r
        .request(
            "orders/cache/revoke",
            json!({"pattern": "get_order:[23]:*"}),
        )
        .await
        .unwrap();
    assert_eq!(v["revoked"], 2);
    let s = r.request("orders/cache/stats", json!(null)).await.unwrap();
    assert_eq!(s["actions"]["get_order"]["entries"], 1);
    assert_eq!(s["total"]["loads"], 4);
    assert_eq!(s["service"], "orders");
    // Another service's entries are untouched by this service's clear.
    let svc = UserService::new();
    svc.count();
    let c = r.request("orders/cache/clear", json!({})).await.unwrap();
    assert_eq!(c["cleared"], 1);
    let before = svc.queries();
    svc.count();
    assert_eq!(svc.queries(), before, "user's cache survived orders' clear");
    orders.get_order(1, "eu");
    assert_eq!(orders.calls.load(Ordering::SeqCst), 5);
}

#[derive(Clone)]
struct Invoices;

#[cache_service(name = "invoices")]
impl Invoices {
    #[cached]
    fn get_invoice(&self, id: u64, region: &str) -> String {
        format!("invoice {id} in {region}")
    }
}

#[tokio::test]
async fn bad_requests_are_clear_errors_that_change_nothing() {
    Invoices.get_invoice(42, "us");
    let r = registry();
    let err = |res: Result<serde_json::Value, CacheError>| res.unwrap_err().to_string();

    let e = err(r.request("nosuch/cache/clear", json!({})).await);
    assert!(e.contains("no service named \"nosuch\""), "{e}");
    let e = err(r.request("invoices/cache/explode", json!({})).await);
    assert!(e.contains("no handler at"), "{e}");
    let e = err(r.request("invoices/clear", json!({})).await);
    assert!(e.contains("no handler at"), "{e}");
    let e = err(r.request("invoices/cache/delete", json!({})).await);
    assert!(e.contains("missing field `key`"), "{e}");
    let e = err(r.request("invoices/cache/delete", json!({"key": 5})).await);
    assert!(e.contains("invalid type"), "{e}");
    let e = err(r
        .request("invoices/cache/revoke", json!({"pattern": "a", "extra": 1}))
        .await);
    assert!(e.contains("unknown field `extra`"), "{e}");
    let e = err(r
        .request(
            "invoices/cache/revoke",
            json!({"pattern": "get_invoice:[4"}),
        )
        .await);
    assert!(e.contains("unclosed `[`"), "{e}");
    let long = "x".repeat(2000);
    let e = err(r
        .request("invoices/cache/revoke", json!({"pattern": long}))
        .await);
    assert!(e.contains("limit"), "{e}");
    let e = err(r
        .request("invoices/cache/keys", json!({"limit": 1_000_000}))
        .await);
    assert!(e.contains("over the maximum"), "{e}");
    let e = err(r.request("invoices/cache/clear", json!([1, 2])).await);
    assert!(e.contains("bad request"), "{e}");

    let keys = r
        .request(
            "invoices/cache/keys",
            json!({"pattern": "get_invoice:42:*"}),
        )
        .await
        .unwrap();
    assert_eq!(
        keys["keys"],
        json!(["get_invoice:42:us"]),
        "nothing was removed"
    );
}

#[derive(Clone)]
struct Tenanted {
    calls: Arc<AtomicUsize>,
}

#[cache_service(name = "tenanted")]
impl Tenanted {
    #[cached]
    fn plan(&self, id: u64) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("plan {id} for {:?}", cache_core::current_tenant().name())
    }

    #[cache_evict(keys = ["plan:{id}"])]
    fn change(&self, id: u64) -> u64 {
        id
    }
}

#[tokio::test]
async fn tenants_see_only_their_own_entries() {
    let svc = Tenanted {
        calls: Arc::default(),
    };
    let a = with_tenant("acme", || svc.plan(1));
    let b = with_tenant("globex", || svc.plan(1));
    assert_ne!(a, b, "each tenant computed its own");
    assert_eq!(with_tenant("acme", || svc.plan(1)), a);
    let c = tenant_scope("globex", async { svc.plan(1) }).await;
    assert_eq!(c, b);
    assert_eq!(svc.calls.load(Ordering::SeqCst), 2);

    // An eviction inside acme leaves globex alone.
    with_tenant("acme", || svc.change(1));
    with_tenant("globex", || svc.plan(1));
    assert_eq!(svc.calls.load(Ordering::SeqCst), 2);
    with_tenant("acme", || svc.plan(1));
    assert_eq!(svc.calls.load(Ordering::SeqCst), 3);

    // Handlers scope by tenant too.
    let r = registry();
    let k = r
        .request("tenanted/cache/keys", json!({"tenant": "acme"}))
        .await
        .unwrap();
    assert_eq!(k["keys"], json!(["plan:1"]));
    let d = r
        .request(
            "tenanted/cache/delete",
            json!({"key": "plan:1", "tenant": "globex"}),
        )
        .await
        .unwrap();
    assert_eq!(d["deleted"], 1);
    let d = r
        .request("tenanted/cache/clear", json!({"tenant": "never-seen"}))
        .await
        .unwrap();
    assert_eq!(d["cleared"], 0);
    with_tenant("acme", || svc.plan(1));
    assert_eq!(svc.calls.load(Ordering::SeqCst), 3, "acme's entry survived");
}

#[derive(Clone)]
struct Catalog {
    calls: Arc<AtomicUsize>,
}

#[cache_service(name = "catalog")]
impl Catalog {
    #[cached]
    fn item(&self, id: u64) -> u64 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        id
    }

    #[cached]
    fn price(&self, id: u64, currency: &str) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("{id} {currency}")
    }
}

#[tokio::test]
async fn events_revoke_mapped_keys_filled_from_the_payload() {
    let svc = Catalog {
        calls: Arc::default(),
    };
    let r = registry();
    r.on_event(
        "item.changed",
        Some("catalog"),
        &["item:{id}", "price:{id}:*"],
    )
    .unwrap();
    for id in 1..=3 {
        svc.item(id);
        svc.price(id, "eur");
        svc.price(id, "usd");
    }
    assert_eq!(
        r.publish("item.changed", json!({"id": 2})).await.unwrap(),
        3
    );
    let k = r.request("catalog/cache/keys", json!({})).await.unwrap();
    assert_eq!(k["keys"].as_array().unwrap().len(), 6);
    assert!(!k["keys"].to_string().contains(":2"));

    // A payload without the field: a clear error, and nothing is revoked.
    let e = r
        .publish("item.changed", json!({"sku": 1}))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("payload has no field `id`")
            && e.to_string().contains("nothing was revoked"),
        "{e}"
    );
    // Payload values are literal: a `*` in one does not widen the match.
    assert_eq!(
        r.publish("item.changed", json!({"id": "*"})).await.unwrap(),
        0
    );
    let k = r.request("catalog/cache/keys", json!({})).await.unwrap();
    assert_eq!(k["keys"].as_array().unwrap().len(), 6);
    // An unmapped event touches nothing.
    assert_eq!(r.publish("nobody.cares", json!({})).await.unwrap(), 0);
    // Malformed templates are refused when mapped.
    assert!(r.on_event("x", None, &["item:{id"]).is_err());
}
