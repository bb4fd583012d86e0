//! Two-party Merkle sync: the anti-entropy state machine that ships only differences.
//!
//! Two replicas of a collection that share a ring interval reconcile it in one
//! *session*. The initiator opens with [`SyncBody::Begin`](crate::proto::SyncBody::Begin), carrying its count and
//! digest of the interval; from then on the sides strictly alternate, each answering
//! every message with one [`SyncBody::Step`](crate::proto::SyncBody::Step) page of independent work items, until a
//! side that has nothing left receives an empty step and closes with
//! [`SyncBody::Done`](crate::proto::SyncBody::Done). A session with no differences is therefore two small messages.
//!
//! ## The walk
//!
//! Both sides look at the same 4-ary tree of position prefixes (see [`crate::merkle`]),
//! restricted to the interval. When a node's digests differ, the side whose turn it is
//! *describes* its part of the node:
//!
//! - if it holds few entries there (at most [`SyncConfig::list_max`]) it lists their
//!   versions ([`SyncItem::Versions`](crate::proto::SyncItem::Versions));
//! - otherwise it sends the digests of the node's non-empty children
//!   ([`SyncItem::Children`](crate::proto::SyncItem::Children)), and the other side compares them with its own and
//!   describes, in turn, each child that differs.
//!
//! So the walk descends only into differing subtrees, alternating sides level by level.
//! Shortcuts: where one side has nothing under a node, the other streams everything it
//! has there ([`SyncItem::Entries`](crate::proto::SyncItem::Entries)) without descending further.
//!
//! At a listing, the receiver compares the listed versions with its own entries: it
//! ships the entries of its own that are newer or that the lister lacks, and asks
//! ([`SyncItem::Want`](crate::proto::SyncItem::Want)) for the keys where the lister is newer or that it lacks; the
//! lister answers a want with the entries. Only newer entries cross, in both directions.
//!
//! ## Digests
//!
//! Stored levels (`0 ..= depth`, the smaller depth of the two sides) use the trees'
//! 64-bit XOR digests. Below the stored depth, and for buckets cut by the interval's
//! ends, digests are computed from the store's entries, re-keyed by the session's salt
//! and cut to 32 bits: smaller on the wire, and a collision there lasts one session
//! rather than forever. Both sides compute every digest the same way, so equal
//! contents always compare equal.
//!
//! ## Bounds
//!
//! A message holds items up to [`SyncConfig::max_message_bytes`] (at least one item,
//! so a single large value still moves). Work that does not fit waits in the session's
//! queue for the next turn; streams of entries resume from a cursor. Incoming items are
//! checked: malformed node references, digest lists that do not match their mask, or
//! entries outside the interval are refused with [`SyncError`], never a panic.
//!
//! ## Direction
//!
//! Between replicas entries cross both ways. [`SyncConfig::push`] and
//! [`SyncConfig::pull`] restrict a side: a pull-only side (a client's local copy) never
//! ships entries, and a push-only side (the node serving that client) never asks for
//! entries, never provokes the peer into streaming to it, and refuses any entry it
//! receives — so the walk is the same, but only one side's store can change.

mod pair;
mod session;

pub use pair::{sync_pair, sync_pair_full, PairReport};
pub use session::SyncSession;

use crate::{
    clock::Timestamp,
    entry::{EntryError, EntryLimits},
    store::StoreError,
};

/// Why a sync session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The peer broke the protocol; the session is over.
    #[error("sync protocol violation: {0}")]
    Protocol(String),
    /// The message belongs to another session.
    #[error("message for sync session {got} reached session {expected}")]
    WrongSession {
        /// The session that received it.
        expected: u64,
        /// The session it was for.
        got: u64,
    },
    /// The session already ended.
    #[error("sync session {0} is already closed")]
    Closed(u64),
    /// The peer aborted.
    #[error("the peer aborted the sync session: {0}")]
    Aborted(String),
    /// The peer sent an entry this node refuses (see [`EntryLimits`]): nothing of that
    /// message was merged, and the session is over.
    #[error("refused an entry from the peer: {0}")]
    Refused(EntryError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tunables of a session.
///
/// `push` and `pull` say which way entries may move, from this side's point of view.
/// Replicas do both (the default). A client that keeps a local copy pulls only
/// (`push: false`); the node serving it runs its side with `pull: false`, so a client
/// can never write into a node through sync: that side never asks for entries and
/// refuses every entry it is sent (the session fails with [`SyncError::Protocol`] and
/// nothing is merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    /// Soft limit on the encoded size of one message (at least one item is always sent).
    pub max_message_bytes: usize,
    /// A side holding at most this many entries under a differing node lists them
    /// instead of descending.
    pub list_max: u64,
    /// Wall-clock milliseconds up to which deletions have been garbage-collected here:
    /// a received tombstone (or expired entry) deleted at or before it is not stored
    /// when the key is absent, so a replica that collected it does not take it back
    /// from one that has not yet. It is stored when it overrides something.
    pub collected_before: Option<u64>,
    /// Whether this side ships its entries that the peer lacks or holds older.
    pub push: bool,
    /// Whether this side takes entries from the peer: asks for them and merges them.
    pub pull: bool,
    /// The checks every received entry must pass before anything of its message is
    /// merged (a node sets them for the current time before each message, see
    /// [`SyncSession::set_limits`]); `None` takes entries unchecked (a client's copy of
    /// a node's data).
    pub limits: Option<EntryLimits>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_message_bytes: 256 * 1024,
            list_max: 2,
            collected_before: None,
            push: true,
            pull: true,
            limits: None,
        }
    }
}

impl SyncConfig {
    /// A side that only takes entries (a client refreshing its local copy).
    pub fn pull_only() -> Self {
        SyncConfig { push: false, ..SyncConfig::default() }
    }

    /// A side that only gives entries and never changes its own store (a node serving a
    /// client's pull).
    pub fn push_only() -> Self {
        SyncConfig { pull: false, ..SyncConfig::default() }
    }
}

/// What a session has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncStats {
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Entries shipped to the peer.
    pub entries_sent: u64,
    /// Entries received from the peer.
    pub entries_received: u64,
    /// Received entries that changed the local store.
    pub entries_applied: u64,
    /// Received entries refused by the [`SyncConfig::limits`] (each refusal ends the
    /// session).
    pub entries_refused: u64,
    /// The newest timestamp among the entries merged so far (the node adopts it into
    /// its clock, as for a replica write).
    pub newest_merged: Timestamp,
    /// Tree nodes whose children were described to the peer.
    pub nodes_described: u64,
    /// Tree nodes whose versions were listed to the peer.
    pub nodes_listed: u64,
}

/// Which end of a session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opened the session.
    Initiator,
    /// Accepted it.
    Responder,
}
