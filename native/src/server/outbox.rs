//! A client connection's unsent answers, counted in bytes: the output buffer limit.
//!
//! The node thread hands a connection its answers and watch events through an
//! [`Outbox`]; the connection's writer takes them from the [`OutboxReceiver`] and
//! writes them to the socket. Between the two, what waits is counted (an estimate of
//! the encoded size, [`response_bytes`]) per connection and for the whole node
//! ([`OutputBudget`]). As with Redis's `client-output-buffer-limit`:
//!
//! - past the *watch lag* bound the connection's watches end, each with an
//!   `unavailable` error saying it lagged ([`Offer::Lagging`]; the driver asks the node
//!   to end them). A subscriber that cannot keep up is told so, and its events stop
//!   piling up, before it has to be disconnected;
//! - past the *hard* bound — or when the whole node is past its total and this
//!   connection already holds answers — the answers are not queued, and the
//!   connection is closed ([`Offer::Refused`], [`Outbox::close`]) with a logged reason
//!   and a close frame saying why. Its requests in flight are abandoned.
//!
//! The writer gives the bytes back once it has written them ([`OutboxReceiver::sent`]);
//! when the connection ends, whatever it still held is given back too.

use dhrt_core::proto::{client::Reply, ClientResponse};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};
use tokio::sync::mpsc;

/// Answers for one connection and the bytes they were counted for (0 for the few
/// answers a connection makes itself: auth, refusals).
#[derive(Debug)]
pub struct Parcel {
    /// The answers, in order.
    pub resps: Vec<ClientResponse>,
    /// What they were counted for.
    pub bytes: usize,
}

/// The node's bounds on unsent output and its running total (shared by every
/// connection).
#[derive(Debug)]
pub struct OutputBudget {
    /// Per connection: past this the connection is closed.
    pub limit: usize,
    /// Per connection: past this its watches end.
    pub watch_lag: usize,
    /// All connections together.
    pub total_limit: usize,
    total: AtomicUsize,
}

impl OutputBudget {
    /// Bounds of `limit` and `watch_lag` bytes per connection, `total_limit` in all.
    pub fn new(limit: usize, watch_lag: usize, total_limit: usize) -> Self {
        OutputBudget { limit, watch_lag, total_limit, total: AtomicUsize::new(0) }
    }

    /// Bytes queued for every connection now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// What one connection has queued, and whether it was closed (and why).
#[derive(Debug)]
struct Queue {
    queued: usize,
    open: bool,
    /// Why the node closed the connection, once it did.
    closed: Option<String>,
}

/// The node thread's end of a connection (inside [`super::driver::Sink::Conn`]).
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Parcel>,
    queue: Arc<Mutex<Queue>>,
    budget: Arc<OutputBudget>,
}

/// The connection's end: its writer reads parcels here.
#[derive(Debug)]
pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Parcel>,
    queue: Arc<Mutex<Queue>>,
    budget: Arc<OutputBudget>,
}

/// What became of answers offered to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Queued (or the connection is gone already).
    Queued,
    /// Queued, and the connection is past the watch lag bound: its watches should end.
    Lagging,
    /// Not queued: the connection is past its hard bound (or the node past its total)
    /// and must be closed, for this reason.
    Refused(String),
}

/// An outbox for connection `client` under `budget`, and the connection's end of it;
/// `local` is a sender for the connection's own (uncounted) answers.
pub fn outbox(
    budget: Arc<OutputBudget>,
) -> (Outbox, OutboxReceiver, mpsc::UnboundedSender<Parcel>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queue = Arc::new(Mutex::new(Queue { queued: 0, open: true, closed: None }));
    let local = tx.clone();
    (
        Outbox { tx, queue: queue.clone(), budget: budget.clone() },
        OutboxReceiver { rx, queue, budget },
        local,
    )
}

impl Outbox {
    /// Offers `resps` to the connection (see [`Offer`]).
    pub fn offer(&self, resps: Vec<ClientResponse>) -> Offer {
        self.count(resps, |parcel| self.tx.send(parcel).is_ok())
    }

    /// Counts `resps` as [`Outbox::offer`] does, but hands them back instead of sending
    /// them, with the bytes they were counted for: for the connection whose own task
    /// asked the node ([`super::desk`]), which writes them before it next yields and
    /// gives the bytes back with [`OutboxReceiver::sent`]. `None` when refused (nothing
    /// counted) or when the connection is gone.
    pub fn admit(&self, resps: Vec<ClientResponse>) -> (Offer, Option<Parcel>) {
        let mut admitted = None;
        let offer = self.count(resps, |parcel| {
            admitted = Some(parcel);
            true
        });
        (offer, admitted)
    }

    /// Checks `resps` against the limits and, unless refused, passes them to `put` and
    /// counts them if it took them.
    fn count(&self, resps: Vec<ClientResponse>, put: impl FnOnce(Parcel) -> bool) -> Offer {
        let bytes: usize = resps.iter().map(response_bytes).sum();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if !q.open {
            return Offer::Queued;
        }
        let after = q.queued + bytes;
        if after > self.budget.limit {
            return Offer::Refused(format!(
                "the client did not read its answers: {after} bytes unsent, over the output \
                 limit of {} bytes",
                self.budget.limit
            ));
        }
        let total = self.budget.total.load(Ordering::Relaxed) + bytes;
        if q.queued > 0 && total > self.budget.total_limit {
            return Offer::Refused(format!(
                "the node holds {total} bytes of unsent answers, over its total of {} bytes, \
                 and this client had {} bytes unread",
                self.budget.total_limit, q.queued
            ));
        }
        if !put(Parcel { resps, bytes }) {
            return Offer::Queued;
        }
        q.queued = after;
        self.budget.total.fetch_add(bytes, Ordering::Relaxed);
        if after > self.budget.watch_lag {
            Offer::Lagging
        } else {
            Offer::Queued
        }
    }

    /// Closes the connection for `reason` (its writer sends a close frame saying so).
    pub fn close(&self, reason: String) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).closed.get_or_insert(reason);
        // An empty parcel wakes the writer, which then finds the reason
        // ([`OutboxReceiver::closed`]): it looks for one only when parcels come.
        let _ = self.tx.send(Parcel { resps: Vec::new(), bytes: 0 });
    }

    /// Bytes queued for this connection now.
    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).queued
    }
}

impl OutboxReceiver {
    /// Takes up to `limit` parcels into `buf`, waiting for one; 0 when the node thread
    /// let go of the connection.
    pub async fn recv_many(&mut self, buf: &mut Vec<Parcel>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// As [`Self::recv_many`], for a connection polling by hand.
    pub fn poll_recv_many(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut Vec<Parcel>,
        limit: usize,
    ) -> std::task::Poll<usize> {
        self.rx.poll_recv_many(cx, buf, limit)
    }

    /// Gives back `bytes` the writer has written.
    pub fn sent(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = bytes.min(q.queued);
        q.queued -= bytes;
        self.budget.total.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Why the node closed the connection, once it did ([`Outbox::close`]; the
    /// parcels received after it wake the writer to look).
    pub fn closed(&self) -> Option<String> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).closed.clone()
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        // Under the lock, so no parcel is counted after this: the rest is given back.
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.rx.close();
        q.open = false;
        self.budget.total.fetch_sub(q.queued, Ordering::Relaxed);
        q.queued = 0;
    }
}

/// The bytes an answer is counted for: its keys and values, plus a little for the rest
/// (a cheap estimate of its encoded size; the node thread does not encode).
pub fn response_bytes(resp: &ClientResponse) -> usize {
    const REST: usize = 48;
    let opt = |v: &Option<bytes::Bytes>| v.as_ref().map_or(0, |b| b.len());
    REST + match &resp.result {
        Reply::Value { value, .. } => opt(value),
        Reply::Values { values } => values.iter().map(|v| opt(v) + 4).sum(),
        Reply::Page { items, cursor } => {
            items.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>() + opt(cursor)
        }
        Reply::Event { collection, key, value, .. } => collection.len() + key.len() + opt(value),
        Reply::Error { message, .. } => message.len(),
        Reply::Sync { msg } => dhrt_core::wire::encoded_len(msg),
        Reply::Ring { members } => members.len() * 256,
        Reply::Stats(_) => 2048,
        Reply::Tokens { tokens } => tokens.len() * 256,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn value(id: u64, n: usize) -> ClientResponse {
        ClientResponse {
            id,
            result: Reply::Value { value: Some(Bytes::from(vec![0; n])), ts: None, expires: None },
            ts: None,
        }
    }

    #[tokio::test]
    async fn unread_answers_are_counted_until_written_and_past_the_limit_refused() {
        let one = response_bytes(&value(1, 1000));
        let budget = Arc::new(OutputBudget::new(3 * one, 2 * one, 100 * one));
        let (outbox, mut rx, _local) = outbox(budget.clone());
        assert_eq!(outbox.offer(vec![value(1, 1000)]), Offer::Queued);
        assert_eq!(outbox.offer(vec![value(2, 1000)]), Offer::Queued);
        assert_eq!(outbox.offer(vec![value(3, 1000)]), Offer::Lagging, "past the watch bound");
        assert!(matches!(outbox.offer(vec![value(4, 1000)]), Offer::Refused(_)));
        assert_eq!((outbox.queued(), budget.total()), (3 * one, 3 * one));
        let mut got = Vec::new();
        assert_eq!(rx.recv_many(&mut got, 10).await, 3);
        rx.sent(got.iter().map(|p| p.bytes).sum());
        assert_eq!((outbox.queued(), budget.total()), (0, 0));
        assert_eq!(outbox.offer(vec![value(5, 1000)]), Offer::Queued, "room again");
        drop(rx);
        assert_eq!(budget.total(), 0, "a closed connection gives back what it held");
        assert_eq!(outbox.offer(vec![value(6, 1000)]), Offer::Queued, "dropped quietly");
        assert_eq!(budget.total(), 0);
    }

    #[tokio::test]
    async fn past_the_node_total_a_connection_holding_answers_is_refused() {
        let one = response_bytes(&value(1, 1000));
        let budget = Arc::new(OutputBudget::new(10 * one, 10 * one, 3 * one));
        let (a, _ra, _) = outbox(budget.clone());
        let (b, _rb, _) = outbox(budget.clone());
        assert_eq!(a.offer(vec![value(1, 1000), value(2, 1000)]), Offer::Queued);
        assert_eq!(b.offer(vec![value(3, 1000), value(4, 1000)]), Offer::Queued, "b held none");
        assert!(matches!(a.offer(vec![value(5, 1000)]), Offer::Refused(r) if r.contains("total")));
    }

    #[tokio::test]
    async fn closing_tells_the_connection_why() {
        let budget = Arc::new(OutputBudget::new(100, 100, 100));
        let (outbox, rx, _) = outbox(budget);
        let (outbox, mut rx, _) = (outbox, rx, ());
        assert_eq!(rx.closed(), None);
        outbox.close("too slow".into());
        let mut woken = Vec::new();
        assert_eq!(rx.recv_many(&mut woken, 10).await, 1, "the writer is woken");
        assert_eq!(rx.closed().as_deref(), Some("too slow"));
    }
}
