//! Graceful leave: announce, hand every range off to the nodes that will own it, announce
//! `Left`, stay up a little longer.
//!
//! [`crate::node::Node::leave`] runs in four steps, so that no acknowledged write ever sits on fewer
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
//!    and report progress as [`super::NodeEvent::Leaving`].
//! 4. *Announce `Left`* through membership (told directly to a few members and
//!    gossiped), then keep answering for `ring_delay_ms`: coordinators that have not
//!    heard yet still read from this node and send it writes, and those that have keep
//!    it as a recent owner for as long. Then [`crate::node::Node::left`] turns true: the
//!    driver may flush and exit.
//!
//! The node keeps serving throughout, so nothing is refused during a rolling restart. A
//! node that owns nothing (joining) or is alone holds nothing others need: it announces
//! `Left` at once and may exit at once.
//!
//! [`Leave`] is a machine of its own: it owns the leave's state, reads the membership,
//! the view, the replica and the ring delay it is handed (`Env`), and asks the node
//! for what only the node does (`LeaveOutput`): announce through membership, run the
//! hand-off sessions, report progress. The sessions' ends come back to it.
//!
//! [`Member::next_tokens`]: crate::membership::Member::next_tokens

use super::{antientropy::HandoffProgress, view::View};
use crate::{
    entry::NodeId,
    hash::Interval,
    membership::{Membership, Status},
    replica::Replica,
    ring::RingTable,
    store::Store,
    Millis,
};
use std::collections::VecDeque;

/// A graceful leave under way.
#[derive(Debug, Clone, Default)]
struct Leaving {
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

/// What the leave asks of the node.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum LeaveOutput {
    /// Announce through membership that this node is leaving (no tokens next).
    AnnounceLeaving,
    /// Announce `Left` through membership.
    AnnounceLeft,
    /// Run these hand-off sessions: (collection, interval, next owner), ahead of
    /// anything else queued.
    HandOff(Vec<(String, Interval, NodeId)>),
    /// Report the leave's progress.
    Progress(HandoffProgress),
}

/// What the parts that hand ranges off for a change of members — the leave, the
/// removals ([`super::remove`]) — read of the rest of the node, for one input.
pub(super) struct Env<'a, S: Store> {
    /// The membership: this node's record, who is up, who owns what.
    pub membership: &'a Membership,
    /// The ring and the catalogue: the placements of the collections.
    pub view: &'a View,
    /// The local replica: what this node holds data in.
    pub replica: &'a Replica<S>,
    /// How long the announcements take to reach every coordinator.
    pub ring_delay_ms: Millis,
}

impl<S: Store> Env<'_, S> {
    /// This node.
    pub(super) fn me(&self) -> NodeId {
        self.membership.me().id
    }

    /// Whether `id` is running and reachable as far as membership knows.
    pub(super) fn up(&self, id: NodeId) -> bool {
        self.membership.member(id).is_some_and(|m| m.status.is_up())
    }
}

/// The graceful leave of a node, once asked for (see the module docs).
#[derive(Debug, Default)]
pub struct Leave {
    leaving: Option<Leaving>,
    outputs: VecDeque<LeaveOutput>,
}

impl Leave {
    /// Whether a leave was asked for.
    pub fn asked(&self) -> bool {
        self.leaving.is_some()
    }

    /// The next thing the leave asks of the node.
    pub(super) fn poll_output(&mut self) -> Option<LeaveOutput> {
        self.outputs.pop_front()
    }

    /// Leaves the cluster gracefully: announces it, hands every range off to its next
    /// owners, announces `Left` (see the module docs). Asking again does nothing.
    pub(super) fn leave<S: Store>(&mut self, env: &Env<'_, S>, now: Millis) {
        if self.leaving.is_some() || env.membership.me().status == Status::Left {
            return;
        }
        let me = env.membership.me().id;
        let others_own = env.membership.members().any(|m| m.id != me && m.owns());
        if !env.membership.me().owns() || !others_own {
            self.leaving = Some(Leaving { done_waiting: true, ..Leaving::default() });
            self.announce_left(env, now);
            return;
        }
        self.outputs.push_back(LeaveOutput::AnnounceLeaving);
        let handoff_at = now.saturating_add(env.ring_delay_ms);
        self.leaving = Some(Leaving { handoff_at: Some(handoff_at), ..Leaving::default() });
        self.report();
    }

    /// Whether this node has left: it announced `Left` after its hand-off, and waited
    /// `ring_delay_ms` since (`membership`: this node's record).
    pub fn left(&self, membership: &Membership) -> bool {
        membership.me().status == Status::Left
            && self.leaving.as_ref().is_none_or(|l| l.done_waiting)
    }

    /// The progress of the leave, once asked for.
    pub fn progress(&self) -> Option<HandoffProgress> {
        self.leaving.as_ref().map(|l| HandoffProgress {
            done: l.done,
            total: l.total,
            entries: l.entries,
        })
    }

    /// Whether the hand-off reached every new owner.
    pub fn handed_off(&self) -> bool {
        self.leaving
            .as_ref()
            .is_some_and(|l| l.handoff_at.is_none() && l.done == l.total && !l.failed)
    }

    /// When the leave has something to do next: start its hand-off, or let the node go.
    pub fn next_deadline(&self) -> Option<Millis> {
        let l = self.leaving.as_ref()?;
        l.handoff_at.or(if l.done_waiting { None } else { l.exit_at })
    }

    /// Starts the hand-off once the announcement had time to spread; lets the node go
    /// once `Left` did.
    pub(super) fn tick<S: Store>(&mut self, env: &Env<'_, S>, now: Millis) {
        let Some(l) = self.leaving.as_mut() else { return };
        if l.exit_at.is_some_and(|at| at <= now) {
            l.done_waiting = true;
        }
        if l.handoff_at.is_none_or(|at| at > now) {
            return;
        }
        l.handoff_at = None;
        let jobs = jobs(env);
        l.total = jobs.len();
        if jobs.is_empty() {
            self.announce_left(env, now);
            return;
        }
        self.report();
        self.outputs.push_back(LeaveOutput::HandOff(jobs));
    }

    /// Books the end of a hand-off session; announces `Left` after the last.
    pub(super) fn session_ended<S: Store>(
        &mut self,
        env: &Env<'_, S>,
        now: Millis,
        ok: bool,
        entries: u64,
    ) {
        let Some(l) = self.leaving.as_mut() else { return };
        l.done += 1;
        l.failed |= !ok;
        l.entries += entries;
        self.report();
        if self.leaving.as_ref().is_some_and(|l| l.handoff_at.is_none() && l.done >= l.total) {
            self.announce_left(env, now);
        }
    }

    fn announce_left<S: Store>(&mut self, env: &Env<'_, S>, now: Millis) {
        if env.membership.me().status == Status::Left {
            return;
        }
        self.outputs.push_back(LeaveOutput::AnnounceLeft);
        if let Some(l) = self.leaving.as_mut() {
            if !l.done_waiting {
                l.exit_at = Some(now.saturating_add(env.ring_delay_ms));
            }
        }
    }

    fn report(&mut self) {
        if let Some(p) = self.progress() {
            self.outputs.push_back(LeaveOutput::Progress(p));
        }
    }
}

/// One session per (collection, interval this node replicates, next owner).
fn jobs<S: Store>(env: &Env<'_, S>) -> Vec<(String, Interval, NodeId)> {
    let me = env.me();
    if !env.membership.me().owns() {
        return Vec::new();
    }
    let heirs_table = RingTable::new(
        env.membership
            .members()
            .filter(|m| m.owns() && m.id != me)
            .map(|m| (m.id, m.tokens.as_slice())),
    );
    if heirs_table.is_empty() {
        return Vec::new();
    }
    // The catalogue, which every member keeps, needs no heir.
    let collections = env.replica.store().collections().unwrap_or_default();
    let mut jobs = Vec::new();
    for (signature, collections) in env.view.signatures(&collections) {
        let placement = env.view.placement_by(&signature);
        for (interval, replicas) in placement.intervals() {
            if !replicas.contains(&me) {
                continue;
            }
            let heirs = placement.list_on(&heirs_table, interval.end);
            for c in &collections {
                let holds = env.replica.range(c, interval, None, 1).is_ok_and(|r| !r.is_empty());
                if holds {
                    jobs.extend(heirs.iter().map(|h| (c.clone(), interval, *h)));
                }
            }
        }
    }
    jobs
}
