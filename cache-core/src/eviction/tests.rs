use super::*;

fn put<V: Clone>(c: &Ordered<u64, V>, k: u64, v: V) -> Vec<u64> {
    c.insert(k, v, 1, Priority::Medium)
        .into_iter()
        .map(|e| e.0)
        .collect()
}

fn put_at(c: &Ordered<u64, u64>, k: u64, p: Priority) -> Vec<u64> {
    c.insert(k, k, 1, p).into_iter().map(|e| e.0).collect()
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let c = Ordered::new(3, Eviction::Lru, false);
    for k in 0..3u64 {
        assert!(put(&c, k, k).is_empty());
    }
    c.get(&0);
    c.get(&2);
    assert_eq!(put(&c, 3, 3), vec![1]);
    c.get(&0);
    assert_eq!(put(&c, 4, 4), vec![2]);
    assert_eq!(c.len(), 3);
}

#[test]
fn lfu_evicts_the_least_frequently_used_but_admits_new_keys() {
    let c = Ordered::new(3, Eviction::Lfu, false);
    for k in 0..3u64 {
        put(&c, k, k);
    }
    for _ in 0..5 {
        c.get(&0);
        c.get(&1);
    }
    c.get(&2);
    assert_eq!(put(&c, 3, 3), vec![2]);
    assert!(c.peek(&0).is_some() && c.peek(&1).is_some());
    assert_eq!(
        c.peek(&3),
        Some(3),
        "the new key is in, not evicted at once"
    );
    assert_eq!(put(&c, 4, 4), vec![3], "then it is the least used");
}

#[test]
fn a_full_shard_evicts_exactly_its_batch() {
    let c = Ordered::new(10, Eviction::Lru, false);
    c.set_batch(4);
    for k in 0..10u64 {
        assert!(put(&c, k, k).is_empty());
    }
    assert_eq!(
        put(&c, 10, 10),
        vec![0, 1, 2, 3],
        "the four least recently used"
    );
    assert_eq!(c.len(), 7);
    c.set_batch(1000);
    for k in 11..14u64 {
        assert!(put(&c, k, k).is_empty());
    }
    assert_eq!(put(&c, 14, 14).len(), 10, "all but the new entry");
    assert_eq!(c.len(), 1);
}

#[test]
fn removal_keeps_the_index_consistent() {
    for policy in [Eviction::Lru, Eviction::Lfu, Eviction::TinyLfu] {
        let c = Ordered::new(100, policy, false);
        for k in 0..10u64 {
            put(&c, k, k * 10);
        }
        assert_eq!(c.remove_if(&3, |_| true), Some((3, 30)));
        assert_eq!(c.remove_if(&4, |v| *v == 0), None);
        c.retain(|k, _| k % 2 == 0);
        let mut keys: Vec<u64> = c.entries().into_iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, vec![0, 2, 4, 6, 8], "{policy:?}");
        for k in keys {
            assert_eq!(c.get(&k), Some(k * 10));
        }
        for k in 100..300u64 {
            put(&c, k, k);
        }
        assert!(c.len() <= 100, "{policy:?}: {}", c.len());
        let n = c.len();
        assert_eq!(c.drain().len(), n);
        assert_eq!(c.len(), 0);
    }
}

#[test]
fn lower_priorities_go_first_and_critical_entries_stay() {
    for policy in [Eviction::Lru, Eviction::Lfu, Eviction::TinyLfu] {
        let c = Ordered::new(6, policy, false);
        put_at(&c, 1, Priority::Critical);
        put_at(&c, 2, Priority::High);
        put_at(&c, 3, Priority::Medium);
        put_at(&c, 4, Priority::Low);
        put_at(&c, 5, Priority::Medium);
        put_at(&c, 6, Priority::High);
        for _ in 0..3 {
            c.get(&4);
        }
        let mut gone = Vec::new();
        for k in 10..14 {
            gone.extend(put_at(&c, k, Priority::High));
        }
        assert_eq!(&gone[..3], &[4, 3, 5], "{policy:?}: low, then medium");
        for k in 20..40 {
            put_at(&c, k, Priority::High);
        }
        assert_eq!(
            c.peek(&1),
            Some(1),
            "{policy:?}: critical is never evicted for size"
        );
        // A low entry in a cache of higher ones is the one to go.
        assert_eq!(put_at(&c, 99, Priority::Low), vec![99], "{policy:?}");
    }
}

#[test]
fn critical_entries_beyond_their_share_rank_as_high() {
    let c = Ordered::new(10, Eviction::Lru, false);
    c.set_critical_share(0.3);
    for k in 0..5 {
        put_at(&c, k, Priority::Critical);
    }
    for k in 100..200 {
        put_at(&c, k, Priority::High);
    }
    let mut kept: Vec<u64> = c
        .entries()
        .into_iter()
        .map(|e| e.0)
        .filter(|&k| k < 100)
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![0, 1, 2],
        "three pinned (30 % of 10), the rest evicted as high"
    );
}

#[test]
fn weights_bound_the_total_and_an_oversized_entry_is_refused() {
    let c: Ordered<u64, u64> = Ordered::new(100, Eviction::Lru, true);
    for k in 0..10 {
        c.insert(k, k, 10, Priority::Medium);
    }
    assert_eq!(c.len(), 10);
    let gone: Vec<u64> = c
        .insert(10, 10, 35, Priority::Medium)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(gone, vec![0, 1, 2, 3], "four of 10 make room for 35");
    let gone: Vec<u64> = c
        .insert(11, 11, 101, Priority::Medium)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        gone,
        vec![11],
        "heavier than the bound: refused, nothing else evicted"
    );
    assert_eq!(c.len(), 7);
    assert!(c.peek(&11).is_none());
}

#[test]
fn tinylfu_keeps_a_frequent_set_through_a_scan() {
    let c = Ordered::new(100, Eviction::TinyLfu, false);
    for _ in 0..20 {
        for k in 0..50u64 {
            if c.get(&k).is_none() {
                put(&c, k, k);
            }
        }
    }
    for k in 1_000..11_000u64 {
        if c.get(&k).is_none() {
            put(&c, k, k);
        }
    }
    let kept = (0..50u64).filter(|k| c.peek(k).is_some()).count();
    assert!(
        kept >= 45,
        "the frequent set survives a scan of one-time keys: {kept} of 50"
    );
    let c = Ordered::new(100, Eviction::Lru, false);
    for k in 0..50u64 {
        put(&c, k, k);
    }
    for k in 1_000..1_100u64 {
        put(&c, k, k);
    }
    assert_eq!(
        (0..50u64).filter(|k| c.peek(k).is_some()).count(),
        0,
        "LRU does not"
    );
}

#[test]
fn shrinking_evicts_lowest_first() {
    let c = Ordered::new(4, Eviction::Lru, false);
    put_at(&c, 1, Priority::Low);
    put_at(&c, 2, Priority::High);
    put_at(&c, 3, Priority::Medium);
    put_at(&c, 4, Priority::Critical);
    let mut gone: Vec<u64> = c.set_capacity(2).into_iter().map(|e| e.0).collect();
    gone.sort();
    assert_eq!(gone, vec![1, 3]);
}

#[test]
fn policies_parse() {
    assert_eq!("lru".parse(), Ok(Eviction::Lru));
    assert_eq!("lfu".parse(), Ok(Eviction::Lfu));
    assert_eq!("tinylfu".parse(), Ok(Eviction::TinyLfu));
    assert!(
        "random"
            .parse::<Eviction>()
            .unwrap_err()
            .contains("expected")
    );
    assert_eq!("critical".parse(), Ok(Priority::Critical));
    assert!(
        "urgent"
            .parse::<Priority>()
            .unwrap_err()
            .contains("expected")
    );
}
