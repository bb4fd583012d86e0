//! Sync sessions: every Merkle sync session a node runs with a peer, whatever it is for —
//! a scheduled anti-entropy round, a hand-off before serving, cleaning what the node no
//! longer replicates, a token move, a graceful leave, a removal, a collection's move to
//! another layout (`Purpose`).
//!
//! [`Sessions`] is a machine of its own. The parts of the node that want ranges synced
//! queue `Job`s; the machine runs them, at most `max_sync_sessions` at once, and tells
//! the node how each ended (`SessionOutput::Ended`), once, after its retries. The node
//! routes that to the part that queued it (the round, the migration, the leave, the
//! removal, the move); no part reaches into another's state. It takes as inputs the sync
//! messages of sessions it runs (and of sessions peers begin, once the node decided the
//! peer may push that range), ticks, and what it reads of the rest of the node for one
//! input (`Env`: the membership view, the replica, the clock, the random numbers and
//! the sync settings of the moment).
//!
//! **Which job next.** The first queued job whose peer has no session of this node's
//! running, when there is one: a peer that stopped answering holds one slot until the
//! sync timeout, not all of them. During a round, a peer a sync session failed with is
//! passed over for another owner of the range (`Job::others`), when the job has one.
//!
//! **Retries.** A sync, leave, removal or move session that fails with a peer still up
//! is queued again, [`SYNC_ATTEMPTS`] times in all; a hand-off's sync session whose peer
//! stopped serving goes to another owner that answered (`Job::fallback`). A session
//! silent for `sync_timeout_ms`, or initiated with a peer that stopped serving, is
//! abandoned (an abort is sent).
//!
//! **Bounds.** Sessions a peer begins are held until they end or fall silent, so a peer
//! may have at most [`MAX_ACCEPTED_PER_PEER`] of them open with this node at once, and
//! all peers together [`MAX_ACCEPTED`]; a `Begin` past either is answered with an abort
//! (the peer retries later, as after any failed session) and counted as refused. A peer
//! runs at most its `max_sync_sessions` (2 by default) at once, so only a broken or
//! hostile one meets the bound.

use crate::{
    clock::Hlc,
    entry::NodeId,
    hash::Interval,
    membership::Membership,
    proto::{SyncBody, SyncMessage},
    replica::Replica,
    rng::Rng,
    store::Store,
    sync::{Role, SyncConfig, SyncError, SyncSession},
    Millis,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Why a session runs: which part of the node its end goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Anti-entropy or re-sync of a range this node replicates.
    Sync,
    /// Hand-off of a range this node no longer replicates: the index of its group.
    Clean(usize),
    /// Hand-off of the range of a token move, before it is announced (see
    /// [`super::migrate`]).
    Migrate,
    /// Hand-off of a range to the nodes that replicate it once this node has left (see
    /// [`super::leave`]).
    Leave,
    /// Hand-off of a range shared with a member being removed, to the nodes that own it
    /// once the member is gone (see [`super::remove`]).
    Remove,
    /// A pull of a range a collection's move to another layout gives this node (see
    /// [`super::moves`]).
    Move,
}

impl Purpose {
    /// Whether a failed session of this purpose is tried again while its peer is up.
    fn retried(self) -> bool {
        matches!(self, Purpose::Sync | Purpose::Leave | Purpose::Remove | Purpose::Move)
    }
}

/// One session to run.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub collection: String,
    pub interval: Interval,
    pub peer: NodeId,
    pub purpose: Purpose,
    /// Sessions of this job that failed before (a failed sync session is retried a
    /// couple of times before it fails the round).
    attempts: u8,
    /// The range's other serving owners, for a scheduled round's sync: a job whose peer
    /// failed a session of the round goes to one of them instead (the peer goes last),
    /// so one silent replica does not hold a range — any other replica reconciles it as
    /// well.
    others: Vec<NodeId>,
    /// For a hand-off's sync from a single owner: the range's owners that answered, one
    /// of which takes over when the peer stops serving.
    fallback: Vec<NodeId>,
}

impl Job {
    /// A session of `purpose` syncing `collection` over `interval` with `peer`.
    pub fn new(collection: &str, interval: Interval, peer: NodeId, purpose: Purpose) -> Self {
        Job {
            collection: collection.to_string(),
            interval,
            peer,
            purpose,
            attempts: 0,
            others: Vec::new(),
            fallback: Vec::new(),
        }
    }

    /// The same job, which may go to one of `others` instead (see `Job::others`).
    pub fn with_others(self, others: Vec<NodeId>) -> Self {
        Job { others, ..self }
    }

    /// The same job, which falls back on one of `fallback` (see `Job::fallback`).
    pub fn with_fallback(self, fallback: Vec<NodeId>) -> Self {
        Job { fallback, ..self }
    }
}

/// Attempts of a sync job before its round counts as failed.
pub const SYNC_ATTEMPTS: u8 = 3;

/// Most sessions one peer may have begun with this node and still open.
pub const MAX_ACCEPTED_PER_PEER: usize = 16;

/// Most sessions peers may have begun with this node and still open, all together.
pub const MAX_ACCEPTED: usize = 256;

#[derive(Debug)]
struct Running {
    session: SyncSession,
    last_heard: Millis,
    /// What the session is for, when this node initiated it.
    job: Option<Job>,
}

/// What the session machine wants done.
#[derive(Debug)]
pub(super) enum SessionOutput {
    /// A sync message to a peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        msg: SyncMessage,
    },
    /// A session this node initiated ended, for good (retries are the machine's).
    Ended {
        /// What it was for.
        job: Job,
        /// Whether it completed.
        ok: bool,
        /// Entries it received.
        entries: u64,
    },
    /// A session with `peer` failed on a message (reported as
    /// [`super::NodeEvent::SyncFailed`]).
    Failed {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: String,
    },
}

/// What the session machine reads and uses of the rest of the node, for one input.
pub(super) struct Env<'a, S: Store> {
    /// The membership view: which peers are up.
    pub membership: &'a Membership,
    /// The local replica sessions compare and merge into.
    pub replica: &'a mut Replica<S>,
    /// The node's clock, which adopts what sessions merge.
    pub clock: &'a mut Hlc,
    /// The node's random numbers: session ids, salts, fallback owners.
    pub rng: &'a mut Rng,
    /// Sync settings at this moment (paging, collected tombstones, entry limits).
    pub config: SyncConfig,
}

impl<S: Store> Env<'_, S> {
    fn up(&self, id: NodeId) -> bool {
        self.membership.member(id).is_some_and(|m| m.status.is_up())
    }
}

/// The sync sessions of a node: those running, those queued, and their counters.
#[derive(Debug)]
pub struct Sessions {
    max: usize,
    timeout_ms: Millis,
    running: BTreeMap<(NodeId, u64), Running>,
    queue: VecDeque<Job>,
    /// While a round runs: the peers a sync session of the round failed with (no answer
    /// within the timeout, an abort), whose later jobs go to another owner of their
    /// range instead, when they have one.
    failing: Option<BTreeSet<NodeId>>,
    completed: u64,
    failed: u64,
    entries_received: u64,
    refused_entries: u64,
    outputs: VecDeque<SessionOutput>,
}

impl Sessions {
    /// At most `max` sessions initiated at once (at least one); a session silent for
    /// `timeout_ms` is abandoned.
    pub fn new(max: usize, timeout_ms: Millis) -> Self {
        Sessions {
            max: max.max(1),
            timeout_ms,
            running: BTreeMap::new(),
            queue: VecDeque::new(),
            failing: None,
            completed: 0,
            failed: 0,
            entries_received: 0,
            refused_entries: 0,
            outputs: VecDeque::new(),
        }
    }

    /// Sessions running (initiated by this node or by its peers).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Sessions this node initiated that completed, and that failed, so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.completed, self.failed)
    }

    /// Entries received from peers by sync.
    pub fn entries_received(&self) -> u64 {
        self.entries_received
    }

    /// Entries peers sent in sessions that failed [`crate::entry::EntryLimits`].
    pub fn refused_entries(&self) -> u64 {
        self.refused_entries
    }

    /// When a session times out next.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.running.values().map(|r| r.last_heard + self.timeout_ms).min()
    }

    /// Whether jobs wait, or sessions this node initiated run.
    pub(super) fn busy(&self) -> bool {
        !self.queue.is_empty() || self.running.values().any(|r| r.session.role() == Role::Initiator)
    }

    /// The next thing to do, in the order the inputs produced them.
    pub(super) fn poll_output(&mut self) -> Option<SessionOutput> {
        self.outputs.pop_front()
    }

    /// Queues `job` ahead of every queued job.
    pub(super) fn push_front(&mut self, job: Job) {
        self.queue.push_front(job);
    }

    /// Queues `job` after every queued job.
    pub(super) fn push_back(&mut self, job: Job) {
        self.queue.push_back(job);
    }

    /// A round begins: queued jobs of `purposes` go, `jobs` are queued after the rest,
    /// and the peers sessions fail with are remembered until [`Sessions::end_round`].
    pub(super) fn begin_round(&mut self, keep: impl Fn(Purpose) -> bool, jobs: Vec<Job>) {
        self.queue.retain(|j| keep(j.purpose));
        self.queue.extend(jobs);
        self.failing = Some(BTreeSet::new());
    }

    /// The round ended.
    pub(super) fn end_round(&mut self) {
        self.failing = None;
    }

    /// Aborts the sessions this node initiated whose purpose `which` names.
    pub(super) fn abandon(&mut self, which: impl Fn(Purpose) -> bool, reason: &str) {
        let earlier: Vec<(NodeId, u64)> = self
            .running
            .iter()
            .filter(|(_, r)| {
                r.session.role() == Role::Initiator
                    && r.job.as_ref().is_some_and(|j| which(j.purpose))
            })
            .map(|(k, _)| *k)
            .collect();
        for key in earlier {
            if let Some(mut r) = self.running.remove(&key) {
                let abort = r.session.abort(reason);
                self.outputs.push_back(SessionOutput::Send { to: key.0, msg: abort });
            }
        }
    }

    /// Starts queued sessions, up to the limit.
    pub(super) fn fill<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        while self.running.len() < self.max {
            let free = self.queue.iter().position(|j| !self.initiated_with(j.peer)).unwrap_or(0);
            let Some(mut job) = self.queue.remove(free) else { break };
            if let Some(failing) = self.failing.as_ref().filter(|f| f.contains(&job.peer)) {
                if let Some(i) = job.others.iter().position(|o| !failing.contains(o)) {
                    let next = job.others.remove(i);
                    job.others.push(std::mem::replace(&mut job.peer, next));
                }
            }
            if !env.up(job.peer) {
                // The peer stopped serving since the job was queued.
                self.end(env, job, false, 0);
                continue;
            }
            let id = env.rng.next_u64();
            let salt = env.rng.next_u64();
            let config = env.config;
            match SyncSession::initiate(
                id,
                env.replica,
                &job.collection,
                job.interval,
                salt,
                config,
            ) {
                Ok((session, begin)) => {
                    let peer = job.peer;
                    let running = Running { session, last_heard: now, job: Some(job) };
                    self.running.insert((peer, id), running);
                    self.outputs.push_back(SessionOutput::Send { to: peer, msg: begin });
                }
                Err(_) => self.end(env, job, false, 0),
            }
        }
    }

    /// Whether a session this node initiated with `peer` is running.
    fn initiated_with(&self, peer: NodeId) -> bool {
        self.running.range((peer, 0)..=(peer, u64::MAX)).any(|(_, r)| r.job.is_some())
    }

    /// Abandons sessions silent for the timeout, and those initiated with peers that
    /// stopped serving (suspected, dead, left).
    pub(super) fn tick<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        let timeout = self.timeout_ms;
        let stale: Vec<(NodeId, u64)> = self
            .running
            .iter()
            .filter(|(k, r)| {
                let initiated = r.session.role() == Role::Initiator;
                now.saturating_sub(r.last_heard) >= timeout || (initiated && !env.up(k.0))
            })
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(mut r) = self.running.remove(&key) {
                let abort = r.session.abort("no answer within the sync timeout");
                self.outputs.push_back(SessionOutput::Send { to: key.0, msg: abort });
                if let Some(job) = r.job {
                    self.end(env, job, false, 0);
                }
            }
        }
    }

    /// A peer begins a session with this node (the node checked that it may push the
    /// range). Returns whether the session was taken: a peer past the bounds (see the
    /// module docs) is answered with an abort instead.
    pub(super) fn accept<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        msg: SyncMessage,
    ) -> bool {
        let session_id = msg.session;
        let (mut theirs, mut all) = (0, 0);
        for (key, r) in &self.running {
            if r.session.role() == Role::Responder && *key != (from, session_id) {
                all += 1;
                theirs += usize::from(key.0 == from);
            }
        }
        if theirs >= MAX_ACCEPTED_PER_PEER || all >= MAX_ACCEPTED {
            let reason = format!(
                "too many sync sessions open with this node ({theirs} from node {from}, {all} \
                 in all; at most {MAX_ACCEPTED_PER_PEER} and {MAX_ACCEPTED}): try again later"
            );
            let msg = SyncMessage { session: session_id, body: SyncBody::Abort { reason } };
            self.outputs.push_back(SessionOutput::Send { to: from, msg });
            return false;
        }
        match SyncSession::accept(env.replica, msg, env.config) {
            Ok((session, reply)) => {
                self.entries_received += session.stats().entries_applied;
                if session.is_open() {
                    let running = Running { session, last_heard: now, job: None };
                    self.running.insert((from, session_id), running);
                }
                self.outputs.push_back(SessionOutput::Send { to: from, msg: reply });
            }
            Err(e) => {
                let body = SyncBody::Abort { reason: e.to_string() };
                let msg = SyncMessage { session: session_id, body };
                self.outputs.push_back(SessionOutput::Send { to: from, msg });
            }
        }
        true
    }

    /// A step of a running session from `from`. Returns whether this node initiated it
    /// (the node then starts what is queued).
    pub(super) fn handle<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        msg: SyncMessage,
    ) -> bool {
        let key = (from, msg.session);
        let Some(mut running) = self.running.remove(&key) else { return false };
        let before = running.session.stats();
        if let Some(limits) = env.config.limits {
            running.session.set_limits(limits);
        }
        let result = running.session.handle(env.replica, msg);
        let after = running.session.stats();
        self.refused_entries += after.entries_refused - before.entries_refused;
        if after.newest_merged > before.newest_merged {
            // Checked against the max offset at this `now`, so adopting cannot fail.
            let _ = env.clock.update(after.newest_merged, now);
        }
        self.entries_received += after.entries_applied - before.entries_applied;
        let initiator = running.session.role() == Role::Initiator;
        let total_applied = after.entries_applied;
        match result {
            Ok(Some(reply)) => {
                if running.session.is_open() {
                    running.last_heard = now;
                    self.running.insert(key, running);
                } else if let Some(job) = running.job {
                    self.end(env, job, true, total_applied);
                }
                self.outputs.push_back(SessionOutput::Send { to: from, msg: reply });
            }
            Ok(None) => {
                let ok = running.session.is_done();
                if let Some(job) = running.job {
                    self.end(env, job, ok, total_applied);
                }
            }
            Err(e) => {
                if let Some(job) = running.job {
                    self.end(env, job, false, total_applied);
                }
                if !matches!(e, SyncError::Aborted(_)) {
                    let body = SyncBody::Abort { reason: e.to_string() };
                    let msg = SyncMessage { session: key.1, body };
                    self.outputs.push_back(SessionOutput::Send { to: from, msg });
                }
                let reason = e.to_string();
                self.outputs.push_back(SessionOutput::Failed { peer: from, reason });
            }
        }
        initiator
    }

    /// Books the end of a session this node initiated: queues it again when it may be
    /// retried, else reports it ended.
    fn end<S: Store>(&mut self, env: &mut Env<'_, S>, job: Job, ok: bool, entries: u64) {
        if ok {
            self.completed += 1;
        } else {
            self.failed += 1;
        }
        if !ok && job.purpose == Purpose::Sync {
            if let Some(failing) = self.failing.as_mut() {
                failing.insert(job.peer);
            }
        }
        let serving = env.up(job.peer);
        if !ok && job.purpose.retried() && job.attempts + 1 < SYNC_ATTEMPTS && serving {
            // A lost message or a busy peer: try the same range again later (with
            // another of its owners, since this peer is now one a session failed with:
            // see `fill`).
            self.queue.push_back(Job { attempts: job.attempts + 1, ..job });
            return;
        }
        if !ok && !serving && job.purpose == Purpose::Sync && !job.fallback.is_empty() {
            // The owner stopped serving during a hand-off: the range comes from another
            // owner that answered.
            let up: Vec<NodeId> =
                job.fallback.iter().copied().filter(|o| *o != job.peer && env.up(*o)).collect();
            if let Some(i) = env.rng.index(up.len()) {
                self.queue.push_back(Job { peer: up[i], attempts: 0, others: Vec::new(), ..job });
                return;
            }
        }
        self.outputs.push_back(SessionOutput::Ended { job, ok, entries });
    }
}
