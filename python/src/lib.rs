//! `dhrt._dhrt` — the compiled half of the `dhrt` Python package.
//!
//! A thin pyo3 layer over the native crate: the Rust client ([`client`]), in-process
//! nodes ([`node`]) and the engine's pure functions ([`engine`]). Each method converts
//! and checks its arguments ([`args`]), calls Rust, and converts the answer or the
//! error ([`errors`], the one place failures become exceptions) back. Waiting happens
//! with the GIL released, or as an asyncio awaitable ([`runtime`]). The ergonomic
//! layer — `connect`, `Client`, `AsyncClient`, mapping access, `LocalCluster`, docs —
//! is pure Python in `python/python/dhrt/`; typed signatures live in `_dhrt.pyi` beside
//! it. No logic lives here that another host would need too.
//!
//! `extension-module` is enabled by `pyproject.toml` (maturin) only, so that
//! `cargo build --workspace` and clippy link this crate like any other.

#![warn(missing_docs)]

mod args;
mod client;
mod engine;
mod errors;
mod node;
mod replica;
mod runtime;

use pyo3::prelude::*;

/// The native module `dhrt._dhrt`.
#[pymodule]
fn _dhrt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_KEY_BYTES", dhrt_core::store::MAX_KEY_LEN)?;
    m.add("DEFAULT_MAX_VALUE_BYTES", dhrt::server::ServeOptions::default().max_value_bytes)?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Watch>()?;
    m.add_class::<replica::Replica>()?;
    m.add_class::<node::Node>()?;
    m.add_function(wrap_pyfunction!(node::init_logs, m)?)?;
    m.add_function(wrap_pyfunction!(engine::hashed_position, m)?)?;
    m.add_function(wrap_pyfunction!(engine::ordered_position, m)?)?;
    m.add_function(wrap_pyfunction!(engine::merge_entries, m)?)?;
    m.add_function(wrap_pyfunction!(engine::entry_digest, m)?)?;
    m.add_function(wrap_pyfunction!(engine::describe_frame, m)?)?;
    m.add_function(wrap_pyfunction!(engine::reencode_frame, m)?)?;
    Ok(())
}
