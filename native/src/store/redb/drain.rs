//! A checkpoint written a step at a time, beside the log: what keeps a write-behind
//! node's batches from waiting behind a checkpoint.
//!
//! A memory-first node's disk side ([`RedbStore::stage`]) keeps the newest write of
//! each key until a checkpoint writes them into the collection files. Written in one
//! go, 100,000 staged keys took ~130 ms of B-tree inserts and ~35 ms of commit, and
//! every batch that arrived meanwhile waited (a p99.9 of 200 ms, docs/benchmarks.md).
//! So when the log passes its bound, the log is sealed ([`super::wal::Wal::seal`]: its
//! file renamed aside, appends go to a fresh one), the staged writes are set aside as
//! a *drain*, sorted by key, and the disk thread writes [`STEP`] of them into the
//! files' transactions between two batches ([`RedbStore::checkpoint_step`]); new
//! writes are logged and staged anew meanwhile, and the steps are paced by them (one
//! is due when the drain would not be written by the time half the next checkpoint's
//! writes arrived; any step goes when nothing waits for the disk). Once all are
//! written, the transactions are committed on a thread of their own (`dhrt-commit`)
//! while the disk thread goes on logging, and the sealed log is deleted once that
//! commit is durable. A write to one of those files meanwhile waits in redb for it.
//!
//! Why nothing is lost: the sealed log is deleted only after the commit of everything
//! it holds is durable, and a crash before that replays both logs (merges keep the
//! newest version, so replaying what is already in a file changes nothing).
//! A removal, a range delete or a drop first writes what is left of the drain for its
//! collection (older than the removal, so it must not land after it), and anything
//! that checkpoints in full takes the drain's remainder back into the staged writes.
//! A step or a commit that fails leaves the log whole and makes the next flush
//! checkpoint in full, the way a failed checkpoint always has.

use super::{commit, merge_into, RedbStore, Staged};
use dhrt_core::{
    hash::Position,
    store::{CollectionStats, StoreError},
};
use std::collections::VecDeque;
use std::sync::mpsc;

/// Records written into the files per step: about a millisecond and a half of
/// B-tree inserts, so a batch waits at most that long behind a step.
pub(crate) const STEP: usize = 1024;

/// A collection's staged writes, handed out in key order.
struct Sorted {
    records: Vec<Option<Staged>>,
    /// Indexes into `records`, in key order, of those not handed out yet.
    order: std::vec::IntoIter<u32>,
}

impl Sorted {
    /// Orders `records` by (position, key). Sorting the positions with an index each
    /// (the key is read only where positions tie) moves 16 bytes an element instead of
    /// a whole write: 100,000 staged writes took 12-36 ms sorted in place, a pause for
    /// every batch waiting behind it.
    /// (Collected once, straight into the slots they are handed out of: a second
    /// copy of 100,000 writes was fresh pages to fault in at every checkpoint.)
    fn new(records: impl Iterator<Item = Staged>) -> Sorted {
        let records: Vec<Option<Staged>> = records.map(Some).collect();
        let key = |i: u32| records[i as usize].as_ref().map(|((_, key), _)| key);
        let mut order: Vec<(Position, u32)> = (0u32..)
            .zip(&records)
            .filter_map(|(i, r)| r.as_ref().map(|((pos, _), _)| (*pos, i)))
            .collect();
        order.sort_unstable_by(|(a, i), (b, j)| a.cmp(b).then_with(|| key(*i).cmp(&key(*j))));
        let order: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
        Sorted { records, order: order.into_iter() }
    }

    /// How many are left.
    fn left(&self) -> usize {
        self.order.len()
    }
}

impl Iterator for Sorted {
    type Item = Staged;

    fn next(&mut self) -> Option<Staged> {
        let i = self.order.next()?;
        self.records.get_mut(i as usize).and_then(Option::take)
    }
}

/// A checkpoint in progress (see the module docs).
pub(super) struct Drain {
    /// What is left to write, collection by collection, each in key order.
    queue: VecDeque<(String, Sorted)>,
    /// The bytes of its writes, counted in [`RedbStore::txn_bytes`] until it commits.
    bytes: u64,
    /// Records it began with.
    pub(super) total: u64,
    /// Records written so far.
    pub(super) done: u64,
    /// Writes staged since it began (the pace it keeps).
    pub(super) since: u64,
    /// Its commit, once every record is written: running on a thread of its own.
    committing: Option<mpsc::Receiver<Committed>>,
    /// The bytes free and those of the log's file when the commit began, to learn what it
    /// took of the disk ([`RedbStore::learn_cow`]).
    before: Option<(u64, u64)>,
}

/// What a commit thread did: each collection, the counts it committed, and how it went.
type Committed = Vec<(String, CollectionStats, Result<(), StoreError>)>;

impl RedbStore {
    /// Whether a checkpoint is being written step by step.
    pub(crate) fn checkpointing(&self) -> bool {
        self.draining.is_some()
    }

    /// Seals the log and sets what is staged aside as a drain, to be written step by
    /// step. Called right after the log took every staged write (a flush's append), so
    /// the sealed log holds them all. When the log cannot be sealed, the next flush
    /// checkpoints in full instead.
    pub(super) fn begin_drain(&mut self) {
        if self.draining.is_some() || self.staged.is_empty() {
            return;
        }
        if let Err(e) = self.wal.seal() {
            tracing::warn!(error = %e, "cannot seal the write-ahead log: checkpointing in full");
            self.checkpoint_due = true;
            return;
        }
        let queue: VecDeque<(String, Sorted)> = std::mem::take(&mut self.staged)
            .into_iter()
            // Hashed while they came, sorted once: the file's B-tree takes them in key
            // order.
            .map(|(name, mut map)| {
                let sorted = Sorted::new(map.drain());
                self.keep_spare(map);
                (name, sorted)
            })
            .collect();
        for c in self.collections.values_mut() {
            c.in_txn = 0;
        }
        let total = queue.iter().map(|(_, sorted)| sorted.left() as u64).sum();
        self.draining = Some(Drain {
            queue,
            bytes: self.txn_bytes,
            total,
            done: 0,
            since: 0,
            committing: None,
            before: None,
        });
    }

    /// Writes the next [`STEP`] records of the drain into their file's transaction, or,
    /// once all are written, commits and deletes the sealed log — when `idle` (nothing
    /// waits for the disk), or when a step is due: the drain is paced to be written by
    /// the time half the writes that trigger the next checkpoint have come in, so under
    /// load a step follows every few batches instead of every one. Nothing to do
    /// without a drain.
    pub(crate) fn checkpoint_step(&mut self, idle: bool) -> Result<(), StoreError> {
        if !idle && !self.step_due() {
            return Ok(());
        }
        let Some(drain) = self.draining.take() else { return Ok(()) };
        if let Some(committing) = &drain.committing {
            return match committing.try_recv() {
                Ok(committed) => self.end_commit(drain, committed),
                Err(mpsc::TryRecvError::Empty) => {
                    self.draining = Some(drain);
                    Ok(())
                }
                Err(mpsc::TryRecvError::Disconnected) => self.end_commit(drain, Vec::new()),
            };
        }
        let Some(name) = drain.queue.front().map(|(name, _)| name.clone()) else {
            self.begin_commit(drain);
            return Ok(());
        };
        // Room to open its file first, while the step is still in the drain (a full
        // checkpoint after a failure here writes it).
        self.draining = Some(drain);
        if let Err(e) = self.make_room(&name) {
            self.checkpoint_due = true;
            return Err(e);
        }
        let Some(drain) = self.draining.as_mut() else { return Ok(()) };
        let Some((name, mut rest)) = drain.queue.pop_front() else { return Ok(()) };
        let step: Vec<Staged> = rest.by_ref().take(STEP).collect();
        drain.done += step.len() as u64;
        if rest.left() > 0 {
            drain.queue.push_front((name.clone(), rest));
        }
        let written = self.write(&name, true, |table, stats| {
            let mut buf = Vec::new();
            step.iter().try_for_each(|((pos, key), entry)| {
                merge_into(table, stats, (*pos, key, entry), &mut buf).map(drop)
            })
        });
        if let Err(e) = written {
            // The collection was recovered from the log (or will be, before its next
            // use): the log holds every write of the drain, and is kept whole until a
            // full checkpoint.
            self.checkpoint_due = true;
            return Err(e);
        }
        Ok(())
    }

    /// Whether the drain is behind its pace — `done / total` short of the share of half
    /// [`RedbOptions::checkpoint_writes`] staged since it began — or all written and
    /// left to commit.
    fn step_due(&self) -> bool {
        let Some(drain) = &self.draining else { return false };
        if drain.queue.is_empty() {
            return true; // all written: the commit
        }
        let since = drain.since;
        let half = (self.options.checkpoint_writes / 2).max(1);
        u128::from(drain.done) * u128::from(half)
            < u128::from(since) * u128::from(drain.total.max(1))
    }

    /// Hands every transaction the drain wrote into to a thread that commits them (the
    /// commit's writes and fsyncs took 25-48 ms of 100,000 staged keys, a pause for
    /// every batch while the disk thread did it). Their files are not closed meanwhile;
    /// a write to one of them waits in redb until the commit is done. The outcome is
    /// taken by a later step ([`RedbStore::end_commit`]).
    fn begin_commit(&mut self, mut drain: Drain) {
        let mut txns = Vec::new();
        for (name, c) in &mut self.collections {
            let h = c.handle.get_mut();
            let Some(txn) = h.txn.take() else { continue };
            h.committing = true;
            c.in_txn = 0;
            txns.push((name.clone(), c.stats, txn));
        }
        let (done, committing) = mpsc::sync_channel(1);
        let run = move || {
            let committed: Committed = txns
                .into_iter()
                .map(|(name, stats, txn)| {
                    let outcome = commit(txn, &stats)
                        .map_err(|e| super::with_context(&e, &format!("committing {name}")));
                    (name, stats, outcome)
                })
                .collect();
            let _ = done.send(committed);
        };
        drain.committing = Some(committing);
        drain.before = self.probe();
        if let Err(e) = std::thread::Builder::new().name("dhrt-commit".into()).spawn(run) {
            // No thread to be had: what was to be committed is aborted with the closure,
            // and the log, kept whole, has it all.
            tracing::warn!(error = %e, "cannot start a commit thread: checkpointing in full");
        }
        self.draining = Some(drain);
    }

    /// Takes a commit's outcome: each collection committed has its counts as committed;
    /// one that failed (or a commit thread that never answered) is recovered from the
    /// log, which is then kept whole until a full checkpoint. When all went well the
    /// sealed log is deleted and the drain is over.
    fn end_commit(&mut self, drain: Drain, committed: Committed) -> Result<(), StoreError> {
        let mut first_error = None;
        let mut failed = Vec::new();
        let mut answered = std::collections::BTreeSet::new();
        for (name, stats, outcome) in committed {
            answered.insert(name.clone());
            let Some(c) = self.collections.get_mut(&name) else { continue };
            match outcome {
                Ok(()) => c.committed = stats,
                Err(e) => {
                    first_error.get_or_insert(e.clone());
                    failed.push((name, e));
                }
            }
        }
        for (name, c) in &mut self.collections {
            let h = c.handle.get_mut();
            if h.committing && !answered.contains(name) {
                let e = StoreError::Io(format!("the commit of {name} did not finish"));
                first_error.get_or_insert(e.clone());
                failed.push((name.clone(), e));
            }
            h.committing = false;
        }
        self.txn_bytes = self.txn_bytes.saturating_sub(drain.bytes);
        for (name, e) in failed {
            tracing::warn!(collection = %name, error = %e, "checkpoint failed: recovering from the log");
            self.close_after_failure(&name, e);
        }
        let recovered = self.recover_all();
        let cut = match first_error.map_or(recovered, Err) {
            Ok(()) => self.wal.drop_sealed(),
            Err(e) => Err(e),
        };
        if let Err(e) = cut {
            self.trouble = Some(e.to_string());
            self.checkpoint_due = true;
            self.note_failure();
            return Err(e);
        }
        self.trouble = None;
        self.learn_cow(drain.bytes, drain.before);
        self.close_idle();
        Ok(())
    }

    /// Whether the drain's commit has begun and not been taken yet.
    #[cfg(test)]
    pub(super) fn commit_begun(&self) -> bool {
        self.draining.as_ref().is_some_and(|d| d.committing.is_some())
    }

    /// Waits for a commit in progress and takes its outcome (before a full checkpoint
    /// or a drop, which must not overlap it).
    pub(super) fn wait_commit(&mut self) -> Result<(), StoreError> {
        let Some(drain) = self.draining.take() else { return Ok(()) };
        let Some(committing) = &drain.committing else {
            self.draining = Some(drain);
            return Ok(());
        };
        let committed = committing.recv().unwrap_or_default();
        self.end_commit(drain, committed)
    }

    /// Puts what is left of the drain — of `collection`, or all of it — back among the
    /// staged writes, under any newer write of the same key, for a checkpoint or a
    /// removal that writes them now.
    pub(super) fn undrain(&mut self, collection: Option<&str>) {
        let Some(drain) = self.draining.as_mut() else { return };
        let mut kept = VecDeque::new();
        for (name, rest) in std::mem::take(&mut drain.queue) {
            if collection.is_some_and(|c| c != name) {
                kept.push_back((name, rest));
                continue;
            }
            let staged = self.staged.entry(name).or_default();
            for (at, entry) in rest {
                staged.entry(at).or_insert(entry);
            }
        }
        drain.queue = kept;
        if collection.is_none() {
            self.draining = None;
        }
    }

    /// Forgets what is left of the drain for `collection` (dropped, or to be recovered
    /// from the log, which holds it).
    pub(super) fn forget_drained(&mut self, collection: &str) {
        if let Some(drain) = self.draining.as_mut() {
            drain.queue.retain(|(name, _)| name != collection);
        }
    }
}

impl Drop for RedbStore {
    /// A commit still running on its thread is waited for, so the files are not closed
    /// under it.
    fn drop(&mut self) {
        if let Some(committing) = self.draining.as_ref().and_then(|d| d.committing.as_ref()) {
            let _ = committing.recv();
        }
    }
}
