//! Instructions per L2 hit, for `valgrind --tool=callgrind`:
//! `instr_l2 PORT N` reads N keys that live only in Redis (backend
//! `redis`), one after another on a one-thread runtime.
use cache_core::Cache;
use cache_core::codec::RemoteCodec;
use cache_core::config::Backend;
use cache_core::redis::{RedisOptions, RedisStore};

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().unwrap().parse().unwrap();
    let n: u64 = args.next().unwrap().parse().unwrap();
    let store = RedisStore::connect(RedisOptions {
        url: format!("redis://127.0.0.1:{port}"),
        prefix: "instr".into(),
        timeout_ms: 5000,
        ..RedisOptions::default()
    })
    .unwrap();
    let c: Cache<u64, u64> = Cache::builder()
        .name("l2")
        .capacity(100_000)
        .remote_codec(Some(RemoteCodec::postcard()))
        .build();
    c.attach_remote(store, Backend::Redis);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for k in 0..100 {
            c.get_or_insert_with_async(k, async move { k }).await;
        }
        let mut s = 0u64;
        for i in 0..n {
            s = s.wrapping_add(
                c.get_or_insert_with_async(i % 100, async { u64::MAX })
                    .await,
            );
        }
        assert!(s < u64::MAX / 2, "every call was an L2 hit");
    });
}
