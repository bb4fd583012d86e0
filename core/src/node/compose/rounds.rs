//! Where the node meets the sync sessions ([`super::super::sessions`]) and the
//! anti-entropy rounds that queue most of them ([`super::super::antientropy`]): the
//! sessions' ends go back to whoever queued them, and a round learns whether sessions
//! still run.

use super::super::{
    antientropy::{self, AntiEntropy, RoundOutput},
    sessions::{self, Job, Purpose, SessionOutput, Sessions},
    Node, NodeEvent, Output,
};
use crate::{
    entry::NodeId,
    hash::Interval,
    proto::{Message, SyncBody, SyncMessage},
    store::Store,
    sync::SyncConfig,
    Millis,
};

impl<S: Store> Node<S> {
    /// The sync sessions: running, queued, counters.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The session machine and what it reads of the rest of the node at `now`.
    pub(in crate::node) fn session_parts(
        &mut self,
        now: Millis,
    ) -> (&mut Sessions, sessions::Env<'_, S>) {
        let config = self.sync_config(now);
        let env = sessions::Env {
            membership: &self.membership,
            replica: &mut self.replica,
            clock: &mut self.clock,
            rng: &mut self.rng,
            config,
        };
        (&mut self.sessions, env)
    }

    /// Moves what the session machine emitted: messages to the node's outputs, ends of
    /// sessions to the part of the node that queued them, in the order they came.
    pub(in crate::node) fn collect_sessions(&mut self, now: Millis) {
        while let Some(out) = self.sessions.poll_output() {
            match out {
                SessionOutput::Send { to, msg } => self.send(to, Message::Sync(msg)),
                SessionOutput::Ended { job, ok, entries } => {
                    self.on_session_end(now, job, ok, entries)
                }
                SessionOutput::Failed { peer, reason } => {
                    let event = NodeEvent::SyncFailed { peer, reason };
                    self.outputs.push_back(Output::Event(event));
                }
            }
        }
    }

    /// Sync settings: paged messages, and collected tombstones not taken back.
    fn sync_config(&self, now: Millis) -> SyncConfig {
        let collected_before = now.checked_sub(self.config.tombstone_grace_ms);
        let limits = Some(self.entry_limits(now));
        SyncConfig { collected_before, limits, ..SyncConfig::default() }
    }

    /// A session this node initiated ended for good: its end goes to the part of the
    /// node that queued it.
    fn on_session_end(&mut self, now: Millis, job: Job, ok: bool, entries: u64) {
        match job.purpose {
            Purpose::Sync | Purpose::Clean(_) => {
                let (ae, mut env) = self.round_parts();
                ae.session_ended(&mut env, job, ok, entries);
                self.collect_rounds(now);
            }
            Purpose::Migrate => self.on_migration_session_end(now, ok),
            Purpose::Leave => self.on_leave_session_end(now, ok, entries),
            Purpose::Remove => self.on_removal_session_end(now, ok),
            Purpose::Move => self.on_move_session_end(now, &job.collection, ok),
        }
    }

    /// Queues, ahead of the round's sessions, the hand-off sessions of a token move
    /// (each ahead of the one before: the last runs first).
    pub(in crate::node) fn queue_migration_sessions(
        &mut self,
        jobs: Vec<(String, Interval, NodeId)>,
    ) {
        for (collection, interval, peer) in jobs {
            self.sessions.push_front(Job::new(&collection, interval, peer, Purpose::Migrate));
        }
    }

    /// Queues hand-off sessions ahead of everything else (a graceful leave, `Leave`, or
    /// the removal of a dead member, `Remove`), in their order.
    pub(in crate::node) fn queue_handoff_sessions(
        &mut self,
        jobs: Vec<(String, Interval, NodeId)>,
        purpose: Purpose,
    ) {
        for (collection, interval, peer) in jobs.into_iter().rev() {
            self.sessions.push_front(Job::new(&collection, interval, peer, purpose));
        }
    }

    /// Queues a session after those queued.
    pub(in crate::node) fn queue_session(
        &mut self,
        collection: &str,
        interval: Interval,
        peer: NodeId,
        purpose: Purpose,
    ) {
        self.sessions.push_back(Job::new(collection, interval, peer, purpose));
    }

    /// Starts queued sessions, up to the limit; ends the round if nothing is left.
    pub(in crate::node) fn fill_sessions(&mut self, now: Millis) {
        let (sessions, mut env) = self.session_parts(now);
        sessions.fill(&mut env, now);
        self.collect_sessions(now);
        let (ae, mut env) = self.round_parts();
        ae.finish_round_if_done(&mut env, now);
        self.collect_rounds(now);
    }

    /// Abandons silent sessions and sessions with peers that stopped serving (suspected,
    /// dead, left); runs a hand-off round's timers; starts a due round.
    pub(in crate::node) fn tick_sync(&mut self, now: Millis) {
        let (sessions, mut env) = self.session_parts(now);
        sessions.tick(&mut env, now);
        self.collect_sessions(now);
        let (ae, mut env) = self.round_parts();
        ae.drop_down_owners(&mut env);
        self.collect_rounds(now);
        let (ae, mut env) = self.round_parts();
        ae.tick_discovery(&mut env, now);
        self.collect_rounds(now);
        let (ae, mut env) = self.round_parts();
        let due = ae.due(&mut env, now);
        self.collect_rounds(now);
        if let Some(resync) = due {
            let (ae, mut env) = self.round_parts();
            ae.start_round(&mut env, now, resync);
            self.collect_rounds(now);
        }
    }

    /// An owner answered a hand-off round's question: which collections exist.
    pub(in crate::node) fn on_collection_list(
        &mut self,
        now: Millis,
        from: NodeId,
        req: u64,
        names: Vec<String>,
    ) {
        let (ae, mut env) = self.round_parts();
        ae.on_collection_list(&mut env, from, req, names);
        self.collect_rounds(now);
    }

    /// Handles a sync message from `from`.
    pub(in crate::node) fn handle_sync(&mut self, now: Millis, from: NodeId, msg: SyncMessage) {
        let key = (from, msg.session);
        if let SyncBody::Begin { range, collection, .. } = &msg.body {
            if !self.may_push(from, collection, *range) {
                self.peer_stats.refused_sessions += 1;
                let reason = format!(
                    "node {from} neither replicates {range} nor hands it to node {}",
                    self.id()
                );
                let body = SyncBody::Abort { reason };
                self.send(from, Message::Sync(SyncMessage { session: key.1, body }));
                return;
            }
            let range = *range;
            let owners = self.view.placement_for(collection).list_on(&self.view.table, range.end);
            // An owner handing a range to this node, which does not own it (yet): a token
            // move or a leave about to be announced.
            let incoming = owners.contains(&from) && !owners.contains(&self.id());
            let (sessions, mut env) = self.session_parts(now);
            let taken = sessions.accept(&mut env, now, from, msg);
            self.collect_sessions(now);
            if !taken {
                self.peer_stats.refused_sessions += 1;
            } else if incoming {
                self.anti_entropy.note_incoming(range, now);
            }
            return;
        }
        let (sessions, mut env) = self.session_parts(now);
        let initiator = sessions.handle(&mut env, now, from, msg);
        self.collect_sessions(now);
        if initiator {
            self.fill_sessions(now);
        }
    }

    /// The rounds and what they read of the rest of the node.
    fn round_parts(&mut self) -> (&mut AntiEntropy, antientropy::Env<'_, S>) {
        let env = antientropy::Env {
            membership: &self.membership,
            view: &self.view,
            replica: &mut self.replica,
            rng: &mut self.rng,
            ids: &mut self.ids,
            config: &self.config,
            last_full_sync_ms: self.state.last_full_sync_ms,
            join_requested: self.join_requested,
            sessions_busy: self.sessions.busy(),
        };
        (&mut self.anti_entropy, env)
    }

    /// Does what the rounds asked, in their order (a `Fill` comes last in what one input
    /// to them emits, so whatever it sets off follows everything before it).
    fn collect_rounds(&mut self, now: Millis) {
        while let Some(out) = self.anti_entropy.poll_output() {
            match out {
                RoundOutput::AbandonRound(reason) => {
                    let round = |p: Purpose| matches!(p, Purpose::Sync | Purpose::Clean(_));
                    self.sessions.abandon(round, reason);
                    self.collect_sessions(now);
                }
                RoundOutput::Introduce(peer) => {
                    self.membership.introduce_to(peer);
                    self.collect_membership();
                }
                RoundOutput::Send(to, msg) => self.send(to, Message::Replica(msg)),
                RoundOutput::BeginRound(jobs) => {
                    // A migration's, a leave's, a removal's or a move's hand-off outlives
                    // rounds.
                    let outlives = |p| {
                        matches!(
                            p,
                            Purpose::Migrate | Purpose::Leave | Purpose::Remove | Purpose::Move
                        )
                    };
                    self.sessions.begin_round(outlives, jobs);
                }
                RoundOutput::Queue(jobs) => {
                    jobs.into_iter().for_each(|j| self.sessions.push_back(j))
                }
                RoundOutput::Fill => self.fill_sessions(now),
                RoundOutput::EndRound => self.sessions.end_round(),
                RoundOutput::FullSync(started_at) => {
                    self.state.last_full_sync_ms = Some(started_at);
                    self.outputs.push_back(Output::Persist(self.state.clone()));
                }
                RoundOutput::Resynced => {
                    self.membership.resynced(now);
                    self.collect_membership();
                }
                RoundOutput::Event(e) => self.outputs.push_back(Output::Event(e)),
            }
        }
    }
}
