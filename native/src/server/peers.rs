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
//! Each link has a queue bounded in frames ([`QUEUE`]) and in bytes: every queued
//! message holds a share of its link's byte budget and of the node's
//! ([`super::peer_budget`], `--peer-queue-mb` and `--peer-queue-total-mb`), counted with
//! an estimate of its frame length made without encoding it, and given back once the
//! link task has handed the frame to its socket. The node thread never waits on the
//! network: when the queue or a budget is full, or the peer cannot be reached, frames
//! are dropped and counted (`dhrt_peer_frames_dropped_total`). The node's protocols are
//! built for loss (timeouts, retries, hints, anti-entropy), exactly as in the
//! simulator. A link that fails reconnects with exponential backoff (100 ms doubling to
//! 5 s); frames queued while it is down are dropped rather than delivered late.
//!
//! A link carries only peer messages ([`PeerMessage`]); the receiving node would refuse
//! anything else, so a client message handed to [`Peers::send`] is dropped here, with a
//! warning.

use super::{
    limits::Limits,
    peer_auth::{self, Credentials, HandshakeError},
    peer_budget::{Charge, LinkBudget, PeerBudget},
    stats::Counters,
};
use dhrt_core::{
    proto::{Message, PeerMessage},
    wire,
};
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

/// A message waiting in a link's queue, with the bytes it holds of the budgets.
struct Queued {
    msg: PeerMessage,
    charge: Charge,
}

/// One open link: its queue and its byte budget.
struct LinkQueue {
    tx: mpsc::Sender<Queued>,
    budget: Arc<LinkBudget>,
}

/// The outbound links of one node.
pub struct Peers {
    me: Credentials,
    links: HashMap<String, LinkQueue>,
    runtime: Handle,
    counters: Arc<Counters>,
    budget: PeerBudget,
    max_frame: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Peers {
    /// Links for the node whose handshake credentials are `me`, spawned on `runtime`,
    /// with the default byte budgets ([`Limits`]).
    pub fn new(
        me: Credentials,
        runtime: Handle,
        counters: Arc<Counters>,
        max_frame: usize,
    ) -> Self {
        let limits = Limits::default();
        let budget = PeerBudget::new(
            limits.peer_queue_bytes,
            limits.peer_queue_total_bytes,
            counters.clone(),
        );
        Peers { me, links: HashMap::new(), runtime, counters, budget, max_frame, tls: None }
    }

    /// Queues at most `per_link` bytes of frames on one link and `total` on all links
    /// together ([`Limits::peer_queue_bytes`], [`Limits::peer_queue_total_bytes`]).
    pub fn queue_bytes(mut self, per_link: usize, total: usize) -> Self {
        self.budget = PeerBudget::new(per_link, total, self.counters.clone());
        self
    }

    /// Links over TLS (`wss://`) with `tls` ([`crate::tls::peer_client_config`]) when
    /// given.
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// Queues `msg` for the node at `addr`, opening the link on first use; drops and
    /// counts it when the link's queue or a byte budget is full. Never waits.
    pub fn send(&mut self, addr: &str, msg: Message) {
        let msg = match PeerMessage::try_from(msg) {
            Ok(msg) if !addr.is_empty() => msg,
            Ok(_) => return self.dropped(),
            Err(other) => {
                tracing::warn!(peer = %addr, message = ?other, "not a peer message: not sent");
                return self.dropped();
            }
        };
        let link = match self.links.get(addr) {
            Some(link) if !link.tx.is_closed() => link,
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
                let queue = LinkQueue { tx, budget: self.budget.link() };
                self.links.insert(addr.to_string(), queue);
                &self.links[addr]
            }
        };
        let Some(charge) = link.budget.charge(msg.estimated_frame_bytes()) else {
            return self.dropped();
        };
        // A full queue hands the message back; dropping it gives its bytes back.
        if link.tx.try_send(Queued { msg, charge }).is_err() {
            self.dropped();
        }
    }

    /// Bytes queued on all links now.
    pub fn queued_bytes(&self) -> u64 {
        self.budget.queued()
    }

    fn dropped(&self) {
        self.counters.peer_frames_dropped.fetch_add(1, Ordering::Relaxed);
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
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
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
        rx: &mut mpsc::Receiver<Queued>,
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
                    // One flush (one socket write) for every frame queued meanwhile. A
                    // message keeps its bytes of the budget until its frame is in the
                    // socket's hands, so what waits here counts too.
                    let mut queued = batch.drain(..);
                    while let Some(Queued { msg, charge }) = queued.next() {
                        let frame = match wire::encode_with_limit(&msg, self.max_frame) {
                            Ok(f) => f,
                            Err(e) => {
                                tracing::warn!(peer = %self.addr, error = %e, "frame not sent");
                                self.counters.peer_frames_dropped.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        };
                        drop(msg);
                        if sink.feed(tungstenite::Message::Binary(frame.into())).await.is_err() {
                            let lost = 1 + queued.len() as u64;
                            self.counters.peer_frames_dropped.fetch_add(lost, Ordering::Relaxed);
                            return Some(());
                        }
                        drop(charge);
                        self.counters.peer_frames_out.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(queued);
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use dhrt_core::{entry::Entry, proto::ReplicaMessage, NodeId, Timestamp};
    use tokio::{net::TcpListener, sync::oneshot};

    /// A replica write of one `len`-byte value.
    fn write(len: usize) -> Message {
        let entry =
            Entry::value(vec![7; len], Timestamp::from_parts(1_700_000_000_000, 0), NodeId(1));
        Message::Replica(ReplicaMessage::Write {
            req: 1,
            collection: "c".into(),
            records: vec![(Bytes::from_static(b"k"), entry)],
        })
    }

    fn estimate(msg: &Message) -> u64 {
        PeerMessage::try_from(msg.clone()).unwrap().estimated_frame_bytes() as u64
    }

    /// A peer at the returned address that accepts one link and holds it until `gate`
    /// fires; then, when `answer`, it completes the handshake and returns every frame
    /// it receives on the channel, else it closes the link.
    async fn gated_peer(
        answer: bool,
    ) -> (String, oneshot::Sender<()>, mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (gate_tx, gate) = oneshot::channel::<()>();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let _ = gate.await;
            if !answer {
                return;
            }
            let me = Credentials::new(NodeId(2), None);
            let (challenge, nonce) = me.challenge().unwrap();
            ws.send(tungstenite::Message::Binary(peer_auth::encode(&challenge).into()))
                .await
                .unwrap();
            let hello = peer_auth::decode(&next_binary(&mut ws).await.unwrap()).unwrap();
            let (_, welcome) = me.check_hello(&nonce, hello).unwrap();
            ws.send(tungstenite::Message::Binary(peer_auth::encode(&welcome).into()))
                .await
                .unwrap();
            while let Ok(frame) = next_binary(&mut ws).await {
                let _ = frames_tx.send(frame);
            }
        });
        (addr, gate_tx, frames)
    }

    fn peers(per_link: usize, total: usize) -> (Peers, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let me = Credentials::new(NodeId(1), None);
        let peers = Peers::new(me, Handle::current(), counters.clone(), 20 << 20)
            .queue_bytes(per_link, total);
        (peers, counters)
    }

    /// Waits (at most a minute: only a broken link takes that long) for `done`.
    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..6000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_link_budget_drops_frames_and_sending_them_gives_the_bytes_back() {
        let (addr, gate, mut frames) = gated_peer(true).await;
        let (mut peers, counters) = peers(1 << 20, 4 << 20);
        let dropped = || counters.peer_frames_dropped.load(Ordering::Relaxed);
        let (big, small) = (write(400 << 10), write(10));
        // The peer holds the handshake: nothing leaves the queue meanwhile.
        peers.send(&addr, big.clone());
        peers.send(&addr, big.clone());
        assert_eq!((peers.queued_bytes(), dropped()), (2 * estimate(&big), 0));
        peers.send(&addr, big.clone());
        assert_eq!(dropped(), 1, "a third 400 KiB frame does not fit 1 MiB: dropped, counted");
        peers.send(&addr, small.clone());
        assert_eq!(dropped(), 1, "a small one still fits");
        let queued = 2 * estimate(&big) + estimate(&small);
        assert_eq!(peers.queued_bytes(), queued);
        assert_eq!(counters.peer_queued_bytes.load(Ordering::Relaxed), queued, "the metric");
        // The peer answers: the link sends the three frames and gives their bytes back.
        gate.send(()).unwrap();
        for expected in [&big, &big, &small] {
            let frame = frames.recv().await.unwrap();
            assert_eq!(&wire::decode(&frame).unwrap(), expected);
        }
        until(|| peers.queued_bytes() == 0).await;
        peers.send(&addr, big.clone());
        peers.send(&addr, big.clone());
        assert_eq!(dropped(), 1, "room again");
        for _ in 0..2 {
            frames.recv().await.unwrap();
        }
        until(|| peers.queued_bytes() == 0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_dropped_when_a_link_fails_give_their_bytes_back() {
        let (addr, gate, _frames) = gated_peer(false).await;
        let (other, _other_gate, _other_frames) = gated_peer(false).await;
        let (mut peers, counters) = peers(1 << 20, 1 << 20);
        let dropped = || counters.peer_frames_dropped.load(Ordering::Relaxed);
        let big = write(400 << 10);
        peers.send(&addr, big.clone());
        peers.send(&addr, big.clone());
        peers.send(&other, big.clone());
        assert_eq!(dropped(), 1, "the node's 1 MiB is taken by the first link");
        assert_eq!(peers.queued_bytes(), 2 * estimate(&big));
        // The peer closes the link before its handshake: the queued frames are dropped.
        gate.send(()).unwrap();
        until(|| dropped() == 3).await;
        assert_eq!(peers.queued_bytes(), 0);
        peers.send(&other, big.clone());
        assert_eq!(peers.queued_bytes(), estimate(&big), "the other link has room now");
    }

    #[tokio::test]
    async fn client_messages_never_go_on_a_peer_link() {
        let (mut peers, counters) = peers(1 << 20, 1 << 20);
        let req = dhrt_core::proto::ClientRequest {
            id: 1,
            op: dhrt_core::proto::client::Op::Stats,
            seen: None,
        };
        peers.send("127.0.0.1:9", Message::Request(req));
        assert_eq!(counters.peer_frames_dropped.load(Ordering::Relaxed), 1);
        assert!(peers.links.is_empty(), "no link opened for it");
    }
}
