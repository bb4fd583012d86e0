//! How many bytes a peer message will take on the wire, estimated without encoding it.
//!
//! A host queues messages for its peers before it encodes them (encoding happens on the
//! link's own task, off the node thread), yet it must bound those queues in bytes: a
//! replica write or a sync page can carry values up to the frame limit. So the node
//! thread asks [`PeerMessage::estimated_frame_bytes`], which walks the message once and
//! adds up what dominates its frame — keys, values, names, addresses — plus a small,
//! fixed allowance for every number, header and tag:
//!
//! - byte strings and strings count their length plus their MessagePack length header
//!   (2, 3 or 5 bytes);
//! - every integer counts 9 bytes, the most MessagePack spends on one (timestamps, node
//!   ids and ring positions are large numbers, so this is close, not just safe);
//! - every message counts a fixed head for its version byte, the envelope's map and
//!   variant name, and the inner variant's map, name (the family's longest) and field
//!   array: 16 bytes for sync, 20 for gossip, 22 for watches, 28 for replica messages.
//!
//! The walk costs one step per item (record, key, member, sync item), never per byte:
//! a page of a thousand 1 KiB records costs a thousand additions. The estimate is
//! within a factor of two of the encoded length for every message the node sends, and
//! within a few percent once values dominate (`tests` below, with a property test over
//! random messages); it leans high, so a budget counted with it is not overrun.
//! [`Entry::size`](crate::entry::Entry::size) measures what an entry costs to store,
//! not to send (it has no headers), so the walk counts entries itself.

use super::{
    replica::ReplicaMessage,
    sync::{SyncBody, SyncItem, SyncMessage},
    watch::WatchMessage,
    PeerMessage,
};
use crate::{entry::Entry, membership::Member, membership::MembershipMessage};
use bytes::Bytes;

/// The head of a message of one family: version byte, envelope map, the family's name
/// (`outer` bytes), the inner variant's map, its longest name (`inner` bytes) and field
/// array, each name with its one-byte header.
const fn head(outer: usize, inner: usize) -> usize {
    1 + 1 + (1 + outer) + 1 + (1 + inner) + 1
}

/// The most bytes MessagePack spends on one integer.
const INT: usize = 9;

/// An optional integer: `nil` or the integer.
fn opt_int<T>(v: &Option<T>) -> usize {
    if v.is_some() {
        INT
    } else {
        1
    }
}

/// A byte string or string of `n` bytes, with its length header.
fn blob(n: usize) -> usize {
    n + match n {
        0..=255 => 2,
        256..=65_535 => 3,
        _ => 5,
    }
}

/// The header of an array of `n` elements.
fn seq(n: usize) -> usize {
    match n {
        0..=15 => 1,
        16..=65_535 => 3,
        _ => 5,
    }
}

/// An array of byte strings.
fn keys(keys: &[Bytes]) -> usize {
    seq(keys.len()) + keys.iter().map(|k| blob(k.len())).sum::<usize>()
}

/// An entry: its field array, value (or `nil`), timestamp, origin and expiry.
fn entry(e: &Entry) -> usize {
    1 + e.value.as_ref().map_or(1, |v| blob(v.len())) + 2 * INT + opt_int(&e.expires)
}

/// An array of `(key, entry)` pairs.
fn records(records: &[(Bytes, Entry)]) -> usize {
    seq(records.len()) + records.iter().map(|(k, e)| 1 + blob(k.len()) + entry(e)).sum::<usize>()
}

/// A membership record: id, address, tokens, status name, incarnation.
fn member(m: &Member) -> usize {
    const STATUS: usize = 9;
    let labels: usize = m.labels.iter().map(|(k, v)| blob(k.len()) + blob(v.len())).sum();
    1 + INT
        + blob(m.addr.len())
        + seq(m.tokens.len())
        + INT * m.tokens.len()
        + STATUS
        + INT
        + seq(m.labels.len())
        + labels
}

fn members(ms: &[Member]) -> usize {
    seq(ms.len()) + ms.iter().map(member).sum::<usize>()
}

impl PeerMessage {
    /// About how many bytes this message's frame ([`crate::wire::encode`]) will be,
    /// computed without encoding it (see the module docs): within a factor of two of
    /// the real length, and leaning high.
    pub fn estimated_frame_bytes(&self) -> usize {
        match self {
            // "Sync", the `SyncMessage` array in place of the inner map, "Begin"
            PeerMessage::Sync(m) => head(4, 5) + sync(m),
            // "Gossip", "PushPull"
            PeerMessage::Gossip(m) => head(6, 8) + gossip(m),
            // "Replica", "ListCollections"
            PeerMessage::Replica(m) => head(7, 15) + replica(m),
            // "Watch", "Unsubscribe"
            PeerMessage::Watch(m) => head(5, 11) + watch(m),
        }
    }
}

fn sync(m: &SyncMessage) -> usize {
    INT + match &m.body {
        SyncBody::Begin { collection, .. } => {
            // placement name, interval, depth, salt, root summary
            blob(collection.len()) + 8 + (1 + 2 * INT) + 2 + INT + (1 + 2 * INT)
        }
        SyncBody::Step { items } => seq(items.len()) + items.iter().map(sync_item).sum::<usize>(),
        SyncBody::Done => 0,
        SyncBody::Abort { reason } => blob(reason.len()),
    }
}

fn sync_item(item: &SyncItem) -> usize {
    // the item's map, one-letter name and field array; a Merkle node reference
    const TAG: usize = 4;
    const NODE: usize = 1 + 2 + INT;
    TAG + match item {
        SyncItem::Children { digests, .. } => NODE + 2 + seq(digests.len()) + INT * digests.len(),
        SyncItem::Versions { versions, .. } => {
            // each: pair array, key, version array (timestamp, origin, tombstone flag)
            NODE + seq(versions.len())
                + versions.iter().map(|(k, _)| 1 + blob(k.len()) + 2 + 2 * INT).sum::<usize>()
        }
        SyncItem::Entries { entries } => records(entries),
        SyncItem::Want { keys: wanted } => keys(wanted),
    }
}

fn replica(m: &ReplicaMessage) -> usize {
    match m {
        ReplicaMessage::Write { collection, records: rs, .. } => {
            INT + blob(collection.len()) + records(rs)
        }
        ReplicaMessage::WriteAck { error, newer, .. } => {
            INT + error.as_ref().map_or(1, |e| blob(e.len())) + newer.map_or(0, |_| INT)
        }
        ReplicaMessage::Read { collection, keys: ks, .. }
        | ReplicaMessage::ReadVersions { collection, keys: ks, .. } => {
            INT + blob(collection.len()) + keys(ks)
        }
        // A version: its field array, timestamp, origin and tombstone flag.
        ReplicaMessage::VersionsReply { versions, .. } => {
            INT + seq(versions.len()) + versions.len() * (2 + 2 * INT) + 1
        }
        ReplicaMessage::ReadReply { entries, .. } => {
            INT + seq(entries.len())
                + entries.iter().map(|e| e.as_ref().map_or(1, entry)).sum::<usize>()
        }
        ReplicaMessage::Repair { collection, records: rs } => blob(collection.len()) + records(rs),
        ReplicaMessage::ListCollections { .. } | ReplicaMessage::LoadQuery { .. } => INT,
        ReplicaMessage::CollectionList { names, .. } => {
            INT + seq(names.len()) + names.iter().map(|n| blob(n.len())).sum::<usize>()
        }
        ReplicaMessage::RangeRead { collection, after, .. } => {
            // request number, name, interval, cursor, limit
            INT + blob(collection.len())
                + (1 + 2 * INT)
                + after.as_ref().map_or(1, |(_, k)| 1 + INT + blob(k.len()))
                + INT
        }
        ReplicaMessage::RangeReply { records: rs, .. } => INT + records(rs) + 2,
        ReplicaMessage::LoadReply { entries, .. } => INT + opt_int(entries),
        ReplicaMessage::RemovalHandOff { .. } => 2 * INT,
        ReplicaMessage::RemovalHandedOff { .. } => 2 * INT + 1,
        ReplicaMessage::MoveQuery { collection, .. } => 2 * INT + blob(collection.len()),
        // the knowledge: an enum of an enum, at most a small array
        ReplicaMessage::MoveState { .. } => 2 * INT + 8 + 1,
        ReplicaMessage::ReadFailed { error, .. } | ReplicaMessage::RangeFailed { error, .. } => {
            INT + blob(error.len())
        }
    }
}

fn watch(m: &WatchMessage) -> usize {
    match m {
        WatchMessage::Subscribe { subs } => {
            seq(subs.len())
                + subs
                    .iter()
                    .map(|s| {
                        1 + INT
                            + blob(s.collection.len())
                            + s.prefix.as_ref().map_or(1, |p| blob(p.len()))
                            + opt_int(&s.resume)
                    })
                    .sum::<usize>()
        }
        WatchMessage::Unsubscribe { subs } => seq(subs.len()) + INT * subs.len(),
        WatchMessage::Changes { items, .. } => 3 * INT + records(items) + 1,
        WatchMessage::ChangesAck { .. } => 3 * INT,
    }
}

fn gossip(m: &MembershipMessage) -> usize {
    // The clock stamp: its field array, two integers and the optional echo.
    let clock = m.clock().map_or(0, |c| 1 + 2 * INT + opt_int(&c.echo_ms));
    clock
        + match m {
            MembershipMessage::Ping { sender, updates, .. } => {
                INT + member(sender) + members(updates)
            }
            MembershipMessage::Ack { on_behalf, sender, updates, .. } => {
                INT + opt_int(on_behalf) + member(sender) + members(updates)
            }
            MembershipMessage::PingReq { target_addr, sender, updates, .. } => {
                2 * INT + blob(target_addr.len()) + member(sender) + members(updates)
            }
            MembershipMessage::PushPull { members: ms, .. } => members(ms) + 1,
            MembershipMessage::Join { member: m, .. } => member(m),
            MembershipMessage::Gossip { sender, updates, .. } => member(sender) + members(updates),
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        clock::Timestamp,
        entry::{NodeId, Version},
        hash::{Interval, Placement},
        membership::Status,
        merkle::{NodeRef, Summary},
        proto::{watch::Subscription, Message},
        wire,
    };
    use proptest::prelude::*;

    const NODE: NodeId = NodeId(0x9e37_79b9_7f4a_7c15);
    const REQ: u64 = 1_234;

    fn ts() -> Timestamp {
        Timestamp::from_parts(1_700_000_000_000, 3)
    }

    fn record(key: &str, value_len: usize) -> (Bytes, Entry) {
        (Bytes::copy_from_slice(key.as_bytes()), Entry::value(vec![b'v'; value_len], ts(), NODE))
    }

    fn tombstone(key: &str) -> (Bytes, Entry) {
        let mut e = Entry::value(Bytes::new(), ts(), NODE);
        e.value = None;
        e.expires = Some(1_700_000_100_000);
        (Bytes::copy_from_slice(key.as_bytes()), e)
    }

    fn member(i: u64) -> Member {
        let tokens = (0..32).map(|t| (t + 1) * 0x0700_0000_0000_0001 + i).collect();
        Member::new(NodeId(NODE.0 ^ i), format!("10.0.0.{i}:7453"), tokens).with(Status::Alive, 7)
    }

    /// The frame length and the estimate of `msg`.
    fn measure(msg: &PeerMessage) -> (usize, usize) {
        let frame = wire::encode(&Message::from(msg.clone())).unwrap();
        (frame.len(), msg.estimated_frame_bytes())
    }

    /// One message of every kind a node sends, small and large.
    fn representative() -> Vec<PeerMessage> {
        let coll = "orders".to_string();
        let interval = Interval { start: 0x1234_5678_9abc_def0, end: 0xfedc_ba98_7654_3210 };
        let node_ref = NodeRef { level: 7, prefix: 0xabcd_0000_0000_0000 };
        let step = |items| {
            PeerMessage::Sync(SyncMessage { session: u64::MAX / 3, body: SyncBody::Step { items } })
        };
        let versions = (0..500)
            .map(|i| {
                let v = Version { ts: ts(), origin: NODE, tombstone: i % 7 == 0 };
                (Bytes::from(format!("key-{i:06}")), v)
            })
            .collect();
        let small: Vec<_> = (0..200).map(|i| record(&format!("user:{i:08}"), 100)).collect();
        vec![
            PeerMessage::Replica(ReplicaMessage::Write {
                req: REQ,
                collection: coll.clone(),
                records: vec![record("k", 10)],
            }),
            PeerMessage::Replica(ReplicaMessage::Write {
                req: REQ,
                collection: coll.clone(),
                records: vec![record("big", 16 << 20)],
            }),
            PeerMessage::Replica(ReplicaMessage::Write {
                req: REQ,
                collection: coll.clone(),
                records: small.clone(),
            }),
            PeerMessage::Replica(ReplicaMessage::WriteAck { req: REQ, error: None, newer: None }),
            PeerMessage::Replica(ReplicaMessage::WriteAck { req: 1, error: None, newer: None }),
            PeerMessage::Replica(ReplicaMessage::WriteAck {
                req: REQ,
                error: None,
                newer: Some(Timestamp::from_parts(1_700_000_000_000, 3)),
            }),
            PeerMessage::Replica(ReplicaMessage::WriteAck {
                req: REQ,
                error: Some("storage is full".into()),
                newer: None,
            }),
            PeerMessage::Replica(ReplicaMessage::ReadFailed {
                req: REQ,
                error: "storage failure: EIO".into(),
            }),
            PeerMessage::Replica(ReplicaMessage::RangeFailed { req: 1, error: String::new() }),
            PeerMessage::Replica(ReplicaMessage::Read {
                req: REQ,
                collection: coll.clone(),
                keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"user:42")],
            }),
            PeerMessage::Replica(ReplicaMessage::ReadReply {
                req: REQ,
                entries: vec![Some(record("a", 1 << 20).1), None, Some(tombstone("t").1)],
                changing: true,
            }),
            PeerMessage::Replica(ReplicaMessage::Repair {
                collection: coll.clone(),
                records: vec![record("r", 3000), tombstone("gone")],
            }),
            PeerMessage::Replica(ReplicaMessage::ReadVersions {
                req: REQ,
                collection: coll.clone(),
                keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"user:42")],
            }),
            PeerMessage::Replica(ReplicaMessage::VersionsReply {
                req: REQ,
                versions: vec![
                    Some(record("a", 10).1.version()),
                    None,
                    Some(tombstone("t").1.version()),
                ],
                changing: true,
            }),
            PeerMessage::Replica(ReplicaMessage::ListCollections { req: REQ }),
            PeerMessage::Replica(ReplicaMessage::CollectionList {
                req: REQ,
                names: vec![coll.clone(), "ordered.events".into(), "x".into()],
            }),
            PeerMessage::Replica(ReplicaMessage::RangeRead {
                req: REQ,
                collection: coll.clone(),
                interval,
                after: Some((0x5555_5555_5555_5555, Bytes::from_static(b"cursor-key"))),
                limit: 1000,
            }),
            PeerMessage::Replica(ReplicaMessage::RangeReply {
                req: REQ,
                records: small.clone(),
                more: true,
                changing: true,
            }),
            PeerMessage::Replica(ReplicaMessage::LoadQuery { req: REQ }),
            PeerMessage::Replica(ReplicaMessage::LoadReply { req: REQ, entries: Some(123_456) }),
            PeerMessage::Replica(ReplicaMessage::MoveQuery {
                req: REQ,
                collection: coll.clone(),
                at: u64::MAX,
            }),
            PeerMessage::Replica(ReplicaMessage::MoveState {
                req: REQ,
                knows: Some(crate::catalogue::Knowledge::Phase(crate::catalogue::MovePhase::Joint)),
                view: u64::MAX,
                pulled: true,
            }),
            PeerMessage::Replica(ReplicaMessage::MoveState {
                req: REQ,
                knows: Some(crate::catalogue::Knowledge::Done),
                view: u64::MAX,
                pulled: false,
            }),
            PeerMessage::Replica(ReplicaMessage::RemovalHandOff {
                req: REQ,
                member: NodeId(u64::MAX),
            }),
            PeerMessage::Replica(ReplicaMessage::RemovalHandedOff {
                req: REQ,
                member: NodeId(u64::MAX),
                ok: true,
            }),
            PeerMessage::Sync(SyncMessage {
                session: u64::MAX / 3,
                body: SyncBody::Begin {
                    collection: coll.clone(),
                    placement: Placement::Ordered,
                    range: interval,
                    depth: 8,
                    salt: 0x0123_4567_89ab_cdef,
                    root: Summary { digest: 0xdead_beef_dead_beef, count: 1_000_000 },
                },
            }),
            step(vec![SyncItem::Children {
                node: node_ref,
                mask: 0b1011_0110,
                digests: (0..5).map(|i| 0x1111_1111_1111_1111 * (i + 1)).collect(),
            }]),
            step(vec![SyncItem::Versions { node: node_ref, versions }]),
            step(vec![SyncItem::Entries { entries: small }]),
            step(vec![SyncItem::Entries { entries: vec![record("huge", 8 << 20)] }]),
            step(vec![SyncItem::Want {
                keys: (0..300).map(|i| Bytes::from(format!("key-{i:06}"))).collect(),
            }]),
            step(vec![]),
            PeerMessage::Sync(SyncMessage { session: 9, body: SyncBody::Done }),
            PeerMessage::Sync(SyncMessage {
                session: 9,
                body: SyncBody::Abort { reason: "the range moved".into() },
            }),
            PeerMessage::Watch(WatchMessage::Subscribe {
                subs: vec![
                    Subscription {
                        sub: 1,
                        collection: coll.clone(),
                        prefix: Some(Bytes::from_static(b"user:")),
                        resume: Some(ts()),
                    },
                    Subscription { sub: 2, collection: coll.clone(), prefix: None, resume: None },
                ],
            }),
            PeerMessage::Watch(WatchMessage::Unsubscribe { subs: vec![1, 2, 3] }),
            PeerMessage::Watch(WatchMessage::Changes {
                sub: 1,
                epoch: ts(),
                seq: 42,
                items: vec![record("user:1", 50), tombstone("user:2")],
                lagged: false,
            }),
            PeerMessage::Watch(WatchMessage::Changes {
                sub: 1,
                epoch: ts(),
                seq: 43,
                items: vec![record("user:1", 4 << 20)],
                lagged: false,
            }),
            PeerMessage::Watch(WatchMessage::ChangesAck { sub: 1, epoch: ts(), seq: 43 }),
            PeerMessage::Gossip(MembershipMessage::Ping {
                seq: 77,
                sender: member(1),
                updates: vec![member(2), member(3)],
                clock: None,
            }),
            PeerMessage::Gossip(MembershipMessage::Ack {
                seq: 77,
                on_behalf: Some(NODE),
                sender: member(2),
                updates: vec![],
                clock: None,
            }),
            PeerMessage::Gossip(MembershipMessage::PingReq {
                seq: 78,
                target: NODE,
                target_addr: "10.0.0.9:7453".into(),
                sender: member(1),
                updates: vec![member(4).with(Status::Syncing, 2)],
                clock: None,
            }),
            PeerMessage::Gossip(MembershipMessage::PushPull {
                members: (0..50).map(member).collect(),
                reply: true,
                partial: false,
                clock: None,
            }),
            PeerMessage::Gossip(MembershipMessage::Join { member: member(5), clock: None }),
            PeerMessage::Gossip(MembershipMessage::Gossip {
                sender: member(1),
                updates: vec![member(6).with(Status::Left, 9)],
                clock: None,
            }),
        ]
    }

    #[test]
    fn the_estimate_is_within_a_factor_of_two_of_every_frame_and_leans_high() {
        for msg in representative() {
            let (len, estimate) = measure(&msg);
            let what = format!("{:.120}", format!("{msg:?}"));
            assert!(estimate >= len, "{estimate} < {len} for {what}");
            assert!(estimate <= 2 * len, "{estimate} > 2 × {len} for {what}");
            if len > 1 << 20 {
                // Large values dominate: then the estimate is all but exact.
                assert!(estimate - len < 64, "{estimate} vs {len} for {what}");
            }
        }
    }

    /// Records of keys and values of every length class MessagePack distinguishes,
    /// up to a few MiB each and 16 MiB together; values are filled with one byte so
    /// that big ones are cheap.
    fn records_strategy() -> impl Strategy<Value = Vec<(Bytes, Entry)>> {
        let len = prop_oneof![
            0..20usize,
            20..300usize,
            250..70_000usize,
            60_000..70_000usize,
            (1usize << 20)..(3usize << 20)
        ];
        let entry =
            (len, any::<u8>(), any::<u64>(), any::<u64>(), any::<Option<u64>>(), any::<bool>())
                .prop_map(|(len, byte, t, origin, expires, dead)| Entry {
                    value: (!dead).then(|| Bytes::from(vec![byte; len])),
                    ts: Timestamp(t),
                    origin: NodeId(origin),
                    expires,
                });
        let key = prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
        // At most 16 MiB of keys and values: a frame must stay under the wire's cap.
        prop::collection::vec((key, entry), 0..40).prop_map(|mut records| {
            let mut total = 0;
            records.retain(|(k, e)| {
                total += k.len() + e.value.as_ref().map_or(0, Bytes::len);
                total <= 16 << 20
            });
            records
        })
    }

    fn message_strategy() -> impl Strategy<Value = PeerMessage> {
        let name = "[a-z.]{1,40}";
        prop_oneof![
            (any::<u64>(), name, records_strategy()).prop_map(|(req, collection, records)| {
                PeerMessage::Replica(ReplicaMessage::Write { req, collection, records })
            }),
            (any::<u64>(), records_strategy(), any::<bool>()).prop_map(|(req, records, more)| {
                PeerMessage::Replica(ReplicaMessage::RangeReply {
                    req,
                    records,
                    more,
                    changing: false,
                })
            }),
            (any::<u64>(), records_strategy(), any::<bool>()).prop_map(
                |(req, records, changing)| {
                    let entries = records.into_iter().map(|(k, e)| (!k.is_empty()).then_some(e));
                    let entries = entries.collect();
                    PeerMessage::Replica(ReplicaMessage::ReadReply { req, entries, changing })
                }
            ),
            (any::<u64>(), records_strategy(), any::<bool>()).prop_map(
                |(req, records, changing)| {
                    let versions =
                        records.iter().map(|(k, e)| (!k.is_empty()).then(|| e.version()));
                    let versions = versions.collect();
                    PeerMessage::Replica(ReplicaMessage::VersionsReply { req, versions, changing })
                }
            ),
            (any::<u64>(), records_strategy()).prop_map(|(session, entries)| {
                let keys = entries.iter().map(|(k, _)| k.clone()).collect();
                let items = vec![SyncItem::Entries { entries }, SyncItem::Want { keys }];
                PeerMessage::Sync(SyncMessage { session, body: SyncBody::Step { items } })
            }),
            (any::<u64>(), any::<u64>(), records_strategy()).prop_map(|(sub, seq, items)| {
                PeerMessage::Watch(WatchMessage::Changes {
                    sub,
                    epoch: ts(),
                    seq,
                    items,
                    lagged: false,
                })
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Over random records — empty and binary keys, tombstones, values from empty
        /// to 3 MiB, numbers small and large — the estimate is never below the frame
        /// and at most twice it.
        #[test]
        fn the_estimate_bounds_random_frames(msg in message_strategy()) {
            let (len, estimate) = measure(&msg);
            prop_assert!(estimate >= len, "{} < {}", estimate, len);
            prop_assert!(estimate <= 2 * len, "{} > 2 × {}", estimate, len);
        }
    }
}
