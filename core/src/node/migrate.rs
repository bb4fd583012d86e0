//! Migration: nodes move their tokens so that each holds about the same number of
//! entries, which keeps ordered collections balanced (god's "Migration").
//!
//! **Why.** An ordered collection (`ordered.*`, see [`crate::hash::Placement`]) places a
//! key by its first 8 bytes, so keys like `user:0001`, `user:0002`, … all land in a
//! band of the ring far narrower than one token's range: one node would own all of
//! them. god's answer is to let the nodes move: "comparing the owned entries each node
//! owns to the data its successor owns, and if the predecessor owns too much it will
//! decrease its position to achieve balance".
//!
//! **The rule.** Every `interval_ms` (jittered ±50%) a *settled* node (below) counts its
//! primary load — the entries, of every collection and tombstones included, in the
//! intervals `(p, t]` its tokens own — and, unless that is at most `min_entries`, asks
//! up to `fanout` other nodes for theirs ([`ReplicaMessage::LoadQuery`]): the owners of
//! the tokens that follow its own, nearest first (in a cluster of up to `fanout + 1`
//! nodes, everyone). Counts come from the Merkle trees ([`Replica::count`]) and are
//! reused for half a period. With `floor` the least of the answers, the node moves when
//!
//! ```text
//! mine > floor × (1 + slack_percent/100) + min_entries
//! ```
//!
//! It takes its most loaded token `t` (predecessor token `p`) and moves it down to a
//! position `q` in `(p, t)` chosen so that `(q, t]` — which passes to the next token
//! clockwise — holds `min(load(t), (mine − floor) / 2)` entries, as near as whole
//! positions allow ([`split_point`], found by walking the positions of `(p, t]` in
//! ring order across every collection). At most one token moves per node per period.
//!
//! Comparing with the least loaded of the following nodes, rather than with the single
//! successor token as god does, is what makes the rule converge: a token can only hand
//! entries to its clockwise neighbour, so load spreads along the ring through
//! intermediate tokens, and a pairwise rule stalls as soon as two neighbours are equally
//! overloaded while the nodes behind them are empty (and a loose pairwise threshold
//! leaves a geometric profile along a chain of tokens). A node above the floor passes
//! load on even to a neighbour as loaded as itself, which then passes it on in turn,
//! until it reaches the nodes below. `docs/simulation.md` ("Migration") has the
//! measurements.
//!
//! **Why it is safe.** Moving token `t` to `q` changes the preference list of exactly
//! `(q, t]` and nothing else: positions elsewhere meet the same tokens in the same order.
//! On `(q, t]` this node leaves and at most one node joins. So the move is:
//!
//! 1. *Announce the intent*: [`crate::membership::Membership::set_next_tokens`] gossips
//!    the tokens this node is about to hold; every coordinator that hears it makes the
//!    node joining `(q, t]` a pending replica (see [`crate::ring::placement`]): it takes
//!    every write of the range from then on, and writes need W + 1 acknowledgements.
//! 2. *Wait* `ring_delay_ms`, for gossip to reach every coordinator.
//! 3. *Hand off*: one Merkle sync session of `(q, t]`, for every collection, with every
//!    node that will replicate it after the move (the anti-entropy session machinery,
//!    see [`super::antientropy`]). A failed session abandons the move (and withdraws
//!    the intent).
//! 4. *Then announce*: [`crate::membership::Membership::set_tokens`] gossips the new
//!    token at a new incarnation; every node rebuilds its table, and keeps this node a
//!    pending replica of `(q, t]` for `ring_delay_ms` more. Nothing is announced if the
//!    cluster changed meanwhile (a member not serving, a token in the way, another
//!    preference list).
//! 5. *Then clean*: the next anti-entropy round after that hands `(q, t]` to every new
//!    owner again and only then drops it ([`NodeEvent::Cleaned`]).
//!
//! Tokens only ever move down inside the range their own node owns, so they never
//! cross or meet another token, and two nodes moving at once touch disjoint ranges.
//!
//! **Never faster than sync settles.** A node considers a move only when it is `Alive`,
//! every member it knows is `Alive` or gone (none joining, leaving, re-syncing or
//! suspected), no collection moves to another layout (see [`super::moves`]), no
//! hand-off or re-sync of its own runs, an anti-entropy round that started *after* its
//! previous move completed without a failure, and it holds nothing in the previously
//! moved range that it no longer replicates (cleaning finished). A node also refuses to
//! answer load questions while not `Alive`, which postpones its peers' decisions.
//!
//! [`Migration`] is a machine of its own: it owns its state, reads what it is handed
//! (`Env`: the membership it announces through, the view, the replica, the node's
//! random numbers and request numbers, whether a leave or a re-sync is under way, the
//! last full sync), and asks the node for the rest (`MigrationOutput`): send load
//! questions and answers, run a move's hand-off sessions, save the new tokens, report,
//! clean soon.

use super::{ids::RequestIds, view::View, NodeEvent};
use crate::{
    entry::NodeId,
    hash::{Interval, Position},
    membership::{Membership, Status},
    proto::ReplicaMessage,
    replica::Replica,
    ring::RingTable,
    rng::Rng,
    store::{Record, Store, StoreError},
    Millis,
};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Records read per page when walking a token's range for its split point.
const PAGE: usize = 1024;

/// Settings of migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationConfig {
    /// Whether the node moves its tokens at all (it always answers load questions).
    pub enabled: bool,
    /// Period between decisions (jittered ±50%).
    pub interval_ms: Millis,
    /// How much more than the least loaded node asked a node may hold, in percent,
    /// before it moves a token.
    pub slack_percent: u64,
    /// …plus this many entries: small differences never move a token.
    pub min_entries: u64,
    /// Most nodes asked for their load per decision.
    pub fanout: usize,
}

impl Default for MigrationConfig {
    /// On, every 60 s, 25% slack plus 1,000 entries, asking up to 16 nodes.
    fn default() -> Self {
        MigrationConfig {
            enabled: true,
            interval_ms: 60_000,
            slack_percent: 25,
            min_entries: 1_000,
            fanout: 16,
        }
    }
}

/// A token move under way: handing its range off before it is announced.
#[derive(Debug, Clone)]
struct Move {
    from: Position,
    to: Position,
    /// The range handed off, `(to, from]`.
    interval: Interval,
    /// Entries in it when the move was decided.
    entries: u64,
    /// This node's tokens after the move.
    tokens: Vec<Position>,
    /// Each collection and a node that replicates the range after the move under the
    /// collection's layout, this node excepted.
    targets: Vec<(String, NodeId)>,
    load: u64,
    floor: u64,
    remaining: usize,
    failed: bool,
}

#[derive(Debug, Clone, Default)]
enum Phase {
    #[default]
    Idle,
    /// Waiting for load answers.
    Asking { req: u64, waiting: BTreeSet<NodeId>, loads: BTreeMap<NodeId, u64>, deadline: Millis },
    /// The move is announced; its hand-off starts at the given time.
    Announced(Move, Millis),
    /// Handing the range of a move off.
    HandingOff(Move),
}

/// The migration state of a node.
#[derive(Debug, Default)]
pub struct Migration {
    next_at: Option<Millis>,
    phase: Phase,
    /// When the last move was announced, and the range it handed off.
    last_move: Option<(Millis, Interval)>,
    /// The last count of the primary load: when, for which token table, how much.
    counted: Option<(Millis, u64, u64)>,
    moves: u64,
    abandoned: u64,
    outputs: VecDeque<MigrationOutput>,
}

impl Migration {
    /// When the next decision is due, or an answer times out.
    pub fn next_deadline(&self) -> Option<Millis> {
        let asking = match &self.phase {
            Phase::Asking { deadline, .. } | Phase::Announced(_, deadline) => Some(*deadline),
            _ => None,
        };
        [self.next_at, asking].into_iter().flatten().min()
    }

    /// Tokens this node moved so far.
    pub fn moves(&self) -> u64 {
        self.moves
    }

    /// Moves decided but abandoned (a hand-off session failed, or the ring changed).
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    /// Whether a move is under way (announced, or handing its range off).
    pub fn handing_off(&self) -> bool {
        matches!(self.phase, Phase::HandingOff(_) | Phase::Announced(..))
    }

    /// When the last move was announced, and the range it handed off.
    pub fn last_move(&self) -> Option<(Millis, Interval)> {
        self.last_move
    }
}

/// Whether a node holding `mine` entries must shed some toward nodes holding `floor`:
/// `mine > floor × (1 + slack_percent/100) + min_entries`.
pub fn exceeds_floor(mine: u64, floor: u64, config: &MigrationConfig) -> bool {
    let limit = u128::from(floor) * (100 + u128::from(config.slack_percent))
        + u128::from(config.min_entries) * 100;
    u128::from(mine) * 100 > limit
}

/// Where to move the token ending `interval = (p, t]` so that `(p, q]` keeps as near
/// `keep` entries as whole positions allow. `positions` are the distinct positions of
/// the interval with their entry counts, in ring order from `p + 1`. Returns `q`, with
/// `p < q < t` clockwise, and the entries kept in `(p, q]`; `None` when no such
/// position exists (a range of one position, or the whole ring). Ties keep more.
pub fn split_point(
    interval: Interval,
    positions: impl IntoIterator<Item = (Position, u64)>,
    keep: u64,
) -> Option<(Position, u64)> {
    let (p, t) = (interval.start, interval.end);
    if interval.is_full() || p.wrapping_add(1) == t {
        return None;
    }
    let mut kept = 0u64;
    let mut q = None;
    let mut first = None;
    for (pos, n) in positions {
        if pos == t || !interval.contains(pos) {
            break;
        }
        first.get_or_insert((pos, n));
        let with = kept.saturating_add(n);
        if with.abs_diff(keep) > kept.abs_diff(keep) {
            break;
        }
        kept = with;
        q = Some(pos);
    }
    match (q, first) {
        (Some(q), _) => Some((q, kept)),
        // Keeping nothing is nearest: just after the predecessor, unless a key sits
        // there, in which case that position is the least that can be kept.
        (None, Some((pos, n))) if pos == p.wrapping_add(1) => Some((pos, n)),
        (None, _) => Some((p.wrapping_add(1), 0)),
    }
}

/// The positions two intervals share, as at most three intervals.
fn overlap(a: &Interval, b: &Interval) -> Vec<Interval> {
    let mut out = Vec::new();
    for x in a.segments().into_iter().flatten() {
        for y in b.segments().into_iter().flatten() {
            let (lo, hi) = (x.lo.max(y.lo), x.hi.min(y.hi));
            if lo <= hi {
                out.push(Interval::new(lo.wrapping_sub(1), hi));
            }
        }
    }
    out
}

/// The distinct positions of an interval with their entry counts, across collections,
/// in ring order: a merge of each collection's paged range.
struct PositionWalk<'a, S: Store> {
    replica: &'a Replica<S>,
    interval: Interval,
    heads: Vec<Head>,
    error: Option<StoreError>,
}

struct Head {
    collection: String,
    page: VecDeque<Record>,
    cursor: Option<(Position, Bytes)>,
    exhausted: bool,
}

impl<'a, S: Store> PositionWalk<'a, S> {
    fn new(replica: &'a Replica<S>, collections: &[String], interval: Interval) -> Self {
        let heads = collections
            .iter()
            .map(|c| Head {
                collection: c.clone(),
                page: VecDeque::new(),
                cursor: None,
                exhausted: false,
            })
            .collect();
        PositionWalk { replica, interval, heads, error: None }
    }

    /// Makes sure head `i` has a record in its page unless its collection is exhausted.
    fn fill(&mut self, i: usize) -> bool {
        let head = &mut self.heads[i];
        if !head.page.is_empty() {
            return true;
        }
        if head.exhausted {
            return false;
        }
        let after = head.cursor.as_ref().map(|(p, k)| (*p, &k[..]));
        match self.replica.range(&head.collection, self.interval, after, PAGE) {
            Ok(page) => {
                head.exhausted = page.len() < PAGE;
                head.cursor = page.last().map(|r| (r.pos, r.key.clone()));
                head.page = page.into();
                !head.page.is_empty()
            }
            Err(e) => {
                self.error = Some(e);
                head.exhausted = true;
                false
            }
        }
    }
}

impl<S: Store> Iterator for PositionWalk<'_, S> {
    type Item = (Position, u64);

    fn next(&mut self) -> Option<(Position, u64)> {
        let mut next: Option<Position> = None;
        for i in 0..self.heads.len() {
            if self.fill(i) {
                let pos = self.heads[i].page[0].pos;
                if next.is_none_or(|n| self.interval.offset(pos) < self.interval.offset(n)) {
                    next = Some(pos);
                }
            }
        }
        let pos = next?;
        let mut count = 0;
        for i in 0..self.heads.len() {
            while self.fill(i) && self.heads[i].page[0].pos == pos {
                self.heads[i].page.pop_front();
                count += 1;
            }
        }
        Some((pos, count))
    }
}

/// What migration asks of the node.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum MigrationOutput {
    /// Send a load question or answer.
    Send(NodeId, ReplicaMessage),
    /// Run these hand-off sessions of a move: (collection, interval, next owner), ahead
    /// of anything else queued.
    HandOff(Vec<(String, Interval, NodeId)>),
    /// A move was announced: this node now holds `tokens`; save them.
    Moved(Vec<Position>),
    /// Report this.
    Event(NodeEvent),
    /// Start an anti-entropy round soon, if none runs: it hands a moved range off again
    /// and drops it.
    CleanSoon,
}

/// What migration reads of the rest of the node, for one input. It announces a move's
/// intent and the move itself through the membership it is handed (whose outputs the
/// node collects before migration's own, so they keep their order).
pub(super) struct Env<'a, S: Store> {
    /// The membership: this node's tokens, who serves, the announcements.
    pub membership: &'a mut Membership,
    /// The ring and the catalogue.
    pub view: &'a View,
    /// The local replica: the loads.
    pub replica: &'a Replica<S>,
    /// The node's random numbers: the jittered period.
    pub rng: &'a mut Rng,
    /// The node's request numbers.
    pub ids: &'a mut RequestIds,
    /// Migration's settings.
    pub config: &'a MigrationConfig,
    /// How long announcements take to reach every coordinator.
    pub ring_delay_ms: Millis,
    /// How long a load question waits for answers.
    pub request_timeout_ms: Millis,
    /// Whether another change of this node's ranges is asked for or under way: a leave,
    /// a re-sync.
    pub busy: bool,
    /// When this node's last full anti-entropy round started.
    pub last_full_sync_ms: Option<Millis>,
}

impl<S: Store> Env<'_, S> {
    fn me(&self) -> NodeId {
        self.membership.me().id
    }
}

/// Entries (every collection, tombstones included) in the intervals `me`'s tokens own in
/// `view`'s token table, each interval with its own.
pub(super) fn token_loads<S: Store>(
    view: &View,
    replica: &Replica<S>,
    me: NodeId,
) -> Result<Vec<(Interval, u64)>, StoreError> {
    let collections = replica.store().collections()?;
    let mut loads = Vec::new();
    for i in view.table.owned_intervals(me) {
        let mut n = 0;
        for c in &collections {
            n += replica.count(c, i)?;
        }
        loads.push((i, n));
    }
    Ok(loads)
}

impl Migration {
    /// The next thing migration asks of the node.
    pub(super) fn poll_output(&mut self) -> Option<MigrationOutput> {
        self.outputs.pop_front()
    }

    fn event(&mut self, e: NodeEvent) {
        self.outputs.push_back(MigrationOutput::Event(e));
    }

    /// The primary load, counted at most once per half period for one token table:
    /// counting can scan the buckets that token boundaries cut, and every node asks
    /// up to `fanout` others each period.
    fn recent_primary_load<S: Store>(
        &mut self,
        env: &Env<'_, S>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let fresh = env.config.interval_ms / 2;
        if let Some((at, view, load)) = self.counted {
            if view == env.view.digest && now < at.saturating_add(fresh) {
                return Ok(load);
            }
        }
        let load = token_loads(env.view, env.replica, env.me())?.iter().map(|(_, n)| n).sum();
        self.counted = Some((now, env.view.digest, load));
        Ok(load)
    }

    /// Gives up on answers that did not come, and hands an announced move's range off
    /// once the announcement had time to spread. (The node runs the hand-off it asks
    /// for before [`Migration::tick_decision`].)
    pub(super) fn tick_handoff<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        if !env.config.enabled {
            return;
        }
        if let Phase::Asking { deadline, .. } = &self.phase {
            if *deadline <= now {
                self.phase = Phase::Idle;
            }
        }
        if matches!(&self.phase, Phase::Announced(_, at) if *at <= now) {
            self.hand_move_off(env, now);
        }
    }

    /// Runs a due decision.
    pub(super) fn tick_decision<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        if !env.config.enabled {
            self.next_at = None;
            return;
        }
        let Some(due) = self.next_at else {
            self.schedule(env, now);
            return;
        };
        if due > now {
            return;
        }
        self.schedule(env, now);
        if !matches!(self.phase, Phase::Idle) || !self.settled(env) {
            return;
        }
        // A node holding no more than `min_entries` can never be over the threshold.
        match self.recent_primary_load(env, now) {
            Ok(load) if load > env.config.min_entries => self.ask_loads(env, now),
            Ok(_) => {}
            Err(e) => self.event(NodeEvent::StoreFailed(e)),
        }
    }

    fn schedule<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        let period = env.config.interval_ms.max(1);
        let jittered = env.rng.range(period / 2, period.saturating_add(period / 2));
        self.next_at = Some(now.saturating_add(jittered));
    }

    /// Whether the cluster and this node's previous move have settled (see the module
    /// docs).
    fn settled<S: Store>(&self, env: &Env<'_, S>) -> bool {
        let membership = &*env.membership;
        let me = membership.me();
        let all_serving =
            membership.members().all(|m| m.status == Status::Alive || m.status.is_down());
        if me.status != Status::Alive
            || !all_serving
            || membership.members().any(|m| m.leaving())
            || env.busy
            || env.view.table.node_count() < 2
            || self.handing_off()
            || env.view.catalogue.layouts().any(|(_, s)| s.moving.is_some())
        {
            return false;
        }
        let Some((at, moved)) = self.last_move else { return true };
        let synced_since = env.last_full_sync_ms.is_some_and(|t| t > at);
        synced_since && foreign_entries_in(env, moved).is_ok_and(|n| n == 0)
    }

    /// Asks the owners of the tokens that follow this node's (nearest first, at most
    /// `fanout`) for their load.
    fn ask_loads<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        let me = env.me();
        let vnodes = env.view.table.vnodes();
        let len = vnodes.len();
        let mine: Vec<usize> = (0..len).filter(|&i| vnodes[i].node == me).collect();
        let fanout = env.config.fanout.max(1);
        let mut asked: Vec<NodeId> = Vec::new();
        'walk: for d in 1..len {
            for &i in &mine {
                let node = vnodes[(i + d) % len].node;
                if node != me && !asked.contains(&node) {
                    asked.push(node);
                    if asked.len() >= fanout {
                        break 'walk;
                    }
                }
            }
        }
        if asked.is_empty() {
            return;
        }
        let req = env.ids.next(super::ids::Concern::Migration);
        for peer in &asked {
            let q = ReplicaMessage::LoadQuery { req };
            self.outputs.push_back(MigrationOutput::Send(*peer, q));
        }
        self.phase = Phase::Asking {
            req,
            waiting: asked.into_iter().collect(),
            loads: BTreeMap::new(),
            deadline: now.saturating_add(env.request_timeout_ms.max(1)),
        };
    }

    /// Answers a load question: this node's primary load, or nothing while it is not
    /// serving (its tables are not to be trusted).
    pub(super) fn on_load_query<S: Store>(
        &mut self,
        env: &Env<'_, S>,
        now: Millis,
        from: NodeId,
        req: u64,
    ) {
        let serving = env.membership.me().status == Status::Alive;
        let entries = if serving { self.recent_primary_load(env, now).ok() } else { None };
        let answer = ReplicaMessage::LoadReply { req, entries };
        self.outputs.push_back(MigrationOutput::Send(from, answer));
    }

    /// A load answer arrived; once every node asked answered, decide.
    pub(super) fn on_load_reply<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        req: u64,
        entries: Option<u64>,
    ) {
        let Phase::Asking { req: r, waiting, loads, .. } = &mut self.phase else {
            return;
        };
        if *r != req || !waiting.remove(&from) {
            return;
        }
        let Some(entries) = entries else {
            // A node that cannot answer is not settled: decide next period.
            self.phase = Phase::Idle;
            return;
        };
        loads.insert(from, entries);
        if !waiting.is_empty() {
            return;
        }
        let loads = std::mem::take(loads);
        self.phase = Phase::Idle;
        if self.settled(env) {
            if let Err(e) = self.decide_move(env, now, &loads) {
                self.event(NodeEvent::StoreFailed(e));
            }
        }
    }

    /// Applies the rule to the answers; starts a move's hand-off when it says so.
    fn decide_move<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        loads: &BTreeMap<NodeId, u64>,
    ) -> Result<(), StoreError> {
        let Some(&floor) = loads.values().min() else { return Ok(()) };
        let mut tokens = token_loads(env.view, env.replica, env.me())?;
        let mine: u64 = tokens.iter().map(|(_, n)| n).sum();
        self.counted = Some((now, env.view.digest, mine));
        if !exceeds_floor(mine, floor, env.config) {
            return Ok(());
        }
        let gap = mine.saturating_sub(floor);
        // The most loaded token first; ties by position, for determinism.
        tokens.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.end.cmp(&b.0.end)));
        let collections = env.replica.store().collections()?;
        for (interval, load) in tokens {
            if load == 0 {
                break;
            }
            let give = load.min(gap / 2);
            let mut walk = PositionWalk::new(env.replica, &collections, interval);
            let split = split_point(interval, &mut walk, load - give);
            if let Some(e) = walk.error {
                return Err(e);
            }
            let Some((q, kept)) = split else { continue };
            let given = load - kept;
            if kept >= load || given > gap {
                continue;
            }
            self.start_move(env, now, interval, q, given, (mine, floor), &collections);
            return Ok(());
        }
        Ok(())
    }

    /// Announces the intent to move the token ending `owned` down to `q`; its range
    /// `(q, t]` is handed off once the announcement had time to spread.
    #[allow(clippy::too_many_arguments)]
    fn start_move<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        owned: Interval,
        q: Position,
        entries: u64,
        (load, floor): (u64, u64),
        collections: &[String],
    ) {
        let me = env.me();
        let t = owned.end;
        let mut tokens: Vec<Position> =
            env.membership.me().tokens.iter().map(|&x| if x == t { q } else { x }).collect();
        tokens.sort_unstable();
        let interval = Interval::new(q, t);
        // The catalogue, which every member keeps, needs no hand-off.
        let targets: Vec<(String, NodeId)> = (collections.iter())
            .filter(|c| !crate::catalogue::is_catalogue(c))
            .flat_map(|c| {
                let after = replicas_after(env, &tokens, t, c);
                after.into_iter().filter(|n| *n != me).map(move |n| (c.clone(), n))
            })
            .collect();
        let mv = Move {
            from: t,
            to: q,
            interval,
            entries,
            tokens,
            targets: targets.clone(),
            load,
            floor,
            remaining: targets.len(),
            failed: false,
        };
        if !env.membership.set_next_tokens(now, Some(mv.tokens.clone())) {
            self.abandoned += 1;
            return;
        }
        let at = now.saturating_add(env.ring_delay_ms);
        self.phase = Phase::Announced(mv, at);
    }

    /// The move's announcement had time to spread: hands its range off.
    fn hand_move_off<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        let Phase::Announced(mv, _) = std::mem::take(&mut self.phase) else { return };
        let (interval, targets) = (mv.interval, mv.targets.clone());
        let remaining = targets.len();
        if remaining == 0 {
            self.announce_move(env, now, mv);
            return;
        }
        self.phase = Phase::HandingOff(Move { remaining, ..mv });
        let jobs = targets.into_iter().map(|(c, peer)| (c, interval, peer)).collect();
        self.outputs.push_back(MigrationOutput::HandOff(jobs));
    }

    /// A hand-off session of the running move ended.
    pub(super) fn session_ended<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis, ok: bool) {
        let Phase::HandingOff(mv) = &mut self.phase else { return };
        mv.remaining = mv.remaining.saturating_sub(1);
        mv.failed |= !ok;
        if mv.remaining > 0 {
            return;
        }
        let Phase::HandingOff(mv) = std::mem::take(&mut self.phase) else { return };
        if mv.failed {
            self.abandon_move(env, now);
        } else {
            self.announce_move(env, now, mv);
        }
    }

    /// Gives a move up, withdrawing its announced intent.
    fn abandon_move<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        self.abandoned += 1;
        env.membership.set_next_tokens(now, None);
    }

    /// Announces the new token, if the ring is still the one the hand-off was for.
    fn announce_move<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis, mv: Move) {
        let me = env.me();
        let membership = &*env.membership;
        let still = membership.me().status == Status::Alive
            && membership.members().all(|m| m.status == Status::Alive || m.status.is_down())
            && membership.me().tokens.contains(&mv.from)
            && env.view.table.successor(mv.to).is_some_and(|v| v.pos == mv.from && v.node == me)
            && env.replica.store().collections().unwrap_or_default().iter().all(|c| {
                crate::catalogue::is_catalogue(c) || {
                    let after = replicas_after(env, &mv.tokens, mv.from, c);
                    after.iter().all(|n| *n == me || mv.targets.contains(&(c.clone(), *n)))
                }
            });
        if !still {
            self.abandon_move(env, now);
            return;
        }
        if !matches!(env.membership.set_tokens(now, mv.tokens.clone()), Ok(true)) {
            self.abandon_move(env, now);
            return;
        }
        self.moves += 1;
        self.last_move = Some((now, mv.interval));
        self.outputs.push_back(MigrationOutput::Moved(mv.tokens));
        self.event(NodeEvent::TokenMoved {
            from: mv.from,
            to: mv.to,
            entries: mv.entries,
            load: mv.load,
            floor: mv.floor,
        });
        // Clean up soon: the next round hands the range off again and drops it.
        self.outputs.push_back(MigrationOutput::CleanSoon);
    }
}

/// Entries this node holds in `range` where the token table does not make it a
/// replica: what cleaning has yet to hand off and drop.
fn foreign_entries_in<S: Store>(env: &Env<'_, S>, range: Interval) -> Result<u64, StoreError> {
    let me = env.me();
    let collections = env.replica.store().collections()?;
    let mut n = 0;
    for group in env.view.by_placement(&collections) {
        for (interval, replicas, _) in group.intervals {
            if replicas.contains(&me) {
                continue;
            }
            for piece in overlap(&interval, &range) {
                for c in &group.collections {
                    n += env.replica.count(c, piece)?;
                }
            }
        }
    }
    Ok(n)
}

/// The replicas of position `at` of `collection` once this node holds `tokens`.
fn replicas_after<S: Store>(
    env: &Env<'_, S>,
    tokens: &[Position],
    at: Position,
    collection: &str,
) -> Vec<NodeId> {
    let me = env.me();
    let table = RingTable::new(
        (env.membership.members())
            .filter(|m| m.owns() && m.id != me)
            .map(|m| (m.id, m.tokens.as_slice()))
            .chain(std::iter::once((me, tokens))),
    );
    env.view.placement_by(&env.view.signature(collection)).list_on(&table, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(points: &[(u64, u64)]) -> Vec<(Position, u64)> {
        points.to_vec()
    }

    #[test]
    fn overlaps_of_intervals_cover_exactly_the_shared_positions() {
        let pieces = |a: Interval, b: Interval| overlap(&a, &b);
        assert_eq!(
            pieces(Interval::new(10, 20), Interval::new(15, 30)),
            vec![Interval::new(15, 20)]
        );
        assert!(pieces(Interval::new(10, 20), Interval::new(20, 30)).is_empty());
        // A wrapping interval against one that wraps too: two pieces.
        let a = Interval::new(u64::MAX - 5, 5);
        let b = Interval::new(u64::MAX - 2, 2);
        assert_eq!(
            pieces(a, b),
            vec![Interval::new(u64::MAX - 2, u64::MAX), Interval::new(u64::MAX, 2)]
        );
        assert_eq!(pieces(Interval::full(), Interval::new(3, 9)), vec![Interval::new(3, 9)]);
        // Each end of a wrapping interval cut by one that spans them both.
        let c = Interval::new(100, 50);
        assert_eq!(
            pieces(c, Interval::new(20, 200)),
            vec![Interval::new(100, 200), Interval::new(20, 50)]
        );
        for (x, y) in [(a, b), (c, Interval::new(20, 200)), (Interval::new(7, 7), c)] {
            let pieces = overlap(&x, &y);
            for p in [0, 1, 20, 21, 50, 51, 100, 101, 200, 201, u64::MAX - 2, u64::MAX, 2, 5, 6] {
                let inside = pieces.iter().filter(|i| i.contains(p)).count();
                assert_eq!(inside, usize::from(x.contains(p) && y.contains(p)), "{x} ∩ {y} at {p}");
            }
        }
    }

    #[test]
    fn a_node_moves_only_beyond_the_slack_and_the_minimum() {
        let c = MigrationConfig { slack_percent: 25, min_entries: 100, ..Default::default() };
        assert!(!exceeds_floor(1_350, 1_000, &c), "exactly at 1.25 × 1000 + 100");
        assert!(exceeds_floor(1_351, 1_000, &c));
        assert!(!exceeds_floor(100, 0, &c), "small differences never move a token");
        assert!(exceeds_floor(101, 0, &c));
        assert!(!exceeds_floor(500, 1_000, &c));
        assert!(exceeds_floor(u64::MAX, u64::MAX / 2, &c), "no overflow");
        assert!(!exceeds_floor(u64::MAX, u64::MAX, &c));
    }

    #[test]
    fn splits_at_the_position_nearest_the_entries_to_keep() {
        let i = Interval::new(100, 200);
        let pts = at(&[(110, 10), (120, 10), (130, 10), (140, 10)]);
        assert_eq!(split_point(i, pts.clone(), 20), Some((120, 20)));
        assert_eq!(split_point(i, pts.clone(), 24), Some((120, 20)));
        assert_eq!(split_point(i, pts.clone(), 26), Some((130, 30)));
        assert_eq!(split_point(i, pts.clone(), 25), Some((130, 30)), "ties keep more");
        assert_eq!(split_point(i, pts.clone(), 40), Some((140, 40)));
        assert_eq!(split_point(i, pts.clone(), 1000), Some((140, 40)));
    }

    #[test]
    fn keeping_nothing_moves_next_to_the_predecessor() {
        let i = Interval::new(100, 200);
        assert_eq!(split_point(i, at(&[(150, 10)]), 2), Some((101, 0)));
        // A key just after the predecessor cannot be given away.
        assert_eq!(split_point(i, at(&[(101, 10), (150, 10)]), 0), Some((101, 10)));
        assert_eq!(split_point(i, at(&[]), 0), Some((101, 0)));
    }

    #[test]
    fn never_the_token_itself_nor_outside_the_range() {
        let i = Interval::new(100, 200);
        // Entries at the token's own position always go with the range handed off.
        assert_eq!(split_point(i, at(&[(150, 1), (200, 99)]), 100), Some((150, 1)));
        assert_eq!(split_point(i, at(&[(200, 99)]), 99), Some((101, 0)));
        assert_eq!(split_point(i, at(&[(150, 5), (250, 5)]), 10), Some((150, 5)));
        assert_eq!(split_point(Interval::new(100, 101), at(&[(101, 5)]), 0), None);
        assert_eq!(split_point(Interval::full(), at(&[(5, 5)]), 0), None);
    }

    #[test]
    fn wrapping_ranges_split_in_ring_order() {
        let i = Interval::new(u64::MAX - 10, 10);
        let pts = at(&[(u64::MAX - 5, 10), (u64::MAX, 10), (0, 10), (5, 10)]);
        assert_eq!(split_point(i, pts.clone(), 20), Some((u64::MAX, 20)));
        assert_eq!(split_point(i, pts, 30), Some((0, 30)));
        assert_eq!(split_point(Interval::new(u64::MAX, 7), at(&[]), 0), Some((0, 0)));
    }

    #[test]
    fn the_walk_merges_collections_in_ring_order() {
        use crate::{clock::Timestamp, entry::Entry, hash::Placement, store::MemStore};
        let mut r = Replica::new(MemStore::new()).unwrap();
        let v = Entry::value("v", Timestamp(1), NodeId(1));
        for c in ["ordered.a", "ordered.b"] {
            r.set_placement(c, Placement::Ordered);
        }
        for i in 0..3000u32 {
            let c = if i % 3 == 0 { "ordered.a" } else { "ordered.b" };
            r.merge(c, Bytes::from(format!("user:{i:04}")), v.clone()).unwrap();
        }
        let cs = vec!["ordered.a".to_string(), "ordered.b".to_string()];
        let walk = PositionWalk::new(&r, &cs, Interval::full());
        let pts: Vec<(Position, u64)> = walk.collect();
        // "user:000".."user:299": 300 positions of 10 keys each, in order.
        assert_eq!(pts.len(), 300);
        assert!(pts.iter().all(|&(_, n)| n == 10));
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
        let i = Interval::new(0, u64::MAX);
        let (q, kept) = split_point(i, PositionWalk::new(&r, &cs, i), 1500).unwrap();
        assert_eq!(kept, 1500);
        assert_eq!(q, crate::hash::ordered_position(b"user:149"));
    }
}
