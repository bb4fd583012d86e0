//! Graceful leave: announce, hand every range off to the nodes that will own it, announce
//! `Left`, stay up a little longer.
//!
//! [`Node::leave`] runs in four steps, so that no acknowledged write ever sits on fewer
//! than W of a range's owners, before, during or after the leave (see
//! [`crate::ring::placement`]):
//!
//! 1. *Announce*: the node's record says it is leaving ([`Member::next_tokens`] empty, a
//!    new incarnation, gossiped). Every coordinator that hears it makes the nodes that
//!    will replicate this node's ranges once it is gone *pending replicas*: they receive
//!    every write from then on, and a write needs W + pending acknowledgements.
//! 2. *Wait* `ring_delay_ms`, time for gossip to tell every coordinator.
//! 3. *Hand off*: for every token interval this node replicates and every collection it
//!    holds data in there, one Merkle sync session with *each* node that will replicate
//!    the interval (the preference list of the other owners). Sessions cost what differs:
//!    a successor that is already a replica costs one round trip, the node newly
//!    entering the preference list receives everything written before step 2. They run
//!    ahead of anything else anti-entropy has queued, are retried like sync sessions,
//!    and report progress as [`NodeEvent::Leaving`].
//! 4. *Announce `Left`* through membership (told directly to a few members and
//!    gossiped), then keep answering for `ring_delay_ms`: coordinators that have not
//!    heard yet still read from this node and send it writes, and those that have keep
//!    it as a recent owner for as long. Then [`Node::left`] turns true: the driver may
//!    flush and exit.
//!
//! The node keeps serving throughout, so nothing is refused during a rolling restart. A
//! node that owns nothing (joining) or is alone holds nothing others need: it announces
//! `Left` at once and may exit at once.
//!
//! [`Member::next_tokens`]: crate::membership::Member::next_tokens

use super::{antientropy::HandoffProgress, Node, NodeEvent, Output};
use crate::Millis;
use crate::{entry::NodeId, hash::Interval, membership::Status, ring::RingTable, store::Store};

/// A graceful leave under way.
#[derive(Debug, Clone, Default)]
pub(super) struct Leaving {
    /// When the hand-off starts (`ring_delay` after the announcement); `None` once the
    /// sessions are planned.
    handoff_at: Option<Millis>,
    /// When the node may exit (`ring_delay` after `Left`); `None` before `Left`.
    exit_at: Option<Millis>,
    /// Whether the node may exit now.
    done_waiting: bool,
    total: usize,
    done: usize,
    entries: u64,
    failed: bool,
}

impl<S: Store> Node<S> {
    /// Leaves the cluster gracefully: announces it, hands every range off to its next
    /// owners, announces `Left` (see the module docs). Calling it again does nothing.
    pub fn leave(&mut self, now: Millis) {
        if self.leaving.is_some() || self.membership.me().status == Status::Left {
            return;
        }
        let me = self.id();
        let others_own = self.membership.members().any(|m| m.id != me && m.owns());
        if !self.membership.me().owns() || !others_own {
            self.leaving = Some(Leaving { done_waiting: true, ..Leaving::default() });
            self.announce_leave(now);
            return;
        }
        self.membership.set_next_tokens(now, Some(Vec::new()));
        self.collect_membership();
        let handoff_at = now.saturating_add(self.config.ring_delay_ms);
        self.leaving = Some(Leaving { handoff_at: Some(handoff_at), ..Leaving::default() });
        self.report_leaving();
    }

    /// Whether this node has left: it announced `Left` after its hand-off, and waited
    /// `ring_delay_ms` since.
    pub fn left(&self) -> bool {
        self.membership.me().status == Status::Left
            && self.leaving.as_ref().is_none_or(|l| l.done_waiting)
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
        self.leaving
            .as_ref()
            .is_some_and(|l| l.handoff_at.is_none() && l.done == l.total && !l.failed)
    }

    /// When the leave has something to do next: start its hand-off, or let the node go.
    pub(super) fn leave_deadline(&self) -> Option<Millis> {
        let l = self.leaving.as_ref()?;
        l.handoff_at.or(if l.done_waiting { None } else { l.exit_at })
    }

    /// Starts the hand-off once the announcement had time to spread; lets the node go
    /// once `Left` did.
    pub(super) fn tick_leave(&mut self, now: Millis) {
        let Some(l) = self.leaving.as_mut() else { return };
        if l.exit_at.is_some_and(|at| at <= now) {
            l.done_waiting = true;
        }
        if l.handoff_at.is_none_or(|at| at > now) {
            return;
        }
        l.handoff_at = None;
        let jobs = self.leave_jobs();
        if let Some(l) = self.leaving.as_mut() {
            l.total = jobs.len();
        }
        if jobs.is_empty() {
            self.announce_leave(now);
            return;
        }
        self.report_leaving();
        self.queue_leave_sessions(jobs);
        self.fill_sessions(now);
    }

    /// One session per (collection, interval this node replicates, next owner).
    fn leave_jobs(&self) -> Vec<(String, Interval, NodeId)> {
        let me = self.id();
        if !self.membership.me().owns() {
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
        // The catalogue, which every member keeps, needs no heir.
        let collections = self.replica.store().collections().unwrap_or_default();
        let mut jobs = Vec::new();
        for (signature, collections) in self.view.signatures(&collections) {
            let placement = self.view.placement_by(&signature);
            for (interval, replicas) in placement.intervals() {
                if !replicas.contains(&me) {
                    continue;
                }
                let heirs = placement.list_on(&heirs_table, interval.end);
                for c in &collections {
                    let holds =
                        self.replica.range(c, interval, None, 1).is_ok_and(|r| !r.is_empty());
                    if holds {
                        jobs.extend(heirs.iter().map(|h| (c.clone(), interval, *h)));
                    }
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
        if self.leaving.as_ref().is_some_and(|l| l.handoff_at.is_none() && l.done >= l.total) {
            self.announce_leave(now);
        }
    }

    fn announce_leave(&mut self, now: Millis) {
        if self.membership.me().status == Status::Left {
            return;
        }
        self.membership.leave(now);
        self.collect_membership();
        if let Some(l) = self.leaving.as_mut() {
            if !l.done_waiting {
                l.exit_at = Some(now.saturating_add(self.config.ring_delay_ms));
            }
        }
    }

    fn report_leaving(&mut self) {
        if let Some(p) = self.leave_progress() {
            self.outputs.push_back(Output::Event(NodeEvent::Leaving(p)));
        }
    }
}
