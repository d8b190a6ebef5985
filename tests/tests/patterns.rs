//! The glob table: Redis `KEYS` semantics, and the same answers from a
//! cache's `revoke` and `keys` as from the matcher.

use cache_core::pattern::glob_match;
use cache_core::{Cache, Pattern, PatternError};
use cache_tests::GLOB_TABLE as TABLE;

#[test]
fn glob_table_matches_redis() {
    for &(p, s, want) in TABLE {
        // KEYS and SCAN special-case a lone `*`; their matcher does not.
        let matcher_wants = want && !(p == "*" && s.is_empty());
        assert_eq!(
            glob_match(p.as_bytes(), s.as_bytes()),
            matcher_wants,
            "glob_match({p:?}, {s:?})"
        );
        let pat = Pattern::new(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!(pat.matches(s), want, "Pattern({p:?}).matches({s:?})");
    }
}

#[test]
fn redis_quirks_for_malformed_patterns() {
    // Redis treats an unclosed `[` as running to the end of the pattern.
    assert!(glob_match(b"a[bc", b"ab"));
    assert!(!glob_match(b"a[bc", b"abc"));
    // A trailing backslash matches itself.
    assert!(glob_match(b"a\\", b"a\\"));
    // `Pattern::new` rejects both with a clear error instead.
    assert!(matches!(
        Pattern::new("a[bc"),
        Err(PatternError::UnclosedBracket { at: 1, .. })
    ));
    assert!(matches!(
        Pattern::new("a\\"),
        Err(PatternError::TrailingEscape { .. })
    ));
    // `c-]` is a range, so this bracket never closes.
    assert!(!glob_match(b"[abc-]", b"-"));
    assert!(matches!(
        Pattern::new("[abc-]"),
        Err(PatternError::UnclosedBracket { at: 0, .. })
    ));
    let msg = Pattern::new("x[").unwrap_err().to_string();
    assert!(msg.contains("unclosed `[`"), "{msg}");
}

#[test]
fn abusive_patterns_finish_quickly() {
    let key = "a".repeat(100);
    let started = std::time::Instant::now();
    assert!(!glob_match(b"a*a*a*a*a*a*a*a*a*a*a*a*b", key.as_bytes()));
    assert!(started.elapsed() < std::time::Duration::from_millis(100));
}

#[test]
fn cache_revoke_and_keys_agree_with_the_table() {
    for &(p, s, want) in TABLE {
        // Keys read as their raw text here: the table is about matching.
        let c: Cache<String, u8> =
            cache_core::CacheBuilder::with_render(|k: &String, o| o.push_str(k))
                .capacity(16)
                .build();
        c.insert(s.to_string(), 1);
        c.insert("zzz-other".to_string(), 2);
        let pat = Pattern::new(p).unwrap();
        let listed = c.keys(Some(&pat), 10).contains(&s.to_string());
        assert_eq!(listed, want, "keys({p:?}) lists {s:?}");
        let removed = c.revoke(&pat).unwrap();
        assert_eq!(
            c.get(&s.to_string()).is_none(),
            want,
            "revoke({p:?}) on {s:?}"
        );
        assert_eq!(removed, want as usize + pat.matches("zzz-other") as usize);
    }
}

/// Random UTF-8 patterns against a real redis-server's `KEYS`: the same
/// keys match, non-ASCII bracket ranges included (Redis compares signed
/// chars), and no pattern makes `Pattern` panic.
#[test]
fn random_patterns_agree_with_a_real_redis() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let server = cache_tests::RedisServer::start();
    let keys = [
        "a", "z", "é", "ü", "€", "aé", "éa", "-", "]", "[", "^", "\\", "日本", "x1", "ab", "a-z",
        "\u{7f}", "\u{80}", "ÿ", "Ā",
    ];
    let mut mset = vec!["MSET"];
    for k in &keys {
        mset.push(k);
        mset.push("1");
    }
    server.cli(&mset);
    let piece = prop::sample::select(vec![
        "[", "]", "-", "^", "\\", "*", "?", "a", "z", "é", "ü", "€", "日", "\u{80}", "ÿ",
    ]);
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let fixed = ["[a-é]", "[é-a]", "[\u{80}-z]*", "[^a-é]*", "?[a-ÿ]"].map(|p| vec![p]);
    let random = prop::collection::vec(piece, 1..6);
    let cases = prop_oneof![prop::sample::select(fixed.to_vec()), random];
    runner
        .run(&cases, |parts| {
            let p = parts.concat();
            let mut redis: Vec<String> = server
                .cli(&["KEYS", &p])
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            redis.sort();
            let mut ours: Vec<String> = keys
                .iter()
                .filter(|k| p == "*" || glob_match(p.as_bytes(), k.as_bytes()))
                .map(|k| k.to_string())
                .collect();
            ours.sort();
            prop_assert_eq!(&ours, &redis, "pattern {:?}", p);
            // A pattern we accept selects what Redis does.
            if let Ok(pat) = Pattern::new(&p) {
                for k in &keys {
                    prop_assert_eq!(
                        pat.matches(k),
                        redis.iter().any(|r| r == k),
                        "{:?} on {:?}",
                        p,
                        k
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}
