//! `RedbStore`: the durable [`Store`], one redb file per collection, with group commit.
//!
//! ## Layout
//!
//! `<dir>/collections/<name>.redb` holds one collection (names are checked by
//! [`validate_collection`], so they are safe file names). Each file has two tables:
//! `records`, from [`codec::record_key`] (position, then key) to [`codec::encode_entry`],
//! and `meta`, whose `stats` row holds the collection's [`CollectionStats`]. The counts
//! change in the same transaction as the records they count, so they are loaded at open
//! instead of recounted.
//!
//! ## Group commit and the write-ahead log
//!
//! A write (merge, batch, remove, range delete) goes into the collection's open
//! `WriteTransaction`, begun by the first write after a checkpoint. Reads go through
//! that transaction when there is one, so they see every write at once. Each merge
//! that changed something is also encoded for the write-ahead log ([`super::wal`],
//! `<data-dir>/collections.wal`). [`Store::flush`] appends the batch's records to the
//! log with one `fdatasync`, for every collection at once: the writes are durable when
//! it returns, and a driver acknowledges them only then. Dropping the store drops what
//! was not flushed, because it was never acknowledged.
//!
//! The redb files are committed (with fsync, and the counts) at a *checkpoint*, after
//! which the log is emptied: when the log would pass [`RedbOptions::checkpoint_bytes`],
//! when the open transactions hold [`RedbOptions::checkpoint_writes`] writes, when
//! something was removed (a removal is not logged: the checkpoint makes it durable, so
//! a replay can never bring back what was removed), before a collection is dropped, and
//! when an append to the log fails (the checkpoint is then how the batch becomes
//! durable). While a failed checkpoint waits to be tried again, a removal is durable
//! only from the next one that succeeds: a crash before it brings the removed record
//! back, which is harmless for what removes records (purging tombstones and expired
//! entries, cleaning ranges handed off), since each removes it again. Opening the store
//! replays the log into the files and checkpoints.
//! Writes staged behind a memory-first store ([`RedbStore::stage`]) are checkpointed
//! step by step beside the log instead, the log sealed meanwhile ([`drain`]).
//!
//! ## Failures
//!
//! Validation and the free-space reserve are checked before anything is written. Should
//! redb itself fail half way through a write or a checkpoint, that collection's
//! transaction is aborted and its file closed (redb refuses every use of a database
//! after an I/O error until it is re-opened): the file still holds what the last
//! checkpoint committed, and the log holds every acknowledged write since, so the
//! collection is *recovered* — re-opened and the log's merges into it replayed — at
//! once. Reads of a collection that could not be recovered yet are errors, never
//! "missing", and the log is not emptied while any collection still needs it. A flush
//! appends its batch to the log *before* any checkpoint it runs, so a checkpoint that
//! fails there takes no write with it: the flush still makes the batch durable, and
//! the failed checkpoint (and any recovery that failed) is tried again after a wait
//! that doubles from a tenth of a second to five, or at once when room came back
//! ([`retry`]) — never once per batch, which on a full disk spent the disk thread on
//! whole-log replays. Writes gathered in a transaction since the last flush are lost
//! with it when a write itself fails, so the next [`Store::flush`] returns the error
//! instead of pretending they are durable. A full disk is [`StoreError::Full`], bad
//! bytes on disk [`StoreError::Corrupt`], the rest [`StoreError::Io`].
//!
//! ## Disk space
//!
//! A write that adds data is admitted only while the file system keeps, after it, the
//! operator's reserve ([`RedbOptions::min_free_bytes`]) *plus* the room the store
//! itself still needs: what the log may grow by before the next checkpoint
//! (`checkpoint_bytes` less its length, plus the zeros its file is filled with ahead of
//! its records, [`wal::ZERO_AHEAD`]) and an estimate of what that checkpoint copies
//! on write: the bytes gathered in open transactions times what checkpoints were seen
//! to take per byte (twice at least, measured by the free space before and after each;
//! B-trees of 2 KiB values took up to 3.3 times), plus a page per open transaction. A tombstone (a delete) is admitted down to a floor of
//! [`TOMBSTONE_FLOOR`] bytes, so deletes keep working at the reserve; dropping a
//! collection appends one small record to the log instead of needing a checkpoint.
//! A refused write makes the next flush checkpoint (when no failed one waits), which
//! gives the log and copy-on-write room back. [`Store::health`] reports `full` while new data would be refused.
//!
//! ## Files
//!
//! A collection file is created under a temporary name (`.<name>.redb.tmp`),
//! initialised, synced and only then renamed, so a file under its final name is always
//! whole: an empty or unreadable one found at start is damage, and refuses the start. A
//! leftover temporary file (a creation a crash or a full disk interrupted) is moved to
//! `<data-dir>/lost+found/` with a warning. Files are opened lazily and the least
//! recently used ones closed beyond [`RedbOptions::max_open_files`], so a node holding
//! more collections than it may open descriptors still works; the counts of closed
//! collections stay in memory. At most [`RedbOptions::max_collections`] collections
//! exist ([`StoreError::Limit`] beyond).

use super::{
    cache::CacheBudget,
    codec, engine_error, io_error,
    space::SpaceReserve,
    wal::{self, Item, Logged, Wal},
};
use ::redb::{
    Database, ReadableDatabase, ReadableTable, Table, TableDefinition, TableError, WriteTransaction,
};
use bytes::Bytes;
use dhrt_core::{
    entry::Entry,
    hash::{Interval, Position},
    store::{
        validate_collection, validate_key, CollectionStats, Merged, Record, StorageHealth, Store,
        StoreError, Superseded, SyncJob,
    },
};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Records: [`codec::record_key`] → [`codec::encode_entry`].
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// Small named values; today only [`STATS`].
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The `meta` row holding [`codec::encode_stats`].
const STATS: &str = "stats";
/// The folder of collection files under the data dir.
const COLLECTIONS_DIR: &str = "collections";
/// The extension of a collection file.
const EXTENSION: &str = ".redb";
/// The write-ahead log, in the data dir.
pub(crate) const WAL_FILE: &str = "collections.wal";
/// Where files that cannot be used are set aside, in the data dir.
pub(crate) const LOST_AND_FOUND: &str = "lost+found";
/// Tombstones (deletes) are admitted while this many bytes stay free: enough for the
/// log append and a checkpoint of small records.
pub const TOMBSTONE_FLOOR: u64 = 1 << 20;
/// Distinct keys staged before a checkpoint of a memory-first node by default: its
/// staged writes are collapsed to one per key until the checkpoint, so the rarer it is
/// the fewer the file's writes; this bounds the memory they take and the checkpoint's
/// work ([`RedbOptions::memory_first`]).
pub const MEMORY_FIRST_CHECKPOINT_WRITES: u64 = 1 << 18;
/// The log's bound of a memory-first node by default, for the same reason: a hot set of
/// keys, rewritten over and over, checkpoints only when its log is this long (a start
/// after a crash replays up to this much, twice during a stepped checkpoint).
pub const MEMORY_FIRST_CHECKPOINT_BYTES: u64 = 128 << 20;
/// The size of a redb page, for the copy-on-write estimate.
const PAGE: u64 = 4096;
/// A checkpoint's copy-on-write per byte written since the last, in thousandths, at
/// least: the pages rewritten, and the old ones kept until the commit after.
const COW_PERMILLE: u64 = 2000;
/// The most it is taken to be (a measurement disturbed by another process writing to
/// the same disk must not stop every write).
const COW_PERMILLE_MOST: u64 = 8000;

/// The room of the buffer a flush gathers log records in that is kept for the next
/// flush, at most (a larger one, from a large batch, is given back).
const APPENDING_KEPT: usize = 8 << 20;

/// Keys up to this long are held in a staged write's own slot ([`StagedKey`]).
pub(crate) const INLINE_KEY: usize = 24;

/// Where a staged write goes: its position and its key, the key held in the map's slot
/// when it is short (most keys), so a lookup compares it there instead of reading
/// another allocation — that read, a cache miss a write, was a third of the map's
/// time — and handing a write to the disk thread allocates nothing for its key.
pub(crate) type StagedKey = (Position, smallvec::SmallVec<[u8; INLINE_KEY]>);

/// One staged write: where, which key, and the entry that won.
pub(crate) type Staged = (StagedKey, Entry);

/// One collection's staged writes: the newest of each `(position, key)`. Hashed with
/// foldhash (randomly seeded, as hashbrown's default): SipHash over every staged key
/// was a tenth of a persisted node's CPU under a stream of writes.
type StagedWrites = HashMap<StagedKey, Entry, foldhash::fast::RandomState>;

/// The table type records are read and written through.
type Records<'txn> = Table<'txn, &'static [u8], &'static [u8]>;

/// Settings of a [`RedbStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbOptions {
    /// Merges are refused with [`StoreError::Full`] when they would leave less than this
    /// many bytes free on the data dir's file system. Default 64 MiB.
    pub min_free_bytes: u64,
    /// redb's page cache per collection file, in bytes, at most. Default 128 MiB.
    pub cache_bytes: usize,
    /// redb's page cache over every open collection file, in bytes: a file opened gets
    /// its share of what is left, between 1 MiB and [`RedbOptions::cache_bytes`] (see
    /// `store::cache`). Default 1 GiB.
    pub cache_total_bytes: usize,
    /// Save redb's allocator state with every commit, so that opening after a crash
    /// skips walking the whole file (redb's "quick repair"); commits cost a little more.
    /// Default on.
    pub quick_repair: bool,
    /// At open, collection files are read once, sequentially, until this many bytes
    /// have been read, so that the full scan which follows (the Merkle tree build of
    /// `Replica::new`) finds them in the OS page cache instead of reading pages in
    /// B-tree order from the disk — about 3× faster cold (docs/benchmarks.md). Set it
    /// near the memory the OS can spare for caching; 0 turns it off. Default 1 GiB.
    pub preload_bytes: u64,
    /// A flush checkpoints instead of appending to the write-ahead log when the log
    /// would grow past this many bytes, or past an eighth of the disk's free space.
    /// Default 8 MiB ([`RedbOptions::memory_first`]: 128 MiB).
    pub checkpoint_bytes: u64,
    /// A flush checkpoints when the open transactions hold this many writes (they keep
    /// the pages they touched in memory until then) — for writes staged behind a
    /// memory-first store, this many distinct keys ([`RedbStore::stage`]). Default
    /// 16,384 ([`RedbOptions::memory_first`]: 262,144).
    pub checkpoint_writes: u64,
    /// Collection files kept open at once; the least recently used are closed beyond
    /// it (each open file holds a descriptor). Default 256.
    pub max_open_files: usize,
    /// Collections this store holds at most; creating one more is
    /// [`StoreError::Limit`]. Default 10,000.
    pub max_collections: usize,
    /// Where a node over this data dir answers reads from (see [`Reads`]). Default
    /// [`Reads::Memory`].
    pub reads: Reads,
}

/// Where a persisted node answers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reads {
    /// Every record is also held in memory and the files are written behind, on a
    /// thread of their own ([`super::MemFirstStore`]): as fast as a `--memory` node,
    /// as much RAM as the data.
    #[default]
    Memory,
    /// Records are read from the files through redb's page cache ([`RedbStore`] alone):
    /// for data larger than memory.
    Disk,
}

impl std::str::FromStr for Reads {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(Reads::Memory),
            "disk" => Ok(Reads::Disk),
            other => Err(format!("reads must be memory or disk, not {other:?}")),
        }
    }
}

impl RedbOptions {
    /// The defaults for a node that reads as `reads` says: [`RedbOptions::memory_first`]
    /// or, for [`Reads::Disk`], [`RedbOptions::default`].
    pub fn for_reads(reads: Reads) -> Self {
        match reads {
            Reads::Memory => RedbOptions::memory_first(),
            Reads::Disk => RedbOptions { reads, ..RedbOptions::default() },
        }
    }

    /// The defaults of a memory-first node ([`super::MemFirstStore`]): rarer
    /// checkpoints — every [`MEMORY_FIRST_CHECKPOINT_WRITES`] writes or
    /// [`MEMORY_FIRST_CHECKPOINT_BYTES`] of log — since its staged writes are collapsed
    /// to the newest of each key until then and written step by step beside the log.
    pub fn memory_first() -> Self {
        RedbOptions {
            checkpoint_writes: MEMORY_FIRST_CHECKPOINT_WRITES,
            checkpoint_bytes: MEMORY_FIRST_CHECKPOINT_BYTES,
            reads: Reads::Memory,
            ..RedbOptions::default()
        }
    }
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            min_free_bytes: 64 << 20,
            cache_bytes: 128 << 20,
            cache_total_bytes: 1 << 30,
            quick_repair: true,
            preload_bytes: 1 << 30,
            checkpoint_bytes: 8 << 20,
            checkpoint_writes: 16_384,
            max_open_files: 256,
            max_collections: 10_000,
            reads: Reads::default(),
        }
    }
}

/// A collection's open file and the writes gathered in it.
#[derive(Default)]
struct Handle {
    /// The writes gathered since the last checkpoint; dropping it aborts them. Only
    /// while `db` is open.
    txn: Option<WriteTransaction>,
    /// The open file; `None` while closed (idle, or after a failure).
    db: Option<Database>,
    /// The page cache the open file was given, in bytes (0 while closed).
    cache: usize,
    /// Its transaction is being committed on a thread of its own ([`drain`]): the file
    /// stays open until that is done.
    committing: bool,
}

/// One collection's file and its uncommitted writes.
struct Collection {
    /// The file, opened on demand (reads open it too, hence the cell).
    handle: RefCell<Handle>,
    /// When it was last used, for closing the least recently used.
    used: Cell<u64>,
    /// Write operations gathered since the last flush.
    pending: u64,
    /// Write operations gathered in the transaction (since the last checkpoint).
    in_txn: u64,
    /// Log records of the merges since the last flush, not yet in the log.
    log: Vec<u8>,
    path: PathBuf,
    /// Counts including the gathered writes.
    stats: CollectionStats,
    /// Counts as last committed.
    committed: CollectionStats,
    /// Its file misses merges the log holds (a failed write or commit): it must be
    /// recovered before it is used, and the log kept until it is.
    stale: Option<StoreError>,
}

/// A durable [`Store`] on redb: one file per collection under `<dir>/collections`,
/// writes gathered per collection and committed by [`Store::flush`]. See the module
/// docs.
pub struct RedbStore {
    dir: PathBuf,
    options: RedbOptions,
    collections: BTreeMap<String, Collection>,
    space: SpaceReserve,
    /// The write-ahead log: every merge acknowledged since the last checkpoint.
    wal: Wal,
    /// Something was removed since the last checkpoint: the next flush checkpoints.
    removed: bool,
    /// A write was refused for space: the next flush checkpoints, which gives the
    /// log's and the transactions' room back.
    squeezed: bool,
    /// Set while the log is merged back into a collection (a failure then is not
    /// recovered from again).
    restoring: bool,
    /// Why writes gathered since the last flush were discarded, reported by the next
    /// flush.
    failed: Option<StoreError>,
    /// Collection files open now.
    open_files: Cell<usize>,
    /// The page cache the open files were given, in bytes, in all.
    cache_granted: Cell<usize>,
    /// Ticks of the use clock (for `Collection::used`).
    clock: Cell<u64>,
    /// Bytes written into open transactions since the last checkpoint.
    txn_bytes: u64,
    /// The last failure not yet recovered from, for [`Store::health`].
    trouble: Option<String>,
    /// Writes taken by [`RedbStore::stage`]: logged, but put in their collection's
    /// transaction only at the next checkpoint (or before a removal from the same
    /// collection), the newest of each key only.
    staged: BTreeMap<String, StagedWrites>,
    /// A staged map a checkpoint emptied, kept with its room for the next collection
    /// staged into (the roomiest such map; at most what a checkpoint's worth of
    /// distinct keys grew it to).
    spare_staged: Option<StagedWrites>,
    /// The buffer a flush gathers the collections' log records in (kept for its room,
    /// up to [`APPENDING_KEPT`]).
    appending: Vec<u8>,
    /// Every write the log holds is also staged, or in the files: the log may be
    /// emptied (reset, or its sealed part dropped) by a checkpoint. False from a
    /// write logged behind a memory-first store until its next hand-over.
    handed_all: bool,
    /// A checkpoint waits for the memory-first store in front to hand over what it
    /// wrote since its last hand-over ([`RedbStore::wants_handover`]).
    want_handover: bool,
    /// A checkpoint of staged writes being written step by step ([`drain`]).
    draining: Option<drain::Drain>,
    /// A step-by-step checkpoint failed: the next flush checkpoints in full.
    checkpoint_due: bool,
    /// When a checkpoint or a recovery that failed may be tried again ([`retry`]).
    retry: retry::Retry,
    /// What a checkpoint takes of the disk per byte written since the last, in
    /// thousandths: [`COW_PERMILLE`] at least, more when one was seen to take more
    /// ([`RedbStore::learn_cow`]).
    cow_permille: u64,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("collections", &self.collections.keys().collect::<Vec<_>>())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the store of the data dir `dir`, creating `<dir>/collections` when missing,
    /// reading every collection file's counts and replaying the log. A leftover
    /// temporary file is set aside; an empty or unreadable collection file, or a log
    /// damaged before its tail, is an error naming the file (`dhrt repair` salvages).
    pub fn open(dir: &Path, options: RedbOptions) -> Result<Self, StoreError> {
        let folder = dir.join(COLLECTIONS_DIR);
        if !folder.is_dir() {
            fs::create_dir_all(&folder)
                .map_err(|e| io_error(&format!("creating {}", folder.display()), &e))?;
            sync_dir(dir)?;
        }
        let files = scan(dir)?;
        let (wal, logged) = Wal::open(&dir.join(WAL_FILE))?;
        let mut store = RedbStore {
            space: SpaceReserve::new(dir.to_path_buf(), options.min_free_bytes),
            dir: folder,
            options,
            collections: BTreeMap::new(),
            wal,
            removed: false,
            squeezed: false,
            restoring: false,
            failed: None,
            open_files: Cell::new(0),
            cache_granted: Cell::new(0),
            clock: Cell::new(0),
            txn_bytes: 0,
            trouble: None,
            staged: BTreeMap::new(),
            spare_staged: None,
            appending: Vec::new(),
            handed_all: true,
            want_handover: false,
            draining: None,
            checkpoint_due: false,
            retry: retry::Retry::default(),
            cow_permille: COW_PERMILLE,
        };
        let mut preload = store.options.preload_bytes;
        for (name, path) in files {
            preload = preload.saturating_sub(read_ahead(&path, preload));
            let c = Collection::new(path);
            store.ensure_open(&name, &c)?;
            let stats = {
                let h = c.handle.borrow();
                let db = h.db.as_ref().ok_or_else(|| StoreError::Io(format!("{name} closed")))?;
                load_stats(db)
                    .map_err(|e| with_context(&e, &format!("opening {}", c.path.display())))?
            };
            let c = Collection { stats, committed: stats, ..c };
            store.collections.insert(name, c);
            store.close_idle();
        }
        if !logged.is_empty() {
            store.replay_log(logged)?;
            store.checkpoint()?;
        }
        Ok(store)
    }

    /// Applies a log read at start: drops first (a drop whose file was not yet removed
    /// when the node stopped), then the merges that still count.
    fn replay_log(&mut self, logged: Vec<Item>) -> Result<(), StoreError> {
        let mut last_drop = BTreeMap::new();
        let mut merged_since = BTreeMap::new();
        for item in &logged {
            match item {
                Item::Drop(c) => {
                    last_drop.insert(c.clone(), ());
                    merged_since.insert(c.clone(), false);
                }
                Item::Merge(m) => {
                    merged_since.insert(m.collection.clone(), true);
                }
            }
        }
        for name in last_drop.keys() {
            if merged_since.get(name) == Some(&false) && self.collections.contains_key(name) {
                self.remove_collection_file(name)?;
            }
        }
        for r in wal::live_merges(logged) {
            self.replay(&r)?;
        }
        Ok(())
    }

    /// Merges a record read back from the log into its collection, logging nothing.
    fn replay(&mut self, r: &Logged) -> Result<(), StoreError> {
        validate_collection(&r.collection)?;
        self.write(&r.collection, true, |table, stats| {
            merge_into(table, stats, (r.pos, &r.key, &r.entry), &mut Vec::new())
        })?;
        Ok(())
    }

    /// Brings a stale collection back: re-opens its file (what the last checkpoint
    /// committed) and merges back what the log holds for it, so that every
    /// acknowledged write is readable again. On failure it stays stale, to be tried
    /// again before its next use.
    fn recover(&mut self, collection: &str) -> Result<(), StoreError> {
        if self.restoring {
            return Ok(());
        }
        self.restoring = true;
        let outcome = self.wal.read_all().and_then(|logged| {
            wal::live_merges(logged)
                .iter()
                .filter(|r| r.collection == collection)
                .try_for_each(|r| self.replay(r))
        });
        self.restoring = false;
        let Some(c) = self.collections.get_mut(collection) else { return outcome };
        c.pending = 0;
        match &outcome {
            Ok(()) => {
                if c.stale.take().is_some() {
                    tracing::info!(collection, "recovered from the write-ahead log");
                }
                self.trouble = None;
            }
            Err(e) => {
                tracing::warn!(collection, error = %e, "cannot recover from the log yet; will retry");
                self.trouble = Some(e.to_string());
                self.close_after_failure(collection, e.clone());
                self.note_failure();
            }
        }
        outcome
    }

    /// Tries to recover every stale collection; the first failure is returned.
    fn recover_all(&mut self) -> Result<(), StoreError> {
        let stale: Vec<String> = self
            .collections
            .iter()
            .filter(|(_, c)| c.stale.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        let mut first = None;
        for name in stale {
            if let Err(e) = self.recover(&name) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Aborts `collection`'s transaction and closes its file after a failure: its
    /// counts go back to the last checkpoint and it is stale until recovered.
    fn close_after_failure(&mut self, collection: &str, why: StoreError) {
        // What was staged and flushed is in the log, which the recovery replays; what
        // was not flushed goes with the transaction.
        self.staged.remove(collection);
        self.forget_drained(collection);
        let Some(c) = self.collections.get(collection) else { return };
        self.close_file(&mut c.handle.borrow_mut());
        let Some(c) = self.collections.get_mut(collection) else { return };
        c.in_txn = 0;
        c.pending = 0;
        c.log.clear();
        c.stats = c.committed;
        c.stale = Some(why);
    }

    /// Logs a merge that changed `collection` (written by the next flush).
    fn log(&mut self, collection: &str, pos: Position, key: &[u8], entry: &Entry) {
        if let Some(c) = self.collections.get_mut(collection) {
            wal::encode_merge(&mut c.log, collection, pos, key, entry);
        }
    }

    /// Commits every open transaction durably (with the counts), then empties the log.
    /// A collection whose commit fails is closed and recovered from the log, and the
    /// log is kept until every collection is whole again. [`Store::flush`] checkpoints
    /// on its own when it should (see the module docs).
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        // A checkpoint being written step by step is taken over: its commit, if it
        // began, is waited for; what it has not written yet is written now, with the
        // rest.
        // What it takes of the disk is measured when no log is sealed aside (the log it
        // empties gives its bytes back).
        let before = if self.draining.is_none() { self.probe() } else { None };
        let bytes = self.txn_bytes;
        let waited = self.wait_commit();
        self.undrain(None);
        if let Err(e) = waited {
            tracing::warn!(error = %e, "the stepped checkpoint failed: checkpointing in full");
        }
        let mut first_error = None;
        for name in self.staged.keys().cloned().collect::<Vec<_>>() {
            if let Err(e) = self.unstage(&name) {
                first_error.get_or_insert(e);
            }
        }
        let mut failed = Vec::new();
        for (name, c) in &mut self.collections {
            c.log.clear();
            c.pending = 0;
            let Some(txn) = c.handle.get_mut().txn.take() else { continue };
            c.in_txn = 0;
            match commit(txn, &c.stats) {
                Ok(()) => c.committed = c.stats,
                Err(e) => {
                    let e = with_context(&e, &format!("committing {name}"));
                    first_error.get_or_insert(e.clone());
                    failed.push((name.clone(), e));
                }
            }
        }
        self.txn_bytes = 0;
        self.squeezed = false;
        for (name, e) in failed {
            tracing::warn!(collection = %name, error = %e, "checkpoint failed: recovering from the log");
            self.close_after_failure(&name, e);
        }
        let recovered = self.recover_all();
        let outcome = match first_error {
            Some(e) => Err(e),
            // Writes logged and not yet handed over are nowhere but in the log: it is
            // kept whole until a checkpoint that holds them.
            None if !self.handed_all => {
                self.want_handover = true;
                recovered
            }
            None => recovered.and_then(|()| self.wal.reset()),
        };
        if let Err(e) = outcome {
            // The log is kept whole; the next try waits (see `retry`).
            self.trouble = Some(e.to_string());
            self.checkpoint_due = true;
            self.note_failure();
            return Err(e);
        }
        self.removed = false;
        self.checkpoint_due = false;
        self.trouble = None;
        self.retry.succeeded();
        self.learn_cow(bytes, before);
        self.close_idle();
        Ok(())
    }

    /// A checkpoint or a recovery failed: the next is not tried before [`retry`] says
    /// so (the free space is read afresh, to tell when room comes back).
    fn note_failure(&mut self) {
        let free = self.space.free_now();
        self.retry.failed(Instant::now(), free);
    }

    /// Whether a failure waits to be tried again: a checkpoint (the log is kept whole
    /// meanwhile) or a collection to recover (every failure that leaves one stale is
    /// noted, so no collection is looked at here).
    pub(crate) fn retrying(&self) -> bool {
        self.retry.failing() || self.checkpoint_due
    }

    /// Whether a checkpoint or a recovery may be tried now ([`retry`]).
    fn may_retry(&self) -> bool {
        self.retry.ready(Instant::now(), self.space.free())
    }

    /// Logs `log` — merges encoded as the log's records ([`wal::encode_merge`]), the
    /// winners a store in front of this one decided ([`super::MemFirstStore`]) — as it
    /// is: durable with the next flush, as a merge is. The records are not kept here:
    /// the store in front holds them, and hands over the newest version of every key
    /// it wrote when a checkpoint needs them ([`RedbStore::take_handed`]); until then
    /// nothing empties the log ([`RedbStore::wants_handover`]). So a write costs this
    /// thread an append, and a key written many times between two checkpoints costs
    /// the file one write. Reads of this store do not see these records before the
    /// checkpoint that writes them.
    pub(crate) fn stage(&mut self, collection: &str, log: Vec<u8>) -> Result<(), StoreError> {
        validate_collection(collection)?;
        // Read whole before anything is taken: a batch is logged entirely or not at all.
        let mut count = 0u64;
        for merge in wal::encoded_merges(&log) {
            let (into, _, key, raw) = merge?;
            if into != collection.as_bytes() {
                return Err(StoreError::Corrupt(format!(
                    "a batch of log records for {collection} holds a merge into another"
                )));
            }
            validate_key(key)?;
            codec::view_entry(raw)?;
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        if !self.collections.contains_key(collection) {
            self.create_collection(collection)?;
        }
        // A stale collection (a failed checkpoint) takes them too: they need the log,
        // not the file, until the checkpoint that recovers it first.
        let Some(c) = self.collections.get_mut(collection) else { return Ok(()) };
        if let Some(drain) = self.draining.as_mut() {
            drain.since += count;
        }
        c.log.extend_from_slice(&log);
        c.pending += count;
        self.handed_all = false;
        Ok(())
    }

    /// Takes what the store in front handed over (see [`RedbStore::stage`]): for each
    /// collection, the records — read from its memory, the newest version of every key
    /// it wrote since its last hand-over — to be written into the files by the next
    /// checkpoint, each replacing any older one staged. Handed over after every write
    /// logged before it (in the same job, after its batch), so the log may be emptied
    /// again by a checkpoint.
    pub(crate) fn take_handed(&mut self, handed: Vec<(String, Vec<Record>)>) {
        for (collection, records) in handed {
            if records.is_empty() {
                continue;
            }
            if !self.collections.contains_key(&collection) {
                // Every write acknowledged in it was logged by [`RedbStore::stage`],
                // which made the collection: these records are only of writes that
                // failed (never acknowledged), dropped with it. The other collections'
                // records are still taken.
                if let Err(e) = self.create_collection(&collection) {
                    tracing::warn!(collection, error = %e, "cannot stage what was handed over");
                    continue;
                }
            }
            let Some(c) = self.collections.get_mut(&collection) else { continue };
            let staged = match self.staged.get_mut(&collection) {
                Some(staged) => staged,
                // A map emptied by the last checkpoint keeps its room: grown again from
                // nothing, its rehashes and fresh pages were a twentieth of the disk
                // thread's time.
                None => self
                    .staged
                    .entry(collection.clone())
                    .or_insert(self.spare_staged.take().unwrap_or_default()),
            };
            // What the checkpoint will write is counted: a key staged again replaces
            // its older version, so it adds to the open transaction's records
            // (`in_txn`) and bytes (`txn_bytes`, the copy-on-write estimate) only what
            // it grew by.
            let mut grown = 0u64;
            for r in records {
                let bytes = write_size(&r.key, &r.entry);
                let size = r.entry.size();
                match staged.insert((r.pos, smallvec::SmallVec::from_slice(&r.key)), r.entry) {
                    None => {
                        c.in_txn += 1;
                        grown = grown.saturating_add(bytes);
                    }
                    Some(old) => {
                        grown = grown.saturating_add(size.saturating_sub(old.size()) as u64);
                    }
                }
            }
            self.txn_bytes = self.txn_bytes.saturating_add(grown);
        }
        self.handed_all = true;
        self.want_handover = false;
    }

    /// Whether a checkpoint waits for the store in front to hand over what it wrote
    /// (see [`RedbStore::stage`]).
    pub(crate) fn wants_handover(&self) -> bool {
        self.want_handover
    }

    /// What a checkpoint takes of the disk per byte written, in thousandths (see
    /// [`RedbStore::keep_free`]).
    pub(crate) fn cow_permille(&self) -> u64 {
        self.cow_permille
    }

    /// Keeps `map`, emptied, for the next collection staged into — when it has more
    /// room than the one kept already.
    fn keep_spare(&mut self, mut map: StagedWrites) {
        map.clear();
        if self.spare_staged.as_ref().is_none_or(|s| s.capacity() < map.capacity()) {
            self.spare_staged = Some(map);
        }
    }

    /// Writes what is staged for `collection` into its transaction.
    fn unstage(&mut self, collection: &str) -> Result<(), StoreError> {
        // What a checkpoint in progress has not written yet of it is older still.
        self.undrain(Some(collection));
        if !self.staged.contains_key(collection) {
            return Ok(());
        }
        self.make_room(collection)?;
        let Some(mut map) = self.staged.remove(collection) else { return Ok(()) };
        // Hashed while they come (one probe a write), sorted once here: the file's
        // B-tree takes them in key order.
        let mut staged: Vec<_> = map.drain().collect();
        self.keep_spare(map);
        staged.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        self.write(collection, true, |table, stats| {
            let mut buf = Vec::new();
            staged.iter().try_for_each(|((pos, key), entry)| {
                merge_into(table, stats, (*pos, key, entry), &mut buf).map(drop)
            })
        })?;
        Ok(())
    }

    /// Makes room to open `collection`'s file when it is closed and every open file
    /// holds uncommitted writes: their transactions are committed (the log keeps every
    /// write until a checkpoint, so committing early loses nothing) and one is closed.
    /// Unlike [`RedbStore::write`]'s full checkpoint, this is safe in the middle of one
    /// (a checkpoint unstaging more collections than files may be open) and while
    /// staged writes are out of the map. A commit in progress on its thread is waited
    /// for when only its files are open.
    fn make_room(&mut self, collection: &str) -> Result<(), StoreError> {
        let closed =
            self.collections.get(collection).is_some_and(|c| c.handle.borrow().db.is_none());
        if !closed
            || self.open_files.get() < self.options.max_open_files
            || self.close_least_used(collection)
        {
            return Ok(());
        }
        self.commit_open()?;
        if !self.close_least_used(collection) {
            self.wait_commit()?;
            self.close_least_used(collection);
        }
        Ok(())
    }

    /// Commits every open transaction (not one being committed on its thread) without
    /// touching the log. A collection whose commit fails is closed and recovered, as at
    /// a checkpoint.
    fn commit_open(&mut self) -> Result<(), StoreError> {
        let mut failed = Vec::new();
        for (name, c) in &mut self.collections {
            let Some(txn) = c.handle.get_mut().txn.take() else { continue };
            c.in_txn = 0;
            match commit(txn, &c.stats) {
                Ok(()) => c.committed = c.stats,
                Err(e) => {
                    failed.push((name.clone(), with_context(&e, &format!("committing {name}"))))
                }
            }
        }
        let first = failed.first().map(|(_, e)| e.clone());
        for (name, e) in failed {
            self.close_after_failure(&name, e);
        }
        let recovered = self.recover_all();
        first.map_or(recovered, Err)
    }

    /// Every collection this store holds, with records or not.
    pub(crate) fn known_collections(&self) -> Vec<String> {
        self.collections.keys().cloned().collect()
    }

    /// The file that holds (or would hold) `collection`.
    fn path_of(&self, collection: &str) -> PathBuf {
        self.dir.join(format!("{collection}{EXTENSION}"))
    }

    /// Opens `c`'s file if it is closed, first closing the least recently used idle
    /// file when [`RedbOptions::max_open_files`] are open (files with open
    /// transactions stay open, so the limit may be passed until the next checkpoint).
    fn ensure_open(&self, name: &str, c: &Collection) -> Result<(), StoreError> {
        let tick = self.clock.get() + 1;
        self.clock.set(tick);
        c.used.set(tick);
        if c.handle.borrow().db.is_some() {
            return Ok(());
        }
        if self.open_files.get() >= self.options.max_open_files {
            self.close_least_used(name);
        }
        let budget = CacheBudget {
            total: self.options.cache_total_bytes,
            per_file: self.options.cache_bytes,
        };
        let cache = budget.grant(self.cache_granted.get(), self.open_files.get() + 1);
        let db = open_db(&c.path, &RedbOptions { cache_bytes: cache, ..self.options.clone() })?;
        let mut h = c.handle.borrow_mut();
        (h.db, h.cache) = (Some(db), cache);
        self.open_files.set(self.open_files.get() + 1);
        self.cache_granted.set(self.cache_granted.get() + cache);
        Ok(())
    }

    /// Closes the file of `h` (aborting its gathered writes), giving its descriptor and
    /// cache back; whether it was open.
    fn close_file(&self, h: &mut Handle) -> bool {
        h.txn = None;
        let was_open = h.db.take().is_some();
        if was_open {
            self.open_files.set(self.open_files.get() - 1);
            self.cache_granted.set(self.cache_granted.get().saturating_sub(h.cache));
        }
        h.cache = 0;
        was_open
    }

    /// Closes the least recently used open file without a transaction, other than
    /// `keep`'s; returns whether one was closed.
    fn close_least_used(&self, keep: &str) -> bool {
        let victim = self
            .collections
            .iter()
            .filter(|(n, c)| {
                n.as_str() != keep
                    && c.handle
                        .try_borrow()
                        .is_ok_and(|h| h.db.is_some() && h.txn.is_none() && !h.committing)
            })
            .min_by_key(|(_, c)| c.used.get());
        let Some((_, c)) = victim else { return false };
        self.close_file(&mut c.handle.borrow_mut())
    }

    /// Closes idle files until no more than [`RedbOptions::max_open_files`] are open.
    fn close_idle(&self) {
        while self.open_files.get() > self.options.max_open_files && self.close_least_used("") {}
    }

    /// Creates the file of a new collection atomically: initialised under a temporary
    /// name, synced, renamed, the directory synced. A failure leaves nothing behind.
    fn create_collection(&mut self, collection: &str) -> Result<(), StoreError> {
        if self.collections.len() >= self.options.max_collections {
            return Err(StoreError::Limit(format!(
                "this node holds {} collections, the most it allows (max-collections); \
                 drop unused collections or raise the limit",
                self.collections.len()
            )));
        }
        let path = self.path_of(collection);
        let temp = self.dir.join(format!(".{collection}{EXTENSION}.tmp"));
        let made = create_atomically(&temp, &path, &self.dir, |db| {
            let txn = db.begin_write().map_err(|e| engine_error("initialising", e))?;
            txn.open_table(RECORDS).map_err(|e| engine_error("initialising", e))?;
            commit(txn, &CollectionStats::default())
        });
        if let Err(e) = made {
            self.space.forget();
            return Err(with_context(&e, &format!("creating collection {collection}")));
        }
        self.collections.insert(collection.to_string(), Collection::new(path));
        Ok(())
    }

    /// Closes and deletes `collection`'s file, forgetting it.
    fn remove_collection_file(&mut self, collection: &str) -> Result<(), StoreError> {
        let Some(c) = self.collections.remove(collection) else { return Ok(()) };
        self.close_file(&mut c.handle.borrow_mut());
        let path = c.path.clone();
        drop(c); // aborts the gathered writes and closes the file
        fs::remove_file(&path)
            .map_err(|e| io_error(&format!("removing {}", path.display()), &e))?;
        sync_dir(&self.dir)
    }

    /// How long the log may grow before a checkpoint: [`RedbOptions::checkpoint_bytes`],
    /// but never more than an eighth of the disk's free space (at least 1 MiB), so a
    /// small disk checkpoints sooner instead of refusing writes to keep room for a long
    /// log.
    fn log_bound(&self) -> u64 {
        let free = self.space.free().unwrap_or(u64::MAX);
        self.options.checkpoint_bytes.min((free / 8).max(1 << 20))
    }

    /// How many bytes must stay free after a write that adds data: the reserve, what
    /// the log may still grow by before the next checkpoint, and that checkpoint's
    /// copy-on-write estimate (see the module docs).
    pub(crate) fn keep_free(&self) -> u64 {
        // The log's file takes its records and the zeros it is filled with ahead of them
        // (up to [`wal::ZERO_AHEAD`] past the bound).
        let log_room = (self.log_bound() + wal::ZERO_AHEAD).saturating_sub(self.wal.disk_bytes());
        let open_txns = self.open_files.get() as u64;
        let cow = (u128::from(self.txn_bytes) * u128::from(self.cow_permille) / 1000)
            .try_into()
            .unwrap_or(u64::MAX)
            .saturating_add(open_txns * PAGE);
        self.space.reserve().saturating_add(log_room).saturating_add(cow)
    }

    /// A write was refused for room in front of this store (a memory-first node
    /// checks before it hands writes over): the next flush checkpoints, when it may.
    pub(crate) fn squeeze(&mut self) {
        self.squeezed = true;
    }

    /// The bytes free and those the log's file takes now, before a commit whose cost
    /// [`RedbStore::learn_cow`] learns.
    fn probe(&self) -> Option<(u64, u64)> {
        self.space.free_now().map(|free| (free, self.wal.disk_bytes()))
    }

    /// Learns from a commit of `bytes` written since the last checkpoint, `before` it
    /// was [`RedbStore::probe`]: what it took of the disk is the free space lost,
    /// less what the log grew by meanwhile (or plus what it gave back, emptied). The
    /// estimate rises to what was seen (up to [`COW_PERMILLE_MOST`]) and sinks back an
    /// eighth of the way to it each time, never below [`COW_PERMILLE`]. (On a B-tree of
    /// 2 KiB values, commits took 2.1 to 3.3 bytes a byte, and the reserve meant for
    /// deletes went with the difference.)
    fn learn_cow(&mut self, bytes: u64, before: Option<(u64, u64)>) {
        if bytes < PAGE * 16 {
            return; // too small to tell the B-tree's pages from noise
        }
        let Some((free, log)) = before else { return };
        let Some(now) = self.space.free_now() else { return };
        let taken = (free + log).saturating_sub(now + self.wal.disk_bytes());
        let seen = u128::from(taken) * 1000 / u128::from(bytes);
        let seen = u64::try_from(seen).unwrap_or(u64::MAX).min(COW_PERMILLE_MOST);
        self.cow_permille =
            if seen > self.cow_permille { seen } else { (self.cow_permille * 7 + seen) / 8 }
                .max(COW_PERMILLE);
    }

    /// Admits a write of `bytes` (all tombstones: `deletes`) against the free space.
    fn admit(&mut self, bytes: u64, deletes: bool) -> Result<(), StoreError> {
        let keep = if deletes { TOMBSTONE_FLOOR } else { self.keep_free() };
        let admitted = self.space.admit(bytes, keep);
        if admitted.is_err() {
            self.squeezed = true;
        } else {
            self.txn_bytes = self.txn_bytes.saturating_add(bytes);
        }
        admitted
    }

    /// Runs `op` on the records table of `collection` inside its open write transaction
    /// (begun if needed, and the file created if `create`). Returns `None` when the
    /// collection does not exist and `create` is false. If `op` fails, the transaction
    /// is aborted so that nothing of it remains (see the module docs).
    fn write<T>(
        &mut self,
        collection: &str,
        create: bool,
        op: impl FnOnce(&mut Records<'_>, &mut CollectionStats) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        if !self.collections.contains_key(collection) {
            if !create {
                return Ok(None);
            }
            self.create_collection(collection)?;
        }
        if let Some(why) = self.collections[collection].stale.clone() {
            if !self.restoring {
                if !self.may_retry() {
                    return Err(with_context(
                        &why,
                        &format!("{collection} is waiting to be recovered from the log"),
                    ));
                }
                self.recover(collection)?;
            }
        }
        // Every open file has gathered writes: commit them, then close one. Not a full
        // checkpoint: this write may be part of one, or of a recovery replaying the log
        // (a checkpoint per replayed write made a recovery quadratic in the log).
        self.make_room(collection)?;
        let opened = self.ensure_open(collection, &self.collections[collection]);
        if let Err(e) = opened {
            if let Some(c) = self.collections.get_mut(collection) {
                c.stale.get_or_insert(e.clone());
            }
            self.note_failure();
            return Err(e);
        }
        let quick_repair = self.options.quick_repair;
        let Some(c) = self.collections.get_mut(collection) else { return Ok(None) };
        let h = c.handle.get_mut();
        let begun = match h.txn.take() {
            Some(txn) => Ok(txn),
            None => match h.db.as_ref() {
                Some(db) => db
                    .begin_write()
                    .map_err(|e| engine_error(&format!("writing to {collection}"), e)),
                None => Err(StoreError::Io(format!("{collection} is closed"))),
            }
            .map(|mut txn| {
                txn.set_quick_repair(quick_repair);
                txn
            }),
        };
        let mut stats = c.stats;
        let outcome = begun.and_then(|txn| {
            let done = match txn.open_table(RECORDS) {
                Ok(mut table) => op(&mut table, &mut stats),
                Err(e) => Err(engine_error(&format!("opening {collection}"), e)),
            };
            match done {
                Ok(value) => Ok((txn, value)),
                Err(e) => Err(e),
            }
        });
        match outcome {
            Ok((txn, value)) => {
                c.handle.get_mut().txn = Some(txn);
                c.pending += 1;
                c.in_txn += 1;
                c.stats = stats;
                Ok(Some(value))
            }
            Err(e) => {
                // Aborts: nothing of this write, nor the unflushed ones, remains; what
                // earlier flushes logged is merged back by the recovery.
                if c.pending > 0 && self.failed.is_none() {
                    self.failed = Some(with_context(
                        &e,
                        &format!(
                            "{} writes to {collection} since the last flush were discarded",
                            c.pending
                        ),
                    ));
                }
                self.close_after_failure(collection, e.clone());
                if matches!(e, StoreError::Full(_)) {
                    self.space.forget();
                }
                if !self.restoring {
                    if let Err(again) = self.recover(collection) {
                        self.failed.get_or_insert(again);
                    }
                }
                Err(e)
            }
        }
    }

    /// `collection`'s file opened for reading, or why it cannot be read now: a stale
    /// collection (one the log is still being replayed into) is an error, never empty.
    fn reader(&self, collection: &str) -> Result<Option<&Collection>, StoreError> {
        let Some(c) = self.collections.get(collection) else { return Ok(None) };
        if let Some(why) = &c.stale {
            return Err(StoreError::Io(format!(
                "collection {collection} is being recovered after a storage failure ({why}); \
                 its acknowledged writes are safe in the log: retry"
            )));
        }
        self.ensure_open(collection, c)?;
        Ok(Some(c))
    }
}

impl Collection {
    /// A closed collection file at `path` with zero counts (the caller loads them).
    fn new(path: PathBuf) -> Self {
        Collection {
            handle: RefCell::new(Handle::default()),
            used: Cell::new(0),
            pending: 0,
            in_txn: 0,
            log: Vec::new(),
            path,
            stats: CollectionStats::default(),
            committed: CollectionStats::default(),
            stale: None,
        }
    }
}

/// Opens the existing redb file at `path`: a missing, empty or foreign file is an
/// error naming it (a file under its final name was created whole, so this is damage).
pub(crate) fn open_db(path: &Path, options: &RedbOptions) -> Result<Database, StoreError> {
    let what = format!("opening {}", path.display());
    let len = fs::metadata(path).map_err(|e| io_error(&what, &e))?.len();
    if len == 0 {
        return Err(StoreError::Corrupt(format!(
            "{} is empty (0 bytes); files are created whole under a temporary name, so it \
             was damaged: run `dhrt repair --data-dir DIR` to set it aside (the node then \
             gets the data back from its replicas), or restore it from a backup",
            path.display()
        )));
    }
    Database::builder().set_cache_size(options.cache_bytes).open(path).map_err(|e| {
        let e = engine_error(&what, e);
        match e {
            StoreError::Io(why) if !why.contains("another process") => StoreError::Corrupt(
                format!("{why}; run `dhrt repair --data-dir DIR` to set the file aside"),
            ),
            e => e,
        }
    })
}

/// Creates a redb file at `path` atomically: made and initialised by `init` at `temp`,
/// synced, renamed to `path`, the directory `dir` synced. Any failure removes `temp`.
pub(crate) fn create_atomically(
    temp: &Path,
    path: &Path,
    dir: &Path,
    init: impl FnOnce(&Database) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let made = (|| {
        let _ = fs::remove_file(temp);
        let db = Database::builder()
            .set_cache_size(1 << 20)
            .create(temp)
            .map_err(|e| engine_error(&format!("creating {}", temp.display()), e))?;
        init(&db)?;
        drop(db);
        let what = format!("syncing {}", temp.display());
        fs::File::open(temp).and_then(|f| f.sync_all()).map_err(|e| io_error(&what, &e))?;
        fs::rename(temp, path)
            .map_err(|e| io_error(&format!("renaming {} into place", temp.display()), &e))?;
        sync_dir(dir)
    })();
    if made.is_err() {
        let _ = fs::remove_file(temp);
    }
    made
}

/// Moves `path` into `<data_dir>/lost+found/` (a numbered name when taken); returns
/// where it went.
pub(crate) fn set_aside(data_dir: &Path, path: &Path) -> Result<PathBuf, StoreError> {
    let folder = data_dir.join(LOST_AND_FOUND);
    let what = |doing: &str| format!("{doing} {}", path.display());
    fs::create_dir_all(&folder).map_err(|e| io_error(&what("setting aside"), &e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = name.trim_start_matches('.').to_string();
    let mut target = folder.join(&name);
    let mut n = 1;
    while target.exists() {
        target = folder.join(format!("{name}.{n}"));
        n += 1;
    }
    fs::rename(path, &target).map_err(|e| io_error(&what("setting aside"), &e))?;
    sync_dir(&folder)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(target)
}

/// The collection files of a data dir, by name; leftover temporary files (an
/// interrupted creation) are set aside with a warning.
fn scan(data_dir: &Path) -> Result<BTreeMap<String, PathBuf>, StoreError> {
    let folder = data_dir.join(COLLECTIONS_DIR);
    let listing = |e: std::io::Error| io_error(&format!("listing {}", folder.display()), &e);
    let mut files = BTreeMap::new();
    for item in fs::read_dir(&folder).map_err(listing)? {
        let item = item.map_err(listing)?;
        if !item.file_type().map_err(listing)?.is_file() {
            continue;
        }
        let file = item.file_name();
        if is_temporary(&file) {
            match set_aside(data_dir, &item.path()) {
                Ok(to) => tracing::warn!(
                    file = %item.path().display(),
                    moved_to = %to.display(),
                    "a collection file whose creation was interrupted was set aside"
                ),
                Err(e) => tracing::warn!(
                    file = %item.path().display(),
                    error = %e,
                    "a collection file whose creation was interrupted could not be set aside; ignoring it"
                ),
            }
            continue;
        }
        if let Some(name) = collection_name(&file) {
            files.insert(name, item.path());
        }
    }
    Ok(files)
}

/// Whether a file name is that of a collection file being created.
fn is_temporary(file: &std::ffi::OsStr) -> bool {
    file.to_str().is_some_and(|f| f.starts_with('.') && f.ends_with(".tmp"))
}

/// The counts saved in `db`; recounted from the records only when the row is missing
/// (a file written by something else), never in normal operation.
fn load_stats(db: &Database) -> Result<CollectionStats, StoreError> {
    let read = db.begin_read().map_err(|e| engine_error("reading counts", e))?;
    match read.open_table(META) {
        Ok(meta) => {
            if let Some(raw) = meta.get(STATS).map_err(|e| engine_error("reading counts", e))? {
                return codec::decode_stats(raw.value());
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(engine_error("reading counts", e)),
    }
    let mut stats = CollectionStats::default();
    let table = match read.open_table(RECORDS) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(stats),
        Err(e) => return Err(engine_error("counting records", e)),
    };
    for item in table.iter().map_err(|e| engine_error("counting records", e))? {
        let (k, v) = item.map_err(|e| engine_error("counting records", e))?;
        let (_, key) = codec::split_record_key(k.value())?;
        stats.account(key, &codec::decode_entry(v.value())?, true);
    }
    Ok(stats)
}

/// Reads up to `budget` bytes of `path` sequentially and throws them away, leaving
/// them in the OS page cache; returns how many were read. Failures are ignored: this
/// only warms a cache, and opening the file reports real errors.
fn read_ahead(path: &Path, budget: u64) -> u64 {
    use std::io::Read;
    if budget == 0 {
        return 0;
    }
    let Ok(file) = fs::File::open(path) else { return 0 };
    let mut limited = file.take(budget);
    let mut buf = vec![0; 1 << 20];
    let mut read = 0;
    while let Ok(n @ 1..) = limited.read(&mut buf) {
        read += n as u64;
    }
    read
}

/// The collection a file name holds, if it is a collection file.
fn collection_name(file: &std::ffi::OsStr) -> Option<String> {
    let name = file.to_str()?.strip_suffix(EXTENSION)?;
    validate_collection(name).ok().map(|()| name.to_string())
}

/// Makes the creation or removal of files in `dir` durable (a new file's name lives in
/// its directory, which fsync of the file does not cover).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        let what = || format!("syncing {}", dir.display());
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(&what(), &e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// `e` with `context` in front, of the same kind.
fn with_context(e: &StoreError, context: &str) -> StoreError {
    match e {
        StoreError::Full(why) => StoreError::Full(format!("{context}: {why}")),
        StoreError::Corrupt(why) => StoreError::Corrupt(format!("{context}: {why}")),
        StoreError::Io(why) => StoreError::Io(format!("{context}: {why}")),
        other => StoreError::Io(format!("{context}: {other}")),
    }
}

/// Runs `$body` with `$table` bound to the records table of the open collection `$c`:
/// through its open write transaction when it has one (so reads see unflushed
/// writes), else a read transaction. A file without a records table yields `$empty`.
macro_rules! read_records {
    ($c:expr, $empty:expr, |$table:ident| $body:expr) => {{
        let handle = $c.handle.borrow();
        match (&handle.txn, &handle.db) {
            (Some(txn), _) => {
                let $table = txn.open_table(RECORDS).map_err(|e| engine_error("reading", e))?;
                $body
            }
            (None, Some(db)) => {
                let read = db.begin_read().map_err(|e| engine_error("reading", e))?;
                match read.open_table(RECORDS) {
                    Ok($table) => $body,
                    Err(TableError::TableDoesNotExist(_)) => $empty,
                    Err(e) => return Err(engine_error("reading", e)),
                }
            }
            (None, None) => Err(StoreError::Io("the collection file is closed".into())),
        }
    }};
}

fn get_from<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    pos: Position,
    key: &[u8],
) -> Result<Option<Entry>, StoreError> {
    let raw = codec::record_key(pos, key);
    let found = table.get(raw.as_slice()).map_err(|e| engine_error("reading", e))?;
    found.map(|v| codec::decode_entry(v.value())).transpose()
}

/// The key bounds of the positions `[lo, hi]`.
fn position_bounds(lo: Position, hi: Position) -> (Vec<u8>, Option<Vec<u8>>) {
    (lo.to_be_bytes().to_vec(), hi.checked_add(1).map(|next| next.to_be_bytes().to_vec()))
}

fn range_from<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    interval: Interval,
    after: Option<(Position, &[u8])>,
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    for (seg, resume) in interval.walk_after(after.map(|(p, _)| p)) {
        if out.len() >= limit {
            break;
        }
        let (lo, hi) = position_bounds(seg.lo, seg.hi);
        let cursor = match after {
            Some((p, k)) if resume => Some(codec::record_key(p, k)),
            _ => None,
        };
        let lower = match &cursor {
            Some(c) => Bound::Excluded(c.as_slice()),
            None => Bound::Included(lo.as_slice()),
        };
        let upper = hi.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let iter =
            table.range::<&[u8]>((lower, upper)).map_err(|e| engine_error("reading a range", e))?;
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| engine_error("reading a range", e))?;
            let (pos, key) = codec::split_record_key(k.value())?;
            let entry = codec::decode_entry(v.value())?;
            out.push(Record { pos, key: Bytes::copy_from_slice(key), entry });
        }
    }
    Ok(out)
}

/// Merges one record into an open table, keeping `stats` in step.
fn merge_into(
    table: &mut Records<'_>,
    stats: &mut CollectionStats,
    record: (Position, &[u8], &Entry),
    buf: &mut Vec<u8>,
) -> Result<Merged, StoreError> {
    let (pos, key, entry) = record;
    let raw_key = codec::record_key(pos, key);
    buf.clear();
    codec::encode_entry_into(entry, buf);
    // Written first and the old version taken from what the insert returns: one descent
    // of the B-tree instead of a lookup and then an insert. In the rare case the stored
    // version wins (a replayed or repaired older write), it is put back.
    let old = {
        let replaced = table
            .insert(raw_key.as_slice(), buf.as_slice())
            .map_err(|e| engine_error("writing", e))?;
        replaced.map(|raw| raw.value().to_vec())
    };
    let old = match old {
        Some(raw) => match codec::decode_entry(&raw) {
            Ok(old) if !entry.supersedes(&old) => {
                table
                    .insert(raw_key.as_slice(), raw.as_slice())
                    .map_err(|e| engine_error("writing", e))?;
                return Ok(Merged::Kept);
            }
            Ok(old) => Some(old),
            Err(e) => {
                // What was there cannot be read: it stays, and the write fails as the
                // lookup before it did.
                table
                    .insert(raw_key.as_slice(), raw.as_slice())
                    .map_err(|e| engine_error("writing", e))?;
                return Err(e);
            }
        },
        None => None,
    };
    if let Some(old) = &old {
        stats.account(key, old, false);
    }
    stats.account(key, entry, true);
    Ok(old.map_or(Merged::Inserted, |old| Merged::Replaced(Superseded::of(&old))))
}

/// About how many bytes a merge of `key` and `entry` adds to a file.
pub(crate) fn write_size(key: &[u8], entry: &Entry) -> u64 {
    (8 + key.len() + entry.size()) as u64
}

impl Store for RedbStore {
    fn collections(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .collections
            .iter()
            .filter(|(_, c)| c.stats.entries > 0)
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn get(
        &self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Entry>, StoreError> {
        let Some(c) = self.reader(collection)? else { return Ok(None) };
        read_records!(c, Ok(None), |table| get_from(&table, pos, key))
    }

    fn merge(
        &mut self,
        collection: &str,
        pos: Position,
        key: &Bytes,
        entry: Entry,
    ) -> Result<Merged, StoreError> {
        validate_collection(collection)?;
        validate_key(key)?;
        self.admit(write_size(key, &entry), entry.is_tombstone())?;
        let merged = self.write(collection, true, |table, stats| {
            merge_into(table, stats, (pos, key, &entry), &mut Vec::new())
        })?;
        let merged =
            merged.ok_or_else(|| StoreError::Io(format!("collection {collection} vanished")))?;
        if !matches!(merged, Merged::Kept) {
            self.log(collection, pos, key, &entry);
        }
        Ok(merged)
    }

    fn merge_batch(
        &mut self,
        collection: &str,
        records: &[Record],
    ) -> Result<Vec<Merged>, StoreError> {
        validate_collection(collection)?;
        for r in records {
            validate_key(&r.key)?;
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = records.iter().map(|r| write_size(&r.key, &r.entry)).sum();
        self.admit(bytes, records.iter().all(|r| r.entry.is_tombstone()))?;
        let merged = self.write(collection, true, |table, stats| {
            let mut buf = Vec::new();
            records
                .iter()
                .map(|r| merge_into(table, stats, (r.pos, &r.key, &r.entry), &mut buf))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let merged =
            merged.ok_or_else(|| StoreError::Io(format!("collection {collection} vanished")))?;
        for (r, m) in records.iter().zip(&merged) {
            if !matches!(m, Merged::Kept) {
                self.log(collection, r.pos, &r.key, &r.entry);
            }
        }
        Ok(merged)
    }

    fn remove(
        &mut self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Entry>, StoreError> {
        // Removals are not held to the free-space reserve: they give space back. What
        // is staged for the collection goes in first: it came before.
        self.unstage(collection)?;
        let removed = self.write(collection, false, |table, stats| {
            let raw = codec::record_key(pos, key);
            let old = table.remove(raw.as_slice()).map_err(|e| engine_error("removing", e))?;
            let Some(old) = old else { return Ok(None) };
            let entry = codec::decode_entry(old.value())?;
            stats.account(key, &entry, false);
            Ok(Some(entry))
        })?;
        let removed = removed.flatten();
        self.removed |= removed.is_some();
        Ok(removed)
    }

    fn range(
        &self,
        collection: &str,
        interval: Interval,
        after: Option<(Position, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some(c) = self.reader(collection)? else { return Ok(Vec::new()) };
        read_records!(c, Ok(Vec::new()), |table| range_from(&table, interval, after, limit))
    }

    fn delete_range(&mut self, collection: &str, interval: Interval) -> Result<u64, StoreError> {
        self.unstage(collection)?;
        let removed = self.write(collection, false, |table, stats| {
            let mut n = 0;
            for seg in interval.segments().into_iter().flatten() {
                let (lo, hi) = position_bounds(seg.lo, seg.hi);
                let lower = Bound::Included(lo.as_slice());
                let upper = hi.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let doomed = table
                    .extract_from_if::<&[u8], _>((lower, upper), |_, _| true)
                    .map_err(|e| engine_error("deleting a range", e))?;
                for item in doomed {
                    let (k, v) = item.map_err(|e| engine_error("deleting a range", e))?;
                    let (_, key) = codec::split_record_key(k.value())?;
                    stats.account(key, &codec::decode_entry(v.value())?, false);
                    n += 1;
                }
            }
            Ok(n)
        })?;
        let removed = removed.unwrap_or(0);
        self.removed |= removed > 0;
        Ok(removed)
    }

    fn drop_collection(&mut self, collection: &str) -> Result<bool, StoreError> {
        // Its file must not be removed under a commit in progress.
        if let Err(e) = self.wait_commit() {
            tracing::warn!(error = %e, "the stepped checkpoint failed before a drop");
        }
        self.staged.remove(collection);
        self.forget_drained(collection);
        if !self.collections.contains_key(collection) {
            return Ok(false);
        }
        // The log may hold merges into this collection: a drop record voids them, so no
        // replay can bring the collection back. It is one small append, so a drop works
        // at the reserve; only if it fails does the drop need a checkpoint instead.
        let mut record = Vec::new();
        wal::encode_drop(&mut record, collection);
        let logged = self.wal.write(&record).and_then(|()| self.wal.sync_job()());
        if let Err(e) = logged {
            tracing::warn!(error = %e, collection, "cannot log the drop: checkpointing first");
            self.checkpoint().map_err(|again| with_context(&again, &e.to_string()))?;
        }
        let had_records = self.collections[collection].stats.entries > 0;
        self.remove_collection_file(collection)?;
        self.space.forget();
        Ok(had_records)
    }

    fn stats(&self, collection: &str) -> Result<CollectionStats, StoreError> {
        Ok(self.collections.get(collection).map(|c| c.stats).unwrap_or_default())
    }

    fn health(&self) -> StorageHealth {
        let free = self.space.free();
        let stale = self.collections.iter().find_map(|(n, c)| {
            c.stale.as_ref().map(|e| format!("collection {n} is recovering: {e}"))
        });
        StorageHealth {
            full: free.is_some_and(|free| free < self.keep_free()),
            free_bytes: free,
            error: stale.or_else(|| self.trouble.clone()),
        }
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        match self.flush_begin()? {
            Some(job) => job.wait(),
            None => Ok(()),
        }
    }

    fn close(&mut self) {
        // A last checkpoint saves the next start its replay; a file mostly free then
        // gives its room back ([`compact`]).
        match self.checkpoint() {
            Ok(()) => self.compact_sparse(),
            Err(e) => {
                tracing::warn!(error = %e, "last checkpoint failed; the log keeps every write")
            }
        }
    }

    fn wants_flush(&self) -> bool {
        // Only once the wait is over: before, a flush would do nothing.
        self.retrying() && self.may_retry()
    }

    fn flush_begin(&mut self) -> Result<Option<SyncJob>, StoreError> {
        // A collection a failure left stale is tried again when the last failure's wait
        // is over: its data must be readable as soon as the disk lets it.
        let may_retry = self.may_retry();
        if may_retry && self.retry.failing() && self.recover_all().is_ok() && !self.checkpoint_due {
            // Every collection whole again and no checkpoint owed: nothing waits.
            self.retry.succeeded();
        }
        let failed = self.failed.take();
        let logged: u64 = self.collections.values().map(|c| c.log.len() as u64).sum();
        let in_txn: u64 = self.collections.values().map(|c| c.in_txn).sum();
        // (While a checkpoint is written step by step, the log holds only what came
        // after it began: the rest is in the sealed log.)
        let over = self.wal.len_after(logged) > self.log_bound()
            || in_txn >= self.options.checkpoint_writes;
        // Staged writes are checkpointed step by step beside the log ([`drain`]) —
        // unless one such checkpoint is still being written.
        // After a failure only a whole checkpoint, when its wait is over, goes on.
        // Behind a memory-first store, a checkpoint that would empty the log first
        // waits for what that store wrote since its last hand-over ([`stage`]).
        let handed = self.handed_all;
        let in_steps = handed
            && over
            && self.draining.is_none()
            && !self.staged.is_empty()
            && !self.retry.failing();
        let wanted = self.removed || self.squeezed || self.checkpoint_due || (over && !in_steps);
        if (wanted || over) && !handed {
            self.want_handover = true;
        }
        let wanted = wanted && handed;
        let outcome = if self.wal.sync_failed() {
            // A log whose fdatasync failed cannot be trusted with more: only a
            // checkpoint makes this batch durable — one that holds it.
            if handed {
                self.checkpoint().map(|()| None)
            } else {
                self.want_handover = true;
                Err(unhanded("the write-ahead log's last sync failed"))
            }
        } else {
            // The batch goes into the log first, so that a checkpoint failing after it
            // (a full disk) loses none of it: the log keeps every write until one
            // succeeds, and that is tried again after a wait ([`retry`]).
            // Gathered in a buffer kept for its room: one allocated each flush took
            // fresh pages from the system, zeroed, every time.
            let mut batch = std::mem::take(&mut self.appending);
            batch.clear();
            for c in self.collections.values_mut() {
                batch.extend_from_slice(&c.log);
                c.log.clear();
                c.pending = 0;
            }
            let appended = if batch.is_empty() { Ok(()) } else { self.wal.write(&batch) };
            if batch.capacity() <= APPENDING_KEPT {
                self.appending = batch;
            }
            match appended {
                Err(e) if !handed => {
                    tracing::warn!(error = %e, "cannot append to the write-ahead log");
                    self.want_handover = true;
                    Err(with_context(
                        &unhanded("the append to the write-ahead log failed"),
                        &e.to_string(),
                    ))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot append to the write-ahead log: checkpointing");
                    // The checkpoint is how this batch becomes durable now: its writes
                    // are in their transactions.
                    self.checkpoint()
                        .map(|()| None)
                        .map_err(|again| with_context(&again, &e.to_string()))
                }
                Ok(()) if wanted && may_retry => match self.checkpoint() {
                    Ok(()) => Ok(None),
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpoint failed: the log keeps every write; will retry");
                        Ok(self.wal.unsynced().then(|| SyncJob::Run(self.wal.sync_job())))
                    }
                },
                Ok(()) => {
                    if in_steps {
                        self.begin_drain();
                    }
                    // Nothing new, or an earlier batch's sync may still be running: this
                    // batch's answers (reads of those writes) wait for the disk too.
                    Ok(self.wal.unsynced().then(|| SyncJob::Run(self.wal.sync_job())))
                }
            }
        };
        match (failed, outcome) {
            (Some(e), _) => Err(e),
            (None, outcome) => outcome,
        }
    }
}

/// The failure of a batch logged behind a memory-first store whose log failed: only a
/// checkpoint holding the batch could make it durable, and its records are not here
/// but in the store in front, which hands them over when it rebuilds.
fn unhanded(what: &str) -> StoreError {
    StoreError::Io(format!("{what}; the batch is not durable (not committed; retry)"))
}

/// Saves `stats` in `txn` and commits it durably.
fn commit(txn: WriteTransaction, stats: &CollectionStats) -> Result<(), StoreError> {
    {
        let mut meta = txn.open_table(META).map_err(|e| engine_error("saving counts", e))?;
        meta.insert(STATS, codec::encode_stats(stats).as_slice())
            .map_err(|e| engine_error("saving counts", e))?;
    }
    txn.commit().map_err(|e| engine_error("committing", e))
}

mod compact;
mod drain;
mod retry;
#[cfg(test)]
mod tests;
