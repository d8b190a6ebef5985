//! The admin dashboard in a real headless Chromium, nested under a path
//! prefix: typing the token, reading the stats, browsing keys, revoking and
//! deleting from the page; a wrong token shows an error and no data; hostile
//! key text stays text. The run's screenshot is the README's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_core::cache_service;
use cache_tests::http::{request, start};
use cache_tests::webdriver::Browser;

const TOKEN: &str = "dashboard-token-31";
const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\">";

static LOADS: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
struct Catalog;

#[cache_service(name = "catalog")]
impl Catalog {
    #[cached]
    fn product(&self, id: u64) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        format!("product {id}")
    }

    #[cached]
    fn search(&self, q: String) -> usize {
        q.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    for id in 1..=6 {
        Catalog.product(id);
    }
    for id in 1..=3 {
        Catalog.product(id);
    }
    Catalog.search(HOSTILE.to_owned());
    let app = axum::Router::new().nest("/admin", cache_core::http::router(TOKEN));
    let addr = start(app).await;

    // The shell needs no token and holds no data.
    let (status, head, page) = request(addr, "GET", "/admin", None, None).await;
    assert_eq!(status, 200);
    assert!(!page.contains("product:") && !page.contains(TOKEN));
    for external in ["src=", "href=", "url(", "@import", "<link"] {
        assert!(!page.contains(external), "an external asset ({external})");
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    // Everything else does.
    let (status, _, _) = request(addr, "GET", "/admin/history", None, None).await;
    assert_eq!(status, 401);

    let b = Browser::start().await;
    b.goto(&format!("http://{addr}/admin")).await;

    // A wrong token: an error, and no data.
    b.type_into("#token", "not-the-token").await;
    b.click("#connect").await;
    b.wait_text("#error", "an error", |t| {
        t.contains("wrong or missing token")
    })
    .await;
    assert_eq!(b.text("#services tbody").await, "");
    assert_eq!(b.text("#keys").await, "");

    // The right one: the service's figures.
    b.type_into("#token", TOKEN).await;
    b.click("#connect").await;
    let table = b
        .wait_text("#services tbody", "the product row", |t| {
            t.contains("product")
        })
        .await;
    let row = table.lines().find(|l| l.contains("product")).unwrap();
    let cells: Vec<&str> = row.split('\t').map(str::trim).collect();
    assert_eq!(
        &cells[..7],
        &["catalog", "product", "33.3%", "3", "6", "6", "6"],
        "{table}"
    );
    // The refresh that drew the table ends by clearing the error and
    // showing readiness (a run once read the old error before it ended).
    b.wait_text("#error", "no error", str::is_empty).await;
    b.wait_text("#ready", "readiness", |t| t.contains("ready"))
        .await;

    // The token is kept in memory only.
    let kept = b
        .execute("return [localStorage.length, sessionStorage.length, document.cookie, location.href, document.getElementById('token').value];")
        .await;
    assert_eq!(kept[0], 0);
    assert_eq!(kept[1], 0);
    assert_eq!(kept[2], "");
    assert!(!kept[3].as_str().unwrap().contains(TOKEN));
    assert_eq!(kept[4], "");

    // The chart fills as traffic goes on.
    let started = std::time::Instant::now();
    loop {
        for id in 1..=6 {
            Catalog.product(id);
        }
        let lines = b
            .execute("return document.querySelectorAll('#chart polyline').length;")
            .await;
        if lines == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no hit-rate line"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        b.click("#refresh").await; // now rather than in 5 s
    }

    // Hostile key text stays text.
    b.type_into("#pattern", "search:*").await;
    b.click("#find").await;
    let keys = b
        .wait_text("#keys", "the hostile key", |t| t.contains("<img"))
        .await;
    assert!(keys.contains(HOSTILE), "{keys}");
    assert_ne!(b.execute("return document.title;").await, "pwned");
    assert_eq!(
        b.execute("return document.querySelectorAll('#keys img').length;")
            .await,
        0
    );

    // Browse, then revoke from the page: the keys go and the table updates.
    b.type_into("#pattern", "product:[12]").await;
    b.click("#find").await;
    b.wait_text("#keys", "two keys", |t| {
        t.contains("product:1") && t.contains("product:2")
    })
    .await;
    b.click("#revoke").await;
    b.wait_text("#found", "the revoke", |t| t == "revoked 2")
        .await;
    b.wait_text("#services tbody", "4 entries", |t| {
        t.lines()
            .find(|l| l.contains("product"))
            .is_some_and(|l| l.split('\t').map(str::trim).nth(5) == Some("4"))
    })
    .await;
    let before = LOADS.load(Ordering::SeqCst);
    Catalog.product(1);
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        before + 1,
        "a revoked key is computed again"
    );

    // Delete one key with its button.
    b.type_into("#pattern", "product:3").await;
    b.click("#find").await;
    b.wait_text("#keys", "product:3", |t| t.contains("product:3"))
        .await;
    b.click("#keys li button").await;
    b.wait_text("#found", "no keys left", |t| t == "0 keys")
        .await;
    let before = LOADS.load(Ordering::SeqCst);
    Catalog.product(3);
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        before + 1,
        "a deleted key is computed again"
    );

    // The README's screenshot, from this run.
    b.type_into("#pattern", "product:*").await;
    b.click("#find").await;
    b.wait_text("#keys", "keys", |t| t.contains("product:4"))
        .await;
    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, png).unwrap();
    b.close().await;
}
