//! Links to other nodes: one outbound WebSocket per peer address.
//!
//! The links are tasks on the node thread's runtime (the server spawns them there), so
//! a message the node sends crosses no thread: it is queued here, framed by the link's
//! task ([`super::peer_frames`], dhrt's own framing) and written with every other frame
//! queued meanwhile in one call.
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
    peer_auth::{Credentials, HandshakeError},
    peer_budget::{Charge, LinkBudget, PeerBudget},
    peer_frames::PeerFrames,
    stats::Counters,
};
use crate::wsframe::Incoming;
use dhrt_core::{
    proto::{Message, PeerMessage},
    wire,
};
use std::{
    collections::HashMap,
    sync::{
        atomic::Ordering::{self, Relaxed},
        Arc,
    },
    task::Poll,
    time::Duration,
};
use tokio::{net::TcpStream, runtime::Handle, sync::mpsc};

/// A link's byte stream: TCP, or TLS over it.
type Stream = tokio_tungstenite::MaybeTlsStream<TcpStream>;

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

/// What a link's task has to do next.
enum Turn {
    /// Messages were queued (0: the node is gone).
    Queued(usize),
    /// The other node sent something (a close, a ping).
    Read,
    /// The connection failed or closed.
    Failed,
}

impl Link {
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.open()).await {
                Ok(Ok(mut link)) => match link.connect(&self.me).await {
                    Ok(peer) => {
                        backoff = Duration::from_millis(100);
                        tracing::debug!(peer = %self.addr, id = %peer, "peer link up");
                        if self.pump(link, &mut rx).await.is_none() {
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

    /// Connects to the peer (with TLS when the node has it, Nagle off) and upgrades
    /// `/v1/peer?version=V` to a WebSocket, keeping what the peer sent behind its answer
    /// (its handshake challenge, [`crate::wsopen`]).
    async fn open(&self) -> Result<PeerFrames<Stream>, String> {
        let tcp = TcpStream::connect(&self.addr).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let stream = match &self.tls {
            Some(config) => {
                Stream::Rustls(crate::tls::connect(tcp, &self.addr, config.clone()).await?)
            }
            None => Stream::Plain(tcp),
        };
        let path = format!("/v1/peer?version={}", wire::VERSION);
        let (stream, early) =
            crate::wsopen::open(stream, &self.addr, &path).await.map_err(|e| e.to_string())?;
        Ok(PeerFrames::connecting(stream, early, self.max_frame))
    }

    /// Sends queued frames until the connection fails (`Some`) or the node stops
    /// (`None`). Every frame queued meanwhile goes out with one write; nothing more is
    /// taken from the queue while the socket has not taken the last batch, so a peer that
    /// reads slowly fills the queue, which then drops.
    async fn pump(
        &self,
        mut link: PeerFrames<Stream>,
        rx: &mut mpsc::Receiver<Queued>,
    ) -> Option<()> {
        let mut batch = Vec::with_capacity(super::ws::WRITE_BATCH);
        // The budget shares of the frames framed but not yet written, and their number.
        let mut charges: Vec<Charge> = Vec::with_capacity(super::ws::WRITE_BATCH);
        let counters = &self.counters;
        loop {
            let turn = std::future::poll_fn(|cx| {
                match link.writer.poll_send(cx, &mut link.io) {
                    Poll::Ready(Err(_)) => return Poll::Ready(Turn::Failed),
                    Poll::Ready(Ok(())) => {
                        // In the socket's hands: sent, and the bytes go back to the budgets.
                        if !charges.is_empty() {
                            counters.peer_frames_out.fetch_add(charges.len() as u64, Relaxed);
                            charges.clear();
                        }
                        if let Poll::Ready(n) =
                            rx.poll_recv_many(cx, &mut batch, super::ws::WRITE_BATCH)
                        {
                            return Poll::Ready(Turn::Queued(n));
                        }
                    }
                    Poll::Pending => {}
                }
                // What the peer sends here is pings and a close: not read while a batch
                // waits to be written, so pongs cannot pile up behind a peer that sends
                // without reading.
                if !link.writer.is_empty() {
                    return Poll::Pending;
                }
                match link.reader.poll_fill(cx, &mut link.io) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Turn::Failed),
                    Poll::Ready(Ok(_)) => Poll::Ready(Turn::Read),
                    Poll::Pending => Poll::Pending,
                }
            });
            match turn.await {
                Turn::Queued(0) => return None,
                Turn::Queued(_) => {
                    for Queued { msg, charge } in batch.drain(..) {
                        let framed =
                            link.writer.binary(|out| wire::encode_into(&msg, self.max_frame, out));
                        if let Err(e) = framed {
                            tracing::warn!(peer = %self.addr, error = %e, "frame not sent");
                            self.counters.peer_frames_dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        charges.push(charge);
                    }
                }
                Turn::Read => loop {
                    match link.reader.next_frame() {
                        Ok(None) => break,
                        Ok(Some(Incoming::Ping(payload))) => link.writer.pong(payload),
                        Ok(Some(Incoming::Close(_))) | Err(_) => return Some(()),
                        Ok(Some(_)) => {}
                    }
                },
                Turn::Failed => {
                    // Framed, counted as sent, but never written.
                    let lost = charges.len() as u64;
                    self.counters.peer_frames_dropped.fetch_add(lost, Ordering::Relaxed);
                    return Some(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::peer_auth;
    use bytes::Bytes;
    use dhrt_core::{entry::Entry, proto::ReplicaMessage, NodeId, Timestamp};
    use futures_util::{SinkExt, StreamExt};
    use tokio::{net::TcpListener, sync::oneshot};
    use tokio_tungstenite::tungstenite;

    /// The next binary frame of a link, read by tungstenite (the test's peer is another
    /// WebSocket implementation than the node's).
    async fn next_binary<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<Vec<u8>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        loop {
            match ws.next().await? {
                Ok(tungstenite::Message::Binary(bytes)) => return Some(bytes.to_vec()),
                Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => {}
                _ => return None,
            }
        }
    }

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
            while let Some(frame) = next_binary(&mut ws).await {
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
