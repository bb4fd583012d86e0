//! How the node composes its machines: for each machine that owns its state — the
//! coordinator ([`super::coordinator`]), the watches ([`super::watch`]), the sync
//! sessions ([`super::sessions`]), the scans ([`super::scan`]), a graceful leave
//! ([`super::leave`]), the removals of dead members ([`super::remove`]) — the one place
//! that hands it an input with what it reads of the rest of the node (its `Env`), and
//! moves what it emits to where it goes: messages and answers to the node's outputs,
//! in the order the machine produced them, and ends of sessions to the part of the
//! node that queued them.

use super::{
    antientropy::HandoffProgress,
    coordinator::{self, Coordinator},
    leave::{self, Leave, LeaveOutput},
    migrate::{self, Migration, MigrationOutput},
    moves::{self, Moves, MovesOutput},
    remove::{RemovalOutput, RemovalProgress, Removals, RemoveError},
    scan::{self, ScanOutput, Scans},
    sessions::{self, Purpose, SessionOutput, Sessions},
    watch::{self, WatchOutput, Watches},
    ClientId, Node, NodeEvent, Output,
};
use crate::{
    entry::NodeId,
    proto::{client::Op, Message, SyncBody, WatchMessage},
    store::{Store, StoreError},
    Millis,
};

impl<S: Store> Node<S> {
    /// The watch state: counts and counters.
    pub fn watches(&self) -> &Watches {
        &self.watch
    }

    /// A client connection closed: drops its watches (unsubscribing at every source)
    /// and its sync sessions. Drivers call it for every connection that ends.
    pub fn client_gone(&mut self, now: Millis, client: ClientId) {
        let (watch, mut env) = self.watch_parts();
        watch.client_gone(&mut env, now, client);
        self.collect_watches();
    }

    /// Ends every watch of `client`, each with an [`ErrorCode::Unavailable`] error
    /// carrying the watch's id and `reason`: a driver calls it when the client reads
    /// its events more slowly than they come (its connection's unsent output passed a
    /// bound), before it would have to disconnect the client. The client re-syncs its
    /// copy and watches again, as after any lag. Returns how many watches ended.
    ///
    /// [`ErrorCode::Unavailable`]: crate::proto::client::ErrorCode::Unavailable
    pub fn end_client_watches(&mut self, client: ClientId, reason: &str) -> usize {
        let ended = self.watch.end_client_watches(&self.membership, client, reason);
        self.collect_watches();
        ended
    }

    /// A watch, unwatch or client sync request (from `requests.rs`).
    pub(super) fn start_watch(&mut self, now: Millis, client: ClientId, id: u64, op: Op) {
        let runs = match &op {
            Op::Sync { msg } => match &msg.body {
                SyncBody::Begin { collection, .. } => {
                    // The owners under the layout the collection uses hold it (while it
                    // moves, the next layout's may not have it yet).
                    let placement = self.view.placement_for(collection).now;
                    let table = &self.view.table;
                    watch::replicated_runs(table, self.id(), |p| placement.list_on(table, p))
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let (watch, mut env) = self.watch_parts();
        watch.start(&mut env, now, client, id, op, runs);
        self.collect_watches();
    }

    /// A watch message from node `from`.
    pub(super) fn handle_watch(&mut self, now: Millis, from: NodeId, msg: WatchMessage) {
        let (watch, mut env) = self.watch_parts();
        watch.handle_peer(&mut env, now, from, msg);
        self.collect_watches();
    }

    /// Routes the changes the replica applied to the watches; after every input.
    pub(super) fn pump_watches(&mut self, now: Millis) {
        let (watch, mut env) = self.watch_parts();
        watch.pump(&mut env, now);
        self.collect_watches();
    }

    pub(super) fn tick_watches(&mut self, now: Millis) {
        let (watch, mut env) = self.watch_parts();
        watch.tick(&mut env, now);
        self.collect_watches();
    }

    /// The watch machine and what it reads of the rest of the node.
    fn watch_parts(&mut self) -> (&mut Watches, watch::Env<'_, S>) {
        let env = watch::Env {
            membership: &self.membership,
            replica: &mut self.replica,
            clock: &mut self.clock,
            rng: &mut self.rng,
            view_digest: self.view.digest,
        };
        (&mut self.watch, env)
    }

    /// Moves what the watch machine wants sent to the node's outputs, in its order.
    pub(super) fn collect_watches(&mut self) {
        while let Some(out) = self.watch.poll_output() {
            let out = self.watch_output(out);
            self.outputs.push_back(out);
        }
    }

    pub(super) fn watch_output(&self, out: WatchOutput) -> Output {
        match out {
            WatchOutput::Send { to, msg } => {
                Output::Send { to, addr: self.addr_of(to), msg: Message::Watch(msg) }
            }
            WatchOutput::Reply { client, resp } => Output::Reply { client, resp },
        }
    }

    /// The sync sessions: running, queued, counters.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The session machine and what it reads of the rest of the node at `now`.
    pub(super) fn session_parts(&mut self, now: Millis) -> (&mut Sessions, sessions::Env<'_, S>) {
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
    pub(super) fn collect_sessions(&mut self, now: Millis) {
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

    /// A scan request (from `requests.rs`).
    pub(super) fn start_scan(&mut self, now: Millis, client: ClientId, id: u64, op: Op) {
        let (scans, mut env) = self.scan_parts();
        scans.start(&mut env, now, client, id, op);
        self.collect_scans();
    }

    /// The scan machine and what it reads of the rest of the node.
    pub(super) fn scan_parts(&mut self) -> (&mut Scans, scan::Env<'_, S>) {
        let env = scan::Env {
            awaiting_cluster: self.awaiting_cluster(),
            view: &self.view,
            membership: &self.membership,
            replica: &self.replica,
            ids: &mut self.ids,
        };
        (&mut self.scans, env)
    }

    /// Moves what the scan machine emitted to the node's outputs, in its order.
    pub(super) fn collect_scans(&mut self) {
        while let Some(out) = self.scans.poll_output() {
            match out {
                ScanOutput::Send { to, msg } => self.send(to, Message::Replica(msg)),
                ScanOutput::Reply { client, resp } => {
                    self.outputs.push_back(Output::Reply { client, resp })
                }
                ScanOutput::StoreFailed(e) => {
                    self.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e)))
                }
            }
        }
    }

    /// The coordinator and what it uses of the rest of the node.
    pub(super) fn coordinator_parts(&mut self) -> (&mut Coordinator, coordinator::Env<'_, S>) {
        let env = coordinator::Env {
            awaiting_cluster: self.awaiting_cluster(),
            skew: self.clocks.skew(),
            wall_ms: self.wall_ms,
            view: &self.view,
            membership: &self.membership,
            replica: &mut self.replica,
            clock: &mut self.clock,
            ids: &mut self.ids,
            durability: &mut self.durability,
            outputs: &mut self.outputs,
            config: &self.config,
        };
        (&mut self.coordinator, env)
    }

    /// Answers the requests whose deadline passed, and keeps hints for the replicas
    /// that did not acknowledge a write in time.
    pub(super) fn expire_requests(&mut self, now: Millis) {
        let (c, mut env) = self.coordinator_parts();
        c.widen_due(&mut env, now);
        let hints = c.expire(&mut env, now);
        for (target, hint) in hints {
            self.hints.add(now, target, hint);
        }
    }

    /// Leaves the cluster gracefully: announces it, hands every range off to its next
    /// owners, announces `Left` (see [`super::leave`]). Calling it again does nothing.
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
    pub(super) fn tick_leave(&mut self, now: Millis) {
        let (l, env) = self.leave_parts();
        l.tick(&env, now);
        self.collect_leave(now);
    }

    /// A hand-off session of the leave ended.
    pub(super) fn on_leave_session_end(&mut self, now: Millis, ok: bool, entries: u64) {
        let (l, env) = self.leave_parts();
        l.session_ended(&env, now, ok, entries);
        self.collect_leave(now);
    }

    /// The leave and what it reads of the rest of the node.
    fn leave_parts(&mut self) -> (&mut Leave, leave::Env<'_, S>) {
        let env = leave::Env {
            membership: &self.membership,
            view: &self.view,
            replica: &self.replica,
            ring_delay_ms: self.config.ring_delay_ms,
        };
        (&mut self.leave, env)
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
                    self.queue_leave_sessions(jobs);
                    self.fill_sessions(now);
                }
                LeaveOutput::Progress(p) => {
                    self.outputs.push_back(Output::Event(NodeEvent::Leaving(p)))
                }
            }
        }
    }

    /// Starts removing `member`, which the cluster declared dead, for good (see
    /// [`super::remove`]); resumes the removal if the member is announced as being
    /// removed already. `force` finishes even while other owners of its ranges are down.
    pub fn remove_member(
        &mut self,
        now: Millis,
        member: NodeId,
        force: bool,
    ) -> Result<(), RemoveError> {
        let (removals, ids) = (&mut self.removals, &mut self.ids);
        let env = leave::Env {
            membership: &self.membership,
            view: &self.view,
            replica: &self.replica,
            ring_delay_ms: self.config.ring_delay_ms,
        };
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
        let env = leave::Env {
            membership: &self.membership,
            view: &self.view,
            replica: &self.replica,
            ring_delay_ms: self.config.ring_delay_ms,
        };
        self.removals.progress(&env)
    }

    /// The removal's timers: ask the owners (again), notice the member came back.
    pub(super) fn tick_removal(&mut self, now: Millis) {
        let (r, env) = self.removal_parts();
        r.tick(&env, now);
        self.collect_removals(now);
    }

    /// A hand-off session for a removal ended.
    pub(super) fn on_removal_session_end(&mut self, now: Millis, ok: bool) {
        let (r, env) = self.removal_parts();
        r.session_ended(&env, ok);
        self.collect_removals(now);
    }

    /// The removals and what they read of the rest of the node.
    pub(super) fn removal_parts(&mut self) -> (&mut Removals, leave::Env<'_, S>) {
        let env = leave::Env {
            membership: &self.membership,
            view: &self.view,
            replica: &self.replica,
            ring_delay_ms: self.config.ring_delay_ms,
        };
        (&mut self.removals, env)
    }

    /// Does what the removals asked, in their order.
    pub(super) fn collect_removals(&mut self, now: Millis) {
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
                    self.queue_removal_sessions(jobs);
                    self.fill_sessions(now);
                }
                RemovalOutput::Event(e) => self.outputs.push_back(Output::Event(e)),
            }
        }
    }
}

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
    pub(super) fn tick_migration(&mut self, now: Millis) {
        let (m, mut env) = self.migration_parts();
        m.tick_handoff(&mut env, now);
        self.collect_migration(now);
        let (m, mut env) = self.migration_parts();
        m.tick_decision(&mut env, now);
        self.collect_migration(now);
    }

    /// A peer asks for this node's primary load.
    pub(super) fn on_load_query(&mut self, now: Millis, from: NodeId, req: u64) {
        let (m, env) = self.migration_parts();
        m.on_load_query(&env, now, from, req);
        self.collect_migration(now);
    }

    /// A peer answered this node's load question.
    pub(super) fn on_load_reply(&mut self, now: Millis, from: NodeId, req: u64, n: Option<u64>) {
        let (m, mut env) = self.migration_parts();
        m.on_load_reply(&mut env, now, from, req, n);
        self.collect_migration(now);
    }

    /// A hand-off session of a token move ended.
    pub(super) fn on_migration_session_end(&mut self, now: Millis, ok: bool) {
        let (m, mut env) = self.migration_parts();
        m.session_ended(&mut env, now, ok);
        self.collect_migration(now);
    }

    /// Migration and what it reads of the rest of the node.
    fn migration_parts(&mut self) -> (&mut Migration, migrate::Env<'_, S>) {
        let busy = self.leave.asked() || self.resync_pending || self.anti_entropy.resyncing();
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
                        self.anti_entropy_due_now();
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
    pub(super) fn note_layouts_seen(&mut self) {
        self.moves.note_layouts_seen(&self.view.catalogue, self.wall_ms);
    }

    /// Moves' timers: this member's pulls, and the driver's look.
    pub(super) fn tick_moves(&mut self, now: Millis) {
        let (m, mut env) = self.moves_parts();
        m.tick(&mut env, now);
        self.collect_moves(now);
    }

    /// The driver asks how far this member knows a move got.
    pub(super) fn on_move_query(
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
    pub(super) fn on_move_session_end(&mut self, now: Millis, collection: &str, ok: bool) {
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
                    super::requests::dispatch(self, now, moves::INTERNAL_CLIENT, req)
                }
                MovesOutput::Event(e) => self.outputs.push_back(Output::Event(e)),
            }
        }
    }
}
