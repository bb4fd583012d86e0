//! The light peer: a client that joins the ring's routing without storing for it.
//!
//! A light peer — the browser's and Node's `dhrt` package, through `dhrt-wasm` — knows
//! the membership (from any node's [`Op::Ring`] answer, re-read every
//! [`LightConfig::ring_refresh_ms`] and after a node fails), sends each single-key
//! request straight to a replica of the key, and tries the next node of the key's
//! preference list when one fails. It keeps watches alive across node deaths and can
//! hold [`LocalCopy`]s of collections, caught up by the Merkle sync protocol and kept
//! current by watches.
//!
//! Like [`crate::node::Node`] it is sans-IO. Its host owns one connection per node and
//! the timers, and drives it with:
//!
//! ```text
//! peer.start(now)                         // read the ring through the seeds
//! peer.call(now, op) -> handle            // a request; its answer comes as Reply
//! peer.watch(now, collection, prefix)     // a subscription; Change and Status outputs
//! peer.open_copy(now, collection, notify) // a local copy; read it with peer.copy(h)
//! peer.handle_frame(now, addr, bytes)     // a frame a node sent
//! peer.disconnected(now, addr)            // a connection failed or closed
//! peer.tick(now)                          // timers: attempts, ring refresh, retries
//! peer.poll_output() -> Option<LightOutput>  // Send | Reply | Change | Status | ...
//! peer.next_deadline()                    // when to tick next
//! ```
//!
//! A request's attempt fails when its node's connection closes, when the node does not
//! answer within [`LightConfig::attempt_timeout_ms`], or when the node answers
//! `unavailable` (it is joining, re-syncing or leaving); the request then goes to the
//! next candidate, and the failed node is skipped for [`LightConfig::down_ms`]. Only
//! when every candidate failed does the caller get an error. Retrying a write is safe:
//! last writer wins (`docs/protocol.md`).
//!
//! With a token ([`LightConfig::token`]), the first frame the peer sends on every
//! connection is [`Op::Auth`]: a connection is new on the first [`LightOutput::Send`] to
//! an address, and again after [`LightPeer::disconnected`], so the host must report
//! every closed connection before it sends on a new one. A token never goes anywhere
//! else (never into an address). A refused token is not retried on another node — every
//! node checks the same tokens — so the caller gets `unauthorized` (or `forbidden`, for
//! what the token does not allow), with the sentence the node gave when it refused the
//! token; a first ring read refused so ends [`LightPeer::start`] with
//! [`LightOutput::Refused`].

mod copy;
mod layouts;
mod subs;
mod view;

pub use copy::{CopyPage, CopyStats, LocalCopy};
pub use layouts::KnownLayouts;
pub use view::{RingView, SyncTarget};

use crate::{
    auth::BearerToken,
    proto::{
        client::{ClientMessage, ErrorCode, Op, Reply, RingMember},
        ClientRequest, ClientResponse,
    },
    replica::Change,
    rng::Rng,
    wire, Millis,
};
use std::collections::{BTreeMap, VecDeque};
use subs::Sub;

/// Tunables of a light peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LightConfig {
    /// Replicas per key, used to plan sync sessions of collections using the cluster's
    /// layout; replaced by what the node answering `Stats` reports.
    pub replicas: usize,
    /// How long one node may take to answer before the request goes to the next.
    pub attempt_timeout_ms: Millis,
    /// How often the ring is re-read.
    pub ring_refresh_ms: Millis,
    /// How long a node that failed is tried only as a last resort.
    pub down_ms: Millis,
    /// Sync sessions a local copy runs at once.
    pub sync_parallel: usize,
    /// How long a local copy waits before a new catch-up after one that could not
    /// reconcile every piece, or a watch waits before subscribing again when no node
    /// took it.
    pub retry_ms: Millis,
    /// Seed of the salts of sync sessions.
    pub seed: u64,
    /// The token presented first on every connection ([`Op::Auth`]), for nodes that
    /// require one; `None` presents nothing.
    pub token: Option<BearerToken>,
}

impl Default for LightConfig {
    fn default() -> Self {
        LightConfig {
            replicas: 3,
            attempt_timeout_ms: 5_000,
            ring_refresh_ms: 10_000,
            down_ms: 5_000,
            sync_parallel: 4,
            retry_ms: 2_000,
            seed: 0,
            token: None,
        }
    }
}

/// The state of a watch or a local copy, reported as it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    /// The subscription is in place: every change from now on is delivered.
    Live,
    /// The subscription was lost (its node failed or ended it) and is being placed on
    /// another node. Changes in between may be missed by a plain watch; a local copy
    /// catches up by sync once it is live again.
    Interrupted {
        /// What happened.
        reason: String,
    },
    /// A local copy is catching up: `done` of `total` ring pieces reconciled.
    Syncing {
        /// Pieces done (or given up for this round).
        done: usize,
        /// Pieces in the round.
        total: usize,
    },
    /// A local copy caught up with the cluster.
    Synced {
        /// Entries the copy holds.
        entries: u64,
    },
    /// The subscription ended for good (the node refused it as invalid).
    Ended {
        /// The error's kind.
        code: ErrorCode,
        /// The error's sentence.
        message: String,
    },
}

/// Something the light peer wants its host to do or know.
#[derive(Debug, Clone, PartialEq)]
pub enum LightOutput {
    /// Send `frame` to the node at `addr` (opening a connection if there is none).
    Send {
        /// The node's `host:port`.
        addr: String,
        /// A wire frame.
        frame: Vec<u8>,
    },
    /// The answer to the request `handle` ([`LightPeer::call`]); errors included.
    Reply {
        /// The request.
        handle: u64,
        /// The answer.
        reply: Reply,
    },
    /// No node answered the request `handle`: every candidate's connection failed, or
    /// it did not answer in time. `reply` is the `unavailable` error saying which nodes
    /// were tried; a host that knows why its connections failed (the native client)
    /// may say so instead.
    NoAnswer {
        /// The request.
        handle: u64,
        /// The error to give the caller.
        reply: Reply,
    },
    /// A change seen by watch `handle`, or applied to local copy `handle` (when it was
    /// opened with `notify`).
    Change {
        /// The watch or copy.
        handle: u64,
        /// The change: collection, key and the entry now current.
        change: Change,
    },
    /// Watch or copy `handle` changed state.
    Status {
        /// The watch or copy.
        handle: u64,
        /// Its new state.
        status: StreamStatus,
    },
    /// The ring was read and differs from the last reading.
    RingChanged,
    /// No seed could be reached to read the ring the first time.
    Unreachable {
        /// Which addresses were tried and what to do.
        message: String,
    },
    /// The first reading of the ring was answered with an error other than
    /// `unavailable`: the node requires a token and none was given, or it refused the
    /// one given (`unauthorized`).
    Refused {
        /// The error's kind.
        code: ErrorCode,
        /// The node's sentence.
        message: String,
    },
}

/// Where a connection stands with its token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthState {
    /// [`Op::Auth`] was sent with this request id and is not answered yet.
    Sent(u64),
    /// The node accepted the token.
    Accepted,
}

/// Why a request is in flight.
#[derive(Debug, Clone)]
enum Purpose {
    /// A caller's request.
    Call(u64),
    /// Reading the ring.
    Ring,
    /// Learning the replication factor and the collections' layouts.
    Stats,
    /// Placing watch (or copy) `handle`.
    Watch(u64),
    /// Ending a watch; nothing waits for the answer.
    Unwatch,
    /// A step of sync session `session` of copy `copy`.
    Sync {
        /// The copy.
        copy: u64,
        /// The session.
        session: u64,
    },
}

/// A request sent and not yet answered.
#[derive(Debug, Clone)]
struct InFlight {
    purpose: Purpose,
    op: Op,
    /// Nodes to try, in order; `next` is the one after the current attempt's.
    candidates: Vec<String>,
    next: usize,
    addr: String,
    /// When the attempt counts as failed; `None` once a watch is confirmed.
    deadline: Option<Millis>,
    /// The last error a node answered, given to the caller if no other node does better.
    last_error: Option<Reply>,
}

/// The light peer's state machine. See the module docs.
#[derive(Debug)]
pub struct LightPeer {
    config: LightConfig,
    seeds: Vec<String>,
    ring: RingView,
    ring_read_at: Option<Millis>,
    /// The layouts collections use other than the cluster's, from the last `Stats`
    /// answer: what local copies plan their sync sessions by.
    layouts: KnownLayouts,
    /// A node that answered lately: where requests without a key go first.
    home: Option<String>,
    /// Nodes that failed, until when they are tried last.
    down: BTreeMap<String, Millis>,
    next_id: u64,
    inflight: BTreeMap<u64, InFlight>,
    subs: BTreeMap<u64, Sub>,
    rng: Rng,
    outputs: VecDeque<LightOutput>,
    /// With a token: the connections it was presented on, by address. At most one per
    /// address the peer sends to; forgotten when the connection closes.
    authed: BTreeMap<String, AuthState>,
    /// The last refusal of the token by the node at each address: what a request
    /// answered `unauthorized` there is told, rather than the node's "no token" (a
    /// refused [`Op::Auth`] leaves the connection without one).
    refusals: BTreeMap<String, Reply>,
    /// The newest timestamp any node's answer carried: passed with every request, so
    /// this peer's next write is stamped above everything it saw, through any node
    /// (see [`ClientRequest::seen`]).
    seen: Option<crate::clock::Timestamp>,
}

impl LightPeer {
    /// A light peer that will read the ring through `seeds` (`host:port` each).
    pub fn new(seeds: Vec<String>, config: LightConfig) -> Self {
        LightPeer {
            rng: Rng::new(config.seed),
            config,
            seeds,
            ring: RingView::default(),
            ring_read_at: None,
            layouts: KnownLayouts::default(),
            home: None,
            down: BTreeMap::new(),
            next_id: 0,
            inflight: BTreeMap::new(),
            subs: BTreeMap::new(),
            outputs: VecDeque::new(),
            authed: BTreeMap::new(),
            refusals: BTreeMap::new(),
            seen: None,
        }
    }

    /// The newest timestamp a node's answer carried to this peer.
    pub fn seen(&self) -> Option<crate::clock::Timestamp> {
        self.seen
    }

    /// Reads the ring, the replication factor and the collections' layouts through the
    /// seeds; answered by [`LightOutput::RingChanged`] or [`LightOutput::Unreachable`].
    pub fn start(&mut self, now: Millis) {
        let seeds = self.any_candidates(now);
        self.send_to(now, Purpose::Ring, Op::Ring, seeds.clone());
        self.send_to(now, Purpose::Stats, Op::Stats, seeds);
    }

    /// The configuration (with `replicas` as learned from the cluster).
    pub fn config(&self) -> &LightConfig {
        &self.config
    }

    /// The ring as last read.
    pub fn ring(&self) -> &RingView {
        &self.ring
    }

    /// Every member as last read.
    pub fn members(&self) -> &[RingMember] {
        self.ring.members()
    }

    /// The layouts collections use other than the cluster's, as a node last told.
    pub fn layouts(&self) -> &KnownLayouts {
        &self.layouts
    }

    /// The sync sessions a catch-up of a local copy of `collection` runs now: the ring
    /// as last read, cut by the replicas of the layout the collection uses (the
    /// cluster's when no node told of another), each piece with the serving nodes that
    /// replicate all of it.
    pub fn sync_plan(&self, collection: &str) -> Vec<SyncTarget> {
        match self.layouts.get(collection) {
            None => self.ring.sync_plan(self.config.replicas),
            Some((layout, labels)) => {
                let n = layout.replicas_or(self.config.replicas.max(1));
                self.ring.sync_plan_spread(n, &layout.spread(), labels)
            }
        }
    }

    /// Asks a node for the replication factor and the collections' layouts again,
    /// unless a request for them is out.
    fn refresh_layouts(&mut self, now: Millis) {
        if self.inflight.values().any(|f| matches!(f.purpose, Purpose::Stats)) {
            return;
        }
        let candidates = self.any_candidates(now);
        self.send_to(now, Purpose::Stats, Op::Stats, candidates);
    }

    /// Sends `op`, routed to a replica of its key when it names one key, else to any
    /// node; answered by one [`LightOutput::Reply`] with the returned handle.
    pub fn call(&mut self, now: Millis, op: Op) -> u64 {
        let candidates = match &op {
            Op::Get { collection, key, .. }
            | Op::Set { collection, key, .. }
            | Op::Del { collection, key, .. } => {
                let route = self.ring.route(collection, key);
                if route.is_empty() {
                    self.any_candidates(now)
                } else {
                    self.order_by_health(now, route)
                }
            }
            _ => self.any_candidates(now),
        };
        let handle = self.fresh_id();
        self.send_to(now, Purpose::Call(handle), op, candidates);
        handle
    }

    /// Sends `op` to the node at `addr` only (no other node is tried): for what is
    /// about one node, such as its `Stats`.
    pub fn call_at(&mut self, now: Millis, addr: &str, op: Op) -> u64 {
        let handle = self.fresh_id();
        self.send_to(now, Purpose::Call(handle), op, vec![addr.to_string()]);
        handle
    }

    /// Gives up the request `handle` ([`LightPeer::call`]): no answer will come for it,
    /// and no other node is tried. False when it is not in flight (answered already).
    pub fn cancel(&mut self, handle: u64) -> bool {
        let before = self.inflight.len();
        self.inflight.retain(|_, f| !matches!(f.purpose, Purpose::Call(h) if h == handle));
        self.inflight.len() != before
    }

    /// Handles a frame the node at `from` sent. Frames that are not answers to this
    /// peer's requests are ignored.
    pub fn handle_frame(&mut self, now: Millis, from: &str, frame: &[u8]) {
        let decoded = wire::decode_with_limit(frame, wire::DEFAULT_MAX_FRAME);
        let Ok(Incoming::Response(ClientResponse { id, mut result, ts })) = decoded else {
            return;
        };
        if ts.is_some() && self.inflight.contains_key(&id) {
            self.seen = self.seen.max(ts);
        }
        if self.authed.get(from) == Some(&AuthState::Sent(id)) {
            self.on_auth_reply(from, result);
            return;
        }
        let Some(flight) = self.inflight.get(&id) else { return };
        if flight.addr != from {
            return;
        }
        self.down.remove(from);
        if let (Reply::Error { code: ErrorCode::Unauthorized, .. }, Some(refusal)) =
            (&result, self.refusals.get(from))
        {
            result = refusal.clone();
        }
        match flight.purpose.clone() {
            Purpose::Watch(handle) => self.on_watch_reply(now, id, handle, result),
            Purpose::Sync { copy, session } => {
                self.inflight.remove(&id);
                self.on_sync_reply(now, copy, session, result);
            }
            _ if is_retryable(&result) => {
                if let Some(f) = self.inflight.get_mut(&id) {
                    f.last_error = Some(result);
                }
                self.attempt_failed(now, id);
            }
            purpose => {
                self.inflight.remove(&id);
                self.home = Some(from.to_string());
                self.on_answer(now, purpose, result);
            }
        }
    }

    /// The connection to `addr` opened: the node is tried first again.
    pub fn connected(&mut self, addr: &str) {
        self.down.remove(addr);
    }

    /// The connection to `addr` failed or closed: every request waiting on it goes to
    /// its next candidate, watches placed there move, and the ring is re-read soon.
    pub fn disconnected(&mut self, now: Millis, addr: &str) {
        self.down.insert(addr.to_string(), now + self.config.down_ms);
        // The next connection presents the token again.
        self.authed.remove(addr);
        self.refusals.remove(addr);
        if self.home.as_deref() == Some(addr) {
            self.home = None;
        }
        let ids: Vec<u64> =
            self.inflight.iter().filter(|(_, f)| f.addr == addr).map(|(id, _)| *id).collect();
        for id in ids {
            self.attempt_failed(now, id);
        }
        // The failure detector will tell what became of the node.
        self.ring_read_at = self.ring_read_at.map(|_| 0);
    }

    /// Runs the timers: failed attempts, the ring refresh, watches and copies waiting
    /// to retry.
    pub fn tick(&mut self, now: Millis) {
        let late: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, f)| f.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(addr) = self.inflight.get(&id).map(|f| f.addr.clone()) {
                self.down.insert(addr, now + self.config.down_ms);
            }
            self.attempt_failed(now, id);
        }
        let refresh_due = self.ring_read_at.is_some_and(|t| t + self.config.ring_refresh_ms <= now);
        if refresh_due && !self.inflight.values().any(|f| matches!(f.purpose, Purpose::Ring)) {
            self.ring_read_at = Some(now);
            let candidates = self.any_candidates(now);
            self.send_to(now, Purpose::Ring, Op::Ring, candidates);
        }
        self.down.retain(|_, until| *until > now);
        self.tick_subs(now);
    }

    /// When [`LightPeer::tick`] should run next.
    pub fn next_deadline(&self) -> Option<Millis> {
        let attempts = self.inflight.values().filter_map(|f| f.deadline);
        // While a ring request is out, its attempt deadline stands for the refresh.
        let reading = self.inflight.values().any(|f| matches!(f.purpose, Purpose::Ring));
        let ring = self.ring_read_at.filter(|_| !reading).map(|t| t + self.config.ring_refresh_ms);
        attempts.chain(ring).chain(self.subs_deadline()).min()
    }

    /// The next thing for the host to do.
    pub fn poll_output(&mut self) -> Option<LightOutput> {
        self.outputs.pop_front()
    }

    /// Requests in flight (for tests and the dashboard).
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Nodes for a request that can go anywhere: the node that answered last, the
    /// serving members, then the seeds; nodes that failed lately last.
    fn any_candidates(&self, now: Millis) -> Vec<String> {
        let mut all: Vec<String> = self.home.iter().cloned().collect();
        for addr in self.ring.serving_addrs().into_iter().chain(self.seeds.iter().cloned()) {
            if !all.contains(&addr) {
                all.push(addr);
            }
        }
        self.order_by_health(now, all)
    }

    /// `addrs` with the nodes that failed lately moved to the end (order kept).
    fn order_by_health(&self, now: Millis, addrs: Vec<String>) -> Vec<String> {
        let is_down = |a: &String| self.down.get(a).is_some_and(|until| *until > now);
        let (down, up): (Vec<String>, Vec<String>) = addrs.into_iter().partition(is_down);
        up.into_iter().chain(down).collect()
    }

    /// Sends `op` to the first of `candidates` (the rest are tried if it fails).
    fn send_to(&mut self, now: Millis, purpose: Purpose, op: Op, candidates: Vec<String>) {
        let flight = InFlight {
            purpose,
            op,
            candidates,
            next: 0,
            addr: String::new(),
            deadline: None,
            last_error: None,
        };
        self.attempt(now, flight);
    }

    /// Sends the flight's request to its next candidate, or gives up.
    fn attempt(&mut self, now: Millis, mut flight: InFlight) {
        let Some(addr) = flight.candidates.get(flight.next).cloned() else {
            self.exhausted(now, flight);
            return;
        };
        flight.next += 1;
        self.present_token(&addr);
        let id = self.fresh_id();
        let req =
            ClientMessage::Request(ClientRequest { id, op: flight.op.clone(), seen: self.seen });
        match wire::encode_with_limit(&req, wire::DEFAULT_MAX_FRAME) {
            Ok(frame) => {
                flight.addr = addr.clone();
                flight.deadline = Some(now + self.config.attempt_timeout_ms);
                self.inflight.insert(id, flight);
                self.outputs.push_back(LightOutput::Send { addr, frame });
            }
            Err(e) => {
                let reply = error(ErrorCode::TooLarge, e.to_string());
                self.on_answer(now, flight.purpose, reply);
            }
        }
    }

    /// The attempt `id` failed: try the flight's next candidate.
    fn attempt_failed(&mut self, now: Millis, id: u64) {
        let Some(flight) = self.inflight.remove(&id) else { return };
        match flight.purpose {
            Purpose::Sync { copy, session } => self.on_sync_failed(now, copy, session),
            Purpose::Watch(handle) if flight.deadline.is_none() => {
                self.on_watch_lost(now, handle, format!("the connection to {} closed", flight.addr))
            }
            _ => self.attempt(now, flight),
        }
    }

    /// Sends [`Op::Auth`] to `addr` when the peer has a token and the connection has not
    /// been given it: before anything else on a new connection.
    fn present_token(&mut self, addr: &str) {
        let Some(token) = self.config.token.clone() else { return };
        if self.authed.contains_key(addr) {
            return;
        }
        let id = self.fresh_id();
        let req = ClientMessage::Request(ClientRequest { id, op: Op::Auth { token }, seen: None });
        // A token too large for a frame is sent anyway as nothing: the node then
        // answers the requests `unauthorized`, which says what is missing.
        if let Ok(frame) = wire::encode_with_limit(&req, wire::DEFAULT_MAX_FRAME) {
            self.authed.insert(addr.to_string(), AuthState::Sent(id));
            self.outputs.push_back(LightOutput::Send { addr: addr.to_string(), frame });
        }
    }

    /// The node at `from` answered the token it was presented.
    fn on_auth_reply(&mut self, from: &str, reply: Reply) {
        match reply {
            Reply::Ok => {
                self.authed.insert(from.to_string(), AuthState::Accepted);
                self.refusals.remove(from);
            }
            // The node could not check it now (no quorum, too many unknown tokens):
            // the connection has no token; the next request presents it again.
            reply if is_retryable(&reply) => {
                self.authed.remove(from);
            }
            reply => {
                self.authed.remove(from);
                self.refusals.insert(from.to_string(), reply);
            }
        }
    }

    /// Every candidate of `flight` failed.
    fn exhausted(&mut self, now: Millis, flight: InFlight) {
        let tried = flight.candidates.join(", ");
        match flight.purpose {
            Purpose::Call(_) => {
                let message = if tried.is_empty() {
                    "no node is known: connect through a node's address".to_string()
                } else {
                    format!("no node answered (tried {tried}); is the cluster running?")
                };
                match (flight.last_error, flight.purpose) {
                    (Some(reply), purpose) => self.on_answer(now, purpose, reply),
                    (None, Purpose::Call(handle)) => {
                        let reply = error(ErrorCode::Unavailable, message);
                        self.outputs.push_back(LightOutput::NoAnswer { handle, reply });
                    }
                    (None, _) => {}
                }
            }
            Purpose::Ring if self.ring_read_at.is_none() => {
                let message = format!(
                    "cannot reach any node (tried {tried}); is the cluster running? start one \
                     with `dhrt serve`"
                );
                self.outputs.push_back(LightOutput::Unreachable { message });
            }
            Purpose::Watch(handle) => self.on_watch_unplaced(now, handle),
            Purpose::Ring | Purpose::Stats | Purpose::Unwatch | Purpose::Sync { .. } => {}
        }
    }

    /// A final answer for `purpose`.
    fn on_answer(&mut self, now: Millis, purpose: Purpose, reply: Reply) {
        match (purpose, reply) {
            (Purpose::Call(handle), reply) => {
                self.outputs.push_back(LightOutput::Reply { handle, reply });
            }
            (Purpose::Ring, Reply::Ring { members }) => {
                let first = self.ring_read_at.is_none();
                self.ring_read_at = Some(now);
                let view = RingView::new(members);
                if first || view != self.ring {
                    self.ring = view;
                    self.outputs.push_back(LightOutput::RingChanged);
                }
            }
            (Purpose::Stats, Reply::Stats(stats)) => {
                // 0: a node that predates the field (and layouts).
                if stats.replicas > 0 {
                    self.config.replicas = stats.replicas as usize;
                }
                self.layouts = KnownLayouts::admitted(stats.layouts);
            }
            // Only when a request could not even be encoded.
            (Purpose::Sync { copy, session }, reply) => {
                self.on_sync_reply(now, copy, session, reply)
            }
            (Purpose::Watch(handle), Reply::Error { code, message, .. }) => {
                self.end_sub(handle, code, message)
            }
            (Purpose::Ring, Reply::Error { code, message, .. }) if self.ring_read_at.is_none() => {
                self.outputs.push_back(LightOutput::Refused { code, message });
            }
            _ => {}
        }
    }
}

/// What a node sends a client, decoded as such: [`ClientMessage`] without the requests,
/// so the light peer carries no decoder for them.
#[derive(serde::Deserialize)]
enum Incoming {
    Response(ClientResponse),
}

/// Whether an answer means "ask another node": this one does not serve now.
fn is_retryable(reply: &Reply) -> bool {
    matches!(reply, Reply::Error { code: ErrorCode::Unavailable, .. })
}

fn error(code: ErrorCode, message: String) -> Reply {
    Reply::Error { code, message, acked: None }
}
