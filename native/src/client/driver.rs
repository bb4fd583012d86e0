//! The tokio host of the core's light peer: what makes [`super::Client`] route, fail
//! over and keep watches and local copies alive exactly as the browser's client does.
//!
//! [`LightPeer`] is sans-IO; this module gives it sockets and time, as the wasm `Peer`
//! does in JavaScript:
//!
//! - one *link* task per node the peer sends to: it opens the node's client WebSocket
//!   (with the client's TLS), writes the frames the peer sends there and hands every
//!   frame the node answers back to the peer; when the socket fails or closes, the peer
//!   hears [`LightPeer::disconnected`] and moves what waited on it;
//! - one *timer* task that runs [`LightPeer::tick`] at [`LightPeer::next_deadline`];
//! - the callers themselves: a call locks the peer, hands it the request and leaves
//!   with a channel its answer will come on.
//!
//! Whoever touched the peer drains its outputs before letting go of the lock
//! ([`State::pump`]): frames go to their link's queue, answers to their caller,
//! changes and states to their watch or copy. No lock is held across an `.await`.

use super::{conn, ClientError, ConnectOptions};
use crate::wsframe::{self, FrameReader, FrameWriter, Incoming};
use dhrt_core::{
    light::{LightConfig, LightOutput, LightPeer, StreamStatus},
    proto::client::{ErrorCode, Reply},
    replica::Change,
    Millis,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    task::Poll,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::{mpsc, oneshot, Notify};

/// Changes a watch or copy may have waiting for its reader; past this the reader has
/// fallen behind and the watch ends with an error rather than grow without bound.
pub const STREAM_QUEUE: usize = 65_536;

/// Frames a link may have queued for its socket before the peer's next frame to that
/// node counts the link as failed (a node that stopped reading).
const LINK_QUEUE: usize = 65_536;

/// Wall-clock milliseconds: the light peer's `now` (a local copy's expiries compare
/// with the entries' wall-clock expiry times).
pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// What a watch or a local copy hears.
#[derive(Debug)]
pub enum StreamItem {
    /// A change seen (a watch) or applied (a copy opened to notify).
    Change(Change),
    /// Its state changed.
    Status(StreamStatus),
    /// Its reader fell behind by [`STREAM_QUEUE`] items: it was ended.
    Overflowed,
}

/// A link to one node: the queue of frames its task writes.
struct Link {
    generation: u64,
    frames: mpsc::Sender<Vec<u8>>,
}

/// Everything the peer's host keeps, behind one lock.
struct State {
    peer: LightPeer,
    links: HashMap<String, Link>,
    generation: u64,
    /// Callers waiting for an answer, by the handle the peer gave their request.
    calls: HashMap<u64, oneshot::Sender<Result<Reply, ClientError>>>,
    /// Watches and copies, by handle.
    streams: HashMap<u64, mpsc::Sender<StreamItem>>,
    /// Who waits for the first reading of the ring.
    started: Option<oneshot::Sender<Result<(), ClientError>>>,
    /// Why the last connection to each node failed, for the errors callers get.
    failures: HashMap<String, String>,
    /// When the timer task will tick next, as it last planned.
    timer_at: Option<Millis>,
    /// The client presents no token.
    token_less: bool,
    closed: bool,
}

/// The shared host: the peer behind its lock, and how the timer task is woken.
pub struct Driver {
    state: Mutex<State>,
    wake: Notify,
    options: ConnectOptions,
    /// How long opening a connection to a node may take.
    connect_timeout: Duration,
    /// The runtime the client's tasks run on: links are opened from whatever thread
    /// touched the peer (a watch dropped in a thread of its own, say).
    runtime: tokio::runtime::Handle,
}

impl Driver {
    /// A driver of a light peer reading the ring through `seeds`, with the token and TLS
    /// of `options`; its timer task runs on the current tokio runtime. Returns the
    /// driver and the channel the first reading of the ring is answered on. Called
    /// within a tokio runtime, which the client's tasks then run on.
    pub fn start(
        seeds: Vec<String>,
        config: LightConfig,
        options: ConnectOptions,
    ) -> (Arc<Driver>, oneshot::Receiver<Result<(), ClientError>>) {
        let connect_timeout = Duration::from_millis(config.attempt_timeout_ms.max(1));
        let (tx, rx) = oneshot::channel();
        let driver = Arc::new(Driver {
            state: Mutex::new(State {
                peer: LightPeer::new(seeds, config),
                links: HashMap::new(),
                generation: 0,
                calls: HashMap::new(),
                streams: HashMap::new(),
                started: Some(tx),
                failures: HashMap::new(),
                timer_at: None,
                token_less: options.token.is_none(),
                closed: false,
            }),
            wake: Notify::new(),
            options,
            connect_timeout,
            runtime: tokio::runtime::Handle::current(),
        });
        driver.runtime.spawn(run_timer(Arc::downgrade(&driver)));
        driver.with(|peer, now| peer.start(now));
        (driver, rx)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave the peer half-changed in a way
        // that matters more than stopping every caller would.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the peer, then hands out what it produced.
    pub fn with<T>(self: &Arc<Self>, f: impl FnOnce(&mut LightPeer, Millis) -> T) -> T {
        let mut state = self.lock();
        let out = f(&mut state.peer, now_ms());
        state.pump(self);
        out
    }

    /// Reads the peer without changing it (a local copy, the ring).
    pub fn read<T>(&self, f: impl FnOnce(&LightPeer) -> T) -> T {
        f(&self.lock().peer)
    }

    /// Sends a request through the peer (to `at` only, when given): the channel its
    /// answer comes on, and its handle (to [`Driver::cancel`] it).
    pub fn call(
        self: &Arc<Self>,
        op: dhrt_core::proto::client::Op,
        at: Option<&str>,
    ) -> (u64, oneshot::Receiver<Result<Reply, ClientError>>) {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        if state.closed {
            let _ = tx.send(Err(ClientError::Connection("the client is closed".into())));
            return (0, rx);
        }
        let now = now_ms();
        let handle = match at {
            Some(addr) => state.peer.call_at(now, addr, op),
            None => state.peer.call(now, op),
        };
        state.calls.insert(handle, tx);
        state.pump(self);
        (handle, rx)
    }

    /// Gives up request `handle`: no other node is tried for it.
    pub fn cancel(&self, handle: u64) {
        let mut state = self.lock();
        state.calls.remove(&handle);
        state.peer.cancel(handle);
    }

    /// Opens a watch (`copy` false) or a local copy of `collection` that reports its
    /// changes (`notify`): its handle, and the channel its changes and states come on.
    pub fn subscribe(
        self: &Arc<Self>,
        collection: &str,
        prefix: Option<bytes::Bytes>,
        copy: bool,
        notify: bool,
    ) -> (u64, mpsc::Receiver<StreamItem>) {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let mut state = self.lock();
        let now = now_ms();
        let handle = if copy {
            state.peer.open_copy(now, collection, notify)
        } else {
            state.peer.watch(now, collection, prefix)
        };
        if !state.closed {
            state.streams.insert(handle, tx);
        }
        state.pump(self);
        (handle, rx)
    }

    /// Ends watch or copy `handle`.
    pub fn unsubscribe(self: &Arc<Self>, handle: u64) {
        let mut state = self.lock();
        state.streams.remove(&handle);
        let now = now_ms();
        state.peer.unsubscribe(now, handle);
        state.pump(self);
    }

    /// Stops everything: callers waiting are told the client closed, watches end, the
    /// links close their sockets, the timer task ends.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.links.clear();
        for (_, tx) in state.calls.drain() {
            let _ = tx.send(Err(ClientError::Connection("the client is closed".into())));
        }
        state.streams.clear();
        if let Some(tx) = state.started.take() {
            let _ = tx.send(Err(ClientError::Connection("the client is closed".into())));
        }
        drop(state);
        self.wake.notify_one();
    }

    /// The link task of `addr` (generation `generation`) ended: `why` it failed.
    fn link_failed(self: &Arc<Self>, addr: &str, generation: u64, why: String) {
        let mut state = self.lock();
        // A link dropped by the client (closing, or a node that stopped reading) was
        // reported when it was dropped.
        if state.links.get(addr).is_none_or(|l| l.generation != generation) {
            return;
        }
        state.links.remove(addr);
        state.failures.insert(addr.to_string(), why);
        let now = now_ms();
        state.peer.disconnected(now, addr);
        state.pump(self);
    }

    /// The link to `addr` is open.
    fn link_open(&self, addr: &str) {
        let mut state = self.lock();
        state.failures.remove(addr);
        state.peer.connected(addr);
    }
}

impl State {
    /// Hands out everything the peer produced, and wakes the timer task when the peer's
    /// next deadline moved earlier than it planned.
    fn pump(&mut self, driver: &Arc<Driver>) {
        while let Some(out) = self.peer.poll_output() {
            match out {
                LightOutput::Send { addr, frame } => self.send(driver, addr, frame),
                LightOutput::Reply { handle, reply } => {
                    if let Some(tx) = self.calls.remove(&handle) {
                        let _ = tx.send(Ok(reply));
                    }
                }
                LightOutput::NoAnswer { handle, reply } => {
                    if let Some(tx) = self.calls.remove(&handle) {
                        let _ = tx.send(Err(self.unreachable(reply)));
                    }
                }
                LightOutput::Change { handle, change } => {
                    self.deliver(handle, StreamItem::Change(change))
                }
                LightOutput::Status { handle, status } => {
                    self.deliver(handle, StreamItem::Status(status))
                }
                LightOutput::RingChanged => {
                    if let Some(tx) = self.started.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                LightOutput::Unreachable { message } => {
                    if let Some(tx) = self.started.take() {
                        let reply =
                            Reply::Error { code: ErrorCode::Unavailable, message, acked: None };
                        let _ = tx.send(Err(self.unreachable(reply)));
                    }
                }
                LightOutput::Refused { code, message } => {
                    if let Some(tx) = self.started.take() {
                        // A node that wants a token, asked without one, was reached: the
                        // client connects, and each call says what is missing (the
                        // node's sentence). A token given and refused fails at once.
                        let reached = self.token_less && code == ErrorCode::Unauthorized;
                        let _ = tx.send(match reached {
                            true => Ok(()),
                            false => Err(ClientError::Server { code, message, acked: None }),
                        });
                    }
                }
            }
        }
        let next = self.peer.next_deadline();
        if !self.closed && next.is_some_and(|d| self.timer_at.is_none_or(|t| d < t)) {
            self.timer_at = next;
            driver.wake.notify_one();
        }
    }

    /// The error for "no node answered": the connection failures behind it, when the
    /// links saw any, else what the peer said.
    fn unreachable(&self, reply: Reply) -> ClientError {
        let message = match reply {
            Reply::Error { message, .. } => message,
            other => format!("{other:?}"),
        };
        if self.failures.is_empty() {
            return ClientError::Connection(message);
        }
        // A connection's own errors name their address already.
        let named = |addr: &String, e: &String| match e.starts_with(addr.as_str()) {
            true => e.clone(),
            false => format!("{addr}: {e}"),
        };
        let mut why: Vec<String> = self.failures.iter().map(|(a, e)| named(a, e)).collect();
        why.sort();
        ClientError::Connection(format!("{message} ({})", why.join("; ")))
    }

    /// Hands a change or a state to its watch or copy; a reader that fell behind ends it.
    fn deliver(&mut self, handle: u64, item: StreamItem) {
        let Some(tx) = self.streams.get(&handle) else { return };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.streams.remove(&handle);
                let now = now_ms();
                self.peer.unsubscribe(now, handle);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                // The last slot is kept for this: the reader learns why the stream ended.
                if let Some(tx) = self.streams.remove(&handle) {
                    let _ = tx.try_send(StreamItem::Overflowed);
                }
                let now = now_ms();
                self.peer.unsubscribe(now, handle);
            }
        }
    }

    /// Queues `frame` on the link to `addr`, opening one when there is none.
    fn send(&mut self, driver: &Arc<Driver>, addr: String, frame: Vec<u8>) {
        if self.closed {
            return;
        }
        if let Some(link) = self.links.get(&addr) {
            match link.frames.try_send(frame) {
                Ok(()) => return,
                // The link's task ended (it reports so) or its node stopped reading:
                // either way the frame's request fails over once the link is reported.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Dropping the queue ends the link's task; what waited on the node
                    // moves on now.
                    self.links.remove(&addr);
                    let why = format!("{LINK_QUEUE} frames unsent: the node stopped reading");
                    self.failures.insert(addr.clone(), why);
                    self.peer.disconnected(now_ms(), &addr);
                    return;
                }
            }
        }
        self.generation += 1;
        let generation = self.generation;
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let _ = tx.try_send(frame);
        self.links.insert(addr.clone(), Link { generation, frames: tx });
        driver.runtime.spawn(run_link(driver.clone(), addr, generation, rx));
    }
}

/// Runs the peer's timers until the client closes.
async fn run_timer(driver: std::sync::Weak<Driver>) {
    loop {
        let Some(d) = driver.upgrade() else { return };
        let at = {
            let mut state = d.lock();
            if state.closed {
                return;
            }
            state.timer_at = state.peer.next_deadline();
            state.timer_at
        };
        let sleep = at.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
        let wake = d.clone();
        drop(d);
        match sleep {
            Some(sleep) => {
                tokio::select! {
                    () = tokio::time::sleep(sleep) => {}
                    () = wake.wake.notified() => {}
                }
            }
            None => wake.wake.notified().await,
        }
        if wake.lock().closed {
            return;
        }
        wake.with(|peer, now| peer.tick(now));
    }
}

/// One node's link: connects, then writes the frames queued for it and hands the
/// node's frames to the peer until either side ends.
async fn run_link(
    driver: Arc<Driver>,
    addr: String,
    generation: u64,
    mut frames: mpsc::Receiver<Vec<u8>>,
) {
    let connect = conn::connect(&addr, driver.connect_timeout, &driver.options);
    let mut io = match connect.await {
        Ok((io, _)) => io,
        Err(e) => {
            let why = match e {
                ClientError::Connection(why) => why,
                other => other.to_string(),
            };
            return driver.link_failed(&addr, generation, why);
        }
    };
    driver.link_open(&addr);
    let why = serve(&driver, &addr, &mut io, &mut frames).await;
    driver.link_failed(&addr, generation, why);
}

/// What the link does next.
enum Event {
    Frames,
    Unused,
    Read,
    Gone(String),
}

/// Moves frames both ways until the socket ends (the reason), or the client drops the
/// link (a close frame is sent).
async fn serve(
    driver: &Arc<Driver>,
    addr: &str,
    io: &mut conn::Stream,
    frames: &mut mpsc::Receiver<Vec<u8>>,
) -> String {
    let mut reader = FrameReader::of_server(conn::MAX_FRAME);
    let mut writer = FrameWriter::client();
    let mut batch = Vec::with_capacity(256);
    loop {
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(Err(e)) = writer.poll_send(cx, &mut *io) {
                return Poll::Ready(Event::Gone(e.to_string()));
            }
            if let Poll::Ready(n) = frames.poll_recv_many(cx, &mut batch, 256) {
                return Poll::Ready(if n == 0 { Event::Unused } else { Event::Frames });
            }
            match reader.poll_fill(cx, &mut *io) {
                Poll::Ready(Ok(0)) => {
                    Poll::Ready(Event::Gone("the node closed the connection".into()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Event::Gone(e.to_string())),
                Poll::Ready(Ok(_)) => Poll::Ready(Event::Read),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Frames => {
                for frame in batch.drain(..) {
                    writer.binary_encoded(&frame);
                }
            }
            Event::Read => {
                let mut end = None;
                let mut state = driver.lock();
                let now = now_ms();
                loop {
                    match reader.next_frame() {
                        Ok(None) => break,
                        Ok(Some(Incoming::Binary(bytes))) => {
                            state.peer.handle_frame(now, addr, bytes)
                        }
                        Ok(Some(Incoming::Ping(payload))) => writer.pong(payload),
                        Ok(Some(Incoming::Text | Incoming::Pong)) => {}
                        Ok(Some(Incoming::Close(_))) => {
                            end = Some("the node closed the connection".to_string());
                            break;
                        }
                        Err(e) => {
                            end = Some(format!("the node broke the protocol: {}", e.reason));
                            break;
                        }
                    }
                }
                state.pump(driver);
                drop(state);
                if let Some(why) = end {
                    return why;
                }
            }
            Event::Unused => {
                writer.close(wsframe::NORMAL, "");
                writer.send_within(&mut *io, Duration::from_secs(1)).await;
                return "the client closed the connection".into();
            }
            Event::Gone(why) => return why,
        }
    }
}
