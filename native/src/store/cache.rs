//! How much of redb's page cache each collection file gets, from one budget.
//!
//! redb sizes a file's page cache when the file is opened, and a node may hold up to
//! `max_open_files` (256) files open: at 128 MiB each that is 32 GiB, more than the
//! machines dhrt runs on. So the store hands caches out of a total budget
//! ([`RedbOptions::cache_total_bytes`](super::RedbOptions::cache_total_bytes), 1 GiB by
//! default). A file opened gets
//!
//! ```text
//! min(per_file, max(FLOOR, min(budget − granted, budget / files open with it)))
//! ```
//!
//! where `granted` is what the files already open hold. A node with a few hot
//! collections (up to `budget / per_file`, eight at the defaults) gives each the full
//! 128 MiB, as before the budget existed; past that, files get what is left, down to a
//! floor of [`FLOOR`] (1 MiB) so that even a file opened last can cache its B-tree's
//! upper levels. The sum of the caches of the open files thus stays under
//! `budget + FLOOR × max_open_files` (1.25 GiB at the defaults). A grant is returned
//! when its file is closed (idle files are closed least recently used first), and a
//! file reopened later gets a fresh share.

/// The smallest cache a file gets, whatever the budget: 1 MiB.
pub const FLOOR: usize = 1 << 20;

/// The cache sizing rule (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBudget {
    /// The total over every open file.
    pub total: usize,
    /// The most one file gets.
    pub per_file: usize,
}

impl CacheBudget {
    /// The cache of a file opened while the open files hold `granted` bytes of cache and
    /// `open_after` files (this one included) will be open.
    pub fn grant(&self, granted: usize, open_after: usize) -> usize {
        let left = self.total.saturating_sub(granted);
        let share = self.total / open_after.max(1);
        left.min(share).max(FLOOR).min(self.per_file.max(FLOOR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;
    const DEFAULT: CacheBudget = CacheBudget { total: 1024 * MIB, per_file: 128 * MIB };

    /// Opens `n` files one after the other: their grants.
    fn open(budget: CacheBudget, n: usize) -> Vec<usize> {
        let mut grants: Vec<usize> = Vec::new();
        for i in 1..=n {
            grants.push(budget.grant(grants.iter().sum(), i));
        }
        grants
    }

    #[test]
    fn a_few_hot_files_keep_the_full_cache_each() {
        assert_eq!(open(DEFAULT, 1), [128 * MIB]);
        assert_eq!(open(DEFAULT, 8), [128 * MIB; 8]);
    }

    #[test]
    fn many_open_files_never_sum_past_the_budget_by_more_than_a_floor_each() {
        for (budget, files) in
            [(DEFAULT, 256), (DEFAULT, 4000), (CacheBudget { total: 0, ..DEFAULT }, 10)]
        {
            let grants = open(budget, files);
            let sum: usize = grants.iter().sum();
            assert!(sum <= budget.total + FLOOR * files, "{sum} for {files} files");
            assert!(grants.iter().all(|&g| g >= FLOOR), "every file gets the floor");
        }
        let grants = open(DEFAULT, 256);
        assert!(grants[8..].iter().all(|&g| g == FLOOR), "{:?}", &grants[..12]);
        assert!(grants.iter().sum::<usize>() <= 1024 * MIB + 248 * MIB);
    }

    #[test]
    fn a_closed_files_cache_goes_to_the_next_file_opened() {
        let mut grants = open(DEFAULT, 9);
        assert_eq!(grants[8], FLOOR);
        grants.remove(0); // the least recently used file closes
                          // 127 MiB are left, but nine files share the budget: a ninth of it.
        assert_eq!(DEFAULT.grant(grants.iter().sum(), 9), 1024 * MIB / 9);
    }

    #[test]
    fn a_small_budget_is_shared_among_the_open_files() {
        let small = CacheBudget { total: 64 * MIB, per_file: 128 * MIB };
        assert_eq!(open(small, 1), [64 * MIB]);
        // Two files: the first took the whole budget, the second gets the floor.
        assert_eq!(open(small, 2), [64 * MIB, FLOOR]);
        // A per-file size under the floor still gets the floor.
        let tiny = CacheBudget { total: 64 * MIB, per_file: 0 };
        assert_eq!(tiny.grant(0, 1), FLOOR);
    }
}
