//! Removing a member that is dead for good — what an operator runs with
//! `dhrt remove ID` when a machine is lost (Cassandra's `removenode`, Riak's
//! `force-remove`).
//!
//! Owners are fixed by the ring (see [`crate::ring::placement`]): a dead member keeps
//! its ranges, hints keep the writes it misses, and it re-syncs when it comes back. One
//! that never comes back must be removed, or every range it owned stays one copy short
//! and one more failure away from losing its quorum. Nobody can hand its data off, so
//! the other owners of its ranges do, in four steps, keeping every write acknowledged
//! at `quorum` on at least W of the owners at every moment:
//!
//! 1. *Announce* ([`Membership::mark_removing`]): the member's record, at its
//!    incarnation, says it will own nothing. Every node that hears it makes the members
//!    that inherit its ranges *pending replicas*: they receive every write from then
//!    on, and reads of its keys need a quorum of the owners once it is gone too (joint
//!    reads, never waived: the member is not there to say its change is under way).
//! 2. *Wait* `ring_delay_ms`, time for gossip to tell every coordinator.
//! 3. *Hand off*: the node running the removal asks every other owner of the member's
//!    ranges ([`ReplicaMessage::RemovalHandOff`]) to push each range it shares with the
//!    member to every node that owns the range once the member is gone (Merkle
//!    sessions, which cost what differs, run like a graceful leave's). It asks again
//!    every couple of seconds until they answered. A write acknowledged by W of a
//!    range's n owners is on at least W − 1 of the n − 1 others, so once n − W + 1 of
//!    them handed off (all of them, with n = 3), each such write is on every running
//!    owner the range will have.
//! 4. *Announce `Left`* ([`Membership::mark_removed`]): the inheritors are owners.
//!
//! The removal stops if the member comes back (its own record, at a higher incarnation,
//! beats the announcement: it re-syncs and serves as before). It is not saved: if the
//! node running it stops, the member stays announced and running the removal again on
//! any node resumes it. An owner down too holds up step 3 for the ranges it shares with
//! the member, unless the removal is *forced*: then the owners that are up suffice, and
//! writes that only the removed member and the down owners held are lost.
//!
//! [`Removals`] is a machine of its own: the removal this node runs and the hand-off it
//! runs for one (its own or another node's). It reads the membership, the view and the
//! replica it is handed (`Env`) and asks the node for the rest (`RemovalOutput`):
//! announce through membership, send the questions and answers, run the hand-off
//! sessions, report progress; the sessions' ends come back to it.
//!
//! [`Membership::mark_removing`]: crate::membership::Membership::mark_removing
//! [`Membership::mark_removed`]: crate::membership::Membership::mark_removed
//! [`ReplicaMessage::RemovalHandOff`]: crate::proto::ReplicaMessage::RemovalHandOff

use super::{
    antientropy::covering,
    ids::{Concern, RequestIds},
    NodeEvent,
};
use crate::{
    entry::NodeId, hash::Interval, membership::Status, proto::ReplicaMessage, ring::RingTable,
    store::Store, Millis,
};

/// What a removal reads of the rest of the node: what a leave reads.
pub(super) use super::leave::Env;
use std::{
    collections::{BTreeSet, VecDeque},
    fmt,
};

/// How often the node running a removal asks again the owners that have not handed off.
const ASK_AGAIN_MS: Millis = 2_000;

/// Most nodes waiting for one hand-off at once (each running the same removal).
const MAX_ASKERS: usize = 16;

/// A removal this node runs: it took the operator's request.
#[derive(Debug, Clone)]
struct Removal {
    member: NodeId,
    force: bool,
    req: u64,
    /// When the owners are asked (next).
    ask_at: Millis,
    /// Owners that handed their ranges off.
    done: BTreeSet<NodeId>,
}

/// A hand-off this node runs for a removal (its own or another node's).
#[derive(Debug, Clone)]
struct Donation {
    member: NodeId,
    /// Who asked, and under which request number.
    askers: Vec<(NodeId, u64)>,
    total: usize,
    done: usize,
    failed: bool,
}

/// How far a removal this node runs has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalProgress {
    /// The member being removed.
    pub member: NodeId,
    /// The other owners of its ranges that handed them off.
    pub handed_off: usize,
    /// The other owners of its ranges.
    pub owners: usize,
    /// Owners still expected that are down (the removal waits for them unless forced).
    pub waiting_for_down: Vec<NodeId>,
}

/// Why a removal cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveError {
    /// No member with this id.
    NotFound(NodeId),
    /// The node itself: a running node leaves gracefully instead.
    Myself(NodeId),
    /// The member is not dead.
    NotDead(NodeId, Status),
    /// Another change of the ring (a join, a leave, a token move) is under way.
    ChangeUnderWay,
    /// This node already runs the removal of another member.
    Busy(NodeId),
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveError::NotFound(id) => write!(f, "no member {id} in this node's view"),
            RemoveError::Myself(id) => write!(
                f,
                "node {id} is the node asked: a running node leaves gracefully (SIGTERM), \
                 ask another node to remove a dead one"
            ),
            RemoveError::NotDead(id, Status::Suspect) => write!(
                f,
                "node {id} is suspect, not dead: the cluster declares it dead within seconds \
                 if it does not answer; retry then"
            ),
            RemoveError::NotDead(id, status) => write!(
                f,
                "node {id} is {status}, not dead: only a member the cluster declared dead can \
                 be removed (a running node leaves gracefully on SIGTERM; one that just \
                 stopped is declared dead within seconds)"
            ),
            RemoveError::ChangeUnderWay => write!(
                f,
                "another change of the ring (a join, a leave, a token move) is under way: \
                 retry once it is done"
            ),
            RemoveError::Busy(other) => {
                write!(f, "this node is removing node {other}: retry once that is done")
            }
        }
    }
}

impl std::error::Error for RemoveError {}

/// What a removal asks of the node.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RemovalOutput {
    /// Announce through membership that `member` will own nothing.
    MarkRemoving(NodeId),
    /// Announce through membership that `member` left.
    MarkRemoved(NodeId),
    /// Send a removal's question or answer to another node.
    Send(NodeId, ReplicaMessage),
    /// Run these hand-off sessions: (collection, interval, heir), ahead of the round's.
    HandOff(Vec<(String, Interval, NodeId)>),
    /// Report progress or the end.
    Event(NodeEvent),
}

/// The removals of a node (see the module docs).
#[derive(Debug, Default)]
pub struct Removals {
    /// The removal of a dead member this node runs.
    removal: Option<Removal>,
    /// The hand-off this node runs for a removal.
    donation: Option<Donation>,
    outputs: VecDeque<RemovalOutput>,
}

impl Removals {
    /// The next thing a removal asks of the node.
    pub(super) fn poll_output(&mut self) -> Option<RemovalOutput> {
        self.outputs.pop_front()
    }

    /// Starts removing `member`, which the cluster declared dead, for good (see the
    /// module docs); resumes the removal if the member is announced as being removed
    /// already. `force` finishes even while other owners of its ranges are down.
    ///
    /// True when a removal started (numbered from `ids`): report it
    /// ([`Removals::report`]) once the node did what this asked.
    pub(super) fn remove<S: Store>(
        &mut self,
        env: &Env<'_, S>,
        ids: &mut RequestIds,
        now: Millis,
        member: NodeId,
        force: bool,
    ) -> Result<bool, RemoveError> {
        if member == env.me() {
            return Err(RemoveError::Myself(member));
        }
        let Some(record) = env.membership.member(member) else {
            return Err(RemoveError::NotFound(member));
        };
        if record.status == Status::Left {
            return Ok(false);
        }
        if let Some(r) = self.removal.as_mut() {
            if r.member != member {
                return Err(RemoveError::Busy(r.member));
            }
            r.force |= force;
            return Ok(false);
        }
        if record.status != Status::Dead {
            return Err(RemoveError::NotDead(member, record.status));
        }
        if !record.owns() {
            // A joining node that died, or a record that never served: nothing to hand.
            self.outputs.push_back(RemovalOutput::MarkRemoved(member));
            self.outputs.push_back(RemovalOutput::Event(NodeEvent::Removed { member }));
            return Ok(false);
        }
        if !record.leaving() {
            if env.view.placement.in_transition() {
                return Err(RemoveError::ChangeUnderWay);
            }
            self.outputs.push_back(RemovalOutput::MarkRemoving(member));
        }
        let req = ids.next(Concern::Removal);
        let ask_at = now.saturating_add(env.ring_delay_ms);
        self.removal = Some(Removal { member, force, req, ask_at, done: BTreeSet::new() });
        Ok(true)
    }

    /// Reports the progress of the removal this node runs (after the node did what
    /// [`Removals::remove`] asked, so that the report sees the announcement).
    pub(super) fn report<S: Store>(&mut self, env: &Env<'_, S>) {
        if let Some(p) = self.progress(env) {
            self.outputs.push_back(RemovalOutput::Event(NodeEvent::Removing(p)));
        }
    }

    /// The removal this node runs, if any.
    pub(super) fn progress<S: Store>(&self, env: &Env<'_, S>) -> Option<RemovalProgress> {
        let r = self.removal.as_ref()?;
        let owners: BTreeSet<NodeId> =
            plan(env, r.member, r.force).into_iter().flat_map(|(o, _)| o).collect();
        let waiting_for_down =
            owners.iter().filter(|o| !r.done.contains(o) && !env.up(**o)).copied().collect();
        Some(RemovalProgress {
            member: r.member,
            handed_off: owners.iter().filter(|o| r.done.contains(o)).count(),
            owners: owners.len(),
            waiting_for_down,
        })
    }

    /// When the removal this node runs asks the owners next.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.removal.as_ref().map(|r| r.ask_at)
    }

    /// Asks the owners that have not handed off yet, once the announcement had time to
    /// spread; ends the removal when the member came back or left.
    pub(super) fn tick<S: Store>(&mut self, env: &Env<'_, S>, now: Millis) {
        let Some(r) = self.removal.as_ref() else { return };
        let member = r.member;
        let record = env.membership.member(member);
        if record.is_some_and(|m| m.status == Status::Left) {
            self.removal = None;
            self.outputs.push_back(RemovalOutput::Event(NodeEvent::Removed { member }));
            return;
        }
        if !record.is_some_and(|m| m.status == Status::Dead && m.leaving()) {
            self.removal = None;
            let reason = "the member came back: it re-syncs and serves again".to_string();
            let event = NodeEvent::RemovalStopped { member, reason };
            self.outputs.push_back(RemovalOutput::Event(event));
            return;
        }
        if r.ask_at > now {
            return;
        }
        if self.finish_if_done(env) {
            return;
        }
        let Some(r) = self.removal.as_mut() else { return };
        r.ask_at = now.saturating_add(ASK_AGAIN_MS);
        let (req, done, force) = (r.req, r.done.clone(), r.force);
        let owners: BTreeSet<NodeId> =
            plan(env, member, force).into_iter().flat_map(|(o, _)| o).collect();
        let me = env.me();
        let ask: Vec<NodeId> =
            owners.into_iter().filter(|o| !done.contains(o) && env.up(*o)).collect();
        for owner in ask {
            if owner == me {
                self.on_hand_off(env, me, req, member);
            } else {
                let ask = ReplicaMessage::RemovalHandOff { req, member };
                self.outputs.push_back(RemovalOutput::Send(owner, ask));
            }
        }
        self.report(env);
    }

    /// Announces the member `Left` once enough owners of each of its ranges handed off.
    fn finish_if_done<S: Store>(&mut self, env: &Env<'_, S>) -> bool {
        let Some(r) = self.removal.as_ref() else { return false };
        let member = r.member;
        let done = plan(env, member, r.force)
            .iter()
            .all(|(others, need)| others.iter().filter(|o| r.done.contains(o)).count() >= *need);
        if !done {
            return false;
        }
        self.removal = None;
        self.outputs.push_back(RemovalOutput::MarkRemoved(member));
        self.outputs.push_back(RemovalOutput::Event(NodeEvent::Removed { member }));
        true
    }

    /// An owner answered: it handed off the ranges it shares with `member`, or failed to.
    pub(super) fn on_handed_off<S: Store>(
        &mut self,
        env: &Env<'_, S>,
        from: NodeId,
        req: u64,
        member: NodeId,
        ok: bool,
    ) {
        let Some(r) = self.removal.as_mut().filter(|r| r.req == req && r.member == member) else {
            return;
        };
        if ok && r.done.insert(from) {
            self.report(env);
            self.finish_if_done(env);
        }
    }

    /// `from` runs the removal of `member` and asks this node to hand off the ranges it
    /// shares with it.
    pub(super) fn on_hand_off<S: Store>(
        &mut self,
        env: &Env<'_, S>,
        from: NodeId,
        req: u64,
        member: NodeId,
    ) {
        let announced = (env.membership.member(member))
            .is_some_and(|m| m.status == Status::Dead && m.leaving());
        if !announced {
            // Not heard yet (or the member came back): the asker asks again.
            self.answer(env, from, req, member, false);
            return;
        }
        if let Some(d) = self.donation.as_mut() {
            if d.member == member && d.askers.len() < MAX_ASKERS {
                d.askers.retain(|(a, _)| *a != from);
                d.askers.push((from, req));
            } else {
                self.answer(env, from, req, member, false);
            }
            return;
        }
        let jobs = jobs(env, member);
        if jobs.is_empty() {
            self.answer(env, from, req, member, true);
            return;
        }
        let total = jobs.len();
        self.donation =
            Some(Donation { member, askers: vec![(from, req)], total, done: 0, failed: false });
        self.outputs.push_back(RemovalOutput::HandOff(jobs));
    }

    /// Books the end of a removal's hand-off session; answers the askers after the last.
    pub(super) fn session_ended<S: Store>(&mut self, env: &Env<'_, S>, ok: bool) {
        let Some(d) = self.donation.as_mut() else { return };
        d.done += 1;
        d.failed |= !ok;
        if d.done < d.total {
            return;
        }
        let Some(d) = self.donation.take() else { return };
        for (asker, req) in d.askers {
            self.answer(env, asker, req, d.member, !d.failed);
        }
    }

    fn answer<S: Store>(
        &mut self,
        env: &Env<'_, S>,
        to: NodeId,
        req: u64,
        member: NodeId,
        ok: bool,
    ) {
        if to == env.me() {
            self.on_handed_off(env, to, req, member, ok);
        } else {
            let answer = ReplicaMessage::RemovalHandedOff { req, member, ok };
            self.outputs.push_back(RemovalOutput::Send(to, answer));
        }
    }
}

/// For each range `member` owns: its other owners, and how many of them must hand it
/// off (see the module docs).
fn plan<S: Store>(env: &Env<'_, S>, member: NodeId, force: bool) -> Vec<(Vec<NodeId>, usize)> {
    // Under every layout a collection uses.
    let collections = env.replica.store().collections().unwrap_or_default();
    (env.view.signatures(&collections).into_keys())
        .flat_map(|signature| env.view.placement_by(&signature).intervals())
        .filter(|(_, owners)| owners.contains(&member))
        .map(|(_, owners)| {
            let size = owners.len();
            let others: Vec<NodeId> = owners.into_iter().filter(|o| *o != member).collect();
            let mut need = covering(size).min(others.len());
            if force {
                need = need.min(others.iter().filter(|o| env.up(**o)).count());
            }
            (others, need)
        })
        .collect()
}

/// One session per (collection, interval this node shares with `member`, node that owns
/// the interval once `member` is gone and is up).
fn jobs<S: Store>(env: &Env<'_, S>, member: NodeId) -> Vec<(String, Interval, NodeId)> {
    let me = env.me();
    let heirs_table = RingTable::new(
        env.membership
            .members()
            .filter(|m| m.owns() && m.id != member)
            .map(|m| (m.id, m.tokens.as_slice())),
    );
    let collections = env.replica.store().collections().unwrap_or_default();
    let mut jobs = Vec::new();
    for (signature, collections) in env.view.signatures(&collections) {
        let placement = env.view.placement_by(&signature);
        for (interval, owners) in placement.intervals() {
            if !owners.contains(&me) || !owners.contains(&member) {
                continue;
            }
            let heirs: Vec<NodeId> = (placement.list_on(&heirs_table, interval.end))
                .into_iter()
                .filter(|h| *h != me && env.up(*h))
                .collect();
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
