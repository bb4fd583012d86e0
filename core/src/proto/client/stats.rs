//! What a node reports of itself ([`NodeStats`], `Op::Stats`) and how a collection is
//! described ([`CollectionView`]).

use crate::{catalogue::CollectionSettings, entry::NodeId, hash::Position, Millis};
use serde::{Deserialize, Serialize};

/// A collection as [`Op::CollectionShow`](super::Op::CollectionShow) and [`Op::CollectionList`](super::Op::CollectionList) describe it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CollectionView {
    /// The collection's name.
    pub name: String,
    /// Whether it has settings in the catalogue (`false`: created by its first write,
    /// with the cluster's defaults).
    pub defined: bool,
    /// Its settings (all unset when it has none).
    pub settings: CollectionSettings,
    /// How its keys are placed on the ring: `hashed`, or `ordered` for `ordered.*`.
    pub placement: String,
    /// How many replicas keep each key.
    pub replicas: u32,
    /// Live keys across the cluster, estimated from the answering node's copy (exact
    /// on a single node; see [`crate::catalogue`]).
    pub keys: u64,
    /// Bytes of keys and values across the cluster, estimated the same way.
    pub bytes: u64,
    /// The layout the collection uses and the move to another under way, if any (its
    /// settings say the layout it should use; see [`crate::catalogue::layout`]).
    #[serde(default)]
    pub layout: crate::catalogue::LayoutState,
}

/// Counts and sizes of one node, summed over its collections, with the state of its
/// background work: failure detection, anti-entropy, cleaning, hints and tombstone
/// collection (what `dhrt stats` prints and `/metrics` exports).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node answering.
    pub node: NodeId,
    /// Stored entries, tombstones included, in every collection the node holds.
    pub keys: u64,
    /// Of those, tombstones.
    pub tombstones: u64,
    /// Approximate bytes of keys, values and entry metadata.
    pub bytes: u64,
    /// Number of collections the node holds.
    pub collections: u64,
    /// This node's status as it announces it (`alive`, `syncing`, `left`, ...).
    #[serde(default)]
    pub status: String,
    /// Members this node knows, by status (its own record included).
    #[serde(default)]
    pub members: MemberCounts,
    /// Anti-entropy and hand-off.
    #[serde(default)]
    pub sync: SyncStats,
    /// Hints held for replicas that were down.
    #[serde(default)]
    pub hints_pending: u64,
    /// Hints delivered so far.
    #[serde(default)]
    pub hints_delivered: u64,
    /// Tombstones purged after the grace period so far.
    #[serde(default)]
    pub tombstones_purged: u64,
    /// Expired values rewritten as tombstones so far.
    #[serde(default)]
    pub expired: u64,
    /// Client requests this node has received for data (every [`Op`](super::Op) but `Stats` and
    /// `Ring`, so monitoring is not counted as load); its rate is the node's ops/s.
    #[serde(default)]
    pub requests: u64,
    /// Replicas per key (N) this node is configured with (0 from nodes that predate
    /// the field).
    #[serde(default)]
    pub replicas: u32,
    /// How this node's storage is doing: full (new data refused) or failing.
    #[serde(default)]
    pub storage: crate::store::StorageHealth,
    /// The node's clock compared with its peers' (see `node::skew`); boxed to keep
    /// [`Reply`](super::Reply) small.
    #[serde(default)]
    pub clock: Box<ClockStats>,
    /// The layouts collections use other than the cluster's, as this node knows them:
    /// what a light peer plans its local copies' sync sessions by. Left out of the frame
    /// when there are none, so the answer is the one older clients read.
    #[serde(default, skip_serializing_if = "LayoutsInUse::is_empty")]
    pub layouts: LayoutsInUse,
}

/// The layouts collections use (never the ones they move to), as the node answering
/// [`Op::Stats`](super::Op::Stats) knows them from its catalogue (`catalogue::layout`). A collection not
/// listed uses the cluster's: [`NodeStats::replicas`] replicas on any node. The
/// members' labels a layout places by are listed once however many collections share
/// them. A reader checks every entry before it trusts it (a light peer ignores those out
/// of bounds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LayoutsInUse {
    /// Each collection with a layout of its own, by name (at most
    /// [`crate::catalogue::MAX_ENTRIES`]).
    pub collections: Vec<CollectionLayout>,
    /// The members' labels the layouts place by ([`crate::catalogue::LabelSnapshot`]),
    /// each distinct one once.
    pub labels: Vec<crate::catalogue::LabelSnapshot>,
}

impl LayoutsInUse {
    /// Whether every collection uses the cluster's layout.
    pub fn is_empty(&self) -> bool {
        self.collections.is_empty()
    }
}

/// The layout one collection uses (part of [`LayoutsInUse`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CollectionLayout {
    /// The collection's name.
    pub collection: String,
    /// Its replication factor (`None`: the cluster's), selector and zone label.
    pub layout: crate::catalogue::Layout,
    /// Where in [`LayoutsInUse::labels`] the members' labels it places by are; `None`
    /// when it places by none (it neither selects nor spreads over zones).
    pub labels: Option<u32>,
}

/// How many members a node knows in each status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemberCounts {
    /// Serving.
    pub alive: u32,
    /// Catching up before serving.
    pub syncing: u32,
    /// Failed a probe; not yet declared dead.
    pub suspect: u32,
    /// Declared dead.
    pub dead: u32,
    /// Left gracefully.
    pub left: u32,
}

/// Anti-entropy counters of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncStats {
    /// Sessions running now.
    pub running: u64,
    /// Sessions this node initiated that completed.
    pub completed: u64,
    /// Sessions this node initiated that failed.
    pub failed: u64,
    /// Entries received from peers by sync.
    pub entries_received: u64,
    /// Entries dropped after they were handed to the nodes that own them now.
    pub cleaned: u64,
    /// When the last round in which every session succeeded started (wall ms).
    pub last_full_sync_ms: Option<Millis>,
    /// The hand-off before serving, while one runs.
    pub handoff: Option<Progress>,
    /// A graceful leave's hand-off, once the node began leaving.
    pub leaving: Option<Progress>,
}

/// Progress of a hand-off: sessions done of the total, entries received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Sessions finished.
    pub done: u64,
    /// Sessions planned.
    pub total: u64,
    /// Entries received so far.
    pub entries: u64,
}

/// One member of the ring, as [`Op::Ring`](super::Op::Ring) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingMember {
    /// The member's node id.
    pub id: NodeId,
    /// Where to reach it (`host:port`).
    pub addr: String,
    /// Its ring positions (virtual nodes), ascending.
    pub tokens: Vec<Position>,
    /// Its status as the answering node sees it: `alive` members serve requests.
    #[serde(default)]
    pub status: String,
    /// Whether it is joining: a pending replica, not yet an owner of its tokens' ranges
    /// (or a member that never served, which owns nothing either; see `docs/node.md`,
    /// "Strict quorums"). Members that are not joining and have not left own their
    /// ranges whatever their status.
    #[serde(default)]
    pub joining: bool,
    /// Whether it announced a graceful leave and is handing its ranges off: it owns them
    /// until it announces `left`, and the nodes that inherit them are pending replicas.
    #[serde(default)]
    pub leaving: bool,
    /// The labels it was started with (`--label zone=eu-1`). Left out of the frame when
    /// empty, so the answer is the one older clients read.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A node's clock compared with its peers' (part of [`NodeStats`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClockStats {
    /// The node's estimated offset from its peers' clocks in ms (negative: behind),
    /// from probe round trips; `None` before any peer answered a probe.
    pub offset_ms: Option<i64>,
    /// Why the node does not coordinate writes now (its clock is off from its peers'
    /// by more than the max offset), or `None` while it does.
    pub skewed: Option<String>,
    /// Peer timestamps ignored by the hybrid clock for being further ahead of the
    /// local wall clock than the max offset.
    pub ahead_ignored: u64,
    /// The max offset, in ms.
    pub max_offset_ms: u64,
}
