//! `RedbStore` tests: the shared conformance suite, then what only a disk store has —
//! group commit, reopening, dropped files, corrupt bytes and a full disk.

use super::*;
use dhrt_core::{clock::Timestamp, entry::NodeId, replica::Replica};
use tempfile::TempDir;

/// A store in a fresh temporary data dir, removed with it (the conformance suite wants
/// one value that is the store).
struct TempStore {
    store: RedbStore,
    _dir: TempDir,
}

impl TempStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        TempStore { store, _dir: dir }
    }
}

impl Store for TempStore {
    fn collections(&self) -> Result<Vec<String>, StoreError> {
        self.store.collections()
    }
    fn get(&self, c: &str, pos: Position, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.store.get(c, pos, key)
    }
    fn merge(&mut self, c: &str, pos: Position, k: &Bytes, e: Entry) -> Result<Merged, StoreError> {
        self.store.merge(c, pos, k, e)
    }
    fn merge_batch(&mut self, c: &str, records: &[Record]) -> Result<Vec<Merged>, StoreError> {
        self.store.merge_batch(c, records)
    }
    fn remove(&mut self, c: &str, pos: Position, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.store.remove(c, pos, key)
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
        self.store.delete_range(c, interval)
    }
    fn drop_collection(&mut self, c: &str) -> Result<bool, StoreError> {
        self.store.drop_collection(c)
    }
    fn stats(&self, c: &str) -> Result<CollectionStats, StoreError> {
        self.store.stats(c)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.store.flush()
    }
}

mod conformance {
    use super::TempStore;
    dhrt_core::store_conformance_tests!(TempStore::new());
}

/// The conformance suite under the fault-injecting wrapper, no fault armed: it behaves
/// exactly as the store it wraps.
mod conformance_under_faulty_store {
    use super::TempStore;
    use dhrt_core::store::faulty::FaultyStore;
    dhrt_core::store_conformance_tests!(FaultyStore::new(TempStore::new()).unwrap());
}

/// The conformance suite again, committing as it goes — after each of the first 8
/// writes, then every 32nd (an fsync each) — so reads mix committed and gathered data.
mod conformance_flushing {
    use super::*;

    struct Flushing(TempStore, u64);

    impl Flushing {
        fn after_write<T>(&mut self, out: Result<T, StoreError>) -> Result<T, StoreError> {
            self.1 += 1;
            if self.1 <= 8 || self.1.is_multiple_of(32) {
                self.0.flush()?;
            }
            out
        }
    }

    impl Store for Flushing {
        fn collections(&self) -> Result<Vec<String>, StoreError> {
            self.0.collections()
        }
        fn get(&self, c: &str, pos: Position, key: &[u8]) -> Result<Option<Entry>, StoreError> {
            self.0.get(c, pos, key)
        }
        fn merge(
            &mut self,
            c: &str,
            pos: Position,
            k: &Bytes,
            e: Entry,
        ) -> Result<Merged, StoreError> {
            let out = self.0.merge(c, pos, k, e);
            self.after_write(out)
        }
        fn merge_batch(&mut self, c: &str, records: &[Record]) -> Result<Vec<Merged>, StoreError> {
            let out = self.0.merge_batch(c, records);
            self.after_write(out)
        }
        fn remove(
            &mut self,
            c: &str,
            pos: Position,
            key: &[u8],
        ) -> Result<Option<Entry>, StoreError> {
            let out = self.0.remove(c, pos, key);
            self.after_write(out)
        }
        fn range(
            &self,
            c: &str,
            interval: Interval,
            after: Option<(Position, &[u8])>,
            limit: usize,
        ) -> Result<Vec<Record>, StoreError> {
            self.0.range(c, interval, after, limit)
        }
        fn delete_range(&mut self, c: &str, interval: Interval) -> Result<u64, StoreError> {
            let out = self.0.delete_range(c, interval);
            self.after_write(out)
        }
        fn drop_collection(&mut self, c: &str) -> Result<bool, StoreError> {
            self.0.drop_collection(c)
        }
        fn stats(&self, c: &str) -> Result<CollectionStats, StoreError> {
            self.0.stats(c)
        }
    }

    dhrt_core::store_conformance_tests!(Flushing(TempStore::new(), 0));
}

fn v(ts: u64, value: &str) -> Entry {
    Entry::value(Bytes::copy_from_slice(value.as_bytes()), Timestamp(ts), NodeId(1))
}

fn k(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn open(dir: &TempDir) -> RedbStore {
    RedbStore::open(dir.path(), RedbOptions::default()).unwrap()
}

/// Everything a store holds, for before/after comparisons.
fn contents(s: &RedbStore) -> Vec<(String, CollectionStats, Vec<Record>)> {
    s.collections()
        .unwrap()
        .into_iter()
        .map(|c| {
            let records = s.range(&c, Interval::full(), None, usize::MAX).unwrap();
            (c.clone(), s.stats(&c).unwrap(), records)
        })
        .collect()
}

fn file_of(dir: &TempDir, collection: &str) -> PathBuf {
    dir.path().join(COLLECTIONS_DIR).join(format!("{collection}{EXTENSION}"))
}

/// Writes `raw_key → raw_value` straight into a collection's records table, committed.
fn poke(dir: &TempDir, collection: &str, raw_key: &[u8], raw_value: &[u8]) {
    let db = Database::create(file_of(dir, collection)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(RECORDS).unwrap().insert(raw_key, raw_value).unwrap();
    txn.commit().unwrap();
}

#[test]
fn the_store_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<RedbStore>();
}

#[test]
fn writes_are_visible_before_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 5, &k("a"), v(1, "x")).unwrap();
    s.merge_batch("c", &[Record { pos: 6, key: k("b"), entry: v(1, "y") }]).unwrap();
    assert_eq!(s.get("c", 5, b"a").unwrap(), Some(v(1, "x")));
    assert_eq!(s.range("c", Interval::full(), None, 10).unwrap().len(), 2);
    assert_eq!(s.stats("c").unwrap().entries, 2);
    assert_eq!(s.collections().unwrap(), vec!["c".to_string()]);
    assert_eq!(s.remove("c", 5, b"a").unwrap(), Some(v(1, "x")));
    assert_eq!(s.get("c", 5, b"a").unwrap(), None, "a removal is seen at once too");
    assert_eq!(s.delete_range("c", Interval::full()).unwrap(), 1);
    assert!(s.collections().unwrap().is_empty());
}

#[test]
fn flushed_writes_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    for i in 0..200u64 {
        let c = if i % 3 == 0 { "alpha" } else { "ordered.beta" };
        s.merge(c, i * 7919, &Bytes::from(format!("k{i}")), v(i, "value")).unwrap();
    }
    s.merge("alpha", 0, &k("dead"), Entry::tombstone(Timestamp(9), NodeId(2))).unwrap();
    s.merge("alpha", 1, &k("ttl"), v(3, "t").with_expiry(Some(77))).unwrap();
    s.remove("alpha", 0, b"k0").unwrap();
    s.delete_range("ordered.beta", Interval::new(0, 500_000)).unwrap();
    s.flush().unwrap();
    let before = contents(&s);
    assert_eq!(before.len(), 2);
    drop(s);
    let s = open(&dir);
    assert_eq!(contents(&s), before);
    assert_eq!(s.stats("alpha").unwrap().tombstones, 1);
    drop(s);
    for preload_bytes in [0, 10, u64::MAX] {
        let options = RedbOptions { preload_bytes, ..RedbOptions::default() };
        let s = RedbStore::open(dir.path(), options).unwrap();
        assert_eq!(contents(&s), before, "preload {preload_bytes}");
    }
}

#[test]
fn unflushed_writes_are_gone_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("kept"), v(1, "x")).unwrap();
    s.merge("c", 2, &k("doomed"), v(1, "x")).unwrap();
    s.flush().unwrap();
    let flushed = contents(&s);
    // Never acknowledged: a merge, a replacement, a removal, a range delete and a new
    // collection, all dropped with the store.
    s.merge("c", 3, &k("new"), v(1, "x")).unwrap();
    s.merge("c", 1, &k("kept"), v(2, "newer")).unwrap();
    s.remove("c", 2, b"doomed").unwrap();
    s.delete_range("c", Interval::full()).unwrap();
    s.merge("other", 1, &k("k"), v(1, "x")).unwrap();
    assert_ne!(contents(&s), flushed);
    drop(s);
    let s = open(&dir);
    assert_eq!(contents(&s), flushed);
    assert_eq!(s.stats("other").unwrap(), CollectionStats::default());
}

#[test]
fn flush_with_nothing_gathered_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.flush().unwrap();
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.flush().unwrap();
    s.flush().unwrap();
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(1, "x")));
}

#[test]
fn drop_collection_removes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("gone", 1, &k("a"), v(1, "x")).unwrap();
    s.merge("stays", 1, &k("a"), v(1, "x")).unwrap();
    s.flush().unwrap();
    s.merge("gone", 2, &k("b"), v(1, "unflushed")).unwrap();
    assert!(file_of(&dir, "gone").is_file());
    assert!(s.drop_collection("gone").unwrap());
    assert!(!file_of(&dir, "gone").exists());
    s.flush().unwrap();
    drop(s);
    let s = open(&dir);
    assert_eq!(s.collections().unwrap(), vec!["stays".to_string()]);
    assert_eq!(s.get("gone", 1, b"a").unwrap(), None);
}

#[test]
fn files_that_are_not_collections_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    let folder = dir.path().join(COLLECTIONS_DIR);
    fs::write(folder.join("notes.txt"), "hello").unwrap();
    fs::write(folder.join("bad name.redb"), "not a database").unwrap();
    fs::create_dir(folder.join("sub.redb")).unwrap();
    let s = open(&dir);
    assert!(s.collections().unwrap().is_empty());
}

#[test]
fn a_corrupt_value_reads_as_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("good"), v(1, "x")).unwrap();
    s.checkpoint().unwrap(); // the record is in the file, not only in the log
    drop(s);
    poke(&dir, "c", &codec::record_key(2, b"bad"), &[1, 0xff, 0, 0]);
    let mut s = open(&dir);
    assert_eq!(s.get("c", 1, b"good").unwrap(), Some(v(1, "x")));
    assert!(matches!(s.get("c", 2, b"bad"), Err(StoreError::Corrupt(_))));
    assert!(matches!(s.range("c", Interval::full(), None, 10), Err(StoreError::Corrupt(_))));
    // Merging over it fails too, and writes nothing.
    let err = s.merge("c", 2, &k("bad"), v(5, "y")).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    s.flush().unwrap();
    assert_eq!(s.stats("c").unwrap().entries, 1);
}

#[test]
fn a_corrupt_key_reads_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("good"), v(1, "x")).unwrap();
    s.checkpoint().unwrap(); // the record is in the file, not only in the log
    drop(s);
    poke(&dir, "c", &[0xff; 5], &codec::encode_entry(&v(1, "x")));
    let s = open(&dir);
    let err = s.range("c", Interval::full(), None, 10).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)) && err.to_string().contains("record key"));
}

#[test]
fn a_failed_write_takes_the_unflushed_writes_with_it_and_flush_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.checkpoint().unwrap(); // the record is in the file, not only in the log
    drop(s);
    poke(&dir, "c", &codec::record_key(9, b"bad"), b"garbage");
    let mut s = open(&dir);
    let committed = s.stats("c").unwrap();
    s.merge("c", 2, &k("pending"), v(1, "x")).unwrap();
    s.merge("elsewhere", 2, &k("pending"), v(1, "x")).unwrap();
    let batch = [
        Record { pos: 3, key: k("first"), entry: v(1, "x") },
        Record { pos: 9, key: k("bad"), entry: v(1, "x") },
    ];
    assert!(matches!(s.merge_batch("c", &batch), Err(StoreError::Corrupt(_))));
    assert_eq!(s.get("c", 3, b"first").unwrap(), None, "nothing of the batch was written");
    assert_eq!(s.get("c", 2, b"pending").unwrap(), None, "the gathered write went with it");
    assert_eq!(s.stats("c").unwrap(), committed);
    let err = s.flush().unwrap_err();
    assert!(err.to_string().contains("1 writes to c since the last flush"), "{err}");
    assert_eq!(s.get("elsewhere", 2, b"pending").unwrap(), Some(v(1, "x")), "others commit");
    s.flush().unwrap();
    drop(s);
    let s = open(&dir);
    assert_eq!(s.stats("c").unwrap(), committed);
    assert_eq!(s.stats("elsewhere").unwrap().entries, 1);
}

#[test]
fn below_the_free_space_reserve_merges_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let full = RedbOptions { min_free_bytes: u64::MAX, ..RedbOptions::default() };
    let mut s = RedbStore::open(dir.path(), full.clone()).unwrap();
    let err = s.merge("c", 1, &k("a"), v(1, "x")).unwrap_err();
    assert!(matches!(err, StoreError::Full(_)), "{err}");
    assert!(err.to_string().contains("--min-free-mb"), "{err}");
    let batch = [Record { pos: 1, key: k("a"), entry: v(1, "x") }];
    assert!(matches!(s.merge_batch("c", &batch), Err(StoreError::Full(_))));
    assert!(s.collections().unwrap().is_empty());
    assert!(!file_of(&dir, "c").exists(), "not even a file was created");
    s.flush().unwrap();
    drop(s);

    // With data already there: merges refused, the data untouched, removals still run.
    let mut s = open(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.merge("c", 2, &k("b"), v(1, "x")).unwrap();
    s.flush().unwrap();
    let before = contents(&s);
    drop(s);
    let mut s = RedbStore::open(dir.path(), full.clone()).unwrap();
    assert!(matches!(s.merge("c", 1, &k("a"), v(2, "y")), Err(StoreError::Full(_))));
    assert!(matches!(s.merge("c", 3, &k("c"), v(2, "y")), Err(StoreError::Full(_))));
    assert_eq!(contents(&s), before);
    s.flush().unwrap();
    assert_eq!(s.remove("c", 2, b"b").unwrap(), Some(v(1, "x")), "removals free space");
    s.flush().unwrap();
    drop(s);
    let s = RedbStore::open(dir.path(), full).unwrap();
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(1, "x")));
    assert_eq!(s.stats("c").unwrap().entries, 1);
}

#[test]
fn counts_are_recounted_only_when_their_row_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    for i in 0..50u64 {
        s.merge("c", i, &Bytes::from(format!("k{i}")), v(i, "x")).unwrap();
    }
    s.merge("c", 99, &k("t"), Entry::tombstone(Timestamp(1), NodeId(1))).unwrap();
    s.flush().unwrap();
    let stats = s.stats("c").unwrap();
    drop(s);
    {
        let db = Database::create(file_of(&dir, "c")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove(STATS).unwrap();
        txn.commit().unwrap();
    }
    assert_eq!(open(&dir).stats("c").unwrap(), stats);
    poke(&dir, "c", &codec::record_key(1, b"x"), &codec::encode_entry(&v(1, "x")));
    let db = Database::create(file_of(&dir, "c")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(STATS, &[7u8][..]).unwrap();
    txn.commit().unwrap();
    drop(db);
    let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn a_second_store_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(err.to_string().contains("one node per data dir"), "{err}");
}

#[test]
fn a_replica_reopened_from_disk_has_the_same_trees() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::with_depth(open(&dir), 4).unwrap();
    for i in 0..500u64 {
        r.merge("users", Bytes::from(format!("user{i}")), v(i, "x")).unwrap();
        r.merge("ordered.log", Bytes::from(format!("{i:08}")), v(i, "y")).unwrap();
    }
    r.remove("users", b"user7").unwrap();
    r.flush().unwrap();
    let users = r.tree("users").unwrap().clone();
    let log = r.tree("ordered.log").unwrap().clone();
    drop(r);
    let r = Replica::with_depth(open(&dir), 4).unwrap();
    assert_eq!(r.tree("users"), Some(&users));
    assert_eq!(r.tree("ordered.log"), Some(&log));
}

#[test]
fn flushed_writes_live_in_the_log_until_a_checkpoint_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.merge("d", 2, &k("b"), v(1, "y")).unwrap();
    s.flush().unwrap();
    assert!(s.wal.len() > 0, "the flush appended to the log");
    s.merge("c", 3, &k("unflushed"), v(1, "z")).unwrap();
    drop(s); // a crash: no checkpoint, the open transactions are lost
    let mut s = open(&dir);
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(1, "x")));
    assert_eq!(s.get("d", 2, b"b").unwrap(), Some(v(1, "y")));
    assert_eq!(s.get("c", 3, b"unflushed").unwrap(), None);
    assert_eq!(s.stats("c").unwrap().entries, 1);
    assert_eq!(s.wal.len(), 0, "opening replays the log into the files and empties it");
    // Replaying again changes nothing: an older entry never replaces a newer one.
    s.merge("c", 1, &k("a"), v(2, "newer")).unwrap();
    s.flush().unwrap();
    drop(s);
    let s = open(&dir);
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(2, "newer")));
}

#[test]
fn a_removal_is_checkpointed_so_no_replay_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.merge("c", 2, &k("b"), v(1, "x")).unwrap();
    s.flush().unwrap();
    assert_eq!(s.remove("c", 1, b"a").unwrap(), Some(v(1, "x")));
    s.flush().unwrap();
    assert_eq!(s.wal.len(), 0, "the flush after a removal checkpointed");
    drop(s);
    let mut s = open(&dir);
    assert_eq!(s.get("c", 1, b"a").unwrap(), None);
    assert_eq!(s.get("c", 2, b"b").unwrap(), Some(v(1, "x")));
    // A dropped collection does not come back from the log either.
    s.merge("gone", 1, &k("a"), v(1, "x")).unwrap();
    s.flush().unwrap();
    assert!(s.drop_collection("gone").unwrap());
    drop(s);
    let s = open(&dir);
    assert!(!s.collections().unwrap().contains(&"gone".to_string()));
    assert!(!file_of(&dir, "gone").exists());
}

#[test]
fn the_log_is_checkpointed_when_it_passes_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let small = RedbOptions { checkpoint_bytes: 2_000, ..RedbOptions::default() };
    let mut s = RedbStore::open(dir.path(), small.clone()).unwrap();
    for i in 0..200u64 {
        s.merge("c", i, &Bytes::from(format!("key-{i}")), v(1, "some value")).unwrap();
        s.flush().unwrap();
        assert!(s.wal.len() <= 2_000, "log of {} bytes after write {i}", s.wal.len());
    }
    drop(s);
    let s = RedbStore::open(dir.path(), small).unwrap();
    assert_eq!(s.stats("c").unwrap().entries, 200);
}

#[test]
fn a_failed_write_keeps_what_earlier_flushes_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.checkpoint().unwrap();
    drop(s);
    poke(&dir, "c", &codec::record_key(9, b"bad"), b"garbage");
    let mut s = open(&dir);
    s.merge("c", 2, &k("acked"), v(1, "x")).unwrap();
    s.flush().unwrap(); // acknowledged: in the log, and in the open transaction
    s.merge("c", 3, &k("pending"), v(1, "x")).unwrap();
    assert!(matches!(s.merge("c", 9, &k("bad"), v(2, "y")), Err(StoreError::Corrupt(_))));
    // The transaction was aborted; the acknowledged write was merged back from the log.
    assert_eq!(s.get("c", 2, b"acked").unwrap(), Some(v(1, "x")));
    assert_eq!(s.get("c", 3, b"pending").unwrap(), None);
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(1, "x")));
    assert!(s.flush().is_err(), "the discarded write is reported");
    drop(s);
    let s = open(&dir);
    assert_eq!(s.get("c", 2, b"acked").unwrap(), Some(v(1, "x")));
    assert_eq!(s.get("c", 3, b"pending").unwrap(), None);
}

#[test]
fn an_empty_or_foreign_collection_file_refuses_the_start_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.flush().unwrap();
    drop(s);
    for damage in [Vec::new(), vec![0; 1 << 20]] {
        std::fs::write(file_of(&dir, "c"), &damage).unwrap();
        let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains("c.redb") && err.to_string().contains("dhrt repair"));
        assert_eq!(std::fs::read(file_of(&dir, "c")).unwrap(), damage, "the file is kept");
    }
}

#[test]
fn a_leftover_temporary_file_is_set_aside_and_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    let temp = dir.path().join(COLLECTIONS_DIR).join(".c.redb.tmp");
    std::fs::write(&temp, vec![0; 1 << 20]).unwrap();
    let mut s = open(&dir);
    assert!(!temp.exists());
    assert!(dir.path().join(LOST_AND_FOUND).join("c.redb.tmp").is_file());
    assert!(s.collections().unwrap().is_empty());
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    s.flush().unwrap();
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(1, "x")));
}

#[test]
fn a_new_collection_file_is_whole_under_its_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("c", 1, &k("a"), v(1, "x")).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path().join(COLLECTIONS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["c.redb"], "no temporary file is left");
    // Whole already: another process can open it before any checkpoint.
    drop(s);
    let db = Database::open(file_of(&dir, "c")).unwrap();
    let read = db.begin_read().unwrap();
    assert!(read.open_table(RECORDS).is_ok());
}

#[test]
fn more_collections_than_open_files_all_work_and_keep_their_counts() {
    let dir = tempfile::tempdir().unwrap();
    let few = RedbOptions { max_open_files: 4, ..RedbOptions::default() };
    let mut s = RedbStore::open(dir.path(), few.clone()).unwrap();
    for i in 0..40u64 {
        let c = format!("c{i}");
        s.merge(&c, i, &k("a"), v(1, "x")).unwrap();
        if i % 7 == 0 {
            s.flush().unwrap();
        }
    }
    s.flush().unwrap();
    s.checkpoint().unwrap();
    assert!(s.open_files.get() <= 4, "{} open", s.open_files.get());
    for i in 0..40u64 {
        let c = format!("c{i}");
        assert_eq!(s.stats(&c).unwrap().entries, 1);
        assert_eq!(s.get(&c, i, b"a").unwrap(), Some(v(1, "x")));
        assert!(s.open_files.get() <= 4);
    }
    drop(s);
    let s = RedbStore::open(dir.path(), few).unwrap();
    assert!(s.open_files.get() <= 4);
    assert_eq!(s.collections().unwrap().len(), 40);
    assert_eq!(s.stats("c17").unwrap().entries, 1, "counts without opening");
    assert_eq!(s.get("c39", 39, b"a").unwrap(), Some(v(1, "x")));
}

#[test]
fn past_the_collection_cap_a_new_collection_is_a_limit_error() {
    let dir = tempfile::tempdir().unwrap();
    let capped = RedbOptions { max_collections: 3, ..RedbOptions::default() };
    let mut s = RedbStore::open(dir.path(), capped).unwrap();
    for c in ["a", "b", "c"] {
        s.merge(c, 1, &k("a"), v(1, "x")).unwrap();
    }
    let err = s.merge("d", 1, &k("a"), v(1, "x")).unwrap_err();
    assert!(matches!(err, StoreError::Limit(_)) && err.to_string().contains("max-collections"));
    s.merge("a", 2, &k("b"), v(1, "x")).unwrap();
    s.flush().unwrap();
    assert!(s.drop_collection("c").unwrap());
    s.merge("d", 1, &k("a"), v(1, "x")).unwrap();
}

#[test]
fn a_drop_is_logged_so_it_needs_no_checkpoint_and_no_replay_revives_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.merge("gone", 1, &k("a"), v(1, "x")).unwrap();
    s.merge("back", 1, &k("a"), v(1, "old")).unwrap();
    s.flush().unwrap();
    assert!(s.wal.len() > 0, "the merges are in the log");
    let logged = s.wal.len();
    assert!(s.drop_collection("gone").unwrap());
    assert!(s.drop_collection("back").unwrap());
    assert!(s.wal.len() > logged, "the drops were appended, not checkpointed");
    // Re-created after its drop: only what came after counts.
    s.merge("back", 2, &k("b"), v(2, "new")).unwrap();
    s.flush().unwrap();
    drop(s); // a crash: the log is replayed at the next open
    let s = open(&dir);
    assert_eq!(s.collections().unwrap(), ["back"]);
    assert_eq!(s.get("back", 1, b"a").unwrap(), None);
    assert_eq!(s.get("back", 2, b"b").unwrap(), Some(v(2, "new")));
    assert!(!file_of(&dir, "gone").exists());
}

#[test]
fn a_tombstone_is_admitted_below_the_reserve_that_refuses_values() {
    let dir = tempfile::tempdir().unwrap();
    let free = super::super::space::free_bytes_for_tests(dir.path());
    let Some(free) = free else { return };
    // A reserve no value can meet (a GiB more than is free, so other tests freeing
    // space meanwhile cannot let one through), while the disk keeps far more than the
    // tombstone floor.
    let tight = RedbOptions { min_free_bytes: free + (1 << 30), ..RedbOptions::default() };
    let mut s = RedbStore::open(dir.path(), tight).unwrap();
    assert!(matches!(s.merge("c", 1, &k("a"), v(1, "x")), Err(StoreError::Full(_))));
    assert!(s.health().full);
    let tomb = Entry::tombstone(Timestamp(2), NodeId(1));
    s.merge("c", 1, &k("a"), tomb.clone()).unwrap();
    s.flush().unwrap();
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(tomb));
}

#[test]
fn open_files_share_one_cache_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mib = 1 << 20;
    let options = RedbOptions {
        cache_bytes: 4 * mib,
        cache_total_bytes: 8 * mib,
        max_open_files: 3,
        ..RedbOptions::default()
    };
    let mut s = RedbStore::open(dir.path(), options).unwrap();
    let caches = |s: &RedbStore| -> Vec<usize> {
        s.collections.values().map(|c| c.handle.borrow().cache).filter(|&c| c > 0).collect()
    };
    for (i, c) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        s.merge(c, 1, &k("k"), v(1, "x")).unwrap();
        s.flush().unwrap();
        s.checkpoint().unwrap();
        let open = caches(&s);
        assert_eq!(open.iter().sum::<usize>(), s.cache_granted.get(), "after {c}");
        assert!(open.len() <= 3 && s.cache_granted.get() <= 8 * mib + 3 * mib, "{open:?}");
        if i == 1 {
            // Two files fit the budget whole: 4 MiB each, as without a budget.
            assert_eq!(open, [4 * mib, 4 * mib]);
        }
    }
    assert!(s.drop_collection("e").unwrap());
    assert_eq!(caches(&s).iter().sum::<usize>(), s.cache_granted.get(), "a drop gives back");
}

#[test]
fn staged_writes_are_durable_with_the_flush_and_reach_the_file_at_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let rec = |pos, key: &str, ts| staged_one(pos, key.as_bytes(), v(ts, key));
    stage_handed(&mut s, "c", vec![rec(1, "a", 1), rec(2, "b", 1)]);
    stage_handed(&mut s, "c", vec![rec(1, "a", 2)]); // the newest of a key only
    s.flush().unwrap();
    stage_handed(&mut s, "c", vec![rec(3, "unflushed", 1)]);
    drop(s); // a crash: nothing was checkpointed, the log has the flushed ones
    let mut s = open(&dir);
    assert_eq!(s.get("c", 1, b"a").unwrap(), Some(v(2, "a")));
    assert_eq!(s.get("c", 2, b"b").unwrap(), Some(v(1, "b")));
    assert_eq!(s.get("c", 3, b"unflushed").unwrap(), None);
    // Staged, then removed: the removal comes after, whatever the checkpoint does.
    stage_handed(&mut s, "c", vec![rec(4, "gone", 1), rec(5, "kept", 1)]);
    assert_eq!(s.remove("c", 4, b"gone").unwrap(), Some(v(1, "gone")));
    stage_handed(&mut s, "c", vec![rec(6, "later", 1)]);
    // Keys held in the staged write's slot and keys too long for it, sharing a position
    // with each other: each the newest of its own key.
    let long = |n: usize| "k".repeat(n);
    for n in [INLINE_KEY, INLINE_KEY + 1, 300] {
        stage_handed(&mut s, "c", vec![rec(7, &long(n), 1)]);
    }
    stage_handed(&mut s, "c", vec![rec(7, &long(INLINE_KEY + 1), 3), rec(7, &long(300), 2)]);
    s.flush().unwrap();
    s.checkpoint().unwrap();
    assert_eq!(s.wal.len(), 0, "the checkpoint emptied the log");
    assert_eq!(s.get("c", 4, b"gone").unwrap(), None);
    assert_eq!(s.get("c", 6, b"later").unwrap(), Some(v(1, "later")));
    for (n, ts) in [(INLINE_KEY, 1), (INLINE_KEY + 1, 3), (300, 2)] {
        let key = long(n);
        assert_eq!(s.get("c", 7, key.as_bytes()).unwrap(), Some(v(ts, &key)), "{n}-byte key");
    }
    let stats = s.stats("c").unwrap();
    drop(s);
    let s = open(&dir);
    assert_eq!(s.stats("c").unwrap(), stats, "the counts were committed with the records");
    assert_eq!(stats.entries, 7);
}

/// A store whose log passes its bound after a few staged writes (the bound is at least
/// 1 MiB of free space's eighth, so it is the write count that trips here).
fn small_drains(dir: &TempDir) -> RedbStore {
    let options = RedbOptions { checkpoint_writes: 100, ..RedbOptions::default() };
    RedbStore::open(dir.path(), options).unwrap()
}

fn staged(from: u64, to: u64, ts: u64) -> Vec<Staged> {
    (from..to)
        .map(|i| staged_one(i, format!("key-{i}").as_bytes(), v(ts, &format!("v{ts}"))))
        .collect()
}

fn staged_records(from: u64, to: u64, ts: u64) -> Vec<Record> {
    staged(from, to, ts)
        .into_iter()
        .map(|((pos, key), entry)| Record { pos, key: Bytes::copy_from_slice(&key), entry })
        .collect()
}

fn staged_one(pos: u64, key: &[u8], entry: Entry) -> Staged {
    ((pos, smallvec::SmallVec::from_slice(key)), entry)
}

/// Logs `records` as a memory-first store does, and hands them over at once (as it
/// does when a checkpoint waits for them).
fn stage_handed(s: &mut RedbStore, collection: &str, records: Vec<Staged>) {
    s.stage(collection, log(collection, records.clone())).unwrap();
    let records = records
        .into_iter()
        .map(|((pos, key), entry)| Record { pos, key: Bytes::copy_from_slice(&key), entry })
        .collect();
    s.take_handed(vec![(collection.to_string(), records)]);
}

/// `records` encoded as the log's records of `collection`, as a memory-first store
/// hands them over.
fn log(collection: &str, records: Vec<Staged>) -> Vec<u8> {
    let mut out = Vec::new();
    for ((pos, key), entry) in records {
        wal::encode_merge(&mut out, collection, pos, &key, &entry);
    }
    out
}

#[test]
fn staging_the_same_keys_again_counts_what_the_checkpoint_writes_not_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = small_drains(&dir); // a checkpoint after 100 staged records
    stage_handed(&mut s, "c", staged(0, 60, 1));
    s.flush().unwrap();
    let bytes = s.txn_bytes;
    for ts in 2..12 {
        // The same 60 keys, over and over: 600 more writes, still 60 records to write.
        stage_handed(&mut s, "c", staged(0, 60, ts));
        s.flush().unwrap();
        assert!(!s.checkpointing(), "rewrites of staged keys do not trip the record count");
    }
    let size = |ts| write_size(b"key-0", &v(ts, &format!("v{ts}")));
    assert_eq!(s.txn_bytes, bytes + 60 * (size(11) - size(2)), "only what the values grew by");
    stage_handed(&mut s, "c", staged(60, 100, 1));
    s.flush().unwrap();
    assert!(s.checkpointing(), "a hundred distinct records staged: the checkpoint begins");
    while s.checkpointing() {
        s.checkpoint_step(true).unwrap();
    }
    drop(s);
    let s = small_drains(&dir);
    assert_eq!(s.stats("c").unwrap().entries, 100);
    assert_eq!(s.get("c", 7, b"key-7").unwrap(), Some(v(11, "v11")), "the newest of each");
}

#[test]
fn writes_logged_and_not_handed_over_keep_the_log_until_a_checkpoint_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint after 100 staged records. Logged only (the store in front keeps
    // them): past the bound, the checkpoint waits for them instead of sealing a log
    // whose writes it would not hold.
    let mut s = small_drains(&dir);
    s.stage("c", log("c", staged(0, 150, 1))).unwrap();
    s.take_handed(Vec::new()); // a hand-over with nothing in it...
    s.stage("c", log("c", staged(150, 300, 1))).unwrap(); // ...and writes after it
    assert!(!s.wants_handover());
    s.flush().unwrap();
    s.checkpoint().unwrap();
    assert!(s.wants_handover(), "the checkpoint asks for what it does not hold");
    assert!(s.wal.len() > 0, "and keeps the log whole");
    drop(s); // a crash: the log has every write
    let mut s = small_drains(&dir);
    assert_eq!(s.stats("c").unwrap().entries, 300);
    assert_eq!(s.wal.len(), 0, "replayed into the files at the start");
    // Handed over: a flush past the bound seals the log and writes them in steps.
    stage_handed(&mut s, "c", staged(300, 450, 2));
    s.stage("c", log("c", staged(450, 460, 2))).unwrap();
    s.flush().unwrap();
    assert!(!s.checkpointing(), "not while writes logged after the hand-over wait for theirs");
    assert!(s.wants_handover());
    s.take_handed(vec![("c".to_string(), staged_records(450, 460, 2))]);
    s.flush().unwrap();
    assert!(s.checkpointing() && !s.wants_handover());
    while s.checkpointing() {
        s.checkpoint_step(true).unwrap();
    }
    drop(s);
    let s = small_drains(&dir);
    assert_eq!(s.stats("c").unwrap().entries, 460);
    assert_eq!(s.get("c", 455, b"key-455").unwrap(), Some(v(2, "v2")));
}

#[test]
fn a_hand_over_naming_a_collection_that_cannot_be_made_still_takes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let options = RedbOptions { max_collections: 1, ..RedbOptions::default() };
    let mut s = RedbStore::open(dir.path(), options.clone()).unwrap();
    s.stage("b", log("b", staged(0, 10, 1))).unwrap(); // acknowledged writes: logged
    s.flush().unwrap();
    // "a" was never logged (a batch that failed at the collection cap), yet memory
    // marked it; its records come first in the hand-over, and cannot be staged.
    let handed = vec![
        ("a".to_string(), staged_records(0, 1, 1)),
        ("b".to_string(), staged_records(0, 10, 1)),
    ];
    s.take_handed(handed);
    s.take_handed(Vec::new()); // the next hand-over: nothing written since
    s.checkpoint().unwrap(); // holds everything it was handed: the log is emptied
    assert_eq!(s.wal.len(), 0);
    drop(s);
    let s = RedbStore::open(dir.path(), options).unwrap();
    assert_eq!(s.stats("b").unwrap().entries, 10, "b's acknowledged writes are in its file");
    assert_eq!(s.get("b", 3, b"key-3").unwrap(), Some(v(1, "v1")));
    assert!(!s.collections().unwrap().contains(&"a".to_string()));
}

#[test]
fn a_staged_map_a_checkpoint_emptied_keeps_its_room_for_the_next_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = small_drains(&dir);
    stage_handed(&mut s, "c", staged(0, 1000, 1));
    s.flush().unwrap();
    assert!(s.checkpointing());
    let room = s.spare_staged.as_ref().map_or(0, HashMap::capacity);
    assert!(room >= 1000, "the drained map was kept, with its room ({room})");
    // The next collection staged into takes it, rather than growing one from nothing.
    stage_handed(&mut s, "d", staged(0, 10, 1));
    assert!(s.spare_staged.is_none());
    assert!(s.staged["d"].capacity() >= 1000);
    while s.checkpointing() {
        s.checkpoint_step(true).unwrap();
    }
    s.checkpoint().unwrap();
    assert_eq!(s.stats("c").unwrap().entries, 1000);
    assert_eq!(s.stats("d").unwrap().entries, 10);
    assert!(s.spare_staged.as_ref().is_some_and(|m| m.is_empty() && m.capacity() >= 1000));
}

#[test]
fn a_checkpoint_of_staged_writes_is_written_step_by_step_beside_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = small_drains(&dir);
    let n = (drain::STEP * 2 + 10) as u64;
    stage_handed(&mut s, "c", staged(0, n, 1));
    s.flush().unwrap();
    assert!(s.checkpointing(), "past the bound, a flush begins a checkpoint in steps");
    assert!(wal::sealed_path(&dir.path().join(WAL_FILE)).is_file(), "the log was sealed");
    assert_eq!(s.wal.len(), 0, "new writes go to a fresh log");
    // Writes keep coming while it is written: logged in the fresh log, staged anew.
    stage_handed(&mut s, "c", staged(0, 5, 2));
    s.flush().unwrap();
    let mut steps = 0;
    while s.checkpointing() {
        s.checkpoint_step(true).unwrap();
        steps += 1;
    }
    assert!(steps >= 4, "three steps of records, then the commit (on its thread)");
    assert!(!wal::sealed_path(&dir.path().join(WAL_FILE)).exists(), "deleted once committed");
    assert!(s.wal.len() > 0, "the fresh log still holds what came after");
    drop(s); // a crash: the files hold the checkpoint, the log the five newer writes
    let s = small_drains(&dir);
    assert_eq!(s.stats("c").unwrap().entries, n);
    assert_eq!(s.get("c", 3, b"key-3").unwrap(), Some(v(2, "v2")));
    assert_eq!(s.get("c", 7, b"key-7").unwrap(), Some(v(1, "v1")));
}

#[test]
fn a_crash_in_the_middle_of_a_stepped_checkpoint_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = small_drains(&dir);
    let n = (drain::STEP * 3) as u64;
    stage_handed(&mut s, "c", staged(0, n, 1));
    s.flush().unwrap();
    assert!(s.checkpointing());
    s.checkpoint_step(true).unwrap(); // one step in an open transaction, not committed
    stage_handed(&mut s, "c", staged(n, n + 3, 1));
    s.flush().unwrap();
    drop(s);
    // The start replays the sealed log, then the fresh one.
    let s = small_drains(&dir);
    assert_eq!(s.stats("c").unwrap().entries, n + 3);
    assert!(!wal::sealed_path(&dir.path().join(WAL_FILE)).exists(), "the start checkpointed");
}

#[test]
fn a_removal_during_a_stepped_checkpoint_is_not_undone_by_its_later_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = small_drains(&dir);
    let n = (drain::STEP * 3) as u64;
    stage_handed(&mut s, "c", staged(0, n, 1));
    s.flush().unwrap();
    assert!(s.checkpointing());
    let last = n - 1;
    let key = format!("key-{last}");
    // The key is in the last step, not written yet: the removal writes it first.
    assert_eq!(s.remove("c", last, key.as_bytes()).unwrap(), Some(v(1, "v1")));
    while s.checkpointing() {
        s.checkpoint_step(true).unwrap();
    }
    s.flush().unwrap();
    assert_eq!(s.get("c", last, key.as_bytes()).unwrap(), None);
    drop(s);
    let s = small_drains(&dir);
    assert_eq!(s.get("c", last, key.as_bytes()).unwrap(), None, "no replay brings it back");
    assert_eq!(s.stats("c").unwrap().entries, n - 1);
}

#[test]
fn a_full_checkpoint_takes_over_one_being_written_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = small_drains(&dir);
    let n = (drain::STEP * 2) as u64;
    stage_handed(&mut s, "c", staged(0, n, 1));
    stage_handed(&mut s, "d", staged(0, 10, 1));
    s.flush().unwrap();
    s.checkpoint_step(true).unwrap();
    // A newer write of a key still in the drain wins over the drain's.
    stage_handed(&mut s, "c", staged(n - 1, n, 5));
    s.flush().unwrap();
    s.checkpoint().unwrap();
    assert!(!s.checkpointing());
    assert_eq!(s.wal.len(), 0);
    assert!(!wal::sealed_path(&dir.path().join(WAL_FILE)).exists());
    let key = format!("key-{}", n - 1);
    assert_eq!(s.get("c", n - 1, key.as_bytes()).unwrap(), Some(v(5, "v5")));
    drop(s);
    let s = small_drains(&dir);
    assert_eq!(s.stats("c").unwrap().entries, n);
    assert_eq!(s.stats("d").unwrap().entries, 10);
}

#[test]
fn a_drop_during_a_stepped_checkpoint_is_not_undone_by_its_later_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = small_drains(&dir);
    stage_handed(&mut s, "c", staged(0, (drain::STEP * 2) as u64, 1));
    stage_handed(&mut s, "d", staged(0, 10, 1));
    s.flush().unwrap();
    assert!(s.checkpointing());
    assert!(s.drop_collection("d").unwrap() || s.stats("d").unwrap().entries == 0);
    while s.checkpointing() {
        s.checkpoint_step(true).unwrap();
    }
    assert_eq!(s.stats("d").unwrap().entries, 0);
    drop(s);
    let s = small_drains(&dir);
    assert_eq!(s.stats("d").unwrap().entries, 0, "the drop holds after a restart");
    assert!(!s.collections().unwrap().contains(&"d".to_string()));
}

#[test]
fn under_load_a_stepped_checkpoint_keeps_pace_with_the_writes_coming_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = small_drains(&dir); // the next checkpoint is due after 100 writes
    let n = (drain::STEP * 4) as u64;
    stage_handed(&mut s, "c", staged(0, n, 1));
    s.flush().unwrap();
    assert!(s.checkpointing());
    let left = |s: &RedbStore| s.draining.as_ref().map_or(0, |d| d.total - d.done);
    s.checkpoint_step(false).unwrap();
    assert_eq!(left(&s), n, "no write came in: no step is due");
    // It is to be written by the time 50 writes came in: after 25, half of it.
    stage_handed(&mut s, "c", staged(n, n + 25, 1));
    s.checkpoint_step(false).unwrap();
    s.checkpoint_step(false).unwrap();
    assert_eq!(left(&s), n - 2 * drain::STEP as u64);
    s.checkpoint_step(false).unwrap();
    assert_eq!(left(&s), n - 2 * drain::STEP as u64, "on pace: not due");
    s.checkpoint_step(true).unwrap();
    assert_eq!(left(&s), n - 3 * drain::STEP as u64, "with nothing waiting, a step goes");
    stage_handed(&mut s, "c", staged(n + 25, n + 50, 1));
    while s.checkpointing() {
        s.checkpoint_step(false).unwrap(); // due: behind its pace
    }
    s.flush().unwrap();
    drop(s);
    assert_eq!(small_drains(&dir).stats("c").unwrap().entries, n + 50);
}

#[test]
fn writes_while_a_stepped_checkpoint_commits_on_its_thread_land_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = small_drains(&dir);
    let n = (drain::STEP * 2) as u64;
    stage_handed(&mut s, "c", staged(0, n, 1));
    stage_handed(&mut s, "d", staged(0, 10, 1));
    s.flush().unwrap();
    while !s.commit_begun() {
        s.checkpoint_step(true).unwrap();
    }
    // A removal waits in redb for the commit, then goes after it; a drop waits too.
    assert_eq!(s.remove("c", 5, b"key-5").unwrap(), Some(v(1, "v1")));
    assert!(s.drop_collection("d").unwrap());
    stage_handed(&mut s, "c", staged(n, n + 1, 1));
    s.flush().unwrap(); // the removal makes this one a full checkpoint
    assert!(!s.checkpointing());
    drop(s);
    let s = small_drains(&dir);
    assert_eq!(s.get("c", 5, b"key-5").unwrap(), None);
    assert_eq!(s.stats("c").unwrap().entries, n);
    assert_eq!(s.stats("d").unwrap().entries, 0);
    // Dropped in the middle of a commit: the store waits for it, and nothing is lost.
    let mut s = s;
    stage_handed(&mut s, "c", staged(0, n, 2));
    s.flush().unwrap();
    while !s.commit_begun() {
        s.checkpoint_step(true).unwrap();
    }
    drop(s);
    let s = small_drains(&dir);
    assert_eq!(s.get("c", 9, b"key-9").unwrap(), Some(v(2, "v2")));
}

#[test]
fn staged_writes_to_more_collections_than_open_files_are_checkpointed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let few = RedbOptions { max_open_files: 3, checkpoint_writes: 100, ..RedbOptions::default() };
    let mut s = RedbStore::open(dir.path(), few.clone()).unwrap();
    // Stepped checkpoints over 12 collections, 3 files open at most.
    for round in 0..3u64 {
        for c in 0..12u64 {
            stage_handed(&mut s, &format!("c{c}"), staged(0, 30, round + 1));
        }
        s.flush().unwrap();
        for _ in 0..5 {
            s.checkpoint_step(true).unwrap();
        }
    }
    // A full checkpoint unstages every collection, more than may be open at once.
    for c in 0..12u64 {
        stage_handed(&mut s, &format!("c{c}"), staged(30, 35, 9));
    }
    s.flush().unwrap();
    s.checkpoint().unwrap();
    assert!(s.open_files.get() <= 3, "{} open", s.open_files.get());
    drop(s);
    let s = RedbStore::open(dir.path(), few).unwrap();
    for c in 0..12u64 {
        let name = format!("c{c}");
        assert_eq!(s.stats(&name).unwrap().entries, 35, "{name}");
        assert_eq!(s.get(&name, 4, b"key-4").unwrap(), Some(v(3, "v3")), "{name}");
    }
}

#[test]
fn writes_to_more_collections_than_open_files_commit_and_close_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let few = RedbOptions { max_open_files: 2, ..RedbOptions::default() };
    let mut s = RedbStore::open(dir.path(), few.clone()).unwrap();
    // Merges to 6 collections in turn with 2 files open at most: each write to a closed
    // file commits the open ones and closes one — the log keeps every write (no
    // checkpoint empties it), so a crash now loses nothing either.
    for round in 0..20u64 {
        for c in 0..6u64 {
            let key = k(&format!("key-{round}"));
            s.merge(&format!("c{c}"), round, &key, v(round + 1, "v")).unwrap();
        }
    }
    s.flush().unwrap();
    assert!(s.open_files.get() <= 2, "{} open", s.open_files.get());
    assert_eq!(s.wal.read_all().unwrap().len(), 120, "a checkpoint emptied the log");
    drop(s);
    let s = RedbStore::open(dir.path(), few).unwrap();
    for c in 0..6u64 {
        assert_eq!(s.stats(&format!("c{c}")).unwrap().entries, 20, "c{c}");
        assert_eq!(s.get(&format!("c{c}"), 7, b"key-7").unwrap(), Some(v(8, "v")));
    }
}

#[test]
fn a_clean_close_compacts_a_file_mostly_free_and_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let value = "x".repeat(200);
    let records: Vec<Record> = (0..20_000u64)
        .map(|i| Record { pos: i * 1000, key: k(&format!("key-{i}")), entry: v(1, &value) })
        .collect();
    for chunk in records.chunks(2_000) {
        s.merge_batch("c", chunk).unwrap();
        s.flush().unwrap();
        s.checkpoint().unwrap();
    }
    // Nine tenths removed: their pages are free, the file is not smaller.
    s.delete_range("c", Interval::new(0, 18_000 * 1000)).unwrap();
    s.flush().unwrap();
    s.checkpoint().unwrap();
    let before = std::fs::metadata(file_of(&dir, "c")).unwrap().len();
    s.close();
    drop(s);
    let after = std::fs::metadata(file_of(&dir, "c")).unwrap().len();
    assert!(after * 2 <= before, "compacted: {before} -> {after} bytes");
    let s = open(&dir);
    let kept = s.range("c", Interval::full(), None, usize::MAX).unwrap();
    assert_eq!(kept.len(), 2_000);
    assert_eq!(s.stats("c").unwrap().entries, 2_000);
    assert_eq!(s.get("c", 19_999 * 1000, b"key-19999").unwrap(), Some(v(1, &value)));
}
