//! Merkle sync between replicas: random divergence (values, tombstones, expiry) must end
//! in identical replicas, for two and three parties, for intervals that wrap zero, for
//! mismatched tree depths and tiny message budgets; and malformed peer messages must be
//! refused with typed errors. One-directional sessions (a client pulling from a node)
//! change only the pulling side.

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    hash::{Interval, Placement},
    merkle::NodeRef,
    proto::{SyncBody, SyncItem, SyncMessage},
    replica::Replica,
    store::{MemStore, Record, Store},
    sync::{sync_pair, SyncConfig, SyncError, SyncSession},
};
use proptest::prelude::*;

const C: &str = "users";

fn replica(depth: u8) -> Replica<MemStore> {
    Replica::with_depth(MemStore::new(), depth).unwrap()
}

fn all(r: &Replica<MemStore>, interval: Interval) -> Vec<Record> {
    r.range(C, interval, None, usize::MAX).unwrap()
}

/// A write to one replica: key index, timestamp, origin, delete?.
///
/// A write is identified by (timestamp, origin): a node's clock never issues the same
/// timestamp twice, so two entries with equal (ts, origin) are the same write and carry
/// the same value and expiry. The value and the expiry are therefore derived from the
/// write's identity, never drawn independently (an independent draw would model two
/// different writes sharing one timestamp, which dhrt cannot produce).
#[derive(Debug, Clone)]
struct Write {
    key: u16,
    ts: u64,
    origin: u64,
    delete: bool,
}

impl Write {
    /// About one write in ten expires, at a wall-clock time fixed by its identity.
    fn expires(&self) -> Option<u64> {
        let h = (u64::from(self.key) * 31 + self.ts * 17 + self.origin * 7) % 20_000;
        h.is_multiple_of(10).then_some(h / 10)
    }
}

fn write() -> impl Strategy<Value = Write> {
    (0u16..300, 1u64..1000, 0u64..3, prop::bool::weighted(0.2))
        .prop_map(|(key, ts, origin, delete)| Write { key, ts, origin, delete })
}

fn apply(r: &mut Replica<MemStore>, w: &Write) {
    let ts = Timestamp::from_parts(w.ts, 0);
    let e = if w.delete {
        Entry::tombstone(ts, NodeId(w.origin))
    } else {
        Entry::value(format!("value-{}-{}", w.key, w.ts), ts, NodeId(w.origin))
    };
    r.merge(C, Bytes::from(format!("key{:04}", w.key)), e.with_expiry(w.expires())).unwrap();
}

/// What a replica should hold after a full sync: the merge of everything written to either.
fn merged(a: &Replica<MemStore>, b: &Replica<MemStore>, interval: Interval) -> Vec<Record> {
    let mut m = replica(4);
    m.set_placement(C, a.placement(C));
    for r in all(a, interval).into_iter().chain(all(b, interval)) {
        m.merge(C, r.key, r.entry).unwrap();
    }
    all(&m, interval)
}

fn salt(seed: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Two replicas from a shared base with random writes on each side end identical,
    /// holding the merge of both; a second session then finds nothing to do.
    #[test]
    fn two_replicas_converge(
        base in prop::collection::vec(write(), 0..200),
        only_a in prop::collection::vec(write(), 0..60),
        only_b in prop::collection::vec(write(), 0..60),
        ordered: bool,
        list_max in 0u64..4,
        seed: u64,
    ) {
        let (mut a, mut b) = (replica(3), replica(3));
        if ordered {
            a.set_placement(C, Placement::Ordered);
            b.set_placement(C, Placement::Ordered);
        }
        for w in &base { apply(&mut a, w); apply(&mut b, w); }
        for w in &only_a { apply(&mut a, w); }
        for w in &only_b { apply(&mut b, w); }
        let want = merged(&a, &b, Interval::full());
        let config = SyncConfig { list_max, ..SyncConfig::default() };
        sync_pair(&mut a, &mut b, C, Interval::full(), salt(seed), config).unwrap();
        prop_assert_eq!(all(&a, Interval::full()), want.clone());
        prop_assert_eq!(all(&b, Interval::full()), want);
        prop_assert_eq!(a.tree(C).map(|t| t.root()), b.tree(C).map(|t| t.root()));
        let again = sync_pair(&mut a, &mut b, C, Interval::full(), salt(seed + 1), config).unwrap();
        prop_assert_eq!(again.messages, 2, "in sync: Begin then Done");
        prop_assert_eq!(again.entries, 0);
    }

    /// Syncing an interval that wraps through zero reconciles exactly that interval and
    /// leaves everything outside it alone.
    #[test]
    fn wrapping_interval_syncs_only_inside(
        only_a in prop::collection::vec(write(), 1..120),
        only_b in prop::collection::vec(write(), 1..120),
        width in 1u64..u64::MAX,
        start in prop_oneof![Just(u64::MAX - 5), any::<u64>()],
        seed: u64,
    ) {
        let (mut a, mut b) = (replica(4), replica(2));
        for w in &only_a { apply(&mut a, w); }
        for w in &only_b { apply(&mut b, w); }
        let range = Interval::new(start, start.wrapping_add(width));
        let outside = Interval::new(range.end, range.start);
        let (a_out, b_out) = (all(&a, outside), all(&b, outside));
        let want = merged(&a, &b, range);
        sync_pair(&mut a, &mut b, C, range, salt(seed), SyncConfig::default()).unwrap();
        prop_assert_eq!(all(&a, range), want.clone());
        prop_assert_eq!(all(&b, range), want);
        prop_assert_eq!(all(&a, outside), a_out);
        prop_assert_eq!(all(&b, outside), b_out);
    }

    /// Three replicas that diverged pairwise converge after a ring of pairwise sessions.
    #[test]
    fn three_replicas_converge(
        writes in prop::collection::vec((0usize..3, write()), 0..240),
        seed: u64,
    ) {
        let mut rs = [replica(3), replica(5), replica(3)];
        for (i, w) in &writes { apply(&mut rs[*i], w); }
        let mut m = replica(3);
        for r in rs.iter().flat_map(|r| all(r, Interval::full())) { m.merge(C, r.key, r.entry).unwrap(); }
        let want = all(&m, Interval::full());
        let [a, b, c] = &mut rs;
        sync_pair(a, b, C, Interval::full(), salt(seed), SyncConfig::default()).unwrap();
        sync_pair(b, c, C, Interval::full(), salt(seed + 1), SyncConfig::default()).unwrap();
        sync_pair(c, a, C, Interval::full(), salt(seed + 2), SyncConfig::default()).unwrap();
        for r in &rs {
            prop_assert_eq!(all(r, Interval::full()), want.clone());
        }
    }
}

#[test]
fn an_empty_replica_receives_everything_in_bounded_frames() {
    let (mut full, mut empty) = (replica(8), replica(8));
    for i in 0..5000u32 {
        let e = Entry::value(vec![b'x'; 100], Timestamp(u64::from(i) + 1), NodeId(1));
        full.merge(C, Bytes::from(format!("k{i:06}")), e).unwrap();
    }
    let config = SyncConfig { max_message_bytes: 16 * 1024, ..SyncConfig::default() };
    let report = sync_pair(&mut empty, &mut full, C, Interval::full(), 7, config).unwrap();
    assert_eq!(all(&empty, Interval::full()), all(&full, Interval::full()));
    assert_eq!(report.entries, 5000);
    assert!(report.max_frame < 20 * 1024, "frames stay near the budget: {report:?}");
    assert!(report.messages > 30, "the transfer was paged: {report:?}");
}

#[test]
fn a_single_difference_costs_little() {
    let (mut a, mut b) = (replica(8), replica(8));
    for i in 0..20_000u32 {
        let e = Entry::value(vec![b'v'; 100], Timestamp(1), NodeId(1));
        a.merge(C, Bytes::from(format!("k{i:06}")), e.clone()).unwrap();
        b.merge(C, Bytes::from(format!("k{i:06}")), e).unwrap();
    }
    b.merge(C, Bytes::from("k000123"), Entry::tombstone(Timestamp(2), NodeId(2))).unwrap();
    let report = sync_pair(&mut a, &mut b, C, Interval::full(), 3, SyncConfig::default()).unwrap();
    assert_eq!(report.entries, 1);
    assert!(report.bytes < 2048, "{report:?}");
    assert_eq!(a.get(C, b"k000123").unwrap().unwrap().value, None, "the delete arrived");
}

#[test]
fn tiny_budgets_still_converge() {
    let (mut a, mut b) = (replica(3), replica(3));
    for i in 0..400u32 {
        let e =
            Entry::value(vec![b'v'; 10], Timestamp(u64::from(i % 7) + 1), NodeId(u64::from(i % 3)));
        if i % 3 != 0 {
            a.merge(C, Bytes::from(format!("k{}", i % 250)), e.clone()).unwrap();
        }
        if i % 5 != 0 {
            b.merge(C, Bytes::from(format!("k{}", (i * 7) % 250)), e).unwrap();
        }
    }
    let config = SyncConfig { max_message_bytes: 1, list_max: 1, ..SyncConfig::default() };
    let want = merged(&a, &b, Interval::full());
    sync_pair(&mut a, &mut b, C, Interval::full(), 11, config).unwrap();
    assert_eq!(all(&a, Interval::full()), want);
    assert_eq!(all(&b, Interval::full()), want);
}

fn begin_pair() -> (Replica<MemStore>, Replica<MemStore>, SyncSession, SyncSession) {
    let (mut a, mut b) = (replica(3), replica(3));
    for i in 0..50u32 {
        a.merge(C, Bytes::from(format!("k{i}")), Entry::value("x", Timestamp(1), NodeId(1)))
            .unwrap();
    }
    b.merge(C, Bytes::from("other"), Entry::value("y", Timestamp(1), NodeId(1))).unwrap();
    let range = Interval::new(0, u64::MAX / 2);
    let (sa, begin) = SyncSession::initiate(9, &a, C, range, 5, SyncConfig::default()).unwrap();
    let (sb, _) = SyncSession::accept(&mut b, begin, SyncConfig::default()).unwrap();
    (a, b, sa, sb)
}

fn step(items: Vec<SyncItem>) -> SyncMessage {
    SyncMessage { session: 9, body: SyncBody::Step { items } }
}

#[test]
fn malformed_messages_are_refused_with_typed_errors() {
    let bad: Vec<(SyncMessage, &str)> = vec![
        (
            step(vec![SyncItem::Children { node: NodeRef::ROOT, mask: 0b11, digests: vec![1] }]),
            "digests",
        ),
        (
            step(vec![SyncItem::Children {
                node: NodeRef::ROOT,
                mask: 0b1_0000,
                digests: vec![1],
            }]),
            "digests",
        ),
        (
            step(vec![SyncItem::Children {
                node: NodeRef { level: 1, prefix: 9 },
                mask: 0,
                digests: vec![],
            }]),
            "invalid",
        ),
        (
            step(vec![SyncItem::Children {
                node: NodeRef { level: 1, prefix: 3 },
                mask: 0,
                digests: vec![],
            }]),
            "outside",
        ),
        (
            step(vec![SyncItem::Children {
                node: NodeRef { level: 32, prefix: 5 },
                mask: 0,
                digests: vec![],
            }]),
            "single position",
        ),
        (
            step(vec![SyncItem::Entries {
                entries: vec![(Bytes::new(), Entry::tombstone(Timestamp(1), NodeId(1)))],
            }]),
            "key",
        ),
        (
            SyncMessage {
                session: 9,
                body: SyncBody::Begin {
                    collection: C.into(),
                    placement: Placement::Hashed,
                    range: Interval::full(),
                    depth: 3,
                    salt: 1,
                    root: Default::default(),
                },
            },
            "Begin",
        ),
        (SyncMessage { session: 10, body: SyncBody::Done }, "session"),
        (SyncMessage { session: 9, body: SyncBody::Abort { reason: "bye".into() } }, "aborted"),
    ];
    for (msg, expect) in bad {
        let (_, mut b, _, mut sb) = begin_pair();
        let err = sb.handle(&mut b, msg.clone()).unwrap_err();
        assert!(err.to_string().contains(expect), "{msg:?}: {err}");
        assert!(!sb.is_open() || matches!(err, SyncError::WrongSession { .. }));
        if sb.is_open() {
            continue;
        }
        let again = sb.handle(&mut b, step(vec![])).unwrap_err();
        assert!(matches!(again, SyncError::Closed(9)), "{again}");
    }
    // Entries outside the range are refused, and nothing of the batch is applied.
    let (_, mut b, _, mut sb) = begin_pair();
    let outside = (0..1000)
        .map(|i| Bytes::from(format!("z{i}")))
        .find(|k| b.position(C, k) > u64::MAX / 2)
        .unwrap();
    let e = Entry::value("v", Timestamp(5), NodeId(1));
    let err = sb
        .handle(&mut b, step(vec![SyncItem::Entries { entries: vec![(outside.clone(), e)] }]))
        .unwrap_err();
    assert!(matches!(err, SyncError::Protocol(_)));
    assert_eq!(b.get(C, &outside).unwrap(), None);
}

#[test]
fn placement_mismatch_and_bad_collection_are_refused() {
    let (a, mut b) = (replica(3), replica(3));
    b.set_placement(C, Placement::Ordered);
    let (_, begin) =
        SyncSession::initiate(1, &a, C, Interval::full(), 1, SyncConfig::default()).unwrap();
    let err = SyncSession::accept(&mut b, begin, SyncConfig::default()).unwrap_err();
    assert!(err.to_string().contains("Ordered"), "{err}");
    let (_, begin) =
        SyncSession::initiate(1, &a, "no/slashes", Interval::full(), 1, SyncConfig::default())
            .unwrap();
    let err = SyncSession::accept(&mut b, begin, SyncConfig::default()).unwrap_err();
    assert!(matches!(err, SyncError::Store(_)), "{err}");
}

#[test]
fn other_collections_are_untouched() {
    let (mut a, mut b) = (replica(3), replica(3));
    a.merge("other", Bytes::from("k"), Entry::value("a", Timestamp(1), NodeId(1))).unwrap();
    a.merge(C, Bytes::from("k"), Entry::value("a", Timestamp(1), NodeId(1))).unwrap();
    sync_pair(&mut a, &mut b, C, Interval::full(), 1, SyncConfig::default()).unwrap();
    assert!(b.get(C, b"k").unwrap().is_some());
    assert!(b.get("other", b"k").unwrap().is_none());
    assert_eq!(b.store().collections().unwrap(), vec![C.to_string()]);
}

/// The cost bound of the issue, at a size a test can afford: with 1% of 40,000 entries
/// differing (the benchmark's 10,000 in 1,000,000), bytes stay within
/// d × (entry size + 150 B) + 64 KiB, and a second session is two small messages.
#[test]
fn bytes_grow_with_the_differences_not_the_data() {
    let n = 40_000u64;
    let value = |i: u64| Bytes::from(format!("{i:0100}"));
    let (mut a, mut b) = (replica(8), replica(8));
    for i in 0..n {
        let e = Entry::value(value(i), Timestamp(1 << 16), NodeId(1));
        a.merge(C, Bytes::from(format!("key-{i:012}")), e.clone()).unwrap();
        b.merge(C, Bytes::from(format!("key-{i:012}")), e).unwrap();
    }
    let d = n / 100;
    for i in 0..d {
        let k = Bytes::from(format!("key-{:012}", (i * 7919) % n));
        if i % 2 == 0 {
            b.merge(C, k, Entry::value(value(i), Timestamp(2 << 16), NodeId(2))).unwrap();
        } else {
            a.merge(C, k, Entry::tombstone(Timestamp(2 << 16), NodeId(1))).unwrap();
        }
    }
    let sample =
        (Bytes::from("key-000000000001"), Entry::value(value(1), Timestamp(1 << 16), NodeId(1)));
    let entry_size = rmp_serde::to_vec(&sample).unwrap().len() as u64;
    let report = sync_pair(&mut a, &mut b, C, Interval::full(), 99, SyncConfig::default()).unwrap();
    assert_eq!(report.entries, d);
    let bound = d * (entry_size + 150) + 64 * 1024;
    assert!(report.bytes <= bound, "{} bytes > bound {bound}: {report:?}", report.bytes);
    let again = sync_pair(&mut a, &mut b, C, Interval::full(), 100, SyncConfig::default()).unwrap();
    assert!(again.bytes < 1024 && again.messages == 2, "{again:?}");
}

/// A replica that collected a tombstone does not take it back from one that has not yet,
/// but a collected tombstone still overrides a value it deleted.
#[test]
fn collected_tombstones_are_not_taken_back_unless_they_override_something() {
    let (mut a, mut b) = (replica(3), replica(3));
    let old = Entry::tombstone(Timestamp::from_parts(1_000, 0), NodeId(1));
    a.merge(C, Bytes::from("gone"), old.clone()).unwrap();
    a.merge(C, Bytes::from("deleted"), old.clone()).unwrap();
    let value = Entry::value("v", Timestamp::from_parts(500, 0), NodeId(2));
    b.merge(C, Bytes::from("deleted"), value).unwrap();
    let config = SyncConfig { collected_before: Some(2_000), ..SyncConfig::default() };
    sync_pair(&mut b, &mut a, C, Interval::full(), salt(3), config).unwrap();
    assert_eq!(b.get(C, b"gone").unwrap(), None, "a collected tombstone is not stored again");
    assert_eq!(b.get(C, b"deleted").unwrap(), Some(old), "but it still deletes an older value");
}

/// Runs a session where `a` initiates with `ca` and `b` answers with `cb`, each side with
/// its own config (as a client and a node would).
fn run_directed(
    a: &mut Replica<MemStore>,
    b: &mut Replica<MemStore>,
    range: Interval,
    ca: SyncConfig,
    cb: SyncConfig,
) -> Result<(), SyncError> {
    let (mut sa, begin) = SyncSession::initiate(3, a, C, range, 17, ca)?;
    let (mut sb, mut to_a) = SyncSession::accept(b, begin, cb)?;
    loop {
        let Some(reply) = sa.handle(a, to_a)? else { return Ok(()) };
        match sb.handle(b, reply)? {
            Some(next) => to_a = next,
            None => return Ok(()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A pull-only side ends with the merge of both; the push-only side is untouched,
    /// whichever of them opens the session; a second session ships nothing new.
    #[test]
    fn one_directional_sync_changes_only_the_puller(
        base in prop::collection::vec(write(), 0..150),
        only_puller in prop::collection::vec(write(), 0..60),
        only_pusher in prop::collection::vec(write(), 0..60),
        puller_initiates: bool,
        list_max in 0u64..4,
    ) {
        let (mut puller, mut pusher) = (replica(3), replica(4));
        for w in &base { apply(&mut puller, w); apply(&mut pusher, w); }
        for w in &only_puller { apply(&mut puller, w); }
        for w in &only_pusher { apply(&mut pusher, w); }
        let want = merged(&puller, &pusher, Interval::full());
        let before = all(&pusher, Interval::full());
        let pull = SyncConfig { list_max, ..SyncConfig::pull_only() };
        let push = SyncConfig { list_max, ..SyncConfig::push_only() };
        if puller_initiates {
            run_directed(&mut puller, &mut pusher, Interval::full(), pull, push).unwrap();
        } else {
            run_directed(&mut pusher, &mut puller, Interval::full(), push, pull).unwrap();
        }
        prop_assert_eq!(all(&puller, Interval::full()), want);
        prop_assert_eq!(all(&pusher, Interval::full()), before);
    }
}

#[test]
fn a_push_only_side_refuses_entries_and_stores_nothing() {
    // The node (push-only) lacks keys and holds older versions of others; a peer that
    // pushes anyway — a client ignoring the protocol — gets the session refused.
    let (mut client, mut node) = (replica(3), replica(3));
    for i in 0..40u32 {
        let k = Bytes::from(format!("k{i}"));
        node.merge(C, k.clone(), Entry::value("old", Timestamp(1), NodeId(1))).unwrap();
        client.merge(C, k, Entry::value("injected", Timestamp(9), NodeId(9))).unwrap();
        client
            .merge(C, Bytes::from(format!("new{i}")), Entry::value("x", Timestamp(9), NodeId(9)))
            .unwrap();
    }
    let before = all(&node, Interval::full());
    let err = run_directed(
        &mut client,
        &mut node,
        Interval::full(),
        SyncConfig::default(),
        SyncConfig::push_only(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not accept entries"), "{err}");
    assert_eq!(all(&node, Interval::full()), before, "nothing was merged");
    // Entries sent straight at an open push-only session are refused too.
    let (_, begin) =
        SyncSession::initiate(4, &client, C, Interval::full(), 1, SyncConfig::pull_only()).unwrap();
    let (mut s, _) = SyncSession::accept(&mut node, begin, SyncConfig::push_only()).unwrap();
    let forged = SyncMessage {
        session: 4,
        body: SyncBody::Step {
            items: vec![SyncItem::Entries {
                entries: vec![(Bytes::from("k1"), Entry::value("evil", Timestamp(99), NodeId(9)))],
            }],
        },
    };
    assert!(matches!(s.handle(&mut node, forged), Err(SyncError::Protocol(_))));
    assert_eq!(all(&node, Interval::full()), before, "nothing was merged");
    // A pull-only client gets the node's data and keeps its own newer entries.
    run_directed(
        &mut client,
        &mut node,
        Interval::full(),
        SyncConfig::pull_only(),
        SyncConfig::push_only(),
    )
    .unwrap();
    assert_eq!(all(&node, Interval::full()), before);
    assert_eq!(client.get(C, b"k1").unwrap().unwrap().value, Some(Bytes::from("injected")));
}
