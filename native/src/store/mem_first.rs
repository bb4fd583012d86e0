//! `MemFirstStore`: a persisted store that answers from memory and writes behind on
//! its own thread — Redis's model (every record in RAM, a log on disk) over dhrt's
//! files.
//!
//! Every record of every collection is held in a [`MemStore`], so reads and the
//! decision of each merge (which version wins, what it replaced) never touch the disk.
//! The files are a [`RedbStore`] owned by a *disk thread*: each [`Store::flush_begin`]
//! hands it the changes made since the last one (merges that changed something —
//! encoded here as the log's records, which that thread appends as they are —
//! removals, range deletes, in the order they were made), and the job returned waits
//! until that thread has written them through the store's write-ahead log and its
//! `fdatasync` — so, as with the `RedbStore` alone, no write is acknowledged before it
//! is on disk ([`crate::server`] holds the answers until the job returns).
//!
//! ## Checkpoints fed from memory
//!
//! The disk thread only appends what it is handed to the log: it keeps no copy of the
//! writes. The checkpoints that copy them into the collection files take them from
//! memory instead: each record a merge changes is marked (a bit of the record
//! [`MemStore`] writes anyway, and its position listed: no lookup), and the newest
//! version of every marked key is read out and handed to the disk thread, in the same
//! job as the batch after which it was read, when a checkpoint needs it — the disk side
//! asks ([`DiskSide::wants_handover`]), `checkpoint_writes` keys were written, the batch
//! removes something (a removal is made durable by the checkpoint after it, not by the
//! log), or a write was refused for room. A key written many times between two
//! checkpoints is handed over once. The disk side empties its log only by a checkpoint
//! that holds every write the log has; until the hand-over it keeps the log whole, so a
//! crash at any point replays what was acknowledged. The checkpoints run on the disk
//! thread a step at a time between batches (`RedbStore`'s `drain`), so neither the node
//! thread nor a batch waits behind a whole checkpoint.
//!
//! ## What it costs, and what it changes
//!
//! Memory: every record, as a `--memory` node holds them (about 215 bytes a key of
//! 16 + 100 bytes, docs/benchmarks.md), beside redb's page cache. Opening a data dir
//! reads every collection into memory. A node whose data does not fit in RAM uses
//! `reads = "disk"` (the `RedbStore` alone).
//!
//! ## Failures
//!
//! Free space and the collection cap are checked here, before a write is taken, with
//! the disk store's own floor ([`RedbStore::keep_free`], published by the disk thread
//! after each job), so a full disk refuses a write with [`StoreError::Full`] up front as
//! the `RedbStore` does. A checkpoint that fails (the disk filled behind the node's
//! back) fails no job: the batches are in the log, and the disk side tries the
//! checkpoint again after a wait, on its own while no write comes in
//! ([`DiskSide::retrying`]). A failure the disk meets otherwise — an I/O error, a log
//! that cannot be appended to and a checkpoint that cannot stand in for it — fails that
//! flush's job: the writes it carried are not acknowledged (the node
//! answers them "not committed; retry"), and the node then calls
//! [`Store::discard_uncommitted`], which hands over what memory holds of the keys
//! written since the last hand-over (the log may lack the tail that failed), waits for
//! the disk thread's checkpoint, reads back what the files and the log really hold, and
//! re-applies the changes not yet handed over — so what the store shows is again what
//! is durable plus what is still on its way. The hand-over may carry writes of the batch
//! that failed, which that checkpoint then makes durable: a "not committed" answer is
//! indeterminate (the write may or may not stay), as a timeout is. When the log fails
//! (an append, or its `fdatasync`) while it holds writes not yet handed over, the batch
//! fails: the checkpoint that would stand in for the log does not hold them.
//! Until then, a flush with nothing new that must wait for earlier writes (a read of
//! them) fails too, so no answer shows a write that did not reach the disk.

use super::codec;
use super::redb::{write_size, RedbOptions, RedbStore, TOMBSTONE_FLOOR};
use super::space::SpaceReserve;
use super::wal;
use answer::Answer;
use bytes::Bytes;
use dhrt_core::{
    entry::{Entry, Version},
    hash::{Interval, Position},
    store::{
        validate_collection, CollectionStats, MemStore, Merged, Record, StorageHealth, Store,
        StoreError, SyncJob,
    },
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    mpsc, Arc, Mutex,
};
use std::thread::JoinHandle;

mod answer;

/// Jobs queued for the disk thread at most; a node that outruns its disk by more
/// waits (it blocks on the queue) instead of growing it.
const QUEUE: usize = 64;
/// The room a batch's log buffer starts with, at least (it then starts at the size the
/// last batch's reached, up to [`LOG_HINT_MOST`]).
const LOG_HINT_LEAST: usize = 4096;
/// The room a batch's log buffer starts with, at most.
const LOG_HINT_MOST: usize = 1 << 20;
/// How long the disk thread's queue stays empty before a checkpoint in progress takes
/// a step regardless of its pace: a batch arriving meanwhile goes first.
const IDLE: std::time::Duration = std::time::Duration::from_millis(2);
/// How often an idle disk thread gives a failed checkpoint or recovery its chance to
/// be tried again ([`DiskSide::retrying`]; the store's own wait decides when it is).
const RETRY_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// Records per page when memory is filled from the files.
const PAGE: usize = 1024;

/// One change made in memory, to be made on disk.
#[derive(Debug, Clone)]
enum Change {
    /// Merges that changed something, encoded as the log's records
    /// ([`wal::encode_merge`]): the disk thread appends them as they are.
    Logged(Vec<u8>),
    Remove(Position, Bytes),
    DeleteRange(Interval),
}

/// The answer to a hand-over: the changes are on disk, or why not.
type Done = Arc<Answer>;

/// Work for the disk thread.
enum Job<D> {
    /// Changes to make, answered once the flush that covers them returns (`flush`: one
    /// is needed); `squeezed`: a write was refused for room since the last job.
    Changes {
        batch: Vec<(String, Vec<Change>)>,
        squeezed: bool,
        flush: bool,
        /// The newest version of every key written since the last hand-over, read
        /// from memory after the batch's changes ([`DiskSide::take_handed`]).
        handed: Option<Handed>,
        done: Done,
    },
    /// Anything else, run on the store in its turn.
    Run(Task<D>),
}

/// Records read from memory for the disk side's next checkpoint, by collection, each in
/// key order.
type Handed = Vec<(String, Vec<Record>)>;

/// A job other than changes: a closure run on the disk thread's store.
type Task<D> = Box<dyn FnOnce(&mut D, &Shared) + Send>;

/// What the disk thread needs of the store it writes through: [`RedbStore`], or a
/// fault-injecting store in tests.
pub trait DiskSide: Store + Send + 'static {
    /// Bytes that new data must leave free on the disk (the reserve plus the room the
    /// store still needs before its next checkpoint).
    fn keep_free(&self) -> u64;
    /// Every collection that exists, with records or not.
    fn known_collections(&self) -> Vec<String>;
    /// Makes what was flushed part of the files, giving the log's room back.
    fn checkpoint(&mut self) -> Result<(), StoreError>;
    /// A write was refused for room: the store checkpoints when it next may (after the
    /// flush that makes the changes before it durable), giving the log's room back.
    fn squeeze(&mut self) {}
    /// Takes `log` — merges encoded as the log's records ([`wal::encode_merge`]), each
    /// the winner of its key, decided in memory — to be made durable by the next
    /// flush, like `merge_batch` without its answer.
    fn stage(&mut self, collection: &str, log: Vec<u8>) -> Result<(), StoreError> {
        let records = decode_logged(&log)?;
        self.merge_batch(collection, &records).map(drop)
    }
    /// Takes the records handed over for the next checkpoint (a store whose
    /// [`DiskSide::stage`] applies what it logs, as by default, needs none).
    fn take_handed(&mut self, _handed: Handed) {}
    /// Whether a checkpoint waits for the records written since the last hand-over.
    fn wants_handover(&self) -> bool {
        false
    }
    /// What a checkpoint takes of the disk per byte it writes, in thousandths.
    fn cow_permille(&self) -> u64 {
        0
    }
    /// Whether a checkpoint is being written step by step, between batches.
    fn checkpointing(&self) -> bool {
        false
    }
    /// Whether something failed that the store tries again by itself (a checkpoint, a
    /// recovery): the disk thread then flushes every [`RETRY_POLL`] while idle, so it
    /// is retried, and the health updated, with no write coming in.
    fn retrying(&self) -> bool {
        false
    }
    /// Writes the next step of that checkpoint — when `idle` (nothing is waiting for
    /// the disk), or when one is due.
    fn checkpoint_step(&mut self, _idle: bool) -> Result<(), StoreError> {
        Ok(())
    }
}

impl DiskSide for RedbStore {
    fn keep_free(&self) -> u64 {
        RedbStore::keep_free(self)
    }
    fn known_collections(&self) -> Vec<String> {
        RedbStore::known_collections(self)
    }
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        RedbStore::checkpoint(self)
    }
    fn squeeze(&mut self) {
        RedbStore::squeeze(self);
    }
    fn stage(&mut self, collection: &str, log: Vec<u8>) -> Result<(), StoreError> {
        RedbStore::stage(self, collection, log)
    }
    fn take_handed(&mut self, handed: Handed) {
        RedbStore::take_handed(self, handed);
    }
    fn wants_handover(&self) -> bool {
        RedbStore::wants_handover(self)
    }
    fn cow_permille(&self) -> u64 {
        RedbStore::cow_permille(self)
    }
    fn checkpointing(&self) -> bool {
        RedbStore::checkpointing(self)
    }
    fn retrying(&self) -> bool {
        RedbStore::retrying(self)
    }
    fn checkpoint_step(&mut self, idle: bool) -> Result<(), StoreError> {
        RedbStore::checkpoint_step(self, idle)
    }
}

/// What the disk thread tells the node thread, updated after every job.
#[derive(Debug, Default)]
struct Shared {
    /// Jobs finished.
    done: AtomicU64,
    /// [`RedbStore::keep_free`] after the last job: the floor new data must leave.
    keep_free: AtomicU64,
    /// [`Store::health`] of the files after the last job.
    health: Mutex<StorageHealth>,
    /// The first failure since the last [`Store::discard_uncommitted`].
    failed: Mutex<Option<StoreError>>,
    /// [`DiskSide::wants_handover`] after the last job.
    wants_handover: AtomicBool,
    /// [`DiskSide::cow_permille`] after the last job.
    cow_permille: AtomicU64,
}

impl Shared {
    fn publish(&self, store: &impl DiskSide) {
        self.keep_free.store(store.keep_free(), Ordering::Relaxed);
        self.wants_handover.store(store.wants_handover(), Ordering::Release);
        self.cow_permille.store(store.cow_permille(), Ordering::Relaxed);
        *lock(&self.health) = store.health();
    }

    fn fail(&self, e: &StoreError) {
        lock(&self.failed).get_or_insert_with(|| e.clone());
    }

    fn failure(&self) -> Option<StoreError> {
        lock(&self.failed).clone()
    }
}

/// A mutex's guard, whether or not a thread panicked holding it (the data is counters
/// and a copy of the health; nothing half-written).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The persisted store that serves from memory (see the module docs).
pub struct MemFirstStore<D: DiskSide = RedbStore> {
    live: MemStore,
    /// Changes made since the last flush, in order, grouped by collection.
    batch: Vec<(String, Vec<Change>)>,
    /// Every collection that exists (in memory or on disk), for the cap.
    known: BTreeSet<String>,
    max_collections: usize,
    space: SpaceReserve,
    /// A write was refused for room: the next job tells the disk side, whose next
    /// flush checkpoints (when it may), which gives the log's room back.
    squeezed: bool,
    /// The room a batch's log buffer starts with: what the last one reached.
    log_hint: usize,
    jobs: Option<mpsc::SyncSender<Job<D>>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// Jobs sent.
    sent: u64,
    /// Positions written that make the next hand-over due by themselves.
    checkpoint_writes: u64,
}

impl<D: DiskSide> std::fmt::Debug for MemFirstStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemFirstStore")
            .field("collections", &self.known)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl MemFirstStore<RedbStore> {
    /// Opens the data dir `dir` as [`RedbStore::open`] does (replaying its log), reads
    /// every collection into memory and starts the disk thread. Its checkpoints are
    /// `options`' ([`RedbOptions::memory_first`] has the defaults made for it).
    pub fn open(dir: &Path, options: RedbOptions) -> Result<Self, StoreError> {
        let disk = RedbStore::open(dir, options.clone())?;
        fits_in_memory(&disk, available_memory())?;
        let space = SpaceReserve::new(dir.to_path_buf(), options.min_free_bytes);
        let mut store = MemFirstStore::over(disk, space, options.max_collections)?;
        store.checkpoint_writes = options.checkpoint_writes;
        Ok(store)
    }
}

impl<D: DiskSide> MemFirstStore<D> {
    /// Serves `disk`'s records from memory, writing behind on a thread of its own;
    /// `space` is checked before a write is taken, and at most `max_collections` exist.
    pub(crate) fn over(
        mut disk: D,
        space: SpaceReserve,
        max_collections: usize,
    ) -> Result<Self, StoreError> {
        let mut live = MemStore::new();
        let known: BTreeSet<String> = disk.known_collections().into_iter().collect();
        for c in disk.collections()? {
            load(&disk, &c, &mut live)?;
        }
        // What was written since the last hand-over is marked in memory
        // ([`MemFirstStore::take_dirty`]); what was read from the files is not.
        live.track_changes();
        let shared = Arc::new(Shared::default());
        shared.publish(&disk);
        let (jobs, queue) = mpsc::sync_channel::<Job<D>>(QUEUE);
        let on_disk = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("dhrt-disk".into())
            .spawn(move || {
                serve(&mut disk, &queue, &on_disk);
                // The node stopped: what was acknowledged is in the log; a last
                // checkpoint only saves the next start its replay, and lets files
                // mostly free give their room back ([`Store::close`]).
                match disk.checkpoint() {
                    Ok(()) => disk.close(),
                    Err(e) => {
                        tracing::warn!(error = %e, "last checkpoint failed; the log keeps every write");
                    }
                }
            })
            .map_err(|e| StoreError::Io(format!("starting the disk thread: {e}")))?;
        Ok(MemFirstStore {
            live,
            batch: Vec::new(),
            known,
            max_collections,
            space,
            squeezed: false,
            log_hint: LOG_HINT_LEAST,
            jobs: Some(jobs),
            thread: Some(thread),
            shared,
            sent: 0,
            checkpoint_writes: u64::MAX,
        })
    }

    /// Queues `job` for the disk thread (waiting while its queue is full).
    fn send(&mut self, job: Job<D>) -> Result<(), StoreError> {
        let stopped = || StoreError::Io("the disk thread stopped".into());
        self.jobs.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())?;
        self.sent += 1;
        Ok(())
    }

    /// Whether jobs sent are still running or queued.
    fn in_flight(&self) -> bool {
        self.shared.done.load(Ordering::Acquire) < self.sent
    }

    /// Runs `job` on the disk thread after everything queued before it and waits for
    /// its answer.
    fn call<T: Send + 'static>(
        &mut self,
        job: impl FnOnce(&mut D) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Job::Run(Box::new(move |s, _| {
            let _ = tx.send(job(s));
        })))?;
        rx.recv().map_err(|_| StoreError::Io("the disk thread stopped".into()))?
    }

    /// Hands the changes made since the last flush to the disk thread (flushed there
    /// when `flush`); returns the job through which that thread reports them done.
    fn hand_over(&mut self, flush: bool) -> Result<SyncJob, StoreError> {
        // A removal is made durable by the checkpoint that follows it (it is not
        // logged), and that checkpoint empties the log: it needs what was written
        // since the last hand-over.
        let removes = self
            .batch
            .iter()
            .flat_map(|(_, changes)| changes)
            .any(|c| matches!(c, Change::Remove(..) | Change::DeleteRange(_)));
        // A write refused for room makes the disk side checkpoint as soon as it can:
        // it needs them too.
        let handed = if removes || self.squeezed || self.handover_due() {
            Some(self.take_dirty())
        } else {
            None
        };
        let batch = std::mem::take(&mut self.batch);
        let squeezed = std::mem::take(&mut self.squeezed);
        let (done, job) = Answer::new();
        self.send(Job::Changes { batch, squeezed, flush, handed, done })?;
        Ok(job)
    }

    /// Whether the next job hands the records written since the last hand-over to the
    /// disk side: it asked (a checkpoint waits for them), or they are as many as a
    /// checkpoint takes.
    fn handover_due(&self) -> bool {
        self.shared.wants_handover.load(Ordering::Acquire)
            || self.dirty().0 >= self.checkpoint_writes
    }

    /// Records marked in memory since the last hand-over, and their bytes.
    fn dirty(&self) -> (u64, u64) {
        self.live.marked()
    }

    /// The records at every position written since the last hand-over, read from
    /// memory in key order, their marks cleared ([`MemStore::take_changed`]). Every
    /// key at a position is read: a position several keys share (`ordered.*`
    /// collections) needs no list of which were written; a key removed since is not
    /// there, and is not written back.
    fn take_dirty(&mut self) -> Handed {
        self.live.take_changed()
    }

    /// Hands what was written since the last hand-over to the disk side in a job of
    /// its own (no changes, no flush), answered to nobody.
    fn hand_over_marked(&mut self) -> Result<(), StoreError> {
        let handed = Some(self.take_dirty());
        let (done, _) = Answer::new();
        self.send(Job::Changes { batch: Vec::new(), squeezed: false, flush: false, handed, done })
    }

    /// Records `change` to `collection` for the next hand-over.
    fn record(&mut self, collection: &str, change: Change) {
        match self.batch.last_mut() {
            Some((c, changes)) if c == collection => changes.push(change),
            _ => self.batch.push((collection.to_string(), vec![change])),
        }
    }

    /// Encodes a merge into `collection` for the next hand-over, as the log's record —
    /// written here, on the node thread, straight from the request's key and entry, so
    /// the disk thread only appends it and no key or value is allocated for it. Returns
    /// where it began, for [`MemFirstStore::unlog`].
    fn log_merge(&mut self, collection: &str, pos: Position, key: &[u8], entry: &Entry) -> usize {
        let same = matches!(self.batch.last(), Some((c, _)) if c == collection);
        if !same {
            self.batch.push((collection.to_string(), Vec::new()));
        }
        let hint = self.log_hint;
        let Some((_, changes)) = self.batch.last_mut() else { return 0 };
        if !matches!(changes.last(), Some(Change::Logged(_))) {
            changes.push(Change::Logged(Vec::with_capacity(hint)));
        }
        let Some(Change::Logged(log)) = changes.last_mut() else { return 0 };
        let start = log.len();
        wal::encode_merge(log, collection, pos, key, entry);
        self.log_hint = log.len().clamp(LOG_HINT_LEAST, LOG_HINT_MOST);
        start
    }

    /// Takes back the merge [`MemFirstStore::log_merge`] encoded last (it changed
    /// nothing, or failed), which began at `start`.
    fn unlog(&mut self, start: usize) {
        let Some((_, changes)) = self.batch.last_mut() else { return };
        let Some(Change::Logged(log)) = changes.last_mut() else { return };
        log.truncate(start);
        if log.is_empty() {
            changes.pop();
            if changes.is_empty() {
                self.batch.pop();
            }
        }
    }

    /// Admits a write of `bytes` (all tombstones: `deletes`) into `collection`: the
    /// collection cap for a new one, then the free space the disk store needs.
    fn admit(&mut self, collection: &str, bytes: u64, deletes: bool) -> Result<(), StoreError> {
        validate_collection(collection)?;
        if !self.known.contains(collection) && self.known.len() >= self.max_collections {
            return Err(StoreError::Limit(format!(
                "this node holds {} collections, the most it allows (max-collections); \
                 drop unused collections or raise the limit",
                self.known.len()
            )));
        }
        let keep = if deletes {
            TOMBSTONE_FLOOR
        } else {
            // The disk side's floor counts what it holds for its next checkpoint; what
            // this store will hand it for that checkpoint is counted here.
            let cow = self.shared.cow_permille.load(Ordering::Relaxed);
            let handing = u64::try_from(u128::from(self.dirty().1) * u128::from(cow) / 1000)
                .unwrap_or(u64::MAX);
            self.space
                .reserve()
                .max(self.shared.keep_free.load(Ordering::Relaxed).saturating_add(handing))
        };
        let admitted = self.space.admit(bytes, keep);
        if admitted.is_err() {
            self.squeezed = true;
        }
        admitted
    }
}

/// The merges encoded in `log` ([`wal::encode_merge`]) as records.
fn decode_logged(log: &[u8]) -> Result<Vec<Record>, StoreError> {
    wal::encoded_merges(log)
        .map(|merge| {
            let (_, pos, key, raw) = merge?;
            Ok(Record { pos, key: Bytes::copy_from_slice(key), entry: codec::decode_entry(raw)? })
        })
        .collect()
}

/// The disk thread: takes jobs in order until the store is dropped. Changes are made
/// as they come and answered after one flush for all that arrived while the disk was
/// busy (group commit: one `fdatasync` covers every hand-over waiting for it); any
/// other job first settles the changes before it. A checkpoint being written step by
/// step ([`DiskSide::checkpoint_step`]) takes a step when the queue has been empty for
/// [`IDLE`], or, under load, after the answers waiting went out when the store says one
/// is due (paced by the writes coming in) — so no batch waits for more than a step of
/// it, and most wait for none.
fn serve<D: DiskSide>(disk: &mut D, queue: &mpsc::Receiver<Job<D>>, shared: &Shared) {
    let mut waiting: Vec<(Result<(), StoreError>, Done)> = Vec::new();
    let mut flush = false;
    loop {
        let next = if !waiting.is_empty() {
            queue.try_recv()
        } else if disk.checkpointing() {
            match queue.recv_timeout(IDLE) {
                Ok(job) => Ok(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = disk.checkpoint_step(true) {
                        tracing::warn!(error = %e, "a checkpoint step failed");
                    }
                    shared.publish(disk);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(mpsc::TryRecvError::Disconnected),
            }
        } else if disk.retrying() {
            match queue.recv_timeout(RETRY_POLL) {
                Ok(job) => Ok(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // A flush with nothing new retries what failed, when it may.
                    if let Err(e) = disk.flush() {
                        tracing::debug!(error = %e, "retrying the disk's failure");
                    }
                    shared.publish(disk);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(mpsc::TryRecvError::Disconnected),
            }
        } else {
            queue.recv().map_err(|_| mpsc::TryRecvError::Disconnected)
        };
        let job = match next {
            Ok(job) => job,
            Err(mpsc::TryRecvError::Empty) => {
                settle(disk, shared, &mut waiting, std::mem::take(&mut flush));
                if let Err(e) = disk.checkpoint_step(false) {
                    // The log keeps every write; the next flush checkpoints in full.
                    tracing::warn!(error = %e, "a checkpoint step failed");
                }
                shared.publish(disk);
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                settle(disk, shared, &mut waiting, flush);
                return;
            }
        };
        match job {
            Job::Changes { batch, squeezed, flush: wanted, handed, done } => {
                let outcome = apply(disk, batch);
                if let Some(handed) = handed {
                    disk.take_handed(handed);
                }
                if squeezed {
                    // Not here: a checkpoint failing before the flush would take this
                    // batch's writes with it. The flush logs them, then checkpoints.
                    disk.squeeze();
                }
                flush |= wanted;
                waiting.push((outcome, done));
            }
            Job::Run(run) => {
                settle(disk, shared, &mut waiting, std::mem::take(&mut flush));
                run(disk, shared);
                shared.done.fetch_add(1, Ordering::Release);
            }
        }
        shared.publish(disk);
    }
}

/// Flushes (when `flush`) and answers every hand-over `waiting`: with its own failure,
/// the flush's, or an earlier one not yet discarded — the newest success first, which
/// answers for the older ones.
fn settle(
    disk: &mut impl DiskSide,
    shared: &Shared,
    waiting: &mut Vec<(Result<(), StoreError>, Done)>,
    flush: bool,
) {
    if waiting.is_empty() && !flush {
        return;
    }
    let flushed = if flush { disk.flush() } else { Ok(()) };
    let mut outcomes: Vec<(Result<(), StoreError>, Done)> = waiting
        .drain(..)
        .map(|(outcome, done)| {
            let mut outcome = outcome.and(flushed.clone());
            match &outcome {
                Err(e) => shared.fail(e),
                Ok(()) => outcome = shared.failure().map_or(Ok(()), Err),
            }
            (outcome, done)
        })
        .collect();
    // Counted before they are answered: whoever an answer wakes must not still see them
    // in flight.
    shared.done.fetch_add(outcomes.len() as u64, Ordering::Release);
    // The newest success first: it says every batch before it is on disk too, so a
    // driver that has heard it need not wake its node thread for the older ones.
    if let Some(last_ok) = outcomes.iter().rposition(|(outcome, _)| outcome.is_ok()) {
        let (outcome, done) = outcomes.remove(last_ok);
        done.give(outcome);
    }
    for (outcome, done) in outcomes {
        done.give(outcome);
    }
    shared.publish(disk);
}

/// Bytes a record takes in memory beyond its key and [`Entry::size`]: the record's
/// header and the allocator's rounding, its index slot, its share of the Merkle tree.
const PER_KEY: u64 = 80;

/// Refuses to read the data into memory when it would not fit in `available` bytes
/// (`None`: the system does not say, and the data is read).
fn fits_in_memory(disk: &impl DiskSide, available: Option<u64>) -> Result<(), StoreError> {
    let Some(available) = available else { return Ok(()) };
    let (mut keys, mut bytes) = (0u64, 0u64);
    for c in disk.known_collections() {
        let stats = disk.stats(&c)?;
        keys += stats.entries;
        bytes += stats.bytes;
    }
    let needed = bytes.saturating_add(keys.saturating_mul(PER_KEY));
    if needed > available {
        return Err(StoreError::Limit(format!(
            "holding this data dir's {keys} keys in memory (--reads memory) needs about {} MiB \
             and {} MiB are available; start with --reads disk, or on a machine with more \
             memory",
            needed >> 20,
            available >> 20
        )));
    }
    Ok(())
}

/// The memory the system could give this process now (`MemAvailable`), in bytes.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Reads `collection` from the files into `live`.
fn load(disk: &impl DiskSide, collection: &str, live: &mut MemStore) -> Result<(), StoreError> {
    pages(disk, collection, |page| live.merge_batch(collection, &page).map(drop))
}

/// Reads `collection` from the files a page at a time, in order, into `each`.
fn pages(
    disk: &impl DiskSide,
    collection: &str,
    mut each: impl FnMut(Vec<Record>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after: Option<(Position, Bytes)> = None;
    loop {
        let cursor = after.as_ref().map(|(p, k)| (*p, &k[..]));
        let page = disk.range(collection, Interval::full(), cursor, PAGE)?;
        let Some(last) = page.last() else { return Ok(()) };
        after = Some((last.pos, last.key.clone()));
        let full = page.len() == PAGE;
        each(page)?;
        if !full {
            return Ok(());
        }
    }
}

/// What the disk thread sends back when memory is rebuilt from the files.
enum Page {
    /// Every collection that exists on disk.
    Names(Vec<String>),
    /// Records of one collection, in order.
    Records(String, Vec<Record>),
}

/// Sends every collection's name, then its records a page at a time, through `to`.
fn send_pages(
    s: &impl DiskSide,
    to: &mpsc::SyncSender<Result<Page, StoreError>>,
) -> Result<(), StoreError> {
    let gone = || StoreError::Io("nobody reads the pages".into());
    to.send(Ok(Page::Names(s.known_collections()))).map_err(|_| gone())?;
    for c in s.collections()? {
        pages(s, &c, |page| to.send(Ok(Page::Records(c.clone(), page))).map_err(|_| gone()))?;
    }
    Ok(())
}

/// Makes `batch` on the disk store, in order: consecutive merges into one collection
/// staged together ([`DiskSide::stage`]). Every change is tried; the first failure is returned.
fn apply(s: &mut impl DiskSide, batch: Vec<(String, Vec<Change>)>) -> Result<(), StoreError> {
    let mut first = Ok(());
    let mut keep = |r: Result<(), StoreError>| {
        if let Err(e) = r {
            if first.is_ok() {
                first = Err(e);
            }
        }
    };
    for (collection, changes) in batch {
        for change in changes {
            keep(match change {
                Change::Logged(log) => s.stage(&collection, log),
                Change::Remove(pos, key) => s.remove(&collection, pos, &key).map(drop),
                Change::DeleteRange(interval) => s.delete_range(&collection, interval).map(drop),
            });
        }
    }
    first
}

impl<D: DiskSide> Drop for MemFirstStore<D> {
    fn drop(&mut self) {
        // Changes not flushed were never acknowledged: they go. When there are none,
        // what was written since the last hand-over is handed over, so the disk
        // thread's last checkpoint holds it and empties the log; else (memory holds
        // what was never acknowledged) the log is kept, and replayed at the next
        // start. The disk thread ends with its queue.
        if self.dirty().0 > 0 && self.batch.is_empty() {
            let _ = self.hand_over_marked();
        }
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<D: DiskSide> Store for MemFirstStore<D> {
    fn collections(&self) -> Result<Vec<String>, StoreError> {
        self.live.collections()
    }

    fn get(
        &self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Entry>, StoreError> {
        self.live.get(collection, pos, key)
    }

    fn version(
        &self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Version>, StoreError> {
        self.live.version(collection, pos, key)
    }

    fn warm(&self, collection: &str, pos: Position, part: dhrt_core::store::Warm) -> u64 {
        self.live.warm(collection, pos, part)
    }

    fn merge(
        &mut self,
        collection: &str,
        pos: Position,
        key: &Bytes,
        entry: Entry,
    ) -> Result<Merged, StoreError> {
        dhrt_core::store::validate_key(key)?;
        self.admit(collection, write_size(key, &entry), entry.is_tombstone())?;
        // Logged first so the entry itself moves into memory; taken back when it
        // changed nothing.
        let start = self.log_merge(collection, pos, key, &entry);
        let merged = self.live.merge(collection, pos, key, entry);
        if !merged.as_ref().is_ok_and(Merged::changed) {
            self.unlog(start);
        }
        let merged = merged?;
        self.known.insert_if_missing(collection);
        Ok(merged)
    }

    fn merge_batch(
        &mut self,
        collection: &str,
        records: &[Record],
    ) -> Result<Vec<Merged>, StoreError> {
        for r in records {
            dhrt_core::store::validate_key(&r.key)?;
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = records.iter().map(|r| write_size(&r.key, &r.entry)).sum();
        self.admit(collection, bytes, records.iter().all(|r| r.entry.is_tombstone()))?;
        let merged = self.live.merge_batch(collection, records)?;
        self.known.insert_if_missing(collection);
        for (r, m) in records.iter().zip(&merged) {
            if m.changed() {
                self.log_merge(collection, r.pos, &r.key, &r.entry);
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
        let removed = self.live.remove(collection, pos, key)?;
        if removed.is_some() {
            self.record(collection, Change::Remove(pos, Bytes::copy_from_slice(key)));
        }
        Ok(removed)
    }

    fn range(
        &self,
        collection: &str,
        interval: Interval,
        after: Option<(Position, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.live.range(collection, interval, after, limit)
    }

    fn delete_range(&mut self, collection: &str, interval: Interval) -> Result<u64, StoreError> {
        let removed = self.live.delete_range(collection, interval)?;
        if removed > 0 {
            self.record(collection, Change::DeleteRange(interval));
        }
        Ok(removed)
    }

    fn drop_collection(&mut self, collection: &str) -> Result<bool, StoreError> {
        if !self.known.contains(collection) {
            return Ok(false);
        }
        // What was changed before the drop reaches the disk before it (a drop voids it
        // anyway), then the drop is made durable there and waited for.
        if !self.batch.is_empty() {
            drop(self.hand_over(false)?);
        }
        let name = collection.to_string();
        self.call(move |s| s.drop_collection(&name).and_then(|had| s.flush().map(|()| had)))?;
        self.known.remove(collection);
        self.live.drop_collection(collection)
    }

    fn stats(&self, collection: &str) -> Result<CollectionStats, StoreError> {
        self.live.stats(collection)
    }

    fn wants_flush(&self) -> bool {
        // A checkpoint waits for what was written since the last hand-over, and no
        // write comes to carry it.
        self.dirty().0 > 0 && self.shared.wants_handover.load(Ordering::Acquire)
    }

    fn health(&self) -> StorageHealth {
        let mut health = lock(&self.shared.health).clone();
        // The room is read here (at most a second old), not taken from the disk
        // thread's last job: with no writes coming in there is no job, and a disk that
        // got its room back would read `full` until the next write.
        if let Some(free) = self.space.free() {
            health.free_bytes = Some(free);
            health.full = free < self.shared.keep_free.load(Ordering::Relaxed);
        }
        if let Some(e) = self.shared.failure() {
            health.error.get_or_insert_with(|| e.to_string());
        }
        health
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        match self.flush_begin()? {
            Some(job) => job.wait(),
            None => Ok(()),
        }
    }

    fn flush_begin(&mut self) -> Result<Option<SyncJob>, StoreError> {
        if !self.batch.is_empty() || self.squeezed || (self.dirty().0 > 0 && self.handover_due()) {
            return self.hand_over(true).map(Some);
        }
        if !self.in_flight() {
            return match self.shared.failure() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        // Nothing new, but earlier writes are still on their way to the disk: answers
        // of this batch (reads of them) wait for them too, and fail if they failed.
        self.hand_over(false).map(Some)
    }

    fn discard_uncommitted(&mut self) -> Result<(), StoreError> {
        // Everything queued runs first; then memory is rebuilt from what the files and
        // the log hold, and the changes not handed over yet are made again on top.
        // What was written since the last hand-over goes first: the log is not all
        // there is of it (its last append or sync may have failed), and the checkpoint
        // below must hold it.
        self.hand_over_marked()?;
        let (pages, from_disk) = mpsc::sync_channel::<Result<Page, StoreError>>(4);
        self.send(Job::Run(Box::new(move |s, shared| {
            // Staged writes reach the files first (reads do not see them before); a
            // failure here is the store's own to recover from, from its log.
            if let Err(e) = s.checkpoint() {
                tracing::warn!(error = %e, "checkpoint before reading back failed");
            }
            let sent = send_pages(s, &pages);
            if let Err(e) = sent {
                let _ = pages.send(Err(e));
            }
            *lock(&shared.failed) = None;
        })))?;
        let mut live = MemStore::new();
        let mut known = BTreeSet::new();
        for page in from_disk {
            match page? {
                Page::Names(names) => known = names.into_iter().collect(),
                Page::Records(c, records) => drop(live.merge_batch(&c, &records)?),
            }
        }
        // The changes not handed over yet, made again below, are marked again.
        live.track_changes();
        for (c, changes) in &self.batch {
            for change in changes {
                match change {
                    Change::Logged(log) => {
                        for r in decode_logged(log)? {
                            live.merge(c, r.pos, &r.key, r.entry)?;
                        }
                    }
                    Change::Remove(pos, key) => {
                        live.remove(c, *pos, key)?;
                    }
                    Change::DeleteRange(interval) => {
                        live.delete_range(c, *interval)?;
                    }
                }
            }
        }
        known.extend(self.batch.iter().map(|(c, _)| c.clone()));
        self.live = live;
        self.known = known;
        Ok(())
    }
}

/// `insert` without allocating the name when it is already there (every write asks).
trait InsertIfMissing {
    fn insert_if_missing(&mut self, name: &str);
}

impl InsertIfMissing for BTreeSet<String> {
    fn insert_if_missing(&mut self, name: &str) {
        if !self.contains(name) {
            self.insert(name.to_string());
        }
    }
}

#[cfg(test)]
mod tests;
