//! The budget of messages being read: bytes a connection has read from its socket but
//! that have not yet become whole messages.
//!
//! A WebSocket library (or an HTTP body reader) holds a message in memory until its last
//! byte arrives. Each message is bounded by the frame limit, but a node has thousands of
//! connections: 4096 connections each sending most of a 20 MiB message, and never the
//! rest, would have the node hold 80 GiB. So every connection's socket is read through a
//! [`Metered`] reader. A connection may hold [`ALLOWANCE`] bytes read but not yet
//! settled on its own — enough for every small request, which therefore never waits.
//! To read further it needs one of a few *lanes* (`read-mb` divided by the largest
//! frame), each good for one whole message of the largest size: a connection in the
//! middle of a large message waits for a lane while others finish theirs, and TCP slows
//! its sender. Memory stays bounded (`allowance × connections + read-mb`), and because a
//! lane always covers a whole message, connections can never all wait on each other
//! half way through their messages (as they could if each took the budget a little at a
//! time).
//!
//! The reader cannot see where messages end; the code that decodes them can. It calls
//! [`ReadMeter::settle`] each time it has taken whole messages (they are then accounted
//! to the inbox budget, [`super::inbox`], until the node thread has handled them), which
//! gives the lane back. An HTTP connection settles when each request has been answered
//! ([`super::accept`]).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{AcquireError, OwnedSemaphorePermit, Semaphore},
};

/// Bytes a connection may read beyond its settled messages without a lane.
pub const ALLOWANCE: usize = 256 << 10;

/// The lanes every connection's [`Metered`] reader draws from. Cloning shares them.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    lanes: Arc<Semaphore>,
    count: usize,
    lane_bytes: usize,
    /// How long a connection may hold a lane before its message must be whole.
    lane_timeout: Duration,
}

impl ReadBudget {
    /// A budget of `bytes` for messages of at most `max_message` bytes: as many lanes
    /// as whole messages fit in it, at least one.
    pub fn new(bytes: usize, max_message: usize) -> Self {
        let lane_bytes = max_message.max(1);
        let count = (bytes / lane_bytes).clamp(1, Semaphore::MAX_PERMITS);
        ReadBudget {
            lanes: Arc::new(Semaphore::new(count)),
            count,
            lane_bytes,
            lane_timeout: Duration::from_secs(60),
        }
    }

    /// Closes a connection that holds a lane for longer than `timeout` without
    /// finishing its message: a client that sends half a large message and stops
    /// cannot keep a lane from others.
    pub fn lane_timeout(mut self, timeout: Duration) -> Self {
        self.lane_timeout = timeout;
        self
    }

    /// Bytes of the budget taken now (lanes in use, at their full size).
    pub fn in_use(&self) -> usize {
        (self.count - self.lanes.available_permits()) * self.lane_bytes
    }

    /// How many lanes there are.
    pub fn lanes(&self) -> usize {
        self.count
    }
}

/// One connection's account: bytes read and not yet settled, and the lane it holds.
/// Shared by the connection's reader and the code that decodes it.
#[derive(Debug, Clone, Default)]
pub struct ReadMeter(Arc<Mutex<Account>>);

#[derive(Debug, Default)]
struct Account {
    unsettled: usize,
    lane: Option<OwnedSemaphorePermit>,
    /// The reader, when it waits for its own connection to settle.
    waiting: Option<Waker>,
}

impl ReadMeter {
    /// Whole messages were taken: what was read so far no longer counts against the
    /// connection, and its lane goes back.
    pub fn settle(&self) {
        self.settle_but(0);
    }

    /// Whole messages were taken, and `unread` bytes read after them (the start of the
    /// next message) still wait: only those count against the connection now, and its
    /// lane goes back (a message that still needs one asks again).
    pub fn settle_but(&self, unread: usize) {
        let mut a = self.0.lock().unwrap_or_else(|e| e.into_inner());
        a.unsettled = unread;
        a.lane = None;
        if let Some(waker) = a.waiting.take() {
            waker.wake();
        }
    }

    /// Bytes read and not yet settled.
    pub fn unsettled(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).unsettled
    }
}

type Acquiring = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A socket read under a [`ReadBudget`], accounted to a [`ReadMeter`].
pub struct Metered<T> {
    io: T,
    budget: ReadBudget,
    meter: ReadMeter,
    /// A wait for a lane, when the connection passed its allowance.
    acquiring: Option<Acquiring>,
    /// When the lane held must be given back (its message whole) by.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// What lives exactly as long as the connection (the accept loop's connection
    /// slot, [`super::accept`]).
    _keep: Option<Box<dyn Send + Sync>>,
}

impl<T> Metered<T> {
    /// `io`, read under `budget` and accounted to `meter`.
    pub fn new(io: T, budget: ReadBudget, meter: ReadMeter) -> Self {
        Metered { io, budget, meter, acquiring: None, deadline: None, _keep: None }
    }

    /// The same reader, keeping `keep` alive until the connection is dropped.
    pub fn keeping(mut self, keep: impl Send + Sync + 'static) -> Self {
        self._keep = Some(Box::new(keep));
        self
    }

    /// Bytes this connection may read now without waiting, or `Pending` until a lane
    /// is free (or, holding one, until its reader settles what it read).
    /// Takes the socket out, to move it to another runtime ([`super::handoff`]); the
    /// rest comes back with [`Metered::from_parts`]. A lane still being waited for is
    /// given up (asked for again on the next read), as is a held lane's deadline.
    pub fn into_parts(self) -> (T, MeteredParts) {
        let Metered { io, budget, meter, _keep, .. } = self;
        (io, MeteredParts { budget, meter, keep: _keep })
    }

    /// The reader again, around `io`, from what [`Metered::into_parts`] took apart.
    pub fn from_parts(io: T, parts: MeteredParts) -> Self {
        let MeteredParts { budget, meter, keep } = parts;
        Metered { io, budget, meter, acquiring: None, deadline: None, _keep: keep }
    }

    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        loop {
            {
                let mut a = self.meter.0.lock().unwrap_or_else(|e| e.into_inner());
                let lane = if a.lane.is_some() { self.budget.lane_bytes } else { 0 };
                let room = (ALLOWANCE + lane).saturating_sub(a.unsettled);
                if room > 0 {
                    return Poll::Ready(room);
                }
                if a.lane.is_some() {
                    // More than a whole message unsettled: the decoder has messages to
                    // take; it settles, and wakes this read.
                    a.waiting = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
            let lanes = self.budget.lanes.clone();
            let acquiring = self.acquiring.get_or_insert_with(|| Box::pin(lanes.acquire_owned()));
            let lane = match acquiring.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(lane) => lane,
            };
            self.acquiring = None;
            // The semaphore is never closed; were it, reading would go on unmetered.
            let Ok(lane) = lane else { return Poll::Ready(ALLOWANCE) };
            self.meter.0.lock().unwrap_or_else(|e| e.into_inner()).lane = Some(lane);
            self.deadline = Some(Box::pin(tokio::time::sleep(self.budget.lane_timeout)));
        }
    }
}

/// A [`Metered`] reader without its socket: its budget, meter and what it keeps.
pub struct MeteredParts {
    budget: ReadBudget,
    meter: ReadMeter,
    keep: Option<Box<dyn Send + Sync>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.deadline.is_some() {
            let holding = self.meter.0.lock().unwrap_or_else(|e| e.into_inner()).lane.is_some();
            if !holding {
                self.deadline = None;
            } else if let Some(deadline) = &mut self.deadline {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "a large message took longer than read-timeout to arrive",
                    )));
                }
            }
        }
        let room = match self.poll_room(cx) {
            Poll::Ready(room) => room,
            Poll::Pending => return Poll::Pending,
        };
        let n = if room >= buf.remaining() {
            // The usual case: the whole buffer fits the room, read straight into it.
            let before = buf.filled().len();
            match Pin::new(&mut self.io).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => buf.filled().len() - before,
                other => return other,
            }
        } else {
            // Near the limit: read at most `room` bytes, through a small copy.
            let mut scratch = vec![0; room];
            let mut limited = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut limited) {
                Poll::Ready(Ok(())) => {
                    let n = limited.filled().len();
                    buf.put_slice(&scratch[..n]);
                    n
                }
                other => return other,
            }
        };
        self.meter.0.lock().unwrap_or_else(|e| e.into_inner()).unsettled += n;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MESSAGE: usize = 1 << 20;

    #[tokio::test]
    async fn small_reads_never_wait_and_large_ones_wait_for_a_lane() {
        let budget = ReadBudget::new(MESSAGE, MESSAGE);
        assert_eq!(budget.lanes(), 1);
        let (mut tx_a, rx_a) = tokio::io::duplex(8 << 20);
        let (mut tx_b, rx_b) = tokio::io::duplex(8 << 20);
        let (meter_a, meter_b) = (ReadMeter::default(), ReadMeter::default());
        let mut a = Metered::new(rx_a, budget.clone(), meter_a.clone());
        let mut b = Metered::new(rx_b, budget.clone(), meter_b.clone());
        // A reads past its allowance: it takes the only lane.
        tx_a.write_all(&vec![1; 3 << 20]).await.unwrap();
        let mut got = vec![0; ALLOWANCE + MESSAGE / 2];
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(budget.in_use(), MESSAGE);
        // B's small request still passes, on its own allowance.
        tx_b.write_all(&[2; 1000]).await.unwrap();
        let mut small = vec![0; 1000];
        b.read_exact(&mut small).await.unwrap();
        assert_eq!(meter_b.unsettled(), 1000);
        // B's large message waits for the lane, until A settles its message.
        tx_b.write_all(&vec![3; ALLOWANCE]).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut rest = vec![0; ALLOWANCE];
            b.read_exact(&mut rest).await.unwrap();
            b
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reader.is_finished(), "B waits while A holds the only lane");
        meter_a.settle();
        let b = reader.await.unwrap();
        assert_eq!(budget.in_use(), MESSAGE, "B took the lane A gave back");
        drop((b, meter_b));
        assert_eq!(budget.in_use(), 0, "a connection gone gives its lane back");
    }

    #[tokio::test]
    async fn a_connection_that_stops_half_way_through_a_large_message_loses_its_lane() {
        let budget = ReadBudget::new(MESSAGE, MESSAGE).lane_timeout(Duration::from_millis(100));
        let (mut tx, rx) = tokio::io::duplex(8 << 20);
        let meter = ReadMeter::default();
        let mut r = Metered::new(rx, budget.clone(), meter.clone());
        tx.write_all(&vec![1; ALLOWANCE + 10]).await.unwrap();
        let mut got = vec![0; ALLOWANCE + 10];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(budget.in_use(), MESSAGE, "past its allowance: a lane");
        // The sender stops; the read waits, then fails when the lane's time is up.
        let mut more = [0; 1];
        let failed = r.read(&mut more).await.expect_err("the read fails at the deadline");
        assert_eq!(failed.kind(), std::io::ErrorKind::TimedOut);
        drop((r, meter));
        assert_eq!(budget.in_use(), 0, "the lane is free for others");
    }

    #[tokio::test]
    async fn a_lane_holder_past_a_whole_message_waits_for_its_own_settle() {
        let budget = ReadBudget::new(MESSAGE, MESSAGE);
        let (mut tx, rx) = tokio::io::duplex(8 << 20);
        let meter = ReadMeter::default();
        let mut r = Metered::new(rx, budget.clone(), meter.clone());
        tx.write_all(&vec![1; 3 << 20]).await.unwrap();
        let mut all = vec![0; ALLOWANCE + MESSAGE];
        r.read_exact(&mut all).await.unwrap();
        let mut more = [0; 1];
        let waited = tokio::time::timeout(Duration::from_millis(50), r.read(&mut more)).await;
        assert!(waited.is_err(), "no more than a whole message past the allowance");
        let reader = tokio::spawn(async move { r.read_exact(&mut more).await.map(|_| more[0]) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        meter.settle();
        assert_eq!(reader.await.unwrap().unwrap(), 1, "settling wakes the read");
    }
}
