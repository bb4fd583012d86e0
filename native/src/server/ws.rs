//! The WebSocket endpoints: `/v1/ws` for clients, `/v1/peer` for other nodes.
//!
//! Both carry frames of [`dhrt_core::wire`] (a version byte, then MessagePack) as
//! binary WebSocket messages. A client sends [`Message::Request`]s and receives
//! [`Message::Response`]s — answers in any order, paired by request id, and watch
//! events — see `docs/protocol.md`. A bad frame (malformed, oversized, another
//! version, text instead of binary) is answered with an error response whose id is 0,
//! the connection stays open and nothing else is affected. When the node requires
//! tokens, a client authenticates with `Authorization: Bearer` on the upgrade or with
//! `Op::Auth` first, and every request is checked against its grant before it reaches
//! the node ([`super::auth`]). A client connection decodes [`ClientMessage`]s only and
//! a peer link [`PeerMessage`]s only, so neither can speak the other's protocol. A peer
//! gives its protocol version in the query string (`?version=V`; another one is refused
//! with HTTP 400 before the upgrade), then proves the cluster secret and its node id in
//! the peer handshake ([`super::peer_auth`]); nothing of a link reaches the node before
//! that.

use super::peer_auth::HandshakeError;
use super::peer_frames::PeerFrames;
use super::{
    auth::{self, session::Session},
    collections,
    desk::Desk,
    driver::Input,
    driver::Sink,
    handoff::{ClientIo, ClientSocket, Upgrade},
    read_budget::ReadMeter,
    AppState,
};
use crate::wsframe::{self, FrameReader, FrameWriter, Incoming};
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use dhrt_core::{
    node::ClientId,
    proto::{
        client::{ErrorCode, Op, Reply},
        ClientMessage, ClientRequest, ClientResponse, Message, PeerMessage,
    },
    wire::{self, WireError},
    NodeId,
};
use serde::Deserialize;
use std::{
    sync::{atomic::Ordering, Arc},
    task::Poll,
};
use tokio::sync::mpsc;

use super::outbox::{self, Parcel};

/// How long a connection closed for lagging may take to receive its close frame.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Most queued frames a writer sends in one flush.
pub const WRITE_BATCH: usize = 256;

/// `GET /v1/ws`: a client connection.
///
/// The WebSocket layer accepts messages up to the frame limit: a larger one closes the
/// connection (close code 1009, "message too big") as soon as its header says how big
/// it is, before it is read, so an oversized message never takes memory.
///
/// A token in `Authorization: Bearer` is checked before the upgrade (401 when it is
/// refused); without one, the connection starts unauthenticated and, when the node
/// requires tokens, must send [`Op::Auth`] before anything else is served.
pub async fn client(
    upgrade: Upgrade,
    headers: HeaderMap,
    State(state): State<AppState>,
    meter: ReadMeter,
) -> Response {
    let session = match auth::bearer(&headers) {
        Some(token) if state.tokens.required() => {
            match state.tokens.authenticate(&state, token).await {
                Ok((presented, grant)) => {
                    Session { presented: Some(presented), grant: Some(grant) }
                }
                Err(refusal) => return auth::challenge(refusal),
            }
        }
        _ => Session::default(),
    };
    let serving = state.clone();
    upgrade.serve(&state, move |socket| serve_client(socket, serving, session, meter))
}

/// Sends the connection's own answers from elsewhere (token management runs in its
/// own task): few and small, not counted against its output limit.
fn answer(tx: &mpsc::UnboundedSender<Parcel>, resps: Vec<ClientResponse>) {
    let _ = tx.send(Parcel { resps, bytes: 0 });
}

async fn serve_client(socket: ClientSocket, state: AppState, session: Session, meter: ReadMeter) {
    let client = state.next_client();
    let (outbox, rx, tx) = outbox::outbox(state.output.clone());
    // A socket on the node thread hands its input to the node at the desk; a TLS one,
    // served elsewhere, through the inbox.
    let desk = match socket.io {
        ClientIo::Local(_) => state.desk.get().cloned(),
        #[cfg(target_os = "linux")]
        ClientIo::Ring(_) => state.desk.get().cloned(),
        ClientIo::Upgraded(_) => None,
    };
    let to_node = |input| match &desk {
        Some(desk) => desk.hand(input),
        None => state.submit(input),
    };
    if !to_node(Input::Open { client, sink: Sink::Conn(outbox) }) {
        return;
    }
    state.counters.clients.fetch_add(1, Ordering::Relaxed);
    let max = state.max_frame;
    let conn = Conn {
        client,
        reader: FrameReader::new(max, socket.early),
        writer: FrameWriter::server(),
        io: socket.io,
        session,
        meter,
        tx,
        reqs: Vec::with_capacity(16),
        desk: desk.clone(),
        answers: Vec::new(),
        owed: 0,
        unbudgeted: 0,
        max,
        state: state.clone(),
    };
    tokio::select! {
        biased;
        () = conn.run(rx) => {}
        () = state.stopped() => {}
    }
    state.counters.clients.fetch_sub(1, Ordering::Relaxed);
    to_node(Input::Gone(client));
}

/// A client connection: its socket, its frames both ways, and who it speaks for.
///
/// One task serves it (on the node thread for a plain socket): it reads the frames that
/// arrived, hands their requests to the node, and writes the answers the node queued,
/// whichever is ready first, so a client that sends without reading still has its
/// requests read (until its unread answers pass the output limit, [`super::outbox`]).
struct Conn {
    client: ClientId,
    io: ClientIo,
    reader: FrameReader,
    writer: FrameWriter,
    session: Session,
    meter: ReadMeter,
    /// The connection's own sender of answers (for token management's task).
    tx: mpsc::UnboundedSender<Parcel>,
    /// Requests gathered for the node.
    reqs: Vec<ClientRequest>,
    /// Where the node takes them at once, for a socket on the node thread
    /// ([`super::desk`]).
    desk: Option<Arc<dyn Desk>>,
    /// The answers the desk handed back (kept for its allocation).
    answers: Vec<Parcel>,
    /// Bytes of the output budget framed but not yet written.
    owed: usize,
    /// Bytes framed outside the output budget — pongs, refusals of bad frames, the
    /// answers of token and collection management — since the writer was last empty. At
    /// [`READ_PAUSE_BYTES`] the connection is not read until they are written: a client
    /// that sends without reading holds a bounded buffer, and TCP holds back the rest.
    unbudgeted: usize,
    max: usize,
    state: AppState,
}

/// Bytes framed outside the output budget at which a connection stops being read until
/// its writer has drained (see `Conn::unbudgeted`).
const READ_PAUSE_BYTES: usize = 256 * 1024;

/// What a connection does next.
enum Event {
    /// Bytes arrived.
    Read,
    /// The node queued answers.
    Answers,
    /// The node closed the connection, for this reason.
    ClosedByNode(String),
    /// Time to look the connection's token up again.
    Recheck,
    /// The socket ended, failed, or the node let the connection go.
    Gone,
}

impl Conn {
    async fn run(mut self, mut rx: outbox::OutboxReceiver) {
        let required = self.state.tokens.required();
        // With tokens required, an authenticated connection looks its token up again
        // this often even when it sends nothing (its watches keep delivering): a revoked
        // token's connection is closed.
        let mut recheck = tokio::time::interval(auth::FRESH);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut parcels = Vec::with_capacity(WRITE_BATCH);
        // Frames the client sent right behind its upgrade request are already here.
        let mut event = Event::Read;
        loop {
            match event {
                Event::Read => {
                    if let Err(why) = self.take_frames().await {
                        if let Some((code, reason)) = why {
                            self.writer.close(code, reason);
                        }
                        self.close().await;
                        return;
                    }
                }
                Event::Answers => {
                    self.frame_parcels(&mut parcels);
                }
                Event::ClosedByNode(reason) => {
                    // Disconnected by the node (it left too much unread): say why, if the
                    // client reads at all.
                    self.writer.close(wsframe::POLICY, &reason);
                    self.close().await;
                    return;
                }
                Event::Recheck => {
                    if let Err(refusal) = self.session.refresh(&self.state).await {
                        if refusal.code == ErrorCode::Unauthorized {
                            self.frame_unbudgeted(ClientResponse::error(
                                0,
                                refusal.code,
                                refusal.message,
                            ));
                            self.close().await;
                            return;
                        }
                    }
                }
                Event::Gone => return,
            }
            event = std::future::poll_fn(|cx| {
                // Write first: what is framed leaves before more is taken in.
                // Everything framed is written: the output budget gets its bytes back.
                match self.writer.poll_send(cx, &mut self.io) {
                    Poll::Ready(Err(_)) => return Poll::Ready(Event::Gone),
                    Poll::Ready(Ok(())) => {
                        self.unbudgeted = 0;
                        if self.owed > 0 {
                            rx.sent(std::mem::take(&mut self.owed));
                        }
                    }
                    Poll::Pending => {}
                }
                if let Poll::Ready(n) = rx.poll_recv_many(cx, &mut parcels, WRITE_BATCH) {
                    if n == 0 {
                        return Poll::Ready(Event::Gone);
                    }
                    // Closed by the node: it sent a parcel to say so.
                    return Poll::Ready(match rx.closed() {
                        Some(reason) => Event::ClosedByNode(reason),
                        None => Event::Answers,
                    });
                }
                // Not read while what it is owed outside the budget waits to be written.
                let read = (self.unbudgeted < READ_PAUSE_BYTES)
                    .then(|| self.reader.poll_fill(cx, &mut self.io));
                match read {
                    Some(Poll::Ready(Ok(0)) | Poll::Ready(Err(_))) => {
                        return Poll::Ready(Event::Gone)
                    }
                    Some(Poll::Ready(Ok(_))) => return Poll::Ready(Event::Read),
                    _ => {}
                }
                if required && self.session.presented.is_some() && recheck.poll_tick(cx).is_ready()
                {
                    return Poll::Ready(Event::Recheck);
                }
                Poll::Pending
            })
            .await;
        }
    }

    /// Frames the answers of `parcels`, owing the bytes they were counted for until
    /// they are written.
    fn frame_parcels(&mut self, parcels: &mut Vec<Parcel>) {
        for Parcel { resps, bytes } in parcels.drain(..) {
            self.owed += bytes;
            let before = self.writer.unwritten().len();
            for resp in resps {
                self.frame(resp);
            }
            if bytes == 0 {
                self.unbudgeted += self.writer.unwritten().len() - before;
            }
        }
    }

    /// Frames an answer the output budget does not count (see [`Conn::unbudgeted`]).
    fn frame_unbudgeted(&mut self, resp: ClientResponse) {
        let before = self.writer.unwritten().len();
        self.frame(resp);
        self.unbudgeted += self.writer.unwritten().len() - before;
    }

    /// Frames one answer (an error saying so when it cannot be sent in one frame).
    fn frame(&mut self, resp: ClientResponse) {
        let max = self.max;
        let id = resp.id;
        let framed =
            self.writer.binary(|out| wire::encode_into(&Message::Response(resp), max, out));
        if let Err(e) = framed {
            let err = ClientResponse::error(id, ErrorCode::TooLarge, e.to_string());
            let _ = self.writer.binary(|out| wire::encode_into(&Message::Response(err), max, out));
        }
    }

    /// Writes what is framed (a close frame last), for at most [`CLOSE_GRACE`]: the
    /// connection is ending.
    async fn close(&mut self) {
        self.writer.send_within(&mut self.io, CLOSE_GRACE).await;
    }

    /// Takes every whole frame that has arrived: requests go to the node thread (at most
    /// [`READ_BATCH`] a time, one channel message each batch), pings are answered, bad
    /// messages refused. `Err` when the connection ends: with a close frame to send, or
    /// `None` when the client closed it (its close is answered here).
    async fn take_frames(&mut self) -> Result<(), Option<(u16, &'static str)>> {
        let required = self.state.tokens.required();
        // The grant is looked up once per read (the cache answers unless stale).
        let mut refused =
            if required { self.session.refresh(&self.state).await.err() } else { None };
        // The bytes of the requests gathered, charged to the inbox budget when handed over.
        let mut read = 0;
        let mut ending = Ok(());
        let mut taken = false;
        loop {
            let next = self.reader.next_frame();
            taken |= matches!(next, Ok(Some(_)));
            let frame = match next {
                Ok(None) => break,
                Ok(Some(Incoming::Binary(bytes))) => {
                    read += bytes.len();
                    decode_request(bytes, self.max)
                }
                Ok(Some(Incoming::Text)) => Frame::Refused(
                    ErrorCode::InvalidInput,
                    "text frames are not understood: send binary frames (a version byte, then \
                     MessagePack)"
                        .into(),
                ),
                Ok(Some(Incoming::Ping(payload))) => {
                    let before = self.writer.unwritten().len();
                    self.writer.pong(payload);
                    self.unbudgeted += self.writer.unwritten().len() - before;
                    continue;
                }
                Ok(Some(Incoming::Pong)) => continue,
                Ok(Some(Incoming::Close(code))) => {
                    // Answered with the same code, as RFC 6455 §5.5.1 asks.
                    let code = code.filter(|&c| c != 1005 && c != 1006).unwrap_or(wsframe::NORMAL);
                    self.writer.close(code, "");
                    ending = Err(None);
                    break;
                }
                Err(violation) => {
                    tracing::debug!(reason = violation.reason, "client broke the protocol");
                    ending = Err(Some((violation.code, violation.reason)));
                    break;
                }
            };
            match frame {
                Frame::Request(ClientRequest { id, op: Op::Auth { token }, .. }) => {
                    let reply = if required {
                        match self.state.tokens.authenticate(&self.state, &token.0).await {
                            Ok((presented, grant)) => {
                                self.session =
                                    Session { presented: Some(presented), grant: Some(grant) };
                                refused = None;
                                Reply::Ok
                            }
                            Err(refusal) => {
                                self.session = Session::default();
                                refused = Some(refusal.clone());
                                refusal.reply()
                            }
                        }
                    } else {
                        Reply::Ok
                    };
                    self.frame_unbudgeted(ClientResponse { id, result: reply, ts: None });
                }
                Frame::Request(req) => match self.session.check(&self.state, &req.op, &refused) {
                    Err(refusal) => {
                        self.frame_unbudgeted(ClientResponse::error(
                            req.id,
                            refusal.code,
                            refusal.message,
                        ));
                    }
                    Ok(())
                        if matches!(
                            req.op,
                            Op::CollectionCreate { .. }
                                | Op::CollectionAlter { .. }
                                | Op::CollectionShow { .. }
                                | Op::CollectionList
                                | Op::CollectionDrop { .. }
                        ) =>
                    {
                        let (state, tx) = (self.state.clone(), self.tx.clone());
                        let grant = self.session.grant.clone();
                        tokio::spawn(async move {
                            let covers = |c: &str| grant.as_ref().is_none_or(|g| g.covers(c));
                            let result = collections::run(&state, req.op, covers).await;
                            answer(&tx, vec![ClientResponse { id: req.id, result, ts: None }]);
                        });
                    }
                    Ok(())
                        if matches!(
                            req.op,
                            Op::TokenCreate { .. } | Op::TokenList | Op::TokenRevoke { .. }
                        ) =>
                    {
                        let (state, tx) = (self.state.clone(), self.tx.clone());
                        tokio::spawn(async move {
                            let result = auth::manage::run(&state, req.op).await;
                            answer(&tx, vec![ClientResponse { id: req.id, result, ts: None }]);
                        });
                    }
                    Ok(()) => {
                        self.reqs.push(req);
                        if self.reqs.len() >= READ_BATCH && !self.hand_over(&mut read).await {
                            return Err(None);
                        }
                    }
                },
                Frame::Refused(code, why) => {
                    // What came before it is handed over first, so answers keep its order.
                    if !self.hand_over(&mut read).await {
                        return Err(None);
                    }
                    self.state.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    self.frame_unbudgeted(ClientResponse::error(0, code, why));
                }
            }
        }
        if !self.hand_over(&mut read).await {
            return Err(None);
        }
        // The messages taken are whole (and now charged to the inbox): they no longer
        // count as being read, only the start of the next one does
        // ([`super::read_budget`]).
        if taken {
            self.meter.settle_but(self.reader.unread());
        }
        ending
    }

    /// Hands the requests gathered to the node: at the desk, handled before this
    /// returns; else through the inbox, charged `read` bytes of its budget, waiting
    /// while the node thread is behind (this socket is not read meanwhile). False once
    /// the node has stopped.
    async fn hand_over(&mut self, read: &mut usize) -> bool {
        if self.reqs.is_empty() {
            return true;
        }
        if let Some(desk) = self.desk.clone() {
            *read = 0;
            let mut answers = std::mem::take(&mut self.answers);
            let served = desk.requests(self.client, &mut self.reqs, &mut answers);
            self.frame_parcels(&mut answers);
            self.answers = answers;
            return served;
        }
        let batch = Input::Requests { client: self.client, reqs: take_batch(&mut self.reqs) };
        self.state.submit_charged(batch, std::mem::take(read)).await
    }
}

/// Most frames a client connection hands to the node thread at once.
pub const READ_BATCH: usize = 256;

/// Takes the gathered batch, leaving an empty one as large as it was (so the next batch
/// does not grow from nothing).
fn take_batch<T>(batch: &mut Vec<T>) -> Vec<T> {
    let fresh = Vec::with_capacity(batch.len());
    std::mem::replace(batch, fresh)
}

/// What one message from a client connection amounts to.
enum Frame {
    /// A request for the node.
    Request(dhrt_core::proto::ClientRequest),
    /// A bad message: answered with this error (id 0); the connection stays open.
    Refused(ErrorCode, String),
}

/// Decodes a client's binary message (`Get`, `Set` and `Del` by hand, see
/// [`wire::decode_request`]).
fn decode_request(bytes: &[u8], max: usize) -> Frame {
    match wire::decode_request(bytes, max) {
        Ok(ClientMessage::Request(req)) => Frame::Request(req),
        Err(WireError::Malformed(why)) if why.contains("unknown variant") => Frame::Refused(
            ErrorCode::InvalidInput,
            format!("a client may only send requests ({why})"),
        ),
        Err(e) => Frame::Refused(wire_error_code(&e), e.to_string()),
    }
}

/// Hands a peer link's messages to the node, leaving `msgs` empty: at the desk, handled
/// before this returns; else through the inbox, charged the `read` bytes they took.
/// False once the node has stopped.
async fn hand_peer(
    state: &AppState,
    desk: Option<&dyn Desk>,
    from: NodeId,
    msgs: &mut Vec<Message>,
    read: &mut usize,
) -> bool {
    let input = Input::Peer { from, msgs: std::mem::take(msgs) };
    let bytes = std::mem::take(read);
    match desk {
        Some(desk) => desk.hand(input),
        None => state.submit_charged(input, bytes).await,
    }
}

/// The error code of a frame that could not be decoded.
pub fn wire_error_code(e: &WireError) -> ErrorCode {
    match e {
        WireError::TooLarge { .. } => ErrorCode::TooLarge,
        WireError::UnsupportedVersion { .. } => ErrorCode::Unsupported,
        _ => ErrorCode::InvalidInput,
    }
}

/// The query string of a peer link: the protocol version it speaks. (Who it is, it
/// proves in the handshake; a `node` parameter, as older nodes send, is ignored.)
#[derive(Debug, Deserialize)]
pub struct PeerHello {
    version: u8,
}

/// `GET /v1/peer?version=V`: a link another node opened to send to this one.
///
/// A plain link moves to the node thread once upgraded, as a client's does
/// ([`super::handoff`]): its frames are read and decoded there and handed to the node at
/// the desk, so a peer's message crosses no thread. A TLS link is served where it was
/// accepted and reaches the node through the inbox.
pub fn peer(upgrade: Upgrade, hello: PeerHello, state: AppState, meter: ReadMeter) -> Response {
    if hello.version != wire::VERSION {
        let msg = format!(
            "peer speaks protocol version {}, this node speaks {}; upgrade the older node",
            hello.version,
            wire::VERSION
        );
        return (StatusCode::BAD_REQUEST, msg).into_response();
    }
    let serving = state.clone();
    upgrade.serve(&state, move |socket| serve_peer(socket, serving, meter))
}

async fn serve_peer(socket: ClientSocket, state: AppState, meter: ReadMeter) {
    let desk = match socket.io {
        ClientIo::Upgraded(_) => None,
        _ => state.desk.get().cloned(),
    };
    let mut link = PeerFrames::accepting(socket.io, socket.early, state.max_frame);
    let serve = async {
        match link.accept(&state.peer_credentials).await {
            Ok(from) => read_peer(link, from, &state, desk, &meter).await,
            Err(e @ (HandshakeError::Closed | HandshakeError::Timeout)) => {
                tracing::debug!(error = %e, "peer handshake failed");
            }
            Err(e) => {
                state.counters.peer_handshakes_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "peer link refused");
            }
        }
    };
    tokio::select! {
        () = serve => {}
        () = state.stopped() => {}
    }
}

/// Reads a link's messages until it closes: every whole frame received is decoded and
/// handed to the node (at most [`READ_BATCH`] at a time) — at the desk, handled before
/// the next read, or through the inbox, waiting while the node thread is behind (the
/// link is not read meanwhile, so the peer's queue for this node fills and drops, as the
/// protocols allow).
async fn read_peer(
    mut link: PeerFrames<ClientIo>,
    from: NodeId,
    state: &AppState,
    desk: Option<Arc<dyn Desk>>,
    meter: &ReadMeter,
) {
    let max = state.max_frame;
    let mut msgs = Vec::new();
    loop {
        let mut read = 0;
        let mut open = true;
        loop {
            match link.reader.next_frame() {
                Ok(None) => break,
                Ok(Some(Incoming::Binary(bytes))) => {
                    read += bytes.len();
                    match wire::decode_with_limit::<PeerMessage>(bytes, max) {
                        Ok(msg) => msgs.push(Message::from(msg)),
                        Err(e) => {
                            state.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(peer = from.0, error = %e, "bad frame from peer");
                        }
                    }
                }
                Ok(Some(Incoming::Ping(payload))) => link.writer.pong(payload),
                Ok(Some(Incoming::Pong)) => {}
                Ok(Some(Incoming::Text)) => {
                    state.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = from.0, "a text frame from a peer: ignored");
                }
                Ok(Some(Incoming::Close(_))) => {
                    link.writer.close(wsframe::NORMAL, "");
                    open = false;
                    break;
                }
                Err(violation) => {
                    tracing::warn!(
                        peer = from.0,
                        reason = violation.reason,
                        "peer broke the protocol"
                    );
                    link.writer.close(violation.code, violation.reason);
                    open = false;
                    break;
                }
            }
            if msgs.len() >= READ_BATCH
                && !hand_peer(state, desk.as_deref(), from, &mut msgs, &mut read).await
            {
                return;
            }
        }
        if !msgs.is_empty() && !hand_peer(state, desk.as_deref(), from, &mut msgs, &mut read).await
        {
            return;
        }
        // Whole messages, handed to the node: no longer being read.
        meter.settle_but(link.reader.unread());
        if !open {
            link.writer.send_within(&mut link.io, CLOSE_GRACE).await;
            return;
        }
        if link.flush().await.is_err() || !matches!(link.fill().await, Ok(1..)) {
            return;
        }
    }
}
