//! The engine's pure functions, for tools and for the shared test vectors: where a key
//! lives on the ring, how two versions of an entry merge, an entry's Merkle digest, and
//! what a wire frame holds. Each converts its arguments, calls `dhrt-core` and converts
//! the answer back; `dhrt.core` (Python) gives them their documented shape.
//!
//! An entry crosses as a tuple `(value or None, ts, origin, expires or None)`: a `None`
//! value is a tombstone, `ts` the hybrid-logical-clock timestamp, `origin` the
//! coordinating node's id, `expires` wall-clock milliseconds.

use crate::{args::Blob, errors};
use bytes::Bytes;
use dhrt_core::{hash, merkle, wire, Entry, NodeId, Timestamp};
use pyo3::prelude::*;

/// An entry as it crosses to and from Python.
type EntryTuple = (Option<Vec<u8>>, u64, u64, Option<u64>);

fn entry_of((value, ts, origin, expires): EntryTuple) -> Entry {
    Entry { value: value.map(Bytes::from), ts: Timestamp(ts), origin: NodeId(origin), expires }
}

fn tuple_of(e: Entry) -> (Option<Blob>, u64, u64, Option<u64>) {
    (e.value.map(Blob), e.ts.0, e.origin.0, e.expires)
}

/// The ring position of ``key`` in a hashed collection (the default placement):
/// xxh3-64 of the key, seeded with xxh3-64 of the collection name. An int in
/// ``[0, 2**64)``.
#[pyfunction]
pub fn hashed_position(collection: &str, key: &[u8]) -> u64 {
    hash::hashed_position(collection, key)
}

/// The ring position of ``key`` in an ordered collection: its first 8 bytes read
/// big-endian, zero-padded on the right, so ring order is key order. An int in
/// ``[0, 2**64)``.
#[pyfunction]
pub fn ordered_position(key: &[u8]) -> u64 {
    hash::ordered_position(key)
}

/// The last-writer-wins merge of two entries; with ``now`` (wall-clock ms), expired
/// values first read as tombstones.
#[pyfunction]
#[pyo3(signature = (a, b, now=None))]
pub fn merge_entries(
    a: EntryTuple,
    b: EntryTuple,
    now: Option<u64>,
) -> (Option<Blob>, u64, u64, Option<u64>) {
    let (a, b) = (entry_of(a), entry_of(b));
    let merged = match now {
        Some(now) => a.materialize(now).merge(b.materialize(now)),
        None => a.merge(b),
    };
    tuple_of(merged)
}

/// The Merkle digest of ``entry`` stored under ``key``.
#[pyfunction]
pub fn entry_digest(key: &[u8], entry: EntryTuple) -> u64 {
    merkle::entry_digest(key, &entry_of(entry))
}

fn decoded(frame: &[u8]) -> PyResult<dhrt_core::proto::Message> {
    wire::decode(frame).map_err(|e| {
        let kind = match &e {
            wire::WireError::Empty => "empty",
            wire::WireError::TooLarge { .. } => "too_large",
            wire::WireError::UnsupportedVersion { .. } => "unsupported_version",
            wire::WireError::Trailing(_) => "trailing",
            _ => "malformed",
        };
        errors::frame_error(e.to_string(), kind)
    })
}

/// Decodes a wire frame and describes the message it holds (for debugging).
#[pyfunction]
pub fn describe_frame(frame: &[u8]) -> PyResult<String> {
    decoded(frame).map(|m| format!("{m:?}"))
}

/// Decodes a wire frame and encodes its message again: the same bytes for every frame
/// a dhrt host writes.
#[pyfunction]
pub fn reencode_frame(frame: &[u8]) -> PyResult<Blob> {
    let msg = decoded(frame)?;
    let bytes = wire::encode(&msg).map_err(|e| errors::frame_error(e.to_string(), "malformed"))?;
    Ok(Blob(Bytes::from(bytes)))
}
