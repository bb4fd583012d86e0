//! `dhrt` — the native node: durable storage today; the server, client and CLI build on
//! it.
//!
//! [`store`] holds what a node keeps on disk: [`store::RedbStore`], the redb-backed
//! [`dhrt_core::store::Store`] with one file per collection and group commit, and
//! [`store::NodeDb`], the node's identity, saved state and known peers.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod store;
