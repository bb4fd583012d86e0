//! One pipelined WebSocket connection from a client to a node.
//!
//! Requests are written as they come (whatever has queued leaves in one socket write),
//! answers are read as they come, by one task per connection framing both ways with
//! [`crate::wsframe`]; a map from request id to the waiting caller pairs
//! them, so any number of requests can be in flight on one connection. A watch's id
//! stays in the map, delivering every event, until it is ended. When the connection
//! fails, every caller waiting on it gets a [`ClientError::Connection`].

use super::{ClientError, ConnectOptions};
use crate::wsframe::{self, FrameReader, FrameWriter, Incoming};
use dhrt_core::{
    auth::BearerToken,
    proto::{
        client::{ErrorCode, Op, Reply},
        ClientRequest, ClientResponse, Message,
    },
    wire,
};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::Poll,
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{mpsc, oneshot},
};
use tokio_tungstenite::tungstenite;

/// The largest message a client reads from a node.
pub const MAX_FRAME: usize = wire::DEFAULT_MAX_FRAME * 2;

/// A node's client WebSocket once its opening handshake is done: the byte stream its
/// frames travel on ([`crate::wsframe`]).
pub type Stream = tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>;

/// Opens the client WebSocket (`/v1/ws`) of the node at `addr` (`host:port`, or with a
/// `ws://` or `wss://` scheme) with the TLS of `options`: its stream, and the address
/// as `host:port`. No token is presented (that is a request on the stream).
pub async fn connect(
    addr: &str,
    timeout: Duration,
    options: &ConnectOptions,
) -> Result<(Stream, String), ClientError> {
    let tls = options.tls_for(addr);
    let addr = super::normalize_addr(addr);
    let connector = if tls {
        let config = crate::tls::client_config(options.tls_ca.as_deref())
            .map_err(|e| ClientError::Connection(format!("TLS: {e}")))?;
        Some(tokio_tungstenite::Connector::Rustls(config))
    } else {
        None
    };
    let url = format!("{}://{addr}/v1/ws", if tls { "wss" } else { "ws" });
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(&url, Some(config), true, connector);
    let (ws, _) = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ClientError::Connection(format!("{addr}: no answer within {timeout:?}")))?
        .map_err(|e| ClientError::Connection(connect_error(&addr, tls, &e)))?;
    // The opening handshake was tungstenite's; the frames are ours (`crate::wsframe`).
    Ok((ws.into_inner(), addr))
}

/// Who waits for the answers to a request id.
enum Waiter {
    Once(oneshot::Sender<Reply>),
    Stream(mpsc::UnboundedSender<Reply>),
}

type Waiters = Arc<Mutex<HashMap<u64, Waiter>>>;

/// Most queued requests the writer sends in one flush.
const WRITE_BATCH: usize = 256;

/// A connection to one node.
#[derive(Clone)]
pub struct Conn {
    /// The node's `host:port`.
    pub addr: String,
    tx: mpsc::UnboundedSender<ClientRequest>,
    waiters: Waiters,
    next_id: Arc<AtomicU64>,
    alive: Arc<AtomicBool>,
    /// The newest timestamp an answer carried (0: none), shared by the connections of
    /// one client: passed with every request, so the client's next write is stamped
    /// above everything it saw, through any node (`ClientRequest::seen`).
    seen: Arc<AtomicU64>,
}

impl Conn {
    /// Opens a connection to the node at `addr` (`host:port`, or with a `ws://` or
    /// `wss://` scheme), with the token and TLS of `options`
    /// ([`ConnectOptions::tls_for`]). A token is presented first ([`Op::Auth`]); a node
    /// that refuses it answers [`ClientError::Server`] with code `unauthorized`.
    pub async fn open(
        addr: &str,
        timeout: Duration,
        options: &ConnectOptions,
    ) -> Result<Conn, ClientError> {
        Self::open_with_clock(addr, timeout, options, Arc::default()).await
    }

    /// As [`Conn::open`], sharing `seen` (the newest timestamp answered, see
    /// [`Conn`]) with the other connections of a client.
    pub async fn open_with_clock(
        addr: &str,
        timeout: Duration,
        options: &ConnectOptions,
        seen: Arc<AtomicU64>,
    ) -> Result<Conn, ClientError> {
        let conn = Self::open_socket(addr, timeout, options, seen).await?;
        if let Some(token) = &options.token {
            match conn.call(Op::Auth { token: BearerToken(token.clone()) }, timeout).await? {
                Reply::Ok => {}
                Reply::Error { code, message, acked } => {
                    return Err(ClientError::Server { code, message, acked })
                }
                other => return Err(ClientError::Protocol(format!("{other:?}"))),
            }
        }
        Ok(conn)
    }

    async fn open_socket(
        addr: &str,
        timeout: Duration,
        options: &ConnectOptions,
        seen: Arc<AtomicU64>,
    ) -> Result<Conn, ClientError> {
        let (io, addr) = connect(addr, timeout, options).await?;
        let addr = &addr;
        let max = MAX_FRAME;
        let (tx, rx) = mpsc::unbounded_channel::<ClientRequest>();
        let waiters: Waiters = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let conn = Conn {
            addr: addr.to_string(),
            tx,
            waiters: waiters.clone(),
            next_id: Arc::new(AtomicU64::new(1)),
            alive: alive.clone(),
            seen: seen.clone(),
        };
        tokio::spawn(async move {
            serve(io, rx, &waiters, &seen, max).await;
            alive.store(false, Ordering::Relaxed);
            // Dropping the waiters tells every caller the connection is gone.
            waiters.lock().map(|mut w| w.clear()).ok();
        });
        Ok(conn)
    }

    /// The newest timestamp an answer carried to this connection's client, if any.
    pub fn seen(&self) -> Option<dhrt_core::clock::Timestamp> {
        let seen = self.seen.load(Ordering::Relaxed);
        (seen > 0).then_some(dhrt_core::clock::Timestamp(seen))
    }

    /// Whether the connection is still up.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed) && !self.tx.is_closed()
    }

    /// Sends a request and waits for its answer.
    pub async fn call(
        &self,
        op: dhrt_core::proto::client::Op,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.register(id, Waiter::Once(tx))?;
        self.tx.send(ClientRequest { id, op, seen: self.seen() }).map_err(|_| self.gone())?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => {
                self.forget(id);
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    /// Sends a request whose answers are a stream (a watch): returns its id and the
    /// stream of replies.
    pub fn stream(
        &self,
        op: dhrt_core::proto::client::Op,
    ) -> Result<(u64, mpsc::UnboundedReceiver<Reply>), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.register(id, Waiter::Stream(tx))?;
        self.tx.send(ClientRequest { id, op, seen: self.seen() }).map_err(|_| self.gone())?;
        Ok((id, rx))
    }

    /// Stops delivering answers for `id`.
    pub fn forget(&self, id: u64) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(&id);
        }
    }

    fn register(&self, id: u64, waiter: Waiter) -> Result<(), ClientError> {
        if !self.is_alive() {
            return Err(self.gone());
        }
        self.waiters.lock().map_err(|_| self.gone())?.insert(id, waiter);
        Ok(())
    }

    fn gone(&self) -> ClientError {
        ClientError::Connection(format!("{}: the connection closed", self.addr))
    }
}

/// What the connection's task does next.
enum Event {
    /// Requests to send.
    Requests,
    /// Every handle of the connection is gone: close it.
    Unused,
    /// Bytes arrived.
    Read,
    /// The socket ended or failed.
    Gone,
}

/// Runs a connection: writes the requests queued on `rx` (whatever has queued leaves in
/// one socket write) and hands each answer read to its waiter, until the socket ends
/// or every handle is dropped.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    mut rx: mpsc::UnboundedReceiver<ClientRequest>,
    waiters: &Waiters,
    seen: &AtomicU64,
    max: usize,
) {
    let mut reader = FrameReader::of_server(max);
    let mut writer = FrameWriter::client();
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(Err(_)) = writer.poll_send(cx, &mut io) {
                return Poll::Ready(Event::Gone);
            }
            if let Poll::Ready(n) = rx.poll_recv_many(cx, &mut batch, WRITE_BATCH) {
                return Poll::Ready(if n == 0 { Event::Unused } else { Event::Requests });
            }
            match reader.poll_fill(cx, &mut io) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Event::Gone),
                Poll::Ready(Ok(_)) => Poll::Ready(Event::Read),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Requests => {
                for req in batch.drain(..) {
                    let id = req.id;
                    let framed =
                        writer.binary(|out| wire::encode_into(&Message::Request(req), max, out));
                    if let Err(e) = framed {
                        let message = e.to_string();
                        let reply =
                            Reply::Error { code: ErrorCode::TooLarge, message, acked: None };
                        deliver(waiters, id, reply, true);
                    }
                }
            }
            Event::Read => loop {
                match reader.next_frame() {
                    Ok(None) => break,
                    Ok(Some(Incoming::Binary(bytes))) => {
                        let Ok(Message::Response(ClientResponse { id, result, ts })) =
                            wire::decode_response(bytes, max)
                        else {
                            continue;
                        };
                        if let Some(ts) = ts {
                            seen.fetch_max(ts.0, Ordering::Relaxed);
                        }
                        deliver(waiters, id, result, false);
                    }
                    Ok(Some(Incoming::Ping(payload))) => writer.pong(payload),
                    Ok(Some(Incoming::Text | Incoming::Pong)) => {}
                    Ok(Some(Incoming::Close(_))) | Err(_) => return,
                }
            },
            Event::Unused => {
                writer.close(wsframe::NORMAL, "");
                writer.send_within(&mut io, Duration::from_secs(1)).await;
                return;
            }
            Event::Gone => return,
        }
    }
}

/// Hands `reply` to whoever waits for `id`; a one-shot waiter is removed.
fn deliver(waiters: &Waiters, id: u64, reply: Reply, local: bool) {
    let Ok(mut w) = waiters.lock() else { return };
    match w.get(&id) {
        Some(Waiter::Stream(tx)) => {
            let ends = matches!(reply, Reply::Error { .. }) && !local;
            if tx.send(reply).is_err() || ends {
                w.remove(&id);
            }
        }
        Some(Waiter::Once(_)) => {
            if let Some(Waiter::Once(tx)) = w.remove(&id) {
                let _ = tx.send(reply);
            }
        }
        None => {}
    }
}

/// Why a connection to `addr` failed, for people: a plain connection answered with bytes
/// that are not HTTP is most likely a TLS port, and the message says so.
fn connect_error(addr: &str, tls: bool, e: &tungstenite::Error) -> String {
    use tungstenite::error::ProtocolError;
    match e {
        tungstenite::Error::Protocol(ProtocolError::HttparseError(_)) if !tls => format!(
            "{addr}: {e}: the node answered with something other than HTTP; if it speaks TLS, connect to wss://{addr} (with --tls-ca for a private CA)"
        ),
        _ => format!("{addr}: {e}"),
    }
}
