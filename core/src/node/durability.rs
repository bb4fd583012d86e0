//! Durability: which of a node's outputs wait for which commit.
//!
//! The rule is "nothing is acknowledged before it is durable", and it lives here, in
//! the core, where the simulator exercises it — not in a driver.
//!
//! Writes reach the store at once (reads see them), and are made durable in *commits*.
//! A driver calls [`Node::flush_begin`](super::Node::flush_begin) after each batch of
//! inputs: the node numbers the commit with an [`Epoch`] (one more than the last) and
//! hands back the store's [`SyncJob`] — the wait for the disk. The driver runs the job
//! anywhere it likes (or, for a store that reports by itself, hands it the way back to
//! the node thread) and reports the outcome with
//! [`Node::committed`](super::Node::committed). A store with nothing to wait for (the
//! in-memory store) returns no job and the commit completes inside `flush_begin`.
//!
//! A store that is as durable as it gets the moment a write returns ([`crate::store::Store::durable_on_write`]:
//! the in-memory store of `--memory` nodes) holds nothing back. Over any other store,
//! only what must wait is held back:
//! - a `WriteAck` the node sends for a replica write (to a coordinator),
//! - the coordinator's own local acknowledgement of a write it stored (a write's
//!   `Written` answer is given only once the required acknowledgements arrived, so it
//!   cannot exist before its local part committed) — or, when the coordinator is the
//!   key's only replica, the `Written` answer itself (`Durability::hold`), which
//!   becomes an `unavailable` error ("not committed") if its commit fails,
//! - client answers other than `Written` and errors (reads, scans, watch events…) produced while
//!   the node has writes not yet known durable: they may show those writes. This is
//!   conservative — a read that saw only durable data waits too — and keeps the order of
//!   the answers it holds.
//!
//! Each waits for the epoch that covers every write made before it: the next epoch when
//! writes were made since the last `flush_begin`, else the last one begun. Everything
//! else — gossip, probes, sync sessions, hand-off, outgoing replica writes and reads,
//! hints — leaves at once, so a slow disk never gets a node suspected.
//!
//! A successful commit of epoch E releases everything held for epochs `<= E`, in
//! order. A failed commit fails everything held, whatever its epoch (after a failed
//! fsync nothing written since the last good one can be trusted): acknowledgements to
//! coordinators are dropped (they time out and keep hints), a coordinator's own local
//! acknowledgement counts as a refusal (its client is told the write was not committed
//! when the others cannot make up the consistency), held answers go out as they are.
//! Then the node recovers by itself: the store discards what it could not commit, the
//! Merkle trees are rebuilt from it, and the node re-syncs with its replicas before
//! serving again. Every epoch begun so far counts as resolved; late reports for them are
//! ignored.

use super::Output;
use crate::{
    proto::{
        client::{ErrorCode, Reply},
        ClientResponse, Message, ReplicaMessage, SyncBody, SyncMessage,
    },
    store::SyncJob,
};
use std::collections::VecDeque;

/// The number of a commit, from 1; 0 is "before the first commit".
pub type Epoch = u64;

/// A commit begun by [`Node::flush_begin`](super::Node::flush_begin).
pub struct Commit {
    /// Its number, to report with [`Node::committed`](super::Node::committed).
    pub epoch: Epoch,
    /// The wait for the disk, to run (on any thread) before reporting. `None`: nothing
    /// to wait for or report (nothing was written since the last commit began, or the
    /// store needs no wait and the commit already completed).
    pub job: Option<SyncJob>,
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit")
            .field("epoch", &self.epoch)
            .field("job", &self.job.is_some())
            .finish()
    }
}

/// Something waiting for a commit.
#[derive(Debug)]
pub(crate) enum Held {
    /// An output for the driver (boxed: outputs are large, acknowledgements small).
    Output(Box<Output>),
    /// The coordinator's own acknowledgement of write request `req`.
    LocalAck(u64),
}

/// The commit bookkeeping of a node.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    /// The last epoch begun.
    begun: Epoch,
    /// Every epoch up to this one is resolved (durable, or failed).
    resolved: Epoch,
    /// The replica's write count when the last commit began.
    writes_at_begin: u64,
    /// What waits, oldest first, with the epoch it waits for (never decreasing).
    held: VecDeque<(Epoch, Held)>,
    /// Commits that failed.
    failures: u64,
    /// Lets sync session ends leave at once, as before they were held (the simulator's
    /// switch to show its hand-off schedule catches that; never set otherwise).
    pub(crate) session_ends_at_once: bool,
}

/// What a resolved commit lets go.
pub(crate) struct Released {
    /// In order.
    pub items: Vec<Held>,
    /// Why they were not made durable, when the commit failed.
    pub failed: Option<String>,
}

impl Durability {
    /// The epoch covering every write made so far, given the replica's write count.
    fn covering(&self, writes: u64) -> Epoch {
        if writes != self.writes_at_begin {
            self.begun + 1
        } else {
            self.begun
        }
    }

    /// Starts a commit when writes were made since the last one began; returns its
    /// epoch, or `None` when there is nothing new to commit.
    pub fn begin(&mut self, writes: u64) -> Option<Epoch> {
        if writes == self.writes_at_begin {
            return None;
        }
        self.writes_at_begin = writes;
        self.begun += 1;
        Some(self.begun)
    }

    /// The store's write count when the last epoch began.
    pub fn writes_at_begin(&self) -> u64 {
        self.writes_at_begin
    }

    /// The last epoch begun.
    pub fn begun(&self) -> Epoch {
        self.begun
    }

    /// Every epoch up to this one is resolved.
    pub fn resolved(&self) -> Epoch {
        self.resolved
    }

    /// Commits that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Outputs and acknowledgements waiting for a commit.
    pub fn holding(&self) -> usize {
        self.held.len()
    }

    /// Holds the coordinator's own acknowledgement of `req` until its write commits.
    pub fn hold_local_ack(&mut self, writes: u64, req: u64) {
        self.push(self.covering(writes), Held::LocalAck(req));
    }

    /// Holds `out` until the commit covering every write made so far: a coordinator's
    /// `Written` answer to a write it stored as the key's only replica (the
    /// acknowledgement and the answer are one).
    pub fn hold(&mut self, writes: u64, out: Output) {
        self.push(self.covering(writes), Held::Output(Box::new(out)));
    }

    /// Decides whether `out` may leave now; returns it when it may, holds it otherwise.
    pub fn admit(&mut self, writes: u64, out: Output) -> Option<Output> {
        let must_wait = match &out {
            // Errors show no data: they leave at once (an overloaded node refuses at once).
            Output::Reply { resp, .. } => {
                !matches!(resp.result, Reply::Written { .. } | Reply::Error { .. })
            }
            Output::Send {
                msg: Message::Replica(ReplicaMessage::WriteAck { error, .. }), ..
            } => error.is_none(),
            Output::Send { msg: Message::Sync(m), .. } => {
                !self.session_ends_at_once && may_end_session(&m.body)
            }
            _ => false,
        };
        if !must_wait {
            return Some(out);
        }
        let epoch = self.covering(writes);
        if epoch <= self.resolved && self.held.is_empty() {
            return Some(out);
        }
        self.push(epoch, Held::Output(Box::new(out)));
        None
    }

    fn push(&mut self, epoch: Epoch, item: Held) {
        let epoch = self.held.back().map_or(epoch, |(last, _)| epoch.max(*last));
        self.held.push_back((epoch, item));
    }

    /// Commit `epoch` ended with `result`: what it releases (or fails).
    pub fn resolve(&mut self, epoch: Epoch, result: Result<(), String>) -> Released {
        if epoch <= self.resolved || epoch > self.begun {
            // Late news of an epoch already resolved (a failure resolved it), or news of
            // one never begun: nothing to do.
            return Released { items: Vec::new(), failed: None };
        }
        match result {
            Ok(()) => {
                self.resolved = epoch;
                let mut items = Vec::new();
                while self.held.front().is_some_and(|(e, _)| *e <= epoch) {
                    if let Some((_, item)) = self.held.pop_front() {
                        items.push(item);
                    }
                }
                Released { items, failed: None }
            }
            Err(reason) => self.fail(reason),
        }
    }

    /// A commit failed: every epoch begun is resolved, everything held is failed.
    pub fn fail(&mut self, reason: String) -> Released {
        self.failures += 1;
        self.resolved = self.begun;
        Released {
            items: self.held.drain(..).map(|(_, item)| item).collect(),
            failed: Some(reason),
        }
    }

    /// After a failure: writes made until now were discarded or belong to the failure,
    /// so the next commit starts from the current count.
    pub fn forget_writes(&mut self, writes: u64) {
        self.writes_at_begin = writes;
    }
}

/// Whether a sync message may be the one after which its peer counts the session as
/// succeeded: a `Done`, or an empty step (answered by `Done` when the peer has nothing
/// left either). A node that hands a range off drops it once its sessions succeeded, so
/// these wait for the commit covering what the session merged (and anything the sender
/// compared equal without having committed it). Steps with items, `Begin` and `Abort`
/// never end a session successfully and leave at once.
fn may_end_session(body: &SyncBody) -> bool {
    match body {
        SyncBody::Done => true,
        SyncBody::Step { items } => items.is_empty(),
        SyncBody::Begin { .. } | SyncBody::Abort { .. } => false,
    }
}

/// What becomes of a held output when its commit failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Send this instead (or the output unchanged, when it shows nothing uncommitted).
    Send(Output),
    /// Nothing goes out (an acknowledgement of a write that did not commit).
    Dropped,
    /// A watch event that may show a write that never became durable: the watch
    /// `(client, id)` ends with an error, and the client re-syncs its copy.
    WatchEvent {
        /// The client.
        client: u64,
        /// The watch request's id.
        id: u64,
    },
    /// A client sync step that may carry uncommitted entries: the session
    /// `(client, id)` ends, and the client is sent `error`.
    ClientSync {
        /// The client.
        client: u64,
        /// The sync request's id.
        id: u64,
        /// The error answering it.
        error: Output,
    },
}

/// What a held `out` becomes when the commit it waited for failed for `reason`:
/// acknowledgements are dropped, session ends become aborts (the peer keeps its data
/// and retries), answers that may show uncommitted data become errors.
pub(crate) fn on_failure(out: Output, reason: &str) -> Failed {
    match out {
        Output::Send { msg: Message::Replica(ReplicaMessage::WriteAck { .. }), .. } => {
            Failed::Dropped
        }
        Output::Send { to, addr, msg: Message::Sync(SyncMessage { session, .. }) } => {
            let reason = format!("the entries synced were not committed ({reason})");
            let body = SyncBody::Abort { reason };
            Failed::Send(Output::Send {
                to,
                addr,
                msg: Message::Sync(SyncMessage { session, body }),
            })
        }
        Output::Reply { client, resp } => {
            let id = resp.id;
            let unavailable = |message: String| {
                let resp = ClientResponse::error(id, ErrorCode::Unavailable, message);
                Output::Reply { client, resp }
            };
            match resp.result {
                Reply::Value { .. } | Reply::Values { .. } | Reply::Page { .. } => Failed::Send(
                    unavailable(format!("the data read was not committed ({reason}); retry")),
                ),
                Reply::Written { .. } => Failed::Send(unavailable(format!(
                    "the write was not committed ({reason}); retry it"
                ))),
                Reply::Event { .. } => Failed::WatchEvent { client, id },
                Reply::Sync { .. } => Failed::ClientSync {
                    client,
                    id,
                    error: unavailable(format!(
                        "the entries synced were not committed ({reason}); sync again"
                    )),
                },
                _ => Failed::Send(Output::Reply { client, resp }),
            }
        }
        other => Failed::Send(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::NodeId;

    fn sync(body: SyncBody) -> Output {
        let msg = Message::Sync(SyncMessage { session: 9, body });
        Output::Send { to: NodeId(2), addr: String::new(), msg }
    }

    #[test]
    fn a_sync_session_end_waits_for_the_commit_of_what_it_merged_and_aborts_if_it_fails() {
        let mut d = Durability::default();
        // Steps with items (summaries, wants, entries) leave at once, even with writes
        // not yet committed.
        let step = SyncBody::Step { items: vec![crate::proto::SyncItem::Want { keys: vec![] }] };
        assert!(d.admit(1, sync(step)).is_some());
        // A `Done` or an empty step may end the peer's session: held.
        assert!(d.admit(1, sync(SyncBody::Done)).is_none());
        assert!(d.admit(1, sync(SyncBody::Step { items: vec![] })).is_none());
        assert!(d.admit(1, sync(SyncBody::Abort { reason: "x".into() })).is_some());
        assert_eq!(d.begin(1), Some(1));
        let released = d.resolve(1, Ok(()));
        assert_eq!(released.items.len(), 2);
        // Held for a commit that fails, it becomes an abort: the peer keeps its data.
        assert!(d.admit(2, sync(SyncBody::Done)).is_none());
        assert_eq!(d.begin(2), Some(2));
        let released = d.resolve(2, Err("disk gone".into()));
        let [Held::Output(out)] = &released.items[..] else { panic!("{:?}", released.items) };
        match on_failure((**out).clone(), "disk gone") {
            Failed::Send(Output::Send {
                msg: Message::Sync(SyncMessage { session: 9, body: SyncBody::Abort { reason } }),
                ..
            }) => assert!(reason.contains("not committed"), "{reason}"),
            other => panic!("expected an abort, got {other:?}"),
        }
    }
}
