//! The node thread: the one place a [`Node`] lives in the server.
//!
//! Everything that reaches the node — client requests from WebSocket and HTTP, frames
//! from peers, timers, operator commands — arrives as an [`Input`] on one channel. The
//! thread takes whatever has queued up (up to [`BATCH`] inputs), feeds it all to the
//! node, fires due timers, then begins one commit ([`Node::flush_begin`]): every write
//! of the batch shares one durable commit (group commit). The commit's outcome comes
//! back as [`Input::Synced`] — from the store's own disk thread, or from the sync
//! thread that waits for a store without one ([`super::syncer`]) — and the thread
//! tells the node ([`Node::committed`]).
//!
//! What may be sent before the disk answered, and what happens when a commit fails, is
//! the node's business (`dhrt_core::node::durability`): its `poll_output` hands over
//! only what may leave, and this thread routes all of it at once — gossip, probes and
//! sync traffic never wait behind an fsync.
//!
//! The thread runs its own single-threaded tokio runtime ([`Driver::spawn`]): the
//! driver's loop is one task on it, and the client WebSocket connections handed to the
//! node ([`super::handoff`]) are others, so a client's request is read, decoded, handled
//! and answered on this one thread — no crossing to another thread and back, no wake-up
//! of another core (docs/benchmarks.md). Those connections hand their input to the node
//! directly, at the desk ([`super::desk`]), rather than through the inbox; the loop then
//! begins one commit for all of it. Peer links run here too: the links this node opened
//! ([`super::peers`]) are tasks on this runtime, and the plain links peers opened to it
//! move here once upgraded and hand their frames over at the desk. HTTP requests and
//! TLS connections run on the server's multi-threaded runtime and reach the driver
//! through the inbox. A commit may
//! block on the disk: it blocks this thread's connections too, which could not be
//! answered before it anyway.

use super::{
    handoff::SocketIo,
    http::origin::MemberOrigins,
    inbox::Charge,
    outbox::{Offer, Outbox, Parcel},
    peers::Peers,
    stats::Counters,
    syncer::{Syncer, Teller},
};
use dhrt_core::{
    node::{
        durability::{Commit, Epoch},
        hints::Hint,
        ClientId, Node, NodeEvent, NodeState, Output,
    },
    proto::{ClientRequest, ClientResponse, Message},
    store::{Store, StoreError},
    Millis, NodeId,
};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

pub use super::desk::{Desk, DriverCell};

/// The sending end of the node thread's inbox (any thread may send).
pub type Inbox = mpsc::UnboundedSender<Input>;
/// The node thread's end of its inbox.
pub type InboxReceiver = mpsc::UnboundedReceiver<Input>;

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
    /// The wait for the disk of commit `epoch` ended (see [`super::syncer`]).
    Synced {
        /// The commit whose job it was.
        epoch: Epoch,
        /// Whether its writes (and those of every commit before it) are on disk.
        result: Result<(), StoreError>,
        /// Who waited: the sync thread, or the store's own thread.
        by: Teller,
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
        let wall = super::wall_ms();
        let prev = self.last.fetch_max(wall, Ordering::Relaxed);
        wall.max(prev)
    }
}

/// How the maps keyed by connection hash its id: foldhash (randomly seeded), not
/// SipHash — two lookups an answer, and the ids are the server's own, not a client's.
type ById = foldhash::fast::RandomState;

/// The node thread's state.
pub struct Driver<S: Store, D: Durable> {
    node: Node<S>,
    durable: D,
    clients: HashMap<ClientId, Sink, ById>,
    /// Answers for connections gathered while a batch's outputs are routed, sent when
    /// the batch is done.
    replies: HashMap<ClientId, Vec<ClientResponse>, ById>,
    /// The connection whose own task is at the desk ([`super::desk`]), and the answers
    /// admitted for it: handed back to it rather than sent through its outbox.
    at_desk: Option<(ClientId, Vec<Parcel>)>,
    peers: Peers,
    /// Runs the commits' waits for the disk.
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
            clients: HashMap::default(),
            replies: HashMap::default(),
            at_desk: None,
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

    /// Waits for the disk off the node thread: commits report to it through `inbox`
    /// (see [`super::syncer`]); without this the node thread waits itself.
    pub fn sync_off_thread(mut self, inbox: Weak<Inbox>) -> Self {
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

    /// What the node does first: joins through `join` (members told to the node before
    /// its first timer fires, so it never serves alone first), then the first tick
    /// before the first input: a node on its own starts serving then, and connections
    /// accepted before this thread ran must not find it still starting ("no node is
    /// serving yet").
    pub(super) fn start(&mut self, join: Vec<String>) {
        let now = self.clock.now();
        for addr in join {
            self.node.join(now, addr);
        }
        self.node.tick(now);
        self.commit_and_route(now);
    }

    /// How long the loop may wait for input before the node's next timer.
    pub(super) fn wait(&self) -> Duration {
        let now = self.clock.now();
        self.node.next_deadline().map_or(Duration::from_millis(1000), |d| {
            Duration::from_millis(d.saturating_sub(now).min(1000))
        })
    }

    /// One turn of the loop: handles `batch`, fires due timers, begins one commit for
    /// everything handled since the last (here and at the desk) and routes what may
    /// leave. True when the thread should stop.
    pub(super) fn turn(&mut self, batch: &mut Vec<Input>) -> bool {
        let now = self.clock.now();
        for input in batch.drain(..) {
            self.handle(now, input);
        }
        if self.node.next_deadline().is_some_and(|d| d <= now) {
            self.node.tick(now);
        }
        self.commit_and_route(now);
        // A store whose failed checkpoint waits to be tried again (the files alone,
        // `--reads disk`) is flushed when the node is idle: it recovers, and its
        // health says so, with no write to prompt it. At least once a second.
        if let Err(e) = self.node.tend_store() {
            tracing::debug!(error = %e, "retrying the store's failure");
        }
        self.save_hints(now, false);
        self.check_leave(now) || self.stopping
    }

    /// The last commit, in place, before the thread ends. True while commits still
    /// wait for the disk (their answers come through the inbox).
    pub(super) fn last_commit(&mut self) -> bool {
        if let Err(e) = self.node.flush(self.clock.now()) {
            tracing::error!(error = %e, "the last commit failed");
        }
        self.syncer.busy()
    }

    /// Whether commits still wait for the disk.
    pub(super) fn commits_waiting(&self) -> bool {
        self.syncer.busy()
    }

    /// Handles `input` at once and routes what the node lets go ([`super::desk`]).
    pub(super) fn hand(&mut self, input: Input) {
        let now = self.clock.now();
        self.handle(now, input);
        self.route_outputs(now);
        self.send_replies();
    }

    /// Handles a client's requests at once and routes what the node lets go
    /// ([`super::desk`]), leaving `reqs` empty. The answers for `client` itself are
    /// admitted to its outbox's count and added to `answers` rather than sent.
    pub(super) fn hand_requests(
        &mut self,
        client: ClientId,
        reqs: &mut Vec<ClientRequest>,
        answers: &mut Vec<Parcel>,
    ) {
        let now = self.clock.now();
        self.requests(now, client, reqs);
        self.route_outputs(now);
        self.at_desk = Some((client, std::mem::take(answers)));
        self.send_replies();
        if let Some((_, admitted)) = self.at_desk.take() {
            *answers = admitted;
        }
    }

    /// What the thread does last: routes what the last commits released, saves the
    /// hints, and lets the store tidy its files ([`dhrt_core::store::Store::close`]).
    pub(super) fn finish(&mut self) {
        self.route_outputs(self.clock.now());
        self.send_replies();
        self.save_hints(self.clock.now(), true);
        self.node.close_store();
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
            Input::Requests { client, mut reqs } => self.requests(now, client, &mut reqs),
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
            Input::Synced { epoch, result, by } => self.synced(now, epoch, result, by),
            Input::Leave(done) => {
                if self.leaving.is_none() {
                    tracing::info!("leaving the cluster: handing ranges off first");
                    self.node.leave(now);
                    self.leaving = Some((done, now + self.leave_timeout_ms));
                }
            }
        }
    }

    /// Hands a client's requests to the node, in order, leaving `reqs` empty.
    fn requests(&mut self, now: Millis, client: ClientId, reqs: &mut Vec<ClientRequest>) {
        // Their keys' memory first, all at once (their cache misses overlap) — when
        // there are several: one request alone would read it twice.
        if reqs.len() > 1 {
            std::hint::black_box(self.node.warm(reqs));
        }
        for req in reqs.drain(..) {
            self.counters.count_op(&req.op);
            self.node.handle_client(now, client, req);
        }
    }

    /// Begins the batch's commit, hands its wait for the disk off the node thread, and
    /// routes whatever the node lets go.
    fn commit_and_route(&mut self, now: Millis) {
        match self.node.flush_begin(now) {
            Ok(Commit { epoch, job: Some(job) }) => {
                if let Some((epoch, result)) = self.syncer.submit(epoch, job) {
                    self.node.committed(now, epoch, result);
                }
            }
            Ok(Commit { job: None, .. }) => {}
            // The node already treated the commit as failed (see `CommitFailed`).
            Err(e) => tracing::debug!(error = %e, "a commit could not begin"),
        }
        self.route_outputs(now);
        self.send_replies();
    }

    /// Commit `epoch`'s wait ended: tells the node, and starts the next job.
    fn synced(&mut self, now: Millis, epoch: Epoch, result: Result<(), StoreError>, by: Teller) {
        let next = self.syncer.synced(epoch, by, result.is_ok());
        self.node.committed(now, epoch, result);
        if let Some((epoch, result)) = next {
            self.node.committed(now, epoch, result);
        }
    }

    /// Sends each connection the answers gathered for it, in one message. A connection
    /// past its watch lag bound has its watches ended; one past its output limit is
    /// closed ([`super::outbox`]).
    fn send_replies(&mut self) {
        let mut refused = Vec::new();
        for (client, resps) in self.replies.drain() {
            if let Some(Sink::Conn(outbox)) = self.clients.get(&client) {
                let offer = match &mut self.at_desk {
                    Some((at, answers)) if *at == client => {
                        let (offer, admitted) = outbox.admit(resps);
                        answers.extend(admitted);
                        offer
                    }
                    _ => outbox.offer(resps),
                };
                match offer {
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

    /// Routes every output the node lets go now.
    fn route_outputs(&mut self, now: Millis) {
        while let Some(out) = self.node.poll_output() {
            self.route(now, out);
        }
    }

    fn route(&mut self, now: Millis, out: Output) {
        match out {
            Output::Send { to, addr, msg } => {
                if to == self.node.id() {
                    self.node.handle_peer(now, to, msg);
                } else {
                    self.peers.send(&addr, msg);
                }
            }
            Output::SendAddr { addr, msg } => self.peers.send(&addr, msg),
            Output::Reply { client, resp } => {
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
            NodeEvent::StoreFailed(e) => tracing::warn!(error = %e, "store failed"),
            NodeEvent::CommitFailed { reason } => {
                tracing::error!(%reason, "commit failed: its acknowledgements were withheld");
                self.counters.commit_failures.fetch_add(1, Ordering::Relaxed);
            }
            NodeEvent::SyncFailed { peer, reason } => {
                tracing::debug!(peer = %peer.0, %reason, "sync session failed")
            }
            NodeEvent::ClockSkewed(skew) => {
                tracing::warn!(
                    offset_ms = skew.offset_ms,
                    max_offset_ms = skew.max_offset_ms,
                    "clock skewed: {skew}; this node does not coordinate writes until it is back"
                )
            }
            NodeEvent::ClockRecovered { offset_ms } => {
                tracing::info!(?offset_ms, "clock agrees with the peers again: coordinating writes")
            }
            NodeEvent::Removing(p) => tracing::info!(
                member = %p.member,
                handed_off = p.handed_off,
                owners = p.owners,
                waiting_for_down = ?p.waiting_for_down,
                "removing a dead member: its other owners hand its ranges on"
            ),
            NodeEvent::Removed { member } => tracing::info!(%member, "member removed: it left"),
            NodeEvent::RemovalStopped { member, reason } => {
                tracing::warn!(%member, %reason, "removal stopped")
            }
            NodeEvent::LayoutMoved { collection, phase } => match phase {
                Some(p) => tracing::info!(%collection, phase = p.as_str(), "collection moving"),
                None => tracing::info!(%collection, "collection moved to its new layout"),
            },
            NodeEvent::SlowSync { took_ms, grace_ms } => tracing::warn!(
                took_ms,
                grace_ms,
                "an anti-entropy round took more than a quarter of the tombstone grace period: \
                 a delete a replica missed could reach it only after the others collected \
                 its tombstone (look for silent peers, a slow disk or an overloaded node)"
            ),
            other => tracing::debug!(event = ?other, "node event"),
        }
    }

    /// Whether a graceful leave has finished (or timed out); answers its caller.
    fn check_leave(&mut self, now: Millis) -> bool {
        let Some((_, deadline)) = &self.leaving else { return false };
        let handed_off = self.node.left();
        if !handed_off && now < *deadline {
            return false;
        }
        let flush_error = self.node.flush(now).err().map(|e| e.to_string());
        if let Some((done, _)) = self.leaving.take() {
            let _ = done.send(LeaveOutcome { handed_off, flush_error });
        }
        true
    }
}

impl<S: Store + Send + 'static, D: Durable + 'static> Driver<S, D> {
    /// Starts the node thread: `runtime` (a single-threaded one, [`node_runtime`]) runs
    /// this driver until it stops ([`DriverCell::run`]), and with it the client
    /// connections spawned on it ([`super::handoff`]), which hand their input to the
    /// returned [`Desk`].
    ///
    /// `io` says how the client sockets on the thread are read and written: through
    /// the thread's io_uring ([`super::ring`]) or tokio's epoll reactor. An error when
    /// io_uring was required and the kernel refused it.
    pub fn spawn(
        self,
        runtime: tokio::runtime::Runtime,
        inbox: InboxReceiver,
        join: Vec<String>,
        io: SocketIo,
    ) -> std::io::Result<(std::thread::JoinHandle<()>, Arc<dyn Desk>)> {
        let cell = Arc::new(DriverCell::new(self));
        let desk: Arc<dyn Desk> = cell.clone();
        let (started_tx, started) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("dhrt-node".into()).spawn(move || {
            runtime.block_on(async move {
                let ring = start_ring(io);
                let failed = ring.is_err();
                let _ = started_tx.send(ring);
                if !failed {
                    cell.run(inbox, join).await;
                }
            })
        })?;
        match started.recv() {
            Ok(Ok(uring)) => {
                let how = if uring { "io_uring" } else { "epoll" };
                tracing::info!("client sockets on the node thread: {how}");
                Ok((thread, desk))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("the node thread ended as it started")),
        }
    }
}

/// Starts the node thread's ring as `io` asks: whether client sockets use it.
fn start_ring(io: SocketIo) -> std::io::Result<bool> {
    if io == SocketIo::Epoll {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    let started = super::ring::Ring::start().map(|_| true);
    #[cfg(not(target_os = "linux"))]
    let started = Err(std::io::Error::other("io_uring is Linux's"));
    match started {
        Err(e) if io == SocketIo::Auto => {
            tracing::info!(error = %e, "io_uring is not available: client sockets use epoll");
            Ok(false)
        }
        Err(e) => Err(std::io::Error::other(format!("io_uring is not available: {e}"))),
        ok => ok,
    }
}

/// The node thread's runtime, built before the thread starts (so the server can spawn
/// connections on it from the first request): single-threaded, with I/O and timers.
pub fn node_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}
