//! Membership: who is in the cluster, and who is healthy — gossiped full membership with
//! SWIM failure detection, as a sans-IO state machine.
//!
//! Every node keeps a record of every member: id, address, ring tokens, status and
//! incarnation ([`Member`]). The records travel by gossip, so each node has the whole
//! view and routes in one hop; the statuses come from SWIM (Das, Gupta and Motivala,
//! "SWIM: Scalable Weakly-consistent Infection-style Process Group Membership Protocol",
//! DSN 2002), with the refinements memberlist made standard.
//!
//! ## Failure detection
//!
//! Once per protocol period (`probe_interval_ms`, 1 s) a node pings one member, going
//! round-robin through a shuffled list. No ack within `probe_timeout_ms` (300 ms): it
//! asks `indirect_probes` (3) other members to ping the target for it, which routes
//! around a single bad link. No ack at all by the end of the period: the target becomes
//! `Suspect`. Suspicion is gossiped, and if the suspect does not refute it within the
//! suspicion timeout (`5 × interval × max(1, log10 n)`), it becomes `Dead`. Probing
//! costs each node one ping a period, whatever the cluster size, and a crash is noticed
//! within about one round plus the timeout. This is the seed's "unhealthy, then dead":
//! `Suspect` is unhealthy, `Dead` is dead, and neither serves. See [`swim`].
//!
//! ## Incarnations and refutation
//!
//! A member's incarnation is raised only by the member itself. Records about a member
//! are ordered by (incarnation, status), with `Alive < Syncing < Suspect < Dead < Left`
//! inside one incarnation, and every node keeps the larger: a suspicion beats the alive
//! record it is about, and a member that hears it is suspected answers with a higher
//! incarnation, which beats the suspicion everywhere. A node that restarts from scratch
//! begins at incarnation 0, hears its old record, and jumps above it. The precise rules,
//! and why their merge is order-independent, are in [`member`].
//!
//! ## A dead node is readmitted only after it re-syncs
//!
//! A member declared `Dead` has missed writes, so it must not serve until it has caught
//! up. When a node learns it was declared dead (or left, while it is running) it does not
//! simply refute: it announces itself `Syncing` at a new incarnation and emits
//! [`MembershipEvent::MustResync`]; the node layer re-syncs its data through Merkle
//! anti-entropy and calls [`Membership::resynced`], which announces `Alive`. Everyone
//! else enforces it too: any `Alive` claim for a member last seen dead reads as
//! `Syncing` until the member's own `Syncing` announcement has been seen. Only `Alive`
//! members serve ([`Membership::alive`]).
//!
//! A verdict of death therefore has to be honest, and a node that was cut off from the
//! cluster has, meanwhile, failed to reach everyone else. So a node that hears nothing
//! raises no suspicions and declares nobody dead; before turning a suspicion into a
//! death a node probes the suspect once more, with the suspicion on the ping, so a
//! reachable suspect refutes; and a node that learns it was declared dead drops its own
//! suspicions and verdicts, which date from its isolation, and re-learns the view by
//! push-pull from the node that told it. The details are in [`swim`] and [`view`].
//!
//! ## Dissemination
//!
//! Every change to the view is piggybacked on the next Ping, Ack and PingReq messages,
//! at most `max_piggyback` (8) per message, each about `4 × log10(n + 1)` times, least
//! sent and newest first; an epidemic that reaches everyone in O(log n) periods. Every
//! message also carries its sender's own record, so any message is evidence of life, and
//! a receiver that holds a newer claim about the sender (say, a suspicion the sender has
//! not heard of) tells it at once. Every `push_pull_interval_ms` (10 s) a node exchanges
//! its full state with a random member — anti-entropy for the membership itself, so a
//! node that missed updates converges — and with a random dead one, so the two sides of a
//! healed partition find each other. See [`gossip`].
//!
//! ## Joining and leaving
//!
//! A node starts alone ([`Membership::new`]). [`Membership::join`] sends a `Join` with
//! its record to a seed address; the seed answers with its full state and gossips the
//! newcomer. A joining node is `Alive` at once. **Hand-off hook:** a node that must
//! stream its ranges before serving starts with status [`Status::Syncing`] in the record
//! given to `new` (with [`Member::joining`] set when it is new to the ring: a pending
//! replica, not an owner), and calls [`Membership::resynced`] when its hand-off is done;
//! the same gating that readmits dead nodes then applies to newcomers. A joining node
//! that hears a record of its id from an earlier life that did not leave (it restarted
//! with its data wiped) is an owner: it drops the flag. [`Membership::leave`]
//! announces `Left` at a new incarnation, tells `leave_fanout` members directly, and
//! stops probing; `Left` is final for its incarnation, and other nodes stop probing it.
//!
//! ## Driving it
//!
//! Like the rest of the core, the state machine never reads a clock or a socket: feed it
//! [`Membership::handle`] and [`Membership::tick`] with the current time, drain
//! [`Membership::poll_output`], and wake it at [`Membership::next_deadline`]. Randomness
//! (probe order, helpers, push-pull partners) comes from the seed given to `new`, so a
//! run is a function of its seed and inputs.
//!
//! ## What a peer cannot do
//!
//! Every record from the network is checked; bad ones are dropped and counted in
//! [`MembershipStats`], and no input panics. A record's address (255 bytes) and token
//! list (256) are bounded; a member's own record may carry an incarnation up to
//! [`MAX_INCARNATION`], but a claim about *another* member must stay below it and at
//! most `max_incarnation_step` (2^20) above the highest incarnation seen for that
//! member, so the member can always refute it with an incarnation every node accepts.
//! One message introduces at most `max_new_members` (8) members this node did not know
//! — except a full state it asked for (its join's answer, its own push-pull's answer) —
//! and the view holds at most `max_members` (4,096). A `PingReq` is run only toward a
//! member this node knows, at the address in its own view.

pub mod clock;
pub mod config;
pub mod gossip;
pub mod member;
pub mod message;
pub mod swim;
pub mod view;

pub use clock::ClockStamp;
pub use config::{log10_milli, MembershipConfig};
pub use gossip::BroadcastQueue;
pub use member::{
    labels_admitted, parse_labels, validate_label, LabelError, Member, MemberState, Status,
    MAX_INCARNATION, MAX_LABELS,
};
pub use message::{MembershipEvent, MembershipMessage, MembershipOutput};

use crate::{hash::Position, rng::Rng, Millis, NodeId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use swim::{Prober, Suspicion};

/// Counters of what the membership state machine saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Messages handed to [`Membership::handle`].
    pub messages_received: u64,
    /// Whole messages ignored: from this node's own id, a `Join` whose record is not
    /// the sender's, a `PingReq` that names the requester or this node.
    pub rejected_messages: u64,
    /// Member records ignored: oversized address or token list, incarnation out of
    /// range, a sender record that is not the sender's, or a full view.
    pub rejected_records: u64,
    /// Acks that matched no pending probe (late, duplicate or forged).
    pub unknown_acks: u64,
    /// Messages not sent because the receiver's address is unknown.
    pub unroutable: u64,
    /// Claims about this node it answered with a new incarnation.
    pub refutations: u64,
    /// Times this node learned it was declared down and had to re-sync.
    pub resyncs: u64,
    /// Probes (direct pings) sent.
    pub probes_sent: u64,
    /// Probes that ended the period without any ack.
    pub probes_failed: u64,
    /// Suspicion timeouts postponed: this node itself looked cut off, or it probed the
    /// suspect once more first.
    pub deaths_postponed: u64,
}

/// A join in progress: retried until this node has heard from some member.
#[derive(Debug, Clone)]
struct Joining {
    addr: String,
    next_retry_at: Millis,
}

/// The membership and failure-detection state machine of one node.
#[derive(Debug, Clone)]
pub struct Membership {
    config: MembershipConfig,
    /// This node's id; its record lives in `view` like every other.
    id: NodeId,
    /// Everything known, this node included, by id.
    view: BTreeMap<NodeId, MemberState>,
    rng: Rng,
    broadcasts: BroadcastQueue,
    prober: Prober,
    /// Suspects and when their suspicion times out.
    suspicions: BTreeMap<NodeId, Suspicion>,
    next_push_pull_at: Option<Millis>,
    next_gossip_at: Option<Millis>,
    joining: Option<Joining>,
    /// Members this node sent a push-pull asking for their full state, not answered
    /// yet: their answer may introduce any number of members.
    awaiting_state: BTreeSet<NodeId>,
    /// Whether some member's full state (a push-pull) has been merged: before that, a
    /// node that joins or restarts may know only part of its cluster.
    heard_full_state: bool,
    /// Whether [`Membership::join`] was called: the node belongs to a cluster it must
    /// hear of before its view is complete.
    told_to_join: bool,
    /// Whether the node started without a record of an earlier life (new, or its data
    /// lost): until it hears a complete view, it knows neither the cluster nor its own
    /// standing in it.
    started_fresh: bool,
    outputs: VecDeque<MembershipOutput>,
    stats: MembershipStats,
}

impl Membership {
    /// A node alone in its cluster, described by `me`. Its status starts `Alive`, or
    /// `Syncing` if `me` says so (a node with a hand-off to finish; see the module docs).
    /// `seed` fixes every random choice.
    pub fn new(me: Member, config: MembershipConfig, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let status = if me.status == Status::Syncing { Status::Syncing } else { Status::Alive };
        let incarnation = me.incarnation.min(MAX_INCARNATION);
        let me = me.with(status, incarnation);
        let id = me.id;
        let started_fresh = me.joining;
        let prober = Prober::new(rng.next_u64() >> 1);
        Membership {
            config: config.normalized(),
            id,
            view: BTreeMap::from([(id, MemberState::new(me))]),
            rng,
            broadcasts: BroadcastQueue::default(),
            prober,
            suspicions: BTreeMap::new(),
            next_push_pull_at: None,
            next_gossip_at: None,
            joining: None,
            awaiting_state: BTreeSet::new(),
            heard_full_state: false,
            told_to_join: false,
            started_fresh,
            outputs: VecDeque::new(),
            stats: MembershipStats::default(),
        }
    }

    /// Asks the node listening at `seed_addr` to let this node in. Retried every
    /// `join_retry_ms` until some member has been heard from.
    pub fn join(&mut self, now: Millis, seed_addr: String) {
        if self.me().status == Status::Left {
            return;
        }
        let msg = MembershipMessage::Join { member: self.me().clone(), clock: None };
        self.outputs.push_back(MembershipOutput::SendAddr { addr: seed_addr.clone(), msg });
        let next_retry_at = now.saturating_add(self.config.join_retry_ms);
        self.joining = Some(Joining { addr: seed_addr, next_retry_at });
        self.told_to_join = true;
    }

    /// Leaves the cluster gracefully: `Left` at a new incarnation, told directly to up to
    /// `leave_fanout` running members; probing stops. The node still answers pings.
    pub fn leave(&mut self, now: Millis) {
        let me = self.me().clone();
        if me.status == Status::Left {
            return;
        }
        self.set_me(Member {
            next_tokens: None,
            ..me.with(Status::Left, me.incarnation.saturating_add(1))
        });
        let mut targets = self.others(Status::is_up);
        self.rng.shuffle(&mut targets);
        targets.truncate(self.config.leave_fanout);
        for to in targets {
            let msg = MembershipMessage::Gossip {
                sender: self.me().clone(),
                updates: Vec::new(),
                clock: None,
            };
            self.send(to, msg);
        }
        self.joining = None;
        self.ensure_timers(now);
    }

    /// Tells the state machine the node layer finished re-syncing (or its join
    /// hand-off): a `Syncing` node announces `Alive` at a new incarnation. Returns whether
    /// anything changed (false unless this node is `Syncing`).
    pub fn resynced(&mut self, now: Millis) -> bool {
        let me = self.me().clone();
        if me.status != Status::Syncing {
            return false;
        }
        let alive =
            Member { joining: false, ..me.with(Status::Alive, me.incarnation.saturating_add(1)) };
        self.set_me(alive);
        self.ensure_timers(now);
        true
    }

    /// A node that served alone joins a cluster: its tokens are new to that cluster's
    /// ring, so it announces `Syncing` and *joining* at a new incarnation (a pending
    /// replica, see [`Member::joining`]) until its hand-off ends with
    /// [`Membership::resynced`]. Returns whether anything changed.
    pub fn begin_join(&mut self, now: Millis) -> bool {
        let me = self.me().clone();
        if me.status == Status::Left || (me.status == Status::Syncing && me.joining) {
            return false;
        }
        let joining =
            Member { joining: true, ..me.with(Status::Syncing, me.incarnation.saturating_add(1)) };
        self.set_me(joining);
        self.ensure_timers(now);
        true
    }

    /// The node layer found its data too old to serve (its last complete sync is older
    /// than the tombstone grace period): an `Alive` node announces `Syncing` at a new
    /// incarnation, leaves the preference lists everywhere, and emits
    /// [`MembershipEvent::MustResync`]. Returns whether anything changed.
    pub fn begin_resync(&mut self, now: Millis) -> bool {
        let me = self.me().clone();
        if me.status != Status::Alive {
            return false;
        }
        self.set_me(me.with(Status::Syncing, me.incarnation.saturating_add(1)));
        self.stats.resyncs += 1;
        self.event(MembershipEvent::MustResync);
        self.ensure_timers(now);
        true
    }

    /// Moves this node's ring positions to `tokens` (migration, see `crate::node`): the
    /// own record at a new incarnation, gossiped like any change, so every member adopts
    /// it and rebuilds its token table. `tokens` must be sorted, distinct, non-empty and
    /// at most `max_tokens` long. Returns whether the record changed: not when the tokens
    /// are the same, and not after this node left.
    pub fn set_tokens(&mut self, now: Millis, tokens: Vec<Position>) -> Result<bool, TokensError> {
        if tokens.is_empty() || tokens.len() > self.config.max_tokens {
            return Err(TokensError::Count { count: tokens.len(), max: self.config.max_tokens });
        }
        if !tokens.windows(2).all(|w| w[0] < w[1]) {
            return Err(TokensError::Unsorted);
        }
        let me = self.me().clone();
        if me.status == Status::Left || me.tokens == tokens {
            return Ok(false);
        }
        let incarnation = me.incarnation.saturating_add(1);
        if incarnation > MAX_INCARNATION {
            return Err(TokensError::Incarnation);
        }
        self.set_me(Member { tokens, next_tokens: None, ..me.with(me.status, incarnation) });
        self.broadcasts.push(self.id);
        self.ensure_timers(now);
        Ok(true)
    }

    /// Announces the tokens this node is about to hold (`Some(vec![])`: it is leaving),
    /// or gives a change up (`None`): the own record at a new incarnation, gossiped, so
    /// every member makes the nodes that will replicate its ranges pending replicas
    /// (see [`Member::next_tokens`]). Returns whether the record changed: not when it
    /// says so already, not after this node left, not at the last incarnation.
    pub fn set_next_tokens(&mut self, now: Millis, next: Option<Vec<Position>>) -> bool {
        let me = self.me().clone();
        if me.status == Status::Left || me.next_tokens == next {
            return false;
        }
        if next.as_ref().is_some_and(|t| t.len() > self.config.max_tokens) {
            return false;
        }
        let Some(incarnation) = me.incarnation.checked_add(1).filter(|i| *i <= MAX_INCARNATION)
        else {
            return false;
        };
        self.set_me(Member { next_tokens: next, ..me.with(me.status, incarnation) });
        self.broadcasts.push(self.id);
        self.ensure_timers(now);
        true
    }

    /// Marks `id`, a member this node holds `Dead` that owns tokens, as being removed
    /// by an operator: its record, at the same incarnation, announces it will own
    /// nothing (empty [`Member::next_tokens`], which wins the merge), so every node
    /// makes the members that inherit its ranges pending replicas (see
    /// `node::remove`). The member itself beats it by coming back at a higher
    /// incarnation. Returns whether the view changed.
    pub fn mark_removing(&mut self, now: Millis, id: NodeId) -> bool {
        let Some(record) = self.member(id).cloned() else { return false };
        if id == self.id || record.status != Status::Dead || !record.owns() || record.leaving() {
            return false;
        }
        let changed = self.merge(now, &Member { next_tokens: Some(Vec::new()), ..record });
        self.ensure_timers(now);
        changed
    }

    /// Ends the removal of `id` (see [`Membership::mark_removing`]): its record becomes
    /// `Left` at its incarnation, so it owns nothing any more. Returns whether the view
    /// changed; only a dead member being removed, or one that owns nothing, can be.
    pub fn mark_removed(&mut self, now: Millis, id: NodeId) -> bool {
        let Some(record) = self.member(id).cloned() else { return false };
        let removable = record.leaving() || !record.owns();
        if id == self.id || record.status != Status::Dead || !removable {
            return false;
        }
        let incarnation = record.incarnation;
        let changed = self
            .merge(now, &Member { next_tokens: None, ..record.with(Status::Left, incarnation) });
        self.ensure_timers(now);
        changed
    }

    /// Handles a message that arrived from the member `from`.
    pub fn handle(&mut self, now: Millis, from: NodeId, msg: MembershipMessage) {
        self.stats.messages_received += 1;
        if from == self.id {
            self.stats.rejected_messages += 1;
            return;
        }
        self.prober.last_heard_at = Some(now);
        match msg {
            MembershipMessage::Ping { seq, sender, updates, .. } => {
                let contact = self.absorb(now, from, Some(sender), updates, false, false);
                let updates = self.piggyback(contact.correction);
                let msg = MembershipMessage::Ack {
                    seq,
                    on_behalf: None,
                    sender: self.me().clone(),
                    updates,
                    clock: None,
                };
                self.reply(from, contact.addr, msg);
            }
            MembershipMessage::Ack { seq, on_behalf, sender, updates, .. } => {
                let contact = self.absorb(now, from, Some(sender), updates, false, false);
                self.on_ack(now, from, seq, on_behalf);
                self.correct(from, contact);
            }
            MembershipMessage::PingReq { seq, target, target_addr, sender, updates, .. } => {
                let contact = self.absorb(now, from, Some(sender), updates, false, false);
                self.on_ping_req(now, from, seq, target, target_addr);
                self.correct(from, contact);
            }
            MembershipMessage::PushPull { members, reply, partial, .. } => {
                let sender = members.iter().find(|m| m.id == from).cloned();
                // The answer to this node's own push-pull or join.
                let solicited =
                    !reply && (self.awaiting_state.remove(&from) || self.joining.is_some());
                let contact = self.absorb(now, from, sender, members, true, solicited);
                // A partial view never counts: the new cluster's first node is one that
                // was not told to join.
                if !partial {
                    self.heard_full_state |= self.view.contains_key(&from);
                }
                if reply {
                    let msg = MembershipMessage::PushPull {
                        members: self.full_state(),
                        reply: false,
                        partial: self.view_partial(),
                        clock: None,
                    };
                    self.reply(from, contact.addr, msg);
                } else {
                    self.correct(from, contact);
                }
            }
            MembershipMessage::Join { member, .. } => {
                if member.id != from || !self.config.admits(&member) {
                    self.stats.rejected_messages += 1;
                    return;
                }
                let contact = self.absorb(now, from, Some(member), Vec::new(), true, false);
                let msg = MembershipMessage::PushPull {
                    members: self.full_state(),
                    reply: false,
                    partial: self.view_partial(),
                    clock: None,
                };
                self.reply(from, contact.addr, msg);
            }
            MembershipMessage::Gossip { sender, updates, .. } => {
                let contact = self.absorb(now, from, Some(sender), updates, false, false);
                self.correct(from, contact);
            }
        }
        if self.view.len() > 1 {
            self.joining = None;
        }
        self.ensure_timers(now);
    }

    /// Runs every timer due at `now`: join retries, probes, suspicion timeouts,
    /// push-pull.
    pub fn tick(&mut self, now: Millis) {
        self.expire_relays(now);
        if self.me().status == Status::Left {
            return;
        }
        if self.view.len() > 1 {
            self.joining = None;
        }
        if let Some(j) = self.joining.as_mut() {
            if now >= j.next_retry_at {
                j.next_retry_at = now.saturating_add(self.config.join_retry_ms);
                let addr = j.addr.clone();
                let msg = MembershipMessage::Join { member: self.me().clone(), clock: None };
                self.outputs.push_back(MembershipOutput::SendAddr { addr, msg });
            }
        }
        self.probe_tick(now);
        self.suspicion_tick(now);
        self.push_pull_tick(now);
        self.gossip_tick(now);
        self.ensure_timers(now);
    }

    /// The next output, if any: a message to send or an event.
    pub fn poll_output(&mut self) -> Option<MembershipOutput> {
        self.outputs.pop_front()
    }

    /// When [`Membership::tick`] must next be called, if ever (a node alone and not
    /// joining has nothing to do).
    pub fn next_deadline(&self) -> Option<Millis> {
        [
            self.joining.as_ref().map(|j| j.next_retry_at),
            self.prober.next_at,
            self.prober.indirect_deadline(),
            self.suspicions.values().map(|s| s.wake_at(self.config.probe_interval_ms)).min(),
            self.next_push_pull_at,
            self.next_gossip_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Every known member, this node included, sorted by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.view.values().map(MemberState::record)
    }

    /// The record of `id`, if known.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.view.get(&id).map(MemberState::record)
    }

    /// The members that serve: status `Alive` (this node included when it is), by id.
    pub fn alive(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members().filter(|m| m.status == Status::Alive)
    }

    /// Whether member `id` serves (is known and `Alive`).
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.member(id).is_some_and(|m| m.status == Status::Alive)
    }

    /// This node's own record.
    pub fn me(&self) -> &Member {
        // The own record is inserted by `new` and only ever replaced, never removed.
        self.view.get(&self.id).map(MemberState::record).expect("own record is always present")
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.me().incarnation
    }

    /// Whether this node's view may be missing most of its cluster: it started fresh
    /// (new, or without its data), was told to join, and has not merged a complete
    /// full state yet. It says so when it sends its state (see
    /// [`MembershipMessage::PushPull`]): a node restarted without its data that answers
    /// a newcomer with the few members it heard of so far would make the newcomer
    /// count keys against owners the cluster does not count.
    pub fn view_partial(&self) -> bool {
        self.told_to_join && self.started_fresh && !self.heard_full_state
    }

    /// Whether some member's complete full state (a push-pull not marked partial) has
    /// been merged.
    pub fn heard_full_state(&self) -> bool {
        self.heard_full_state
    }

    /// How many members are known, this node included.
    pub fn size(&self) -> usize {
        self.view.len()
    }

    /// A digest of (id, status, incarnation, tokens) of every known member: equal digests
    /// on two nodes mean equal views (for convergence checks in simulations), and the
    /// node layer rebuilds its token table when the digest changes.
    pub fn view_digest(&self) -> u64 {
        let mut bytes = Vec::with_capacity(self.view.len() * 25);
        for m in self.members() {
            bytes.extend_from_slice(&m.id.0.to_le_bytes());
            bytes.push(m.status.rank() | (u8::from(m.joining) << 7));
            bytes.extend_from_slice(&m.incarnation.to_le_bytes());
            bytes.extend_from_slice(
                &xxhash_rust::xxh3::xxh3_64(&token_bytes(&m.tokens)).to_le_bytes(),
            );
            if let Some(next) = &m.next_tokens {
                bytes.push(1);
                bytes.extend_from_slice(
                    &xxhash_rust::xxh3::xxh3_64(&token_bytes(next)).to_le_bytes(),
                );
            }
        }
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }

    /// The suspicion timeout for the current number of members that are not down.
    pub fn suspicion_timeout(&self) -> Millis {
        let n = self.view.values().filter(|s| !s.record().status.is_down()).count();
        self.config.suspicion_timeout(n)
    }

    /// The (normalized) configuration.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &MembershipStats {
        &self.stats
    }

    /// Updates still waiting to be gossiped (the dissemination backlog).
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// Other members whose status satisfies `keep`, by id.
    fn others(&self, keep: impl Fn(Status) -> bool) -> Vec<NodeId> {
        self.view
            .iter()
            .filter(|&(&id, s)| id != self.id && keep(s.record().status))
            .map(|(&id, _)| id)
            .collect()
    }

    /// How many other members have a status that satisfies `keep`.
    fn count_others(&self, keep: impl Fn(Status) -> bool) -> usize {
        self.view.iter().filter(|&(&id, s)| id != self.id && keep(s.record().status)).count()
    }

    /// Whether some other member's status satisfies `keep`.
    fn has_other(&self, keep: impl Fn(Status) -> bool) -> bool {
        self.view.iter().any(|(&id, s)| id != self.id && keep(s.record().status))
    }

    /// Merges what a message says: claims about this node first (they may reset stale
    /// verdicts), then the sender's own record, then the rest. Returns where to answer
    /// the sender and what to correct in its view of itself.
    fn absorb(
        &mut self,
        now: Millis,
        from: NodeId,
        sender: Option<Member>,
        updates: Vec<Member>,
        full_state: bool,
        solicited: bool,
    ) -> Contact {
        let sender = match sender {
            Some(s) if s.id == from && self.config.admits(&s) => Some(s),
            Some(_) => {
                self.stats.rejected_records += 1;
                None
            }
            None => None,
        };
        // A full state this node asked for may introduce any number of members (the
        // view's own bound still applies); anything else at most `max_new_members`.
        let mut new_left = if solicited { usize::MAX } else { self.config.max_new_members };
        if sender.as_ref().is_some_and(|s| !self.view.contains_key(&s.id)) {
            new_left = new_left.saturating_sub(1);
        }
        let limit = self.config.max_members;
        let total = updates.len();
        let mut admitted: Vec<Member> = Vec::with_capacity(total.min(limit));
        for u in updates.into_iter().take(limit) {
            let new = u.id != self.id
                && u.id != from
                && !self.view.contains_key(&u.id)
                && !admitted.iter().any(|a| a.id == u.id);
            if !self.admits_claim(from, &u) || (new && new_left == 0) {
                self.stats.rejected_records += 1;
                continue;
            }
            if new {
                new_left -= 1;
            }
            admitted.push(u);
        }
        self.stats.rejected_records += total.saturating_sub(limit) as u64;
        let my_id = self.id;
        let mut declared_down = false;
        for claim in admitted.iter().filter(|u| u.id == my_id) {
            declared_down |= self.claim_about_me(now, claim);
        }
        if let Some(s) = &sender {
            self.merge(now, s);
        }
        for u in admitted.iter().filter(|u| u.id != my_id) {
            self.merge(now, u);
        }
        let addr = sender
            .as_ref()
            .map(|s| s.addr.clone())
            .or_else(|| self.member(from).map(|m| m.addr.clone()));
        let correction = sender.as_ref().and_then(|s| {
            let mine = self.member(from)?;
            mine.supersedes(s).then(|| mine.clone())
        });
        if declared_down && !full_state {
            self.push_pull_to(from, addr.clone());
        }
        Contact { addr, correction }
    }

    /// Whether a record heard from `from` is within bounds: [`MembershipConfig::admits`],
    /// and, for a claim about another member (not `from` itself), an incarnation the
    /// member can still refute — below [`MAX_INCARNATION`], and at most
    /// `max_incarnation_step` above the highest incarnation seen for it here.
    fn admits_claim(&self, from: NodeId, record: &Member) -> bool {
        if !self.config.admits(record) {
            return false;
        }
        if record.id == from {
            return true;
        }
        if record.incarnation >= MAX_INCARNATION {
            return false;
        }
        if record.id == self.id {
            // This node refutes with a higher incarnation, which must stay admissible;
            // how far the claim is above its own incarnation does not matter (it may
            // have restarted without its saved incarnation).
            return true;
        }
        let step = self.config.max_incarnation_step;
        self.view
            .get(&record.id)
            .is_none_or(|s| record.incarnation <= s.record().incarnation.saturating_add(step))
    }

    /// Sends this node's own record to member `to` (a `Gossip` with no updates), so that
    /// a member that has not heard of it yet learns it before it is asked anything: the
    /// node layer calls it before a hand-off asks the owners which collections exist.
    pub fn introduce_to(&mut self, to: NodeId) {
        let msg = MembershipMessage::Gossip {
            sender: self.me().clone(),
            updates: Vec::new(),
            clock: None,
        };
        self.send(to, msg);
    }

    /// Sends `contact`'s correction, if any, as a `Gossip`.
    fn correct(&mut self, from: NodeId, contact: Contact) {
        if let Some(record) = contact.correction {
            let msg = MembershipMessage::Gossip {
                sender: self.me().clone(),
                updates: vec![record],
                clock: None,
            };
            self.reply(from, contact.addr, msg);
        }
    }

    /// Sends to `to` at the address it gave for itself, else the one in the view.
    fn reply(&mut self, to: NodeId, addr: Option<String>, msg: MembershipMessage) {
        match addr {
            Some(addr) => self.send_to(to, addr, msg),
            None => self.send(to, msg),
        }
    }

    /// Sends to a member at its address in the view.
    fn send(&mut self, to: NodeId, msg: MembershipMessage) {
        match self.member(to).map(|m| m.addr.clone()) {
            Some(addr) => self.send_to(to, addr, msg),
            None => self.stats.unroutable += 1,
        }
    }

    /// Sends to a member at a given address.
    fn send_to(&mut self, to: NodeId, addr: String, msg: MembershipMessage) {
        self.outputs.push_back(MembershipOutput::Send { to, addr, msg });
    }

    /// Arms the probe and push-pull timers once there is someone to talk to (at a random
    /// offset, so nodes do not probe in lockstep); disarms everything after a leave.
    fn ensure_timers(&mut self, now: Millis) {
        if self.me().status == Status::Left {
            self.prober.stop();
            self.next_push_pull_at = None;
            self.next_gossip_at = None;
            self.suspicions.clear();
            return;
        }
        if self.prober.next_at.is_none() && self.has_other(Status::is_probed) {
            let offset = self.rng.below(self.config.probe_interval_ms);
            self.prober.next_at = Some(now.saturating_add(offset));
        }
        if self.next_push_pull_at.is_none() && self.has_other(|s| s != Status::Left) {
            let offset = self.rng.below(self.config.push_pull_interval_ms);
            self.next_push_pull_at = Some(now.saturating_add(offset));
        }
        if self.next_gossip_at.is_none()
            && !self.broadcasts.is_empty()
            && self.has_other(Status::is_up)
        {
            let offset = self.rng.below(self.config.gossip_interval_ms);
            self.next_gossip_at = Some(now.saturating_add(offset));
        }
    }
}

/// The tokens as little-endian bytes, for digests.
fn token_bytes(tokens: &[Position]) -> Vec<u8> {
    tokens.iter().flat_map(|t| t.to_le_bytes()).collect()
}

/// Why [`Membership::set_tokens`] refused a token list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokensError {
    /// Empty, or longer than the configured limit.
    #[error("a node holds 1 to {max} tokens, not {count}")]
    Count {
        /// Tokens given.
        count: usize,
        /// The limit (`max_tokens`).
        max: usize,
    },
    /// Not strictly increasing: unsorted, or a position given twice.
    #[error("tokens must be sorted and distinct")]
    Unsorted,
    /// The incarnation cannot be raised any further.
    #[error("the incarnation is at its maximum")]
    Incarnation,
}

/// Where to answer the sender of a message, and what it should hear about itself.
struct Contact {
    addr: Option<String>,
    correction: Option<Member>,
}
