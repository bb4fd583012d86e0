//! Moves of collections between layouts: the member that drives them, and every
//! member's part (see [`crate::catalogue::layout`] for the phases and why they are safe).
//!
//! **Every member** remembers when its copy of the catalogue first showed each state of
//! a collection's move, and when asked ([`ReplicaMessage::MoveQuery`]) reports how far
//! it knows the move got only once it has known it for `request_timeout_ms`: by then no
//! request it began under the earlier phase is still waiting for answers. From the
//! copying phase on, a member that gains ranges under the next layout (it is among a
//! range's replicas there and not under the current one) pulls each of them from as
//! many current owners as hold every acknowledged write between them (the hand-off of
//! a joining node, `antientropy::handoff_sources`), and reports it pulled them over its
//! current view. A change of the view plans the pull again.
//!
//! **The driver** is the `Alive`, non-joining member with the lowest id. Every
//! [`CHECK_MS`] it asks every member that has not left — dead ones too: a move waits
//! for a member to come back or be removed — about one moving collection, and advances the move a phase — a write of the collection's
//! [`LayoutState`] at quorum of the catalogue, through this node's coordinator — when
//! every member answered over the driver's view, the ring is not changing, each knows
//! the move exactly in its current phase (one that knows more means the driver's own
//! copy lags: it waits for anti-entropy), and, to leave the copying phase, each pulled
//! its ranges. A collection whose settings ask for another layout than the one it uses,
//! or that places by labels members no longer carry, starts a move, never to a layout
//! whose selector no member satisfies. One collection moves at a time; a change asked
//! for during a move starts the next once it is done. Two members that both believe
//! they drive (their views differ) cannot both advance: every answer must be over the
//! asker's view.
//!
//! [`Moves`] is a machine of its own: it reads the membership, the view, the node's
//! random numbers and request numbers (`Env`), and asks the node for the rest
//! (`MovesOutput`): send questions and answers, run the pulls' sessions, run the
//! driver's writes of the catalogue through the coordinator, report.

use super::{ids::RequestIds, view::View, ClientId, NodeEvent};
use crate::{
    catalogue::{
        layout_key, Catalogue, Knowledge, LabelSnapshot, Layout, LayoutState, Move, MovePhase,
        CATALOGUE_COLLECTION,
    },
    entry::NodeId,
    hash::Interval,
    membership::{Membership, Status},
    proto::{
        client::{ClientRequest, ClientResponse, Consistency, Op, Reply},
        ReplicaMessage,
    },
    rng::Rng,
    Millis,
};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// The client id of the requests a node makes of itself (the driver's writes of the
/// catalogue): drivers never give it to a connection.
pub const INTERNAL_CLIENT: ClientId = u64::MAX;

/// How often the driver looks at the moves.
pub const CHECK_MS: Millis = 500;

/// A move's state as a member's copy showed it, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    moving: Option<(u64, MovePhase)>,
    since: u64,
    at: Millis,
}

/// This member's pull of the ranges a move gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pull {
    /// The move.
    at: u64,
    /// The view it was planned over.
    view: u64,
    /// Sessions still running.
    remaining: usize,
    failed: bool,
}

/// The driver's question about one move.
#[derive(Debug, Clone)]
struct Asking {
    req: u64,
    collection: String,
    state: LayoutState,
    view: u64,
    /// The members asked and their answers: `(knows, view, pulled)`.
    answers: BTreeMap<NodeId, Option<(Option<Knowledge>, u64, bool)>>,
    deadline: Millis,
}

/// Moves of collections between layouts: this member's part and, when it drives, the
/// driver's.
#[derive(Debug, Default)]
pub struct Moves {
    seen: BTreeMap<String, Seen>,
    pulls: BTreeMap<String, Pull>,
    /// When a failed pull may be planned again.
    retry_at: BTreeMap<String, Millis>,
    next_check_at: Millis,
    asking: Option<Asking>,
    /// The driver's write in flight: its request id.
    writing: Option<u64>,
    /// Phases the driver advanced.
    advanced: u64,
    /// Whether the catalogue gives moves anything to look at: a collection with a
    /// layout state, or settings that ask for a layout (kept by
    /// [`Moves::note_layouts_seen`]).
    active: bool,
    outputs: VecDeque<MovesOutput>,
}

impl Moves {
    /// When [`super::Node::tick`] next has work for moves: the driver's next look.
    pub fn next_deadline(&self) -> Option<Millis> {
        (self.active || !self.pulls.is_empty()).then_some(self.next_check_at)
    }

    /// Phases this node advanced as the driver.
    pub fn advanced(&self) -> u64 {
        self.advanced
    }

    /// Whether this node pulled every range the move `at` of `collection` gives it,
    /// over the view `view`.
    fn pulled(&self, collection: &str, at: u64, view: u64) -> bool {
        self.pulls
            .get(collection)
            .is_some_and(|p| p.at == at && p.view == view && p.remaining == 0 && !p.failed)
    }
}

/// What moves ask of the node.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum MovesOutput {
    /// Send a question about a move, or this member's answer.
    Send(NodeId, ReplicaMessage),
    /// Queue these sessions of this member's pulls, (collection, range, current owner),
    /// after those queued, and start what may start.
    Pull(Vec<(String, Interval, NodeId)>),
    /// Run this request of the driver's (a write of the catalogue) through the node's
    /// coordinator, as [`INTERNAL_CLIENT`].
    Write(ClientRequest),
    /// Report this.
    Event(NodeEvent),
}

/// What moves read of the rest of the node, for one input.
pub(super) struct Env<'a> {
    /// The membership: who drives, who is asked, this member's view.
    pub membership: &'a Membership,
    /// The ring and the catalogue: the layouts and their moves.
    pub view: &'a View,
    /// The node's random numbers: the owners a pull copies from.
    pub rng: &'a mut Rng,
    /// The node's request numbers.
    pub ids: &'a mut RequestIds,
    /// How long a request may wait for answers.
    pub request_timeout_ms: Millis,
}

impl Env<'_> {
    fn me(&self) -> NodeId {
        self.membership.me().id
    }

    fn up(&self, id: NodeId) -> bool {
        self.membership.member(id).is_some_and(|m| m.status.is_up())
    }
}

impl Moves {
    /// The next thing moves ask of the node.
    pub(super) fn poll_output(&mut self) -> Option<MovesOutput> {
        self.outputs.pop_front()
    }

    /// Notes when this node's copy of the catalogue first showed each move's state
    /// (`catalogue`, as of `now`).
    pub(super) fn note_layouts_seen(&mut self, catalogue: &Catalogue, now: Millis) {
        let mut seen = BTreeMap::new();
        for (name, state) in catalogue.layouts() {
            let moving = state.moving.as_ref().map(|m| (m.at, m.phase));
            let fresh = Seen { moving, since: state.since, at: now };
            let kept = match self.seen.get(name) {
                Some(old) if old.moving == fresh.moving && old.since == fresh.since => old.clone(),
                _ => fresh,
            };
            seen.insert(name.to_string(), kept);
        }
        self.seen = seen;
        self.active = catalogue.layouts().next().is_some() || catalogue.moves_wanted();
    }

    /// How far this node knows the move `at` of `collection` got, once it has known it
    /// long enough for every request begun before to have ended.
    fn settled_knowledge(
        &self,
        env: &Env<'_>,
        now: Millis,
        collection: &str,
        at: u64,
    ) -> Option<Knowledge> {
        let seen = self.seen.get(collection)?;
        if now.saturating_sub(seen.at) < env.request_timeout_ms {
            return None;
        }
        env.view.catalogue.layout(collection)?.knows(at)
    }

    /// Answers the driver's question about a move.
    pub(super) fn on_query(
        &mut self,
        env: &Env<'_>,
        now: Millis,
        from: NodeId,
        req: u64,
        collection: String,
        at: u64,
    ) {
        let knows = self.settled_knowledge(env, now, &collection, at);
        let view = env.membership.view_digest();
        let pulled = self.pulled(&collection, at, view);
        let answer = ReplicaMessage::MoveState { req, knows, view, pulled };
        self.outputs.push_back(MovesOutput::Send(from, answer));
    }

    /// A member answered the driver's question.
    pub(super) fn on_state(
        &mut self,
        from: NodeId,
        req: u64,
        knows: Option<Knowledge>,
        view: u64,
        pulled: bool,
    ) {
        let Some(a) = self.asking.as_mut().filter(|a| a.req == req) else { return };
        if let Some(slot) = a.answers.get_mut(&from) {
            *slot = Some((knows, view, pulled));
        }
    }

    /// Moves' timers: this member's pulls, and the driver's look.
    pub(super) fn tick(&mut self, env: &mut Env<'_>, now: Millis) {
        if !self.active {
            self.pulls.clear();
            self.asking = None;
            return;
        }
        self.plan_pulls(env, now);
        if now < self.next_check_at {
            return;
        }
        self.next_check_at = now + CHECK_MS;
        if !drives(env.membership) {
            self.asking = None;
            return;
        }
        if self.writing.is_some() {
            return;
        }
        if let Some(a) = self.asking.take() {
            let complete = a.answers.values().all(Option::is_some);
            if complete {
                if self.decide(env, &a) {
                    return;
                }
            } else if now < a.deadline {
                self.asking = Some(a);
                return;
            }
        }
        self.ask_or_start(env, now);
    }

    /// Asks every member about the first moving collection, or starts the move a
    /// collection's settings ask for.
    fn ask_or_start(&mut self, env: &mut Env<'_>, now: Millis) {
        let catalogue = &env.view.catalogue;
        let moving = (catalogue.layouts())
            .find(|(_, s)| s.moving.is_some())
            .map(|(n, s)| (n.to_string(), s.clone()));
        if let Some((collection, state)) = moving {
            let Some(m) = state.moving.as_ref() else { return };
            let req = env.ids.next(super::ids::Concern::Moves);
            let me = env.me();
            let mut answers = BTreeMap::new();
            let view = env.membership.view_digest();
            // Every member that has not left, dead ones included: one that comes back
            // must have pulled what the move gives it before reads count on it alone
            // (an operator removes a member lost for good, which unblocks the move).
            let asked: Vec<NodeId> = (env.membership.members())
                .filter(|m| m.status != Status::Left && m.id != me)
                .map(|m| m.id)
                .collect();
            let knows = self.settled_knowledge(env, now, &collection, m.at);
            answers.insert(me, Some((knows, view, self.pulled(&collection, m.at, view))));
            for id in &asked {
                answers.insert(*id, None);
                let q = ReplicaMessage::MoveQuery { req, collection: collection.clone(), at: m.at };
                self.outputs.push_back(MovesOutput::Send(*id, q));
            }
            let deadline = now + env.request_timeout_ms;
            self.asking = Some(Asking { req, collection, state, view, answers, deadline });
            return;
        }
        // A collection whose settings ask for another layout than the one it uses, or
        // whose layout places by labels members no longer carry.
        let live = live_labels(env.membership);
        let wanted = catalogue.iter().find_map(|(name, settings)| {
            let state = catalogue.layout(name).cloned().unwrap_or_default();
            let to = settings.layout();
            let labels = if to.needs_labels() { live.clone() } else { LabelSnapshot::new() };
            let mut recorded = state.labels.clone();
            recorded.retain(|id, _| {
                env.membership.member(*id).is_some_and(|m| m.status != Status::Left)
            });
            let relabelled = to.needs_labels() && recorded != labels;
            // Never to a layout no member can hold: the collection would live nowhere.
            let wanted = (to != state.current || relabelled) && to.placeable(labels.values());
            wanted.then(|| (name.to_string(), to, labels, state))
        });
        let unset = (catalogue.layouts())
            .find(|(name, s)| catalogue.get(name).is_none() && s.current != Layout::default())
            .map(|(name, s)| {
                (name.to_string(), Layout::default(), LabelSnapshot::new(), s.clone())
            });
        if let Some((collection, to, labels, state)) = wanted.or(unset) {
            let at = now.max(state.since + 1);
            let moving = Some(Move { to, at, phase: MovePhase::Announced, labels });
            self.write_layout(env, &collection, LayoutState { moving, ..state });
        }
    }

    /// Advances the move asked about if every answer allows it (see the module docs);
    /// whether it wrote.
    fn decide(&mut self, env: &mut Env<'_>, a: &Asking) -> bool {
        let Some(m) = a.state.moving.as_ref() else { return false };
        let current = env.view.catalogue.layout(&a.collection);
        let unchanged = current == Some(&a.state);
        let view = env.membership.view_digest();
        let stable = !env.view.placement.in_transition() && view == a.view;
        let agreed = a.answers.values().all(|ans| {
            ans.is_some_and(|(knows, v, pulled)| {
                v == view
                    && knows == Some(Knowledge::Phase(m.phase))
                    && (m.phase != MovePhase::Copying || pulled)
            })
        });
        if !(unchanged && stable && agreed) {
            return false;
        }
        let next = a.state.advanced();
        self.write_layout(env, &a.collection, next);
        true
    }

    /// Writes `collection`'s layout state at quorum of the catalogue, through this
    /// node's coordinator.
    fn write_layout(&mut self, env: &mut Env<'_>, collection: &str, state: LayoutState) {
        let id = env.ids.next(super::ids::Concern::Moves);
        let op = Op::Set {
            collection: CATALOGUE_COLLECTION.to_string(),
            key: Bytes::from(layout_key(collection)),
            value: Bytes::from(state.encode()),
            consistency: Consistency::Quorum,
            ttl_ms: None,
        };
        self.writing = Some(id);
        let phase = state.moving.as_ref().map(|m| m.phase);
        let collection = collection.to_string();
        self.outputs.push_back(MovesOutput::Event(NodeEvent::LayoutMoved { collection, phase }));
        self.outputs.push_back(MovesOutput::Write(ClientRequest { id, op, seen: None }));
    }

    /// The answer to one of this node's own requests.
    pub(super) fn on_internal_reply(&mut self, resp: ClientResponse) {
        if self.writing == Some(resp.id) {
            self.writing = None;
            if matches!(resp.result, Reply::Written { .. }) {
                self.advanced += 1;
            }
        }
    }

    /// Plans this member's pulls for the moves in their copying or joint phase: every
    /// range it gains under the next layout, from enough current owners.
    fn plan_pulls(&mut self, env: &mut Env<'_>, now: Millis) {
        let view = env.membership.view_digest();
        let me = env.me();
        let moving: Vec<(String, u64)> = (env.view.catalogue.layouts())
            .filter_map(|(name, s)| {
                let m = s.moving.as_ref().filter(|m| m.phase >= MovePhase::Copying)?;
                Some((name.to_string(), m.at))
            })
            .collect();
        self.pulls.retain(|c, _| moving.iter().any(|(n, _)| n == c));
        if env.membership.me().status != Status::Alive {
            return;
        }
        let mut queued = Vec::new();
        for (collection, at) in moving {
            let current = self.pulls.get(&collection);
            let running = current.is_some_and(|p| p.at == at && p.remaining > 0);
            let done = current.is_some_and(|p| p.at == at && p.view == view && !p.failed);
            let waiting = self.retry_at.get(&collection).is_some_and(|t| now < *t);
            if running || done || waiting {
                continue;
            }
            let placement = env.view.placement_for(&collection);
            let Some(next) = placement.next else { continue };
            let table = &env.view.table;
            let gains: Vec<(Interval, Vec<NodeId>, usize)> = (placement.now.intervals())
                .into_iter()
                .filter(|(i, now_list)| {
                    !now_list.contains(&me) && next.list_on(table, i.end).contains(&me)
                })
                .map(|(i, now_list)| {
                    let need = super::antientropy::covering(now_list.len());
                    let up: Vec<NodeId> = now_list.into_iter().filter(|o| env.up(*o)).collect();
                    (i, up, need)
                })
                .collect();
            let mut jobs: Vec<(Interval, NodeId)> = Vec::new();
            let mut short = false;
            for (interval, mut up, need) in gains {
                env.rng.shuffle(&mut up);
                short |= up.len() < need;
                jobs.extend(up.into_iter().take(need).map(|peer| (interval, peer)));
            }
            if short {
                self.retry_at.insert(collection, now + CHECK_MS);
                continue;
            }
            let remaining = jobs.len();
            let pull = Pull { at, view, remaining, failed: false };
            self.pulls.insert(collection.clone(), pull);
            queued.extend(jobs.into_iter().map(|(i, peer)| (collection.clone(), i, peer)));
        }
        self.outputs.push_back(MovesOutput::Pull(queued));
    }

    /// A session of a pull ended.
    pub(super) fn session_ended(&mut self, now: Millis, collection: &str, ok: bool) {
        let Some(p) = self.pulls.get_mut(collection) else { return };
        p.remaining = p.remaining.saturating_sub(1);
        p.failed |= !ok;
        if p.remaining == 0 && p.failed {
            self.pulls.remove(collection);
            self.retry_at.insert(collection.to_string(), now + CHECK_MS);
        }
    }
}

/// Whether this node drives moves: the `Alive`, non-joining member with the lowest id in
/// its view.
fn drives(membership: &Membership) -> bool {
    let me = membership.me();
    if me.status != Status::Alive || me.joining {
        return false;
    }
    let lowest = (membership.members())
        .filter(|m| m.status == Status::Alive && !m.joining)
        .map(|m| m.id)
        .min();
    lowest == Some(me.id)
}

/// Every member's labels as it announces them now, members that left and members
/// without labels left out: what a layout that places by labels records.
fn live_labels(membership: &Membership) -> LabelSnapshot {
    (membership.members())
        .filter(|m| m.status != Status::Left && !m.labels.is_empty())
        .map(|m| (m.id, m.labels.clone()))
        .collect()
}
