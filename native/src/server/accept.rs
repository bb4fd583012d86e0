//! The node's accept loop: a cap on connections and a deadline for request heads.
//!
//! Every connection to the port — a client's WebSocket, a peer link, an HTTP request,
//! the dashboard; and every connection to the Redis port ([`super::resp`]) — takes one of [`super::limits::Limits::max_connections`] slots when
//! it is accepted and gives it back when it closes (a WebSocket keeps its slot for its
//! whole life: the slot travels with the socket through the upgrade). At the cap a new
//! connection is closed at once: counted (`dhrt_connections_refused_total`) and logged,
//! at most once every few seconds however many are refused.
//!
//! Each connection is served by hyper's HTTP/1 server with tokio's timer, so a request
//! head (a WebSocket upgrade is one) that is not complete within
//! [`super::limits::Limits::header_timeout`] closes the connection — as does an idle
//! keep-alive connection after that long. TLS handshakes have their own deadline and
//! bound ([`crate::tls::TlsListener`]) before a connection gets here. Open connections
//! end when the server stops.

use super::{
    read_budget::{Metered, ReadMeter},
    stats::Counters,
    AppState,
};
use axum::{body::Body, extract::ConnectInfo, Router};
use hyper::{body::Incoming, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::OwnedSemaphorePermit,
};
use tower::ServiceExt;

/// How often, at most, refused connections are logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections from `listener` and serves `app` on each until the task is
/// dropped; open connections end when `state` stops.
pub async fn serve<L>(mut listener: L, app: Router, state: AppState)
where
    L: axum::serve::Listener<Addr = crate::tls::Remote>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = state.limits.clone();
    let slots = state.connection_slots.clone();
    let mut refusals = Refusals::default();
    loop {
        let (io, remote) = listener.accept().await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            state.counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            refusals.log(limits.max_connections, remote.addr);
            drop(io);
            continue;
        };
        // What the connection reads counts against the budget of messages being read
        // until its reader settles it: at each answered request here, at each batch
        // of whole messages in a WebSocket's loop (which finds the meter in the
        // upgrade request's extensions).
        let meter = ReadMeter::default();
        let io = Metered::new(io, state.read_budget.clone(), meter.clone())
            .keeping(Slot::new(slot, state.counters.clone()));
        let (app, state) = (app.clone(), state.clone());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                req.extensions_mut().insert(meter.clone());
                let (app, meter) = (app.clone(), meter.clone());
                async move {
                    let answer = app.oneshot(req.map(Body::new)).await;
                    meter.settle();
                    answer
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let conn = http.serve_connection(TokioIo::new(io), service).with_upgrades();
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(remote = %remote.addr, error = %e, "connection ended");
                    }
                }
                () = state.stopped() => {}
            }
        });
    }
}

/// Logs refused connections without flooding the log.
#[derive(Default)]
pub struct Refusals {
    last: Option<Instant>,
    since: u64,
}

impl Refusals {
    /// Counts a refused connection from `from`, and logs it unless one was logged in
    /// the last few seconds.
    pub fn log(&mut self, cap: usize, from: std::net::SocketAddr) {
        self.since += 1;
        if self.last.is_some_and(|t| t.elapsed() < REFUSAL_LOG_EVERY) {
            return;
        }
        tracing::warn!(
            cap,
            refused = self.since,
            last_from = %from,
            "connection refused: the node is at its connection cap (max-connections)"
        );
        self.last = Some(Instant::now());
        self.since = 0;
    }
}

/// A connection's slot under the cap, counted open until it is dropped (with its
/// connection: [`Metered::keeping`]).
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl Slot {
    /// Counts `permit`'s connection open.
    pub fn new(permit: OwnedSemaphorePermit, counters: Arc<Counters>) -> Self {
        counters.connections.fetch_add(1, Ordering::Relaxed);
        Slot { _permit: permit, counters }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.connections.fetch_sub(1, Ordering::Relaxed);
    }
}
