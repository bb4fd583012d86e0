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
//! not the round. Each session's end comes back here (`Node::on_session_end`).
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

use super::{
    layouts::Signature,
    sessions::{Job, Purpose},
    Node, NodeEvent, Output,
};
use crate::{
    entry::NodeId,
    hash::Interval,
    membership::Status,
    proto::{Message, ReplicaMessage, SyncBody, SyncMessage},
    ring::RingTable,
    store::Store,
    sync::SyncConfig,
    Millis,
};
use std::collections::BTreeSet;

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
#[derive(Debug, Default)]
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

impl AntiEntropy {
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

    /// The progress of the running hand-off round, if one runs.
    pub fn handoff(&self) -> Option<HandoffProgress> {
        self.round.as_ref().filter(|r| r.resync).map(|r| HandoffProgress {
            done: r.done,
            total: r.total,
            entries: r.entries,
        })
    }
}

impl<S: Store> Node<S> {
    /// Arms the next round unless one is armed or running.
    pub(super) fn schedule_sync(&mut self, now: Millis) {
        if self.anti_entropy.next_round_at.is_none() && self.anti_entropy.round.is_none() {
            let period = self.config.sync_interval_ms.max(1);
            let jitter = self.rng.range(period / 2, period + period / 2);
            self.anti_entropy.next_round_at = Some(now + jitter);
        }
    }

    /// Brings the next round forward to a random moment within a quarter period (spread,
    /// so that a partition healing does not start every node's round at once).
    pub(super) fn anti_entropy_soon(&mut self, now: Millis) {
        if self.anti_entropy.round.is_some() {
            return;
        }
        let soon = now + self.rng.below(self.config.sync_interval_ms.max(4) / 4);
        let next = self.anti_entropy.next_round_at.map_or(soon, |at| at.min(soon));
        self.anti_entropy.next_round_at = Some(next);
    }

    /// Makes the next tick start a round.
    pub(super) fn anti_entropy_due_now(&mut self) {
        self.anti_entropy.next_round_at = Some(0);
    }

    /// The table this node would see once serving: the owning members and itself.
    pub(super) fn table_with_me(&self) -> RingTable {
        let me = self.membership.me().clone();
        RingTable::new(
            self.membership
                .members()
                .filter(|m| m.id != me.id && m.owns())
                .chain(std::iter::once(&me))
                .map(|m| (m.id, m.tokens.as_slice())),
        )
    }

    /// Starts a round now: a re-sync (hand-off) round when `resync`.
    pub(super) fn start_round(&mut self, now: Millis, resync: bool) {
        let me = self.id();
        if resync {
            // The sync and cleaning sessions this node opened for an earlier round: a
            // re-sync round plans every range anew, and the peers of a node that must
            // re-sync (the cluster declared it dead) may not answer it before they
            // admit it again.
            let round = |p: Purpose| matches!(p, Purpose::Sync | Purpose::Clean(_));
            self.sessions.abandon(round, "a re-sync round begins");
            self.collect_sessions(now);
        }
        // The catalogue, which every member keeps, is synced whole with one member a
        // round (below); the ranges are for every other collection, by the placement
        // each uses.
        let collections: Vec<String> = (self.replica.store().collections().unwrap_or_default())
            .into_iter()
            .filter(|c| !crate::catalogue::is_catalogue(c))
            .collect();
        let signatures = self.view.signatures(&collections);
        let mut jobs = Vec::new();
        let mut groups = Vec::new();
        let mut discovery = None;
        let mut unsyncable = false;
        if resync {
            // Sync what this node will replicate from those who own it now, for each
            // placement a collection uses (a collection this node does not hold yet uses
            // the one its name gives it once the catalogue is here: see `Round::layouts`).
            let with_me = self.table_with_me();
            let mut plans = Vec::new();
            for (key, names) in signatures {
                let placement = self.view.placement_by(&key);
                let would_be = placement.intervals_on(&with_me);
                let mine: Vec<HandoffRange> = would_be
                    .iter()
                    .filter(|(_, replicas)| replicas.contains(&me))
                    .filter_map(|(interval, _)| {
                        let owners = placement.now.list_on(&self.view.table, interval.end);
                        let need = self.handoff_sources(&owners);
                        let up: Vec<NodeId> =
                            owners.into_iter().filter(|o| *o != me && self.up(*o)).collect();
                        (need > 0).then_some((*interval, up, need))
                    })
                    .collect();
                plans.push((key, names, would_be, mine));
            }
            let any = plans.iter().any(|(_, _, _, mine)| !mine.is_empty());
            if any {
                if self.stale(now) {
                    for (_, names, would_be, mine) in &plans {
                        let ranges: Vec<(Interval, Vec<NodeId>)> =
                            mine.iter().map(|(i, o, _)| (*i, o.clone())).collect();
                        self.wipe_shared(now, names, would_be, &ranges);
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
                        self.wipe_shared(now, &catalogue, &with_me, &[(full, others)]);
                    }
                }
                let waiting: BTreeSet<NodeId> = plans
                    .iter()
                    .flat_map(|(_, _, _, mine)| mine.iter().flat_map(|(_, o, _)| o.clone()))
                    .collect();
                let req = self.ids.next(super::ids::Concern::AntiEntropy);
                self.ask_collections(req, &waiting);
                discovery = Some(Discovery {
                    req,
                    waiting,
                    answered: BTreeSet::new(),
                    names: collections.iter().cloned().collect(),
                    ranges: plans.into_iter().map(|(key, _, _, mine)| (key, mine)).collect(),
                    layouts: self.view.layouts_now(),
                    deadline: now + self.config.sync_timeout_ms,
                    resend_at: now + DISCOVERY_RESEND_MS,
                });
            }
        } else {
            jobs.extend(self.catalogue_job());
            for group in self.view.by_placement(&collections) {
                let collections = &group.collections;
                for (interval, replicas, pending) in group.intervals {
                    if replicas.contains(&me) {
                        let (up, down): (Vec<NodeId>, Vec<NodeId>) =
                            replicas.into_iter().filter(|r| *r != me).partition(|r| self.up(*r));
                        // With every other owner down the range cannot be compared: the round
                        // is not a full sync.
                        unsyncable |= up.is_empty() && !down.is_empty();
                        for c in collections {
                            if let Some(i) = self.rng.index(up.len()) {
                                let mut others = up.clone();
                                let peer = others.remove(i);
                                let job = Job::new(c, interval, peer, Purpose::Sync);
                                jobs.push(job.with_others(others));
                            }
                        }
                        continue;
                    }
                    let hold_off = 2 * self.config.sync_interval_ms.max(self.config.ring_delay_ms);
                    self.anti_entropy.incoming.retain(|(_, at)| now.saturating_sub(*at) < hold_off);
                    // A range handed to this node, or one it is a pending replica of (it will
                    // own it, or owned it until a change other coordinators may not know
                    // yet), stays.
                    let incoming = self.anti_entropy.incoming.iter().any(|(range, _)| {
                        range.segments().into_iter().flatten().any(|s| interval.overlaps_segment(s))
                    }) || pending;
                    for c in collections {
                        let holds =
                            self.replica.range(c, interval, None, 1).is_ok_and(|r| !r.is_empty());
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
        // A migration's or a leave's hand-off outlives rounds.
        let outlives =
            |p| matches!(p, Purpose::Migrate | Purpose::Leave | Purpose::Remove | Purpose::Move);
        self.sessions.begin_round(outlives, jobs);
        let ae = &mut self.anti_entropy;
        ae.groups = groups;
        ae.round = Some(Round {
            failed: unsyncable,
            resync,
            started_at: now,
            total,
            done: 0,
            entries: 0,
            discovery,
            layouts: None,
        });
        ae.next_round_at = None;
        if resync {
            self.report_handoff();
        }
        self.fill_sessions(now);
    }

    /// A session syncing the whole catalogue with a member that is up, chosen at random
    /// (none while no other member is up).
    fn catalogue_job(&mut self) -> Option<Job> {
        let me = self.id();
        let up: Vec<NodeId> = (self.view.table.vnodes().iter().map(|v| v.node))
            .filter(|id| *id != me && self.up(*id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut others = up;
        let peer = others.remove(self.rng.index(others.len())?);
        let catalogue = crate::catalogue::CATALOGUE_COLLECTION;
        Some(Job::new(catalogue, Interval::full(), peer, Purpose::Sync).with_others(others))
    }

    /// Asks `owners` which collections exist, introducing this node first: an owner
    /// serves only current members, and a newcomer (or a node coming back from a
    /// death) may not have reached it by gossip yet.
    fn ask_collections(&mut self, req: u64, owners: &BTreeSet<NodeId>) {
        for peer in owners {
            self.membership.introduce_to(*peer);
            self.collect_membership();
            self.send(*peer, Message::Replica(ReplicaMessage::ListCollections { req }));
        }
    }

    /// Queues, ahead of the round's sessions, the hand-off sessions of a token move
    /// (each ahead of the one before: the last runs first).
    pub(super) fn queue_migration_sessions(&mut self, jobs: Vec<(String, Interval, NodeId)>) {
        for (collection, interval, peer) in jobs {
            self.sessions.push_front(Job::new(&collection, interval, peer, Purpose::Migrate));
        }
    }

    /// Sync settings: paged messages, and collected tombstones not taken back.
    pub(super) fn sync_config(&self, now: Millis) -> SyncConfig {
        let collected_before = now.checked_sub(self.config.tombstone_grace_ms);
        let limits = Some(self.entry_limits(now));
        SyncConfig { collected_before, limits, ..SyncConfig::default() }
    }

    /// Queues hand-off sessions ahead of everything else (a graceful leave).
    pub(super) fn queue_leave_sessions(&mut self, jobs: Vec<(String, Interval, NodeId)>) {
        for (collection, interval, peer) in jobs.into_iter().rev() {
            self.sessions.push_front(Job::new(&collection, interval, peer, Purpose::Leave));
        }
    }

    /// Queues hand-off sessions for the removal of a dead member, ahead of the round's.
    pub(super) fn queue_removal_sessions(&mut self, jobs: Vec<(String, Interval, NodeId)>) {
        for (collection, interval, peer) in jobs.into_iter().rev() {
            self.sessions.push_front(Job::new(&collection, interval, peer, Purpose::Remove));
        }
    }

    /// Queues a session after those queued.
    pub(super) fn queue_session(
        &mut self,
        collection: &str,
        interval: Interval,
        peer: NodeId,
        purpose: Purpose,
    ) {
        self.sessions.push_back(Job::new(collection, interval, peer, purpose));
    }

    fn report_handoff(&mut self) {
        if let Some(p) = self.anti_entropy.handoff() {
            self.outputs.push_back(Output::Event(NodeEvent::Handoff(p)));
        }
    }

    /// Starts queued sessions, up to the limit.
    pub(super) fn fill_sessions(&mut self, now: Millis) {
        let (sessions, mut env) = self.session_parts(now);
        sessions.fill(&mut env, now);
        self.collect_sessions(now);
        self.finish_round_if_done(now);
    }

    /// A session this node initiated ended for good: its end goes to the part of the
    /// node that queued it.
    pub(super) fn on_session_end(&mut self, now: Millis, job: Job, ok: bool, entries: u64) {
        let ae = &mut self.anti_entropy;
        match job.purpose {
            Purpose::Sync => {
                let resync = ae.round.as_mut().map(|r| {
                    r.done += 1;
                    r.entries += entries;
                    r.failed |= !ok;
                    r.resync
                });
                if resync == Some(true) {
                    if ok {
                        // Kept across failed rounds: a retry does not copy it again.
                        ae.handed_off.insert((job.collection.clone(), job.interval, job.peer));
                    }
                    self.report_handoff();
                }
            }
            Purpose::Migrate => self.on_migration_session_end(now, ok),
            Purpose::Leave => self.on_leave_session_end(now, ok, entries),
            Purpose::Remove => self.on_removal_session_end(now, ok),
            Purpose::Move => self.on_move_session_end(now, &job.collection, ok),
            Purpose::Clean(g) => {
                let Some(group) = ae.groups.get_mut(g) else { return };
                group.remaining = group.remaining.saturating_sub(1);
                group.failed |= !ok;
                if group.remaining == 0 && !group.failed {
                    let (collection, interval) = (group.collection.clone(), group.interval);
                    self.drop_handed_off(now, collection, interval);
                }
            }
        }
    }

    /// Every owner of `interval` has what this node held there: drop it.
    fn drop_handed_off(&mut self, _now: Millis, collection: String, interval: Interval) {
        // The ring or the collection's layout may have changed during the round; only
        // drop what is still foreign.
        let placement = self.view.placement_for(&collection);
        let me = self.id();
        if placement.list_on(&self.view.table, interval.end).contains(&me)
            || placement.pending_in(me, &interval)
        {
            return;
        }
        match self.replica.delete_range(&collection, interval) {
            Ok(entries) => {
                self.anti_entropy.cleaned += entries;
                self.outputs.push_back(Output::Event(NodeEvent::Cleaned {
                    collection,
                    interval,
                    entries,
                }));
            }
            Err(e) => self.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e))),
        }
    }

    fn finish_round_if_done(&mut self, now: Millis) {
        let discovering = self.anti_entropy.round.as_ref().is_some_and(|r| r.discovery.is_some());
        if self.sessions.busy() || discovering {
            return;
        }
        let Some(mut round) = self.anti_entropy.round.take() else { return };
        self.sessions.end_round();
        self.anti_entropy.groups.clear();
        // A hand-off planned with layouts the catalogue it brought changed missed what
        // this node owns under the new ones: it plans again.
        if round.layouts.as_ref().is_some_and(|l| *l != self.view.layouts_now()) {
            round.failed = true;
        }
        if round.failed {
            if round.resync {
                // The node must not serve before it caught up: try again shortly.
                self.resync_pending = true;
                self.anti_entropy.next_round_at = Some(now + 1_000);
                return;
            }
        } else {
            self.state.last_full_sync_ms = Some(round.started_at);
            self.outputs.push_back(Output::Persist(self.state.clone()));
            let (took_ms, grace_ms) =
                (now.saturating_sub(round.started_at), self.config.tombstone_grace_ms);
            if took_ms > grace_ms / 4 {
                self.outputs.push_back(Output::Event(NodeEvent::SlowSync { took_ms, grace_ms }));
            }
            if round.resync {
                self.started_empty = false;
                self.anti_entropy.handed_off.clear();
                self.membership.resynced(now);
                self.collect_membership();
            }
        }
        self.schedule_sync(now);
    }

    /// Runs due rounds and abandons silent sessions, and sessions with peers that
    /// stopped serving (suspected, dead, left).
    pub(super) fn tick_sync(&mut self, now: Millis) {
        let (sessions, mut env) = self.session_parts(now);
        sessions.tick(&mut env, now);
        self.collect_sessions(now);
        self.drop_down_owners(now);
        let resend = self
            .anti_entropy
            .round
            .as_mut()
            .and_then(|r| r.discovery.as_mut())
            .filter(|d| d.resend_at <= now && d.deadline > now)
            .map(|d| {
                d.resend_at = now + DISCOVERY_RESEND_MS;
                (d.req, d.waiting.clone())
            });
        if let Some((req, waiting)) = resend {
            self.ask_collections(req, &waiting);
        }
        let discovery_late = self
            .anti_entropy
            .round
            .as_ref()
            .and_then(|r| r.discovery.as_ref())
            .is_some_and(|d| d.deadline <= now);
        if discovery_late {
            if let Some(r) = self.anti_entropy.round.as_mut() {
                r.discovery = None;
                r.failed = true;
            }
            self.finish_round_if_done(now);
        }
        if self.anti_entropy.round.is_none() && self.anti_entropy.next_round_at.is_none() {
            self.schedule_sync(now);
        }
        if self.anti_entropy.next_round_at.is_some_and(|t| t <= now) {
            let syncing = self.membership.me().status == Status::Syncing;
            if syncing && self.join_requested && self.membership.size() <= 1 {
                // Joining: wait for the seed's view before choosing whom to sync with.
                self.anti_entropy.next_round_at = Some(now + 200);
                return;
            }
            if syncing && self.membership.me().joining && self.membership.size() > 1 {
                // A pending replica copies its ranges only once every coordinator has had
                // time to learn of it: from then on every write reaches it too.
                let since = *self.saw_cluster_at.get_or_insert(now);
                if now < since + self.config.ring_delay_ms {
                    self.anti_entropy.next_round_at = Some(since + self.config.ring_delay_ms);
                    return;
                }
            }
            let resync = std::mem::take(&mut self.resync_pending) || syncing;
            self.start_round(now, resync);
        } else {
            self.fill_sessions(now);
        }
    }

    /// Handles a sync message from `from`.
    pub(super) fn handle_sync(&mut self, now: Millis, from: NodeId, msg: SyncMessage) {
        let key = (from, msg.session);
        if let SyncBody::Begin { range, collection, .. } = &msg.body {
            if !self.may_push(from, collection, *range) {
                self.peer_stats.refused_sessions += 1;
                let reason = format!(
                    "node {from} neither replicates {range} nor hands it to node {}",
                    self.id()
                );
                let body = SyncBody::Abort { reason };
                self.send(from, Message::Sync(SyncMessage { session: key.1, body }));
                return;
            }
            let range = *range;
            let owners = self.view.placement_for(collection).list_on(&self.view.table, range.end);
            // An owner handing a range to this node, which does not own it (yet): a token
            // move or a leave about to be announced.
            if owners.contains(&from) && !owners.contains(&self.id()) {
                let incoming = &mut self.anti_entropy.incoming;
                if incoming.len() >= 1_024 {
                    incoming.remove(0);
                }
                incoming.push((range, now));
            }
            let (sessions, mut env) = self.session_parts(now);
            sessions.accept(&mut env, now, from, msg);
            self.collect_sessions(now);
            return;
        }
        let (sessions, mut env) = self.session_parts(now);
        let initiator = sessions.handle(&mut env, now, from, msg);
        self.collect_sessions(now);
        if initiator {
            self.fill_sessions(now);
        }
    }
}

impl<S: Store> Node<S> {
    /// An owner answered a hand-off round's question: which collections exist.
    pub(super) fn on_collection_list(
        &mut self,
        now: Millis,
        from: NodeId,
        req: u64,
        names: Vec<String>,
    ) {
        let Some(round) = self.anti_entropy.round.as_mut() else { return };
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
            self.finish_discovery(now);
        }
    }

    /// Stops waiting for the owners that stopped serving (suspected, dead, left) since
    /// the hand-off round asked them, as sessions with them are abandoned.
    fn drop_down_owners(&mut self, now: Millis) {
        let Some(d) = self.anti_entropy.round.as_mut().and_then(|r| r.discovery.as_mut()) else {
            return;
        };
        let before = d.waiting.len();
        let membership = &self.membership;
        d.waiting.retain(|o| membership.member(*o).is_some_and(|m| m.status.is_up()));
        if d.waiting.len() < before && d.waiting.is_empty() {
            self.finish_discovery(now);
        }
    }

    /// Every owner that serves answered: queues, for each collection and range, a
    /// session with one of the range's owners that answered and still serves. A range
    /// with no such owner fails the round, so the node keeps waiting rather than serve
    /// without its data.
    fn finish_discovery(&mut self, now: Millis) {
        let Some(d) = self.anti_entropy.round.as_mut().and_then(|r| r.discovery.take()) else {
            return;
        };
        let membership = &self.membership;
        let up = |o: &NodeId| membership.member(*o).is_some_and(|m| m.status.is_up());
        let catalogue = crate::catalogue::CATALOGUE_COLLECTION;
        let names: Vec<(String, Signature)> = (d.names.iter())
            .filter(|c| c.as_str() != catalogue)
            .map(|c| (c.clone(), self.view.signature(c)))
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
            let done = &self.anti_entropy.handed_off;
            for (c, key) in &names {
                for (_, interval, owners, need) in ranges.iter().filter(|r| r.0 == *key) {
                    let (copied, mut rest): (Vec<NodeId>, Vec<NodeId>) =
                        owners.iter().partition(|o| done.contains(&(c.clone(), *interval, **o)));
                    self.rng.shuffle(&mut rest);
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
                if let Some(i) = self.rng.index(peers.len()) {
                    jobs.push(Job::new(catalogue, Interval::full(), peers[i], Purpose::Sync));
                }
            }
        }
        let Some(round) = self.anti_entropy.round.as_mut() else { return };
        round.failed |= failed;
        round.layouts = Some(d.layouts);
        round.total = jobs.len();
        jobs.into_iter().for_each(|job| self.sessions.push_back(job));
        self.report_handoff();
        self.fill_sessions(now);
    }

    /// Whether `id` is running and reachable as far as membership knows (`Alive` or
    /// `Syncing`): a partner for sync sessions.
    pub(super) fn up(&self, id: NodeId) -> bool {
        self.membership.member(id).is_some_and(|m| m.status.is_up())
    }

    /// With how many other owners of a range (`owners`, its current owners, this node
    /// among them if it owns it already) a hand-off round must sync it before this node
    /// counts toward read quorums there. A write acknowledged by a quorum W of the n
    /// owners is on every set of n − W + 1 of them, so merging that many covers every
    /// acknowledged write; a node that kept its data through a restart is one of them
    /// itself. At least one, when there is anyone to sync with: a node that was away
    /// catches up on what it missed.
    fn handoff_sources(&self, owners: &[NodeId]) -> usize {
        let me = self.id();
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

/// Of a range's `n` owners, how many together hold every write acknowledged at `quorum`
/// (W = ⌊n/2⌋ + 1 of them stored it, so any n − W + 1 include one that did).
pub(super) fn covering(n: usize) -> usize {
    n - (n / 2 + 1) + 1
}
