//! `dhrt repair`: salvage what checks out of a damaged data dir, and say exactly what
//! was dropped.
//!
//! A node refuses to start on damage it cannot explain away — a write-ahead log
//! damaged before its tail, an empty or unreadable `node.redb` or collection file —
//! because starting would hide or lose acknowledged writes silently. [`repair`] is the
//! operator's deliberate step past that, run while the node is stopped:
//!
//! - **the log**: every record that checks out is kept, before and after each damaged
//!   stretch; the log is rewritten with them (atomically) and the original is kept in
//!   `<data-dir>/lost+found/`. Each stretch skipped is reported with its offset and
//!   length.
//! - **collection files**: each is opened (redb repairs a file a crash left
//!   unfinished); one that still cannot be opened, or is empty, is moved to
//!   `lost+found/`. Its data comes back from the other replicas through anti-entropy.
//! - **`node.redb`**: when empty or unreadable it is moved to `lost+found/`; the node
//!   then starts under a new id, as a new member (its data is kept and re-synced).
//! - leftover temporary files of interrupted creations are moved to `lost+found/`.
//!
//! Nothing is ever deleted: every file repair replaces or removes is in `lost+found/`.

use super::{
    io_error,
    node_db::NODE_DB_FILE,
    redb::{open_db, set_aside, LOST_AND_FOUND, WAL_FILE},
    wal, RedbOptions,
};
use dhrt_core::store::StoreError;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// What [`repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Everything changed or dropped, one sentence each, naming file, offset and bytes.
    pub actions: Vec<String>,
    /// Log records kept.
    pub records_kept: usize,
    /// Bytes of the log skipped as damaged.
    pub bytes_dropped: u64,
    /// Files moved to `lost+found/`.
    pub set_aside: Vec<PathBuf>,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() {
            return writeln!(f, "nothing to repair: every file checks out");
        }
        for a in &self.actions {
            writeln!(f, "{a}")?;
        }
        Ok(())
    }
}

/// Repairs the data dir `dir` of a stopped node (see the module docs). Fails, changing
/// nothing, when a node is running on it.
pub fn repair(dir: &Path) -> Result<RepairReport, StoreError> {
    if !dir.is_dir() {
        return Err(StoreError::Io(format!("{} is not a directory", dir.display())));
    }
    let mut report = RepairReport::default();
    let options = RedbOptions { cache_bytes: 1 << 20, ..RedbOptions::default() };
    let node_db = dir.join(NODE_DB_FILE);
    if node_db.exists() {
        check_file(dir, &node_db, &options, &mut report, "the node starts under a new id")?;
    }
    let folder = dir.join("collections");
    if folder.is_dir() {
        let listing = |e: std::io::Error| io_error(&format!("listing {}", folder.display()), &e);
        let mut files: Vec<PathBuf> = fs::read_dir(&folder)
            .map_err(listing)?
            .map(|e| e.map(|e| e.path()).map_err(listing))
            .collect::<Result<_, _>>()?;
        files.sort();
        for path in files {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let to = set_aside(dir, &path)?;
                report.actions.push(format!(
                    "{}: a creation that never finished; moved to {}",
                    path.display(),
                    to.display()
                ));
                report.set_aside.push(to);
            } else if name.ends_with(".redb") && path.is_file() {
                check_file(
                    dir,
                    &path,
                    &options,
                    &mut report,
                    "its records come back from the other replicas",
                )?;
            }
        }
    }
    let log = dir.join(WAL_FILE);
    for log in [wal::sealed_path(&log), log] {
        if log.is_file() {
            repair_log(dir, &log, &mut report)?;
        }
    }
    Ok(report)
}

/// Opens the redb file at `path`; sets it aside when it cannot be opened (unless a
/// node holds it: then repair stops).
fn check_file(
    dir: &Path,
    path: &Path,
    options: &RedbOptions,
    report: &mut RepairReport,
    then: &str,
) -> Result<(), StoreError> {
    match open_db(path, options) {
        Ok(_) => Ok(()),
        Err(StoreError::Io(why)) if why.contains("another process") => {
            Err(StoreError::Io(format!("{why}: stop the node before running dhrt repair")))
        }
        Err(e) => {
            let bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let to = set_aside(dir, path)?;
            report.actions.push(format!(
                "{}: {bytes} bytes, unreadable ({e}); moved to {}; {then}",
                path.display(),
                to.display()
            ));
            report.set_aside.push(to);
            Ok(())
        }
    }
}

/// Rewrites the log at `path` with the records that check out, keeping the original.
fn repair_log(dir: &Path, path: &Path, report: &mut RepairReport) -> Result<(), StoreError> {
    let raw = fs::read(path).map_err(|e| io_error(&format!("reading {}", path.display()), &e))?;
    if raw.is_empty() {
        return Ok(());
    }
    let salvaged = match wal::salvage(&raw, path) {
        Ok(s) => s,
        Err(e) => {
            let to = set_aside(dir, path)?;
            report.actions.push(format!(
                "{}: {} bytes, not a write-ahead log ({e}); moved to {}; its writes come \
                 back from the other replicas",
                path.display(),
                raw.len(),
                to.display()
            ));
            report.bytes_dropped += raw.len() as u64;
            report.set_aside.push(to);
            return Ok(());
        }
    };
    report.records_kept += salvaged.items.len();
    if salvaged.dropped.is_empty() {
        return Ok(());
    }
    let rewritten = wal::encode_file(&salvaged.items);
    let folder = dir.join(LOST_AND_FOUND);
    fs::create_dir_all(&folder).map_err(|e| io_error("creating lost+found", &e))?;
    let name = path.file_name().map_or_else(|| WAL_FILE.into(), |n| n.to_string_lossy());
    let mut copy = folder.join(&*name);
    let mut n = 1;
    while copy.exists() {
        copy = folder.join(format!("{name}.{n}"));
        n += 1;
    }
    let temp = dir.join(format!(".{name}.tmp"));
    let write = |p: &Path, bytes: &[u8]| {
        fs::write(p, bytes)
            .and_then(|()| fs::File::open(p)?.sync_all())
            .map_err(|e| io_error(&format!("writing {}", p.display()), &e))
    };
    write(&copy, &raw)?;
    write(&temp, &rewritten)?;
    fs::rename(&temp, path).map_err(|e| io_error(&format!("replacing {}", path.display()), &e))?;
    for (offset, bytes) in &salvaged.dropped {
        report.actions.push(format!(
            "{}: dropped {bytes} damaged bytes at offset {offset} (at least one record)",
            path.display()
        ));
        report.bytes_dropped += bytes;
    }
    report.actions.push(format!(
        "{}: kept {} records that check out ({} of {} bytes); the original is in {}",
        path.display(),
        salvaged.items.len(),
        rewritten.len(),
        raw.len(),
        copy.display()
    ));
    report.set_aside.push(copy);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NodeDb, RedbStore};
    use bytes::Bytes;
    use dhrt_core::{clock::Timestamp, entry::Entry, entry::NodeId, store::Store};

    fn value(i: u64) -> Entry {
        Entry::value(format!("v{i}"), Timestamp(i + 1), NodeId(1))
    }

    #[test]
    fn a_log_damaged_in_the_middle_is_salvaged_around_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        drop(NodeDb::open(dir.path()).unwrap());
        let mut s = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        for i in 0..300u64 {
            s.merge("c", i, &Bytes::from(format!("k{i}")), value(i)).unwrap();
            s.flush().unwrap();
        }
        drop(s);
        let log = dir.path().join(WAL_FILE);
        let mut raw = fs::read(&log).unwrap();
        // In the middle of the records, not of the zeros the log is filled with ahead.
        let middle = raw.iter().rposition(|&b| b != 0).unwrap() / 2;
        raw[middle] ^= 0x40;
        fs::write(&log, &raw).unwrap();
        let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
        assert!(err.to_string().contains("collections.wal"), "{err}");
        let report = repair(dir.path()).unwrap();
        let text = report.to_string();
        assert_eq!(report.records_kept, 299, "{text}");
        assert!(text.contains("offset") && text.contains("dropped"), "{text}");
        assert_eq!(fs::read(dir.path().join(LOST_AND_FOUND).join(WAL_FILE)).unwrap(), raw);
        let s = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        assert_eq!(s.stats("c").unwrap().entries, 299);
        drop(s);
        assert_eq!(repair(dir.path()).unwrap().actions, Vec::<String>::new(), "idempotent");
    }

    #[test]
    fn a_damaged_sealed_log_is_salvaged_too() {
        let dir = tempfile::tempdir().unwrap();
        drop(NodeDb::open(dir.path()).unwrap());
        let log = dir.path().join(WAL_FILE);
        let (mut wal, _) = wal::Wal::open(&log).unwrap();
        let mut older = Vec::new();
        for i in 0..100u64 {
            wal::encode_merge(&mut older, "c", i, format!("k{i}").as_bytes(), &value(i));
        }
        wal.write(&older).unwrap();
        wal.seal().unwrap(); // as a checkpoint written in steps leaves it
        let mut newer = Vec::new();
        wal::encode_merge(&mut newer, "c", 500, b"k500", &value(500));
        wal.write(&newer).unwrap();
        wal.sync_job()().unwrap();
        drop(wal);
        let sealed = wal::sealed_path(&log);
        let mut raw = fs::read(&sealed).unwrap();
        let middle = raw.len() / 2;
        raw[middle] ^= 0x40;
        fs::write(&sealed, &raw).unwrap();
        let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
        assert!(err.to_string().contains("collections.wal.sealed"), "{err}");
        let report = repair(dir.path()).unwrap();
        let text = report.to_string();
        assert_eq!(report.records_kept, 100, "99 of the sealed log, 1 of the fresh: {text}");
        assert!(dir.path().join(LOST_AND_FOUND).join("collections.wal.sealed").is_file());
        let s = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        assert_eq!(s.stats("c").unwrap().entries, 100);
        assert!(!sealed.exists(), "the start checkpointed both logs");
    }

    #[test]
    fn empty_files_are_set_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        s.merge("c", 1, &Bytes::from("k"), value(1)).unwrap();
        s.merge("d", 1, &Bytes::from("k"), value(1)).unwrap();
        s.flush().unwrap();
        s.checkpoint().unwrap(); // else the log would bring c's record back
        drop(s);
        fs::write(dir.path().join(NODE_DB_FILE), b"").unwrap();
        fs::write(dir.path().join("collections/c.redb"), b"").unwrap();
        let report = repair(dir.path()).unwrap();
        let text = report.to_string();
        assert_eq!(report.set_aside.len(), 2, "{text}");
        assert!(text.contains("node.redb") && text.contains("c.redb"), "{text}");
        assert!(dir.path().join(LOST_AND_FOUND).join("c.redb").is_file());
        let db = NodeDb::open(dir.path()).unwrap();
        assert_eq!(db.node_id().unwrap(), None, "a new identity, made knowingly");
        let s = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        assert_eq!(s.collections().unwrap(), ["d"]);
    }
}
