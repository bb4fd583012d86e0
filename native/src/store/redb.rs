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
//! durable). Opening the store replays the log into the files and checkpoints.
//!
//! ## Failures
//!
//! Validation and the free-space reserve are checked before anything is written. Should
//! redb itself fail half way through a write, that write's transaction is aborted: the
//! write leaves nothing behind, but neither do the writes gathered before it in the same
//! collection since the last flush, so the next [`Store::flush`] returns the error
//! instead of pretending they are durable (the caller's Merkle tree may then describe
//! writes the store no longer holds; rebuilding it fixes that). A full disk is
//! [`StoreError::Full`], bad bytes on disk [`StoreError::Corrupt`], the rest
//! [`StoreError::Io`].

use super::{
    codec, engine_error, io_error,
    space::SpaceReserve,
    wal::{self, Logged, Wal},
};
use ::redb::{
    Database, ReadableDatabase, ReadableTable, Table, TableDefinition, TableError, WriteTransaction,
};
use bytes::Bytes;
use dhrt_core::{
    entry::Entry,
    hash::{Interval, Position},
    store::{
        validate_collection, validate_key, CollectionStats, Merged, Record, Store, StoreError,
        SyncJob,
    },
};
use std::collections::BTreeMap;
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};

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
const WAL_FILE: &str = "collections.wal";

/// The table type records are read and written through.
type Records<'txn> = Table<'txn, &'static [u8], &'static [u8]>;

/// Settings of a [`RedbStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbOptions {
    /// Merges are refused with [`StoreError::Full`] when they would leave less than this
    /// many bytes free on the data dir's file system. Default 64 MiB.
    pub min_free_bytes: u64,
    /// redb's page cache per collection file, in bytes. Default 128 MiB.
    pub cache_bytes: usize,
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
    /// would grow past this many bytes. Default 8 MiB.
    pub checkpoint_bytes: u64,
    /// A flush checkpoints when the open transactions hold this many writes (they keep
    /// the pages they touched in memory until then). Default 16,384.
    pub checkpoint_writes: u64,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            min_free_bytes: 64 << 20,
            cache_bytes: 128 << 20,
            quick_repair: true,
            preload_bytes: 1 << 30,
            checkpoint_bytes: 8 << 20,
            checkpoint_writes: 16_384,
        }
    }
}

/// One collection's file and its uncommitted writes.
struct Collection {
    /// The writes gathered since the last checkpoint; dropping it aborts them.
    txn: Option<WriteTransaction>,
    /// Write operations gathered since the last flush.
    pending: u64,
    /// Write operations gathered in `txn` (since the last checkpoint).
    in_txn: u64,
    /// Log records of the merges since the last flush, not yet in the log.
    log: Vec<u8>,
    db: Database,
    path: PathBuf,
    /// Counts including the gathered writes.
    stats: CollectionStats,
    /// Counts as last committed.
    committed: CollectionStats,
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
    /// Set while the log is merged back after an abort (a failure then is not
    /// restored again).
    restoring: bool,
    /// Why writes gathered since the last flush were discarded, reported by the next
    /// flush.
    failed: Option<StoreError>,
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
    /// Opens the store of the data dir `dir`, creating `<dir>/collections` when missing
    /// and opening every collection file in it. Counts are read, not recounted.
    pub fn open(dir: &Path, options: RedbOptions) -> Result<Self, StoreError> {
        let folder = dir.join(COLLECTIONS_DIR);
        if !folder.is_dir() {
            fs::create_dir_all(&folder)
                .map_err(|e| io_error(&format!("creating {}", folder.display()), &e))?;
            sync_dir(dir)?;
        }
        let listing = |e: std::io::Error| io_error(&format!("listing {}", folder.display()), &e);
        let mut files = BTreeMap::new();
        for item in fs::read_dir(&folder).map_err(listing)? {
            let item = item.map_err(listing)?;
            let Some(name) = collection_name(&item.file_name()) else { continue };
            if item.file_type().map_err(listing)?.is_file() {
                files.insert(name, item.path());
            }
        }
        let mut preload = options.preload_bytes;
        let mut collections = BTreeMap::new();
        for (name, path) in files {
            preload = preload.saturating_sub(read_ahead(&path, preload));
            collections.insert(name, Collection::open(path, &options)?);
        }
        let (wal, logged) = Wal::open(&dir.join(WAL_FILE))?;
        let mut store = RedbStore {
            space: SpaceReserve::new(dir.to_path_buf(), options.min_free_bytes),
            dir: folder,
            options,
            collections,
            wal,
            removed: false,
            restoring: false,
            failed: None,
        };
        if !logged.is_empty() {
            for r in &logged {
                store.replay(r)?;
            }
            store.checkpoint()?;
        }
        Ok(store)
    }

    /// Merges a record read back from the log into its collection, logging nothing.
    fn replay(&mut self, r: &Logged) -> Result<(), StoreError> {
        validate_collection(&r.collection)?;
        self.write(&r.collection, true, |table, stats| {
            merge_into(table, stats, (r.pos, &r.key, &r.entry), &mut Vec::new())
        })?;
        Ok(())
    }

    /// After `collection`'s transaction was aborted: merges back what the log holds for
    /// it, so that every acknowledged write is readable again.
    fn restore(&mut self, collection: &str) -> Result<(), StoreError> {
        self.restoring = true;
        let outcome = self.wal.read_all().and_then(|logged| {
            logged.iter().filter(|r| r.collection == collection).try_for_each(|r| self.replay(r))
        });
        self.restoring = false;
        if let Some(c) = self.collections.get_mut(collection) {
            c.pending = 0;
        }
        outcome
    }

    /// Logs a merge that changed `collection` (written by the next flush).
    fn log(&mut self, collection: &str, pos: Position, key: &[u8], entry: &Entry) {
        if let Some(c) = self.collections.get_mut(collection) {
            wal::encode_merge(&mut c.log, collection, pos, key, entry);
        }
    }

    /// Commits every open transaction durably (with the counts), then empties the log.
    /// A collection whose commit fails gets what the log holds for it merged back.
    /// [`Store::flush`] checkpoints on its own when it should (see the module docs).
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        let mut first_error = None;
        let mut failed = Vec::new();
        for (name, c) in &mut self.collections {
            c.log.clear();
            c.pending = 0;
            let Some(txn) = c.txn.take() else { continue };
            c.in_txn = 0;
            match commit(txn, &c.stats) {
                Ok(()) => c.committed = c.stats,
                Err(e) => {
                    c.stats = c.committed;
                    first_error.get_or_insert(with_context(&e, &format!("committing {name}")));
                    failed.push(name.clone());
                }
            }
        }
        if let Some(e) = first_error {
            for name in failed {
                if let Err(again) = self.restore(&name) {
                    tracing::error!(collection = %name, error = %again, "cannot restore from the log");
                }
            }
            return Err(e);
        }
        self.wal.reset()?;
        self.removed = false;
        Ok(())
    }

    /// The file that holds (or would hold) `collection`.
    fn path_of(&self, collection: &str) -> PathBuf {
        self.dir.join(format!("{collection}{EXTENSION}"))
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
            let c = Collection::open(self.path_of(collection), &self.options)?;
            sync_dir(&self.dir)?;
            self.collections.insert(collection.to_string(), c);
        }
        let Some(c) = self.collections.get_mut(collection) else { return Ok(None) };
        let txn = match c.txn.take() {
            Some(txn) => txn,
            None => {
                let mut txn =
                    c.db.begin_write()
                        .map_err(|e| engine_error(&format!("writing to {collection}"), e))?;
                txn.set_quick_repair(self.options.quick_repair);
                txn
            }
        };
        let mut stats = c.stats;
        let outcome = match txn.open_table(RECORDS) {
            Ok(mut table) => op(&mut table, &mut stats),
            Err(e) => Err(engine_error(&format!("opening {collection}"), e)),
        };
        match outcome {
            Ok(value) => {
                c.txn = Some(txn);
                c.pending += 1;
                c.in_txn += 1;
                c.stats = stats;
                Ok(Some(value))
            }
            Err(e) => {
                // Aborts: nothing of this write, nor the unflushed ones, remains; what
                // earlier flushes logged is merged back below.
                drop(txn);
                c.in_txn = 0;
                c.log.clear();
                if c.pending > 0 && self.failed.is_none() {
                    self.failed = Some(with_context(
                        &e,
                        &format!(
                            "{} writes to {collection} since the last flush were discarded",
                            c.pending
                        ),
                    ));
                }
                c.pending = 0;
                c.stats = c.committed;
                if !self.restoring {
                    if let Err(again) = self.restore(collection) {
                        self.failed.get_or_insert(again);
                    }
                }
                Err(e)
            }
        }
    }
}

impl Collection {
    /// Opens (or creates) the collection file at `path` and loads its counts.
    fn open(path: PathBuf, options: &RedbOptions) -> Result<Self, StoreError> {
        let what = format!("opening {}", path.display());
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(&path)
            .map_err(|e| engine_error(&what, e))?;
        let stats = load_stats(&db).map_err(|e| with_context(&e, &what))?;
        Ok(Collection {
            txn: None,
            pending: 0,
            in_txn: 0,
            log: Vec::new(),
            db,
            path,
            stats,
            committed: stats,
        })
    }
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

/// Runs `$body` with `$table` bound to the records table of collection `$c`: through
/// its open write transaction when it has one (so reads see unflushed writes), else a
/// read transaction. A file without a records table yet yields `$empty`.
macro_rules! read_records {
    ($c:expr, $empty:expr, |$table:ident| $body:expr) => {
        match &$c.txn {
            Some(txn) => {
                let $table = txn.open_table(RECORDS).map_err(|e| engine_error("reading", e))?;
                $body
            }
            None => {
                let read = $c.db.begin_read().map_err(|e| engine_error("reading", e))?;
                match read.open_table(RECORDS) {
                    Ok($table) => $body,
                    Err(TableError::TableDoesNotExist(_)) => $empty,
                    Err(e) => return Err(engine_error("reading", e)),
                }
            }
        }
    };
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
    let old = get_from(table, pos, key)?;
    if old.as_ref().is_some_and(|old| !entry.supersedes(old)) {
        return Ok(Merged::Kept);
    }
    buf.clear();
    codec::encode_entry_into(entry, buf);
    table.insert(raw_key.as_slice(), buf.as_slice()).map_err(|e| engine_error("writing", e))?;
    if let Some(old) = &old {
        stats.account(key, old, false);
    }
    stats.account(key, entry, true);
    Ok(old.map_or(Merged::Inserted, Merged::Replaced))
}

/// About how many bytes a merge of `key` and `entry` adds to a file.
fn write_size(key: &[u8], entry: &Entry) -> u64 {
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
        let Some(c) = self.collections.get(collection) else { return Ok(None) };
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
        self.space.admit(write_size(key, &entry))?;
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
        self.space.admit(records.iter().map(|r| write_size(&r.key, &r.entry)).sum())?;
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
        // Removals are not held to the free-space reserve: they give space back.
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
        let Some(c) = self.collections.get(collection) else { return Ok(Vec::new()) };
        if limit == 0 {
            return Ok(Vec::new());
        }
        read_records!(c, Ok(Vec::new()), |table| range_from(&table, interval, after, limit))
    }

    fn delete_range(&mut self, collection: &str, interval: Interval) -> Result<u64, StoreError> {
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
        if !self.collections.contains_key(collection) {
            return Ok(false);
        }
        // The log may hold merges into this collection; a checkpoint empties it first,
        // so that no replay can ever bring the collection back.
        self.checkpoint()?;
        let Some(c) = self.collections.remove(collection) else { return Ok(false) };
        let had_records = c.stats.entries > 0;
        let path = c.path.clone();
        drop(c); // aborts the gathered writes and closes the file
        fs::remove_file(&path)
            .map_err(|e| io_error(&format!("removing {}", path.display()), &e))?;
        sync_dir(&self.dir)?;
        Ok(had_records)
    }

    fn stats(&self, collection: &str) -> Result<CollectionStats, StoreError> {
        Ok(self.collections.get(collection).map(|c| c.stats).unwrap_or_default())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        match self.flush_begin()? {
            Some(job) => job(),
            None => Ok(()),
        }
    }

    fn flush_begin(&mut self) -> Result<Option<SyncJob>, StoreError> {
        let failed = self.failed.take();
        let logged: u64 = self.collections.values().map(|c| c.log.len() as u64).sum();
        let in_txn: u64 = self.collections.values().map(|c| c.in_txn).sum();
        let outcome = if self.removed
            || self.wal.sync_failed()
            || self.wal.len() + logged > self.options.checkpoint_bytes
            || in_txn >= self.options.checkpoint_writes
        {
            self.checkpoint().map(|()| None)
        } else if logged > 0 {
            let mut batch = Vec::with_capacity(logged as usize);
            for c in self.collections.values_mut() {
                batch.append(&mut c.log);
                c.pending = 0;
            }
            match self.wal.write(&batch) {
                Ok(()) => Ok(Some(self.wal.sync_job())),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot append to the write-ahead log: checkpointing");
                    self.checkpoint()
                        .map(|()| None)
                        .map_err(|again| with_context(&again, &e.to_string()))
                }
            }
        } else if self.wal.unsynced() {
            // Nothing new, but an earlier batch's sync may still be running: this
            // batch's answers (reads of those writes) wait for the disk too.
            Ok(Some(self.wal.sync_job()))
        } else {
            Ok(None)
        };
        match (failed, outcome) {
            (Some(e), _) => Err(e),
            (None, outcome) => outcome,
        }
    }
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

#[cfg(test)]
mod tests;
