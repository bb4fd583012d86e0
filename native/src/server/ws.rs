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

use super::peer_auth::{self, HandshakeError};
use super::{
    auth::{self, Presented, Refusal},
    driver::Input,
    driver::Sink,
    handoff::{ClientSocket, Upgrade},
    read_budget::ReadMeter,
    AppState,
};
use axum::{
    extract::{
        ws::{Message as WsMessage, WebSocket, WebSocketUpgrade},
        Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use dhrt_core::{
    auth::{check_reserved, Grant},
    proto::{
        client::{ErrorCode, Op, Reply},
        ClientMessage, ClientRequest, ClientResponse, Message, PeerMessage,
    },
    wire::{self, WireError},
    NodeId,
};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::{atomic::Ordering, Arc};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{
    self,
    protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig},
    Message as Tung,
};

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
    let max = state.max_frame;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER);
    let serving = state.clone();
    upgrade.serve(&state, config, move |socket| serve_client(socket, serving, session, meter))
}

/// Who a client connection speaks for.
#[derive(Default)]
struct Session {
    /// The token it presented (hashed).
    presented: Option<Presented>,
    /// Its grant, as last looked up.
    grant: Option<Arc<Grant>>,
}

impl Session {
    /// Looks the connection's grant up again (the cache answers unless it is stale), so
    /// a revoked token stops working on an open connection within seconds.
    async fn refresh(&mut self, state: &AppState) -> Result<(), Refusal> {
        let Some(presented) = &self.presented else {
            self.grant = None;
            return Err(Refusal::unauthorized(auth::NO_TOKEN));
        };
        match state.tokens.grant(state, presented).await {
            Ok(grant) => {
                self.grant = Some(grant);
                Ok(())
            }
            Err(refusal) => {
                self.grant = None;
                Err(refusal)
            }
        }
    }

    /// Whether this connection may run `op`: reserved collections are refused to
    /// everyone; with tokens required, the grant must allow it.
    fn check(&self, state: &AppState, op: &Op, refused: &Option<Refusal>) -> Result<(), Refusal> {
        check_reserved(op).map_err(Refusal::forbidden)?;
        if !state.tokens.required() {
            return Ok(());
        }
        match (&self.grant, refused) {
            (Some(grant), _) => grant.permits(op).map_err(Refusal::forbidden),
            (None, Some(refusal)) => Err(refusal.clone()),
            (None, None) => Err(Refusal::unauthorized(auth::NO_TOKEN)),
        }
    }
}

/// Sends the connection's own answers (auth, refusals): few and small, not counted
/// against its output limit.
fn answer(tx: &mpsc::UnboundedSender<Parcel>, resps: Vec<ClientResponse>) {
    let _ = tx.send(Parcel { resps, bytes: 0 });
}

async fn serve_client(
    socket: ClientSocket,
    state: AppState,
    mut session: Session,
    meter: ReadMeter,
) {
    let client = state.next_client();
    let (outbox, mut rx, tx) = outbox::outbox(state.output.clone());
    if !state.submit(Input::Open { client, sink: Sink::Conn(outbox) }) {
        return;
    }
    state.counters.clients.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let max = state.max_frame;
    let closed = rx.closed();
    let writer = async move {
        // Every answer queued by the time the writer runs leaves in one flush (one write
        // to the socket), not one write each: under pipelining that write was the
        // server's largest cost (docs/benchmarks.md).
        let mut batches = Vec::with_capacity(WRITE_BATCH);
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut batches, WRITE_BATCH) => n,
                reason = closed.reason() => {
                    // Disconnected by the node (it left too much unread): say why, if
                    // the client reads at all.
                    let close = CloseFrame {
                        code: CloseCode::Policy,
                        reason: truncate(&reason, 120).into(),
                    };
                    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Tung::Close(Some(close)))).await;
                    return;
                }
            };
            if n == 0 {
                return;
            }
            let mut sent = 0;
            for Parcel { resps, bytes } in batches.drain(..) {
                sent += bytes;
                for resp in resps {
                    let id = resp.id;
                    let frame =
                        wire::encode_with_limit(&Message::Response(resp), max).or_else(|e| {
                            let err = ClientResponse::error(id, ErrorCode::TooLarge, e.to_string());
                            wire::encode_with_limit(&Message::Response(err), max)
                        });
                    let Ok(frame) = frame else { continue };
                    if sink.feed(Tung::Binary(frame.into())).await.is_err() {
                        return;
                    }
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
            rx.sent(sent);
        }
    };
    let reader_state = state.clone();
    let reader = async move {
        let state = reader_state;
        let required = state.tokens.required();
        let mut reqs = Vec::with_capacity(16);
        // With tokens required, an authenticated connection looks its token up again
        // this often even when it sends nothing (its watches keep delivering): a revoked
        // token's connection is closed.
        let mut recheck = tokio::time::interval(auth::FRESH);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                first = stream.next() => first,
                _ = recheck.tick(), if required && session.presented.is_some() => {
                    if let Err(refusal) = session.refresh(&state).await {
                        if refusal.code == ErrorCode::Unauthorized {
                            answer(&tx, vec![ClientResponse::error(0, refusal.code, refusal.message)]);
                            return;
                        }
                    }
                    continue;
                }
            };
            let Some(first) = first else { return };
            // Take every frame that has already arrived, then hand them to the node
            // thread together: one channel message per read, not one per request.
            let mut next = Some(first);
            let mut taken = 0;
            let mut open = true;
            // The bytes read, charged to the inbox budget when the batch is handed over.
            let mut read = 0;
            // The grant is looked up once per batch (the cache answers unless stale).
            let mut refused = if required { session.refresh(&state).await.err() } else { None };
            while let Some(msg) = next.take() {
                taken += 1;
                if let Ok(Tung::Binary(bytes)) = &msg {
                    read += bytes.len();
                }
                match read_frame(msg, max) {
                    Frame::Request(ClientRequest { id, op: Op::Auth { token }, .. }) => {
                        let reply = if required {
                            match state.tokens.authenticate(&state, &token.0).await {
                                Ok((presented, grant)) => {
                                    session =
                                        Session { presented: Some(presented), grant: Some(grant) };
                                    refused = None;
                                    Reply::Ok
                                }
                                Err(refusal) => {
                                    session = Session::default();
                                    refused = Some(refusal.clone());
                                    refusal.reply()
                                }
                            }
                        } else {
                            Reply::Ok
                        };
                        answer(&tx, vec![ClientResponse { id, result: reply, ts: None }]);
                    }
                    Frame::Request(req) => match session.check(&state, &req.op, &refused) {
                        Err(refusal) => {
                            let refused =
                                ClientResponse::error(req.id, refusal.code, refusal.message);
                            answer(&tx, vec![refused]);
                        }
                        Ok(())
                            if matches!(
                                req.op,
                                Op::TokenCreate { .. } | Op::TokenList | Op::TokenRevoke { .. }
                            ) =>
                        {
                            let (state, tx) = (state.clone(), tx.clone());
                            tokio::spawn(async move {
                                let result = auth::manage::run(&state, req.op).await;
                                answer(&tx, vec![ClientResponse { id: req.id, result, ts: None }]);
                            });
                        }
                        Ok(()) => reqs.push(req),
                    },
                    Frame::Refused(code, why) => {
                        if !reqs.is_empty() {
                            let batch = Input::Requests { client, reqs: take_batch(&mut reqs) };
                            if !state.submit_charged(batch, std::mem::take(&mut read)).await {
                                return;
                            }
                        }
                        state.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                        answer(&tx, vec![ClientResponse::error(0, code, why)]);
                    }
                    Frame::Skip => {}
                    Frame::Closed => open = false,
                }
                if open && taken < READ_BATCH {
                    next = stream.next().now_or_never().flatten();
                }
            }
            if !reqs.is_empty() {
                // Waits while the node thread is behind: this socket is not read meanwhile.
                let batch = Input::Requests { client, reqs: take_batch(&mut reqs) };
                if !state.submit_charged(batch, read).await {
                    return;
                }
            }
            // The messages taken are whole (and now charged to the inbox): they no
            // longer count as being read ([`super::read_budget`]).
            meter.settle();
            if !open {
                return;
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
        () = state.stopped() => {}
    }
    state.counters.clients.fetch_sub(1, Ordering::Relaxed);
    state.submit(Input::Gone(client));
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Bytes a connection reads at a time. The WebSocket library zero-fills its read
/// buffer before each read; its 128 KiB default made that fill a twentieth of a node's
/// time, while pipelined requests arrive a few KiB at a time (docs/benchmarks.md).
pub const READ_BUFFER: usize = 16 * 1024;

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
    /// A bad frame: answered with this error (id 0); the connection stays open.
    Refused(ErrorCode, String),
    /// Nothing to do (ping, pong).
    Skip,
    /// The connection closed or failed.
    Closed,
}

fn read_frame(msg: Result<Tung, tungstenite::Error>, max: usize) -> Frame {
    let msg = match msg {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "client connection failed");
            return Frame::Closed;
        }
    };
    match msg {
        Tung::Binary(bytes) => match wire::decode_with_limit::<ClientMessage>(&bytes, max) {
            Ok(ClientMessage::Request(req)) => Frame::Request(req),
            Err(WireError::Malformed(why)) if why.contains("unknown variant") => Frame::Refused(
                ErrorCode::InvalidInput,
                format!("a client may only send requests ({why})"),
            ),
            Err(e) => Frame::Refused(wire_error_code(&e), e.to_string()),
        },
        Tung::Text(_) => Frame::Refused(
            ErrorCode::InvalidInput,
            "text frames are not understood: send binary frames (a version byte, then MessagePack)"
                .into(),
        ),
        Tung::Close(_) => Frame::Closed,
        _ => Frame::Skip,
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
pub async fn peer(
    ws: WebSocketUpgrade,
    Query(hello): Query<PeerHello>,
    State(state): State<AppState>,
    meter: ReadMeter,
) -> Response {
    if hello.version != wire::VERSION {
        let msg = format!(
            "peer speaks protocol version {}, this node speaks {}; upgrade the older node",
            hello.version,
            wire::VERSION
        );
        return (StatusCode::BAD_REQUEST, msg).into_response();
    }
    let max = state.max_frame;
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| serve_peer(socket, state, meter))
}

async fn serve_peer(mut socket: WebSocket, state: AppState, meter: ReadMeter) {
    let link = async {
        match accept_handshake(&mut socket, &state).await {
            Ok(from) => read_peer(socket, from, &state, &meter).await,
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
        () = link => {}
        () = state.stopped() => {}
    }
}

/// Runs the accepting side of the peer handshake ([`peer_auth`]): the proven id of the
/// node at the other end, or why not (the other node is told, then the link closes).
async fn accept_handshake(
    socket: &mut WebSocket,
    state: &AppState,
) -> Result<NodeId, HandshakeError> {
    let creds = &state.peer_credentials;
    let steps = async {
        let (challenge, nonce) = creds.challenge()?;
        send_step(socket, &challenge).await?;
        let hello = peer_auth::decode(&next_binary(socket).await?)?;
        let (from, welcome) = creds.check_hello(&nonce, hello)?;
        send_step(socket, &welcome).await?;
        Ok(from)
    };
    let result = tokio::time::timeout(peer_auth::TIMEOUT, steps)
        .await
        .unwrap_or(Err(HandshakeError::Timeout));
    if let Err(e) = &result {
        let refused = peer_auth::Handshake::Refused { reason: e.to_string() };
        let _ = send_step(socket, &refused).await;
    }
    result
}

async fn send_step(
    socket: &mut WebSocket,
    step: &peer_auth::Handshake,
) -> Result<(), HandshakeError> {
    let frame = WsMessage::Binary(peer_auth::encode(step).into());
    socket.send(frame).await.map_err(|_| HandshakeError::Closed)
}

/// The next binary frame of a link in its handshake.
async fn next_binary(socket: &mut WebSocket) -> Result<Vec<u8>, HandshakeError> {
    loop {
        match socket.recv().await {
            Some(Ok(WsMessage::Binary(bytes))) => return Ok(bytes.to_vec()),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            Some(Ok(_)) => {
                return Err(HandshakeError::Protocol("a frame that is not binary".into()))
            }
            Some(Err(_)) | None => return Err(HandshakeError::Closed),
        }
    }
}

async fn read_peer(mut socket: WebSocket, from: NodeId, state: &AppState, meter: &ReadMeter) {
    let max = state.max_frame;
    let mut msgs = Vec::new();
    while let Some(Ok(first)) = socket.recv().await {
        // As for clients: every frame already received goes to the node thread at once.
        let mut next = Some(first);
        let mut open = true;
        let mut read = 0;
        while let Some(frame) = next.take() {
            match frame {
                WsMessage::Binary(bytes) => {
                    read += bytes.len();
                    match wire::decode_with_limit::<PeerMessage>(&bytes, max) {
                        Ok(msg) => msgs.push(Message::from(msg)),
                        Err(e) => {
                            state.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(peer = from.0, error = %e, "bad frame from peer");
                        }
                    }
                }
                WsMessage::Close(_) => open = false,
                _ => {}
            }
            if open && msgs.len() < READ_BATCH {
                next = socket.recv().now_or_never().flatten().and_then(Result::ok);
            }
        }
        // Waits while the node thread is behind: the link is not read meanwhile, so the
        // peer's queue for this node fills and drops, as the protocols allow.
        if !msgs.is_empty()
            && !state
                .submit_charged(Input::Peer { from, msgs: std::mem::take(&mut msgs) }, read)
                .await
        {
            break;
        }
        // Whole messages, charged to the inbox: no longer being read.
        meter.settle();
        if !open {
            break;
        }
    }
}
