//! `FaultyStore`: any [`Store`] with injectable faults and a model of what a crash
//! keeps (feature `testing`).
//!
//! A disk fails in a few ways a node must survive: it fills up (ENOSPC, refused writes),
//! it fails reads, writes and fsyncs (EIO), a commit makes only part of its writes
//! durable before failing (a torn commit), and a crash loses whatever was not
//! committed. [`FaultyStore<S>`] wraps a store and lets a test (or the simulator) arm
//! those faults through a cloneable [`FaultHandle`]; with nothing armed it behaves
//! exactly like the store it wraps, and runs the conformance suite unchanged.
//!
//! The crash model: next to the wrapped store (what a running node sees) the wrapper
//! keeps a *durable image*, a [`MemStore`] that only a successful commit updates. Every
//! write that succeeds is logged; [`Store::flush_begin`] stages the log under a commit
//! number and returns a job that — when run, on any thread — applies every staged log
//! up to its own to the image (so a newer job covers older ones, as with a real fsync).
//! [`FaultHandle::recovered`] builds the store a restarted node finds: the image, and
//! nothing of what was staged or pending. After a failed commit
//! [`Store::discard_uncommitted`] puts every place the lost writes touched back to what
//! the image holds, so the running node sees what a restart would.

use super::{CollectionStats, MemStore, Merged, Record, Store, StoreError, SyncJob};
use crate::{entry::Entry, hash::Interval, hash::Position};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// One logged write.
#[derive(Debug, Clone)]
enum Op {
    Merge { collection: String, pos: Position, key: Bytes, entry: Entry },
    Remove { collection: String, pos: Position, key: Bytes },
    DeleteRange { collection: String, interval: Interval },
    Drop { collection: String },
}

impl Op {
    fn apply(&self, store: &mut MemStore) {
        // The image is an in-memory store that accepted these writes once already.
        let _ = match self {
            Op::Merge { collection, pos, key, entry } => {
                store.merge(collection, *pos, key, entry.clone()).map(|_| ())
            }
            Op::Remove { collection, pos, key } => store.remove(collection, *pos, key).map(|_| ()),
            Op::DeleteRange { collection, interval } => {
                store.delete_range(collection, *interval).map(|_| ())
            }
            Op::Drop { collection } => store.drop_collection(collection).map(|_| ()),
        };
    }
}

/// The faults armed; all off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Writes fail with [`StoreError::Full`] (ENOSPC) and write nothing.
    pub full: bool,
    /// Writes fail with [`StoreError::Io`] (EIO) and write nothing.
    pub write_errors: bool,
    /// Reads (`get`, `range`, `collections`, `stats`) fail with [`StoreError::Io`].
    pub read_errors: bool,
    /// The next this many [`Store::flush_begin`] calls fail (EIO before the fsync).
    pub failing_begins: u32,
    /// The next this many sync jobs fail (EIO from the fsync): nothing staged becomes
    /// durable.
    pub failing_syncs: u32,
    /// The next this many sync jobs are torn: the first half of the writes they cover
    /// become durable, then they fail.
    pub torn_syncs: u32,
}

/// What the wrapper counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Sync jobs that made their writes durable.
    pub commits: u64,
    /// Sync jobs or flush begins that failed (torn ones included).
    pub failed_commits: u64,
    /// Of those, torn ones.
    pub torn_commits: u64,
    /// Operations refused by an armed fault.
    pub refused: u64,
}

#[derive(Debug, Default)]
struct Shared {
    faults: Faults,
    stats: FaultStats,
    durable: MemStore,
    /// Writes since the last `flush_begin`.
    pending: Vec<Op>,
    /// Begun commits not yet durable, oldest first.
    staged: VecDeque<(u64, Vec<Op>)>,
    next_seq: u64,
}

/// A cloneable handle on a [`FaultyStore`]'s faults and durable image; it stays valid
/// when the store moves into a node.
#[derive(Debug, Clone, Default)]
pub struct FaultHandle(Arc<Mutex<Shared>>);

impl FaultHandle {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A test that panicked while holding the lock leaves consistent data behind.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the armed faults.
    pub fn arm(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.lock().faults);
    }

    /// The faults armed now.
    pub fn faults(&self) -> Faults {
        self.lock().faults
    }

    /// What was counted so far.
    pub fn stats(&self) -> FaultStats {
        self.lock().stats
    }

    /// The entry the durable image holds for `key` at `pos`.
    pub fn durable_get(&self, collection: &str, pos: Position, key: &[u8]) -> Option<Entry> {
        self.lock().durable.get(collection, pos, key).ok().flatten()
    }

    /// A copy of the durable image.
    pub fn durable(&self) -> MemStore {
        self.lock().durable.clone()
    }

    /// Writes not yet durable (logged or staged).
    pub fn uncommitted(&self) -> usize {
        let s = self.lock();
        s.pending.len() + s.staged.iter().map(|(_, ops)| ops.len()).sum::<usize>()
    }

    /// The store a node restarted after a crash finds: the durable image and nothing
    /// else; the handle (faults, image) carries over, the lost writes are forgotten.
    pub fn recovered(&self) -> FaultyStore<MemStore> {
        let mut s = self.lock();
        s.pending.clear();
        s.staged.clear();
        FaultyStore { inner: s.durable.clone(), handle: self.clone() }
    }

    /// Runs staged commit `seq` (and every older one): the body of a sync job. What a
    /// failed job did not make durable stays staged, for `discard_uncommitted`.
    fn sync(&self, seq: u64) -> Result<(), StoreError> {
        let mut s = self.lock();
        let mut ops: Vec<Op> = Vec::new();
        while s.staged.front().is_some_and(|(n, _)| *n <= seq) {
            if let Some((_, batch)) = s.staged.pop_front() {
                ops.extend(batch);
            }
        }
        let (durable, error) = if s.faults.failing_syncs > 0 {
            s.faults.failing_syncs -= 1;
            (0, Some("injected: fsync failed (EIO)"))
        } else if s.faults.torn_syncs > 0 {
            s.faults.torn_syncs -= 1;
            s.stats.torn_commits += 1;
            (ops.len() / 2, Some("injected: torn commit, only part was written (EIO)"))
        } else {
            (ops.len(), None)
        };
        let lost = ops.split_off(durable);
        for op in &ops {
            op.apply(&mut s.durable);
        }
        match error {
            Some(e) => {
                s.stats.failed_commits += 1;
                s.staged.push_front((seq, lost));
                Err(StoreError::Io(e.into()))
            }
            None => {
                s.stats.commits += 1;
                Ok(())
            }
        }
    }
}

/// A [`Store`] with injectable faults and a durable image (see the module docs).
#[derive(Debug)]
pub struct FaultyStore<S: Store> {
    inner: S,
    handle: FaultHandle,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner`, whose current contents count as durable.
    pub fn new(inner: S) -> Result<Self, StoreError> {
        let mut durable = MemStore::new();
        for collection in inner.collections()? {
            let mut after: Option<(Position, Bytes)> = None;
            loop {
                let cursor = after.as_ref().map(|(p, k)| (*p, &k[..]));
                let page = inner.range(&collection, Interval::full(), cursor, 1024)?;
                let Some(last) = page.last() else { break };
                after = Some((last.pos, last.key.clone()));
                durable.merge_batch(&collection, &page)?;
            }
        }
        let handle = FaultHandle::default();
        handle.lock().durable = durable;
        Ok(FaultyStore { inner, handle })
    }

    /// The handle to arm faults and read the durable image.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn check_read(&self) -> Result<(), StoreError> {
        let mut s = self.handle.lock();
        if s.faults.read_errors {
            s.stats.refused += 1;
            return Err(StoreError::Io("injected: read failed (EIO)".into()));
        }
        Ok(())
    }

    fn check_write(&self) -> Result<(), StoreError> {
        let mut s = self.handle.lock();
        if s.faults.full {
            s.stats.refused += 1;
            return Err(StoreError::Full("injected: no space left on device (ENOSPC)".into()));
        }
        if s.faults.write_errors {
            s.stats.refused += 1;
            return Err(StoreError::Io("injected: write failed (EIO)".into()));
        }
        Ok(())
    }

    fn log(&self, ops: impl IntoIterator<Item = Op>) {
        self.handle.lock().pending.extend(ops);
    }

    /// Puts the place `op` touched back to what the durable image holds.
    fn restore(&mut self, op: &Op, durable: &MemStore) -> Result<(), StoreError> {
        let (collection, interval) = match op {
            Op::Merge { collection, pos, key, .. } | Op::Remove { collection, pos, key } => {
                self.inner.remove(collection, *pos, key)?;
                if let Some(e) = durable.get(collection, *pos, key)? {
                    self.inner.merge(collection, *pos, key, e)?;
                }
                return Ok(());
            }
            Op::DeleteRange { collection, interval } => (collection, *interval),
            Op::Drop { collection } => (collection, Interval::full()),
        };
        // Records written into the range after it was emptied are restored by their own
        // ops; here the durable ones come back.
        let mut after: Option<(Position, Bytes)> = None;
        loop {
            let cursor = after.as_ref().map(|(p, k)| (*p, &k[..]));
            let page = durable.range(collection, interval, cursor, 1024)?;
            let Some(last) = page.last() else { return Ok(()) };
            after = Some((last.pos, last.key.clone()));
            self.inner.merge_batch(collection, &page)?;
        }
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn collections(&self) -> Result<Vec<String>, StoreError> {
        self.check_read()?;
        self.inner.collections()
    }

    fn get(
        &self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Entry>, StoreError> {
        self.check_read()?;
        self.inner.get(collection, pos, key)
    }

    fn merge(
        &mut self,
        collection: &str,
        pos: Position,
        key: &Bytes,
        entry: Entry,
    ) -> Result<Merged, StoreError> {
        self.check_write()?;
        let op = Op::Merge {
            collection: collection.to_string(),
            pos,
            key: key.clone(),
            entry: entry.clone(),
        };
        let merged = self.inner.merge(collection, pos, key, entry)?;
        self.log([op]);
        Ok(merged)
    }

    fn merge_batch(
        &mut self,
        collection: &str,
        records: &[Record],
    ) -> Result<Vec<Merged>, StoreError> {
        self.check_write()?;
        let merged = self.inner.merge_batch(collection, records)?;
        self.log(records.iter().map(|r| Op::Merge {
            collection: collection.to_string(),
            pos: r.pos,
            key: r.key.clone(),
            entry: r.entry.clone(),
        }));
        Ok(merged)
    }

    fn remove(
        &mut self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Entry>, StoreError> {
        self.check_write()?;
        let old = self.inner.remove(collection, pos, key)?;
        let key = Bytes::copy_from_slice(key);
        self.log([Op::Remove { collection: collection.to_string(), pos, key }]);
        Ok(old)
    }

    fn range(
        &self,
        collection: &str,
        interval: Interval,
        after: Option<(Position, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.check_read()?;
        self.inner.range(collection, interval, after, limit)
    }

    fn delete_range(&mut self, collection: &str, interval: Interval) -> Result<u64, StoreError> {
        self.check_write()?;
        let n = self.inner.delete_range(collection, interval)?;
        self.log([Op::DeleteRange { collection: collection.to_string(), interval }]);
        Ok(n)
    }

    fn drop_collection(&mut self, collection: &str) -> Result<bool, StoreError> {
        self.check_write()?;
        let existed = self.inner.drop_collection(collection)?;
        self.log([Op::Drop { collection: collection.to_string() }]);
        Ok(existed)
    }

    fn stats(&self, collection: &str) -> Result<CollectionStats, StoreError> {
        self.check_read()?;
        self.inner.stats(collection)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        match self.flush_begin()? {
            Some(job) => job.wait(),
            None => Ok(()),
        }
    }

    fn flush_begin(&mut self) -> Result<Option<SyncJob>, StoreError> {
        {
            let mut s = self.handle.lock();
            if s.faults.failing_begins > 0 {
                s.faults.failing_begins -= 1;
                s.stats.failed_commits += 1;
                return Err(StoreError::Io("injected: commit failed (EIO)".into()));
            }
        }
        let inner_job = self.inner.flush_begin()?;
        let seq = {
            let mut s = self.handle.lock();
            s.next_seq += 1;
            let seq = s.next_seq;
            let ops = std::mem::take(&mut s.pending);
            s.staged.push_back((seq, ops));
            seq
        };
        let handle = self.handle.clone();
        Ok(Some(SyncJob::run(move || {
            if let Some(job) = inner_job {
                if let Err(e) = job.wait() {
                    handle.lock().stats.failed_commits += 1;
                    return Err(e);
                }
            }
            handle.sync(seq)
        })))
    }

    fn discard_uncommitted(&mut self) -> Result<(), StoreError> {
        self.inner.discard_uncommitted()?;
        let (lost, durable) = {
            let mut s = self.handle.lock();
            let mut lost: Vec<Op> = s.staged.drain(..).flat_map(|(_, ops)| ops).collect();
            lost.append(&mut s.pending);
            (lost, s.durable.clone())
        };
        for op in &lost {
            self.restore(op, &durable)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::Timestamp, entry::NodeId};

    crate::store_conformance_tests!(FaultyStore::new(MemStore::new()).unwrap());

    fn v(ts: u64, value: &'static str) -> Entry {
        Entry::value(Bytes::from_static(value.as_bytes()), Timestamp(ts), NodeId(1))
    }

    fn k(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn put(s: &mut FaultyStore<MemStore>, pos: Position, key: &'static str, ts: u64) {
        s.merge("c", pos, &k(key), v(ts, "x")).unwrap();
    }

    #[test]
    fn full_and_io_errors_refuse_writes_and_write_nothing() {
        let mut s = FaultyStore::new(MemStore::new()).unwrap();
        let h = s.handle();
        h.arm(|f| f.full = true);
        assert!(matches!(s.merge("c", 1, &k("a"), v(1, "x")), Err(StoreError::Full(_))));
        h.arm(|f| {
            f.full = false;
            f.write_errors = true;
        });
        assert!(matches!(s.remove("c", 1, b"a"), Err(StoreError::Io(_))));
        assert!(matches!(s.delete_range("c", Interval::full()), Err(StoreError::Io(_))));
        h.arm(|f| f.write_errors = false);
        assert_eq!(s.get("c", 1, b"a").unwrap(), None);
        assert_eq!(h.uncommitted(), 0);
        assert_eq!(h.stats().refused, 3);
    }

    #[test]
    fn read_errors_are_errors_not_absence() {
        let mut s = FaultyStore::new(MemStore::new()).unwrap();
        put(&mut s, 1, "a", 1);
        s.handle().arm(|f| f.read_errors = true);
        assert!(matches!(s.get("c", 1, b"a"), Err(StoreError::Io(_))));
        assert!(s.range("c", Interval::full(), None, 10).is_err());
        assert!(s.collections().is_err() && s.stats("c").is_err());
    }

    #[test]
    fn only_a_successful_commit_reaches_the_durable_image() {
        let mut s = FaultyStore::new(MemStore::new()).unwrap();
        let h = s.handle();
        put(&mut s, 1, "a", 1);
        assert_eq!(h.durable_get("c", 1, b"a"), None, "not committed yet");
        let job = s.flush_begin().unwrap().unwrap();
        put(&mut s, 2, "b", 1);
        assert_eq!(h.durable_get("c", 1, b"a"), None, "begun, not synced");
        job.wait().unwrap();
        assert!(h.durable_get("c", 1, b"a").is_some());
        assert_eq!(h.durable_get("c", 2, b"b"), None, "written after the commit began");
        // A crash now loses b.
        let restarted = h.recovered();
        assert!(restarted.get("c", 1, b"a").unwrap().is_some());
        assert_eq!(restarted.get("c", 2, b"b").unwrap(), None);
    }

    #[test]
    fn a_newer_job_covers_older_ones() {
        let mut s = FaultyStore::new(MemStore::new()).unwrap();
        let h = s.handle();
        put(&mut s, 1, "a", 1);
        let _skipped = s.flush_begin().unwrap().unwrap();
        put(&mut s, 2, "b", 1);
        let newest = s.flush_begin().unwrap().unwrap();
        newest.wait().unwrap();
        assert!(h.durable_get("c", 1, b"a").is_some() && h.durable_get("c", 2, b"b").is_some());
    }

    #[test]
    fn failed_and_torn_commits_are_discarded_from_the_live_view() {
        let mut s = FaultyStore::new(MemStore::new()).unwrap();
        let h = s.handle();
        put(&mut s, 1, "a", 1);
        s.flush().unwrap();
        // A failed fsync: the overwrite and the new key are lost.
        put(&mut s, 1, "a", 2);
        put(&mut s, 2, "b", 1);
        h.arm(|f| f.failing_syncs = 1);
        assert!(s.flush().is_err());
        s.discard_uncommitted().unwrap();
        assert_eq!(s.get("c", 1, b"a").unwrap().map(|e| e.ts), Some(Timestamp(1)));
        assert_eq!(s.get("c", 2, b"b").unwrap(), None);
        // A torn commit of four writes keeps the first two; a dropped range comes back.
        for (i, key) in ["w", "x", "y", "z"].into_iter().enumerate() {
            put(&mut s, 10 + i as u64, key, 5);
        }
        s.delete_range("c", Interval { start: 0, end: 1 }).unwrap();
        h.arm(|f| f.torn_syncs = 1);
        assert!(s.flush().is_err());
        s.discard_uncommitted().unwrap();
        let live: Vec<Bytes> =
            s.range("c", Interval::full(), None, 100).unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(live, [k("a"), k("w"), k("x")]);
        assert_eq!(h.recovered().range("c", Interval::full(), None, 100).unwrap().len(), 3);
        assert_eq!(h.stats().torn_commits, 1);
        assert_eq!(h.stats().failed_commits, 2);
    }

    #[test]
    fn a_failing_begin_is_an_error_and_the_writes_stay_uncommitted() {
        let mut s = FaultyStore::new(MemStore::new()).unwrap();
        let h = s.handle();
        put(&mut s, 1, "a", 1);
        h.arm(|f| f.failing_begins = 1);
        assert!(matches!(s.flush_begin(), Err(StoreError::Io(_))));
        assert_eq!(h.uncommitted(), 1);
        s.discard_uncommitted().unwrap();
        assert_eq!(s.get("c", 1, b"a").unwrap(), None);
    }

    #[test]
    fn wrapping_a_store_with_data_counts_it_durable() {
        let mut inner = MemStore::new();
        inner.merge("c", 3, &k("a"), v(1, "x")).unwrap();
        let s = FaultyStore::new(inner).unwrap();
        assert!(s.handle().durable_get("c", 3, b"a").is_some());
    }
}
