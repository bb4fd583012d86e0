//! Scheduled anti-entropy, join hand-off and cleaning: Merkle sync of every range a
//! node replicates with the other replicas of that range, on a jittered period.
//!
//! **Rounds.** Every `sync_interval_ms` (jittered ±50% so nodes do not sync in
//! lockstep) a node starts a *round*: for each collection it holds and each token
//! interval `(p, t]` of the ring whose preference list includes it, it queues a session
//! with one other replica of that interval, chosen at random. The sessions themselves
//! are [`super::sessions`]'s to run: at most `max_sync_sessions` at once (the rate
//! limit; each session's messages are paged to 256 KiB); a session that hears nothing
//! for `sync_timeout_ms` is abandoned, and its range retried (twice at most) with the
//! range's next other replica; the round's later sessions pass over a peer a session
//! failed with, and a peer already in a session with this node waits while others have
//! work — so one replica that stops answering holds one session slot for one timeout,
//! not the round. Each session's end comes back here (`AntiEntropy::session_ended`).
//! A round whose sessions all succeeded records its start as the node's *last full
//! sync* ([`super::NodeState`]), which tombstone collection relies on.
//!
//! **Cleaning.** The same round queues, for every interval the node holds data in but
//! no longer replicates (the ring changed: a node joined, a token moved), one session
//! with *each* replica that now owns the interval. Only when every one of them
//! succeeded does the node drop the interval (god's rule: hand off, then drop). A
//! session costs what differs, so handing off to an owner that already caught up costs
//! one round trip.
//!
//! **Hand-off before serving.** A node starts `Syncing` — after a fresh start, a
//! restart, or when the cluster declared it dead — and serves nothing until a *re-sync
//! round* has succeeded: for each interval it would replicate once serving, one session
//! with a current owner of that interval, progress reported as
//! [`NodeEvent::Handoff`]. Owners that do not serve are skipped, and owners that stop
//! serving are no longer waited for: each interval comes from another owner, and an
//! interval with no serving owner fails the round (see `Discovery`). Then it calls
//! [`crate::membership::Membership::resynced`] and enters the preference lists. A node
//! whose last full sync is older than the tombstone grace period first drops everything
//! other replicas hold (see [`super::gc`]), so it rejoins empty and cannot resurrect
//! deleted keys.
//!
//! [`AntiEntropy`] is a machine of its own: it owns the rounds — planning, the hand-off
//! round's discovery, cleaning, whether a re-sync is owed, whether this node started
//! empty — reads what it is handed (`Env`: the membership, the view, the replica, the
//! node's random numbers and request numbers, the settings, the last full sync, whether
//! sessions still run), and asks the node for the rest (`RoundOutput`): queue and
//! abandon sessions in [`super::sessions`], introduce this node to an owner and ask it
//! for its collections, record a full sync, enter the preference lists, report. Each
//! session's end comes back to it (`AntiEntropy::session_ended`).

use super::{
    gc,
    ids::{Concern, RequestIds},
    layouts::Signature,
    sessions::{Job, Purpose},
    view::View,
    NodeConfig, NodeEvent,
};
use crate::{
    entry::NodeId,
    hash::Interval,
    membership::{Membership, Status},
    proto::ReplicaMessage,
    replica::Replica,
    ring::RingTable,
    rng::Rng,
    store::Store,
    Millis,
};
use std::collections::{BTreeSet, VecDeque};

/// The hand-off sessions of one interval this node no longer replicates.
#[derive(Debug)]
struct CleanGroup {
    collection: String,
    interval: Interval,
    remaining: usize,
    failed: bool,
}

/// The anti-entropy state of a node: its rounds (the sessions they queue run in
/// [`super::sessions::Sessions`]).
#[derive(Debug)]
pub struct AntiEntropy {
    groups: Vec<CleanGroup>,
    next_round_at: Option<Millis>,
    round: Option<Round>,
    cleaned: u64,
    /// The sessions of the current hand-off that succeeded, by (collection, range,
    /// owner): a round that failed elsewhere is retried without them. Cleared when the
    /// hand-off ends.
    handed_off: BTreeSet<(String, Interval, NodeId)>,
    /// Ranges this node does not replicate that an owner handed to it (a token move
    /// about to be announced, a leave), and when: cleaning leaves them alone for a while,
    /// or it could drop a range a moment before the ring makes this node its owner.
    incoming: Vec<(Interval, Millis)>,
    /// Whether the next round must be a hand-off (re-sync) round: at start, after a
    /// failed commit, when told to join, when the cluster declared this node dead.
    resync_pending: bool,
    /// Whether the node started without saved state (fresh, or its data dir wiped): its
    /// hand-off cannot count itself among a range's copies. Cleared by a hand-off.
    started_empty: bool,
    /// When a joining node first saw another member: its hand-off waits
    /// `ring_delay_ms` from there (see [`NodeConfig::ring_delay_ms`]).
    saw_cluster_at: Option<Millis>,
    outputs: VecDeque<RoundOutput>,
}

/// What the rounds ask of the node.
#[derive(Debug)]
pub(super) enum RoundOutput {
    /// Abort the sessions earlier rounds opened (sync, cleaning), for this reason.
    AbandonRound(&'static str),
    /// Introduce this node to an owner (through membership) before asking it anything.
    Introduce(NodeId),
    /// Send a hand-off round's question.
    Send(NodeId, ReplicaMessage),
    /// A round begins with these sessions: drop the queued ones of the last round
    /// (hand-offs for a migration, leave, removal or move outlive rounds), queue these.
    BeginRound(Vec<Job>),
    /// Queue these sessions after those queued.
    Queue(Vec<Job>),
    /// Start queued sessions, up to the limit; then see whether the round is done.
    Fill,
    /// The round ended (its sessions no longer pass over the peers that failed).
    EndRound,
    /// Every session of the round that started at this time succeeded: the node's last
    /// full sync, to record and persist.
    FullSync(Millis),
    /// The hand-off round succeeded: this node enters the preference lists.
    Resynced,
    /// Report this.
    Event(NodeEvent),
}

/// What the rounds read of the rest of the node, for one input.
pub(super) struct Env<'a, S: Store> {
    /// The membership: who is up, this node's status, the tokens.
    pub membership: &'a Membership,
    /// The ring and the catalogue: whom each range belongs to.
    pub view: &'a View,
    /// The local replica: what this node holds, where cleaning drops and a stale node
    /// wipes.
    pub replica: &'a mut Replica<S>,
    /// The node's random numbers: periods, partners.
    pub rng: &'a mut Rng,
    /// The node's request numbers.
    pub ids: &'a mut RequestIds,
    /// The node's settings: the periods, the grace, the ring delay.
    pub config: &'a NodeConfig,
    /// When the node's last full sync started.
    pub last_full_sync_ms: Option<Millis>,
    /// Whether the node was told to join a cluster.
    pub join_requested: bool,
    /// Whether sync sessions still run or wait.
    pub sessions_busy: bool,
}

impl<S: Store> Env<'_, S> {
    fn me(&self) -> NodeId {
        self.membership.me().id
    }

    /// Whether `id` is running and reachable as far as membership knows (`Alive` or
    /// `Syncing`): a partner for sync sessions.
    fn up(&self, id: NodeId) -> bool {
        self.membership.member(id).is_some_and(|m| m.status.is_up())
    }
}

/// A range a hand-off round syncs: its owners asked, and how many of them it must be
/// synced with.
type HandoffRange = (Interval, Vec<NodeId>, usize);

/// The first step of a hand-off round: learning from the owners which collections
/// exist (a fresh node holds none), before syncing each of them.
///
/// It waits for every owner that serves: an owner that is not `Alive` when the round
/// starts is not asked, and one the membership stops seeing `Alive` (suspected, dead,
/// left) while the round waits is no longer waited for. Each range is then synced with
/// an owner that answered and still serves; a range none of whose owners did keeps the
/// node waiting (the round fails and a new one starts).
#[derive(Debug, Clone)]
struct Discovery {
    req: u64,
    /// Owners asked that have not answered and still serve.
    waiting: BTreeSet<NodeId>,
    /// Owners that answered.
    answered: BTreeSet<NodeId>,
    names: BTreeSet<String>,
    /// For each placement a collection may use: each range to sync, its owners asked,
    /// and how many of them it must be synced with.
    ranges: Vec<(Signature, Vec<HandoffRange>)>,
    /// The layouts of the catalogue the ranges were planned with: a hand-off that ends
    /// with others (the catalogue it brought changed them) plans again.
    layouts: Vec<(String, Signature)>,
    deadline: Millis,
    /// When the question is asked again of the owners that have not answered: an owner
    /// ignores it until it knows this node as a member (see [`super::guard`]), which
    /// the introduction sent with it may not have reached first.
    resend_at: Millis,
}

/// How often a hand-off round asks the owners that have not answered again.
const DISCOVERY_RESEND_MS: Millis = 1_000;

#[derive(Debug, Clone)]
struct Round {
    failed: bool,
    resync: bool,
    started_at: Millis,
    /// Sync sessions of the round, and how many ended.
    total: usize,
    done: usize,
    /// Entries received by the round's sessions.
    entries: u64,
    discovery: Option<Discovery>,
    /// In a hand-off round, the layouts of the catalogue it was planned with.
    layouts: Option<Vec<(String, Signature)>>,
}

/// Progress of a hand-off (re-sync) round, as [`NodeEvent::Handoff`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HandoffProgress {
    /// Sessions finished.
    pub done: usize,
    /// Sessions in the round.
    pub total: usize,
    /// Entries received so far.
    pub entries: u64,
}

/// The table `membership`'s node would see once serving: the owning members and itself.
pub(super) fn table_with_me(membership: &Membership) -> RingTable {
    let me = membership.me();
    RingTable::new(
        (membership.members())
            .filter(|m| m.id != me.id && m.owns())
            .chain(std::iter::once(me))
            .map(|m| (m.id, m.tokens.as_slice())),
    )
}

impl AntiEntropy {
    /// The rounds of a node that starts now: a hand-off round is owed, due at once.
    /// `started_empty`: the node's store holds nothing, or it never finished a hand-off
    /// on it (see [`AntiEntropy::started_empty`]).
    pub(super) fn new(started_empty: bool) -> Self {
        AntiEntropy {
            groups: Vec::new(),
            next_round_at: Some(0),
            round: None,
            cleaned: 0,
            handed_off: BTreeSet::new(),
            incoming: Vec::new(),
            resync_pending: true,
            started_empty,
            saw_cluster_at: None,
            outputs: VecDeque::new(),
        }
    }

    /// When the next round starts, or a hand-off round asks again or gives up waiting.
    pub fn next_deadline(&self) -> Option<Millis> {
        let discovery = self
            .round
            .as_ref()
            .and_then(|r| r.discovery.as_ref())
            .map(|d| d.deadline.min(d.resend_at));
        [self.next_round_at, discovery].into_iter().flatten().min()
    }

    /// Entries dropped after they were handed off to the replicas that own them now.
    pub fn cleaned(&self) -> u64 {
        self.cleaned
    }

    /// Whether no round is running.
    pub fn round_idle(&self) -> bool {
        self.round.is_none()
    }

    /// Whether a re-sync (hand-off) round is under way.
    pub fn resyncing(&self) -> bool {
        self.round.as_ref().is_some_and(|r| r.resync)
    }

    /// Whether a re-sync (hand-off) round is owed and has not started yet.
    pub fn resync_pending(&self) -> bool {
        self.resync_pending
    }

    /// Whether this node started without data it can count among a range's copies
    /// (fresh, wiped, or crashed during its hand-off); cleared by a hand-off.
    pub fn started_empty(&self) -> bool {
        self.started_empty
    }

    /// The progress of the running hand-off round, if one runs.
    pub fn handoff(&self) -> Option<HandoffProgress> {
        self.round.as_ref().filter(|r| r.resync).map(|r| HandoffProgress {
            done: r.done,
            total: r.total,
            entries: r.entries,
        })
    }

    /// The next thing the rounds ask of the node.
    pub(super) fn poll_output(&mut self) -> Option<RoundOutput> {
        self.outputs.pop_front()
    }

    fn event(&mut self, e: NodeEvent) {
        self.outputs.push_back(RoundOutput::Event(e));
    }

    /// Makes the next tick start a round.
    pub(super) fn due_now(&mut self) {
        self.next_round_at = Some(0);
    }

    /// Makes the next tick start a hand-off (re-sync) round: the node must catch its
    /// ranges up before it serves again.
    pub(super) fn resync_soon(&mut self) {
        self.resync_pending = true;
        self.due_now();
    }

    /// Brings the next round forward to a random moment within a quarter period (spread,
    /// so that a partition healing does not start every node's round at once).
    pub(super) fn soon(&mut self, rng: &mut Rng, sync_interval_ms: Millis, now: Millis) {
        if self.round.is_some() {
            return;
        }
        let soon = now + rng.below(sync_interval_ms.max(4) / 4);
        let next = self.next_round_at.map_or(soon, |at| at.min(soon));
        self.next_round_at = Some(next);
    }

    /// Notes that an owner of `range` began handing it to this node, which does not own
    /// it (yet): a token move or a leave about to be announced. Cleaning leaves it alone
    /// for a while.
    pub(super) fn note_incoming(&mut self, range: Interval, now: Millis) {
        if self.incoming.len() >= 1_024 {
            self.incoming.remove(0);
        }
        self.incoming.push((range, now));
    }

    /// Arms the next round unless one is armed or running.
    fn schedule<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        if self.next_round_at.is_none() && self.round.is_none() {
            let period = env.config.sync_interval_ms.max(1);
            let jitter = env.rng.range(period / 2, period + period / 2);
            self.next_round_at = Some(now + jitter);
        }
    }

    /// Starts a round now: a re-sync (hand-off) round when `resync`.
    pub(super) fn start_round<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        resync: bool,
    ) {
        let me = env.me();
        if resync {
            // The sync and cleaning sessions this node opened for an earlier round: a
            // re-sync round plans every range anew, and the peers of a node that must
            // re-sync (the cluster declared it dead) may not answer it before they
            // admit it again.
            self.outputs.push_back(RoundOutput::AbandonRound("a re-sync round begins"));
        }
        // The catalogue, which every member keeps, is synced whole with one member a
        // round (below); the ranges are for every other collection, by the placement
        // each uses.
        let collections: Vec<String> = (env.replica.store().collections().unwrap_or_default())
            .into_iter()
            .filter(|c| !crate::catalogue::is_catalogue(c))
            .collect();
        let signatures = env.view.signatures(&collections);
        let mut jobs = Vec::new();
        let mut groups = Vec::new();
        let mut discovery = None;
        let mut unsyncable = false;
        if resync {
            // Sync what this node will replicate from those who own it now, for each
            // placement a collection uses (a collection this node does not hold yet uses
            // the one its name gives it once the catalogue is here: see `Round::layouts`).
            let with_me = table_with_me(env.membership);
            let mut plans = Vec::new();
            for (key, names) in signatures {
                let placement = env.view.placement_by(&key);
                let would_be = placement.intervals_on(&with_me);
                let mine: Vec<HandoffRange> = would_be
                    .iter()
                    .filter(|(_, replicas)| replicas.contains(&me))
                    .filter_map(|(interval, _)| {
                        let owners = placement.now.list_on(&env.view.table, interval.end);
                        let need = self.handoff_sources(me, &owners);
                        let up: Vec<NodeId> =
                            owners.into_iter().filter(|o| *o != me && env.up(*o)).collect();
                        (need > 0).then_some((*interval, up, need))
                    })
                    .collect();
                plans.push((key, names, would_be, mine));
            }
            let any = plans.iter().any(|(_, _, _, mine)| !mine.is_empty());
            if any {
                let grace = env.config.tombstone_grace_ms;
                if gc::stale(env.last_full_sync_ms, grace, now) {
                    for (_, names, would_be, mine) in &plans {
                        let ranges: Vec<(Interval, Vec<NodeId>)> =
                            mine.iter().map(|(i, o, _)| (*i, o.clone())).collect();
                        let wiped =
                            gc::wipe_shared(env.replica, me, grace, now, names, would_be, &ranges);
                        wiped.into_iter().for_each(|e| self.event(e));
                    }
                    let ranges: Vec<(Interval, Vec<NodeId>)> = plans
                        .iter()
                        .flat_map(|(_, _, _, mine)| mine.iter().map(|(i, o, _)| (*i, o.clone())))
                        .collect();
                    // The catalogue too, which every member keeps: whole, when another
                    // member can give it back.
                    let others: Vec<NodeId> = ranges.iter().flat_map(|(_, o)| o.clone()).collect();
                    if !others.is_empty() {
                        let full = Interval::full();
                        let catalogue = [crate::catalogue::CATALOGUE_COLLECTION.to_string()];
                        let with_me = [(full, vec![me])];
                        let mine = [(full, others)];
                        let wiped = gc::wipe_shared(
                            env.replica,
                            me,
                            grace,
                            now,
                            &catalogue,
                            &with_me,
                            &mine,
                        );
                        wiped.into_iter().for_each(|e| self.event(e));
                    }
                }
                let waiting: BTreeSet<NodeId> = plans
                    .iter()
                    .flat_map(|(_, _, _, mine)| mine.iter().flat_map(|(_, o, _)| o.clone()))
                    .collect();
                let req = env.ids.next(Concern::AntiEntropy);
                self.ask_collections(req, &waiting);
                discovery = Some(Discovery {
                    req,
                    waiting,
                    answered: BTreeSet::new(),
                    names: collections.iter().cloned().collect(),
                    ranges: plans.into_iter().map(|(key, _, _, mine)| (key, mine)).collect(),
                    layouts: env.view.layouts_now(),
                    deadline: now + env.config.sync_timeout_ms,
                    resend_at: now + DISCOVERY_RESEND_MS,
                });
            }
        } else {
            jobs.extend(catalogue_job(env));
            for group in env.view.by_placement(&collections) {
                let collections = &group.collections;
                for (interval, replicas, pending) in group.intervals {
                    if replicas.contains(&me) {
                        let (up, down): (Vec<NodeId>, Vec<NodeId>) =
                            replicas.into_iter().filter(|r| *r != me).partition(|r| env.up(*r));
                        // With every other owner down the range cannot be compared: the round
                        // is not a full sync.
                        unsyncable |= up.is_empty() && !down.is_empty();
                        for c in collections {
                            if let Some(i) = env.rng.index(up.len()) {
                                let mut others = up.clone();
                                let peer = others.remove(i);
                                let job = Job::new(c, interval, peer, Purpose::Sync);
                                jobs.push(job.with_others(others));
                            }
                        }
                        continue;
                    }
                    let hold_off = 2 * env.config.sync_interval_ms.max(env.config.ring_delay_ms);
                    self.incoming.retain(|(_, at)| now.saturating_sub(*at) < hold_off);
                    // A range handed to this node, or one it is a pending replica of (it will
                    // own it, or owned it until a change other coordinators may not know
                    // yet), stays.
                    let incoming = self.incoming.iter().any(|(range, _)| {
                        range.segments().into_iter().flatten().any(|s| interval.overlaps_segment(s))
                    }) || pending;
                    for c in collections {
                        let holds =
                            env.replica.range(c, interval, None, 1).is_ok_and(|r| !r.is_empty());
                        if !holds || replicas.is_empty() || incoming {
                            continue;
                        }
                        let g = groups.len();
                        groups.push(CleanGroup {
                            collection: c.clone(),
                            interval,
                            remaining: replicas.len(),
                            failed: false,
                        });
                        for r in &replicas {
                            jobs.push(Job::new(c, interval, *r, Purpose::Clean(g)));
                        }
                    }
                }
            }
        }
        let total = jobs.iter().filter(|j| j.purpose == Purpose::Sync).count();
        self.outputs.push_back(RoundOutput::BeginRound(jobs));
        self.groups = groups;
        self.round = Some(Round {
            failed: unsyncable,
            resync,
            started_at: now,
            total,
            done: 0,
            entries: 0,
            discovery,
            layouts: None,
        });
        self.next_round_at = None;
        if resync {
            self.report_handoff();
        }
        self.outputs.push_back(RoundOutput::Fill);
    }

    /// Asks `owners` which collections exist, introducing this node first: an owner
    /// serves only current members, and a newcomer (or a node coming back from a
    /// death) may not have reached it by gossip yet.
    fn ask_collections(&mut self, req: u64, owners: &BTreeSet<NodeId>) {
        for peer in owners {
            self.outputs.push_back(RoundOutput::Introduce(*peer));
            let q = ReplicaMessage::ListCollections { req };
            self.outputs.push_back(RoundOutput::Send(*peer, q));
        }
    }

    fn report_handoff(&mut self) {
        if let Some(p) = self.handoff() {
            self.event(NodeEvent::Handoff(p));
        }
    }

    /// A session a round queued ended for good (a sync, or a cleaning hand-off).
    pub(super) fn session_ended<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        job: Job,
        ok: bool,
        entries: u64,
    ) {
        match job.purpose {
            Purpose::Sync => {
                let resync = self.round.as_mut().map(|r| {
                    r.done += 1;
                    r.entries += entries;
                    r.failed |= !ok;
                    r.resync
                });
                if resync == Some(true) {
                    if ok {
                        // Kept across failed rounds: a retry does not copy it again.
                        self.handed_off.insert((job.collection.clone(), job.interval, job.peer));
                    }
                    self.report_handoff();
                }
            }
            Purpose::Clean(g) => {
                let Some(group) = self.groups.get_mut(g) else { return };
                group.remaining = group.remaining.saturating_sub(1);
                group.failed |= !ok;
                if group.remaining == 0 && !group.failed {
                    let (collection, interval) = (group.collection.clone(), group.interval);
                    self.drop_handed_off(env, collection, interval);
                }
            }
            Purpose::Migrate | Purpose::Leave | Purpose::Remove | Purpose::Move => {}
        }
    }

    /// Every owner of `interval` has what this node held there: drop it.
    fn drop_handed_off<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        collection: String,
        interval: Interval,
    ) {
        // The ring or the collection's layout may have changed during the round; only
        // drop what is still foreign.
        let placement = env.view.placement_for(&collection);
        let me = env.me();
        if placement.list_on(&env.view.table, interval.end).contains(&me)
            || placement.pending_in(me, &interval)
        {
            return;
        }
        match env.replica.delete_range(&collection, interval) {
            Ok(entries) => {
                self.cleaned += entries;
                self.event(NodeEvent::Cleaned { collection, interval, entries });
            }
            Err(e) => self.event(NodeEvent::StoreFailed(e)),
        }
    }

    /// Ends the round if none of its sessions runs or waits and it is not discovering.
    pub(super) fn finish_round_if_done<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        let discovering = self.round.as_ref().is_some_and(|r| r.discovery.is_some());
        if env.sessions_busy || discovering {
            return;
        }
        let Some(mut round) = self.round.take() else { return };
        self.outputs.push_back(RoundOutput::EndRound);
        self.groups.clear();
        // A hand-off planned with layouts the catalogue it brought changed missed what
        // this node owns under the new ones: it plans again.
        if round.layouts.as_ref().is_some_and(|l| *l != env.view.layouts_now()) {
            round.failed = true;
        }
        if round.failed {
            if round.resync {
                // The node must not serve before it caught up: try again shortly.
                self.resync_pending = true;
                self.next_round_at = Some(now + 1_000);
                return;
            }
        } else {
            self.outputs.push_back(RoundOutput::FullSync(round.started_at));
            let (took_ms, grace_ms) =
                (now.saturating_sub(round.started_at), env.config.tombstone_grace_ms);
            if took_ms > grace_ms / 4 {
                self.event(NodeEvent::SlowSync { took_ms, grace_ms });
            }
            if round.resync {
                self.started_empty = false;
                self.handed_off.clear();
                self.outputs.push_back(RoundOutput::Resynced);
            }
        }
        self.schedule(env, now);
    }

    /// Asks the owners a hand-off round still waits for again, or gives up on them.
    pub(super) fn tick_discovery<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        let resend = (self.round.as_mut())
            .and_then(|r| r.discovery.as_mut())
            .filter(|d| d.resend_at <= now && d.deadline > now)
            .map(|d| {
                d.resend_at = now + DISCOVERY_RESEND_MS;
                (d.req, d.waiting.clone())
            });
        if let Some((req, waiting)) = resend {
            self.ask_collections(req, &waiting);
        }
        let late = (self.round.as_ref())
            .and_then(|r| r.discovery.as_ref())
            .is_some_and(|d| d.deadline <= now);
        if late {
            if let Some(r) = self.round.as_mut() {
                r.discovery = None;
                r.failed = true;
            }
            self.finish_round_if_done(env, now);
        }
    }

    /// Whether a round is due now, and whether it is a re-sync (hand-off) round; when
    /// none is, the sessions queued may start ([`RoundOutput::Fill`]).
    pub(super) fn due<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) -> Option<bool> {
        if self.round.is_none() && self.next_round_at.is_none() {
            self.schedule(env, now);
        }
        if self.next_round_at.is_none_or(|t| t > now) {
            self.outputs.push_back(RoundOutput::Fill);
            return None;
        }
        let membership = env.membership;
        let syncing = membership.me().status == Status::Syncing;
        if syncing && env.join_requested && membership.size() <= 1 {
            // Joining: wait for the seed's view before choosing whom to sync with.
            self.next_round_at = Some(now + 200);
            return None;
        }
        if syncing && membership.me().joining && membership.size() > 1 {
            // A pending replica copies its ranges only once every coordinator has had
            // time to learn of it: from then on every write reaches it too.
            let since = *self.saw_cluster_at.get_or_insert(now);
            if now < since + env.config.ring_delay_ms {
                self.next_round_at = Some(since + env.config.ring_delay_ms);
                return None;
            }
        }
        Some(std::mem::take(&mut self.resync_pending) || syncing)
    }

    /// An owner answered a hand-off round's question: which collections exist.
    pub(super) fn on_collection_list<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        from: NodeId,
        req: u64,
        names: Vec<String>,
    ) {
        let Some(round) = self.round.as_mut() else { return };
        let Some(d) = round.discovery.as_mut().filter(|d| d.req == req) else { return };
        let owner =
            (d.ranges.iter().flat_map(|(_, r)| r)).any(|(_, owners, _)| owners.contains(&from));
        if !owner || !d.answered.insert(from) {
            return;
        }
        d.waiting.remove(&from);
        let valid = names.into_iter().filter(|c| crate::store::validate_collection(c).is_ok());
        d.names.extend(valid);
        if d.waiting.is_empty() {
            self.finish_discovery(env);
        }
    }

    /// Stops waiting for the owners that stopped serving (suspected, dead, left) since
    /// the hand-off round asked them, as sessions with them are abandoned.
    pub(super) fn drop_down_owners<S: Store>(&mut self, env: &mut Env<'_, S>) {
        let Some(d) = self.round.as_mut().and_then(|r| r.discovery.as_mut()) else {
            return;
        };
        let before = d.waiting.len();
        d.waiting.retain(|o| env.membership.member(*o).is_some_and(|m| m.status.is_up()));
        if d.waiting.len() < before && d.waiting.is_empty() {
            self.finish_discovery(env);
        }
    }

    /// Every owner that serves answered: queues, for each collection and range, a
    /// session with one of the range's owners that answered and still serves. A range
    /// with no such owner fails the round, so the node keeps waiting rather than serve
    /// without its data.
    fn finish_discovery<S: Store>(&mut self, env: &mut Env<'_, S>) {
        let Some(d) = self.round.as_mut().and_then(|r| r.discovery.take()) else {
            return;
        };
        let membership = env.membership;
        let up = |o: &NodeId| membership.member(*o).is_some_and(|m| m.status.is_up());
        let catalogue = crate::catalogue::CATALOGUE_COLLECTION;
        let names: Vec<(String, Signature)> = (d.names.iter())
            .filter(|c| c.as_str() != catalogue)
            .map(|c| (c.clone(), env.view.signature(c)))
            .collect();
        // The ranges of the placements the collections use, from the owners that answered.
        let ranges: Vec<(Signature, Interval, Vec<NodeId>, usize)> = (d.ranges.into_iter())
            .filter(|(key, _)| names.iter().any(|(_, k)| k == key))
            .flat_map(|(key, ranges)| {
                let answered = &d.answered;
                ranges.into_iter().map(move |(interval, owners, need)| {
                    let owners = owners.into_iter().filter(|o| answered.contains(o) && up(o));
                    (key.clone(), interval, owners.collect(), need)
                })
            })
            .collect();
        let mut jobs = Vec::new();
        let failed = ranges.iter().any(|(_, _, owners, need)| owners.len() < *need);
        if !failed {
            let done = &self.handed_off;
            for (c, key) in &names {
                for (_, interval, owners, need) in ranges.iter().filter(|r| r.0 == *key) {
                    let (copied, mut rest): (Vec<NodeId>, Vec<NodeId>) =
                        owners.iter().partition(|o| done.contains(&(c.clone(), *interval, **o)));
                    env.rng.shuffle(&mut rest);
                    // Only a range synced with a single owner may fall back on another
                    // one: with several, a fallback could repeat an owner already synced,
                    // and the round fails and is planned again instead.
                    let fallback = if *need == 1 { owners.clone() } else { Vec::new() };
                    for peer in rest.into_iter().take(need.saturating_sub(copied.len())) {
                        let job = Job::new(c, *interval, peer, Purpose::Sync);
                        jobs.push(job.with_fallback(fallback.clone()));
                    }
                }
            }
            // The catalogue, which every member keeps, whole from one that answered.
            if d.names.contains(catalogue) {
                let mut peers: Vec<NodeId> = d.answered.iter().copied().filter(up).collect();
                peers.sort_unstable();
                peers.dedup();
                if let Some(i) = env.rng.index(peers.len()) {
                    jobs.push(Job::new(catalogue, Interval::full(), peers[i], Purpose::Sync));
                }
            }
        }
        let Some(round) = self.round.as_mut() else { return };
        round.failed |= failed;
        round.layouts = Some(d.layouts);
        round.total = jobs.len();
        self.outputs.push_back(RoundOutput::Queue(jobs));
        self.report_handoff();
        self.outputs.push_back(RoundOutput::Fill);
    }

    /// With how many other owners of a range (`owners`, its current owners, this node
    /// `me` among them if it owns it already) a hand-off round must sync it before this
    /// node counts toward read quorums there. A write acknowledged by a quorum W of the n
    /// owners is on every set of n − W + 1 of them, so merging that many covers every
    /// acknowledged write; a node that kept its data through a restart is one of them
    /// itself. At least one, when there is anyone to sync with: a node that was away
    /// catches up on what it missed.
    fn handoff_sources(&self, me: NodeId, owners: &[NodeId]) -> usize {
        let others = owners.iter().filter(|o| **o != me).count();
        let n = owners.len();
        if n == 0 {
            return 0;
        }
        let covering = covering(n);
        let kept = owners.contains(&me) && !self.started_empty;
        let need = if kept { covering.saturating_sub(1) } else { covering };
        need.max(1).min(others)
    }
}

/// A session syncing the whole catalogue with a member that is up, chosen at random
/// (none while no other member is up).
fn catalogue_job<S: Store>(env: &mut Env<'_, S>) -> Option<Job> {
    let me = env.me();
    let up: Vec<NodeId> = (env.view.table.vnodes().iter().map(|v| v.node))
        .filter(|id| *id != me && env.up(*id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut others = up;
    let peer = others.remove(env.rng.index(others.len())?);
    let catalogue = crate::catalogue::CATALOGUE_COLLECTION;
    Some(Job::new(catalogue, Interval::full(), peer, Purpose::Sync).with_others(others))
}

/// Of a range's `n` owners, how many together hold every write acknowledged at `quorum`
/// (W = ⌊n/2⌋ + 1 of them stored it, so any n − W + 1 include one that did).
pub(super) fn covering(n: usize) -> usize {
    n - (n / 2 + 1) + 1
}
