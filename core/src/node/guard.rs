//! What a node accepts from its peers: a member may be buggy, skewed or compromised, so
//! what it sends is checked exactly as a client's write is.
//!
//! - **Entries.** Every entry that reaches the store from a peer — replica writes,
//!   hints (delivered as replica writes), read repair, read replies a coordinator merges
//!   locally, and every sync session (anti-entropy, hand-off before serving, cleaning,
//!   migration, graceful leave) — passes [`Node::entry_limits`]'s
//!   [`EntryLimits::check`]: collection name, key, value size, a timestamp at most the
//!   clock's max offset ahead of the local wall clock, an expiry not before the write.
//!   Refused entries are not merged: a replica write answers an error, a sync session
//!   fails (and is retried by the next round), and the refusal is counted in
//!   [`PeerStats`]. The node keeps serving.
//! - **Who may ask.** Requests that read or write data (replica reads and writes, read
//!   repair, range reads, collection lists, load queries, sync sessions, watch
//!   subscriptions) are served only for a *current member* of this node's view that is
//!   not down (`Alive`, `Syncing` or `Suspect`; not `Dead`, `Left` or unknown). Answers
//!   to this node's own requests are matched to them by request id and sender, and
//!   membership messages have their own checks ([`crate::membership`]). A joining node
//!   is a member (`Syncing`) of the seed's view as soon as the seed took its `Join`;
//!   it introduces itself to each owner it hands off from before asking it anything (see
//!   [`super::antientropy`]), so the owners know it too.
//! - **Who may push.** A sync session opened by a peer may bring entries of an interval
//!   only when the peer replicates it or is about to (its own tokens place it in the
//!   interval's preference list), or when this node replicates it or will once the
//!   peer is gone (a hand-off to this node: cleaning, leave, token move). The check
//!   looks at the preference list of the interval's end.

use super::Node;
use crate::{
    entry::{EntryLimits, NodeId},
    hash::Interval,
    membership::Status,
    proto::{Message, ReplicaMessage, WatchMessage},
    ring::RingTable,
    store::Store,
    Millis,
};

/// Counters of what a node refused from its peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PeerStats {
    /// Entries refused by [`EntryLimits::check`] (replica writes, repairs, read
    /// replies, sync sessions).
    pub refused_entries: u64,
    /// Requests ignored because the sender is not a current member that is up.
    pub refused_requests: u64,
    /// Sync sessions refused because the sender may not push the interval.
    pub refused_sessions: u64,
}

impl<S: Store> Node<S> {
    /// The checks an entry from another node must pass at wall time `now`.
    pub fn entry_limits(&self, now: Millis) -> EntryLimits {
        EntryLimits {
            max_value_bytes: self.config.max_value_bytes,
            now_ms: now,
            max_offset_ms: self.clock.max_offset_ms(),
        }
    }

    /// What this node refused from its peers so far.
    pub fn peer_stats(&self) -> PeerStats {
        let refused_entries = self.peer_stats.refused_entries
            + self.sessions.refused_entries()
            + self.coordinator.refused_entries();
        PeerStats { refused_entries, ..self.peer_stats }
    }

    /// Whether `from` is a current member of this node's view that is not down.
    pub(super) fn is_current_member(&self, from: NodeId) -> bool {
        from != self.id()
            && self.membership.member(from).is_some_and(|m| {
                matches!(m.status, Status::Alive | Status::Syncing | Status::Suspect)
            })
    }

    /// Whether a message from `from` may be handled: requests only from current members.
    pub(super) fn admits(&mut self, from: NodeId, msg: &Message) -> bool {
        let request = match msg {
            Message::Replica(m) => matches!(
                m,
                ReplicaMessage::Write { .. }
                    | ReplicaMessage::Repair { .. }
                    | ReplicaMessage::Read { .. }
                    | ReplicaMessage::ReadVersions { .. }
                    | ReplicaMessage::ListCollections { .. }
                    | ReplicaMessage::RangeRead { .. }
                    | ReplicaMessage::LoadQuery { .. }
                    | ReplicaMessage::MoveQuery { .. }
                    | ReplicaMessage::RemovalHandOff { .. }
            ),
            // Messages of a running session are matched by (sender, session id); only
            // opening one is a request.
            Message::Sync(m) => matches!(m.body, crate::proto::SyncBody::Begin { .. }),
            Message::Watch(m) => matches!(m, WatchMessage::Subscribe { .. }),
            Message::Gossip(_) | Message::Request(_) => false,
            Message::Response(_) => false,
        };
        if request && !self.is_current_member(from) {
            self.peer_stats.refused_requests += 1;
            return false;
        }
        true
    }

    /// Whether `from` may push entries of `collection` in `interval` into this node (see
    /// the module docs): it replicates the interval or is about to, or this node does or
    /// will once `from` is gone. Every owning member keeps the catalogue.
    pub(super) fn may_push(&self, from: NodeId, collection: &str, interval: Interval) -> bool {
        let placement = self.view.placement_for(collection);
        let me = self.id();
        let at = interval.end;
        let listed = |table: &RingTable, who: NodeId| placement.list_on(table, at).contains(&who);
        if listed(&self.view.table, me) || listed(&self.view.table, from) {
            return true;
        }
        if listed(&super::antientropy::table_with_me(&self.membership), me) {
            return true;
        }
        let members =
            || self.membership.members().filter(|m| m.owns() && m.id != from && m.id != me);
        let peer = self.membership.member(from);
        let with_peer = RingTable::new(members().chain(peer).map(|m| (m.id, m.tokens.as_slice())));
        if listed(&with_peer, from) {
            return true;
        }
        let me_record = self.membership.me();
        let without_peer = RingTable::new(
            members().chain(std::iter::once(me_record)).map(|m| (m.id, m.tokens.as_slice())),
        );
        listed(&without_peer, me)
    }
}
