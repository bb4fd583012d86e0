//! Deletes that stay deleted: expiry on disk, tombstone collection after a grace
//! period, and the rule that a node too long out of sync rejoins without anything a
//! deleted key could come back from.
//!
//! **Expiry.** An entry whose TTL passed reads as a tombstone at once (see
//! [`crate::entry::Entry::materialize`]); the collector also rewrites it as one on
//! disk, which frees its value and lets the change reach watchers.
//!
//! **Tombstones** are kept for `tombstone_grace_ms` (24 h by default, god's choice)
//! after the delete (or the expiry), long enough for anti-entropy, which runs every few
//! seconds, to have carried them to every replica. Then the collector removes them
//! outright — but only tombstones older than the node's last *full* sync, a round in
//! which every range it replicates was reconciled with another replica, so a tombstone
//! is never purged from a node that has not passed it on.
//!
//! **Rejoining without old data.** A replica that was away longer than the grace
//! period may hold values whose tombstones the others have purged; merged back, those
//! values would return from the dead. So a node whose last full sync is older than half
//! the grace period (half: its hand-off must finish well before the others start
//! collecting, whatever the clock skew) — after a long crash, cut off by a partition, or
//! unable to complete a sync while running — stops serving (`Syncing`), drops every
//! record older than half the grace period that other serving replicas hold, and
//! re-syncs from them before it serves again, automatically, with no operator step.
//! Only such old records can be values whose deletes were already collected; newer ones
//! are kept, because they may be acknowledged writes no other node has yet (the safety
//! checkers found that wiping everything loses them when a node that kept serving while
//! its peers were away goes stale). Ranges no other node holds are kept whole: there is
//! no one to resurrect anything from, and no one else to get the data from.
//!
//! The collector walks the store incrementally: at most [`GC_BATCH`] records per tick,
//! resuming from a cursor, and starts a pass every `gc_interval_ms`.

use super::{Node, NodeEvent, Output};
use crate::{
    entry::{Entry, NodeId},
    hash::{Interval, Position},
    membership::Status,
    replica::Replica,
    store::Store,
    Millis,
};
use bytes::Bytes;
use std::collections::VecDeque;

/// Records the collector examines per tick.
pub const GC_BATCH: usize = 10_000;

/// The collector: a machine of its own. It takes the time, the replica it collects in
/// and the rule of the moment ([`GcPolicy`]), and emits what went wrong as events
/// ([`Gc::poll_event`]) and when it next has work ([`Gc::next_deadline`]).
#[derive(Debug, Default)]
pub struct Gc {
    next_at: Option<Millis>,
    cursor: Option<(String, Position, Bytes)>,
    purged: u64,
    expired: u64,
    events: VecDeque<NodeEvent>,
}

/// What the collector is told at each tick: the node's settings and the time of its
/// last full sync, which only the node knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// How long tombstones are kept ([`super::NodeConfig::tombstone_grace_ms`]).
    pub grace_ms: Millis,
    /// How often a pass starts ([`super::NodeConfig::gc_interval_ms`]).
    pub interval_ms: Millis,
    /// When the node's last full sync started ([`super::NodeState::last_full_sync_ms`]):
    /// only tombstones older than it may go.
    pub last_full_sync_ms: Option<Millis>,
}

impl Gc {
    /// When the collector next has work.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.next_at
    }

    /// Tombstones purged so far.
    pub fn purged(&self) -> u64 {
        self.purged
    }

    /// Expired values rewritten as tombstones so far.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// The next thing to report (a store that failed).
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// Runs a batch of the collector over `replica` when due: at most [`GC_BATCH`]
    /// records, from where the last batch stopped.
    pub fn tick<S: Store>(&mut self, now: Millis, replica: &mut Replica<S>, policy: GcPolicy) {
        let interval = policy.interval_ms.max(1);
        let Some(due) = self.next_at else {
            self.next_at = Some(now + interval);
            return;
        };
        if due > now {
            return;
        }
        let collections = replica.store().collections().unwrap_or_default();
        let mut budget = GC_BATCH;
        let mut cursor = self.cursor.take();
        let start = cursor.as_ref().map(|(c, _, _)| c.clone());
        for c in collections.iter().filter(|c| start.as_ref().is_none_or(|s| *c >= s)) {
            let after = cursor.take().filter(|(cc, _, _)| cc == c).map(|(_, p, k)| (p, k));
            let page = after.as_ref().map(|(p, k)| (*p, &k[..]));
            let records = match replica.range(c, Interval::full(), page, budget) {
                Ok(r) => r,
                Err(e) => {
                    self.events.push_back(NodeEvent::StoreFailed(e));
                    continue;
                }
            };
            budget -= records.len().min(budget);
            let last = records.last().map(|r| (c.clone(), r.pos, r.key.clone()));
            for r in records {
                self.collect(now, replica, &policy, c, r.key, r.entry);
            }
            if budget == 0 {
                // Resume after the last record examined.
                self.cursor = last;
                self.next_at = Some(now + 1);
                return;
            }
        }
        self.next_at = Some(now + interval);
    }

    fn collect<S: Store>(
        &mut self,
        now: Millis,
        replica: &mut Replica<S>,
        policy: &GcPolicy,
        collection: &str,
        key: Bytes,
        entry: Entry,
    ) {
        if entry.is_live(now) {
            return;
        }
        let deleted_at = entry.deleted_at_ms();
        let synced_since = policy.last_full_sync_ms.is_some_and(|t| deleted_at < t);
        if deleted_at.saturating_add(policy.grace_ms) <= now && synced_since {
            match replica.remove(collection, &key) {
                Ok(_) => self.purged += 1,
                Err(e) => self.events.push_back(NodeEvent::StoreFailed(e)),
            }
        } else if !entry.is_tombstone() {
            // Expired: keep it as a tombstone, without its value.
            match replica.merge(collection, key, entry.materialize(now)) {
                Ok(_) => self.expired += 1,
                Err(e) => self.events.push_back(NodeEvent::StoreFailed(e)),
            }
        }
    }
}

/// Whether a node's data is too old to serve: its last full sync started more than half
/// the grace period ago (or it never had one). Half, so that a node coming back just
/// inside the limit finishes its hand-off long before the others start collecting the
/// tombstones it missed, whatever the clock skew.
///
/// Counted from the round's *start*, deliberately: a range is only known reconciled as
/// of then, so a round that lasted longer than half the grace period (peers that stopped
/// answering, far too much data for the period) leaves the node stale as it completes,
/// and it wipes and re-syncs rather than risk serving a value whose delete the others
/// have already collected. If every round is that slow, every round ends that way: the
/// node stays safe but spends its time re-syncing. So a round longer than a quarter of
/// the grace period is reported ([`NodeEvent::SlowSync`]), for the operator to act on
/// before it comes to that.
pub(super) fn stale(last_full_sync_ms: Option<Millis>, grace_ms: Millis, now: Millis) -> bool {
    match last_full_sync_ms {
        Some(t) => now.saturating_sub(t) > grace_ms / 2,
        None => true,
    }
}

/// Drops every record written before `now − grace/2` that another serving node holds
/// (or will hold), keeping the ranges node `me` alone replicates; used before a stale
/// node re-syncs. Only such old records can be values whose tombstones others have
/// collected (a tombstone is collected a whole grace period after its delete, which came
/// after the value); newer ones, acknowledged writes among them, are kept and reconciled
/// by the sync that follows. `would_be` are the intervals of the table with this node
/// serving; `mine` those of them it shares with current owners. Returns what to report:
/// store failures, then [`NodeEvent::Wiped`].
pub(super) fn wipe_shared<S: Store>(
    replica: &mut Replica<S>,
    me: NodeId,
    grace_ms: Millis,
    now: Millis,
    collections: &[String],
    would_be: &[(Interval, Vec<NodeId>)],
    mine: &[(Interval, Vec<NodeId>)],
) -> Vec<NodeEvent> {
    let cutoff = now.saturating_sub(grace_ms / 2);
    let mut events = Vec::new();
    let mut dropped = 0;
    for c in collections {
        for (interval, replicas) in would_be {
            let alone = replicas.contains(&me) && !mine.iter().any(|(m, _)| m == interval);
            if alone {
                continue;
            }
            let mut after: Option<(Position, Bytes)> = None;
            loop {
                let cursor = after.as_ref().map(|(p, k)| (*p, &k[..]));
                let page = match replica.range(c, *interval, cursor, GC_BATCH) {
                    Ok(page) => page,
                    Err(e) => {
                        events.push(NodeEvent::StoreFailed(e));
                        break;
                    }
                };
                let Some(last) = page.last() else { break };
                after = Some((last.pos, last.key.clone()));
                let full = page.len() == GC_BATCH;
                for r in page.into_iter().filter(|r| r.entry.ts.physical_ms() < cutoff) {
                    match replica.remove(c, &r.key) {
                        Ok(_) => dropped += 1,
                        Err(e) => events.push(NodeEvent::StoreFailed(e)),
                    }
                }
                if !full {
                    break;
                }
            }
        }
    }
    events.push(NodeEvent::Wiped { entries: dropped });
    events
}

impl<S: Store> Node<S> {
    /// A serving node that has not completed a full sync within the grace period stops
    /// serving and re-syncs (dropping what others hold first, see [`wipe_shared`]).
    pub(super) fn check_staleness(&mut self, now: Millis) {
        let alive = self.membership.me().status == Status::Alive;
        let stale = stale(self.state.last_full_sync_ms, self.config.tombstone_grace_ms, now);
        if !alive || !self.anti_entropy.round_idle() || !stale {
            return;
        }
        if self.membership.alive().any(|m| m.id != self.id()) {
            self.membership.begin_resync(now);
            self.collect_membership();
        }
    }

    /// Runs the collector (see [`Gc::tick`]) and passes its events on.
    pub(super) fn tick_gc(&mut self, now: Millis) {
        let policy = GcPolicy {
            grace_ms: self.config.tombstone_grace_ms,
            interval_ms: self.config.gc_interval_ms,
            last_full_sync_ms: self.state.last_full_sync_ms,
        };
        self.gc.tick(now, &mut self.replica, policy);
        while let Some(event) = self.gc.poll_event() {
            self.outputs.push_back(Output::Event(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::Timestamp, store::MemStore};

    fn ts(ms: Millis) -> Timestamp {
        Timestamp::from_parts(ms, 0)
    }

    /// The collector alone, over a replica: what it purges, keeps and rewrites.
    #[test]
    fn the_collector_purges_only_tombstones_past_the_grace_and_a_full_sync() {
        let mut replica = Replica::new(MemStore::new()).unwrap();
        let me = NodeId(1);
        let put = |r: &mut Replica<MemStore>, k: &str, e: Entry| {
            r.merge("c", Bytes::copy_from_slice(k.as_bytes()), e).unwrap();
        };
        put(&mut replica, "old-delete", Entry::tombstone(ts(1_000), me));
        put(&mut replica, "new-delete", Entry::tombstone(ts(90_000), me));
        put(&mut replica, "expired", Entry::value("v", ts(1_000), me).with_expiry(Some(2_000)));
        put(&mut replica, "live", Entry::value("v", ts(1_000), me));
        let mut gc = Gc::default();
        let mut policy = GcPolicy { grace_ms: 50_000, interval_ms: 10, last_full_sync_ms: None };
        gc.tick(100_000, &mut replica, policy);
        assert_eq!(gc.next_deadline(), Some(100_010), "the first tick only plans a pass");
        // No full sync yet: nothing is purged; the expired value becomes a tombstone.
        gc.tick(100_010, &mut replica, policy);
        assert_eq!((gc.purged(), gc.expired()), (0, 1));
        let expired = replica.get("c", b"expired").unwrap().unwrap();
        assert!(expired.is_tombstone());
        // After a full sync: the tombstones older than it and past the grace go.
        policy.last_full_sync_ms = Some(95_000);
        gc.tick(100_020, &mut replica, policy);
        assert_eq!(gc.purged(), 2, "old-delete and expired (deleted at 2,000)");
        assert!(replica.get("c", b"old-delete").unwrap().is_none());
        assert!(replica.get("c", b"new-delete").unwrap().is_some(), "within the grace");
        assert!(replica.get("c", b"live").unwrap().is_some());
        assert!(gc.poll_event().is_none());
    }
}
