//! Coordinating client requests: route to the replicas, wait for the consistency asked
//! for, time out with how many answered, repair stale replicas after reads.
//!
//! A request becomes a `Pending` entry: for each key, its preference list and the
//! replicas that answered. Writes are stamped once with the coordinator's clock and sent
//! to every replica; the client is answered as soon as each key has `required`
//! acknowledgements (`one` = 1, `quorum` = ⌊n/2⌋+1, `all` = n, or a number), where n is
//! the key's replica count (N, or fewer while the cluster is smaller than N). Reads ask
//! `required` replicas — one for the data, the others for their versions (`fanout`) —
//! and answer with the newest entry once they have answered; when every replica asked
//! has answered (or the request times out), those that answered with an older entry or
//! version, or none, are sent the newest (read repair). A request that does not reach
//! its consistency within `request_timeout_ms` is answered with
//! [`ErrorCode::QuorumNotReached`] and the count of replicas that did answer; a write
//! may still have been stored by those.
//!
//! **Memory bound.** A pending request keeps its keys and values (a write, for hints;
//! a read, the replicas' answers) until every replica answered or the timeout passed, so
//! a flood of large writes to a cluster with a frozen replica would hold seconds' worth
//! of them. The bytes and the number of pending requests are bounded
//! ([`PendingLimits`]): past either, a new data request is answered at once with
//! [`ErrorCode::Unavailable`] ("the node is overloaded…; retry"), nothing written, and
//! counted in [`Coordinator::overloaded`].

//!
//! [`Coordinator`] is a machine of its own: it owns the pending requests, their timers
//! and its counters, and takes each input with what it uses of the rest of the node
//! (`Env`: the view of the ring, the membership, the replica, the clock, the request
//! numbers, the durability rule its answers pass, and the node's outputs, which it
//! writes to in order). Hints for replicas that did not acknowledge in time are handed
//! back to the node (`Coordinator::expire`), which keeps them.

use super::joint::Joint;
use super::{
    durability::Durability, hints::Hint, ids::RequestIds, skew::Skew, timers::Timers, view::View,
    ClientId, NodeConfig, NodeEvent, Output,
};
use crate::{
    clock::{Hlc, Timestamp},
    entry::{Entry, EntryLimits, NodeId, Version},
    membership::Membership,
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientResponse, Message, ReplicaMessage,
    },
    replica::Replica,
    store::{self, Store},
    Millis,
};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

mod fanout;
pub mod restamp;

/// Bounds on the requests a node coordinates at once (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    /// Bytes of keys and values the pending requests may hold together.
    pub max_bytes: usize,
    /// Pending requests at most.
    pub max_requests: usize,
}

impl Default for PendingLimits {
    /// 256 MiB, 100 000 requests.
    fn default() -> Self {
        PendingLimits { max_bytes: 256 << 20, max_requests: 100_000 }
    }
}

/// What a pending request costs besides its keys and values.
const PENDING_OVERHEAD: usize = 256;

/// What the coordinator reads and uses of the rest of the node, for one input.
pub(super) struct Env<'a, S: Store> {
    /// The ring and the catalogue: each key's replicas, the consistency levels, the
    /// collections' settings.
    pub view: &'a View,
    /// The membership: where replicas listen, whether this node's change of the ring
    /// is under way.
    pub membership: &'a Membership,
    /// The local replica, one of the keys' replicas.
    pub replica: &'a mut Replica<S>,
    /// The node's clock, which stamps writes and adopts what reads show.
    pub clock: &'a mut Hlc,
    /// The node's request numbers.
    pub ids: &'a mut RequestIds,
    /// What holds answers until the writes they acknowledge are durable.
    pub durability: &'a mut Durability,
    /// The node's outputs, written in order.
    pub outputs: &'a mut VecDeque<Output>,
    /// The node's configuration: the request timeout, the largest value, the bounds on
    /// pending requests.
    pub config: &'a NodeConfig,
    /// Whether this node's clock is off from its peers' (it coordinates no write then).
    pub skew: Option<Skew>,
    /// Whether the node waits for the cluster's view (it coordinates nothing then).
    pub awaiting_cluster: bool,
    /// The wall time of the input.
    pub wall_ms: Millis,
}

impl<S: Store> Env<'_, S> {
    /// This node.
    fn me(&self) -> NodeId {
        self.view.me
    }

    /// Sends `msg` to node `to`.
    fn send(&mut self, to: NodeId, msg: Message) {
        let addr = self.membership.member(to).map(|m| m.addr.clone()).unwrap_or_default();
        self.outputs.push_back(Output::Send { to, addr, msg });
    }

    /// The checks an entry from another node must pass at wall time `now`.
    fn entry_limits(&self, now: Millis) -> EntryLimits {
        EntryLimits {
            max_value_bytes: self.config.max_value_bytes,
            now_ms: now,
            max_offset_ms: self.clock.max_offset_ms(),
        }
    }
}

/// The requests a node is coordinating.
#[derive(Debug, Default)]
pub struct Coordinator {
    pending: BTreeMap<u64, Pending>,
    /// Bytes the pending requests hold (their `cost`s).
    bytes: usize,
    /// Data requests received from clients (see [`NodeStats::requests`]).
    requests: u64,
    /// Requests refused because the pending ones were over the limits.
    overloaded: u64,
    /// Entries and versions replicas answered that failed [`EntryLimits`].
    refused_entries: u64,
    /// Every pending request by its deadline (when it expires).
    expiries: Timers<u64>,
    /// Every pending request not yet answered by when it next needs the node: its
    /// deadline, or sooner when a narrowed read widens ([`Pending::due`]).
    wakes: Timers<u64>,
}

#[derive(Debug)]
struct KeyState {
    key: Bytes,
    /// The nodes asked: the key's owners (and, for a write, its pending replicas) that
    /// are not known to be down.
    replicas: Vec<NodeId>,
    /// The nodes whose answers count toward `required` (see [`crate::ring::placement`]):
    /// for a write the owners and pending replicas, for a read the readable owners.
    counted: Vec<NodeId>,
    required: usize,
    /// The other groups that must answer at the level too: for a read during a change
    /// of the ring, the future owners (see [`crate::ring::placement`], "Joint reads");
    /// while the collection moves, the owners under its next layout — for writes always,
    /// for reads in the move's joint phase ([`crate::ring::collection`]).
    joints: Vec<Joint>,
    /// Write: who acknowledged. Read: who answered with the data, and what.
    answers: BTreeMap<NodeId, Option<Entry>>,
    /// Read: the replicas asked so far — all of `replicas`, unless the read asks only as
    /// many as its level needs (`fanout`).
    asked: Vec<NodeId>,
    /// Read: the replicas asked for the data (the rest of `asked`, for versions).
    data_from: Vec<NodeId>,
    /// Read: the replicas whose answer about this key is still awaited.
    waiting: Vec<NodeId>,
    /// Read: who answered with only the version it holds, and which.
    versions: BTreeMap<NodeId, Option<Version>>,
    /// Write: the entry written (for hints to replicas that do not acknowledge).
    entry: Option<Entry>,
}

#[derive(Debug)]
enum Kind {
    /// `restamps`: how often the write was stamped again above a newer version a
    /// replica held (see [`restamp`]).
    Write {
        ts: crate::clock::Timestamp,
        errors: Vec<String>,
        restamps: u32,
    },
    Read {
        many: bool,
        errors: Vec<String>,
    },
}

#[derive(Debug)]
struct Pending {
    client: ClientId,
    id: u64,
    collection: String,
    deadline: Millis,
    kind: Kind,
    keys: Vec<KeyState>,
    replied: bool,
    /// Replicas that refused the write (no hint is kept for them: they would refuse it
    /// again).
    refused: Vec<NodeId>,
    /// Bytes it holds, as counted in [`Coordinator::bytes`].
    cost: usize,
    /// A read that asked fewer replicas than it could: when to ask the others if it is
    /// still unanswered ([`fanout::SPECULATE_MS`]).
    widen_at: Option<Millis>,
}

impl KeyState {
    fn count_in(&self, group: &[NodeId]) -> usize {
        let versions_only = self.versions.keys().filter(|v| !self.answers.contains_key(v));
        self.answers.keys().chain(versions_only).filter(|a| group.contains(a)).count()
    }

    /// The version of the newest data answered.
    fn best_version(&self) -> Option<Version> {
        self.answers.values().flatten().map(Entry::version).max()
    }

    /// Whether the data answered is at least as new as every version answered: else
    /// the newest is on a replica that answered only its version, and the read waits
    /// for that replica's data ([`fanout::upgrade`]).
    fn covered(&self) -> bool {
        let best = self.best_version();
        self.versions.values().flatten().all(|v| best.is_some_and(|b| b >= *v))
    }

    fn live_in(&self, group: &[NodeId], refused: &[NodeId]) -> usize {
        self.replicas.iter().filter(|n| group.contains(n) && !refused.contains(n)).count()
    }

    /// Whether the owners (for a write, owners and pending replicas) and, for a joint
    /// read, the future owners have answered enough.
    fn satisfied(&self) -> bool {
        self.count_in(&self.counted) >= self.required
            && self.covered()
            && self.joints.iter().all(|j| j.waived() || self.count_in(&j.readable) >= j.required)
    }

    /// `(answered, required)` of the group furthest from its requirement.
    fn acked(&self) -> (u32, u32) {
        let main = (self.count_in(&self.counted) as u32, self.required as u32);
        let joints = (self.joints.iter().filter(|j| !j.waived()))
            .map(|j| (self.count_in(&j.readable) as u32, j.required as u32));
        furthest(std::iter::once(main).chain(joints)).unwrap_or(main)
    }

    /// Whether the nodes that have not refused can still satisfy the request: enough
    /// owners, and enough future owners or every maker of the change.
    fn reachable(&self, refused: &[NodeId]) -> bool {
        self.live_in(&self.counted, refused) >= self.required
            && self.joints.iter().all(|j| {
                self.live_in(&j.readable, refused) >= j.required
                    || (!j.makers.is_empty() && self.live_in(&j.makers, refused) == j.makers.len())
            })
    }

    /// Before anything is sent: `(able, required, which)` of the group that cannot be
    /// satisfied, counting every node asked as able — `which` the index in `joints` plus
    /// one, 0 for the owners.
    fn shortfall(&self) -> (usize, usize, usize) {
        let main = self.live_in(&self.counted, &[]);
        if main < self.required {
            return (main, self.required, 0);
        }
        for (i, j) in self.joints.iter().enumerate() {
            let able = self.live_in(&j.readable, &[]);
            if able < j.required {
                return (able, j.required, i + 1);
            }
        }
        (main, self.required, 0)
    }

    /// Notes that `from` answered that its change of the ring is still under way.
    fn still_changing(&mut self, from: NodeId) {
        for j in &mut self.joints {
            j.still_changing(from);
        }
    }
}

impl Pending {
    fn satisfied(&self) -> bool {
        self.keys.iter().all(KeyState::satisfied)
    }

    fn complete(&self) -> bool {
        match self.kind {
            Kind::Write { .. } => self.keys.iter().all(|k| {
                let failed = k.replicas.iter().filter(|r| self.refused.contains(r)).count();
                k.answers.len() + failed >= k.replicas.len()
            }),
            Kind::Read { .. } => self.keys.iter().all(|k| k.waiting.is_empty()),
        }
    }

    /// `(answered, required)` of the key furthest from its consistency.
    fn acked(&self) -> (u32, u32) {
        furthest(self.keys.iter().map(KeyState::acked)).unwrap_or((0, 0))
    }

    /// The keys a read's answer of `len` items from `from` answers — those it was asked
    /// for the data (`data`) or for versions and has not answered, in the order asked
    /// (one question of each kind to a replica is open at a time) — no longer awaited
    /// from it. `None`, and nothing changed, for an answer of another length: it answers
    /// a question no longer awaited (see `fanout::widen`) and is ignored.
    fn answered_by(&mut self, from: NodeId, data: bool, len: usize) -> Option<Vec<usize>> {
        let asked: Vec<usize> = (0..self.keys.len())
            .filter(|&i| {
                let k = &self.keys[i];
                k.waiting.contains(&from) && k.data_from.contains(&from) == data
            })
            .collect();
        if asked.len() != len {
            return None;
        }
        for &i in &asked {
            self.keys[i].waiting.retain(|r| *r != from);
        }
        Some(asked)
    }
}

/// The `(answered, required)` pair furthest from its requirement.
fn furthest(pairs: impl Iterator<Item = (u32, u32)>) -> Option<(u32, u32)> {
    pairs.min_by_key(|(a, r)| i64::from(*a) - i64::from(*r))
}

impl Pending {
    /// When the request next needs the node while unanswered: its deadline, or its
    /// widening if sooner.
    fn due(&self) -> Millis {
        self.widen_at.map_or(self.deadline, |w| w.min(self.deadline))
    }
}

impl Coordinator {
    /// The earliest time an unanswered request needs the node (its deadline, or a
    /// narrowed read's widening): from its timers, not a scan of the pending.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.wakes.next()
    }

    /// Removes and returns the requests whose deadline passed, in request order, as
    /// they are answered.
    fn take_expired(&mut self, now: Millis) -> Vec<Pending> {
        self.expiries.due(now).into_iter().filter_map(|r| self.remove(r)).collect()
    }

    /// The requests whose widening is due by `now`, in request order.
    fn due_to_widen(&self, now: Millis) -> Vec<u64> {
        let mut due = self.wakes.due(now);
        due.retain(|r| self.pending.get(r).is_some_and(|p| p.widen_at.is_some_and(|w| w <= now)));
        due
    }

    fn insert(&mut self, req: u64, mut pending: Pending, cost: usize) {
        pending.cost = cost;
        self.bytes += cost;
        self.expiries.set(req, Some(pending.deadline));
        self.pending.insert(req, pending);
        self.settle(req);
    }

    fn remove(&mut self, req: u64) -> Option<Pending> {
        let p = self.pending.remove(&req)?;
        self.bytes = self.bytes.saturating_sub(p.cost);
        self.expiries.cancel(req);
        self.wakes.cancel(req);
        Some(p)
    }

    /// Files request `req` in [`Coordinator::wakes`] again after it was answered or
    /// widened: by when it next needs the node, or not at all once answered.
    pub(in crate::node) fn settle(&mut self, req: u64) {
        let Some(p) = self.pending.get(&req) else { return };
        self.wakes.set(req, (!p.replied).then(|| p.due()));
    }

    /// Bytes of keys and values the pending requests hold.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes
    }

    /// Requests refused at once because the pending ones were over the limits.
    pub fn overloaded(&self) -> u64 {
        self.overloaded
    }

    /// Number of requests in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Data requests received from clients.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Entries and versions replicas answered reads with that failed [`EntryLimits`].
    pub fn refused_entries(&self) -> u64 {
        self.refused_entries
    }

    /// Counts a request received from a client.
    pub(super) fn count_request(&mut self) {
        self.requests += 1;
    }

    /// Whether a new request `op` fits the bounds on pending requests (`limits`), with
    /// `scans` pages in flight besides (each may hold up to its byte budget); the error
    /// is the message for the client. Requests that are not coordinated always fit.
    pub(super) fn admit(
        &mut self,
        op: &Op,
        scans: usize,
        limits: PendingLimits,
    ) -> Result<(), String> {
        let Some(cost) = request_cost(op) else { return Ok(()) };
        let requests = self.pending.len() + scans;
        let bytes = self.bytes + scans * super::scan::BYTE_BUDGET;
        if requests >= limits.max_requests || bytes + cost > limits.max_bytes {
            self.overloaded += 1;
            return Err(format!(
                "the node is overloaded: {bytes} bytes of requests in flight ({requests} \
                 requests); retry"
            ));
        }
        Ok(())
    }
}

/// A hint for every replica that did not acknowledge a write in time.
fn keep_hints(me: NodeId, p: &Pending) -> Vec<(NodeId, Hint)> {
    let mut out = Vec::new();
    if !matches!(p.kind, Kind::Write { .. }) {
        return out;
    }
    for k in &p.keys {
        let Some(entry) = &k.entry else { continue };
        let missed =
            |r: &&NodeId| **r != me && !k.answers.contains_key(r) && !p.refused.contains(r);
        for r in k.replicas.iter().filter(missed) {
            let hint =
                Hint { collection: p.collection.clone(), key: k.key.clone(), entry: entry.clone() };
            out.push((*r, hint));
        }
    }
    out
}

fn error(id: u64, code: ErrorCode, message: impl Into<String>) -> ClientResponse {
    ClientResponse::error(id, code, message)
}

/// What a data request will hold while pending, before any answer: `None` for requests
/// that are not coordinated (stats, ring, watches…).
fn request_cost(op: &Op) -> Option<usize> {
    let bytes = match op {
        Op::Get { key, collection, .. } | Op::Del { key, collection, .. } => {
            key.len() + collection.len()
        }
        Op::GetMany { keys, collection, .. } => {
            collection.len() + keys.iter().map(|k| k.len() + 64).sum::<usize>()
        }
        Op::Set { key, value, collection, .. } => key.len() + value.len() + collection.len(),
        Op::SetMany { items, collection, .. } => {
            collection.len() + items.iter().map(|(k, v)| k.len() + v.len() + 64).sum::<usize>()
        }
        // A page's own bytes are counted while it is assembled (above); admitting it
        // takes only a request's room.
        Op::Scan { collection, .. } => collection.len(),
        _ => return None,
    };
    Some(bytes + PENDING_OVERHEAD)
}

/// Bytes a version answered to a pending read costs.
const VERSION_COST: usize = 48;

/// Bytes an entry held by a pending request costs.
fn entry_cost(e: &Entry) -> usize {
    e.value.as_ref().map_or(0, |v| v.len()) + 48
}

/// Bytes a key of a pending request holds: the key, the entry written, the answers.
fn key_cost(k: &KeyState) -> usize {
    let answers = k.answers.values().flatten().map(entry_cost).sum::<usize>();
    k.key.len() + 16 * k.replicas.len() + k.entry.as_ref().map_or(0, entry_cost) + answers
}

/// Checks a request's collection, keys and consistency; builds the per-key state.
// The error is the answer itself (128 bytes), moved once per refused request.
#[allow(clippy::result_large_err)]
fn plan<S: Store>(
    env: &Env<'_, S>,
    id: u64,
    collection: &str,
    keys: Vec<Bytes>,
    consistency: Consistency,
    intent: Intent,
) -> Result<Vec<KeyState>, ClientResponse> {
    crate::store::validate_collection(collection)
        .map_err(|e| error(id, ErrorCode::InvalidInput, e.to_string()))?;
    if keys.is_empty() {
        return Err(error(id, ErrorCode::InvalidInput, "the request names no key"));
    }
    if env.awaiting_cluster {
        return Err(error(id, ErrorCode::Unavailable, AWAITING_CLUSTER));
    }
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        crate::store::validate_key(&key)
            .map_err(|e| error(id, ErrorCode::InvalidInput, e.to_string()))?;
        let pos = env.replica.position(collection, &key);
        let placement = env.view.placement_for(collection).key(pos);
        if placement.owners.is_empty() {
            return Err(error(
                id,
                ErrorCode::Unavailable,
                "no node owns any part of the ring yet (this node is joining); retry shortly",
            ));
        }
        let level = env.view.consistency_for(collection, consistency);
        let base = level
            .required(placement.owners.len())
            .map_err(|e| error(id, ErrorCode::InvalidInput, e.to_string()))?;
        let readable = |group: &[NodeId]| -> Vec<NodeId> {
            group.iter().filter(|o| env.view.placement.readable(**o)).copied().collect()
        };
        // The level of a group of `len` nodes (all of them when it asks for more).
        let of = |len: usize| level.required(len).unwrap_or(len);
        let mut joints = Vec::new();
        let (counted, required) = match intent {
            Intent::Write => {
                // Owners and the ring's pending replicas: W + pending of them. While the
                // collection moves, W of its next layout's owners too.
                for g in &placement.next {
                    let readable = g.nodes.clone();
                    let required = of(g.nodes.len());
                    joints.push(Joint { required, readable, layout: true, ..Joint::default() });
                }
                let counted: Vec<NodeId> =
                    placement.owners.iter().chain(&placement.pending).copied().collect();
                (counted, base + placement.pending.len())
            }
            Intent::Read => {
                // Joint reads while the ring changes: a quorum of the future owners too.
                if !placement.future.is_empty() {
                    joints.push(Joint {
                        readable: readable(&placement.future),
                        required: level.required(placement.future.len()).unwrap_or(base),
                        makers: placement.makers.clone(),
                        still: Vec::new(),
                        layout: false,
                    });
                }
                // In a move's joint phase, a quorum of the next layout's owners too.
                for g in placement.next.iter().filter(|_| placement.next_joint) {
                    joints.push(Joint {
                        readable: readable(&g.nodes),
                        required: of(g.nodes.len()),
                        makers: g.makers.clone(),
                        still: Vec::new(),
                        layout: true,
                    });
                }
                (readable(&placement.owners), base)
            }
        };
        // A read asks the pending replicas too: they answer for the future owners.
        let asked = placement.write_targets();
        let replicas: Vec<NodeId> =
            asked.into_iter().filter(|r| !env.view.placement.down(*r)).collect();
        let state = KeyState {
            key,
            replicas,
            counted,
            required,
            joints,
            answers: BTreeMap::new(),
            asked: Vec::new(),
            data_from: Vec::new(),
            waiting: Vec::new(),
            versions: BTreeMap::new(),
            entry: None,
        };
        if !state.reachable(&[]) {
            let (able, required, which) = state.shortfall();
            let (verb, why) = match intent {
                Intent::Write => ("can acknowledge the write", "the others are down"),
                Intent::Read => ("can answer the read", "the others are down or re-syncing"),
            };
            let group = which.checked_sub(1).and_then(|i| state.joints.get(i));
            let (owners, whose) = match group {
                None => (placement.owners.len(), "owners of this key"),
                Some(j) if !j.layout => (
                    placement.future.len(),
                    "owners this key will have once the ring change under way is done",
                ),
                Some(j) => (
                    j.readable.len().max(j.required),
                    "owners of this key under the layout its collection moves to",
                ),
            };
            let message = format!(
                "only {able} of the {owners} {whose} {verb} ({why}); {level} needs \
                 {required}: retry, or ask for a lower consistency",
            );
            let result = Reply::Error {
                code: ErrorCode::Unavailable,
                message,
                acked: Some((able as u32, required as u32)),
            };
            return Err(ClientResponse { id, result, ts: None });
        }
        out.push(state);
    }
    Ok(out)
}

/// The answer of a node that was told to join a cluster and has not heard from it yet:
/// alone it would own every key with N = 1 and answer `quorum` by itself.
pub(super) const AWAITING_CLUSTER: &str =
    "this node has not heard from its cluster yet (joining or restarting); retry shortly";

/// Whether a request reads or writes: it decides whose answers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Read,
    Write,
}

/// The keys each replica is asked about, as indices into `keys`.
fn by_replica(keys: &[KeyState]) -> BTreeMap<NodeId, Vec<usize>> {
    let mut out: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        for r in &k.replicas {
            out.entry(*r).or_default().push(i);
        }
    }
    out
}

/// A read whose every key is settled by this node alone — its only replica, which
/// counts, with no change of the ring under way — is answered at once: what the pending
/// request would answer once this node's own answer arrived (the entry, materialized at
/// `now`), without the request's bookkeeping; with one replica there is nothing to
/// repair. Returns false, having done nothing, when a key needs another node or the
/// store failed (the full path then reports it).
fn read_locally<'k, S: Store>(
    env: &mut Env<'_, S>,
    now: Millis,
    client: ClientId,
    id: u64,
    collection: &str,
    keys: impl ExactSizeIterator<Item = &'k Bytes>,
    many: bool,
) -> bool {
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        match env.replica.get(collection, key) {
            Ok(Some(e)) => {
                // As for any answer: the reply's `ts` covers it.
                let _ = env.clock.update(e.ts, now);
                values.push(Read::of(e, now));
            }
            Ok(None) => values.push(Read::default()),
            Err(_) => return false,
        }
    }
    let resp = ClientResponse { id, result: read_reply(values, many), ts: None };
    env.outputs.push_back(Output::Reply { client, resp });
    true
}

/// Whether this node settles a request of the one key `key` by itself, every check
/// [`plan`] makes passed — what [`settled_alone`] finds of the state `plan` would build,
/// without building it: the ring has this node alone and no change announced (so it is
/// the key's only owner and write target, nothing pending or future), it is not down
/// and, for a read, counts; the level needs one answer. False sends the request the
/// general way, which answers any error.
fn alone_one<S: Store>(
    env: &Env<'_, S>,
    collection: &str,
    key: &[u8],
    consistency: Consistency,
    intent: Intent,
) -> bool {
    let me = env.me();
    let placement = env.view.placement_for(collection);
    crate::store::validate_collection(collection).is_ok()
        && crate::store::validate_key(key).is_ok()
        && !env.awaiting_cluster
        && placement.sole_owner() == Some(me)
        && !placement.now.down(me)
        && (intent == Intent::Write || placement.now.readable(me))
        && env.view.consistency_for(collection, consistency).required(1).is_ok_and(|r| r <= 1)
        && !env.membership.me().changing()
}

/// Whether this node settles every key of a request by itself: each key's only
/// replica, which counts, needed alone, with no change of the ring under way.
fn settled_alone<S: Store>(env: &Env<'_, S>, states: &[KeyState]) -> bool {
    let me = env.me();
    let alone = |k: &KeyState| {
        k.replicas == [me] && k.counted == [me] && k.required <= 1 && k.joints.is_empty()
    };
    states.iter().all(alone) && !env.membership.me().changing()
}

/// A write this node settles alone ([`settled_alone`]) is stored: its client is
/// answered without a pending request — at once by a store durable on write, else once
/// the commit covering it is durable (an error saying it was not committed if that
/// commit fails; see [`super::durability`]). What the pending request would answer, as
/// its only acknowledgement arrived.
fn written_locally<S: Store>(env: &mut Env<'_, S>, client: ClientId, id: u64, ts: Timestamp) {
    let resp = ClientResponse { id, result: Reply::Written { ts }, ts: None };
    let out = Output::Reply { client, resp };
    if env.replica.store().durable_on_write() {
        env.outputs.push_back(out);
    } else {
        env.durability.hold(env.replica.writes(), out);
    }
}

/// What a read answers of one key: its newest entry's value (none once deleted or
/// expired), timestamp and expiry.
#[derive(Debug, Default)]
struct Read {
    value: Option<Bytes>,
    ts: Option<Timestamp>,
    expires: Option<Millis>,
}

impl Read {
    /// The read of entry `e` at `now`.
    fn of(e: Entry, now: Millis) -> Read {
        let ts = Some(e.ts);
        let e = e.materialize(now);
        let expires = e.expires.filter(|_| e.value.is_some());
        Read { value: e.value, ts, expires }
    }
}

/// A read's answer from each key's newest entry: the value for one key (with its
/// timestamp and expiry), the values for many.
fn read_reply(values: Vec<Read>, many: bool) -> Reply {
    if many {
        Reply::Values { values: values.into_iter().map(|r| r.value).collect() }
    } else {
        let Read { value, ts, expires } = values.into_iter().next().unwrap_or_default();
        Reply::Value { value, ts, expires }
    }
}

/// Whether every key can still reach its consistency from the replicas that did not
/// refuse (or fail).
fn reachable(p: &Pending) -> bool {
    p.keys.iter().all(|k| k.reachable(&p.refused))
}

/// Whether a failed write failed for lack of storage: the replicas that refused it as
/// full ([`store::is_storage_full`]) are on their own too many for some key to reach
/// its consistency. Such a write is answered `storage_full`, any other
/// `quorum_not_reached`.
fn refused_for_room(p: &Pending) -> bool {
    let Kind::Write { errors, .. } = &p.kind else { return false };
    let full = errors.iter().filter(|e| store::is_storage_full(e)).count();
    full > 0 && p.keys.iter().any(|k| k.counted.len() - full.min(k.counted.len()) < k.required)
}

/// The newest of the entries answered for one key.
fn newest(k: &KeyState) -> Option<Entry> {
    k.answers.values().flatten().cloned().reduce(Entry::merge)
}

/// Sends the newest entry to every replica that answered a read with an older one.
fn read_repair<S: Store>(env: &mut Env<'_, S>, p: &Pending) {
    if !matches!(p.kind, Kind::Read { .. }) {
        return;
    }
    let me = env.me();
    let mut repairs: BTreeMap<NodeId, Vec<(Bytes, Entry)>> = BTreeMap::new();
    for k in &p.keys {
        let Some(winner) = newest(k) else { continue };
        for (replica, answer) in &k.answers {
            let stale = answer.as_ref().is_none_or(|a| winner.supersedes(a));
            if stale {
                repairs.entry(*replica).or_default().push((k.key.clone(), winner.clone()));
            }
        }
        let version = winner.version();
        for (replica, answer) in &k.versions {
            // Only what the data shows older: a version newer than any data answered (its
            // data never came) is left to anti-entropy.
            let stale = answer.is_none_or(|v| version > v);
            if stale && !k.answers.contains_key(replica) {
                repairs.entry(*replica).or_default().push((k.key.clone(), winner.clone()));
            }
        }
    }
    for (replica, records) in repairs {
        for (key, _) in &records {
            env.outputs.push_back(Output::Event(NodeEvent::ReadRepaired {
                node: replica,
                collection: p.collection.clone(),
                key: key.clone(),
            }));
        }
        if replica == me {
            if let Err(e) = env.replica.merge_batch(&p.collection, records) {
                env.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e)));
            }
        } else {
            let msg = ReplicaMessage::Repair { collection: p.collection.clone(), records };
            env.send(replica, Message::Replica(msg));
        }
    }
}

impl Coordinator {
    /// Answers requests whose deadline passed with how many replicas answered, and repairs
    /// what their reads learned.
    pub(super) fn expire<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
    ) -> Vec<(NodeId, Hint)> {
        let mut hints = Vec::new();
        for p in self.take_expired(now) {
            if !p.replied {
                let (answered, required) = p.acked();
                let message = format!(
                    "only {answered} of the {required} replicas required answered within the \
                     timeout; retry, or ask for a lower consistency"
                );
                let result = Reply::Error {
                    code: ErrorCode::QuorumNotReached,
                    message,
                    acked: Some((answered, required)),
                };
                let client = p.client;
                env.outputs.push_back(Output::Reply {
                    client,
                    resp: ClientResponse { id: p.id, result, ts: None },
                });
            }
            read_repair(env, &p);
            hints.extend(keep_hints(env.me(), &p));
        }
        hints
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_write<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        client: ClientId,
        id: u64,
        collection: String,
        items: Vec<(Bytes, Option<Bytes>)>,
        consistency: Consistency,
        ttl_ms: Option<u64>,
    ) {
        if let Some(skew) = env.skew {
            let msg = format!("this node does not coordinate writes now: {skew}");
            let resp = error(id, ErrorCode::Unavailable, msg);
            return env.outputs.push_back(Output::Reply { client, resp });
        }
        if let Some((_, Some(v))) = items
            .iter()
            .find(|(_, v)| v.as_ref().is_some_and(|v| v.len() > env.config.max_value_bytes))
        {
            let msg = format!(
                "value of {} bytes is over the {} byte limit",
                v.len(),
                env.config.max_value_bytes
            );
            return env
                .outputs
                .push_back(Output::Reply { client, resp: error(id, ErrorCode::TooLarge, msg) });
        }
        let settings = env.view.catalogue.get(&collection);
        // A collection's default time to live applies to writes of values that give none
        // (never to a delete's tombstone).
        let ttl_ms = match settings.and_then(|s| s.ttl_ms) {
            Some(default) if ttl_ms.is_none() && items.iter().all(|(_, v)| v.is_some()) => {
                Some(default)
            }
            _ => ttl_ms,
        };
        if let Some(settings) = settings {
            if let Err(msg) = super::quota::check(
                env.replica,
                env.view,
                env.wall_ms,
                &collection,
                settings,
                &items,
            ) {
                let resp = error(id, ErrorCode::QuotaExceeded, msg);
                return env.outputs.push_back(Output::Reply { client, resp });
            }
        }
        let ts = env.clock.now(now);
        let origin = env.me();
        let expires = ttl_ms.map(|t| ts.physical_ms().saturating_add(t));
        let entry = |value: Option<Bytes>| Entry { value, ts, origin, expires };
        // One key this node settles alone, the commonest write, is stored and answered
        // without a pending request or any per-key state, unless its merge lost to a newer
        // version (re-stamped as below) or failed: then on as any write.
        let mut local = None;
        if let [(key, value)] = &items[..] {
            if alone_one(env, &collection, key, consistency, Intent::Write) {
                match restamp::merge_local_one(
                    env.replica,
                    &collection,
                    key.clone(),
                    entry(value.clone()),
                ) {
                    Ok(None) => return written_locally(env, client, id, ts),
                    other => local = Some(other),
                }
            }
        }
        let keys: Vec<Bytes> = items.iter().map(|(k, _)| k.clone()).collect();
        let mut states = match plan(env, id, &collection, keys, consistency, Intent::Write) {
            Ok(s) => s,
            Err(resp) => return env.outputs.push_back(Output::Reply { client, resp }),
        };
        let entries: Vec<Entry> = items.into_iter().map(|(_, v)| entry(v)).collect();
        // When this node is every key's only replica there is no other node to ask and
        // nothing to hint: the write is stored, and answered, without a pending request
        // unless its merge lost to a newer version (re-stamped as below) or failed.
        if local.is_none() && settled_alone(env, &states) {
            let keys = states.iter().map(|k| k.key.clone());
            let records = keys.zip(entries.iter().cloned()).collect();
            match restamp::merge_local(env.replica, &collection, records) {
                Ok(None) => return written_locally(env, client, id, ts),
                other => local = Some(other),
            }
        }
        let req = env.ids.next(crate::node::ids::Concern::Coordinator);
        for (k, e) in states.iter_mut().zip(&entries) {
            k.entry = Some(e.clone());
        }
        let mut errors = Vec::new();
        let mut refused = Vec::new();
        let newer = match local {
            None => restamp::dispatch(
                env,
                req,
                &collection,
                &mut states,
                &entries,
                &mut errors,
                &mut refused,
            ),
            Some(Ok(newer)) => newer,
            Some(Err(e)) => {
                env.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e.clone())));
                errors.push(e.to_string());
                refused.push(env.me());
                None
            }
        };
        let pending = Pending {
            client,
            id,
            collection,
            deadline: now + env.config.request_timeout_ms,
            kind: Kind::Write { ts, errors, restamps: 0 },
            keys: states,
            replied: false,
            refused,
            cost: 0,
            widen_at: None,
        };
        let cost = PENDING_OVERHEAD
            + pending.collection.len()
            + pending.keys.iter().map(key_cost).sum::<usize>();
        self.insert(req, pending, cost);
        match newer {
            Some(t) => self.on_newer(env, now, origin, req, t),
            None => self.progress(env, now, req),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_read<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        client: ClientId,
        id: u64,
        collection: String,
        keys: Vec<Bytes>,
        consistency: Consistency,
        many: bool,
    ) {
        // One key this node settles alone, the commonest read, skips building its per-key
        // state.
        if matches!(&keys[..], [key] if alone_one(env, &collection, key, consistency, Intent::Read))
            && read_locally(env, now, client, id, &collection, keys.iter(), many)
        {
            return;
        }
        let mut states = match plan(env, id, &collection, keys, consistency, Intent::Read) {
            Ok(s) => s,
            Err(resp) => return env.outputs.push_back(Output::Reply { client, resp }),
        };
        if settled_alone(env, &states) {
            let keys = states.iter().map(|k| &k.key);
            if read_locally(env, now, client, id, &collection, keys, many) {
                return;
            }
        }
        let req = env.ids.next(crate::node::ids::Concern::Coordinator);
        let me = env.me();
        let mut errors = Vec::new();
        let mut refused = Vec::new();
        fanout::narrow(env, &mut states);
        for (replica, (indices, data)) in fanout::asks(&mut states) {
            if replica == me {
                let entries: Result<Vec<_>, _> =
                    indices.iter().map(|&i| env.replica.get(&collection, &states[i].key)).collect();
                match entries {
                    Ok(entries) => {
                        let changing = env.membership.me().changing();
                        for (i, entry) in indices.into_iter().zip(entries) {
                            if let Some(e) = &entry {
                                // So the answer's `ts` covers it (entries synced in may not
                                // have passed through the clock); refused only if far ahead.
                                let _ = env.clock.update(e.ts, now);
                            }
                            states[i].answers.insert(me, entry);
                            states[i].waiting.retain(|r| *r != me);
                            if changing {
                                states[i].still_changing(me);
                            }
                        }
                    }
                    Err(e) => {
                        // A read error is a failed answer, never "absent".
                        errors.push(format!("{me}: {e}"));
                        refused.push(me);
                        for &i in &indices {
                            states[i].waiting.retain(|r| *r != me);
                        }
                        env.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e)));
                    }
                }
            } else {
                let keys = indices.iter().map(|&i| states[i].key.clone()).collect();
                fanout::send(env, replica, req, &collection, keys, data);
            }
        }
        // Replicas not asked, or asked only for versions: widened after a delay.
        let narrowed = states
            .iter()
            .any(|k| k.asked.len() < k.replicas.len() || k.data_from.len() < k.asked.len());
        let pending = Pending {
            client,
            id,
            collection,
            deadline: now + env.config.request_timeout_ms,
            kind: Kind::Read { many, errors },
            keys: states,
            replied: false,
            refused,
            cost: 0,
            widen_at: narrowed.then_some(now + fanout::SPECULATE_MS),
        };
        let cost = PENDING_OVERHEAD
            + pending.collection.len()
            + pending.keys.iter().map(key_cost).sum::<usize>();
        let widen_now = !pending.refused.is_empty() && narrowed;
        self.insert(req, pending, cost);
        if widen_now {
            // This node's own read failed: the replicas not asked are asked at once.
            self.widen(env, req);
        }
        self.progress(env, now, req);
    }

    /// A replica acknowledged (or refused) a write.
    pub(super) fn on_write_ack<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        req: u64,
        error: Option<String>,
        newer: Option<crate::clock::Timestamp>,
    ) {
        if let (None, Some(t)) = (&error, newer) {
            return self.on_newer(env, now, from, req, t);
        }
        let Some(p) = self.pending.get_mut(&req) else { return };
        let Kind::Write { errors, .. } = &mut p.kind else { return };
        match error {
            Some(e) => {
                errors.push(format!("{from}: {e}"));
                p.refused.push(from);
            }
            None => {
                for k in p.keys.iter_mut().filter(|k| k.replicas.contains(&from)) {
                    k.answers.insert(from, None);
                }
            }
        }
        self.progress(env, now, req);
    }

    /// A replica answered a read.
    pub(super) fn on_read_reply<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        req: u64,
        entries: Vec<Option<Entry>>,
        changing: bool,
    ) {
        // A replica's answer is merged locally by read repair: it passes the same checks
        // as a replica write. An entry refused (stamped too far ahead of this node's clock,
        // say) is no answer for its key — never an absence, which could hide a write
        // acknowledged through nodes whose clocks are right.
        let limits = env.entry_limits(now);
        let Some(p) = self.pending.get_mut(&req) else { return };
        if !matches!(p.kind, Kind::Read { .. }) || p.refused.contains(&from) {
            return;
        }
        let collection_ok = limits.check_collection(&p.collection).is_ok();
        let mut refused = 0;
        let Some(asked) = p.answered_by(from, true, entries.len()) else { return };
        for (i, entry) in asked.into_iter().zip(entries) {
            let k = &mut p.keys[i];
            k.versions.remove(&from);
            if entry.as_ref().is_some_and(|e| !collection_ok || limits.check(&k.key, e).is_err()) {
                refused += 1;
                continue;
            }
            if let Some(e) = &entry {
                // Checked, so adopting cannot fail: a write after this read stamps later.
                let _ = env.clock.update(e.ts, now);
            }
            let bytes = entry.as_ref().map_or(0, entry_cost);
            k.answers.insert(from, entry);
            if changing {
                k.still_changing(from);
            }
            p.cost += bytes;
            self.bytes += bytes;
        }
        self.refused_entries += refused;
        self.progress(env, now, req);
    }

    /// A replica could not read its store: a failed answer for every key it holds.
    pub(super) fn on_read_failed<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        req: u64,
        error: String,
    ) {
        let Some(p) = self.pending.get_mut(&req) else { return };
        let Kind::Read { errors, .. } = &mut p.kind else { return };
        if p.refused.contains(&from) || !p.keys.iter().any(|k| k.replicas.contains(&from)) {
            return;
        }
        errors.push(format!("{from}: {error}"));
        p.refused.push(from);
        for k in p.keys.iter_mut() {
            k.answers.remove(&from);
            k.versions.remove(&from);
            k.waiting.retain(|r| *r != from);
        }
        // A replica failed: those not asked yet are asked now.
        self.widen(env, req);
        self.progress(env, now, req);
    }

    /// A replica answered a read with the versions it holds (`fanout`).
    pub(super) fn on_versions_reply<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        req: u64,
        versions: Vec<Option<Version>>,
        changing: bool,
    ) {
        let limits = env.entry_limits(now);
        let Some(p) = self.pending.get_mut(&req) else { return };
        if !matches!(p.kind, Kind::Read { .. }) || p.refused.contains(&from) {
            return;
        }
        let Some(asked) = p.answered_by(from, false, versions.len()) else { return };
        for (i, version) in asked.into_iter().zip(versions) {
            // A version stamped too far ahead is no answer (as an entry would be refused).
            if version.is_some_and(|v| limits.check_ts(v.ts).is_err()) {
                self.refused_entries += 1;
                continue;
            }
            p.cost += VERSION_COST;
            self.bytes += VERSION_COST;
            let k = &mut p.keys[i];
            k.versions.insert(from, version);
            if changing {
                k.still_changing(from);
            }
        }
        self.progress(env, now, req);
    }

    /// This node's own commit of write `req` failed: its acknowledgement is a refusal. The
    /// client is told the write was not committed when the other replicas cannot make up
    /// the consistency asked for.
    pub(super) fn on_local_commit_failed<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        req: u64,
        reason: &str,
    ) {
        let me = env.me();
        let Some(p) = self.pending.get_mut(&req) else { return };
        let Kind::Write { errors, .. } = &mut p.kind else { return };
        errors.push(format!("{me}: the write was not committed ({reason})"));
        p.refused.push(me);
        if !p.replied && !reachable(p) {
            p.replied = true;
            let resp = error(
                p.id,
                ErrorCode::Unavailable,
                format!("the write was not committed ({reason}); retry it"),
            );
            let client = p.client;
            env.outputs.push_back(Output::Reply { client, resp });
        }
        self.progress(env, now, req);
    }

    /// Answers the client once the consistency is reached; repairs and forgets the request
    /// once every replica answered.
    fn progress<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis, req: u64) {
        self.upgrade(env, req);
        let Some(p) = self.pending.get_mut(&req) else { return };
        if !p.replied {
            let failed = match &p.kind {
                Kind::Write { errors, .. } | Kind::Read { errors, .. } => {
                    (!reachable(p)).then(|| errors.join("; "))
                }
            };
            if let (Some(why), Kind::Read { .. }) = (&failed, &p.kind) {
                p.replied = true;
                let (answered, required) = p.acked();
                let resp = ClientResponse {
                    id: p.id,
                    result: Reply::Error {
                        code: ErrorCode::Internal,
                        message: format!(
                            "storage failure: too many replicas could not read the key: {why}"
                        ),
                        acked: Some((answered, required)),
                    },
                    ts: None,
                };
                let client = p.client;
                env.outputs.push_back(Output::Reply { client, resp });
            } else if let Some(why) = failed {
                p.replied = true;
                let (answered, required) = p.acked();
                let (code, message) = if refused_for_room(p) {
                    let m = format!("the write was refused for lack of storage: {why}");
                    (ErrorCode::StorageFull, m)
                } else {
                    let m = format!("the write was refused by too many replicas: {why}");
                    (ErrorCode::QuorumNotReached, m)
                };
                let resp = ClientResponse {
                    id: p.id,
                    result: Reply::Error { code, message, acked: Some((answered, required)) },
                    ts: None,
                };
                let client = p.client;
                env.outputs.push_back(Output::Reply { client, resp });
            } else if p.satisfied() {
                p.replied = true;
                let result = match &p.kind {
                    Kind::Write { ts, .. } => Reply::Written { ts: *ts },
                    Kind::Read { many, .. } => {
                        let values = p
                            .keys
                            .iter()
                            .map(|k| newest(k).map_or_else(Read::default, |e| Read::of(e, now)))
                            .collect();
                        read_reply(values, *many)
                    }
                };
                let (client, resp) = (p.client, ClientResponse { id: p.id, result, ts: None });
                env.outputs.push_back(Output::Reply { client, resp });
            }
        }
        self.settle(req);
        let done = self.pending.get(&req).is_some_and(|p| p.replied && p.complete());
        if done {
            if let Some(p) = self.remove(req) {
                read_repair(env, &p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        node::{Node, NodeConfig},
        store::MemStore,
    };

    /// Whether the cheap check for one key this node settles alone agrees with what
    /// `plan` builds and `settled_alone` finds of it (a failed plan: not alone).
    fn agrees(node: &mut Node<MemStore>, collection: &str, key: &[u8]) -> usize {
        let (_, env) = node.coordinator_parts();
        let mut alone = 0;
        let levels = [
            Consistency::Default,
            Consistency::One,
            Consistency::Quorum,
            Consistency::All,
            Consistency::N(1),
            Consistency::N(2),
        ];
        for level in levels {
            for intent in [Intent::Read, Intent::Write] {
                let keys = vec![Bytes::copy_from_slice(key)];
                let general = plan(&env, 1, collection, keys, level, intent)
                    .is_ok_and(|states| settled_alone(&env, &states));
                let quick = alone_one(&env, collection, key, level, intent);
                assert_eq!(quick, general, "{collection:?} {level:?} {intent:?}");
                alone += usize::from(quick);
            }
        }
        alone
    }

    fn serving(node: &mut Node<MemStore>) {
        for now in (0..5_000).step_by(100) {
            node.tick(now);
            node.flush(now).unwrap();
            while node.poll_output().is_some() {}
        }
    }

    #[test]
    fn the_check_for_one_key_settled_alone_agrees_with_the_plan() {
        let config = || NodeConfig::new(NodeId(1), "a:1");
        let long_key = vec![7u8; 70_000];
        let keys: [&[u8]; 3] = [b"k", b"", &long_key];
        let cases = |node: &mut Node<MemStore>| {
            let mut alone = 0;
            for collection in ["c", "", "ordered.c"] {
                for key in keys {
                    alone += agrees(node, collection, key);
                }
            }
            alone
        };
        // Not serving yet: nothing is settled alone.
        let mut node = Node::new(config(), MemStore::new()).unwrap();
        assert_eq!(cases(&mut node), 0);
        // Serving alone: one key at every level that one answer satisfies.
        let mut node = Node::new(config(), MemStore::new()).unwrap();
        serving(&mut node);
        assert!(cases(&mut node) > 0, "a lone node settles valid keys alone");
        // Told to join a cluster it has not heard from: not alone any more.
        node.join(5_000, "b:1");
        assert_eq!(cases(&mut node), 0);
    }
}
