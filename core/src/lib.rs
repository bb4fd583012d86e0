//! `dhrt-core` — the portable, sans-IO engine of dhrt.
//!
//! Everything a dhrt node decides lives here, as plain data structures and pure
//! functions: no sockets, files, threads, clocks or global randomness. Time enters as a
//! `now` argument (milliseconds), randomness as seeds chosen by the caller, and every
//! iteration order is deterministic. The tokio server, the browser peer, the Python
//! binding and the deterministic simulator all drive this same code.
//!
//! The data half, bottom up:
//! - [`hash`] — where a key lives on the ring, and ring-interval arithmetic;
//! - [`clock`] — the hybrid logical clock that stamps every write;
//! - [`entry`] — a value or tombstone with its version, and the last-writer-wins merge;
//! - [`store`] — the storage trait, the in-memory store and the conformance suite;
//! - [`merkle`] — the incremental Merkle tree over ring positions;
//! - [`replica`] — a store plus its Merkle trees, kept consistent on every write;
//! - [`sync`] — the two-party anti-entropy state machine that ships only differences;
//! - [`proto`] and [`wire`] — the messages and their framed MessagePack encoding;
//! - [`auth`] — client tokens: roles, the collections they cover, what each may do;
//! - [`catalogue`] — every collection's settings, agreed cluster-wide;
//! - [`light`] — the light peer browsers and Node run: routing, retries, watches and
//!   local copies, over the client protocol.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod catalogue;
pub mod clock;
pub mod entry;
pub mod error;
pub mod hash;
pub mod light;
pub mod membership;
pub mod merkle;
pub mod node;
pub mod proto;
pub mod replica;
pub mod ring;
pub mod rng;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod sync;
pub mod wire;

pub use clock::{Hlc, Timestamp};
pub use entry::{Entry, NodeId};
pub use error::{Error, Result};
pub use hash::{Interval, Placement, Position};

/// Milliseconds since the Unix epoch, as every `now` argument in the core is given.
pub type Millis = u64;
