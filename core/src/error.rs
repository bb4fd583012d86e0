//! The crate's one error type.
//!
//! Each concern has its own typed error ([`ClockError`], [`StoreError`], [`WireError`],
//! [`SyncError`]) so callers can match on exactly what went wrong; [`Error`] wraps them
//! for code that crosses concerns. Hosts map these to HTTP codes, Python exceptions and
//! JS errors in one place each. Nothing that arrives from outside panics: it becomes one
//! of these.

use crate::{clock::ClockError, store::StoreError, sync::SyncError, wire::WireError};

/// Any error of the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A remote timestamp was refused.
    #[error(transparent)]
    Clock(#[from] ClockError),
    /// The storage engine failed or refused an operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A sync peer sent something the protocol does not allow.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// `Result` with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
