//! Messages between a coordinator and the replicas of a key (see [`crate::node`]).
//!
//! Any node coordinates any client request: it stamps writes with its clock, sends them
//! to the key's replicas and waits for as many acknowledgements as the request's
//! consistency asks for; it reads from the replicas, answers with the newest entry and
//! repairs the replicas that answered with an older one — asking one replica for the
//! data and the others only for the version they hold ([`ReplicaMessage::ReadVersions`],
//! Cassandra's digest reads) when no change of the ring is under way. Scans read ranges
//! the same way:
//! [`ReplicaMessage::RangeRead`] asks a replica for a page of one ring interval.

use crate::{
    catalogue::Knowledge,
    clock::Timestamp,
    entry::{Entry, NodeId, Version},
    hash::{Interval, Position},
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A coordinator↔replica message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaMessage {
    /// "Store these entries" (merge them; the answer is [`ReplicaMessage::WriteAck`]).
    Write {
        /// Request number, echoed in the answer.
        req: u64,
        /// The collection written.
        collection: String,
        /// The keys and their new entries.
        records: Vec<(Bytes, Entry)>,
    },
    /// The answer to [`ReplicaMessage::Write`].
    WriteAck {
        /// The request answered.
        req: u64,
        /// `None` when every record is durably merged; otherwise why the write was
        /// refused (nothing of it was applied).
        error: Option<String>,
        /// The newest timestamp among the entries this replica already held that beat
        /// records of the write (a different, newer write of the same key — not an
        /// identical retransmit); `None` when every record is now stored. The
        /// coordinator then re-stamps above it and re-sends (see
        /// `node::coordinator::restamp`). Omitted from the frame when `None`, so a plain
        /// acknowledgement encodes as before this field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        newer: Option<Timestamp>,
    },
    /// "Send me your entries for these keys."
    Read {
        /// Request number, echoed in the answer.
        req: u64,
        /// The collection read.
        collection: String,
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// The answer to [`ReplicaMessage::Read`].
    ReadReply {
        /// The request answered.
        req: u64,
        /// The stored entry (tombstones included) for each key, in request order.
        entries: Vec<Option<Entry>>,
        /// Whether a change of the ring this replica announced (its join, its leave, a
        /// token move) is still under way: then no coordinator counts against the owners
        /// the change leads to yet, and a read need not wait for a quorum of them (see
        /// `ring::placement`, "Joint reads"). Omitted from the frame when false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        changing: bool,
    },
    /// Read repair: "this entry is newer than the one you answered with; merge it". No
    /// answer.
    Repair {
        /// The collection.
        collection: String,
        /// The keys and their newer entries.
        records: Vec<(Bytes, Entry)>,
    },
    /// "Which collections do you hold?" — the first step of a hand-off round: a node
    /// that just joined holds none and must learn what to sync. Answered by
    /// [`ReplicaMessage::CollectionList`].
    ListCollections {
        /// Request number, echoed in the answer.
        req: u64,
    },
    /// The answer to [`ReplicaMessage::ListCollections`].
    CollectionList {
        /// The request answered.
        req: u64,
        /// The names of the collections the sender holds, sorted.
        names: Vec<String>,
    },
    /// "Send me your records of `interval`, in ring order, after this cursor" — one
    /// step of a scan (see `node::scan`). The answer is [`ReplicaMessage::RangeReply`].
    RangeRead {
        /// Request number, echoed in the answer.
        req: u64,
        /// The collection scanned.
        collection: String,
        /// The ring interval read, `(start, end]`.
        interval: Interval,
        /// Only records strictly after this `(position, key)`, which lies in `interval`;
        /// `None` to start at the interval's first position.
        after: Option<(Position, Bytes)>,
        /// Most records wanted; the replica may send fewer (it caps the count and the
        /// bytes of a reply) and says so with `more`.
        limit: u32,
    },
    /// The answer to [`ReplicaMessage::RangeRead`].
    RangeReply {
        /// The request answered.
        req: u64,
        /// The stored records (tombstones and expired entries included, so that the
        /// coordinator can merge replicas correctly), in ring order.
        records: Vec<(Bytes, Entry)>,
        /// Whether the replica stopped early (at the limit or its byte budget): records
        /// after the last one sent may exist. `false` means the interval's records after
        /// the cursor were all sent.
        more: bool,
        /// Whether a change of the ring this replica announced is still under way, as in
        /// [`ReplicaMessage::ReadReply`]. Omitted from the frame when false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        changing: bool,
    },
    /// "How many entries do you own?" — asked before a token move (migration). Answered
    /// by [`ReplicaMessage::LoadReply`].
    LoadQuery {
        /// Request number, echoed in the answer.
        req: u64,
    },
    /// The answer to [`ReplicaMessage::LoadQuery`].
    LoadReply {
        /// The request answered.
        req: u64,
        /// The entries (every collection, tombstones included) in the ring intervals the
        /// sender's tokens own in its token table; `None` while it is not serving.
        entries: Option<u64>,
    },
    /// "Hand every range you own with `member` to the nodes that own it once `member` is
    /// gone" — asked by the node running an operator's removal of the dead `member`
    /// (see `node::remove`), of every other owner of its ranges. Answered by
    /// [`ReplicaMessage::RemovalHandedOff`] once the hand-off sessions ended.
    RemovalHandOff {
        /// Request number, echoed in the answer.
        req: u64,
        /// The member being removed.
        member: NodeId,
    },
    /// The answer to [`ReplicaMessage::RemovalHandOff`].
    RemovalHandedOff {
        /// The request answered.
        req: u64,
        /// The member being removed.
        member: NodeId,
        /// Whether every session succeeded (else the asker asks again later).
        ok: bool,
    },
    /// The answer to [`ReplicaMessage::Read`] when the replica's store failed to read:
    /// the coordinator counts it as a failed replica, never as "absent".
    ReadFailed {
        /// The request answered.
        req: u64,
        /// The store's error.
        error: String,
    },
    /// The answer to [`ReplicaMessage::RangeRead`] when the replica's store failed to
    /// read: the coordinator counts it as a failed replica, never as an empty range.
    RangeFailed {
        /// The request answered.
        req: u64,
        /// The store's error.
        error: String,
    },
    /// "Tell me which version of these keys you hold" — a digest read: the coordinator
    /// has (or will have) the data from another replica and only needs to know whether
    /// this one agrees. Answered by [`ReplicaMessage::VersionsReply`], or
    /// [`ReplicaMessage::ReadFailed`].
    ReadVersions {
        /// Request number, echoed in the answer.
        req: u64,
        /// The collection read.
        collection: String,
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// The answer to [`ReplicaMessage::ReadVersions`].
    VersionsReply {
        /// The request answered.
        req: u64,
        /// The version of the stored entry (tombstones included) for each key, in
        /// request order; `None` where the replica holds nothing.
        versions: Vec<Option<Version>>,
        /// As in [`ReplicaMessage::ReadReply`].
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        changing: bool,
    },
    /// "How far do you know the move of `collection` named `at` got, and do you hold
    /// the ranges it gives you?" — asked by the member driving a change of a
    /// collection's layout (see `node::moves`), of every member. Answered by
    /// [`ReplicaMessage::MoveState`].
    MoveQuery {
        /// Request number, echoed in the answer.
        req: u64,
        /// The collection moving.
        collection: String,
        /// The move (its start, which names it).
        at: u64,
    },
    /// The answer to [`ReplicaMessage::MoveQuery`].
    MoveState {
        /// The request answered.
        req: u64,
        /// How far the sender knows the move got, for long enough that no request it
        /// began before is still waiting (`None`: not yet).
        knows: Option<Knowledge>,
        /// The digest of the sender's membership view: the driver acts only on answers
        /// given over the view it has.
        view: u64,
        /// Whether the sender pulled every range the move gives it, over that view.
        pulled: bool,
    },
}
