//! `#[cached]` on async functions and async methods.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::cached;

#[derive(Clone, Debug, PartialEq)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug, Clone, PartialEq)]
enum DbError {
    Missing(u64),
}

struct UserService {
    queries: Arc<AtomicUsize>,
}

impl UserService {
    #[cached(ttl = 60)]
    async fn get_user(&self, id: u64) -> Result<User, DbError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        if id == 0 {
            return Err(DbError::Missing(id));
        }
        Ok(User {
            id,
            name: format!("user{id}"),
        })
    }

    #[cached(key = "by_name:{name}")]
    async fn find_by_name(&self, name: &str) -> Option<u64> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        name.strip_prefix("user").and_then(|n| n.parse().ok())
    }
}

#[tokio::test]
async fn async_methods_cache_ok_and_skip_err() {
    let svc = UserService {
        queries: Arc::default(),
    };
    let u = svc.get_user(5).await.unwrap();
    assert_eq!(u.name, "user5");
    assert_eq!(svc.get_user(5).await.unwrap(), u);
    assert_eq!(svc.queries.load(Ordering::SeqCst), 1);
    assert_eq!(svc.get_user(0).await, Err(DbError::Missing(0)));
    assert_eq!(svc.get_user(0).await, Err(DbError::Missing(0)));
    assert_eq!(svc.queries.load(Ordering::SeqCst), 3);
    assert_eq!(
        UserService::get_user_cache().keys(None, 10),
        vec!["get_user:5"]
    );

    assert_eq!(svc.find_by_name("user9").await, Some(9));
    let owned = String::from("user9");
    assert_eq!(
        svc.find_by_name(&owned).await,
        Some(9),
        "a &String keys like a &str"
    );
    assert_eq!(svc.find_by_name("nobody").await, None);
    assert_eq!(svc.find_by_name("nobody").await, None);
    assert_eq!(svc.queries.load(Ordering::SeqCst), 6);
    assert_eq!(
        UserService::find_by_name_cache().keys(Some(&"by_name:*".parse().unwrap()), 10),
        vec!["by_name:user9"]
    );
}

static PLAIN: AtomicUsize = AtomicUsize::new(0);

#[cached(capacity = 2)]
async fn plain(id: u64) -> u64 {
    PLAIN.fetch_add(1, Ordering::SeqCst);
    id + 1
}

#[tokio::test]
async fn async_free_functions_hit_without_awaiting_the_body() {
    assert_eq!(plain(1).await, 2);
    for _ in 0..10 {
        assert_eq!(plain(1).await, 2);
    }
    assert_eq!(PLAIN.load(Ordering::SeqCst), 1);
    assert_eq!(plain_cache().stats().hits, 10);
}

#[test]
fn async_cached_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let svc = UserService {
        queries: Arc::default(),
    };
    let f = svc.get_user(1);
    assert_send(&f);
    drop(f);
    assert_send(&plain(3));
}

static FETCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cached]
async fn fetch_io(id: u64) -> Result<String, std::io::Error> {
    FETCHES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if id == 0 {
        Err(std::io::Error::other("no id 0"))
    } else {
        Ok(format!("item{id}"))
    }
}

#[tokio::test]
async fn async_errors_that_are_not_clone_work() {
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(fetch_io(1).await.unwrap(), "item1");
    assert_eq!(fetch_io(1).await.unwrap(), "item1");
    assert_eq!(FETCHES.load(SeqCst), 1);
    assert!(fetch_io(0).await.is_err());
    assert!(fetch_io(0).await.is_err());
    assert_eq!(FETCHES.load(SeqCst), 3);
}
