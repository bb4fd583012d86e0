//! The free-space reserve: refuse new data before the disk is full, not after.
//!
//! A copy-on-write B-tree needs room to delete as well as to insert, and redb is much
//! happier refusing a write up front than meeting `ENOSPC` half way through a commit.
//! So before a merge, [`SpaceReserve::admit`] asks whether the data dir's file system
//! would still have at least the reserve free after it, and refuses with
//! [`StoreError::Full`] otherwise. Removals are not checked: they are how space comes
//! back (tombstone collection, cleaning after a hand-off), and the reserve is what
//! they run in.
//!
//! Asking the file system (`statvfs`) costs a system call, so the answer is cached for
//! a second and the bytes admitted since are subtracted from it.

use dhrt_core::store::StoreError;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a free-space reading is trusted.
const REFRESH: Duration = Duration::from_secs(1);

/// Admits writes while the data dir keeps `reserve` bytes free.
#[derive(Debug)]
pub(crate) struct SpaceReserve {
    dir: PathBuf,
    reserve: u64,
    /// The last reading: when, and the free bytes then (`None`: could not be read).
    reading: Option<(Instant, Option<u64>)>,
    /// Bytes admitted since the last reading.
    admitted: u64,
}

impl SpaceReserve {
    /// A reserve of `reserve` bytes on the file system holding `dir`.
    pub(crate) fn new(dir: PathBuf, reserve: u64) -> Self {
        SpaceReserve { dir, reserve, reading: None, admitted: 0 }
    }

    /// Admits a write of about `bytes`, or refuses it with [`StoreError::Full`] when it
    /// would leave less than the reserve free. When the free space cannot be read (an
    /// unusual file system) writes are admitted, and a full disk is still reported by
    /// the engine's own `ENOSPC`.
    pub(crate) fn admit(&mut self, bytes: u64) -> Result<(), StoreError> {
        if self.reserve == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let fresh = self.reading.is_some_and(|(at, _)| now.duration_since(at) < REFRESH);
        if !fresh {
            self.reading = Some((now, free_bytes(&self.dir)));
            self.admitted = 0;
        }
        let Some((_, Some(free))) = self.reading else { return Ok(()) };
        let left = free.saturating_sub(self.admitted).saturating_sub(bytes);
        if left < self.reserve {
            return Err(StoreError::Full(format!(
                "{} has {} bytes free, below the reserve of {} bytes (RedbOptions::min_free_bytes)",
                self.dir.display(),
                free.saturating_sub(self.admitted),
                self.reserve
            )));
        }
        self.admitted = self.admitted.saturating_add(bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_reserve_refuses_and_no_reserve_admits() {
        let dir = tempfile::tempdir().unwrap();
        let mut all = SpaceReserve::new(dir.path().to_path_buf(), u64::MAX);
        assert!(matches!(all.admit(1), Err(StoreError::Full(_))));
        let mut none = SpaceReserve::new(dir.path().to_path_buf(), 0);
        assert!(none.admit(u64::MAX).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn admitted_bytes_count_against_the_cached_reading() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        let mut r = SpaceReserve::new(dir.path().to_path_buf(), 1);
        // Admit nearly all of it: the next byte-sized write must be refused from the
        // cache, without the disk having changed.
        r.admit(free / 2).unwrap();
        assert!(matches!(r.admit(free), Err(StoreError::Full(_))));
    }
}
