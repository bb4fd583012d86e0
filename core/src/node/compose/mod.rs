//! How the node composes its machines: for each machine that owns its state — the
//! coordinator ([`super::coordinator`]), the watches ([`super::watch`]), the sync
//! sessions ([`super::sessions`]), the anti-entropy rounds ([`super::antientropy`]), the
//! scans ([`super::scan`]), a graceful leave ([`super::leave`]), the removals of dead
//! members ([`super::remove`]), migration ([`super::migrate`]), the moves of collections
//! between layouts ([`super::moves`]) — the one place
//! that hands it an input with what it reads of the rest of the node (its `Env`), and
//! moves what it emits to where it goes: messages and answers to the node's outputs,
//! in the order the machine produced them, and ends of sessions to the part of the
//! node that queued them.
//!
//! One file for each group of machines: this one the client-facing ones (the watches,
//! the scans, the coordinator), [`rounds`] the sync sessions and anti-entropy rounds,
//! [`handoffs`] the leave and the removals, [`ring`] migration and the moves.

mod handoffs;
mod ring;
mod rounds;

use super::{
    coordinator::{self, Coordinator},
    scan::{self, ScanOutput, Scans},
    watch::{self, WatchOutput, Watches},
    ClientId, Node, NodeEvent, Output,
};
use crate::{
    entry::NodeId,
    proto::{client::Op, Message, SyncBody, WatchMessage},
    store::Store,
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
}
