//! Messages of watches between nodes (see [`crate::node::watch`]).
//!
//! A client's watch lives on the node it asked (the *watcher*). A node's replica holds
//! only the keys it replicates, so the watcher subscribes at every member (each a
//! *source*): [`WatchMessage::Subscribe`]. A source sends the changes its replica applies
//! that match a subscription in numbered batches ([`WatchMessage::Changes`]), the
//! watcher acknowledges them cumulatively ([`WatchMessage::ChangesAck`]), and the source
//! re-sends unacknowledged batches on a timer, so loss, duplication and reordering
//! still deliver every batch once and in order.

use crate::{clock::Timestamp, entry::Entry};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A watcher↔source message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchMessage {
    /// Watcher → source: "send me the changes of these subscriptions". Idempotent: the
    /// watcher repeats it until the source confirms (with a first, possibly empty,
    /// batch) and then periodically, so that a source that restarted subscribes again.
    Subscribe {
        /// The subscriptions.
        subs: Vec<Subscription>,
    },
    /// Watcher → source: "stop these subscriptions". No answer.
    Unsubscribe {
        /// The subscription ids.
        subs: Vec<u64>,
    },
    /// Source → watcher: the next batch of a subscription's changes.
    Changes {
        /// The subscription.
        sub: u64,
        /// The source's feed for the subscription: the source's clock when it opened
        /// the feed. A source that lost its feed (it restarted) opens a new one with a
        /// later epoch, numbered from 1 again.
        epoch: Timestamp,
        /// The batch number within the epoch, from 1, without gaps.
        seq: u64,
        /// The keys of the subscription's collection and the entries the source's replica
        /// applied for them, in the order applied.
        items: Vec<(Bytes, Entry)>,
        /// The source dropped changes of this subscription (its buffer of
        /// unacknowledged batches overflowed, or it had stopped the subscription): the
        /// watch cannot promise every change any more and ends.
        lagged: bool,
    },
    /// Watcher → source: every batch of `epoch` up to `seq` arrived.
    ChangesAck {
        /// The subscription.
        sub: u64,
        /// The epoch acknowledged.
        epoch: Timestamp,
        /// The highest batch number received without a gap.
        seq: u64,
    },
}

/// One subscription, as a watcher asks a source for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The watcher's id for the subscription (unique on the watcher).
    pub sub: u64,
    /// The collection watched.
    pub collection: String,
    /// Only keys starting with these bytes; `None` for every key.
    pub prefix: Option<Bytes>,
    /// The epoch of this source's feed the watcher is following, if any: a source that
    /// no longer has that feed although it has been running since the epoch began
    /// dropped changes, and says so with a lagged batch.
    pub resume: Option<Timestamp>,
}

impl Subscription {
    /// Whether `key` is one this subscription watches.
    pub fn matches(&self, key: &[u8]) -> bool {
        self.prefix.as_ref().is_none_or(|p| key.starts_with(p))
    }
}
