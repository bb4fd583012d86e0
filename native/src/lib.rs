//! `dhrt` — the native node.
//!
//! - [`server`]: `dhrt serve`, the tokio host around a `dhrt-core` node — the client
//!   WebSocket protocol, peer links, the HTTP API and `/metrics` on one port.
//! - [`client`]: [`client::Client`], the async, pipelined, ring-aware Rust client.
//! - [`cpu`]: the CPU time this process used (benchmarks, `/metrics`).
//! - [`store`]: what a node keeps on disk — [`store::RedbStore`], the redb-backed
//!   [`dhrt_core::store::Store`] with one file per collection and group commit, and
//!   [`store::NodeDb`], the node's identity, saved state and known peers.
//! - [`tls`]: TLS on the node's port, on its links to peers and in clients (rustls).

// No unsafe code, but in `server::ring`: io_uring lends buffers to the kernel, which no
// safe interface can check (the module says what keeps them valid).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod cpu;
pub mod resp;
pub mod server;
pub mod store;
pub mod tls;
pub mod wsframe;
pub mod wsopen;
