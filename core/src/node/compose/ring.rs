//! Where the node meets the parts that move the ring and the layouts: migration
//! ([`super::super::migrate`]) and the moves of collections between layouts
//! ([`super::super::moves`]).

use super::super::{
    migrate::{self, Migration, MigrationOutput},
    moves::{self, Moves, MovesOutput},
    sessions::Purpose,
    Node, Output,
};
use crate::{
    entry::NodeId,
    proto::Message,
    store::{Store, StoreError},
    Millis,
};

impl<S: Store> Node<S> {
    /// Migration state and counters.
    pub fn migration(&self) -> &Migration {
        &self.migration
    }

    /// Entries (every collection, tombstones included) in the intervals this node's
    /// tokens own in its token table: what migration balances.
    pub fn primary_load(&self) -> Result<u64, StoreError> {
        let loads = migrate::token_loads(&self.view, &self.replica, self.id())?;
        Ok(loads.iter().map(|(_, n)| n).sum())
    }

    /// Migration's timers: hand an announced move off (and run that hand-off), then a
    /// due decision.
    pub(in crate::node) fn tick_migration(&mut self, now: Millis) {
        let (m, mut env) = self.migration_parts();
        m.tick_handoff(&mut env, now);
        self.collect_migration(now);
        let (m, mut env) = self.migration_parts();
        m.tick_decision(&mut env, now);
        self.collect_migration(now);
    }

    /// A peer asks for this node's primary load.
    pub(in crate::node) fn on_load_query(&mut self, now: Millis, from: NodeId, req: u64) {
        let (m, env) = self.migration_parts();
        m.on_load_query(&env, now, from, req);
        self.collect_migration(now);
    }

    /// A peer answered this node's load question.
    pub(in crate::node) fn on_load_reply(
        &mut self,
        now: Millis,
        from: NodeId,
        req: u64,
        n: Option<u64>,
    ) {
        let (m, mut env) = self.migration_parts();
        m.on_load_reply(&mut env, now, from, req, n);
        self.collect_migration(now);
    }

    /// A hand-off session of a token move ended.
    pub(in crate::node) fn on_migration_session_end(&mut self, now: Millis, ok: bool) {
        let (m, mut env) = self.migration_parts();
        m.session_ended(&mut env, now, ok);
        self.collect_migration(now);
    }

    /// Migration and what it reads of the rest of the node.
    fn migration_parts(&mut self) -> (&mut Migration, migrate::Env<'_, S>) {
        let ae = &self.anti_entropy;
        let busy = self.leave.asked() || ae.resync_pending() || ae.resyncing();
        let env = migrate::Env {
            membership: &mut self.membership,
            view: &self.view,
            replica: &self.replica,
            rng: &mut self.rng,
            ids: &mut self.ids,
            config: &self.config.migration,
            ring_delay_ms: self.config.ring_delay_ms,
            request_timeout_ms: self.config.request_timeout_ms,
            busy,
            last_full_sync_ms: self.state.last_full_sync_ms,
        };
        (&mut self.migration, env)
    }

    /// Does what migration asked, after what it announced through membership (which
    /// comes first in every input: nothing migration emits precedes an announcement).
    fn collect_migration(&mut self, now: Millis) {
        self.collect_membership();
        while let Some(out) = self.migration.poll_output() {
            match out {
                MigrationOutput::Send(to, msg) => self.send(to, Message::Replica(msg)),
                MigrationOutput::HandOff(jobs) => {
                    self.queue_migration_sessions(jobs);
                    self.fill_sessions(now);
                }
                MigrationOutput::Moved(tokens) => {
                    self.state.tokens = Some(tokens);
                    self.outputs.push_back(Output::Persist(self.state.clone()));
                }
                MigrationOutput::Event(e) => self.outputs.push_back(Output::Event(e)),
                MigrationOutput::CleanSoon => {
                    if self.anti_entropy.round_idle() {
                        self.anti_entropy.due_now();
                    }
                }
            }
        }
    }
}

impl<S: Store> Node<S> {
    /// The moves' state.
    pub fn moves(&self) -> &Moves {
        &self.moves
    }

    /// Notes when this node's copy of the catalogue first showed each move's state.
    pub(in crate::node) fn note_layouts_seen(&mut self) {
        self.moves.note_layouts_seen(&self.view.catalogue, self.wall_ms);
    }

    /// Moves' timers: this member's pulls, and the driver's look.
    pub(in crate::node) fn tick_moves(&mut self, now: Millis) {
        let (m, mut env) = self.moves_parts();
        m.tick(&mut env, now);
        self.collect_moves(now);
    }

    /// The driver asks how far this member knows a move got.
    pub(in crate::node) fn on_move_query(
        &mut self,
        now: Millis,
        from: NodeId,
        req: u64,
        c: String,
        at: u64,
    ) {
        let (m, env) = self.moves_parts();
        m.on_query(&env, now, from, req, c, at);
        self.collect_moves(now);
    }

    /// A session of one of this member's pulls ended.
    pub(in crate::node) fn on_move_session_end(&mut self, now: Millis, collection: &str, ok: bool) {
        self.moves.session_ended(now, collection, ok);
    }

    /// Moves and what they read of the rest of the node.
    fn moves_parts(&mut self) -> (&mut Moves, moves::Env<'_>) {
        let env = moves::Env {
            membership: &self.membership,
            view: &self.view,
            rng: &mut self.rng,
            ids: &mut self.ids,
            request_timeout_ms: self.config.request_timeout_ms,
        };
        (&mut self.moves, env)
    }

    /// Does what moves asked, in their order.
    fn collect_moves(&mut self, now: Millis) {
        while let Some(out) = self.moves.poll_output() {
            match out {
                MovesOutput::Send(to, msg) => self.send(to, Message::Replica(msg)),
                MovesOutput::Pull(jobs) => {
                    for (collection, interval, peer) in jobs {
                        self.queue_session(&collection, interval, peer, Purpose::Move);
                    }
                    self.fill_sessions(now);
                }
                MovesOutput::Write(req) => {
                    super::super::requests::dispatch(self, now, moves::INTERNAL_CLIENT, req)
                }
                MovesOutput::Event(e) => self.outputs.push_back(Output::Event(e)),
            }
        }
    }
}
