//! Client WebSocket connections and peer links handed to the node thread.
//!
//! Every connection is accepted, and its request head read, on the server's
//! multi-threaded runtime ([`super::accept`]): the connection cap, the head deadline, the
//! `Origin` check and token checks all run there, as for any route. A client's WebSocket
//! upgrade (`GET /v1/ws`) then moves the socket itself to the node thread's runtime
//! ([`super::driver`]): once the `101 Switching Protocols` answer is written, the TCP
//! socket leaves the multi-threaded runtime's reactor, joins the node thread's, and the
//! connection — reading, decoding, the node's work, encoding, writing — is served on the
//! thread that owns the data. No request or answer crosses a thread (as in Redis): when
//! every batch crossed from a tokio worker to the node thread and back, a fifth of a
//! small request's CPU went to switching between them (docs/benchmarks.md).
//!
//! What the socket carries with it ([`Metered`]'s parts) moves too: its connection
//! slot, its read meter, and the bytes hyper had read past the request head (a client
//! may send its first frames without waiting for the `101`). A connection over TLS
//! stays where it is: its TLS session lives in the stream hyper holds, so it is served
//! on the multi-threaded runtime, through the node's inbox as before. A peer link's
//! upgrade (`GET /v1/peer`) moves the same way ([`super::ws::peer`]).
//!
//! The upgrade itself is [`Upgrade`]: the same checks and answer as axum's
//! `WebSocketUpgrade` (RFC 6455 §4.2), written out because the socket must be taken
//! back from hyper by its concrete type.

use super::{read_budget::Metered, AppState};
use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use hyper_util::rt::TokioIo;
use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The socket hyper serves a plain (not TLS) connection on, as [`super::accept`] wraps it.
type PlainIo = TokioIo<Metered<TcpStream>>;

/// A client connection once its upgrade is answered: the byte stream its WebSocket
/// frames travel on ([`crate::wsframe`]), and any bytes the client sent right behind the
/// upgrade request (hyper read them with the request head).
pub struct ClientSocket {
    /// The stream.
    pub io: ClientIo,
    /// Bytes already read from it.
    pub early: Vec<u8>,
}

/// How a node writes the answers of the plain client sockets moved to its thread
/// (`--client-io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketIo {
    /// io_uring ([`super::ring`]) when the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring, or the node does not start.
    Uring,
    /// tokio's epoll reactor.
    Epoll,
}

impl std::str::FromStr for SocketIo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SocketIo::Auto),
            "uring" | "io-uring" | "io_uring" => Ok(SocketIo::Uring),
            "epoll" => Ok(SocketIo::Epoll),
            other => Err(format!("client-io must be auto, uring or epoll, not {other:?}")),
        }
    }
}

/// The byte stream under a client's WebSocket.
pub enum ClientIo {
    /// A plain TCP socket, moved to the node thread's runtime.
    Local(Metered<TcpStream>),
    /// A plain TCP socket moved to the node thread, its answers written through the
    /// thread's io_uring.
    #[cfg(target_os = "linux")]
    Ring(Metered<super::ring::RingSocket>),
    /// What hyper upgraded (a TLS stream), served where it was accepted.
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
}

/// A WebSocket upgrade request (`GET` with `Connection: upgrade`, `Upgrade: websocket`,
/// `Sec-WebSocket-Version: 13` and a key), checked as axum's `WebSocketUpgrade` checks
/// it (with the same reasons); a request that is not one is refused with a
/// [`NotAnUpgrade`].
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

/// Why a request is no WebSocket upgrade: its status and a reason.
#[derive(Debug)]
pub struct NotAnUpgrade {
    /// `405`, `400`, or `426` (another WebSocket version).
    pub status: StatusCode,
    /// What was wrong.
    pub reason: &'static str,
}

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        (self.status, self.reason).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let refuse = |status, reason| Err(NotAnUpgrade { status, reason });
        if parts.method != Method::GET {
            return refuse(StatusCode::METHOD_NOT_ALLOWED, "Request method must be `GET`");
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return refuse(StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'");
        }
        if !is(&parts.headers, header::UPGRADE, "websocket") {
            return refuse(StatusCode::BAD_REQUEST, "`Upgrade` header did not include 'websocket'");
        }
        if !is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return refuse(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Version` header did not include '13'",
            );
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return refuse(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Key` header missing");
        };
        let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return refuse(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            );
        };
        Ok(Upgrade { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers `101 Switching Protocols` and, once hyper lets go of the connection,
    /// runs `serve` on its WebSocket: on the node thread for a plain socket, here for a
    /// TLS one (see the module docs).
    pub fn serve<F, Fut>(self, state: &AppState, serve: F) -> Response
    where
        F: FnOnce(ClientSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let node = state.node_runtime.clone();
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            match upgraded.downcast::<PlainIo>() {
                Ok(parts) => {
                    let (tcp, metered) = parts.io.into_inner().into_parts();
                    let early = parts.read_buf.to_vec();
                    let std = match tcp.into_std() {
                        Ok(std) => std,
                        Err(e) => {
                            tracing::debug!(error = %e, "a client socket could not be moved");
                            return;
                        }
                    };
                    // The metered reader's slot and meter travel with the socket.
                    node.spawn(async move {
                        let tcp = match TcpStream::from_std(std) {
                            Ok(tcp) => tcp,
                            Err(e) => {
                                tracing::debug!(error = %e, "a client socket could not be moved");
                                return;
                            }
                        };
                        // Its answers through the node thread's ring, when it has one.
                        #[cfg(target_os = "linux")]
                        if let Some(ring) = super::ring::Ring::local() {
                            let sock = ring.adopt(tcp);
                            let io = ClientIo::Ring(Metered::from_parts(sock, metered));
                            serve(ClientSocket { io, early }).await;
                            return;
                        }
                        let io = ClientIo::Local(Metered::from_parts(tcp, metered));
                        serve(ClientSocket { io, early }).await;
                    });
                }
                Err(upgraded) => {
                    let io = ClientIo::Upgraded(TokioIo::new(upgraded));
                    serve(ClientSocket { io, early: Vec::new() }).await;
                }
            }
        });
        let accept = derive_accept_key(self.key.as_bytes());
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
            .header(header::UPGRADE, HeaderValue::from_static("websocket"))
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

/// Whether header `name` is `value` (ASCII case aside).
fn is(headers: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    headers.get(&name).is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

/// Whether header `name`, a comma-separated list, holds `token` (ASCII case aside).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(&name).iter().any(|h| {
        h.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Local(io) => Pin::new(io).poll_read(cx, buf),
            #[cfg(target_os = "linux")]
            ClientIo::Ring(io) => Pin::new(io).poll_read(cx, buf),
            ClientIo::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Local(io) => Pin::new(io).poll_write(cx, buf),
            #[cfg(target_os = "linux")]
            ClientIo::Ring(io) => Pin::new(io).poll_write(cx, buf),
            ClientIo::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Local(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            #[cfg(target_os = "linux")]
            ClientIo::Ring(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            ClientIo::Upgraded(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Local(io) => io.is_write_vectored(),
            #[cfg(target_os = "linux")]
            ClientIo::Ring(io) => io.is_write_vectored(),
            ClientIo::Upgraded(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Local(io) => Pin::new(io).poll_flush(cx),
            #[cfg(target_os = "linux")]
            ClientIo::Ring(io) => Pin::new(io).poll_flush(cx),
            ClientIo::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Local(io) => Pin::new(io).poll_shutdown(cx),
            #[cfg(target_os = "linux")]
            ClientIo::Ring(io) => Pin::new(io).poll_shutdown(cx),
            ClientIo::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
