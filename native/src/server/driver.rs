//! The node thread: the one place a [`Node`] lives in the server.
//!
//! Everything that reaches the node — client requests from WebSocket and HTTP, frames
//! from peers, timers, operator commands — arrives as an [`Input`] on one channel. The
//! thread takes whatever has queued up (up to [`BATCH`] inputs), feeds it all to the
//! node, fires due timers, then calls [`Node::flush`] once: every write of the batch
//! shares one durable commit (group commit). Only after that commit are the batch's
//! outputs released — replies to clients, acknowledgements to coordinators — so
//! nothing is acknowledged before it is on disk.
//!
//! If a commit fails, the writes of the batch cannot be trusted to be on disk, so
//! their acknowledgements are withheld: clients get a `storage failure` error in place
//! of `Written`, write acks to peers are not sent (their coordinators time out and
//! hint), and the node is rebuilt from what the store really holds (its Merkle trees
//! must describe the disk), then re-syncs with its replicas before serving again.
//!
//! The thread is a plain OS thread, not a tokio task: commits block on fsync.

use super::{
    http::origin::MemberOrigins,
    inbox::Charge,
    outbox::{Offer, Outbox},
    peers::Peers,
    stats::Counters,
    syncer::{Release, Syncer},
};
use dhrt_core::{
    node::{hints::Hint, ClientId, Node, NodeEvent, NodeState, Output},
    proto::{
        client::{ErrorCode, Reply},
        ClientRequest, ClientResponse, Message, ReplicaMessage,
    },
    store::{Store, StoreError},
    Millis, NodeId,
};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Weak,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::oneshot;

/// Most inputs handled between two commits.
pub const BATCH: usize = 1024;
/// Hints are saved at most this often (milliseconds).
pub const HINTS_SAVE_MS: Millis = 2_000;

/// Where a client's responses go.
#[derive(Debug)]
pub enum Sink {
    /// A connection: every response (and watch event) for this client id, in batches —
    /// all of one commit's answers to a connection travel together, one wake-up of its
    /// writer rather than one per answer — counted against its output limit
    /// ([`super::outbox`]).
    Conn(Outbox),
    /// One request (HTTP): the first response, then the client is gone.
    Once(oneshot::Sender<ClientResponse>),
}

/// Something for the node thread to do.
#[derive(Debug)]
pub enum Input {
    /// A client connection opened; its responses go to the sink.
    Open {
        /// The id the connection's requests are tagged with.
        client: ClientId,
        /// Where its responses go.
        sink: Sink,
    },
    /// A client's requests, in the order it sent them: a connection hands over every
    /// frame it has already received at once (one channel message, not one each).
    Requests {
        /// The client (opened with [`Input::Open`]).
        client: ClientId,
        /// The requests.
        reqs: Vec<ClientRequest>,
    },
    /// A client connection closed.
    Gone(ClientId),
    /// Input from outside with its share of the inbox budget ([`super::inbox`]), given
    /// back once the input is handled.
    Charged {
        /// The input.
        input: Box<Input>,
        /// Its share of the budget.
        charge: Charge,
    },
    /// Frames from a peer, in the order it sent them (every frame a link had received).
    Peer {
        /// The sender, as it said in its handshake.
        from: NodeId,
        /// The messages.
        msgs: Vec<Message>,
    },
    /// Take a snapshot of the node's state for stats, `/metrics` and the ring.
    Inspect(oneshot::Sender<super::stats::Snapshot>),
    /// Stop at once, flushing what was handled (no hand-off).
    Stop,
    /// Leave the cluster gracefully, then stop: answered when the node may exit.
    Leave(oneshot::Sender<LeaveOutcome>),
    /// The sync thread finished the job of batch `seq` (see [`super::syncer`]).
    Synced {
        /// The batch whose job it was.
        seq: u64,
        /// Whether its writes (and those of every batch before it) are on disk.
        result: Result<(), String>,
    },
}

/// How a graceful leave ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveOutcome {
    /// Whether every range was handed to its new owners before the node left.
    pub handed_off: bool,
    /// The last commit's error, if the final flush failed.
    pub flush_error: Option<String>,
}

/// What the node thread keeps besides the node: state that survives restarts.
pub trait Durable: Send {
    /// Saves the node's [`NodeState`] durably.
    fn save_state(&mut self, state: &NodeState) -> Result<(), StoreError>;
    /// Saves the addresses of the members known, to rejoin through after a restart.
    fn save_peers(&mut self, peers: &[String]) -> Result<(), StoreError>;
    /// Saves the hints held for other nodes.
    fn save_hints(&mut self, hints: &[(NodeId, Hint)]) -> Result<(), StoreError>;
}

/// No durability: a `--memory` node forgets everything when it stops.
#[derive(Debug, Default)]
pub struct Ephemeral;

impl Durable for Ephemeral {
    fn save_state(&mut self, _: &NodeState) -> Result<(), StoreError> {
        Ok(())
    }
    fn save_peers(&mut self, _: &[String]) -> Result<(), StoreError> {
        Ok(())
    }
    fn save_hints(&mut self, _: &[(NodeId, Hint)]) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Durable for crate::store::NodeDb {
    fn save_state(&mut self, state: &NodeState) -> Result<(), StoreError> {
        crate::store::NodeDb::save_state(self, state)
    }
    fn save_peers(&mut self, peers: &[String]) -> Result<(), StoreError> {
        crate::store::NodeDb::save_peers(self, peers)
    }
    fn save_hints(&mut self, hints: &[(NodeId, Hint)]) -> Result<(), StoreError> {
        crate::store::NodeDb::save_hints(self, hints)
    }
}

/// The wall clock in milliseconds, never going backwards within one process.
#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicU64,
}

impl Clock {
    /// Milliseconds since the Unix epoch, at least the last value returned.
    pub fn now(&self) -> Millis {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let prev = self.last.fetch_max(wall, Ordering::Relaxed);
        wall.max(prev)
    }
}

/// The node thread's state.
pub struct Driver<S: Store, D: Durable> {
    node: Node<S>,
    durable: D,
    clients: HashMap<ClientId, Sink>,
    /// Answers for connections gathered while a batch's outputs are routed, sent when
    /// the batch is done.
    replies: HashMap<ClientId, Vec<ClientResponse>>,
    peers: Peers,
    /// Batches whose outputs wait for the disk.
    syncer: Syncer,
    counters: Arc<Counters>,
    clock: Clock,
    known_peers: Vec<String>,
    leaving: Option<(oneshot::Sender<LeaveOutcome>, Millis)>,
    stopping: bool,
    /// The hints generation last saved, and when.
    hints_saved: (u64, Millis),
    /// How long a graceful leave may take before the node exits anyway.
    leave_timeout_ms: Millis,
    /// The members' addresses as web origins, for the HTTP layer's `Origin` check.
    member_origins: Option<MemberOrigins>,
}

impl<S: Store + Send + 'static, D: Durable + 'static> Driver<S, D> {
    /// A driver around `node`, sending to peers through `peers`.
    pub fn new(node: Node<S>, durable: D, peers: Peers, counters: Arc<Counters>) -> Self {
        Driver {
            node,
            durable,
            clients: HashMap::new(),
            replies: HashMap::new(),
            peers,
            syncer: Syncer::new(None),
            counters,
            clock: Clock::default(),
            known_peers: Vec::new(),
            leaving: None,
            stopping: false,
            hints_saved: (0, 0),
            leave_timeout_ms: 30_000,
            member_origins: None,
        }
    }

    /// Waits for the disk on a sync thread that reports to the node thread through
    /// `inbox` (see [`super::syncer`]); without this the node thread waits itself.
    pub fn sync_off_thread(mut self, inbox: Weak<mpsc::Sender<Input>>) -> Self {
        self.syncer = Syncer::new(Some(inbox));
        self
    }

    /// Sets how long a graceful leave may take.
    pub fn leave_timeout(mut self, ms: Millis) -> Self {
        self.leave_timeout_ms = ms;
        self
    }

    /// Keeps `origins` up to date with the members' addresses (every member's pages may
    /// talk to this node: see [`super::http::origin`]).
    pub fn member_origins(mut self, origins: MemberOrigins) -> Self {
        self.member_origins = Some(origins);
        self
    }

    /// Runs until every sender of `inbox` is gone, [`Input::Stop`] arrives or a graceful
    /// leave completes. `join` are members to join through, told to the node before its
    /// first timer fires (so it never serves alone first).
    pub fn run(mut self, inbox: mpsc::Receiver<Input>, join: Vec<String>) {
        let now = self.clock.now();
        for addr in join {
            self.node.join(now, addr);
        }
        // The first tick before the first input: a node on its own starts serving then,
        // and connections accepted before this thread ran must not find it still
        // starting ("no node is serving yet").
        self.node.tick(now);
        self.commit_and_release(now);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let now = self.clock.now();
            let wait = self.node.next_deadline().map_or(Duration::from_millis(1000), |d| {
                Duration::from_millis(d.saturating_sub(now).min(1000))
            });
            match inbox.recv_timeout(wait) {
                Ok(first) => {
                    batch.push(first);
                    while batch.len() < BATCH {
                        match inbox.try_recv() {
                            Ok(input) => batch.push(input),
                            Err(_) => break,
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = self.clock.now();
            for input in batch.drain(..) {
                self.handle(now, input);
            }
            if self.node.next_deadline().is_some_and(|d| d <= now) {
                self.node.tick(now);
            }
            self.commit_and_release(now);
            self.save_hints(now, false);
            if self.check_leave(now) || self.stopping {
                break;
            }
        }
        let flushed = self.node.flush().err().map(|e| e.to_string());
        let held = self.syncer.release_all();
        self.release(self.clock.now(), Release { outputs: held, failed: flushed });
        self.send_replies();
        self.save_hints(self.clock.now(), true);
    }

    /// Saves the hints when they changed, at most every [`HINTS_SAVE_MS`] (or now, when
    /// stopping).
    fn save_hints(&mut self, now: Millis, force: bool) {
        let generation = self.node.hints().generation();
        let (saved, at) = self.hints_saved;
        if generation == saved || (!force && now.saturating_sub(at) < HINTS_SAVE_MS) {
            return;
        }
        match self.durable.save_hints(&self.node.hints().snapshot()) {
            Ok(()) => self.hints_saved = (generation, now),
            Err(e) => tracing::warn!(error = %e, "could not save the hints"),
        }
    }

    fn handle(&mut self, now: Millis, input: Input) {
        match input {
            Input::Open { client, sink } => {
                self.clients.insert(client, sink);
            }
            Input::Requests { client, reqs } => {
                for req in reqs {
                    self.counters.count_op(&req.op);
                    self.node.handle_client(now, client, req);
                }
            }
            Input::Gone(client) => {
                if self.clients.remove(&client).is_some() {
                    self.node.client_gone(now, client);
                }
            }
            Input::Peer { from, msgs } => {
                self.counters.peer_frames_in.fetch_add(msgs.len() as u64, Ordering::Relaxed);
                for msg in msgs {
                    self.node.handle_peer(now, from, msg);
                }
            }
            Input::Charged { input, charge } => {
                self.handle(now, *input);
                drop(charge);
            }
            Input::Inspect(tx) => {
                let _ = tx.send(super::snapshot_of(&self.node, &self.node.config().addr));
            }
            Input::Stop => self.stopping = true,
            Input::Synced { seq, result } => {
                let release = self.syncer.synced(seq, result);
                self.release(now, release);
            }
            Input::Leave(done) => {
                if self.leaving.is_none() {
                    tracing::info!("leaving the cluster: handing ranges off first");
                    self.node.leave(now);
                    self.leaving = Some((done, now + self.leave_timeout_ms));
                }
            }
        }
    }

    /// Begins the batch's commit and hands its outputs to the syncer, which holds them
    /// until the commit is on disk; releases what may go out (or, when the commit could
    /// not even begin, withholds this batch's acknowledgements and rebuilds the node).
    fn commit_and_release(&mut self, now: Millis) {
        let begun = self.node.flush_begin();
        let mut outputs = Vec::new();
        while let Some(out) = self.node.poll_output() {
            outputs.push(out);
        }
        let release = match begun {
            Ok(job) => self.syncer.submit(outputs, job),
            Err(e) => Release { outputs, failed: Some(e.to_string()) },
        };
        self.release(now, release);
        self.send_replies();
    }

    /// Sends each connection the answers gathered for it, in one message. A connection
    /// past its watch lag bound has its watches ended; one past its output limit is
    /// closed ([`super::outbox`]).
    fn send_replies(&mut self) {
        let mut refused = Vec::new();
        for (client, resps) in self.replies.drain() {
            if let Some(Sink::Conn(outbox)) = self.clients.get(&client) {
                match outbox.offer(resps) {
                    Offer::Queued => {}
                    Offer::Lagging => {
                        let reason = "the watch ended: this connection lagged, its unread \
                                      answers passed the node's watch lag limit; read faster, \
                                      sync your copy again (sync) and watch again";
                        let ended = self.node.end_client_watches(client, reason);
                        if ended > 0 {
                            self.counters.watches_lagged.fetch_add(ended as u64, Ordering::Relaxed);
                            tracing::warn!(
                                client,
                                watches = ended,
                                "watches ended: the client lagged"
                            );
                        }
                    }
                    Offer::Refused(reason) => refused.push((client, reason)),
                }
            }
        }
        for (client, reason) in refused {
            if let Some(Sink::Conn(outbox)) = self.clients.remove(&client) {
                tracing::warn!(client, %reason, "slow client disconnected");
                self.counters.slow_clients_disconnected.fetch_add(1, Ordering::Relaxed);
                outbox.close(reason);
                let now = self.clock.now();
                self.node.client_gone(now, client);
            }
        }
    }

    /// Routes released outputs; after a failed commit, withholds their
    /// acknowledgements and rebuilds the node from what the store really holds.
    fn release(&mut self, now: Millis, release: Release) {
        let Release { outputs, failed } = release;
        if let Some(reason) = &failed {
            tracing::error!(%reason, "commit failed: withholding its acknowledgements");
            self.counters.commit_failures.fetch_add(1, Ordering::Relaxed);
        }
        for out in outputs {
            self.route(now, out, failed.as_deref());
        }
        if failed.is_some() {
            self.rebuild(now);
        }
    }

    fn route(&mut self, now: Millis, out: Output, failed: Option<&str>) {
        match out {
            Output::Send { to, addr, msg } => {
                if failed.is_some() && is_write_ack(&msg) {
                    return;
                }
                if to == self.node.id() {
                    self.node.handle_peer(now, to, msg);
                } else {
                    self.peers.send(&addr, msg);
                }
            }
            Output::SendAddr { addr, msg } => self.peers.send(&addr, msg),
            Output::Reply { client, mut resp } => {
                if let (Some(reason), Reply::Written { .. }) = (failed, &resp.result) {
                    resp = ClientResponse::error(
                        resp.id,
                        ErrorCode::Unavailable,
                        format!("the write was not committed ({reason}); retry it"),
                    );
                }
                self.counters.count_reply(&resp.result);
                self.reply(client, resp);
            }
            Output::Persist(state) => {
                if let Err(e) = self.durable.save_state(&state) {
                    tracing::error!(error = %e, "could not save the node state");
                }
            }
            Output::Event(event) => self.event(event),
        }
    }

    fn reply(&mut self, client: ClientId, resp: ClientResponse) {
        match self.clients.get(&client) {
            Some(Sink::Conn(_)) => self.replies.entry(client).or_default().push(resp),
            Some(Sink::Once(_)) => {
                if let Some(Sink::Once(tx)) = self.clients.remove(&client) {
                    let _ = tx.send(resp);
                }
                let now = self.clock.now();
                self.node.client_gone(now, client);
            }
            None => {}
        }
    }

    fn event(&mut self, event: NodeEvent) {
        self.counters.count_event(&event);
        match &event {
            NodeEvent::Membership(m) => {
                tracing::info!(event = ?m, "membership");
                if let Some(origins) = &self.member_origins {
                    origins.set(self.node.membership().members().map(|m| m.addr.as_str()));
                }
                let mut peers: Vec<String> = self
                    .node
                    .membership()
                    .members()
                    .filter(|m| m.id != self.node.id() && !m.status.is_down())
                    .map(|m| m.addr.clone())
                    .collect();
                peers.sort();
                if peers != self.known_peers && !peers.is_empty() {
                    if let Err(e) = self.durable.save_peers(&peers) {
                        tracing::warn!(error = %e, "could not save the peer list");
                    }
                    self.known_peers = peers;
                }
            }
            NodeEvent::Handoff(p) => {
                tracing::info!(done = p.done, total = p.total, entries = p.entries, "hand-off")
            }
            NodeEvent::StoreFailed(e) => tracing::warn!(error = %e, "store refused a write"),
            NodeEvent::SyncFailed { peer, reason } => {
                tracing::debug!(peer = %peer.0, %reason, "sync session failed")
            }
            other => tracing::debug!(event = ?other, "node event"),
        }
    }

    /// After a failed commit: the node's Merkle trees and clock may describe writes
    /// that never reached the disk, so the node is rebuilt from the store (its pending
    /// transaction is dropped, uncommitted) and re-syncs before serving.
    fn rebuild(&mut self, now: Millis) {
        if let Err(e) = self.node.recover_from_failed_flush(now) {
            tracing::error!(error = %e, "cannot read the store back after a failed commit");
        }
    }

    /// Whether a graceful leave has finished (or timed out); answers its caller.
    fn check_leave(&mut self, now: Millis) -> bool {
        let Some((_, deadline)) = &self.leaving else { return false };
        let handed_off = self.node.left();
        if !handed_off && now < *deadline {
            return false;
        }
        let flush_error = self.node.flush().err().map(|e| e.to_string());
        if let Some((done, _)) = self.leaving.take() {
            let _ = done.send(LeaveOutcome { handed_off, flush_error });
        }
        true
    }
}

fn is_write_ack(msg: &Message) -> bool {
    matches!(msg, Message::Replica(ReplicaMessage::WriteAck { .. }))
}
