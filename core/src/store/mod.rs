//! The storage trait every replica writes through, and its in-memory implementation.
//!
//! A [`Store`] keeps, per collection, a map from `(position, key)` to [`Entry`], ordered
//! by position and then key bytes, so that a ring interval is a contiguous run (or two,
//! when it wraps through zero). The store knows nothing of placement or replication: the
//! caller passes the key's ring position (see [`crate::hash`]) with the key.
//!
//! Writes are *merges*: [`Store::merge`] keeps the winner of the stored and the incoming
//! entry under [`Entry::merge`] and reports what changed, so the caller can keep its
//! Merkle tree in step. Reads of ranges are paged: [`Store::range`] returns at most
//! `limit` records after an optional cursor, in ring order starting just after the
//! interval's start.
//!
//! Two implementations share one conformance suite (`conformance`, behind the
//! `testing` feature): [`MemStore`] here and native's redb store. `faulty` (same
//! feature) wraps any store with injectable faults (ENOSPC, EIO, torn commits) and a
//! durable image that models what a crash keeps.

mod mem;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod faulty;

pub use mem::MemStore;

use crate::{
    entry::{Entry, Version},
    hash::Interval,
    hash::Position,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A key with its ring position and stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key's ring position in its collection.
    pub pos: Position,
    /// The key bytes.
    pub key: Bytes,
    /// The stored entry.
    pub entry: Entry,
}

/// What a merge did to the stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The key was absent; the incoming entry is now stored.
    Inserted,
    /// The incoming entry won; what it replaced is returned (without its value).
    Replaced(Superseded),
    /// The stored entry won (or was identical); nothing changed.
    Kept,
}

/// What a merge replaced: the old entry's version, expiry and size — what its Merkle
/// digest and the collection's counts need — without its value, so a store need not
/// copy the old value out only for it to be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superseded {
    /// The old entry's timestamp.
    pub ts: crate::clock::Timestamp,
    /// The node that coordinated it.
    pub origin: crate::entry::NodeId,
    /// Whether it was a tombstone.
    pub tombstone: bool,
    /// Its expiry, if any.
    pub expires: Option<crate::Millis>,
    /// Its [`Entry::size`].
    pub size: usize,
}

impl Superseded {
    /// What replacing `entry` leaves of it.
    pub fn of(entry: &Entry) -> Self {
        Superseded {
            ts: entry.ts,
            origin: entry.origin,
            tombstone: entry.is_tombstone(),
            expires: entry.expires,
            size: entry.size(),
        }
    }

    /// The old entry's Merkle digest under `key` (as [`crate::merkle::entry_digest`]).
    pub fn digest(&self, key: &[u8]) -> u64 {
        crate::merkle::version_digest(key, self.ts, self.origin, self.tombstone, self.expires)
    }
}

impl Merged {
    /// Whether the store changed.
    pub fn changed(&self) -> bool {
        !matches!(self, Merged::Kept)
    }
}

/// Counts and sizes of one collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CollectionStats {
    /// Stored entries, tombstones included.
    pub entries: u64,
    /// Of those, tombstones.
    pub tombstones: u64,
    /// Approximate bytes: key lengths plus [`Entry::size`] of every entry.
    pub bytes: u64,
}

impl CollectionStats {
    /// Accounts for one record entering (`sign` = 1) or leaving (`sign` = -1).
    pub fn account(&mut self, key: &[u8], entry: &Entry, adding: bool) {
        self.account_size(key.len() + entry.size(), entry.is_tombstone(), adding);
    }

    /// [`CollectionStats::account`] by parts: the record's bytes (key length plus
    /// [`Entry::size`]) and whether it is a tombstone.
    pub fn account_size(&mut self, bytes: usize, tombstone: bool, adding: bool) {
        let bytes = bytes as u64;
        let tomb = u64::from(tombstone);
        if adding {
            self.entries += 1;
            self.tombstones += tomb;
            self.bytes += bytes;
        } else {
            self.entries -= 1;
            self.tombstones -= tomb;
            self.bytes -= bytes;
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The collection name is not allowed.
    #[error("invalid collection name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 _ - .")]
    InvalidCollection {
        /// The rejected name.
        name: String,
    },
    /// The key is empty or longer than the limit.
    #[error("{}", if *len == 0 {
        format!("a key must not be empty: keys must be 1 to {max} bytes")
    } else {
        format!("a key of {len} bytes is too long: keys must be at most {max} bytes")
    })]
    InvalidKey {
        /// The key's length.
        len: usize,
        /// The largest key allowed.
        max: usize,
    },
    /// The storage medium is full; nothing was written.
    #[error("storage is full: {0}; free space or add nodes, nothing was written")]
    Full(String),
    /// An I/O or engine failure; nothing was written.
    #[error("storage failure: {0}")]
    Io(String),
    /// Stored data could not be read back as written.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A limit of this store was reached (the number of collections); nothing was
    /// written.
    #[error("storage limit reached: {0}")]
    Limit(String),
}

/// How [`StoreError::Full`]'s text begins ([`is_storage_full`] looks for it).
const FULL_PREFIX: &str = "storage is full: ";
/// How [`StoreError::Limit`]'s text begins.
const LIMIT_PREFIX: &str = "storage limit reached: ";

impl StoreError {
    /// Whether the store refused for lack of room ([`StoreError::Full`], or the
    /// [`StoreError::Limit`] on collections): freeing space or adding nodes lets the
    /// write through, retrying alone does not. Clients get `storage_full` for it.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::Full(_) | StoreError::Limit(_))
    }
}

/// Whether a replica's refusal, as text, is [`StoreError::is_storage_full`]. Remote
/// replicas report a refused write as the `Display` of their [`StoreError`]
/// (`ReplicaMessage::WriteAck`'s `error`), which the coordinator may prefix with the
/// replica's id in hex (`"{node}: {error}"`); both forms are recognised by the text
/// each variant starts with. Refusals of other kinds (I/O failures, limits on keys and
/// values) are not.
pub fn is_storage_full(refusal: &str) -> bool {
    let starts = |s: &str| s.starts_with(FULL_PREFIX) || s.starts_with(LIMIT_PREFIX);
    let after_node = refusal
        .split_once(": ")
        .filter(|(node, _)| !node.is_empty() && node.bytes().all(|b| b.is_ascii_hexdigit()));
    starts(refusal) || after_node.is_some_and(|(_, rest)| starts(rest))
}

/// How a store's medium is doing, for health checks, stats and `/metrics`. A store
/// with nothing to report (the in-memory one) is always healthy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StorageHealth {
    /// New data is refused ([`StoreError::Full`]): the medium is below its reserve.
    /// Reads, deletes and drops still work.
    #[serde(default)]
    pub full: bool,
    /// Bytes free on the medium at the last reading, when the store knows.
    #[serde(default)]
    pub free_bytes: Option<u64>,
    /// The last failure the store has not yet recovered from (it retries by itself).
    #[serde(default)]
    pub error: Option<String>,
}

impl StorageHealth {
    /// `ok`, `full` or `failing`: one word for dashboards and health checks. A full
    /// medium is `full` even while something fails: it is the likely cause (a commit
    /// meeting `ENOSPC`) and what the operator must act on; `error` still says what.
    pub fn status(&self) -> &'static str {
        if self.full {
            "full"
        } else if self.error.is_some() {
            "failing"
        } else {
            "ok"
        }
    }
}

/// Longest key a store accepts, in bytes (docs/data-model.md, "Stores").
pub const MAX_KEY_LEN: usize = 64 * 1024;
/// Longest collection name.
pub const MAX_COLLECTION_LEN: usize = 64;

/// Checks a collection name: 1–64 characters from `A-Z a-z 0-9 _ - .`, not `.`/`..`.
/// Names become file names, so nothing else is allowed.
pub fn validate_collection(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_COLLECTION_LEN
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidCollection { name: name.to_string() })
    }
}

/// Checks a key: 1 to [`MAX_KEY_LEN`] bytes.
pub fn validate_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        Err(StoreError::InvalidKey { len: key.len(), max: MAX_KEY_LEN })
    } else {
        Ok(())
    }
}

/// The part of a record's memory [`Store::warm`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warm {
    /// Where the index keeps it.
    Index,
    /// The record itself (its index slot read again, by now in cache).
    Record,
}

/// Storage for one replica's collections. Implementations keep records ordered by
/// `(position, key)` within a collection and apply [`Entry::merge`] on every write.
pub trait Store {
    /// Names of the collections holding at least one record, sorted.
    fn collections(&self) -> Result<Vec<String>, StoreError>;

    /// The entry stored for `key` (at `pos`) in `collection`, tombstones included.
    fn get(&self, collection: &str, pos: Position, key: &[u8])
        -> Result<Option<Entry>, StoreError>;

    /// The version of the entry stored for `key` (at `pos`) in `collection`,
    /// tombstones included: what a digest read asks ([`crate::proto::ReplicaMessage::ReadVersions`]).
    /// The default reads the whole entry; a store that can tell the version without
    /// copying the value out does so.
    fn version(
        &self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Version>, StoreError> {
        Ok(self.get(collection, pos, key)?.map(|e| e.version()))
    }

    /// Reads `part` of what a get or merge at `pos` reads first — a memory store's index
    /// slot, or the record it points to — and returns something of it for the caller
    /// to pass to [`std::hint::black_box`]. A node warms a batch of requests before it
    /// handles them, every slot and then every record, so that their cache misses
    /// overlap instead of coming one after another. Stores that read from disk keep this
    /// default: nothing.
    fn warm(&self, _collection: &str, _pos: Position, _part: Warm) -> u64 {
        0
    }

    /// Merges `entry` into the stored entry for `key`, keeping the winner.
    fn merge(
        &mut self,
        collection: &str,
        pos: Position,
        key: &Bytes,
        entry: Entry,
    ) -> Result<Merged, StoreError>;

    /// Merges many records into one collection; durable stores commit them together.
    /// The outcome of each merge is returned in order. On error nothing was written.
    fn merge_batch(
        &mut self,
        collection: &str,
        records: &[Record],
    ) -> Result<Vec<Merged>, StoreError> {
        records.iter().map(|r| self.merge(collection, r.pos, &r.key, r.entry.clone())).collect()
    }

    /// Removes `key` outright (no tombstone: used to purge tombstones after the grace
    /// period and to drop data handed off); returns what was stored.
    fn remove(
        &mut self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Entry>, StoreError>;

    /// Up to `limit` records of `interval`, in ring order from `interval.start + 1`
    /// (position, then key bytes), strictly after the cursor `after` when given.
    fn range(
        &self,
        collection: &str,
        interval: Interval,
        after: Option<(Position, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Removes every record whose position lies in `interval`; returns how many.
    fn delete_range(&mut self, collection: &str, interval: Interval) -> Result<u64, StoreError>;

    /// Removes a whole collection; returns whether it existed.
    fn drop_collection(&mut self, collection: &str) -> Result<bool, StoreError>;

    /// Counts and sizes of `collection` (zeros when it does not exist).
    fn stats(&self, collection: &str) -> Result<CollectionStats, StoreError>;

    /// Makes every write since the last flush durable (group commit). A durable store may
    /// gather writes in an open transaction — reads see them at once — and commit them
    /// all here, so the driver calls this after handling a batch of inputs and before
    /// releasing the acknowledgements those inputs produced. On error none of the
    /// gathered writes can be trusted to be on disk. In-memory stores need do nothing.
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// [`Store::flush`] for a driver that would rather not wait for the disk: does
    /// everything a flush does but the final wait (an fsync), which it returns as a
    /// [`SyncJob`]: a wait for the driver to run on another thread, or a report the
    /// store makes from a thread of its own. The writes since the last flush are
    /// durable once the job's outcome is `Ok` — and so are those of earlier jobs, so a
    /// driver with one [`SyncJob::Run`] running may skip all but the newest of those
    /// waiting. `None`: nothing to wait for (the default, which flushes in place).
    /// Until the outcome comes, the driver must hold back the acknowledgements of these
    /// writes.
    fn flush_begin(&mut self) -> Result<Option<SyncJob>, StoreError> {
        self.flush().map(|()| None)
    }

    /// Whether a flush with no new writes has work to do: a failed checkpoint or
    /// recovery the store tries again once its wait is over. A host flushes an idle
    /// node's store then ([`crate::node::Node::tend_store`]), so a store recovers — and
    /// says so in its health — with no write to prompt it. `false` by default.
    fn wants_flush(&self) -> bool {
        false
    }

    /// The host is stopping cleanly and is done with the store, whose gathered writes
    /// are flushed: it may tidy its files (a persisted store checkpoints and gives back
    /// room its files no longer use). Failures are the store's to log; nothing waits on
    /// them. Nothing by default.
    fn close(&mut self) {}

    /// How the medium is doing (full, failing); healthy by default.
    fn health(&self) -> StorageHealth {
        StorageHealth::default()
    }

    /// After a failed commit (a [`Store::flush`], [`Store::flush_begin`] or its job
    /// returned an error): makes what the store shows match what is durable, dropping the
    /// writes the failed commit (and any begun after it) did not make durable. The node
    /// calls it before rebuilding its Merkle trees from the store. Stores that drop a
    /// failed transaction by themselves, and in-memory stores, need do nothing.
    fn discard_uncommitted(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether a write is as durable as this store ever makes it the moment it returns —
    /// an in-memory store, which keeps nothing across a restart anyway. A node over such
    /// a store holds nothing back for commits (see `node::durability`). Default `false`.
    fn durable_on_write(&self) -> bool {
        false
    }
}

/// The last step of a [`Store::flush_begin`]: how the driver learns that the flushed
/// writes are on disk.
///
/// A store that waits for the disk on the caller's behalf returns [`SyncJob::Run`], a
/// wait the driver runs on a thread of its own. A store with a thread of its own that
/// already waits (the memory-first store's disk thread) returns [`SyncJob::Report`]
/// instead: it tells the driver itself, from that thread, so the outcome reaches the
/// node with no thread in between — one context switch fewer per commit.
pub enum SyncJob {
    /// Waits until the writes are on disk; runs on any thread.
    Run(Box<dyn FnOnce() -> Result<(), StoreError> + Send>),
    /// Give it the function to call with the outcome: the store calls it once, on its
    /// own thread when the outcome comes — or at once, on the caller's, when it is
    /// already known.
    Report(Box<dyn FnOnce(SyncReport) + Send>),
}

/// Where a [`SyncJob::Report`] sends the outcome of its commit.
pub type SyncReport = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

impl SyncJob {
    /// A job that runs `wait`.
    pub fn run(wait: impl FnOnce() -> Result<(), StoreError> + Send + 'static) -> SyncJob {
        SyncJob::Run(Box::new(wait))
    }

    /// Waits for the outcome on this thread, whichever kind of job this is.
    pub fn wait(self) -> Result<(), StoreError> {
        match self {
            SyncJob::Run(wait) => wait(),
            SyncJob::Report(report) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                report(Box::new(move |outcome| {
                    let _ = tx.send(outcome);
                }));
                rx.recv().unwrap_or_else(|_| {
                    Err(StoreError::Io("the store dropped a commit without its outcome".into()))
                })
            }
        }
    }
}

impl std::fmt::Debug for SyncJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncJob::Run(_) => "SyncJob::Run",
            SyncJob::Report(_) => "SyncJob::Report",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_on_a_reported_job_returns_the_outcome_the_store_reports() {
        // Reported later, from another thread.
        let later = SyncJob::Report(Box::new(|report: SyncReport| {
            std::thread::spawn(move || report(Err(StoreError::Io("fsync: EIO".into()))));
        }));
        assert!(matches!(later.wait(), Err(StoreError::Io(m)) if m == "fsync: EIO"));
        // Known already: reported at once.
        let known = SyncJob::Report(Box::new(|report: SyncReport| report(Ok(()))));
        assert!(known.wait().is_ok());
        // Dropped without an outcome: an error, not a hang.
        let dropped = SyncJob::Report(Box::new(drop::<SyncReport>));
        assert!(dropped.wait().is_err());
        assert!(SyncJob::run(|| Ok(())).wait().is_ok());
    }

    #[test]
    fn refusals_for_lack_of_room_are_recognised_from_their_text() {
        let full = StoreError::Full("no space left on device".into());
        let limit = StoreError::Limit("this node holds 3 collections".into());
        for e in [&full, &limit] {
            assert!(e.is_storage_full());
            assert!(is_storage_full(&e.to_string()), "{e}");
            assert!(is_storage_full(&format!("00000000000001f2: {e}")), "{e}");
        }
        let others = [
            StoreError::Io("storage is full: fooled?".into()),
            StoreError::Corrupt("x".into()),
            StoreError::InvalidKey { len: 0, max: 1 },
        ];
        for e in others {
            assert!(!e.is_storage_full());
            assert!(!is_storage_full(&e.to_string()), "{e}");
            assert!(!is_storage_full(&format!("01: {e}")), "{e}");
        }
        assert!(!is_storage_full("the write was not committed (storage is full: x)"));
    }
}
