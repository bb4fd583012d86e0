//! How much a node lets the outside world make it hold: connections, unread input,
//! unsent output, hints.
//!
//! Every queue between a socket and the node thread is bounded, so no client or peer —
//! slow, broken or hostile — can grow a node's memory without bound:
//!
//! - **Connections** ([`Limits::max_connections`]): clients and peers together, counted
//!   from the moment the port accepts a connection until it closes ([`super::accept`]).
//!   Over the cap a new connection is closed at once, logged and counted.
//! - **Unfinished handshakes** ([`Limits::header_timeout`],
//!   [`Limits::tls_handshake_timeout`]): a connection that does not complete its TLS
//!   handshake, or the headers of an HTTP request (a WebSocket upgrade is one), in time
//!   is closed; so is an idle HTTP keep-alive connection after the same time.
//! - **Messages being read** ([`Limits::read_bytes`], [`super::read_budget`]): past a
//!   small allowance per connection, unfinished messages are read in a few lanes of one
//!   largest message each; a connection waiting for a lane is not read.
//! - **Input in flight to the node thread** ([`Limits::inbox_bytes`], [`super::inbox`]):
//!   socket readers take a share of a byte budget before handing what they read to the
//!   node thread, which gives it back once it took the input. A full budget makes the
//!   readers wait, so their sockets stop being read and TCP slows the senders.
//! - **Output a connection has not read** ([`Limits::output_bytes`],
//!   [`Limits::watch_lag_bytes`], [`Limits::output_total_bytes`], [`super::outbox`]): as
//!   Redis's `client-output-buffer-limit`, a client that does not read its answers is
//!   disconnected; its watches end first, with an error, at a softer bound.
//! - **Frames queued for peers** ([`Limits::peer_queue_bytes`],
//!   [`Limits::peer_queue_total_bytes`], [`super::peer_budget`]): bytes per outbound
//!   peer link and over all links; a frame that does not fit is dropped and counted, as
//!   the protocols allow, and the node thread never waits for a slow peer.
//! - **Hints** ([`dhrt_core::node::hints::HintLimits`]): bytes per replica and in all.
//! - **Requests coordinated** ([`PendingLimits`]): bytes of keys and values, and
//!   count, of the client requests waiting for their replicas; past them new requests
//!   are refused at once with `Unavailable`.
//!
//! The defaults suit a small machine (2 cores, a few GiB free) and are argued in
//! `docs/operations.md` ("Limits and overload"); every one is a `dhrt serve` flag and a
//! config file key.

use dhrt_core::node::{coordinator::PendingLimits, hints::HintLimits};
use std::time::Duration;

/// The bounds a node server keeps (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once on the port, clients and peers together.
    pub max_connections: usize,
    /// How long a connection may take to send a complete HTTP request head (and how
    /// long an HTTP keep-alive connection may stay idle).
    pub header_timeout: Duration,
    /// How long a connection may take to complete its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Bytes of requests and peer frames read from sockets but not yet taken by the
    /// node thread.
    pub inbox_bytes: usize,
    /// Bytes of messages being read — read from sockets, not yet whole — beyond each
    /// connection's small allowance, all connections together ([`super::read_budget`]).
    pub read_bytes: usize,
    /// How long a connection may take to finish a message once it holds a lane of
    /// [`Limits::read_bytes`]; then it is closed.
    pub read_timeout: Duration,
    /// Bytes of answers one connection may leave unread before it is disconnected.
    pub output_bytes: usize,
    /// Bytes of unread answers past which a connection's watches end (with an error),
    /// before it reaches [`Limits::output_bytes`].
    pub watch_lag_bytes: usize,
    /// Bytes of unread answers all connections together may hold; past it, a
    /// connection that already holds some and gets more is disconnected.
    pub output_total_bytes: usize,
    /// Bytes of frames (estimated) queued for one peer and not yet sent; past it, new
    /// frames for that peer are dropped.
    pub peer_queue_bytes: usize,
    /// Bytes of frames (estimated) queued for all peers together.
    pub peer_queue_total_bytes: usize,
    /// Hints kept for other nodes.
    pub hints: HintLimits,
    /// Client requests the node coordinates at once: bytes and count.
    pub pending: PendingLimits,
}

const MIB: usize = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        let hints = HintLimits::default();
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            inbox_bytes: 64 * MIB,
            read_bytes: 256 * MIB,
            read_timeout: Duration::from_secs(60),
            output_bytes: 64 * MIB,
            watch_lag_bytes: 16 * MIB,
            output_total_bytes: 1024 * MIB,
            peer_queue_bytes: 64 * MIB,
            peer_queue_total_bytes: 256 * MIB,
            hints,
            pending: PendingLimits::default(),
        }
    }
}

impl Limits {
    /// The limits made consistent with a node whose largest frame is `max_frame`: one
    /// frame always fits the inbox, a connection's output and a peer link's queue (else
    /// a single large value could never be written, read or replicated), the watch
    /// bound is at most the output bound, a total is at least its part, and nothing is
    /// zero. Says what it changed, for the log.
    pub fn fitted(mut self, max_frame: usize) -> (Self, Vec<String>) {
        let mut changed = Vec::new();
        let mut at_least = |name: &str, value: &mut usize, floor: usize| {
            if *value < floor {
                changed.push(format!("{name} raised from {} to {} bytes", *value, floor));
                *value = floor;
            }
        };
        at_least("the inbox budget", &mut self.inbox_bytes, max_frame);
        at_least("the budget of messages being read", &mut self.read_bytes, max_frame);
        at_least("the output limit", &mut self.output_bytes, max_frame);
        let output = self.output_bytes;
        at_least("the output total", &mut self.output_total_bytes, output);
        at_least("the peer queue budget", &mut self.peer_queue_bytes, max_frame);
        let peer_queue = self.peer_queue_bytes;
        at_least("the peer queue total", &mut self.peer_queue_total_bytes, peer_queue);
        at_least("the connection cap", &mut self.max_connections, 1);
        at_least("the bound on requests in flight", &mut self.pending.max_bytes, max_frame);
        at_least("the count of requests in flight", &mut self.pending.max_requests, 1);
        at_least("the watch lag limit", &mut self.watch_lag_bytes, 1);
        if self.watch_lag_bytes > self.output_bytes {
            changed.push(format!(
                "the watch lag limit lowered from {} to the output limit, {} bytes",
                self.watch_lag_bytes, self.output_bytes
            ));
            self.watch_lag_bytes = self.output_bytes;
        }
        (self, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_limits_always_let_one_frame_through() {
        let small = Limits {
            inbox_bytes: 10,
            read_bytes: 0,
            output_bytes: 10,
            output_total_bytes: 5,
            watch_lag_bytes: 1 << 30,
            max_connections: 0,
            peer_queue_bytes: 0,
            peer_queue_total_bytes: 10,
            pending: PendingLimits { max_bytes: 0, max_requests: 0 },
            ..Limits::default()
        };
        let (fitted, changed) = small.fitted(1000);
        assert_eq!((fitted.inbox_bytes, fitted.output_bytes), (1000, 1000));
        assert_eq!(fitted.output_total_bytes, 1000);
        assert_eq!(fitted.watch_lag_bytes, 1000);
        assert_eq!(fitted.max_connections, 1);
        assert_eq!((fitted.peer_queue_bytes, fitted.peer_queue_total_bytes), (1000, 1000));
        assert_eq!((fitted.pending.max_bytes, fitted.pending.max_requests), (1000, 1));
        assert_eq!(fitted.read_bytes, 1000);
        assert_eq!(changed.len(), 10, "{changed:?}");
        let (same, changed) = Limits::default().fitted(20 * MIB);
        assert_eq!(same, Limits::default());
        assert!(changed.is_empty());
    }
}
