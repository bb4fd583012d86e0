//! The free-space reserve: refuse new data before the disk is full, not after.
//!
//! A copy-on-write B-tree needs room to delete as well as to insert, and redb is much
//! happier refusing a write up front than meeting `ENOSPC` half way through a commit.
//! So before a merge, [`SpaceReserve::admit`] asks whether the data dir's file system
//! would still have at least a given floor free after it, and refuses with
//! [`StoreError::Full`] otherwise. The store chooses the floor (`RedbStore`'s module
//! docs): the reserve plus room for the log and the next checkpoint for writes that add
//! data, much less for tombstones. Removals are not checked: they are how space comes
//! back (tombstone collection, cleaning after a hand-off), and the reserve is what
//! they run in.
//!
//! Asking the file system (`statvfs`) costs a system call, so the answer is cached for
//! a second and the bytes admitted since are subtracted from it — except near the
//! floor, where every admission asks: checkpoints write on other threads, and what they
//! take is not among the bytes admitted.

use dhrt_core::store::StoreError;
use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a free-space reading is trusted, away from the floor.
const REFRESH: Duration = Duration::from_secs(1);
/// Within the floor and this much more (or twice the floor), every admission reads the
/// disk afresh.
const NEAR: u64 = 16 << 20;

/// Admits writes while the data dir keeps enough bytes free.
#[derive(Debug)]
pub(crate) struct SpaceReserve {
    dir: PathBuf,
    reserve: u64,
    /// The last reading: when, and the free bytes then (`None`: could not be read).
    reading: Cell<Option<(Instant, Option<u64>)>>,
    /// Bytes admitted since the last reading.
    admitted: Cell<u64>,
}

impl SpaceReserve {
    /// A reserve of `reserve` bytes on the file system holding `dir`.
    pub(crate) fn new(dir: PathBuf, reserve: u64) -> Self {
        SpaceReserve { dir, reserve, reading: Cell::new(None), admitted: Cell::new(0) }
    }

    /// The reserve the operator asked for, in bytes.
    pub(crate) fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes free now, less what was admitted since the last reading (read again when
    /// older than a second); `None` when the file system does not say.
    pub(crate) fn free(&self) -> Option<u64> {
        let now = Instant::now();
        let fresh = self.reading.get().is_some_and(|(at, _)| now.duration_since(at) < REFRESH);
        if !fresh {
            self.reading.set(Some((now, free_bytes(&self.dir))));
            self.admitted.set(0);
        }
        let (_, free) = self.reading.get()?;
        free.map(|free| free.saturating_sub(self.admitted.get()))
    }

    /// Forgets the last reading, so that the next question reads the disk again.
    pub(crate) fn forget(&self) {
        self.reading.set(None);
    }

    /// Bytes free now, read from the file system whatever the last reading's age.
    pub(crate) fn free_now(&self) -> Option<u64> {
        self.forget();
        self.free()
    }

    /// Admits a write of about `bytes`, or refuses it with [`StoreError::Full`] when it
    /// would leave less than `keep` bytes free (the caller's floor: the reserve plus
    /// what the log and the next checkpoint need, or less for writes that free space).
    /// When the free space cannot be read (an unusual file system) writes are admitted,
    /// and a full disk is still reported by the engine's own `ENOSPC`.
    pub(crate) fn admit(&self, bytes: u64, keep: u64) -> Result<(), StoreError> {
        let Some(mut free) = self.free() else { return Ok(()) };
        if free.saturating_sub(bytes) < keep.saturating_add(keep.max(NEAR)) {
            // Near the floor the disk is read at every write: what a checkpoint wrote
            // since the last reading (on another thread) is not in `admitted`, and a
            // second of it took the reserve meant for deletes.
            let Some(now) = self.free_now() else { return Ok(()) };
            free = now;
        }
        if free.saturating_sub(bytes) < keep {
            return Err(StoreError::Full(format!(
                "{} has {free} bytes free; writes must leave {keep} (the reserve of {} \
                 bytes, --min-free-mb, plus room for the write-ahead log and the next \
                 checkpoint)",
                self.dir.display(),
                self.reserve
            )));
        }
        self.admitted.set(self.admitted.get().saturating_add(bytes));
        Ok(())
    }
}

/// Bytes available to this (unprivileged) process on the file system holding `dir`.
#[cfg(unix)]
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Free space is not read on this platform; the engine's own errors report a full disk.
#[cfg(not(unix))]
fn free_bytes(_dir: &std::path::Path) -> Option<u64> {
    None
}

/// [`free_bytes`] for the store's tests.
#[cfg(test)]
pub(crate) fn free_bytes_for_tests(dir: &std::path::Path) -> Option<u64> {
    free_bytes(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_reserve_refuses_and_no_reserve_admits() {
        let dir = tempfile::tempdir().unwrap();
        let all = SpaceReserve::new(dir.path().to_path_buf(), u64::MAX);
        assert!(matches!(all.admit(1, u64::MAX), Err(StoreError::Full(_))));
        let none = SpaceReserve::new(dir.path().to_path_buf(), 0);
        assert!(none.admit(0, 0).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn admitted_bytes_count_against_the_cached_reading() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        let r = SpaceReserve::new(dir.path().to_path_buf(), 1);
        // Admit nearly all of it: the next byte-sized write must be refused from the
        // cache, without the disk having changed.
        r.admit(free / 2, 1).unwrap();
        assert!(matches!(r.admit(free, 1), Err(StoreError::Full(_))));
    }
}
