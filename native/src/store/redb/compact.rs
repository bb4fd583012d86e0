//! Giving back the room a collection file no longer uses, when the node stops cleanly.
//!
//! redb never hands a file's free pages back to the file system unless they sit at its
//! end, and below its region size (4 GiB) it grows a file by doubling it. So a file whose
//! pages in use just passed a power of two — or whose checkpoints copy many pages
//! before their commit frees the old ones — can stay twice the size of its data, or
//! more: 1,000,000 keys of 16 + 100 bytes written in checkpoints of ~20,000 left a
//! 514 MiB file with 208 MiB in use. A node reading from disk reads its files ahead at
//! start (`RedbOptions::preload_bytes`), so the empty half cost every start its read
//! too, besides the disk.
//!
//! A clean stop (after its last checkpoint) compacts each file of at least 64 MiB
//! ([`FROM`]) and at most 1 GiB ([`UP_TO`]) whose pages in use are at most half of it
//! (redb's `Database::compact`, transactional: a crash in the middle leaves a whole
//! file). It costs the stop time in proportion to the data: 2.6 s for that file, which
//! became 208 MiB (docs/benchmarks.md). Larger files are left as they are, so that a
//! stop never takes minutes (past 4 GiB redb grows a file a region at a time, so their
//! waste is bounded anyway). A failure is logged and changes nothing.

use super::RedbStore;
use std::time::Instant;

/// Files smaller than this are left as they are.
#[cfg(not(test))]
const FROM: u64 = 64 << 20;
#[cfg(test)]
const FROM: u64 = 1 << 20;
/// Files larger than this are left as they are (see the module docs).
const UP_TO: u64 = 1 << 30;

impl RedbStore {
    /// Compacts the collection files that are mostly free (see the module docs); only a
    /// store whose last checkpoint succeeded, with no transaction open.
    pub(crate) fn compact_sparse(&mut self) {
        if self.retrying() || self.draining.is_some() {
            return;
        }
        let names: Vec<String> = self.collections.keys().cloned().collect();
        for name in names {
            let Some(c) = self.collections.get(&name) else { continue };
            let Ok(size) = std::fs::metadata(&c.path).map(|m| m.len()) else { continue };
            if !(FROM..=UP_TO).contains(&size) || self.ensure_open(&name, c).is_err() {
                continue;
            }
            let mut handle = c.handle.borrow_mut();
            if handle.txn.is_some() || handle.committing {
                continue;
            }
            let Some(db) = handle.db.as_mut() else { continue };
            let Some(used) = in_use(db) else { continue };
            if used.saturating_mul(2) > size {
                continue;
            }
            let started = Instant::now();
            match db.compact() {
                Ok(_) => {
                    let after = std::fs::metadata(&c.path).map_or(0, |m| m.len());
                    tracing::info!(
                        collection = %name,
                        before_mib = size >> 20,
                        after_mib = after >> 20,
                        ms = started.elapsed().as_millis() as u64,
                        "compacted a collection file that was mostly free"
                    );
                }
                Err(e) => {
                    tracing::warn!(collection = %name, error = %e, "could not compact a collection file");
                }
            }
        }
    }
}

/// Bytes of `db`'s pages in use, if they can be read.
fn in_use(db: &redb::Database) -> Option<u64> {
    let txn = db.begin_write().ok()?;
    let stats = txn.stats().ok();
    txn.abort().ok()?;
    let stats = stats?;
    Some(stats.allocated_pages().saturating_mul(stats.page_size() as u64))
}
