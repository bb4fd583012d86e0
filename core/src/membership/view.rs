//! The view: merging records into it, and what a node does about claims concerning
//! itself.
//!
//! A record about another member is merged by the precedence rules
//! ([`super::member`]); a change is announced as an event, queued for piggybacking, and
//! starts or stops the member's suspicion timer.
//!
//! A record about *this* node is never merged. If it does not lose to the node's own
//! record, it is a claim the node must answer, with an incarnation above both:
//!
//! - `Suspect`, or an old `Alive`/`Suspect` record of a previous life (a restart with
//!   fresh state begins at incarnation 0): refute, keeping the current status;
//! - `Dead` or `Left` (while running), or `Syncing` while the node thinks it is `Alive`
//!   (someone readmitted it after a death it never heard of): announce `Syncing`, emit
//!   [`MembershipEvent::MustResync`], and drop this node's own suspicions and death
//!   verdicts about others — they were formed while it was cut off — then re-learn the
//!   view with a push-pull to the node that told it;
//! - anything, while this node has left: re-announce `Left` above it.

use super::{
    swim::Suspicion, Member, MemberState, Membership, MembershipEvent, MembershipOutput, Status,
};
use crate::{Millis, NodeId};

impl Membership {
    /// Merges a record about another member; returns whether the view changed.
    pub(super) fn merge(&mut self, now: Millis, update: &Member) -> bool {
        if update.id == self.id {
            return false;
        }
        let before = match self.view.get_mut(&update.id) {
            None => {
                if self.view.len() >= self.config.max_members {
                    self.stats.rejected_records += 1;
                    return false;
                }
                self.view.insert(update.id, MemberState::new(update.clone()));
                self.event(MembershipEvent::MemberJoined { id: update.id });
                None
            }
            Some(state) => {
                let before = (state.record().status, state.record().incarnation);
                if !state.apply(update) {
                    return false;
                }
                Some(before)
            }
        };
        self.after_change(now, update.id, before);
        self.broadcasts.push(update.id);
        true
    }

    /// Records this node's own verdict (`Suspect` or `Dead`) about a member, at the
    /// member's current incarnation.
    pub(super) fn declare(&mut self, now: Millis, id: NodeId, status: Status) {
        let Some(record) = self.view.get(&id).map(|s| s.record().clone()) else { return };
        let incarnation = record.incarnation;
        self.merge(now, &record.with(status, incarnation));
    }

    /// Events, suspicion timer and probe list after the record of `id` changed from
    /// `before` (`None`: newly learned).
    fn after_change(&mut self, now: Millis, id: NodeId, before: Option<(Status, u64)>) {
        let Some(after) = self.view.get(&id).map(|s| (s.record().status, s.record().incarnation))
        else {
            return;
        };
        if let Some((from, _)) = before {
            if from != after.0 {
                self.event(MembershipEvent::StatusChanged { id, from, to: after.0 });
            }
        }
        if after.0 == Status::Suspect {
            if before != Some(after) {
                let timeout = self.suspicion_timeout();
                self.suspicions.insert(id, Suspicion::until(now.saturating_add(timeout)));
            }
        } else {
            self.suspicions.remove(&id);
        }
        if after.0.is_probed() && !before.is_some_and(|(s, _)| s.is_probed()) {
            self.add_probe_target(id);
        }
    }

    /// Answers a record about this node that does not lose to its own; returns whether
    /// the node learned it had been declared down (and must re-sync).
    pub(super) fn claim_about_me(&mut self, now: Millis, claim: &Member) -> bool {
        let me = self.me().clone();
        if !claim.supersedes(&me) {
            return false;
        }
        // Claims at or above the largest incarnation were refused on arrival, so the
        // refutation is at most `MAX_INCARNATION`: every member accepts it.
        let Some(incarnation) = me.incarnation.max(claim.incarnation).checked_add(1) else {
            return false;
        };
        if incarnation > super::MAX_INCARNATION {
            return false;
        }
        self.stats.refutations += 1;
        let declared_down = claim.status.is_down()
            || (claim.status == Status::Syncing && me.status == Status::Alive);
        if me.status == Status::Left {
            self.set_me(me.with(Status::Left, incarnation));
            return false;
        }
        // A joining node that hears of an earlier life of its id that owned tokens and did
        // not leave restarted without its data: it is an owner, re-syncing.
        let owner_before = me.joining && !claim.joining && claim.status != Status::Left;
        if !declared_down || owner_before {
            let joining = me.joining && !owner_before;
            let status = if owner_before { Status::Syncing } else { me.status };
            self.set_me(Member { joining, ..me.with(status, incarnation) });
            return false;
        }
        self.set_me(me.with(Status::Syncing, incarnation));
        if me.status == Status::Alive {
            self.stats.resyncs += 1;
            self.event(MembershipEvent::MustResync);
        }
        self.forget_own_verdicts(now);
        true
    }

    /// Replaces this node's own record, announcing a status change.
    pub(super) fn set_me(&mut self, record: Member) {
        let from = self.me().status;
        let to = record.status;
        self.view.insert(self.id, MemberState::new(record));
        if from != to {
            self.event(MembershipEvent::StatusChanged { id: self.id, from, to });
        }
    }

    /// After learning it was cut off: every member this node holds `Suspect` or `Dead`
    /// goes back to `Alive` at its incarnation, to be re-learned from the cluster.
    fn forget_own_verdicts(&mut self, now: Millis) {
        let stale: Vec<NodeId> = self
            .view
            .iter()
            .filter(|&(&id, s)| {
                id != self.id && matches!(s.record().status, Status::Suspect | Status::Dead)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            let Some(state) = self.view.get_mut(&id) else { continue };
            let before = (state.record().status, state.record().incarnation);
            state.reset_alive();
            self.after_change(now, id, Some(before));
        }
    }

    /// Queues an event for the host.
    pub(super) fn event(&mut self, event: MembershipEvent) {
        self.outputs.push_back(MembershipOutput::Event(event));
    }
}
