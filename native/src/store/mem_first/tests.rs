//! `MemFirstStore` tests: the conformance suite over the real files, then what writing
//! behind adds — acknowledged only once on disk, crashes, failures, refusals — over a
//! fault-injecting disk side whose durable image is what a crash keeps.

use super::*;
use dhrt_core::{
    clock::Timestamp,
    entry::NodeId,
    store::faulty::{FaultHandle, FaultyStore},
};
use tempfile::TempDir;

/// A store in a fresh temporary data dir, removed with it.
struct TempStore {
    store: MemFirstStore,
    _dir: TempDir,
}

impl TempStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = MemFirstStore::open(dir.path(), RedbOptions::default()).unwrap();
        TempStore { store, _dir: dir }
    }
}

/// Every call goes to the store, and each write is flushed and waited for, so the
/// suite also runs through the disk thread.
impl Store for TempStore {
    fn collections(&self) -> Result<Vec<String>, StoreError> {
        self.store.collections()
    }
    fn get(&self, c: &str, pos: Position, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.store.get(c, pos, key)
    }
    fn merge(&mut self, c: &str, pos: Position, k: &Bytes, e: Entry) -> Result<Merged, StoreError> {
        let out = self.store.merge(c, pos, k, e);
        self.store.flush()?;
        out
    }
    fn merge_batch(&mut self, c: &str, records: &[Record]) -> Result<Vec<Merged>, StoreError> {
        let out = self.store.merge_batch(c, records);
        self.store.flush()?;
        out
    }
    fn remove(&mut self, c: &str, pos: Position, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        let out = self.store.remove(c, pos, key);
        self.store.flush()?;
        out
    }
    fn range(
        &self,
        c: &str,
        interval: Interval,
        after: Option<(Position, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.store.range(c, interval, after, limit)
    }
    fn delete_range(&mut self, c: &str, interval: Interval) -> Result<u64, StoreError> {
        let out = self.store.delete_range(c, interval);
        self.store.flush()?;
        out
    }
    fn drop_collection(&mut self, c: &str) -> Result<bool, StoreError> {
        self.store.drop_collection(c)
    }
    fn stats(&self, c: &str) -> Result<CollectionStats, StoreError> {
        self.store.stats(c)
    }
}

mod conformance {
    use super::TempStore;
    dhrt_core::store_conformance_tests!(TempStore::new());
}

impl DiskSide for FaultyStore<MemStore> {
    fn keep_free(&self) -> u64 {
        0
    }
    fn known_collections(&self) -> Vec<String> {
        self.collections().unwrap_or_default()
    }
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.flush()
    }
}

fn v(ts: u64, value: &str) -> Entry {
    Entry::value(Bytes::copy_from_slice(value.as_bytes()), Timestamp(ts), NodeId(1))
}

fn k(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A store writing behind to a fault-injecting in-memory disk side.
fn faulty(dir: &TempDir) -> (MemFirstStore<FaultyStore<MemStore>>, FaultHandle) {
    let disk = FaultyStore::new(MemStore::new()).unwrap();
    let handle = disk.handle();
    let space = SpaceReserve::new(dir.path().to_path_buf(), 0);
    (MemFirstStore::over(disk, space, 10).unwrap(), handle)
}

#[test]
fn a_write_is_on_disk_once_its_flush_job_returns_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = faulty(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(1, "x")), "read from memory at once");
    assert_eq!(disk.durable_get("c", 1, b"a"), None, "nothing handed over before a flush");
    let job = s.flush_begin().unwrap().expect("a job to wait for");
    job.wait().unwrap();
    assert_eq!(disk.durable_get("c", 1, b"a"), Some(v(1, "x")), "durable when the job returns");
    assert!(s.flush_begin().unwrap().is_none(), "nothing new, nothing in flight");
}

#[test]
fn a_crash_keeps_what_was_flushed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = faulty(&dir);
    s.merge("c", 1, &k("acked"), v(1, "x")).unwrap();
    s.flush().unwrap();
    s.merge("c", 2, &k("pending"), v(1, "y")).unwrap();
    let after = disk.recovered();
    assert_eq!(after.get("c", 1, b"acked").unwrap(), Some(v(1, "x")));
    assert_eq!(after.get("c", 2, b"pending").unwrap(), None);
    // Restarted over what the crash kept, the store reads it back into memory.
    let space = SpaceReserve::new(dir.path().to_path_buf(), 0);
    let again = MemFirstStore::over(after, space, 10).unwrap();
    assert_eq!(again.get("c", 1, b"acked").unwrap(), Some(v(1, "x")));
    assert_eq!(again.get("c", 2, b"pending").unwrap(), None);
    assert_eq!(again.stats("c").unwrap().entries, 1);
}

#[test]
fn a_failed_flush_fails_its_job_and_discarding_shows_what_is_durable_plus_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = faulty(&dir);
    s.merge("c", 1, &k("acked"), v(1, "x")).unwrap();
    s.flush().unwrap();
    disk.arm(|f| f.write_errors = true);
    s.merge("c", 2, &k("lost"), v(1, "y")).unwrap();
    s.merge("c", 1, &k("acked"), v(2, "overwritten")).unwrap();
    let err = s.flush().unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err}");
    assert!(s.health().error.is_some(), "the failure shows in the health");
    // A flush with nothing new still fails until the node discards: a read of the lost
    // write must not be answered as if it were durable.
    assert!(s.flush().is_err());
    disk.arm(|f| f.write_errors = false);
    s.merge("c", 3, &k("after"), v(1, "z")).unwrap(); // not handed over yet
    s.discard_uncommitted().unwrap();
    assert_eq!(s.get("c", 1, b"acked").unwrap(), Some(v(1, "x")), "back to what is durable");
    assert_eq!(s.get("c", 2, b"lost").unwrap(), None, "the failed write is gone");
    assert_eq!(s.get("c", 3, b"after").unwrap(), Some(v(1, "z")), "the newer one stays");
    assert_eq!(s.stats("c").unwrap().entries, 2);
    s.flush().unwrap();
    assert_eq!(disk.durable_get("c", 3, b"after"), Some(v(1, "z")));
    assert!(s.health().error.is_none());
}

#[test]
fn removals_and_range_deletes_reach_the_disk_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = faulty(&dir);
    for i in 0..10u64 {
        s.merge("c", i, &k(&format!("k{i}")), v(1, "x")).unwrap();
    }
    s.remove("c", 3, b"k3").unwrap();
    s.delete_range("c", Interval::new(5, 8)).unwrap();
    s.merge("c", 7, &k("k7"), v(2, "back")).unwrap();
    s.flush().unwrap();
    let image = disk.durable();
    let keys: Vec<Bytes> =
        image.range("c", Interval::full(), None, 100).unwrap().into_iter().map(|r| r.key).collect();
    let live: Vec<Bytes> =
        s.range("c", Interval::full(), None, 100).unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, live, "the disk holds what memory shows");
    assert_eq!(keys.len(), 7);
    assert_eq!(image.get("c", 7, b"k7").unwrap(), Some(v(2, "back")));
}

#[test]
fn a_dropped_collection_is_gone_from_memory_and_disk_and_earlier_writes_do_not_revive_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = faulty(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.flush().unwrap();
    s.merge("c", 2, &k("b"), v(1, "x")).unwrap(); // not flushed before the drop
    assert!(s.drop_collection("c").unwrap());
    s.flush().unwrap();
    assert_eq!(s.collections().unwrap(), Vec::<String>::new());
    assert_eq!(disk.durable().collections().unwrap(), Vec::<String>::new());
    assert!(!s.drop_collection("c").unwrap(), "dropping twice is a no-op");
}

#[test]
fn refusals_come_before_anything_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FaultyStore::new(MemStore::new()).unwrap();
    let full = SpaceReserve::new(dir.path().to_path_buf(), u64::MAX);
    let mut s = MemFirstStore::over(disk, full, 2).unwrap();
    let err = s.merge("c", 1, &k("a"), v(1, "x")).unwrap_err();
    assert!(matches!(err, StoreError::Full(_)), "{err}");
    assert_eq!(s.get("c", 1, b"a").unwrap(), None, "nothing of a refused write");
    // A tombstone still goes in below the reserve: deletes keep working on a full disk.
    let tomb = Entry::tombstone(Timestamp(2), NodeId(1));
    assert_eq!(s.merge("c", 1, &k("a"), tomb.clone()).unwrap(), Merged::Inserted);
    s.flush().unwrap();
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(tomb));

    let (mut s, _disk) = faulty(&dir);
    for c in 0..10 {
        s.merge(&format!("c{c}"), 1, &k("a"), v(1, "x")).unwrap();
    }
    let err = s.merge("one-too-many", 1, &k("a"), v(1, "x")).unwrap_err();
    assert!(matches!(err, StoreError::Limit(_)), "{err}");
    assert!(s.drop_collection("c0").unwrap());
    s.merge("one-too-many", 1, &k("a"), v(1, "x")).unwrap();
}

#[test]
fn flushed_writes_survive_a_reopen_of_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = MemFirstStore::open(dir.path(), RedbOptions::default()).unwrap();
    for i in 0..3000u64 {
        s.merge("c", i, &k(&format!("k{i}")), v(1, "x")).unwrap();
    }
    s.remove("c", 7, b"k7").unwrap();
    s.flush().unwrap();
    s.merge("c", 9999, &k("unflushed"), v(1, "x")).unwrap();
    drop(s);
    let s = MemFirstStore::open(dir.path(), RedbOptions::default()).unwrap();
    assert_eq!(s.stats("c").unwrap().entries, 2999);
    assert_eq!(s.get("c", 8, b"k8").unwrap(), Some(v(1, "x")));
    assert_eq!(s.get("c", 7, b"k7").unwrap(), None);
    assert_eq!(s.get("c", 9999, b"unflushed").unwrap(), None, "never acknowledged");
}

#[test]
fn only_merges_that_changed_something_are_logged_and_staged() {
    // The disk side takes what it is handed as each key's winner: an older write that
    // memory kept out, handed over anyway, would replace the newer one on disk.
    let dir = tempfile::tempdir().unwrap();
    let mut s = MemFirstStore::open(dir.path(), RedbOptions::default()).unwrap();
    s.merge("c", 1, &k("a"), v(5, "new")).unwrap();
    s.merge("c", 2, &k("b"), v(5, "new")).unwrap();
    s.flush().unwrap();
    // In one batch: a change, an older write kept out, a refused one, another change.
    s.merge("c", 3, &k("c"), v(1, "x")).unwrap();
    assert_eq!(s.merge("c", 1, &k("a"), v(4, "old")).unwrap(), Merged::Kept);
    assert!(s.merge("c", 2, &[0u8; 70_000][..].to_vec().into(), v(9, "x")).is_err());
    s.merge("c", 4, &k("d"), v(1, "y")).unwrap();
    assert_eq!(s.merge("c", 2, &k("b"), v(5, "new")).unwrap(), Merged::Kept, "the same version");
    s.flush().unwrap();
    drop(s); // the last checkpoint writes what was staged
    let s = MemFirstStore::open(dir.path(), RedbOptions::default()).unwrap();
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(5, "new")));
    assert_eq!(s.get("c", 2, b"b").unwrap(), Some(v(5, "new")));
    assert_eq!(s.get("c", 3, b"c").unwrap(), Some(v(1, "x")));
    assert_eq!(s.get("c", 4, b"d").unwrap(), Some(v(1, "y")));
    assert_eq!(s.stats("c").unwrap().entries, 4);
}

#[test]
fn data_that_would_not_fit_in_memory_refuses_the_start_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = faulty(&dir);
    for i in 0..100u64 {
        s.merge("c", i, &k(&format!("k{i}")), v(1, "0123456789")).unwrap();
    }
    s.flush().unwrap();
    let image = disk.recovered();
    let err = fits_in_memory(&image, Some(4096)).unwrap_err();
    assert!(matches!(err, StoreError::Limit(_)), "{err}");
    assert!(err.to_string().contains("100 keys") && err.to_string().contains("--reads disk"));
    fits_in_memory(&image, Some(1 << 20)).unwrap();
    fits_in_memory(&image, None).unwrap();
    assert!(available_memory().is_some_and(|m| m > 0), "this system says");
}

#[test]
fn checkpoints_written_in_steps_on_the_disk_thread_keep_every_write_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    // Checkpoints every 500 writes (below the memory-first floor, which `open` applies),
    // so the disk thread begins several and writes them between the batches.
    let options = RedbOptions { checkpoint_writes: 500, ..RedbOptions::default() };
    let disk = RedbStore::open(dir.path(), options.clone()).unwrap();
    let space = SpaceReserve::new(dir.path().to_path_buf(), options.min_free_bytes);
    let mut s = MemFirstStore::over(disk, space, options.max_collections).unwrap();
    for round in 0..8u64 {
        for i in 0..1000u64 {
            s.merge("c", i, &k(&format!("k{i}")), v(round + 1, &format!("r{round}"))).unwrap();
            if i % 100 == 99 {
                s.flush().unwrap(); // past 500 writes, each flush may begin a checkpoint
            }
            if i == 650 {
                // Removals and range deletes land while a checkpoint may be half written.
                s.remove("c", round, format!("k{round}").as_bytes()).unwrap();
                s.delete_range("c", Interval::new(900 + round * 10, 900 + round * 10 + 4)).unwrap();
            }
        }
        s.flush().unwrap();
    }
    let want: Vec<Record> = s.range("c", Interval::full(), None, usize::MAX).unwrap();
    // Each round writes every key again, so only the last removal stands (the range
    // deleted each round is written again after it).
    assert_eq!(s.get("c", 7, b"k7").unwrap(), None);
    assert_eq!(s.get("c", 6, b"k6").unwrap(), Some(v(8, "r7")));
    assert_eq!(want.len(), 999);
    drop(s);
    let s = RedbStore::open(dir.path(), options).unwrap();
    assert_eq!(s.range("c", Interval::full(), None, usize::MAX).unwrap(), want);
    assert!(!dir.path().join("collections.wal.sealed").exists());
}
