//! The conformance suite every [`Store`] implementation must pass.
//!
//! Each check is a public function taking a fresh, empty store; the
//! [`store_conformance_tests!`](crate::store_conformance_tests) macro turns them into
//! `#[test]`s for a constructor expression, so `MemStore` here and `RedbStore` in the
//! native crate run exactly the same checks:
//!
//! ```text
//! dhrt_core::store_conformance_tests!(MemStore::new());
//! ```
//!
//! Available with the `testing` feature.

use super::{CollectionStats, Merged, Record, Store, StoreError, Superseded, MAX_KEY_LEN};
use crate::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    hash::{Interval, Position},
};
use bytes::Bytes;
use std::collections::BTreeMap;

/// Generates one `#[test]` per conformance check for the store built by `$make`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@tests $make;
            get_missing, insert_then_get, newer_wins_older_kept, identical_is_kept,
            tombstones_are_stored_and_counted, collections_are_isolated_and_listed,
            range_orders_by_position_then_key, range_wraps_through_zero,
            range_full_ring_starts_after_start, range_pages_visit_each_record_once,
            range_cursor_outside_interval_is_empty, delete_range_removes_only_inside,
            remove_purges_and_updates_stats, drop_collection_forgets_everything,
            invalid_input_is_refused_and_writes_nothing, merge_batch_reports_each_outcome,
            random_operations_match_a_model
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let mut store = $make;
                $crate::store::conformance::$name(&mut store);
            }
        )*
    };
}

fn v(ts: u64, value: &str) -> Entry {
    Entry::value(Bytes::copy_from_slice(value.as_bytes()), Timestamp(ts), NodeId(1))
}

fn k(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn keys_of(records: &[Record]) -> Vec<(Position, Bytes)> {
    records.iter().map(|r| (r.pos, r.key.clone())).collect()
}

/// A missing key, in a missing collection or not, reads as `None`.
pub fn get_missing<S: Store>(s: &mut S) {
    assert_eq!(s.get("c", 1, b"nope").unwrap(), None);
    s.merge("c", 2, &k("a"), v(1, "x")).unwrap();
    assert_eq!(s.get("c", 1, b"nope").unwrap(), None);
    assert_eq!(
        s.get("c", 1, b"a").unwrap(),
        None,
        "same key at another position is another record"
    );
    assert_eq!(s.stats("missing").unwrap(), CollectionStats::default());
}

/// A merged entry reads back unchanged.
pub fn insert_then_get<S: Store>(s: &mut S) {
    let e = v(5, "hello").with_expiry(Some(99));
    assert_eq!(s.merge("c", 7, &k("k"), e.clone()).unwrap(), Merged::Inserted);
    assert_eq!(s.get("c", 7, b"k").unwrap(), Some(e));
}

/// A newer entry replaces and returns the old one; an older one is kept out.
pub fn newer_wins_older_kept<S: Store>(s: &mut S) {
    s.merge("c", 7, &k("k"), v(5, "five")).unwrap();
    assert_eq!(
        s.merge("c", 7, &k("k"), v(6, "six")).unwrap(),
        Merged::Replaced(Superseded::of(&v(5, "five")))
    );
    assert_eq!(s.merge("c", 7, &k("k"), v(4, "four")).unwrap(), Merged::Kept);
    assert_eq!(s.get("c", 7, b"k").unwrap(), Some(v(6, "six")));
    assert_eq!(s.stats("c").unwrap().entries, 1);
}

/// Merging the stored entry again changes nothing.
pub fn identical_is_kept<S: Store>(s: &mut S) {
    s.merge("c", 1, &k("k"), v(5, "x")).unwrap();
    let before = s.stats("c").unwrap();
    assert_eq!(s.merge("c", 1, &k("k"), v(5, "x")).unwrap(), Merged::Kept);
    assert_eq!(s.stats("c").unwrap(), before);
}

/// Tombstones are records: they win ties, are counted, and have a size.
pub fn tombstones_are_stored_and_counted<S: Store>(s: &mut S) {
    s.merge("c", 1, &k("k"), v(5, "x")).unwrap();
    let t = Entry::tombstone(Timestamp(5), NodeId(1));
    assert_eq!(
        s.merge("c", 1, &k("k"), t.clone()).unwrap(),
        Merged::Replaced(Superseded::of(&v(5, "x")))
    );
    assert_eq!(s.get("c", 1, b"k").unwrap(), Some(t.clone()));
    let st = s.stats("c").unwrap();
    assert_eq!((st.entries, st.tombstones), (1, 1));
    assert_eq!(st.bytes, (1 + t.size()) as u64);
}

/// Collections do not see each other's keys; non-empty ones are listed, sorted.
pub fn collections_are_isolated_and_listed<S: Store>(s: &mut S) {
    s.merge("zeta", 1, &k("k"), v(1, "z")).unwrap();
    s.merge("alpha", 1, &k("k"), v(1, "a")).unwrap();
    assert_eq!(s.get("alpha", 1, b"k").unwrap(), Some(v(1, "a")));
    assert_eq!(s.get("zeta", 1, b"k").unwrap(), Some(v(1, "z")));
    assert_eq!(s.collections().unwrap(), vec!["alpha".to_string(), "zeta".to_string()]);
}

/// Records come back by position, then key bytes.
pub fn range_orders_by_position_then_key<S: Store>(s: &mut S) {
    for (p, key) in [(30, "b"), (10, "z"), (30, "a"), (20, "m"), (10, "a")] {
        s.merge("c", p, &k(key), v(1, key)).unwrap();
    }
    let got = s.range("c", Interval::new(5, 30), None, 100).unwrap();
    assert_eq!(
        keys_of(&got),
        vec![(10, k("a")), (10, k("z")), (20, k("m")), (30, k("a")), (30, k("b"))]
    );
    let got = s.range("c", Interval::new(10, 29), None, 100).unwrap();
    assert_eq!(keys_of(&got), vec![(20, k("m"))], "start is exclusive, end inclusive");
}

/// A wrapping interval walks from after its start up to `u64::MAX`, then from 0.
pub fn range_wraps_through_zero<S: Store>(s: &mut S) {
    for p in [0, 1, 5, u64::MAX - 1, u64::MAX, 1000] {
        s.merge("c", p, &k("k"), v(1, "x")).unwrap();
    }
    let got = s.range("c", Interval::new(u64::MAX - 2, 5), None, 100).unwrap();
    let positions: Vec<_> = got.iter().map(|r| r.pos).collect();
    assert_eq!(positions, vec![u64::MAX - 1, u64::MAX, 0, 1, 5]);
    let got = s.range("c", Interval::new(u64::MAX, 1), None, 100).unwrap();
    assert_eq!(got.iter().map(|r| r.pos).collect::<Vec<_>>(), vec![0, 1]);
}

/// The full ring `(s, s]` starts just after `s` and ends with `s`.
pub fn range_full_ring_starts_after_start<S: Store>(s: &mut S) {
    for p in [0, 5, 10, u64::MAX] {
        s.merge("c", p, &k("k"), v(1, "x")).unwrap();
    }
    let got = s.range("c", Interval::new(5, 5), None, 100).unwrap();
    assert_eq!(got.iter().map(|r| r.pos).collect::<Vec<_>>(), vec![10, u64::MAX, 0, 5]);
}

/// Paging with the last record as cursor visits every record once, in order.
pub fn range_pages_visit_each_record_once<S: Store>(s: &mut S) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..300u32 {
        // Few distinct positions so that keys share them; some near the wrap.
        let p = match rng.next() % 4 {
            0 => u64::MAX - rng.next() % 3,
            1 => rng.next() % 3,
            _ => rng.next() % 50 * (u64::MAX / 50),
        };
        s.merge("c", p, &Bytes::from(format!("key{i}")), v(1, "x")).unwrap();
    }
    for interval in [Interval::new(u64::MAX / 3, u64::MAX / 3), Interval::new(u64::MAX - 1, 2)] {
        let all = s.range("c", interval, None, usize::MAX).unwrap();
        let mut paged = Vec::new();
        let mut cursor: Option<(Position, Bytes)> = None;
        loop {
            let page =
                s.range("c", interval, cursor.as_ref().map(|(p, k)| (*p, k.as_ref())), 7).unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            cursor = Some((last.pos, last.key.clone()));
            paged.extend(page);
        }
        assert_eq!(keys_of(&paged), keys_of(&all), "{interval}");
        assert!(all.iter().all(|r| interval.contains(r.pos)));
        let offsets: Vec<_> = all.iter().map(|r| (interval.offset(r.pos), r.key.clone())).collect();
        let mut sorted = offsets.clone();
        sorted.sort();
        assert_eq!(offsets, sorted, "ring order from the start");
    }
}

/// A cursor whose position is outside the interval yields nothing.
pub fn range_cursor_outside_interval_is_empty<S: Store>(s: &mut S) {
    s.merge("c", 15, &k("k"), v(1, "x")).unwrap();
    assert!(s.range("c", Interval::new(10, 20), Some((50, b"k")), 10).unwrap().is_empty());
    assert_eq!(s.range("c", Interval::new(10, 20), Some((11, b"k")), 10).unwrap().len(), 1);
    assert!(s.range("c", Interval::new(10, 20), None, 0).unwrap().is_empty());
}

/// `delete_range` removes exactly the records inside the (wrapping) interval.
pub fn delete_range_removes_only_inside<S: Store>(s: &mut S) {
    for p in [0, 3, 9, u64::MAX - 3, u64::MAX, 500] {
        s.merge("c", p, &k("k"), v(1, "x")).unwrap();
    }
    assert_eq!(s.delete_range("c", Interval::new(u64::MAX - 3, 3)).unwrap(), 3);
    let left = s.range("c", Interval::full(), None, 100).unwrap();
    assert_eq!(left.iter().map(|r| r.pos).collect::<Vec<_>>(), vec![9, 500, u64::MAX - 3]);
    assert_eq!(s.stats("c").unwrap().entries, 3);
    assert_eq!(s.delete_range("nope", Interval::full()).unwrap(), 0);
}

/// `remove` returns the stored entry, forgets it, and fixes the counts.
pub fn remove_purges_and_updates_stats<S: Store>(s: &mut S) {
    s.merge("c", 1, &k("a"), Entry::tombstone(Timestamp(3), NodeId(2))).unwrap();
    s.merge("c", 2, &k("b"), v(3, "bee")).unwrap();
    let removed = s.remove("c", 1, b"a").unwrap();
    assert_eq!(removed, Some(Entry::tombstone(Timestamp(3), NodeId(2))));
    assert_eq!(s.remove("c", 1, b"a").unwrap(), None);
    let st = s.stats("c").unwrap();
    assert_eq!((st.entries, st.tombstones, st.bytes), (1, 0, (1 + v(3, "bee").size()) as u64));
}

/// Dropping a collection forgets its records and its name.
pub fn drop_collection_forgets_everything<S: Store>(s: &mut S) {
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.merge("d", 1, &k("a"), v(1, "x")).unwrap();
    assert!(s.drop_collection("c").unwrap());
    assert!(!s.drop_collection("c").unwrap());
    assert_eq!(s.get("c", 1, b"a").unwrap(), None);
    assert_eq!(s.collections().unwrap(), vec!["d".to_string()]);
    assert_eq!(s.stats("c").unwrap(), CollectionStats::default());
    s.merge("c", 1, &k("b"), v(1, "y")).unwrap();
    assert_eq!(s.stats("c").unwrap().entries, 1, "a dropped collection can be used again");
}

/// Bad names and keys are refused with typed errors, and nothing is written.
pub fn invalid_input_is_refused_and_writes_nothing<S: Store>(s: &mut S) {
    for bad in ["", "..", "a/b", "sp ace", "ü", &"x".repeat(65)] {
        let err = s.merge(bad, 1, &k("k"), v(1, "x")).unwrap_err();
        assert!(matches!(err, StoreError::InvalidCollection { .. }), "{bad:?}: {err}");
    }
    let err = s.merge("c", 1, &Bytes::new(), v(1, "x")).unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { len: 0, .. }));
    let long = Bytes::from(vec![b'k'; MAX_KEY_LEN + 1]);
    let err = s.merge("c", 1, &long, v(1, "x")).unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }));
    assert!(err.to_string().contains("keys must be"));
    assert!(s.collections().unwrap().is_empty());
    let max = Bytes::from(vec![b'k'; MAX_KEY_LEN]);
    assert_eq!(s.merge("ok_name-1.x", 1, &max, v(1, "x")).unwrap(), Merged::Inserted);
}

/// A batch reports one outcome per record, in order, as single merges would.
pub fn merge_batch_reports_each_outcome<S: Store>(s: &mut S) {
    s.merge("c", 1, &k("a"), v(5, "old")).unwrap();
    let batch = vec![
        Record { pos: 1, key: k("a"), entry: v(6, "new") },
        Record { pos: 2, key: k("b"), entry: v(1, "b") },
        Record { pos: 2, key: k("b"), entry: v(1, "b") },
        Record { pos: 1, key: k("a"), entry: v(2, "older") },
    ];
    let out = s.merge_batch("c", &batch).unwrap();
    assert_eq!(
        out,
        vec![
            Merged::Replaced(Superseded::of(&v(5, "old"))),
            Merged::Inserted,
            Merged::Kept,
            Merged::Kept
        ]
    );
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(6, "new")));
}

/// Random merges, removes and range deletes agree with a `BTreeMap` model, including
/// counts and sizes.
pub fn random_operations_match_a_model<S: Store>(s: &mut S) {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut model: BTreeMap<(Position, Bytes), Entry> = BTreeMap::new();
    for _ in 0..2000 {
        let pos = rng.next() % 8 * (u64::MAX / 7);
        let key = Bytes::from(format!("k{}", rng.next() % 5));
        match rng.next() % 10 {
            0 => {
                let removed = s.remove("c", pos, &key).unwrap();
                assert_eq!(removed, model.remove(&(pos, key)));
            }
            1 => {
                let (a, b) = (rng.next(), rng.next());
                let interval = Interval::new(a, b);
                let n = s.delete_range("c", interval).unwrap();
                let before = model.len();
                model.retain(|(p, _), _| !interval.contains(*p));
                assert_eq!(n as usize, before - model.len());
            }
            _ => {
                let ts = Timestamp(rng.next() % 20);
                let entry = if rng.next().is_multiple_of(4) {
                    Entry::tombstone(ts, NodeId(rng.next() % 2))
                } else {
                    // Now and then a value past `MemStore`'s sharing threshold.
                    let len = if rng.next().is_multiple_of(8) { 1500 } else { rng.next() % 9 };
                    Entry::value(Bytes::from(vec![b'v'; len as usize]), ts, NodeId(1))
                };
                let entry = match rng.next() % 3 {
                    0 => entry.with_expiry(Some(rng.next() % 50)),
                    _ => entry,
                };
                s.merge("c", pos, &key, entry.clone()).unwrap();
                let slot = model.entry((pos, key)).or_insert_with(|| entry.clone());
                *slot = slot.clone().merge(entry);
            }
        }
    }
    let all = s.range("c", Interval::new(u64::MAX, u64::MAX), None, usize::MAX).unwrap();
    let got: Vec<_> = all.into_iter().map(|r| ((r.pos, r.key), r.entry)).collect();
    let want: Vec<_> = model.clone().into_iter().collect();
    assert_eq!(got, want);
    // Paged, three at a time, each page resuming after the last record of the one before.
    let mut paged = Vec::new();
    let mut after: Option<(Position, Bytes)> = None;
    loop {
        let cursor = after.as_ref().map(|(p, k)| (*p, &k[..]));
        let page = s.range("c", Interval::new(u64::MAX, u64::MAX), cursor, 3).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| (r.pos, r.key.clone()));
        paged.extend(page.into_iter().map(|r| ((r.pos, r.key), r.entry)));
    }
    assert_eq!(paged, want, "paging visits each record once, in order");
    // Every key's version, read without its value, is its entry's (absent keys: none).
    for pos in (0..8).map(|p| p * (u64::MAX / 7)) {
        for key in (0..5).map(|i| format!("k{i}")) {
            let want = model.get(&(pos, Bytes::from(key.clone()))).map(Entry::version);
            assert_eq!(s.version("c", pos, key.as_bytes()).unwrap(), want, "{pos} {key}");
        }
    }
    assert_eq!(s.version("elsewhere", 0, b"k0").unwrap(), None);
    let mut st = CollectionStats::default();
    for ((_, key), e) in &model {
        st.account(key, e, true);
    }
    assert_eq!(s.stats("c").unwrap(), st);
}

/// A tiny deterministic generator so the suite needs no dev-dependencies.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
