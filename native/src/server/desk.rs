//! The desk: where connections served on the node thread hand their input straight to
//! the node, with no queue and no other task in between.
//!
//! A client connection whose socket moved to the node thread ([`super::handoff`])
//! runs as a task on the same thread as the [`Driver`]. Through the inbox its requests
//! would wait for the driver's task to be polled, and the answers for the connection's
//! task to be polled a second time — three task polls a request at pipeline 1, where
//! answering within the connection's own poll measured about 1 µs less CPU a request
//! (docs/benchmarks.md). At the desk, the connection's task itself hands its requests
//! to the node ([`Desk::requests`]): the node handles them, and whatever it lets go —
//! the in-memory store's answers, at once — is routed before the call returns; the
//! answers for that connection come back from the call itself (counted against its
//! output limit, [`super::outbox::Outbox::admit`]), and the task writes them in the same poll. Nothing
//! wakes it for them, and nothing wakes the driver's task but once a turn.
//!
//! What the desk does not do is begin a commit: writes handled at the desk only mark
//! the driver's loop to begin one ([`DriverCell::run`]), and the loop runs after every
//! connection that became readable with it. So a persisted node still group-commits
//! a whole turn's writes with one fsync, and an answer that must wait for its commit
//! still waits (`dhrt_core::node::durability`).
//!
//! The driver lives behind a mutex only so that the connections' tasks (which must be
//! `Send` to be spawned from the accepting runtime) can reach it: every caller runs on
//! the node thread, so the lock is never contended, and it is never held across an
//! `.await`. A peer link moved to the node thread hands its frames over here too
//! ([`Desk::hand`]); connections elsewhere (TLS, HTTP) use the inbox.

use super::{
    driver::{Driver, Durable, InboxReceiver, Input, BATCH},
    outbox::Parcel,
};
use dhrt_core::{node::ClientId, proto::ClientRequest, store::Store};
use futures_util::task::AtomicWaker;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    task::Poll,
    time::Duration,
};

/// What a connection on the node thread hands its input to.
pub trait Desk: Send + Sync {
    /// Handles `input` now (a connection opening or gone); false once the node thread
    /// has stopped.
    fn hand(&self, input: Input) -> bool;

    /// Handles a client's requests now, in order, leaving `reqs` empty (its allocation
    /// kept for the next batch); false once the node thread has stopped. The answers
    /// the node gives `client` at once are added to `answers`, counted against its
    /// output limit as if sent through its outbox ([`super::outbox::Outbox::admit`]); anything
    /// later comes through the outbox.
    fn requests(
        &self,
        client: ClientId,
        reqs: &mut Vec<ClientRequest>,
        answers: &mut Vec<Parcel>,
    ) -> bool;
}

/// The node thread's [`Driver`], reachable from its loop and from the desk.
pub struct DriverCell<S: Store, D: Durable> {
    /// None once the loop ended: the node (and its store) is dropped on the node
    /// thread then, whoever still holds the desk.
    driver: Mutex<Option<Driver<S, D>>>,
    /// Input was handled at the desk since the loop last turned: a commit to begin.
    dirty: AtomicBool,
    /// The loop's task, woken when the desk dirties it.
    waker: AtomicWaker,
    /// The loop has ended: the desk refuses input.
    done: AtomicBool,
}

impl<S: Store + Send + 'static, D: Durable + 'static> DriverCell<S, D> {
    /// A cell holding `driver`.
    pub fn new(driver: Driver<S, D>) -> Self {
        DriverCell {
            driver: Mutex::new(Some(driver)),
            dirty: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            done: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the driver, unless the loop has ended.
    fn with<R>(&self, f: impl FnOnce(&mut Driver<S, D>) -> R) -> Option<R> {
        self.driver.lock().unwrap_or_else(|e| e.into_inner()).as_mut().map(f)
    }

    /// Runs the node thread's loop until every sender of `inbox` is gone,
    /// [`Input::Stop`] arrives or a graceful leave completes. `join` are members to join
    /// through. Each turn takes whatever has queued in the inbox (up to [`BATCH`]
    /// inputs) — every input queued by the time this task runs is one batch: on this
    /// thread's runtime the connections that became readable together have all been
    /// served before it is polled — then fires due timers and begins one commit for
    /// everything handled since the last turn, here or at the desk.
    pub async fn run(&self, mut inbox: InboxReceiver, join: Vec<String>) {
        self.with(|d| d.start(join));
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let wait = self.with(|d| d.wait()).unwrap_or_default();
            tokio::select! {
                biased;
                n = inbox.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                }
                () = self.dirtied() => {}
                () = tokio::time::sleep(wait) => {}
            }
            self.dirty.store(false, Ordering::Relaxed);
            if self.with(|d| d.turn(&mut batch)).unwrap_or(true) {
                break;
            }
        }
        self.done.store(true, Ordering::Release);
        // The answers of commits still waiting for the disk come through the inbox.
        let mut busy = self.with(|d| d.last_commit()).unwrap_or(false);
        while busy {
            match tokio::time::timeout(Duration::from_secs(10), inbox.recv()).await {
                Ok(Some(input @ Input::Synced { .. })) => {
                    busy = self
                        .with(|d| {
                            d.hand(input);
                            d.commits_waiting()
                        })
                        .unwrap_or(false);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.with(|d| d.finish());
        // Dropped here, on this thread: the node, its store, and the connections'
        // outboxes (so every connection ends).
        let driver = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(driver);
    }

    /// Resolves once the desk handled input since the loop last turned.
    async fn dirtied(&self) {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.dirty.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Marks a commit to begin and wakes the loop (once, however many connections
    /// handed input before it runs).
    fn dirty(&self) {
        if !self.dirty.swap(true, Ordering::Relaxed) {
            self.waker.wake();
        }
    }
}

impl<S: Store + Send + 'static, D: Durable + 'static> Desk for DriverCell<S, D> {
    fn hand(&self, input: Input) -> bool {
        if self.done.load(Ordering::Acquire) || self.with(|d| d.hand(input)).is_none() {
            return false;
        }
        self.dirty();
        true
    }

    fn requests(
        &self,
        client: ClientId,
        reqs: &mut Vec<ClientRequest>,
        answers: &mut Vec<Parcel>,
    ) -> bool {
        let handed = !self.done.load(Ordering::Acquire)
            && self.with(|d| d.hand_requests(client, reqs, answers)).is_some();
        if !handed {
            reqs.clear();
            return false;
        }
        self.dirty();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{
        driver::{Ephemeral, Sink},
        outbox::{self, OutboxReceiver, OutputBudget},
        peer_auth::Credentials,
        peers::Peers,
        stats::Counters,
    };
    use bytes::Bytes;
    use dhrt_core::{
        node::{Node, NodeConfig},
        proto::client::{Consistency, Op, Reply},
        store::MemStore,
        NodeId,
    };
    use std::sync::Arc;

    /// A lone `--memory` node's driver, serving.
    fn cell() -> DriverCell<MemStore, Ephemeral> {
        let counters = Arc::new(Counters::default());
        let node = Node::new(NodeConfig::new(NodeId(1), "127.0.0.1:1"), MemStore::new()).unwrap();
        let me = Credentials::new(NodeId(1), None);
        let peers = Peers::new(me, tokio::runtime::Handle::current(), counters.clone(), 1 << 20);
        let cell = DriverCell::new(Driver::new(node, Ephemeral, peers, counters));
        cell.with(|d| d.start(Vec::new()));
        cell
    }

    fn set(id: u64, value: usize) -> ClientRequest {
        let op = Op::Set {
            collection: "c".into(),
            key: Bytes::from(format!("k{id}")),
            value: Bytes::from(vec![7; value]),
            consistency: Consistency::Default,
            ttl_ms: None,
        };
        ClientRequest { id, op, seen: None }
    }

    fn get(id: u64) -> ClientRequest {
        let op = Op::Get {
            collection: "c".into(),
            key: Bytes::from(format!("k{}", id - 100)),
            consistency: Consistency::Default,
        };
        ClientRequest { id, op, seen: None }
    }

    /// Opens a connection at the desk under `budget`.
    fn open(desk: &dyn Desk, client: ClientId, budget: Arc<OutputBudget>) -> OutboxReceiver {
        let (outbox, rx, _) = outbox::outbox(budget);
        assert!(desk.hand(Input::Open { client, sink: Sink::Conn(outbox) }));
        rx
    }

    #[tokio::test]
    async fn requests_at_the_desk_are_answered_before_the_call_returns_and_counted() {
        let cell = cell();
        let budget = Arc::new(OutputBudget::new(1 << 20, 1 << 20, 1 << 30));
        let mut rx = open(&cell, 7, budget.clone());
        let mut reqs = vec![set(1, 10), set(2, 10), get(101)];
        let mut answers = Vec::new();
        assert!(cell.requests(7, &mut reqs, &mut answers));
        assert!(reqs.is_empty(), "the requests were taken");
        let resps: Vec<_> = answers.iter().flat_map(|p| p.resps.iter()).collect();
        let ids: Vec<u64> = resps.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2, 101], "every answer, in order, from the call itself");
        assert!(matches!(resps[0].result, Reply::Written { .. }));
        assert!(matches!(&resps[2].result, Reply::Value { value: Some(v), .. } if v.len() == 10));
        // Counted against the connection's output limit until written...
        let owed: usize = answers.iter().map(|p| p.bytes).sum();
        assert!(owed > 0);
        assert_eq!(budget.total(), owed);
        // ...and not sent through the outbox as well.
        let mut sent = Vec::new();
        let polled = std::future::poll_fn(|cx| Poll::Ready(rx.poll_recv_many(cx, &mut sent, 10)));
        assert!(polled.await.is_pending(), "nothing went through the outbox");
        rx.sent(owed);
        assert_eq!(budget.total(), 0);
        // The loop is told to begin a commit for them.
        assert!(cell.dirty.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn answers_past_the_output_limit_at_the_desk_close_the_connection() {
        let cell = cell();
        let budget = Arc::new(OutputBudget::new(400, 400, 1 << 30));
        let rx = open(&cell, 7, budget.clone());
        let mut answers = Vec::new();
        assert!(cell.requests(7, &mut vec![set(1, 1000)], &mut answers));
        answers.clear();
        // Not written: the next answer (a 1000-byte value) passes the limit.
        let mut reqs = vec![get(101)];
        assert!(cell.requests(7, &mut reqs, &mut answers));
        assert!(answers.is_empty(), "refused answers are not handed back");
        assert!(rx.closed().is_some_and(|why| why.contains("output limit")));
        // The connection is gone from the node: its later requests are not answered.
        assert!(cell.requests(7, &mut vec![get(101)], &mut answers));
        assert!(answers.is_empty());
        drop(rx);
    }

    #[tokio::test]
    async fn once_the_loop_has_ended_the_desk_refuses_input() {
        let cell = cell();
        cell.done.store(true, Ordering::Release);
        let mut reqs = vec![set(1, 10)];
        assert!(!cell.requests(7, &mut reqs, &mut Vec::new()));
        assert!(reqs.is_empty());
        assert!(!cell.hand(Input::Gone(7)));
    }
}
