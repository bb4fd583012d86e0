//! Links to other nodes: one outbound WebSocket per peer address.
//!
//! A node sends to a peer over a connection it opened itself
//! (`ws://ADDR/v1/peer?version=V`, `wss://` when the node has TLS) and receives on the
//! connections peers opened to it,
//! so each direction of a pair of nodes has its own link and no link is shared between
//! a request and its answer. The query string lets the receiving node refuse another
//! protocol version before upgrading (see [`super::ws`]); then the two nodes run the
//! peer handshake ([`super::peer_auth`]): both prove the cluster secret and the
//! receiving node learns, proven, who is talking. Nothing is sent before the handshake
//! succeeds; a peer that fails it is retried with the same backoff as an unreachable
//! one, and the failure is logged as a warning naming the peer.
//!
//! Each link has a bounded queue ([`QUEUE`] frames). The node thread never waits on
//! the network: when the queue is full, or the peer cannot be reached, frames are
//! dropped and counted. The node's protocols are built for loss (timeouts, retries,
//! hints, anti-entropy), exactly as in the simulator. A link that fails reconnects with
//! exponential backoff (100 ms doubling to 5 s); frames queued while it is down are
//! dropped rather than delivered late.

use super::{
    peer_auth::{self, Credentials, HandshakeError},
    stats::Counters,
};
use dhrt_core::{proto::Message, wire};
use futures_util::{SinkExt, StreamExt};
use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};
use tokio::{runtime::Handle, sync::mpsc};
use tokio_tungstenite::tungstenite;

/// Frames queued per peer link before new ones are dropped.
pub const QUEUE: usize = 8192;

/// The outbound links of one node.
pub struct Peers {
    me: Credentials,
    links: HashMap<String, mpsc::Sender<Message>>,
    runtime: Handle,
    counters: Arc<Counters>,
    max_frame: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Peers {
    /// Links for the node whose handshake credentials are `me`, spawned on `runtime`.
    pub fn new(
        me: Credentials,
        runtime: Handle,
        counters: Arc<Counters>,
        max_frame: usize,
    ) -> Self {
        Peers { me, links: HashMap::new(), runtime, counters, max_frame, tls: None }
    }

    /// Links over TLS (`wss://`) with `tls` ([`crate::tls::peer_client_config`]) when
    /// given.
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// Queues `msg` for the node at `addr`, opening the link on first use.
    pub fn send(&mut self, addr: &str, msg: Message) {
        if addr.is_empty() {
            self.counters.peer_frames_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let tx = match self.links.get(addr) {
            Some(tx) if !tx.is_closed() => tx,
            _ => {
                let (tx, rx) = mpsc::channel(QUEUE);
                let link = Link {
                    me: self.me.clone(),
                    addr: addr.to_string(),
                    counters: self.counters.clone(),
                    max_frame: self.max_frame,
                    tls: self.tls.clone(),
                };
                self.runtime.spawn(link.run(rx));
                self.links.insert(addr.to_string(), tx);
                &self.links[addr]
            }
        };
        if tx.try_send(msg).is_err() {
            self.counters.peer_frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Link {
    me: Credentials,
    addr: String,
    counters: Arc<Counters>,
    max_frame: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Link {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let url = format!("{scheme}://{}/v1/peer?version={}", self.addr, wire::VERSION);
        let mut backoff = Duration::from_millis(100);
        loop {
            let config = tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(Some(self.max_frame))
                .max_frame_size(Some(self.max_frame));
            let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
            let connect = tokio_tungstenite::connect_async_tls_with_config(
                &url,
                Some(config),
                true,
                connector,
            );
            match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok((mut ws, _))) => match self.handshake(&mut ws).await {
                    Ok(peer) => {
                        backoff = Duration::from_millis(100);
                        tracing::debug!(peer = %self.addr, id = %peer, "peer link up");
                        if self.pump(ws, &mut rx).await.is_none() {
                            return;
                        }
                        tracing::debug!(peer = %self.addr, "peer link down");
                    }
                    Err(e @ (HandshakeError::Closed | HandshakeError::Timeout)) => {
                        tracing::debug!(peer = %self.addr, error = %e, "peer handshake failed");
                    }
                    Err(e) => {
                        self.counters.peer_handshakes_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %self.addr, error = %e, "peer handshake failed");
                    }
                },
                Ok(Err(e)) => tracing::debug!(peer = %self.addr, error = %e, "peer unreachable"),
                Err(_) => tracing::debug!(peer = %self.addr, "peer connect timed out"),
            }
            // Whatever queued meanwhile would arrive late: drop it.
            loop {
                match rx.try_recv() {
                    Ok(_) => {
                        self.counters.peer_frames_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Runs the connecting side of the peer handshake ([`peer_auth`]) on a fresh link:
    /// the peer's proven id, or why not.
    async fn handshake<S>(
        &self,
        ws: &mut tokio_tungstenite::WebSocketStream<S>,
    ) -> Result<dhrt_core::NodeId, HandshakeError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let steps = async {
            let challenge = peer_auth::decode(&next_binary(ws).await?)?;
            let (hello, expect) = match self.me.hello(challenge) {
                Ok(step) => step,
                Err(e) => {
                    refuse(ws, &e).await;
                    return Err(e);
                }
            };
            send(ws, &hello).await?;
            self.me.check_welcome(&expect, peer_auth::decode(&next_binary(ws).await?)?)
        };
        tokio::time::timeout(peer_auth::TIMEOUT, steps)
            .await
            .unwrap_or(Err(HandshakeError::Timeout))
    }

    /// Sends queued frames until the connection fails (`Some`) or the node stops
    /// (`None`).
    async fn pump<S>(
        &self,
        ws: tokio_tungstenite::WebSocketStream<S>,
        rx: &mut mpsc::Receiver<Message>,
    ) -> Option<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut sink, mut stream) = ws.split();
        let mut batch = Vec::with_capacity(super::ws::WRITE_BATCH);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, super::ws::WRITE_BATCH) => {
                    if n == 0 {
                        return None;
                    }
                    // One flush (one socket write) for every frame queued meanwhile.
                    for msg in batch.drain(..) {
                        let frame = match wire::encode_with_limit(&msg, self.max_frame) {
                            Ok(f) => f,
                            Err(e) => {
                                tracing::warn!(peer = %self.addr, error = %e, "frame not sent");
                                self.counters.peer_frames_dropped.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        };
                        if sink.feed(tungstenite::Message::Binary(frame.into())).await.is_err() {
                            self.counters.peer_frames_dropped.fetch_add(1, Ordering::Relaxed);
                            return Some(());
                        }
                        self.counters.peer_frames_out.fetch_add(1, Ordering::Relaxed);
                    }
                    if sink.flush().await.is_err() {
                        return Some(());
                    }
                }
                incoming = stream.next() => match incoming {
                    Some(Ok(tungstenite::Message::Close(_))) | Some(Err(_)) | None => return Some(()),
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}

/// The next binary frame of a link in its handshake.
async fn next_binary<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> Result<Vec<u8>, HandshakeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(tungstenite::Message::Binary(bytes))) => return Ok(bytes.to_vec()),
            Some(Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_))) => {}
            Some(Ok(_)) => {
                return Err(HandshakeError::Protocol("a frame that is not binary".into()))
            }
            Some(Err(_)) | None => return Err(HandshakeError::Closed),
        }
    }
}

async fn send<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    step: &peer_auth::Handshake,
) -> Result<(), HandshakeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = tungstenite::Message::Binary(peer_auth::encode(step).into());
    ws.send(frame).await.map_err(|_| HandshakeError::Closed)
}

/// Tells the other node why the handshake failed (best effort), then closes.
async fn refuse<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, why: &HandshakeError)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = send(ws, &peer_auth::Handshake::Refused { reason: why.to_string() }).await;
    let _ = ws.close(None).await;
}
