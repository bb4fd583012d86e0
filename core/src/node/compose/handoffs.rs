//! Where the node meets the parts that hand ranges off for a change of members: a
//! graceful leave ([`super::super::leave`]) and the removals of dead members
//! ([`super::super::remove`]).

use super::super::{
    antientropy::HandoffProgress,
    ids::RequestIds,
    leave::{self, Leave, LeaveOutput},
    remove::{RemovalOutput, RemovalProgress, Removals, RemoveError},
    sessions::Purpose,
    Node, NodeEvent, Output,
};
use crate::{entry::NodeId, proto::Message, store::Store, Millis};

impl<S: Store> Node<S> {
    /// Leaves the cluster gracefully: announces it, hands every range off to its next
    /// owners, announces `Left` (see [`crate::node::leave`]). Calling it again does nothing.
    pub fn leave(&mut self, now: Millis) {
        let (l, env) = self.leave_parts();
        l.leave(&env, now);
        self.collect_leave(now);
    }

    /// Whether this node has left: it announced `Left` after its hand-off, and waited
    /// `ring_delay_ms` since.
    pub fn left(&self) -> bool {
        self.leave.left(&self.membership)
    }

    /// The progress of a graceful leave, once [`Node::leave`] was called.
    pub fn leave_progress(&self) -> Option<HandoffProgress> {
        self.leave.progress()
    }

    /// Whether the hand-off of a graceful leave reached every new owner.
    pub fn handed_off(&self) -> bool {
        self.leave.handed_off()
    }

    /// The leave's timers: its hand-off, letting the node go.
    pub(in crate::node) fn tick_leave(&mut self, now: Millis) {
        let (l, env) = self.leave_parts();
        l.tick(&env, now);
        self.collect_leave(now);
    }

    /// A hand-off session of the leave ended.
    pub(in crate::node) fn on_leave_session_end(&mut self, now: Millis, ok: bool, entries: u64) {
        let (l, env) = self.leave_parts();
        l.session_ended(&env, now, ok, entries);
        self.collect_leave(now);
    }

    /// The leave and what it reads of the rest of the node.
    fn leave_parts(&mut self) -> (&mut Leave, leave::Env<'_, S>) {
        let (leave, _, _, env) = self.handoff_parts();
        (leave, env)
    }

    /// The leave, the removals and the request numbers, with what both machines read of
    /// the rest of the node (one `Env` type: see [`leave::Env`]).
    fn handoff_parts(&mut self) -> (&mut Leave, &mut Removals, &mut RequestIds, leave::Env<'_, S>) {
        let env = leave::Env {
            membership: &self.membership,
            view: &self.view,
            replica: &self.replica,
            ring_delay_ms: self.config.ring_delay_ms,
        };
        (&mut self.leave, &mut self.removals, &mut self.ids, env)
    }

    /// What the leave and the removals read, for a question that changes nothing.
    fn handoff_env(&self) -> leave::Env<'_, S> {
        leave::Env {
            membership: &self.membership,
            view: &self.view,
            replica: &self.replica,
            ring_delay_ms: self.config.ring_delay_ms,
        }
    }

    /// Does what the leave asked, in its order.
    fn collect_leave(&mut self, now: Millis) {
        while let Some(out) = self.leave.poll_output() {
            match out {
                LeaveOutput::AnnounceLeaving => {
                    self.membership.set_next_tokens(now, Some(Vec::new()));
                    self.collect_membership();
                }
                LeaveOutput::AnnounceLeft => {
                    self.membership.leave(now);
                    self.collect_membership();
                }
                LeaveOutput::HandOff(jobs) => {
                    self.queue_handoff_sessions(jobs, Purpose::Leave);
                    self.fill_sessions(now);
                }
                LeaveOutput::Progress(p) => {
                    self.outputs.push_back(Output::Event(NodeEvent::Leaving(p)))
                }
            }
        }
    }

    /// Starts removing `member`, which the cluster declared dead, for good (see
    /// [`crate::node::remove`]); resumes the removal if the member is announced as being
    /// removed already. `force` finishes even while other owners of its ranges are down.
    pub fn remove_member(
        &mut self,
        now: Millis,
        member: NodeId,
        force: bool,
    ) -> Result<(), RemoveError> {
        let (_, removals, ids, env) = self.handoff_parts();
        let started = removals.remove(&env, ids, now, member, force);
        self.collect_removals(now);
        if started? {
            let (r, env) = self.removal_parts();
            r.report(&env);
            self.collect_removals(now);
        }
        Ok(())
    }

    /// The removal this node runs, if any.
    pub fn removal(&self) -> Option<RemovalProgress> {
        self.removals.progress(&self.handoff_env())
    }

    /// The removal's timers: ask the owners (again), notice the member came back.
    pub(in crate::node) fn tick_removal(&mut self, now: Millis) {
        let (r, env) = self.removal_parts();
        r.tick(&env, now);
        self.collect_removals(now);
    }

    /// A hand-off session for a removal ended.
    pub(in crate::node) fn on_removal_session_end(&mut self, now: Millis, ok: bool) {
        let (r, env) = self.removal_parts();
        r.session_ended(&env, ok);
        self.collect_removals(now);
    }

    /// The removals and what they read of the rest of the node.
    pub(in crate::node) fn removal_parts(&mut self) -> (&mut Removals, leave::Env<'_, S>) {
        let (_, removals, _, env) = self.handoff_parts();
        (removals, env)
    }

    /// Does what the removals asked, in their order.
    pub(in crate::node) fn collect_removals(&mut self, now: Millis) {
        while let Some(out) = self.removals.poll_output() {
            match out {
                RemovalOutput::MarkRemoving(member) => {
                    self.membership.mark_removing(now, member);
                    self.collect_membership();
                }
                RemovalOutput::MarkRemoved(member) => {
                    self.membership.mark_removed(now, member);
                    self.collect_membership();
                }
                RemovalOutput::Send(to, msg) => self.send(to, Message::Replica(msg)),
                RemovalOutput::HandOff(jobs) => {
                    self.queue_handoff_sessions(jobs, Purpose::Remove);
                    self.fill_sessions(now);
                }
                RemovalOutput::Event(e) => self.outputs.push_back(Output::Event(e)),
            }
        }
    }
}
