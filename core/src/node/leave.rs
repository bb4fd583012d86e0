//! Graceful leave: hand every range off to the nodes that will own it, then announce.
//!
//! [`Node::leave`] plans, for every token interval this node replicates and every
//! collection it holds data in there, one Merkle sync session with *each* node that
//! will replicate the interval once this node is gone (the preference list of the
//! serving members without it). Sessions cost what differs, so a successor that is
//! already a replica costs one round trip, and the node that newly enters the
//! preference list receives everything. The sessions run ahead of anything else
//! anti-entropy has queued, are retried like sync sessions, and report progress as
//! [`NodeEvent::Leaving`]. When the last one ends, the node announces `Left` through
//! membership (a new incarnation, told directly to a few members and gossiped) and
//! [`Node::left`] turns true: the driver may flush and exit.
//!
//! The node keeps serving while it hands off, so nothing is refused during a rolling
//! restart. A write it acknowledges *after* the session for its interval ended reaches
//! the other replicas too (every write goes to the whole preference list); only a write
//! at consistency `one` that reached this node alone could miss the hand-off, and the
//! remaining replicas' anti-entropy does not see it. A `Syncing` node (still catching
//! up) and a node alone hold nothing others need: they announce at once.

use super::{antientropy::intervals, antientropy::HandoffProgress, Node, NodeEvent, Output};
use crate::Millis;
use crate::{entry::NodeId, hash::Interval, membership::Status, ring::RingTable, store::Store};

/// A graceful leave under way.
#[derive(Debug, Clone, Default)]
pub(super) struct Leaving {
    total: usize,
    done: usize,
    entries: u64,
    failed: bool,
}

impl<S: Store> Node<S> {
    /// Leaves the cluster gracefully: hands every range off to its next owners, then
    /// announces `Left` (see the module docs). Calling it again does nothing.
    pub fn leave(&mut self, now: Millis) {
        if self.leaving.is_some() || self.membership.me().status == Status::Left {
            return;
        }
        let jobs = self.leave_jobs();
        self.leaving = Some(Leaving { total: jobs.len(), ..Leaving::default() });
        if jobs.is_empty() {
            self.announce_leave(now);
            return;
        }
        self.report_leaving();
        self.queue_leave_sessions(jobs);
        self.fill_sessions(now);
    }

    /// Whether this node has announced that it left (after its hand-off).
    pub fn left(&self) -> bool {
        self.membership.me().status == Status::Left
    }

    /// The progress of a graceful leave, once [`Node::leave`] was called.
    pub fn leave_progress(&self) -> Option<HandoffProgress> {
        self.leaving.as_ref().map(|l| HandoffProgress {
            done: l.done,
            total: l.total,
            entries: l.entries,
        })
    }

    /// Whether the hand-off of a graceful leave reached every new owner.
    pub fn handed_off(&self) -> bool {
        self.leaving.as_ref().is_some_and(|l| l.done == l.total && !l.failed)
    }

    /// One session per (collection, interval this node replicates, next owner).
    fn leave_jobs(&self) -> Vec<(String, Interval, NodeId)> {
        let me = self.id();
        if self.membership.me().status != Status::Alive {
            return Vec::new();
        }
        let heirs_table = RingTable::new(
            self.membership
                .members()
                .filter(|m| m.owns() && m.id != me)
                .map(|m| (m.id, m.tokens.as_slice())),
        );
        if heirs_table.is_empty() {
            return Vec::new();
        }
        let n = self.config.replicas.max(1);
        let collections = self.replica.store().collections().unwrap_or_default();
        let mut jobs = Vec::new();
        for (interval, replicas) in intervals(&self.table, n) {
            if !replicas.contains(&me) {
                continue;
            }
            let heirs = heirs_table.preference_list(interval.end, n);
            for c in &collections {
                let holds = self.replica.range(c, interval, None, 1).is_ok_and(|r| !r.is_empty());
                if holds {
                    jobs.extend(heirs.iter().map(|h| (c.clone(), interval, *h)));
                }
            }
        }
        jobs
    }

    /// Books the end of a leave session; announces `Left` after the last.
    pub(super) fn on_leave_session_end(&mut self, now: Millis, ok: bool, entries: u64) {
        let Some(l) = self.leaving.as_mut() else { return };
        l.done += 1;
        l.failed |= !ok;
        l.entries += entries;
        self.report_leaving();
        if self.leaving.as_ref().is_some_and(|l| l.done >= l.total) {
            self.announce_leave(now);
        }
    }

    fn announce_leave(&mut self, now: Millis) {
        self.membership.leave(now);
        self.collect_membership();
    }

    fn report_leaving(&mut self) {
        if let Some(p) = self.leave_progress() {
            self.outputs.push_back(Output::Event(NodeEvent::Leaving(p)));
        }
    }
}
