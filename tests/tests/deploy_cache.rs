//! The deployment cache: keys, hits and stats, persistence across restarts,
//! corrupt and truncated files, expiry, the LRU bound and compaction.

use std::time::Duration;

use cache_core::Clock;
use cache_device::deploy_cache::Status;
use cache_device::{DeployCache, DeployCacheConfig, DeployEntry, MethodCacheKey};

const TYPE: &str = "webassembly/JS with Emscripten/pyscript";
const FW127: &str = "3.4.0; MicroPython v1.27.0 on 2025-12-10/mpy774";
const FW129: &str = "3.4.0; MicroPython v1.29.0-6 on 2026-08-25/mpy774";

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("deploy-cache-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn entry(clock: &Clock, fw: &str, sig: &str, code: &str) -> DeployEntry {
    DeployEntry {
        key: MethodCacheKey::new(TYPE, fw, sig, code),
        code: code.into(),
        method_name: "read".into(),
        deployed_at: clock.now_ms(),
        last_accessed: clock.now_ms(),
        access_count: 0,
        deployment_ms: 120,
        status: Status::Deployed,
        metadata: Default::default(),
    }
}

fn cfg(d: &std::path::Path) -> DeployCacheConfig {
    DeployCacheConfig {
        dir: Some(d.to_path_buf()),
        ..DeployCacheConfig::default()
    }
}

#[test]
fn keys_cover_type_firmware_signature_and_code() {
    let k = MethodCacheKey::new(TYPE, FW127, "read(ch)", "def read(ch): pass");
    assert_eq!(
        k.id(),
        MethodCacheKey::new(TYPE, FW127, "read(ch)", "def read(ch): pass").id()
    );
    for other in [
        MethodCacheKey::new("rp2", FW127, "read(ch)", "def read(ch): pass"),
        MethodCacheKey::new(TYPE, FW129, "read(ch)", "def read(ch): pass"),
        MethodCacheKey::new(TYPE, FW127, "read(ch, n)", "def read(ch): pass"),
        MethodCacheKey::new(TYPE, FW127, "read(ch)", "def read(ch): return 1"),
    ] {
        assert_ne!(k.id(), other.id());
    }
    assert_eq!(k.code_hash.len(), 64, "blake3 hex");
    let defaults = DeployCacheConfig::default();
    assert_eq!(defaults.max_entries, 1000);
    assert_eq!(defaults.expiry, Duration::from_secs(24 * 3600));
    assert_eq!(defaults.inactive_expiry, Duration::from_secs(6 * 3600));
    assert!(defaults.persistence && defaults.compression);
}

#[test]
fn entries_survive_a_restart_and_count_hits() {
    let d = dir("restart");
    let (clock, _t) = Clock::manual();
    let code = "def read(ch):\n    return ch * 2\n".repeat(20);
    {
        let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
        c.put(entry(&clock, FW127, "read(ch)", &code));
        assert_eq!(c.stats().deploys, 1);
    }
    let file = std::fs::read_dir(&d)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        std::fs::metadata(&file).unwrap().len() < code.len() as u64,
        "compressed"
    );
    // A new process: the entry is read back from disk.
    let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
    let key = MethodCacheKey::new(TYPE, FW127, "read(ch)", &code);
    let e = c.get(&key).expect("a persistent hit");
    assert_eq!((e.code.as_str(), e.access_count), (code.as_str(), 1));
    assert!(
        c.get(&MethodCacheKey::new(TYPE, FW129, "read(ch)", &code))
            .is_none()
    );
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.saved_ms), (1, 1, 120));
}

#[test]
fn corrupt_and_truncated_files_are_dropped_never_used() {
    let d = dir("corrupt");
    let (clock, _t) = Clock::manual();
    {
        let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
        c.put(entry(&clock, FW127, "a()", "def a(): return 1"));
        c.put(entry(&clock, FW127, "b()", "def b(): return 2"));
        c.put(entry(&clock, FW127, "c()", "def c(): return 3"));
    }
    let mut files: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&files[0], bytes).unwrap();
    let bytes = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(d.join("junk.entry"), b"hello").unwrap();

    let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
    assert_eq!(c.len(), 1, "only the intact entry is loaded");
    assert_eq!(c.stats().corrupt_dropped, 3);
    assert_eq!(
        std::fs::read_dir(&d).unwrap().count(),
        1,
        "bad files removed"
    );
}

#[test]
fn entries_expire_by_age_and_by_disuse() {
    let (clock, time) = Clock::manual();
    let c = DeployCache::open(
        DeployCacheConfig {
            persistence: false,
            ..Default::default()
        },
        clock.clone(),
    )
    .unwrap();
    let busy = entry(&clock, FW127, "busy()", "def busy(): pass");
    let idle = entry(&clock, FW127, "idle()", "def idle(): pass");
    c.put(busy.clone());
    c.put(idle.clone());
    for _ in 0..4 {
        time.advance(Duration::from_secs(5 * 3600));
        assert!(c.get(&busy.key).is_some(), "used every 5 h");
    }
    assert!(c.get(&idle.key).is_none(), "unused for 20 h");
    time.advance(Duration::from_secs(4 * 3600 + 1));
    assert!(c.get(&busy.key).is_none(), "24 h after deployment");
}

#[test]
fn the_lru_bound_and_compaction() {
    let d = dir("lru");
    let (clock, time) = Clock::manual();
    let c = DeployCache::open(
        DeployCacheConfig {
            max_entries: 3,
            ..cfg(&d)
        },
        clock.clone(),
    )
    .unwrap();
    let entries: Vec<DeployEntry> = (0..3)
        .map(|i| {
            time.advance(Duration::from_secs(1));
            entry(
                &clock,
                FW127,
                &format!("m{i}()"),
                &format!("def m{i}(): pass"),
            )
        })
        .collect();
    for e in &entries {
        c.put(e.clone());
    }
    time.advance(Duration::from_secs(1));
    c.get(&entries[0].key);
    c.put(entry(&clock, FW127, "m3()", "def m3(): pass"));
    assert_eq!(c.len(), 3);
    assert!(
        c.get(&entries[1].key).is_none(),
        "the least recently used went"
    );
    assert!(c.get(&entries[0].key).is_some());
    assert!(
        !d.join(format!("{}.entry", entries[1].key.id())).exists(),
        "its file went too"
    );
    assert_eq!(
        std::fs::read_dir(&d).unwrap().count(),
        3,
        "one file per entry"
    );

    // A firmware change: compaction drops the old firmware's entries.
    c.put(entry(&clock, FW129, "m0()", "def m0(): pass"));
    assert_eq!(c.compact(Some(TYPE), Some(FW129)), 2);
    assert_eq!(c.len(), 1);
    assert!(c.invalidate(&MethodCacheKey::new(TYPE, FW129, "m0()", "def m0(): pass")));
    assert!(c.is_empty());
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
}

/// With the system clock, times are wall-clock milliseconds, kept in the
/// files: an entry deployed 25 hours ago is expired after a restart.
#[test]
fn expiry_counts_across_restarts_on_the_wall_clock() {
    let d = dir("wall");
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    {
        let c = DeployCache::open(cfg(&d), Clock::System).unwrap();
        let now = c.now_ms();
        assert!(
            now.abs_diff(wall) < 60_000,
            "wall-clock time: {now} vs {wall}"
        );
        let mut old = entry(&Clock::System, FW127, "old()", "def old(): pass");
        old.deployed_at = now - 25 * 3600 * 1000;
        old.last_accessed = now;
        c.put(old);
        let mut fresh = entry(&Clock::System, FW127, "fresh()", "def fresh(): pass");
        fresh.deployed_at = now;
        fresh.last_accessed = now;
        c.put(fresh);
    }
    let c = DeployCache::open(cfg(&d), Clock::System).unwrap();
    assert!(
        c.get(&MethodCacheKey::new(
            TYPE,
            FW127,
            "old()",
            "def old(): pass"
        ))
        .is_none(),
        "24 h after its deployment, across a restart"
    );
    assert!(
        c.get(&MethodCacheKey::new(
            TYPE,
            FW127,
            "fresh()",
            "def fresh(): pass"
        ))
        .is_some()
    );
}

/// Writers use temporary names of their own; one a crash left behind is
/// removed on open once it is old, and a hit does not rewrite its file.
#[test]
fn temp_files_and_lazy_access_times() {
    let d = dir("temps");
    let (clock, time) = Clock::manual();
    let key = MethodCacheKey::new(TYPE, FW127, "a()", "def a(): return 1");
    {
        let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
        c.put(entry(&clock, FW127, "a()", "def a(): return 1"));
    }
    let stale = d.join(format!("{}.999.0.tmp", key.id()));
    let fresh = d.join(format!("{}.998.0.tmp", key.id()));
    for p in [&stale, &fresh] {
        std::fs::write(p, b"half a file").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
    assert!(!stale.exists(), "a stale temporary file is removed");
    assert!(fresh.exists(), "a live writer's is not");
    let _ = std::fs::remove_file(&fresh);

    let file = d.join(format!("{}.entry", key.id()));
    let before = std::fs::read(&file).unwrap();
    for _ in 0..5 {
        time.advance(Duration::from_secs(1));
        assert!(c.get(&key).is_some());
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "hits did not rewrite the file"
    );
    c.flush();
    assert_ne!(
        std::fs::read(&file).unwrap(),
        before,
        "flush writes the access"
    );
    drop(c);
    let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
    assert_eq!(
        c.get(&key).unwrap().access_count,
        6,
        "five hits, then this one"
    );
}

/// A file whose checksum holds but whose code is not what its key hashes
/// is never deployed; with a MAC key, files written without it are refused.
#[test]
fn tampered_and_foreign_files_are_refused() {
    let d = dir("tamper");
    let (clock, _t) = Clock::manual();
    {
        let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
        let mut e = entry(&clock, FW127, "a()", "def a(): return 1");
        e.code = "import os; os.remove('/flash/main.py')".into();
        c.put(e);
    }
    let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
    assert_eq!((c.len(), c.stats().corrupt_dropped), (0, 1));
    drop(c);

    let keyed = |k: Option<&str>| DeployCacheConfig {
        mac_key: k.map(str::to_owned),
        ..cfg(&d)
    };
    {
        let c = DeployCache::open(keyed(Some("our key, sixteen bytes or more")), clock.clone())
            .unwrap();
        c.put(entry(&clock, FW127, "b()", "def b(): return 2"));
    }
    for other in [Some("their key, sixteen bytes or more"), None] {
        let c = DeployCache::open(keyed(other), clock.clone()).unwrap();
        assert_eq!((c.len(), c.stats().corrupt_dropped), (0, 1), "{other:?}");
        drop(c);
        // Written again for the next case.
        let c = DeployCache::open(keyed(Some("our key, sixteen bytes or more")), clock.clone())
            .unwrap();
        c.put(entry(&clock, FW127, "b()", "def b(): return 2"));
    }
    let c =
        DeployCache::open(keyed(Some("our key, sixteen bytes or more")), clock.clone()).unwrap();
    assert_eq!(c.len(), 1, "the key's own files load");
    assert!(
        !format!("{:?}", keyed(Some("our key, sixteen bytes or more")))
            .contains("our key, sixteen bytes or more")
    );
}

/// A file that cannot be read is reported and left alone, not dropped.
#[test]
fn read_errors_are_not_corruption() {
    let d = dir("unreadable");
    std::fs::create_dir_all(d.join("0123.entry")).unwrap();
    let (clock, _t) = Clock::manual();
    let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
    let s = c.stats();
    assert_eq!((s.read_errors, s.corrupt_dropped), (1, 0));
    assert!(d.join("0123.entry").exists());
    assert!(c.find(TYPE, FW127, "nothing()").is_none());
    assert_eq!(c.stats().misses, 1, "a miss that leads to a deploy counts");
}

/// Only `<id>.entry` holds an entry: a copy under another name is ignored
/// (it would outlive the entry's invalidation); the bound holds on open; a
/// short MAC key is refused.
#[test]
fn copies_bounds_and_short_keys() {
    let d = dir("copies");
    let (clock, time) = Clock::manual();
    let key = MethodCacheKey::new(TYPE, FW127, "a()", "def a(): return 1");
    {
        let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
        c.put(entry(&clock, FW127, "a()", "def a(): return 1"));
    }
    std::fs::copy(
        d.join(format!("{}.entry", key.id())),
        d.join("backup.entry"),
    )
    .unwrap();
    let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
    assert!(c.invalidate(&key));
    drop(c);
    let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
    assert!(!c.contains(&key), "the copy did not bring it back");
    drop(c);

    {
        let c = DeployCache::open(cfg(&d), clock.clone()).unwrap();
        for i in 0..5 {
            time.advance(Duration::from_secs(1));
            c.put(entry(
                &clock,
                FW127,
                &format!("f{i}()"),
                &format!("def f{i}(): pass"),
            ));
        }
    }
    let small = DeployCacheConfig {
        max_entries: 2,
        ..cfg(&d)
    };
    let c = DeployCache::open(small, clock.clone()).unwrap();
    assert_eq!(c.len(), 2, "the bound holds on open");
    assert!(c.contains(&MethodCacheKey::new(TYPE, FW127, "f4()", "def f4(): pass")));

    let short = DeployCacheConfig {
        mac_key: Some("short".into()),
        ..cfg(&d)
    };
    assert!(DeployCache::open(short, clock.clone()).is_err());
}
