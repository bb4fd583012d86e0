//! `dhrt._dhrt` — the compiled half of the `dhrt` Python package.
//!
//! A thin pyo3 binding over `dhrt-core`: each function converts its arguments, calls the
//! core and converts the answer back. The ergonomic layer (re-exports, docs, and later
//! the client) is pure Python in `python/python/dhrt/`; the typed signatures live in
//! `_dhrt.pyi` beside it. No logic lives here that another host would need too.
//!
//! `extension-module` is enabled by `pyproject.toml` (maturin) only, so that
//! `cargo build --workspace` and clippy link this crate like any other.

#![warn(missing_docs)]

use dhrt_core::hash;
use pyo3::prelude::*;

/// The ring position of ``key`` in a hashed collection (the default placement):
/// xxh3-64 of the key, seeded with xxh3-64 of the collection name. An int in
/// ``[0, 2**64)``.
#[pyfunction]
fn hashed_position(collection: &str, key: &[u8]) -> u64 {
    hash::hashed_position(collection, key)
}

/// The ring position of ``key`` in an ordered collection: its first 8 bytes read
/// big-endian, zero-padded on the right, so ring order is key order. An int in
/// ``[0, 2**64)``.
#[pyfunction]
fn ordered_position(key: &[u8]) -> u64 {
    hash::ordered_position(key)
}

/// The native module `dhrt._dhrt`.
#[pymodule]
fn _dhrt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(hashed_position, m)?)?;
    m.add_function(wrap_pyfunction!(ordered_position, m)?)?;
    Ok(())
}
