//! Chord (Stoica et al., IEEE/ACM ToN 2003) as a pure state machine, one per vnode.
//!
//! A [`ChordNode`] keeps the classic routing state — predecessor, a successor list of
//! length r, and 64 fingers (`finger[i]` = successor of `me + 2^i`) — and changes it only
//! in answer to `tick(now)`, `handle(now, from, msg)` and the calls below, emitting
//! messages and lookup results through [`ChordNode::poll_output`]. The simulator
//! delivers messages and calls `tick` at [`ChordNode::next_deadline`]. It is research
//! code — the Chord paper's experiments (`docs/simulation.md`) — used by neither the
//! node nor the light peer, which route in one hop from the full token table
//! ([`crate::ring::RingTable`]); so it lives here, behind the `sim` feature, and its
//! messages are not part of the wire protocol.
//!
//! - **Lookups are iterative**, as in the paper's simulator: the origin asks one node at a
//!   time where to go next ([`ChordMessage::FindNext`]) and keeps the alternatives, so a
//!   node that does not answer within `rpc_timeout_ms` costs a *timeout* and the lookup
//!   continues with the next-best node. A node answers [`NextHop::Owner`] when the target
//!   lies in `(its predecessor, itself]`, [`NextHop::Successors`] when it lies between it
//!   and its successor, and otherwise [`NextHop::Closer`] with the fingers and successors
//!   that most closely precede the target. When the origin probes a successor list after a
//!   timeout, the first node that answers is the owner: the ranges of failed nodes pass to
//!   their live successor.
//! - **Path length** counts the remote nodes that answered a lookup; the origin itself is
//!   not counted, the owner is. In a stable ring it is about ½·log2 N + 1 (the paper's
//!   ½·log2 N counts fingers followed; the +1 is the owner's answer).
//! - **Stabilization** (`stabilize`, `notify`, `fix_fingers`, `check_predecessor`) runs on
//!   jittered timers, or not at all when the config turns it off (the paper's failure
//!   experiment). A successor that does not answer is dropped and the next in the list
//!   takes its place.
//! - **Join** looks up the joiner's own position through any member; **leave** tells the
//!   predecessor and successor so they patch around the leaver at once.

use crate::{
    hash::{between_open, Interval, Position},
    ring::{RingTable, Vnode},
    rng::Rng,
    sim::chord::{ChordMessage, NextHop},
    Millis,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Number of fingers: one per bit of a ring position.
pub const FINGERS: usize = 64;

/// Most alternatives a lookup keeps queued (new advice first, older fallbacks after).
const MAX_CANDIDATES: usize = 48;

/// Tunables of a Chord node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChordConfig {
    /// Length r of the successor list.
    pub successors: usize,
    /// Range `(min, max)` of the jittered stabilize period; `None` turns stabilization,
    /// finger fixing and predecessor checks off.
    pub stabilize_ms: Option<(Millis, Millis)>,
    /// How long to wait for an answer before counting a timeout.
    pub rpc_timeout_ms: Millis,
    /// Largest number of nodes a lookup may contact before it fails.
    pub max_lookup_hops: u32,
    /// How many alternatives a node offers in a [`NextHop::Closer`] answer.
    pub closer_alternatives: usize,
}

impl Default for ChordConfig {
    fn default() -> Self {
        ChordConfig {
            successors: 16,
            stabilize_ms: Some((15_000, 45_000)),
            rpc_timeout_ms: 500,
            max_lookup_hops: 128,
            closer_alternatives: 8,
        }
    }
}

impl ChordConfig {
    /// The paper's successor list length for a ring of about `n` nodes: r = 2·log2 N.
    pub fn successors_for(n: usize) -> usize {
        (2.0 * (n.max(2) as f64).log2()).ceil() as usize
    }
}

/// Identifies a lookup started by [`ChordNode::lookup`].
pub type LookupId = u64;

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupResult {
    /// Which lookup.
    pub id: LookupId,
    /// The position looked up.
    pub target: Position,
    /// The owner found, or `None` when the lookup failed (no live candidate left, or too
    /// many hops).
    pub owner: Option<Vnode>,
    /// Remote nodes that answered (the path length).
    pub hops: u32,
    /// Nodes that did not answer in time.
    pub timeouts: u32,
    /// When it started and ended (the driver's clock).
    pub started: Millis,
    /// When it ended.
    pub finished: Millis,
}

/// What a Chord node asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChordOutput {
    /// Send `msg` to the vnode `to`.
    Send {
        /// The destination vnode.
        to: Vnode,
        /// The message.
        msg: ChordMessage,
    },
    /// A lookup started with [`ChordNode::lookup`] finished.
    Lookup(LookupResult),
    /// The join completed: the node has a successor and serves lookups.
    Joined,
    /// The join failed (no member answered); call [`ChordNode::join`] again.
    JoinFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Client,
    Join,
    Finger(usize),
}

#[derive(Debug, Clone)]
struct Lookup {
    target: Position,
    purpose: Purpose,
    /// Nodes still to try, best first.
    candidates: VecDeque<Vnode>,
    /// Successor lists learned on the way: `(node, its successors)`. When a node of such a
    /// list answers and the target lies between the list's node and it, while every node
    /// before it in the list timed out, it owns the target: the ranges of failed nodes
    /// pass to their live successor.
    successor_lists: Vec<(Vnode, Vec<Vnode>)>,
    tried: BTreeSet<Vnode>,
    timed_out: BTreeSet<Vnode>,
    /// A live node that a successor list named as the owner but that did not confirm
    /// (its predecessor is unknown or stale): plain Chord's answer, used when nothing
    /// better turns up. Stabilization corrects the ring behind it.
    fallback: Option<Vnode>,
    hops: u32,
    timeouts: u32,
    started: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Lookup(LookupId),
    Stabilize,
    CheckPredecessor,
}

#[derive(Debug, Clone)]
struct Pending {
    to: Vnode,
    deadline: Millis,
    call: Call,
}

/// Counters of a node's Chord traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChordStats {
    /// Messages sent.
    pub sent: u64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Stabilize rounds run.
    pub stabilizations: u64,
}

/// One vnode's Chord state.
#[derive(Debug, Clone)]
pub struct ChordNode {
    me: Vnode,
    config: ChordConfig,
    rng: Rng,
    predecessor: Option<Vnode>,
    successors: Vec<Vnode>,
    fingers: Vec<Option<Vnode>>,
    next_finger: usize,
    next_req: u64,
    pending: BTreeMap<u64, Pending>,
    lookups: BTreeMap<LookupId, Lookup>,
    next_lookup: LookupId,
    stabilize_at: Option<Millis>,
    joined: bool,
    join_via: Option<Vnode>,
    table: Option<RingTable>,
    outbox: VecDeque<ChordOutput>,
    stats: ChordStats,
}

impl ChordNode {
    /// A node alone in its own ring (it owns everything), as the first member.
    pub fn new(me: Vnode, config: ChordConfig, seed: u64) -> Self {
        ChordNode {
            me,
            config,
            rng: Rng::new(seed),
            predecessor: None,
            successors: Vec::new(),
            fingers: vec![None; FINGERS],
            next_finger: 0,
            next_req: 1,
            pending: BTreeMap::new(),
            lookups: BTreeMap::new(),
            next_lookup: 1,
            stabilize_at: None,
            joined: true,
            join_via: None,
            table: None,
            outbox: VecDeque::new(),
            stats: ChordStats::default(),
        }
    }

    /// A node of a stable ring: routing state computed from the whole sorted ring
    /// `ring` (which must contain `me`), as the paper's experiments start.
    pub fn stabilized(me: Vnode, ring: &[Vnode], config: ChordConfig, seed: u64) -> Self {
        let mut node = ChordNode::new(me, config, seed);
        let Ok(i) = ring.binary_search(&me) else { return node };
        let n = ring.len();
        if n > 1 {
            node.predecessor = Some(ring[(i + n - 1) % n]);
            node.successors =
                (1..n).map(|k| ring[(i + k) % n]).take(config.successors.max(1)).collect();
            for f in 0..FINGERS {
                let start = me.pos.wrapping_add(1u64 << f);
                let j = ring.partition_point(|v| v.pos < start);
                node.fingers[f] = Some(ring[if j == n { 0 } else { j }]);
            }
        }
        node
    }

    /// Switches to full-membership routing with `table` (the tokens of every serving
    /// member, from [`crate::membership`]), or back to Chord routing with `None`. With a
    /// table, a lookup goes straight to the owner the table names — one hop — and a node
    /// answers lookups from its table rather than its fingers. Ownership is per physical
    /// node: any token of this node's owner counts.
    pub fn set_table(&mut self, table: Option<RingTable>) {
        self.table = table;
    }

    /// This vnode.
    pub fn me(&self) -> Vnode {
        self.me
    }

    /// The current predecessor.
    pub fn predecessor(&self) -> Option<Vnode> {
        self.predecessor
    }

    /// The successor list, nearest first (empty when alone).
    pub fn successors(&self) -> &[Vnode] {
        &self.successors
    }

    /// The immediate successor (myself when alone).
    pub fn successor(&self) -> Vnode {
        self.successors.first().copied().unwrap_or(self.me)
    }

    /// The finger table (`None` where not yet known).
    pub fn fingers(&self) -> &[Option<Vnode>] {
        &self.fingers
    }

    /// Whether the node has joined (always true for the first member).
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Traffic counters.
    pub fn stats(&self) -> ChordStats {
        self.stats
    }

    /// The interval this vnode believes it owns: `(predecessor, me]`.
    pub fn owned(&self) -> Option<Interval> {
        self.predecessor.map(|p| Interval::new(p.pos, self.me.pos))
    }

    /// Starts timers; call once when the driver starts the node.
    pub fn start(&mut self, now: Millis) {
        self.schedule_stabilize(now);
    }

    /// Joins the ring through `known`, any member. A join that finds no owner (the member
    /// did not answer) is retried at every stabilize period until it succeeds.
    pub fn join(&mut self, now: Millis, known: Vnode) {
        self.joined = false;
        self.join_via = Some(known);
        self.predecessor = None;
        self.successors.clear();
        self.fingers.iter_mut().for_each(|f| *f = None);
        let id = self.new_lookup(now, self.me.pos, Purpose::Join);
        if let Some(l) = self.lookups.get_mut(&id) {
            l.candidates.push_back(known);
        }
        self.advance(now, id);
        self.schedule_stabilize(now);
    }

    /// Leaves gracefully: tells the predecessor and successor, then forgets the ring.
    pub fn leave(&mut self) {
        let msg = ChordMessage::Leaving {
            predecessor: self.predecessor,
            successors: self.successors.clone(),
        };
        if let Some(s) = self.successors.first().copied() {
            self.send(s, msg.clone());
        }
        if let Some(p) = self.predecessor.filter(|p| Some(p) != self.successors.first()) {
            self.send(p, msg);
        }
        self.predecessor = None;
        self.successors.clear();
        self.pending.clear();
        self.lookups.clear();
        self.stabilize_at = None;
    }

    /// Starts a lookup of the owner of `target`; the result arrives as
    /// [`ChordOutput::Lookup`].
    pub fn lookup(&mut self, now: Millis, target: Position) -> LookupId {
        let id = self.new_lookup(now, target, Purpose::Client);
        self.route_locally(now, id);
        id
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<ChordOutput> {
        self.outbox.pop_front()
    }

    /// When [`ChordNode::tick`] next has work: a call timing out or a timer firing.
    pub fn next_deadline(&self) -> Option<Millis> {
        let calls = self.pending.values().map(|p| p.deadline).min();
        match (calls, self.stabilize_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires due timers and times out calls.
    pub fn tick(&mut self, now: Millis) {
        let expired: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(r, _)| *r).collect();
        for req in expired {
            if let Some(p) = self.pending.remove(&req) {
                self.stats.timeouts += 1;
                self.on_timeout(now, p);
            }
        }
        if self.stabilize_at.is_some_and(|t| t <= now) {
            self.stabilize_at = None;
            match self.join_via.filter(|_| !self.joined) {
                Some(known) => {
                    let has_join = self.lookups.values().any(|l| l.purpose == Purpose::Join);
                    if !has_join {
                        self.join(now, known);
                    }
                }
                None => {
                    self.stabilize(now);
                    self.fix_fingers(now);
                    self.check_predecessor(now);
                }
            }
            self.schedule_stabilize(now);
        }
    }

    /// Handles a message from vnode `from`.
    pub fn handle(&mut self, now: Millis, from: Vnode, msg: ChordMessage) {
        match msg {
            ChordMessage::FindNext { req, target } => {
                let hop = self.next_hop(target);
                self.send(from, ChordMessage::Next { req, hop });
            }
            ChordMessage::Next { req, hop } => {
                let Some(p) = self.take_pending(req, from) else { return };
                if let Call::Lookup(id) = p.call {
                    self.on_next(now, id, from, hop);
                }
            }
            ChordMessage::GetNeighbors { req } => {
                let msg = ChordMessage::Neighbors {
                    req,
                    predecessor: self.predecessor,
                    successors: self.successors.clone(),
                };
                self.send(from, msg);
            }
            ChordMessage::Neighbors { req, predecessor, successors } => {
                if self.take_pending(req, from).is_some() {
                    self.on_neighbors(from, predecessor, successors);
                }
            }
            ChordMessage::Notify => self.on_notify(from),
            ChordMessage::Ping { req } => self.send(from, ChordMessage::Pong { req }),
            ChordMessage::Pong { req } => {
                self.take_pending(req, from);
            }
            ChordMessage::Leaving { predecessor, successors } => {
                self.on_leaving(from, predecessor, successors)
            }
        }
    }

    // --- routing -----------------------------------------------------------------------

    /// What this node tells a lookup for `target`.
    fn next_hop(&self, target: Position) -> NextHop {
        if let Some(table) = self.table.as_ref().filter(|t| !t.is_empty()) {
            return self.next_hop_by_table(table, target);
        }
        let alone = self.successors.is_empty();
        let owns = match self.predecessor {
            Some(p) => Interval::new(p.pos, self.me.pos).contains(target),
            None => alone,
        };
        if owns || alone {
            return NextHop::Owner;
        }
        if Interval::new(self.me.pos, self.successor().pos).contains(target) {
            return NextHop::Successors(self.successors.clone());
        }
        NextHop::Closer {
            fingers: self.closest_preceding(target),
            successors: self.successors.clone(),
            predecessor: self.predecessor,
        }
    }

    /// Full-membership routing: the table's owner, with the next members' tokens as
    /// fallbacks (a lookup that finds the owner dead moves on to its successors).
    fn next_hop_by_table(&self, table: &RingTable, target: Position) -> NextHop {
        let Some(owner) = table.successor(target) else { return NextHop::Owner };
        if owner.node == self.me.node {
            return NextHop::Owner;
        }
        let mut successors = vec![owner];
        let vnodes = table.vnodes();
        let start = vnodes.partition_point(|v| v.pos < owner.pos);
        for k in 1..vnodes.len() {
            if successors.len() >= self.config.successors.max(1) {
                break;
            }
            let v = vnodes[(start + k) % vnodes.len()];
            if successors.iter().all(|s| s.node != v.node) {
                successors.push(v);
            }
        }
        NextHop::Successors(successors)
    }

    /// Fingers strictly between me and `target`, closest to the target first: Chord's
    /// `closest_preceding_node` and its runners-up.
    fn closest_preceding(&self, target: Position) -> Vec<Vnode> {
        let mut known: Vec<Vnode> = Vec::with_capacity(self.config.closer_alternatives);
        // Fingers are ordered by distance from me, so walking them backwards visits the
        // closest-preceding ones first.
        for f in self.fingers.iter().rev().flatten() {
            if known.len() >= self.config.closer_alternatives.max(1) {
                break;
            }
            if between_open(self.me.pos, f.pos, target) && !known.contains(f) {
                known.push(*f);
            }
        }
        known
    }

    fn new_lookup(&mut self, now: Millis, target: Position, purpose: Purpose) -> LookupId {
        let id = self.next_lookup;
        self.next_lookup += 1;
        let lookup = Lookup {
            target,
            purpose,
            candidates: VecDeque::new(),
            successor_lists: Vec::new(),
            tried: BTreeSet::new(),
            timed_out: BTreeSet::new(),
            fallback: None,
            hops: 0,
            timeouts: 0,
            started: now,
        };
        self.lookups.insert(id, lookup);
        id
    }

    /// Starts a lookup from this node's own state.
    fn route_locally(&mut self, now: Millis, id: LookupId) {
        let Some(target) = self.lookups.get(&id).map(|l| l.target) else { return };
        let me = self.me;
        match self.next_hop(target) {
            NextHop::Owner => return self.finish(now, id, Some(me)),
            NextHop::Successors(list) => self.learn(id, me, Vec::new(), list),
            NextHop::Closer { fingers, successors, .. } => self.learn(id, me, fingers, successors),
        }
        self.advance(now, id);
    }

    /// Records `from`'s advice: its fingers to try first, then its successor list.
    fn learn(&mut self, id: LookupId, from: Vnode, fingers: Vec<Vnode>, successors: Vec<Vnode>) {
        let Some(l) = self.lookups.get_mut(&id) else { return };
        // New advice first; older alternatives stay behind it as fallbacks, up to a bound.
        // This node may be among them: it is the owner when the nodes before it in a list
        // are dead.
        let mut next: VecDeque<Vnode> = VecDeque::with_capacity(MAX_CANDIDATES);
        let mut seen: BTreeSet<Vnode> = BTreeSet::new();
        for v in fingers.iter().chain(successors.iter()).chain(l.candidates.iter()) {
            if next.len() >= MAX_CANDIDATES {
                break;
            }
            if !l.tried.contains(v) && seen.insert(*v) {
                next.push_back(*v);
            }
        }
        l.candidates = next;
        l.successor_lists.push((from, successors));
    }

    /// Whether `from` inherits the target: it follows a node whose successor list holds
    /// it, the target lies between that node and `from`, and the nodes before `from` in
    /// the list (at least one) all timed out. (A node first in the list that says the
    /// target is not its own knows of a newer predecessor; its advice is followed.)
    fn inherits(l: &Lookup, from: Vnode) -> bool {
        l.successor_lists.iter().any(|(anchor, list)| {
            let Some(at) = list.iter().position(|v| *v == from) else { return false };
            at > 0
                && Interval::new(anchor.pos, from.pos).contains(l.target)
                && list[..at].iter().all(|v| l.timed_out.contains(v))
        })
    }

    /// Sends the lookup to its next candidate, or ends it when none is left.
    fn advance(&mut self, now: Millis, id: LookupId) {
        let (me, max_hops) = (self.me, self.config.max_lookup_hops);
        let Some(l) = self.lookups.get_mut(&id) else { return };
        let next = loop {
            if l.hops + l.timeouts >= max_hops {
                return self.finish(now, id, None);
            }
            let Some(next) = l.candidates.pop_front() else {
                return self.finish(now, id, None);
            };
            l.tried.insert(next);
            if next != me {
                break next;
            }
            if Self::inherits(l, me) {
                return self.finish(now, id, Some(me));
            }
        };
        let target = l.target;
        let req = self.call(now, next, Call::Lookup(id));
        self.send(next, ChordMessage::FindNext { req, target });
    }

    fn on_next(&mut self, now: Millis, id: LookupId, from: Vnode, hop: NextHop) {
        let Some(l) = self.lookups.get_mut(&id) else { return };
        l.hops += 1;
        if matches!(hop, NextHop::Owner) || Self::inherits(l, from) {
            return self.finish(now, id, Some(from));
        }
        match hop {
            NextHop::Owner => {}
            NextHop::Successors(list) => {
                // The first live node of the list owns the target. Lookups have one call
                // out at a time, so a node already tried and not timed out is alive (and
                // so is this one).
                let me = self.me;
                let known_alive = list
                    .iter()
                    .find(|v| !l.timed_out.contains(v))
                    .filter(|v| **v == me || l.tried.contains(v))
                    .copied();
                if let Some(owner) = known_alive {
                    return self.finish(now, id, Some(owner));
                }
                self.learn(id, from, Vec::new(), list);
            }
            NextHop::Closer { fingers, successors, predecessor } => {
                // `from` was named the owner by a successor list but says it is not:
                // remember it as plain Chord's answer, and try its predecessor when that
                // lies between the list's node and it, before the target.
                let target = l.target;
                let named_by = l
                    .successor_lists
                    .iter()
                    .rev()
                    .find(|(a, list)| {
                        list.contains(&from) && Interval::new(a.pos, from.pos).contains(target)
                    })
                    .map(|(a, _)| *a);
                if let Some(anchor) = named_by {
                    l.fallback.get_or_insert(from);
                    if let Some(p) = predecessor.filter(|p| {
                        between_open(anchor.pos, p.pos, from.pos)
                            && Interval::new(anchor.pos, p.pos).contains(target)
                    }) {
                        l.successor_lists.push((anchor, vec![p, from]));
                        self.learn(id, from, vec![p], successors);
                        return self.advance(now, id);
                    }
                }
                self.learn(id, from, fingers, successors)
            }
        }
        self.advance(now, id);
    }

    fn finish(&mut self, now: Millis, id: LookupId, owner: Option<Vnode>) {
        let Some(l) = self.lookups.remove(&id) else { return };
        let owner = owner.or(l.fallback);
        self.pending.retain(|_, p| p.call != Call::Lookup(id));
        match l.purpose {
            Purpose::Client => self.outbox.push_back(ChordOutput::Lookup(LookupResult {
                id,
                target: l.target,
                owner,
                hops: l.hops,
                timeouts: l.timeouts,
                started: l.started,
                finished: now,
            })),
            Purpose::Join => match owner {
                Some(s) if s != self.me => {
                    self.successors = vec![s];
                    self.joined = true;
                    self.outbox.push_back(ChordOutput::Joined);
                    self.stabilize(now);
                }
                _ => self.outbox.push_back(ChordOutput::JoinFailed),
            },
            Purpose::Finger(i) => {
                if let Some(o) = owner {
                    self.fingers[i] = Some(o);
                }
            }
        }
    }

    // --- stabilization -----------------------------------------------------------------

    fn schedule_stabilize(&mut self, now: Millis) {
        if let Some((lo, hi)) = self.config.stabilize_ms {
            self.stabilize_at = Some(now + self.rng.range(lo, hi.max(lo)));
        }
    }

    fn stabilize(&mut self, now: Millis) {
        self.stats.stabilizations += 1;
        match self.successors.first().copied() {
            Some(s) => {
                let req = self.call(now, s, Call::Stabilize);
                self.send(s, ChordMessage::GetNeighbors { req });
            }
            None => {
                // Alone: whoever notified us is our successor too (two-node bootstrap).
                if let Some(p) = self.predecessor {
                    self.successors = vec![p];
                    self.send(p, ChordMessage::Notify);
                }
            }
        }
    }

    fn on_neighbors(&mut self, from: Vnode, predecessor: Option<Vnode>, theirs: Vec<Vnode>) {
        if self.successors.first() != Some(&from) {
            return;
        }
        let mut list = vec![from];
        list.extend(theirs.into_iter().filter(|v| *v != self.me));
        if let Some(x) = predecessor {
            if x != self.me && between_open(self.me.pos, x.pos, from.pos) {
                list.insert(0, x);
            }
        }
        let mut seen = Vec::with_capacity(list.len());
        for v in list {
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen.truncate(self.config.successors.max(1));
        self.successors = seen;
        let s = self.successor();
        self.send(s, ChordMessage::Notify);
    }

    fn on_notify(&mut self, from: Vnode) {
        if from == self.me {
            return;
        }
        let adopt = match self.predecessor {
            None => true,
            Some(p) => between_open(p.pos, from.pos, self.me.pos),
        };
        if adopt {
            self.predecessor = Some(from);
        }
        if self.successors.is_empty() {
            self.successors.push(from);
        }
    }

    fn fix_fingers(&mut self, now: Millis) {
        let succ = self.successor();
        let covered = Interval::new(self.me.pos, succ.pos);
        // Fingers whose start the successor covers need no lookup; fix those at once,
        // then look one finger up per round.
        for _ in 0..FINGERS {
            let i = self.next_finger;
            self.next_finger = (i + 1) % FINGERS;
            let start = self.me.pos.wrapping_add(1u64 << i);
            if self.successors.is_empty() || covered.contains(start) {
                self.fingers[i] = (succ != self.me).then_some(succ);
                continue;
            }
            let id = self.new_lookup(now, start, Purpose::Finger(i));
            self.route_locally(now, id);
            break;
        }
    }

    fn check_predecessor(&mut self, now: Millis) {
        if let Some(p) = self.predecessor {
            let req = self.call(now, p, Call::CheckPredecessor);
            self.send(p, ChordMessage::Ping { req });
        }
    }

    fn on_leaving(&mut self, from: Vnode, predecessor: Option<Vnode>, successors: Vec<Vnode>) {
        if self.predecessor == Some(from) {
            self.predecessor = predecessor.filter(|p| *p != self.me);
        }
        if self.successors.first() == Some(&from) {
            let mut list: Vec<Vnode> =
                successors.into_iter().filter(|v| *v != self.me && *v != from).collect();
            list.truncate(self.config.successors.max(1));
            self.successors = list;
        } else {
            self.successors.retain(|v| *v != from);
        }
        self.forget(from);
    }

    /// Drops a vnode known to be gone from fingers and successors.
    fn forget(&mut self, gone: Vnode) {
        for f in self.fingers.iter_mut() {
            if *f == Some(gone) {
                *f = None;
            }
        }
    }

    // --- calls ---------------------------------------------------------------------------

    fn call(&mut self, now: Millis, to: Vnode, call: Call) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        self.pending.insert(req, Pending { to, deadline: now + self.config.rpc_timeout_ms, call });
        req
    }

    /// The call `req` if `from` is the node it went to. Calls match by physical node: a
    /// node answers for all its tokens.
    fn take_pending(&mut self, req: u64, from: Vnode) -> Option<Pending> {
        match self.pending.get(&req) {
            Some(p) if p.to.node == from.node => self.pending.remove(&req),
            _ => None,
        }
    }

    fn on_timeout(&mut self, now: Millis, p: Pending) {
        match p.call {
            Call::Lookup(id) => {
                if let Some(l) = self.lookups.get_mut(&id) {
                    l.timeouts += 1;
                    l.timed_out.insert(p.to);
                }
                self.advance(now, id);
            }
            Call::Stabilize => {
                // The successor is gone: the next in the list takes its place.
                self.successors.retain(|v| *v != p.to);
                self.forget(p.to);
                if self.successors.is_empty() {
                    if let Some(f) = self.fingers.iter().flatten().next().copied() {
                        self.successors.push(f);
                    }
                }
                if !self.successors.is_empty() {
                    self.stabilize(now);
                }
            }
            Call::CheckPredecessor => {
                if self.predecessor == Some(p.to) {
                    self.predecessor = None;
                }
            }
        }
    }

    fn send(&mut self, to: Vnode, msg: ChordMessage) {
        self.stats.sent += 1;
        self.outbox.push_back(ChordOutput::Send { to, msg });
    }
}
