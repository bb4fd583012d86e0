//! Hinted handoff: writes a replica missed, kept by the coordinator and delivered when
//! the replica is reachable again.
//!
//! When a write's deadline passes without a replica's acknowledgement (the replica is
//! slow, partitioned, or crashed but not yet declared dead), the coordinator keeps a
//! *hint* — the collection, key and entry — for that replica. Every `HINT_INTERVAL_MS`
//! it sends the hints of each replica that membership sees `Alive` as one write; the
//! replica's acknowledgement retires them.
//!
//! ## Bounded in bytes
//!
//! Hints hold whole values, so they are bounded in bytes ([`HintLimits`]): per replica
//! and for the whole node, besides a count per replica. Past a bound the *oldest* hints
//! are dropped and counted ([`Hints::dropped`]) — of the replica the new hint is for, or,
//! past the node's total, of the replica holding the most bytes (the one away longest,
//! most likely). The oldest go first because they are the closest to expiring anyway
//! (below) and because a replica that was away that long has the most to catch up on
//! by anti-entropy, which repairs every dropped hint: a dropped hint delays a replica's
//! convergence, it never loses an acknowledged write (a hint is never an
//! acknowledgement). A replica declared dead re-syncs before it serves again.
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
/// What one hint costs besides its collection, key and value: the entry's timestamp,
/// origin and expiry and the queue's bookkeeping, rounded up.
pub const HINT_OVERHEAD_BYTES: usize = 64;

/// How much a node may hold in hints (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintLimits {
    /// Most bytes of hints kept for one replica.
    pub max_bytes_per_node: usize,
    /// Most bytes of hints kept for all replicas together.
    pub max_bytes: usize,
    /// Most hints kept for one replica.
    pub max_per_node: usize,
}

impl Default for HintLimits {
    /// 64 MiB per replica, 256 MiB in all, 100,000 hints per replica: a few minutes of
    /// a busy replica's writes, and a bound a small machine never notices.
    fn default() -> Self {
        HintLimits {
            max_bytes_per_node: 64 << 20,
            max_bytes: 256 << 20,
            max_per_node: MAX_HINTS_PER_NODE,
        }
    }
}
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

impl Hint {
    /// The bytes this hint is counted for against [`HintLimits`].
    pub fn cost(&self) -> usize {
        let value = self.entry.value.as_ref().map_or(0, Bytes::len);
        self.collection.len() + self.key.len() + value + HINT_OVERHEAD_BYTES
    }
}

/// The hints waiting for one replica, oldest first.
#[derive(Debug, Default)]
struct Queue {
    hints: VecDeque<Hint>,
    /// The sum of their [`Hint::cost`].
    bytes: usize,
    /// Hints ever taken off the front (dropped, expired or delivered): a delivery in
    /// flight counts from this, so hints dropped meanwhile are not retired twice.
    popped: u64,
}

impl Queue {
    fn pop_front(&mut self) -> Option<Hint> {
        let hint = self.hints.pop_front()?;
        self.bytes -= hint.cost();
        self.popped += 1;
        Some(hint)
    }
}

/// The hints a node holds for other nodes.
#[derive(Debug, Default)]
pub struct Hints {
    limits: HintLimits,
    queued: BTreeMap<NodeId, Queue>,
    /// Deliveries in flight: request → (replica, hints sent, sent at, the replica's
    /// `popped` when sent).
    in_flight: BTreeMap<u64, (NodeId, usize, Millis, u64)>,
    /// The sum of every queue's bytes.
    bytes: usize,
    dropped: u64,
    expired: u64,
    delivered: u64,
    next_at: Option<Millis>,
    generation: u64,
}

impl Hints {
    /// No hints, bounded by `limits`.
    pub fn new(limits: HintLimits) -> Self {
        Hints { limits, ..Hints::default() }
    }

    /// The bounds in force.
    pub fn limits(&self) -> HintLimits {
        self.limits
    }

    /// Keeps a hint for `target`, dropping the oldest hints beyond the bounds (see the
    /// module docs). A hint larger than a bound by itself is dropped at once.
    pub fn add(&mut self, now: Millis, target: NodeId, hint: Hint) {
        self.generation += 1;
        let cost = hint.cost();
        if cost > self.limits.max_bytes_per_node.min(self.limits.max_bytes) {
            self.dropped += 1;
            return;
        }
        let limits = self.limits;
        let q = self.queued.entry(target).or_default();
        q.hints.push_back(hint);
        q.bytes += cost;
        self.bytes += cost;
        while q.hints.len() > limits.max_per_node || q.bytes > limits.max_bytes_per_node {
            let Some(old) = q.pop_front() else { break };
            self.bytes -= old.cost();
            self.dropped += 1;
        }
        while self.bytes > limits.max_bytes {
            let Some(fullest) = self.queued.values_mut().max_by_key(|q| q.bytes) else { break };
            let Some(old) = fullest.pop_front() else { break };
            self.bytes -= old.cost();
            self.dropped += 1;
        }
        self.next_at.get_or_insert(now + HINT_INTERVAL_MS);
    }

    /// Bytes of hints held (the sum of [`Hint::cost`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A number that changes whenever the set of hints does (to know when to save).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every hint waiting, with its replica, in delivery order (to save them).
    pub fn snapshot(&self) -> Vec<(NodeId, Hint)> {
        self.queued.iter().flat_map(|(t, q)| q.hints.iter().map(|h| (*t, h.clone()))).collect()
    }

    /// Takes back hints saved by [`Hints::snapshot`] before a restart.
    pub fn restore(&mut self, now: Millis, hints: Vec<(NodeId, Hint)>) {
        for (target, hint) in hints {
            self.add(now, target, hint);
        }
    }

    /// Hints waiting, for every replica.
    pub fn pending(&self) -> usize {
        self.queued.values().map(|q| q.hints.len()).sum()
    }

    /// Hints dropped because a bound was reached.
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
        self.in_flight
            .retain(|_, (_, _, sent, _)| now.saturating_sub(*sent) < 5 * HINT_INTERVAL_MS);
        let mut out = Vec::new();
        for (target, q) in self.queued.iter_mut() {
            let busy = self.in_flight.values().any(|(t, _, _, _)| t == target);
            if busy {
                continue;
            }
            // A node's hints are kept in the order of its own timestamps (each is kept when
            // its write's deadline passes), so the expired ones are at the front.
            while q
                .hints
                .front()
                .is_some_and(|h| h.entry.ts.physical_ms().saturating_add(max_age) < now)
            {
                if let Some(old) = q.pop_front() {
                    self.bytes -= old.cost();
                }
                self.expired += 1;
                self.generation += 1;
            }
            let Some(first) = q.hints.front() else { continue };
            if !reachable(*target) {
                continue;
            }
            let collection = first.collection.clone();
            let records: Vec<(Bytes, Entry)> = q
                .hints
                .iter()
                .take(HINT_BATCH)
                .take_while(|h| h.collection == collection)
                .map(|h| (h.key.clone(), h.entry.clone()))
                .collect();
            let req = next_req();
            self.in_flight.insert(req, (*target, records.len(), now, q.popped));
            out.push((*target, req, collection, records));
        }
        self.queued.retain(|_, q| !q.hints.is_empty());
        self.next_at = (!self.queued.is_empty()).then_some(now + HINT_INTERVAL_MS);
        out
    }

    /// Whether `req` is a hint delivery; when it succeeded, retires its hints.
    pub fn acknowledge(&mut self, req: u64, ok: bool) -> bool {
        let Some((target, n, _, popped)) = self.in_flight.remove(&req) else { return false };
        if ok {
            if let Some(q) = self.queued.get_mut(&target) {
                // Hints of the delivery dropped since it was sent are gone already.
                let gone = usize::try_from(q.popped - popped).unwrap_or(usize::MAX);
                for _ in 0..n.saturating_sub(gone) {
                    if let Some(old) = q.pop_front() {
                        self.bytes -= old.cost();
                    }
                }
            }
            self.delivered += n as u64;
            self.generation += 1;
            self.queued.retain(|_, q| !q.hints.is_empty());
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

    fn sized(key: &str, ms: u64, value_len: usize) -> Hint {
        Hint {
            collection: "c".into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            entry: Entry::value(
                Bytes::from(vec![7u8; value_len]),
                Timestamp::from_parts(ms, 0),
                NodeId(1),
            ),
        }
    }

    fn keys(hints: &Hints, target: NodeId) -> Vec<String> {
        hints
            .snapshot()
            .into_iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, h)| String::from_utf8(h.key.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn hints_for_one_replica_are_bounded_in_bytes_and_the_oldest_go_first() {
        let one = sized("k0", 1, 1000).cost();
        let limits =
            HintLimits { max_bytes_per_node: 3 * one, max_bytes: 100 * one, max_per_node: 1000 };
        let mut hints = Hints::new(limits);
        for i in 0..5 {
            hints.add(10, NodeId(2), sized(&format!("k{i}"), 1 + i, 1000));
        }
        assert_eq!(keys(&hints, NodeId(2)), ["k2", "k3", "k4"], "the oldest were dropped");
        assert_eq!(hints.dropped(), 2);
        assert_eq!(hints.bytes(), 3 * one);
        assert!(hints.bytes() <= limits.max_bytes_per_node);
        // A hint larger than the bound by itself is dropped, and nothing else is.
        hints.add(10, NodeId(2), sized("huge", 9, 4 * one));
        assert_eq!(keys(&hints, NodeId(2)), ["k2", "k3", "k4"]);
        assert_eq!(hints.dropped(), 3);
    }

    #[test]
    fn the_total_is_bounded_by_dropping_the_oldest_of_the_fullest_replica() {
        let one = sized("k0", 1, 1000).cost();
        let limits =
            HintLimits { max_bytes_per_node: 10 * one, max_bytes: 4 * one, max_per_node: 1000 };
        let mut hints = Hints::new(limits);
        for i in 0..3 {
            hints.add(10, NodeId(2), sized(&format!("a{i}"), 1 + i, 1000));
        }
        hints.add(10, NodeId(3), sized("b0", 5, 1000));
        hints.add(10, NodeId(3), sized("b1", 6, 1000));
        assert_eq!(hints.bytes(), 4 * one, "at the total, never past it");
        assert_eq!(keys(&hints, NodeId(2)), ["a1", "a2"], "the fullest replica lost its oldest");
        assert_eq!(keys(&hints, NodeId(3)), ["b0", "b1"]);
        assert_eq!(hints.dropped(), 1);
    }

    #[test]
    fn a_delivery_acknowledged_after_drops_retires_only_what_it_carried() {
        let one = sized("k0", 1, 100).cost();
        let limits =
            HintLimits { max_bytes_per_node: 3 * one, max_bytes: 100 * one, max_per_node: 1000 };
        let mut hints = Hints::new(limits);
        for i in 0..3 {
            hints.add(10, NodeId(2), sized(&format!("k{i}"), 1 + i, 100));
        }
        let due = hints.due(2_000, 60_000, |_| true, || 1);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].3.len(), 3, "k0, k1, k2 sent");
        // Two newer hints push k0 and k1 out while the delivery is in flight.
        hints.add(2_001, NodeId(2), sized("k3", 4, 100));
        hints.add(2_001, NodeId(2), sized("k4", 5, 100));
        assert!(hints.acknowledge(1, true));
        assert_eq!(keys(&hints, NodeId(2)), ["k3", "k4"], "k3 and k4 were never delivered");
        assert_eq!(hints.bytes(), 2 * one);
    }

    #[test]
    fn restored_hints_obey_the_bounds() {
        let one = sized("k0", 1, 1000).cost();
        let saved: Vec<(NodeId, Hint)> =
            (0..10).map(|i| (NodeId(2), sized(&format!("k{i}"), 1 + i, 1000))).collect();
        let limits = HintLimits { max_bytes_per_node: 4 * one, ..HintLimits::default() };
        let mut hints = Hints::new(limits);
        hints.restore(10, saved);
        assert_eq!(keys(&hints, NodeId(2)), ["k6", "k7", "k8", "k9"]);
        assert_eq!(hints.bytes(), 4 * one);
    }
}
