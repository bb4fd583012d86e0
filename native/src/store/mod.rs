//! Durable storage for a native node, on redb: one file per collection (docs/operations.md,
//! "What is on disk").
//!
//! A node's data dir holds
//!
//! ```text
//! <data-dir>/node.redb                  NodeDb: identity, NodeState, known peers
//! <data-dir>/collections/<name>.redb    RedbStore: one file per collection
//! <data-dir>/collections.wal            RedbStore's write-ahead log
//! <data-dir>/lost+found/                files set aside (interrupted creations, dhrt repair)
//! ```
//!
//! [`RedbStore`] is the disk implementation of [`dhrt_core::store::Store`]; it passes the
//! same conformance suite as the in-memory `MemStore`. One file per collection keeps
//! dropping a collection cheap (delete a file) and keeps a hot collection's commits from
//! rewriting pages of the others. Writes are gathered in one open transaction per
//! collection and made durable together by [`Store::flush`](dhrt_core::store::Store::flush)
//! (group commit: one append to the write-ahead log, one `fdatasync`, for every
//! collection; the files themselves are committed at checkpoints): the driver flushes
//! after a batch of inputs and only then sends the acknowledgements, so one fsync
//! covers many writes and nothing unacknowledged is mistaken for durable.
//!
//! [`MemFirstStore`] (a node's default, `--reads memory`) puts a `MemStore` holding every
//! record in front of a `RedbStore` that a thread of its own writes behind: reads and
//! merge decisions never touch the disk, acknowledgements still wait for the log's
//! `fdatasync`, and checkpoints no longer stop the node thread.
//!
//! [`NodeDb`] is the small rest of what a node must remember across restarts. The
//! entry encoding lives in [`codec`], the free-space reserve in `space`.

mod cache;
pub mod codec;
mod mem_first;
mod node_db;
mod redb;
pub mod repair;
mod space;
mod wal;

pub use self::mem_first::MemFirstStore;
pub use self::node_db::NodeDb;
pub use self::redb::{Reads, RedbOptions, RedbStore, TOMBSTONE_FLOOR};

use dhrt_core::store::StoreError;
use std::io;

/// Whether an I/O error means the medium (or the user's quota) is full.
fn is_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Maps a file-system error met while doing `what` to a [`StoreError`]: a full disk is
/// [`StoreError::Full`], anything else [`StoreError::Io`].
fn io_error(what: &str, e: &io::Error) -> StoreError {
    if is_full(e) {
        StoreError::Full(format!("{what}: {e}"))
    } else {
        StoreError::Io(format!("{what}: {e}"))
    }
}

/// Maps a redb error met while doing `what` to a [`StoreError`]: a full disk is
/// [`StoreError::Full`], a checksum or structure failure [`StoreError::Corrupt`], a
/// file another process holds an [`StoreError::Io`] that says so, the rest
/// [`StoreError::Io`].
fn engine_error(what: &str, e: impl Into<::redb::Error>) -> StoreError {
    match e.into() {
        ::redb::Error::Io(e) => io_error(what, &e),
        ::redb::Error::Corrupted(why) => StoreError::Corrupt(format!("{what}: {why}")),
        ::redb::Error::DatabaseAlreadyOpen => StoreError::Io(format!(
            "{what}: the file is open in another process (or store); run one node per data dir"
        )),
        ::redb::Error::UpgradeRequired(v) => StoreError::Io(format!(
            "{what}: the file is in redb format {v}, which this build cannot open"
        )),
        e => StoreError::Io(format!("{what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disks_map_to_full_and_other_failures_to_io() {
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert!(matches!(io_error("x", &full), StoreError::Full(_)));
        assert!(matches!(engine_error("x", ::redb::StorageError::Io(full)), StoreError::Full(_)));
        let quota = io::Error::from(io::ErrorKind::QuotaExceeded);
        assert!(matches!(io_error("x", &quota), StoreError::Full(_)));
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(matches!(io_error("x", &denied), StoreError::Io(_)));
        let corrupt = ::redb::StorageError::Corrupted("bad checksum".into());
        assert!(matches!(engine_error("x", corrupt), StoreError::Corrupt(_)));
    }
}
