//! Dissemination: the piggyback broadcast queue and the push-pull full-state exchange.
//!
//! Every change to a record in the view puts that member in the [`BroadcastQueue`].
//! Each outgoing Ping, Ack and PingReq carries up to `max_piggyback` of them, least-sent
//! first and, among equals, newest first (memberlist's order); a member leaves the queue
//! after `retransmit_limit(n)` sends, about `λ·log10(n + 1)`. The queue holds member ids,
//! not records: what is sent is always the current record, so a newer update about a
//! member replaces an older one still waiting.
//!
//! Piggybacking spreads news epidemically in O(log n) periods, but a node can still miss
//! an update (it was unreachable while the update was hot). So every
//! `push_pull_interval_ms` a node also exchanges its full state with one random running
//! member, and with one random dead member ("reconnect", so that two sides of a healed
//! partition that declared each other dead find each other again).

use super::{Member, Membership, MembershipMessage, Status};
use crate::{Millis, NodeId};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// Members whose records wait to be piggybacked, with how often each was sent.
#[derive(Debug, Clone, Default)]
pub struct BroadcastQueue {
    /// (transmits, newest first, id): the send order.
    order: BTreeSet<(u32, Reverse<u64>, NodeId)>,
    /// id → (transmits, age stamp), to find an entry in `order`.
    entries: BTreeMap<NodeId, (u32, u64)>,
    /// The next age stamp; larger is newer.
    next: u64,
}

impl BroadcastQueue {
    /// Queues (or re-queues, as fresh and newest) the record of `id`.
    pub fn push(&mut self, id: NodeId) {
        self.remove(id);
        let stamp = self.next;
        self.next += 1;
        self.entries.insert(id, (0, stamp));
        self.order.insert((0, Reverse(stamp), id));
    }

    /// Drops `id` from the queue.
    pub fn remove(&mut self, id: NodeId) {
        if let Some((sent, stamp)) = self.entries.remove(&id) {
            self.order.remove(&(sent, Reverse(stamp), id));
        }
    }

    /// Takes up to `max` members to piggyback, least-sent and newest first, counting one
    /// send for each; members sent `limit` times leave the queue.
    pub fn take(&mut self, max: usize, limit: u32) -> Vec<NodeId> {
        let picked: Vec<_> = self.order.iter().take(max).copied().collect();
        for &(sent, stamp, id) in &picked {
            self.order.remove(&(sent, stamp, id));
            let sent = sent.saturating_add(1);
            if sent < limit {
                self.order.insert((sent, stamp, id));
                self.entries.insert(id, (sent, stamp.0));
            } else {
                self.entries.remove(&id);
            }
        }
        picked.into_iter().map(|(_, _, id)| id).collect()
    }

    /// How many members wait to be sent.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Membership {
    /// The updates for one outgoing message: `first` (a correction for the receiver)
    /// if any, then queued records, at most `max_piggyback` in all.
    pub(super) fn piggyback(&mut self, first: Option<Member>) -> Vec<Member> {
        let mut out: Vec<Member> = first.into_iter().collect();
        let room = self.config.max_piggyback.saturating_sub(out.len());
        let limit = self.config.retransmit_limit(self.view.len());
        for id in self.broadcasts.take(room, limit) {
            if out.iter().any(|m| m.id == id) {
                continue;
            }
            if let Some(state) = self.view.get(&id) {
                out.push(state.record().clone());
            }
        }
        out
    }

    /// Every record this node knows, its own included, sorted by id.
    pub(super) fn full_state(&self) -> Vec<Member> {
        self.view.values().map(|s| s.record().clone()).collect()
    }

    /// Sends a full-state exchange that asks for the receiver's state in return.
    pub(super) fn push_pull_to(&mut self, to: NodeId, addr: Option<String>) {
        let msg = MembershipMessage::PushPull {
            members: self.full_state(),
            reply: true,
            partial: self.view_partial(),
            clock: None,
        };
        if self.awaiting_state.len() < self.config.max_members {
            self.awaiting_state.insert(to);
        }
        match addr {
            Some(addr) => self.send_to(to, addr, msg),
            None => self.send(to, msg),
        }
    }

    /// The gossip round: while updates are queued, send them to `gossip_fanout` random
    /// running members. Probes alone carry updates to about one member a period; this
    /// makes the epidemic reach everyone in O(log n) rounds.
    pub(super) fn gossip_tick(&mut self, now: Millis) {
        let Some(due) = self.next_gossip_at else { return };
        if now < due {
            return;
        }
        self.next_gossip_at = None;
        let mut up = self.others(|s| s.is_up());
        self.rng.shuffle(&mut up);
        for to in up.into_iter().take(self.config.gossip_fanout) {
            if self.broadcasts.is_empty() {
                break;
            }
            let updates = self.piggyback(None);
            let msg = MembershipMessage::Gossip { sender: self.me().clone(), updates, clock: None };
            self.send(to, msg);
        }
        if !self.broadcasts.is_empty() {
            self.next_gossip_at = Some(now.saturating_add(self.config.gossip_interval_ms));
        }
    }

    /// The periodic push-pull: one random running member (or, failing that, a suspect),
    /// and one random dead member to reconnect a healed partition.
    pub(super) fn push_pull_tick(&mut self, now: Millis) {
        let Some(due) = self.next_push_pull_at else { return };
        if now < due {
            return;
        }
        let up = self.others(|s| s.is_up());
        let partners = if up.is_empty() { self.others(|s| s == Status::Suspect) } else { up };
        let dead = self.others(|s| s == Status::Dead);
        if partners.is_empty() && dead.is_empty() {
            self.next_push_pull_at = None;
            return;
        }
        for pool in [partners, dead] {
            if let Some(i) = self.rng.index(pool.len()) {
                self.push_pull_to(pool[i], None);
            }
        }
        // Until a complete view was merged, ask again soon (the partners may have been
        // told to join moments ago themselves, and know only part of the cluster).
        let every = if self.told_to_join && !self.heard_full_state {
            self.config.join_retry_ms.min(self.config.push_pull_interval_ms)
        } else {
            self.config.push_pull_interval_ms
        };
        self.next_push_pull_at = Some(now.saturating_add(every));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_sent_then_newest_first_and_dropped_after_the_limit() {
        let mut q = BroadcastQueue::default();
        for i in 1..=4 {
            q.push(NodeId(i));
        }
        assert_eq!(q.take(2, 2), vec![NodeId(4), NodeId(3)]);
        assert_eq!(q.take(2, 2), vec![NodeId(2), NodeId(1)]);
        // All sent once now: newest first again, then they leave the queue.
        assert_eq!(q.take(3, 2), vec![NodeId(4), NodeId(3), NodeId(2)]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.take(8, 2), vec![NodeId(1)]);
        assert!(q.is_empty());
        assert!(q.take(8, 2).is_empty());
    }

    #[test]
    fn a_new_update_about_a_member_resets_its_count() {
        let mut q = BroadcastQueue::default();
        q.push(NodeId(1));
        q.push(NodeId(2));
        assert_eq!(q.take(1, 3), vec![NodeId(2)]);
        assert_eq!(q.take(1, 3), vec![NodeId(1)]);
        q.push(NodeId(2));
        assert_eq!(q.take(1, 3), vec![NodeId(2)], "fresh again");
        q.remove(NodeId(2));
        q.remove(NodeId(9));
        assert_eq!(q.take(5, 3), vec![NodeId(1)]);
        assert_eq!(q.len(), 1);
    }
}
