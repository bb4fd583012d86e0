//! Hinted handoff: writes a replica missed, kept by the coordinator and delivered when
//! the replica is reachable again.
//!
//! When a write's deadline passes without a replica's acknowledgement (the replica is
//! slow, partitioned, or crashed but not yet declared dead), the coordinator keeps a
//! *hint* — the collection, key and entry — for that replica. Every `HINT_INTERVAL_MS`
//! it sends the hints of each replica that membership sees `Alive` as one write; the
//! replica's acknowledgement retires them. Hints are bounded per replica (the oldest
//! are dropped first and counted): a replica that was away longer than hints can cover
//! catches up through anti-entropy instead, and one declared dead re-syncs before it
//! serves again.
//!
//! Hints expire: one whose write is older than half the tombstone grace period is
//! dropped, not delivered. By then a later delete of the same key may be close to being
//! collected everywhere, and delivering the old value after that would bring a deleted
//! key back (anti-entropy, which compares with the replicas' current state, is the safe
//! way to catch up on anything older).
//!
//! Hints survive restarts: every change bumps [`Hints::generation`], a driver with a
//! disk saves [`Hints::snapshot`] when it changed (at most every couple of seconds) and
//! gives it back to [`super::Node::restore_hints`] after a restart. Hints not yet saved
//! when a node crashes are lost; the replicas they were for catch up through
//! anti-entropy instead.

use crate::{
    entry::{Entry, NodeId},
    Millis,
};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// How often hints are offered to their replicas.
pub const HINT_INTERVAL_MS: Millis = 1_000;
/// Most hints kept per replica.
pub const MAX_HINTS_PER_NODE: usize = 100_000;
/// Most hints sent in one delivery.
pub const HINT_BATCH: usize = 512;

/// One delivery: the replica, the request number, the collection and the records.
pub type HintBatch = (NodeId, u64, String, Vec<(Bytes, Entry)>);

/// One missed write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hint {
    /// The collection written.
    pub collection: String,
    /// The key.
    pub key: Bytes,
    /// The entry the replica missed.
    pub entry: Entry,
}

/// The hints a node holds for other nodes.
#[derive(Debug, Default)]
pub struct Hints {
    queued: BTreeMap<NodeId, VecDeque<Hint>>,
    in_flight: BTreeMap<u64, (NodeId, usize, Millis)>,
    dropped: u64,
    expired: u64,
    delivered: u64,
    next_at: Option<Millis>,
    generation: u64,
}

impl Hints {
    /// Keeps a hint for `target`, dropping its oldest beyond the bound.
    pub fn add(&mut self, now: Millis, target: NodeId, hint: Hint) {
        self.generation += 1;
        let q = self.queued.entry(target).or_default();
        q.push_back(hint);
        while q.len() > MAX_HINTS_PER_NODE {
            q.pop_front();
            self.dropped += 1;
        }
        self.next_at.get_or_insert(now + HINT_INTERVAL_MS);
    }

    /// A number that changes whenever the set of hints does (to know when to save).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every hint waiting, with its replica, in delivery order (to save them).
    pub fn snapshot(&self) -> Vec<(NodeId, Hint)> {
        self.queued.iter().flat_map(|(t, q)| q.iter().map(|h| (*t, h.clone()))).collect()
    }

    /// Takes back hints saved by [`Hints::snapshot`] before a restart.
    pub fn restore(&mut self, now: Millis, hints: Vec<(NodeId, Hint)>) {
        for (target, hint) in hints {
            self.add(now, target, hint);
        }
    }

    /// Hints waiting, per replica.
    pub fn pending(&self) -> usize {
        self.queued.values().map(VecDeque::len).sum()
    }

    /// Hints dropped because a replica's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hints delivered and acknowledged.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// When hints are next offered.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.next_at
    }

    /// Hints dropped because their write was older than the maximum age.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// At `now`, the batches to send: for each replica `reachable` says is up and that
    /// has no delivery in flight, up to [`HINT_BATCH`] hints of one collection, tagged
    /// with a request number from `next_req`. Hints whose write is more than `max_age`
    /// old are dropped instead (see the module docs).
    pub fn due(
        &mut self,
        now: Millis,
        max_age: Millis,
        reachable: impl Fn(NodeId) -> bool,
        mut next_req: impl FnMut() -> u64,
    ) -> Vec<HintBatch> {
        if self.next_at.is_none_or(|t| t > now) {
            return Vec::new();
        }
        // A delivery unanswered for a while is offered again.
        self.in_flight.retain(|_, (_, _, sent)| now.saturating_sub(*sent) < 5 * HINT_INTERVAL_MS);
        let mut out = Vec::new();
        for (target, q) in self.queued.iter_mut() {
            let busy = self.in_flight.values().any(|(t, _, _)| t == target);
            if busy {
                continue;
            }
            // A node's hints are kept in the order of its own timestamps (each is kept when
            // its write's deadline passes), so the expired ones are at the front.
            while q.front().is_some_and(|h| h.entry.ts.physical_ms().saturating_add(max_age) < now)
            {
                q.pop_front();
                self.expired += 1;
                self.generation += 1;
            }
            let Some(first) = q.front() else { continue };
            if !reachable(*target) {
                continue;
            }
            let collection = first.collection.clone();
            let records: Vec<(Bytes, Entry)> = q
                .iter()
                .take(HINT_BATCH)
                .take_while(|h| h.collection == collection)
                .map(|h| (h.key.clone(), h.entry.clone()))
                .collect();
            let req = next_req();
            self.in_flight.insert(req, (*target, records.len(), now));
            out.push((*target, req, collection, records));
        }
        self.queued.retain(|_, q| !q.is_empty());
        self.next_at = (!self.queued.is_empty()).then_some(now + HINT_INTERVAL_MS);
        out
    }

    /// Whether `req` is a hint delivery; when it succeeded, retires its hints.
    pub fn acknowledge(&mut self, req: u64, ok: bool) -> bool {
        let Some((target, n, _)) = self.in_flight.remove(&req) else { return false };
        if ok {
            if let Some(q) = self.queued.get_mut(&target) {
                for _ in 0..n.min(q.len()) {
                    q.pop_front();
                }
            }
            self.delivered += n as u64;
            self.generation += 1;
            self.queued.retain(|_, q| !q.is_empty());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn hint(key: &str, ms: u64) -> Hint {
        Hint {
            collection: "users".into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            entry: Entry::value(Bytes::from_static(b"v"), Timestamp::from_parts(ms, 0), NodeId(1)),
        }
    }

    #[test]
    fn a_snapshot_restores_the_same_hints_and_changes_bump_the_generation() {
        let mut hints = Hints::default();
        let g0 = hints.generation();
        hints.add(1_000, NodeId(2), hint("a", 900));
        hints.add(1_000, NodeId(3), hint("b", 950));
        hints.add(1_001, NodeId(2), hint("c", 960));
        assert!(hints.generation() > g0);
        let saved = hints.snapshot();
        assert_eq!(saved.len(), 3);
        let encoded = rmp_serde::to_vec(&saved).unwrap();
        let decoded: Vec<(NodeId, Hint)> = rmp_serde::from_slice(&encoded).unwrap();
        let mut restored = Hints::default();
        restored.restore(5_000, decoded);
        assert_eq!(restored.snapshot(), saved, "same hints, same delivery order");
        let g1 = restored.generation();
        let mut next = 7;
        let due = restored.due(
            6_000,
            60_000,
            |_| true,
            || {
                next += 1;
                next
            },
        );
        assert_eq!(due.len(), 2, "one delivery per replica");
        let req = due.iter().find(|d| d.0 == NodeId(2)).map(|d| d.1).unwrap();
        assert!(restored.acknowledge(req, true));
        assert!(restored.generation() > g1, "a delivery changes the hints");
        assert_eq!(restored.pending(), 1);
    }
}
