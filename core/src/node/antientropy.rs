//! Scheduled anti-entropy: Merkle sync of every range a node replicates, with the other
//! replicas of that range, on a jittered period.
//!
//! Every `sync_interval_ms` (jittered ±50% so nodes do not sync in lockstep) a node
//! starts a *round*: for each collection it holds and each token interval `(p, t]` of
//! the ring whose preference list includes it, it queues a session with one other
//! replica of that interval, chosen at random. At most `max_sync_sessions` sessions run
//! at once (the rate limit; each session's messages are paged to 256 KiB). A session
//! that hears nothing for `sync_timeout_ms` is abandoned.
//!
//! The same rounds re-sync a node that the cluster declared dead: membership makes it
//! `Syncing` and emits `MustResync`; the node starts a round at once, over the ranges it
//! would replicate if it were serving, and only when every session of that round has
//! finished cleanly does it call [`crate::membership::Membership::resynced`] and serve
//! again.

use super::{Node, NodeEvent, Output};
use crate::{
    entry::NodeId,
    hash::Interval,
    proto::{Message, SyncBody, SyncMessage},
    ring::RingTable,
    store::Store,
    sync::{SyncConfig, SyncSession},
    Millis,
};
use std::collections::{BTreeMap, VecDeque};

/// One session to run: collection, interval, peer.
type Job = (String, Interval, NodeId);

/// The anti-entropy state of a node.
#[derive(Debug, Default)]
pub struct AntiEntropy {
    sessions: BTreeMap<(NodeId, u64), (SyncSession, Millis)>,
    queue: VecDeque<Job>,
    next_round_at: Option<Millis>,
    round: Option<Round>,
    /// Sessions completed, failed.
    completed: u64,
    failed: u64,
    entries_received: u64,
}

#[derive(Debug, Clone, Copy)]
struct Round {
    failed: bool,
    resync: bool,
}

impl AntiEntropy {
    /// When the next round starts or a session times out.
    pub fn next_deadline(&self, timeout: Millis) -> Option<Millis> {
        let sessions = self.sessions.values().map(|(_, at)| at + timeout).min();
        [self.next_round_at, sessions].into_iter().flatten().min()
    }

    /// Sessions running.
    pub fn running(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions completed and failed so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.completed, self.failed)
    }

    /// Entries received from peers by sync.
    pub fn entries_received(&self) -> u64 {
        self.entries_received
    }

    /// Whether a re-sync round is under way.
    pub fn resyncing(&self) -> bool {
        self.round.is_some_and(|r| r.resync)
    }
}

/// The intervals `node` replicates in `table` (its own and those it is a replica of),
/// each with the other replicas.
fn replicated(table: &RingTable, me: NodeId, n: usize) -> Vec<(Interval, Vec<NodeId>)> {
    let vnodes = table.vnodes();
    let len = vnodes.len();
    let mut out = Vec::new();
    for i in 0..len {
        let interval = Interval::new(vnodes[(i + len - 1) % len].pos, vnodes[i].pos);
        let replicas = table.preference_list(vnodes[i].pos, n);
        if replicas.contains(&me) {
            let others: Vec<NodeId> = replicas.into_iter().filter(|r| *r != me).collect();
            if !others.is_empty() {
                out.push((interval, others));
            }
        }
    }
    out
}

impl<S: Store> Node<S> {
    /// Arms the first round once there is someone to sync with.
    pub(super) fn schedule_sync(&mut self, now: Millis) {
        if self.anti_entropy.next_round_at.is_none() && self.anti_entropy.round.is_none() {
            let period = self.config.sync_interval_ms.max(1);
            let jitter = self.rng.range(period / 2, period + period / 2);
            self.anti_entropy.next_round_at = Some(now + jitter);
        }
    }

    /// Makes the next tick start a round.
    pub(super) fn anti_entropy_due_now(&mut self) {
        self.anti_entropy.next_round_at = Some(0);
    }

    /// Starts a round now: a re-sync when `resync`.
    pub(super) fn start_round(&mut self, now: Millis, resync: bool) {
        let me = self.id();
        // While re-syncing this node is not in the serving table: sync the ranges it
        // would hold once it serves again.
        let table = if resync {
            let me_member = self.membership.me().clone();
            RingTable::new(
                self.membership
                    .alive()
                    .chain(std::iter::once(&me_member))
                    .map(|m| (m.id, m.tokens.as_slice())),
            )
        } else {
            self.table.clone()
        };
        let ranges = replicated(&table, me, self.config.replicas.max(1));
        let collections = self.replica.store().collections().unwrap_or_default();
        let ae = &mut self.anti_entropy;
        ae.queue.clear();
        for c in &collections {
            for (interval, others) in &ranges {
                let Some(i) = self.rng.index(others.len()) else { continue };
                ae.queue.push_back((c.clone(), *interval, others[i]));
            }
        }
        if resync && ranges.is_empty() {
            // Nobody else holds anything this node would: nothing to catch up on.
            self.membership.resynced(now);
            self.collect_membership();
            return;
        }
        self.anti_entropy.round = Some(Round { failed: false, resync });
        self.anti_entropy.next_round_at = None;
        self.fill_sessions(now);
    }

    fn fill_sessions(&mut self, now: Millis) {
        while self.anti_entropy.sessions.len() < self.config.max_sync_sessions.max(1) {
            let Some((collection, range, peer)) = self.anti_entropy.queue.pop_front() else {
                break;
            };
            let id = self.rng.next_u64();
            let salt = self.rng.next_u64();
            match SyncSession::initiate(
                id,
                &self.replica,
                &collection,
                range,
                salt,
                SyncConfig::default(),
            ) {
                Ok((session, begin)) => {
                    self.anti_entropy.sessions.insert((peer, id), (session, now));
                    self.send(peer, Message::Sync(begin));
                }
                Err(_) => self.note_session_end(false),
            }
        }
        self.finish_round_if_done(now);
    }

    fn note_session_end(&mut self, ok: bool) {
        if ok {
            self.anti_entropy.completed += 1;
        } else {
            self.anti_entropy.failed += 1;
            if let Some(r) = self.anti_entropy.round.as_mut() {
                r.failed = true;
            }
        }
    }

    fn finish_round_if_done(&mut self, now: Millis) {
        let ae = &self.anti_entropy;
        let initiated = ae.sessions.values().any(|(s, _)| s.role() == crate::sync::Role::Initiator);
        if !ae.queue.is_empty() || initiated {
            return;
        }
        let Some(round) = self.anti_entropy.round.take() else { return };
        if round.resync {
            if round.failed {
                // The node must not serve before it caught up: try again shortly.
                self.resync_pending = true;
                self.anti_entropy.next_round_at = Some(now + 1_000);
                return;
            }
            self.membership.resynced(now);
            self.collect_membership();
        }
        self.schedule_sync(now);
    }

    /// Runs due rounds and abandons silent sessions.
    pub(super) fn tick_sync(&mut self, now: Millis) {
        let timeout = self.config.sync_timeout_ms;
        let stale: Vec<(NodeId, u64)> = self
            .anti_entropy
            .sessions
            .iter()
            .filter(|(_, (_, at))| now.saturating_sub(*at) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some((mut s, _)) = self.anti_entropy.sessions.remove(&key) {
                let abort = s.abort("no answer within the sync timeout");
                self.send(key.0, Message::Sync(abort));
                if s.role() == crate::sync::Role::Initiator {
                    self.note_session_end(false);
                }
            }
        }
        if self.anti_entropy.next_round_at.is_some_and(|t| t <= now) {
            let resync = std::mem::take(&mut self.resync_pending);
            self.start_round(now, resync);
        } else {
            self.fill_sessions(now);
        }
    }

    /// Handles a sync message from `from`.
    pub(super) fn handle_sync(&mut self, now: Millis, from: NodeId, msg: SyncMessage) {
        let key = (from, msg.session);
        if matches!(msg.body, SyncBody::Begin { .. }) {
            match SyncSession::accept(&mut self.replica, msg, SyncConfig::default()) {
                Ok((session, reply)) => {
                    self.account_received(&session);
                    if session.is_open() {
                        self.anti_entropy.sessions.insert(key, (session, now));
                    }
                    self.send(from, Message::Sync(reply));
                }
                Err(e) => {
                    let abort = SyncMessage {
                        session: key.1,
                        body: SyncBody::Abort { reason: e.to_string() },
                    };
                    self.send(from, Message::Sync(abort));
                }
            }
            return;
        }
        let Some((mut session, _)) = self.anti_entropy.sessions.remove(&key) else { return };
        let before = session.stats().entries_applied;
        let result = session.handle(&mut self.replica, msg);
        let applied = session.stats().entries_applied - before;
        self.anti_entropy.entries_received += applied;
        let initiator = session.role() == crate::sync::Role::Initiator;
        match result {
            Ok(Some(reply)) => {
                let open = session.is_open();
                if open {
                    self.anti_entropy.sessions.insert(key, (session, now));
                } else if initiator {
                    self.note_session_end(true);
                }
                self.send(from, Message::Sync(reply));
            }
            Ok(None) => {
                if initiator {
                    self.note_session_end(session.is_done());
                }
            }
            Err(e) => {
                if initiator {
                    self.note_session_end(false);
                }
                if !matches!(e, crate::sync::SyncError::Aborted(_)) {
                    let body = SyncBody::Abort { reason: e.to_string() };
                    self.send(from, Message::Sync(SyncMessage { session: key.1, body }));
                }
                self.outputs.push_back(Output::Event(NodeEvent::SyncFailed {
                    peer: from,
                    reason: e.to_string(),
                }));
            }
        }
        if initiator {
            self.fill_sessions(now);
        }
    }

    fn account_received(&mut self, session: &SyncSession) {
        self.anti_entropy.entries_received += session.stats().entries_applied;
    }
}
