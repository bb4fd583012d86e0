//! A local copy of one collection: a [`Replica`] over a [`MemStore`], caught up with
//! the cluster by the Merkle sync protocol and kept current by a watch.
//!
//! A catch-up is a *round*: the ring is cut into the pieces of
//! [`RingView::sync_plan`](super::RingView::sync_plan), and each piece is reconciled in
//! one pull-only session ([`SyncConfig::pull_only`]) with a node that replicates all of
//! it — a few at once. A session that fails (the node went away, refused, timed out) is
//! started again with the piece's next node; a piece none of its nodes could serve
//! counts as failed, and the light peer runs a new round later. Changes arriving by the
//! watch meanwhile are merged as they come: merges are last-writer-wins, so the order in
//! which sync and events land does not matter, and the copy's Merkle digests end equal
//! to the cluster's.
//!
//! The copy is readable at any time, also while no node can be reached.

use super::view::SyncTarget;
use crate::{
    entry::Entry,
    hash::{Interval, Position},
    merkle::Summary,
    proto::{client::Reply, SyncMessage},
    replica::{Change, Replica},
    rng::Rng,
    store::{MemStore, Store},
    sync::{SyncConfig, SyncSession},
    Millis,
};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// What a local copy has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyStats {
    /// Catch-up rounds completed (every piece reconciled).
    pub rounds: u64,
    /// Sync sessions completed.
    pub sessions: u64,
    /// Sync sessions that failed (each was retried with another node, or its piece
    /// waits for the next round).
    pub sessions_failed: u64,
    /// Entries sync brought that changed the copy.
    pub entries_synced: u64,
    /// Watch events merged into the copy.
    pub events: u64,
}

/// A page of [`LocalCopy::scan`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyPage {
    /// Live `(key, value)` pairs in ring order.
    pub items: Vec<(Bytes, Bytes)>,
    /// Where the next page starts (the position and key of the last record read);
    /// `None` at the end.
    pub cursor: Option<(Position, Bytes)>,
}

/// A piece of the ring to reconcile and the node to try next for it.
#[derive(Debug, Clone)]
struct Piece {
    target: SyncTarget,
    next: usize,
}

/// A session in flight.
#[derive(Debug)]
struct Running {
    session: SyncSession,
    piece: Piece,
    addr: String,
}

/// One catch-up over the whole ring.
#[derive(Debug, Default)]
struct Round {
    queue: VecDeque<Piece>,
    running: BTreeMap<u64, Running>,
    total: usize,
    done: usize,
    failed: usize,
}

/// A collection's local copy.
#[derive(Debug)]
pub struct LocalCopy {
    collection: String,
    replica: Replica<MemStore>,
    round: Option<Round>,
    stats: CopyStats,
}

impl LocalCopy {
    /// An empty copy of `collection`.
    pub fn new(collection: &str) -> Self {
        LocalCopy {
            collection: collection.to_string(),
            replica: Replica::new(MemStore::new()).expect("an empty MemStore always opens"),
            round: None,
            stats: CopyStats::default(),
        }
    }

    /// The collection copied.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The entry held for `key`, tombstones included.
    pub fn entry(&self, key: &[u8]) -> Option<Entry> {
        self.replica.get(&self.collection, key).ok().flatten()
    }

    /// The live value of `key` at wall-clock `now`: `None` when missing, deleted or
    /// expired.
    pub fn get(&self, now: Millis, key: &[u8]) -> Option<Bytes> {
        self.entry(key).filter(|e| e.is_live(now)).and_then(|e| e.value)
    }

    /// Up to `limit` live `(key, value)` pairs in ring order, strictly after `after`;
    /// with the cursor to pass back for the next page (`None` at the end). Deleted and
    /// expired entries are skipped but count towards the records read, so a page may be
    /// short and still have a cursor.
    pub fn scan(&self, now: Millis, after: Option<(Position, &[u8])>, limit: usize) -> CopyPage {
        let limit = limit.max(1);
        let records = self
            .replica
            .range(&self.collection, Interval::full(), after, limit)
            .unwrap_or_default();
        let cursor = (records.len() == limit)
            .then(|| records.last().map(|r| (r.pos, r.key.clone())))
            .flatten();
        let items = records
            .into_iter()
            .filter(|r| r.entry.is_live(now))
            .filter_map(|r| r.entry.value.map(|v| (r.key, v)))
            .collect();
        CopyPage { items, cursor }
    }

    /// Entries held, tombstones excluded (values expired but not yet rewritten count).
    pub fn len(&self) -> u64 {
        let s = self.replica.store().stats(&self.collection).unwrap_or_default();
        s.entries.saturating_sub(s.tombstones)
    }

    /// Whether the copy holds no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Count and digest of everything held: equal to a node's root for the same data.
    pub fn root(&self) -> Summary {
        self.replica.tree(&self.collection).map(|t| t.root()).unwrap_or_default()
    }

    /// The replica underneath (for tests and tools).
    pub fn replica(&self) -> &Replica<MemStore> {
        &self.replica
    }

    /// `(done, total)` pieces of the catch-up running now, if one runs.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.round.as_ref().map(|r| (r.done + r.failed, r.total))
    }

    /// Counters of what the copy has done.
    pub fn stats(&self) -> CopyStats {
        self.stats
    }

    /// Records every change applied from now on, for [`LocalCopy::take_changes`].
    pub(crate) fn set_change_feed(&mut self, on: bool) {
        self.replica.set_change_feed(on);
    }

    /// The changes applied since the last call (empty while the feed is off).
    pub(crate) fn take_changes(&mut self) -> Vec<Change> {
        self.replica.take_changes()
    }

    /// Merges one change a watch delivered.
    pub(crate) fn apply(&mut self, key: Bytes, entry: Entry) {
        self.stats.events += 1;
        // A key the store refuses (it never comes from a node) is simply not kept.
        let _ = self.replica.merge(&self.collection, key, entry);
    }

    /// Starts a catch-up over `plan`, dropping the one running (its sessions' answers
    /// are ignored from now on).
    pub(crate) fn begin_round(&mut self, plan: Vec<SyncTarget>) {
        let queue: VecDeque<Piece> =
            plan.into_iter().map(|target| Piece { target, next: 0 }).collect();
        self.round = Some(Round { total: queue.len(), queue, ..Round::default() });
    }

    /// Forgets the catch-up running now.
    pub(crate) fn cancel_round(&mut self) {
        self.round = None;
    }

    /// Whether session `session` belongs to the round running now.
    pub(crate) fn is_running(&self, session: u64) -> bool {
        self.round.as_ref().is_some_and(|r| r.running.contains_key(&session))
    }

    /// Opens sessions until `parallel` run: `(session, node address, Begin)` each.
    pub(crate) fn launch(
        &mut self,
        parallel: usize,
        next_session: &mut u64,
        rng: &mut Rng,
    ) -> Vec<(u64, String, SyncMessage)> {
        let mut out = Vec::new();
        let Some(round) = self.round.as_mut() else { return out };
        while round.running.len() < parallel.max(1) {
            let Some(piece) = round.queue.pop_front() else { break };
            let Some(addr) = piece.target.nodes.get(piece.next).cloned() else {
                round.failed += 1;
                continue;
            };
            *next_session += 1;
            let id = *next_session;
            let config = SyncConfig::pull_only();
            let range = piece.target.range;
            match SyncSession::initiate(
                id,
                &self.replica,
                &self.collection,
                range,
                rng.next_u64(),
                config,
            ) {
                Ok((session, begin)) => {
                    round.running.insert(id, Running { session, piece, addr: addr.clone() });
                    out.push((id, addr, begin));
                }
                Err(_) => round.failed += 1,
            }
        }
        out
    }

    /// The node's answer in session `session`: the next message to send there, if the
    /// session goes on. A session that ended frees its place (call [`LocalCopy::launch`]
    /// again); one that failed is queued again with the piece's next node.
    pub(crate) fn on_reply(&mut self, session: u64, reply: Reply) -> Option<(String, SyncMessage)> {
        let round = self.round.as_mut()?;
        let mut running = round.running.remove(&session)?;
        let next = match reply {
            Reply::Sync { msg } => running.session.handle(&mut self.replica, msg),
            Reply::Ok if running.session.is_done() => Ok(None),
            _ => Err(crate::sync::SyncError::Protocol("the node ended the session".into())),
        };
        match next {
            Ok(Some(msg)) => {
                let addr = running.addr.clone();
                round.running.insert(session, running);
                Some((addr, msg))
            }
            Ok(None) => {
                round.done += 1;
                self.stats.sessions += 1;
                self.stats.entries_synced += running.session.stats().entries_applied;
                None
            }
            Err(_) => {
                self.retry(running.piece);
                None
            }
        }
    }

    /// Session `session` failed without an answer (connection lost, timeout).
    pub(crate) fn on_failure(&mut self, session: u64) {
        let piece = self.round.as_mut().and_then(|r| r.running.remove(&session)).map(|r| r.piece);
        if let Some(piece) = piece {
            self.retry(piece);
        }
    }

    fn retry(&mut self, mut piece: Piece) {
        self.stats.sessions_failed += 1;
        if let Some(round) = self.round.as_mut() {
            piece.next += 1;
            if piece.next < piece.target.nodes.len() {
                round.queue.push_front(piece);
            } else {
                round.failed += 1;
            }
        }
    }

    /// When the round running now has nothing left to do, ends it: `Some(true)` when
    /// every piece was reconciled, `Some(false)` when some could not be.
    pub(crate) fn finish_round(&mut self) -> Option<bool> {
        let round = self.round.as_ref()?;
        if !round.queue.is_empty() || !round.running.is_empty() {
            return None;
        }
        let complete = round.failed == 0;
        if complete {
            self.stats.rounds += 1;
        }
        self.round = None;
        Some(complete)
    }
}
