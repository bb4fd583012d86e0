//! Merkle sync (work in progress).

/// Why a sync session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The peer broke the protocol.
    #[error("sync protocol violation: {0}")]
    Protocol(String),
}
