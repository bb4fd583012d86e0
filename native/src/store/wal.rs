//! The write-ahead log of a [`RedbStore`](super::RedbStore): what makes a write durable.
//!
//! A commit of a redb file rewrites every B-tree page the commit touched (copy on
//! write) and costs two fsyncs; with writes to random keys that was ~48 scattered pages
//! per group commit (docs/benchmarks.md). So a group commit appends the batch's merges
//! to this log — one sequential write and one `fdatasync`, across every collection —
//! and the redb files are committed only now and then, at a *checkpoint*, when the log
//! has grown past a bound or something was removed. A restart replays the log into the
//! files; replaying is safe in any order and any number of times, because a merge keeps
//! whichever entry supersedes the other (the same rule every replica applies).
//!
//! ## Format
//!
//! `<data-dir>/collections.wal`: the 8 bytes `DHRTWAL1`, then records, each
//!
//! ```text
//! u32 LE body length | u64 LE xxh3-64 of the body | body
//! body: u8 kind | u8 collection length | collection | then, for kind 1 (merge):
//!       u64 LE position | u32 LE key length | key | entry (codec::encode_entry)
//!       kind 2 (drop): nothing more — the collection was dropped; earlier merges
//!       into it are void
//! ```
//!
//! ## Torn tails and damage
//!
//! Appends only ever go at the end, and an append that fails is cut off again before
//! the next one ([`Wal::write`]), so a crash can damage only the *last* append: its
//! records were never acknowledged. Reading therefore stops at the first record that
//! is cut short or fails its checksum, and then looks at what follows it:
//!
//! - **nothing that checks out** (no whole record with a good checksum starts at any
//!   later byte): a torn tail. It is cut off, with a warning naming the file and the
//!   offset, and the node starts.
//! - **a good record somewhere after it**: damage in the middle of the log (a flipped
//!   bit, a bad sector). Acknowledged writes may sit behind it, so the start is refused
//!   with [`StoreError::Corrupt`] naming the file and the byte offset, and the file is
//!   left exactly as it was for `dhrt repair` ([`salvage`]).
//!
//! A record whose checksum holds but whose body does not decode is corruption too.
//!
//! ## The sealed log
//!
//! A checkpoint written step by step ([`super::redb`]'s `drain`) first *seals* the log
//! ([`Wal::seal`]): `collections.wal` is synced and renamed `collections.wal.sealed`,
//! and appends go to a fresh `collections.wal`; once the checkpoint is committed the
//! sealed file is deleted. Opening reads the sealed log first, then the current one.
//! A sealed log was synced whole, so any damage in it — even in its last record — is
//! refused as damage.
use super::{codec, io_error};
use bytes::Bytes;
use dhrt_core::{entry::Entry, hash::Position, store::StoreError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};
use xxhash_rust::xxh3::xxh3_64;

/// The first bytes of a log file.
const MAGIC: &[u8; 8] = b"DHRTWAL1";
/// Bytes before a record's body: its length and checksum.
const HEADER: usize = 4 + 8;
/// The kind byte of a merge record.
const MERGE: u8 = 1;
/// The kind byte of a drop record.
const DROP: u8 = 2;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A merge into a collection.
    Merge(Logged),
    /// A whole collection dropped: the merges into it before this record are void.
    Drop(String),
}

/// The merges of a log's records that still count: those not voided by a later drop
/// of their collection.
pub fn live_merges(items: Vec<Item>) -> Vec<Logged> {
    let mut dropped_after = std::collections::HashSet::new();
    let mut out = Vec::new();
    for item in items.into_iter().rev() {
        match item {
            Item::Drop(c) => {
                dropped_after.insert(c);
            }
            Item::Merge(m) if !dropped_after.contains(&m.collection) => out.push(m),
            Item::Merge(_) => {}
        }
    }
    out.reverse();
    out
}

/// One merge read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The collection written.
    pub collection: String,
    /// The key's ring position.
    pub pos: Position,
    /// The key.
    pub key: Bytes,
    /// The entry merged.
    pub entry: Entry,
}

/// An open log file; appends go after the last whole record.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    /// Where the next record goes: the end of the last whole record.
    end: u64,
    /// Counts the writes to the file: the generation of the last one.
    written: u64,
    /// The newest generation known to be on disk (raised by sync jobs, on any thread).
    synced: Arc<AtomicU64>,
    /// A sync job failed: what was written since the last good sync may be lost.
    sync_failed: Arc<AtomicBool>,
    /// An append failed part way: bytes past `end` may be in the file, and are cut off
    /// before anything else is written.
    dirty: bool,
    /// The end of the sealed log ([`Wal::seal`]), while there is one.
    sealed: Option<u64>,
}

/// Appends the record of a merge to `out` (a batch not yet written).
pub fn encode_merge(out: &mut Vec<u8>, collection: &str, pos: Position, key: &[u8], entry: &Entry) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(MERGE);
    // Collection names are at most 255 bytes and keys at most 64 KiB (checked before a
    // merge reaches the store), so these lengths fit.
    out.push(collection.len() as u8);
    out.extend_from_slice(collection.as_bytes());
    out.extend_from_slice(&pos.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    codec::encode_entry_into(entry, out);
    seal(out, start);
}

/// Appends the record of a dropped collection to `out`.
pub fn encode_drop(out: &mut Vec<u8>, collection: &str) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(DROP);
    out.push(collection.len() as u8);
    out.extend_from_slice(collection.as_bytes());
    seal(out, start);
}

/// Fills in the header of the record that starts at `start` of `out`.
fn seal(out: &mut [u8], start: usize) {
    let body = start + HEADER;
    let len = (out.len() - body) as u32;
    let sum = xxh3_64(&out[body..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..body].copy_from_slice(&sum.to_le_bytes());
}

impl Wal {
    /// Opens (or creates) the log at `path` and reads back its records. A torn tail is
    /// cut off (and logged); damage before the tail is [`StoreError::Corrupt`] naming
    /// the file and offset, and leaves the file untouched (see the module docs).
    pub fn open(path: &Path) -> Result<(Wal, Vec<Item>), StoreError> {
        // A sealed log holds the older records: read it first (see [`Wal::seal`]).
        let sealed_at = sealed_path(path);
        let sealed = match std::fs::read(&sealed_at) {
            Ok(raw) => Some(read_sealed(&raw, &sealed_at)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&format!("reading {}", sealed_at.display()), &e)),
        };
        let (mut wal, current) = Wal::open_current(path)?;
        let Some((older, end)) = sealed else { return Ok((wal, current)) };
        wal.sealed = Some(end);
        Ok((wal, older.into_iter().chain(current).collect()))
    }

    /// Opens the current log file (see [`Wal::open`]).
    fn open_current(path: &Path) -> Result<(Wal, Vec<Item>), StoreError> {
        let what = |doing: &str| format!("{doing} {}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_error(&what("opening"), &e))?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).map_err(|e| io_error(&what("reading"), &e))?;
        let mut wal = Wal {
            file,
            path: path.to_path_buf(),
            end: MAGIC.len() as u64,
            written: 0,
            synced: Arc::new(AtomicU64::new(0)),
            sync_failed: Arc::new(AtomicBool::new(false)),
            dirty: false,
            sealed: None,
        };
        if raw.is_empty() {
            wal.reset()?;
            return Ok((wal, Vec::new()));
        }
        check_magic(&raw, path)?;
        let (records, end) = decode_all(&raw, path)?;
        if end < raw.len() {
            if let Some(next) = next_good_record(&raw, end + 1) {
                return Err(StoreError::Corrupt(format!(
                    "{}: the record at byte {end} is damaged but a good record follows at \
                     byte {next} (the log is {} bytes): acknowledged writes may be behind \
                     the damage, so the node does not start; the file is left as it is. \
                     Run `dhrt repair --data-dir DIR` to salvage what checks out",
                    path.display(),
                    raw.len()
                )));
            }
            tracing::warn!(
                file = %path.display(),
                offset = end,
                bytes = raw.len() - end,
                "the write-ahead log ends in a torn append (a crash during a write that was \
                 never acknowledged): cutting it off"
            );
            // Cut the torn tail off, so that nothing of it can ever be read as a record.
            wal.file
                .set_len(end as u64)
                .and_then(|()| wal.file.sync_data())
                .map_err(|e| io_error(&what("truncating the torn tail of"), &e))?;
        }
        wal.end = end as u64;
        Ok((wal, records))
    }

    /// Bytes of whole records in the log (0 when empty).
    pub fn len(&self) -> u64 {
        self.end - MAGIC.len() as u64
    }

    /// Appends encoded records (from [`encode_merge`]) and waits until they are on disk.
    #[cfg(test)]
    pub fn append(&mut self, records: &[u8]) -> Result<(), StoreError> {
        self.write(records)?;
        self.sync_job()()
    }

    /// Appends encoded records without waiting for the disk ([`Wal::sync_job`] does).
    /// A failed write leaves the log's end where it was, so the next one overwrites
    /// whatever part of this one reached the file.
    pub fn write(&mut self, records: &[u8]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let what = format!("appending to {}", self.path.display());
        if self.dirty {
            // What a failed append left past the end must not sit behind this one,
            // where it would read as damage before the tail.
            self.file.set_len(self.end).map_err(|e| io_error(&what, &e))?;
            self.dirty = false;
        }
        let written =
            self.file.seek(SeekFrom::Start(self.end)).and_then(|_| self.file.write_all(records));
        if let Err(e) = written {
            self.dirty = true;
            return Err(io_error(&what, &e));
        }
        self.end += records.len() as u64;
        self.written += 1;
        Ok(())
    }

    /// Whether something written is not yet known to be on disk.
    pub fn unsynced(&self) -> bool {
        self.synced.load(Ordering::Acquire) < self.written
    }

    /// Whether a sync job failed since [`Wal::reset`]: what it covered may be lost, so
    /// the store checkpoints instead of trusting the log.
    pub fn sync_failed(&self) -> bool {
        self.sync_failed.load(Ordering::Acquire)
    }

    /// A job that waits until everything written so far is on disk (`fdatasync` of a
    /// second handle to the file), to run on any thread.
    pub fn sync_job(&self) -> Box<dyn FnOnce() -> Result<(), StoreError> + Send> {
        let generation = self.written;
        let synced = self.synced.clone();
        let failed = self.sync_failed.clone();
        let what = format!("syncing {}", self.path.display());
        let file = self.file.try_clone();
        Box::new(move || {
            let outcome = file.and_then(|f| f.sync_data()).map_err(|e| io_error(&what, &e));
            match &outcome {
                Ok(()) => {
                    synced.fetch_max(generation, Ordering::AcqRel);
                }
                Err(_) => failed.store(true, Ordering::Release),
            }
            outcome
        })
    }

    /// Empties the log (after a checkpoint made everything in it durable elsewhere).
    pub fn reset(&mut self) -> Result<(), StoreError> {
        let what = format!("emptying {}", self.path.display());
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(MAGIC))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error(&what, &e))?;
        self.end = MAGIC.len() as u64;
        self.dirty = false;
        self.synced.fetch_max(self.written, Ordering::AcqRel);
        self.sync_failed.store(false, Ordering::Release);
        self.drop_sealed()
    }

    /// Seals the log: everything written so far is synced, the file becomes the
    /// *sealed* log ([`sealed_path`]) and appends go to a fresh one. A checkpoint that
    /// writes what the sealed log holds into the files then deletes it
    /// ([`Wal::drop_sealed`]); until then a start replays both, the sealed one first.
    /// Refused while a sealed log exists. Each step is a rename or a new file followed
    /// by a sync of the folder, so a crash anywhere leaves the records in one of the two
    /// files, each read back whole.
    pub fn seal(&mut self) -> Result<(), StoreError> {
        if self.sealed.is_some() {
            return Err(StoreError::Io(format!("{} is sealed already", self.path.display())));
        }
        let what = |doing: &str| format!("{doing} {}", self.path.display());
        if self.dirty {
            // What a failed append left past the end must not be sealed with the rest.
            self.file.set_len(self.end).map_err(|e| io_error(&what("truncating"), &e))?;
            self.dirty = false;
        }
        if self.unsynced() {
            self.file.sync_data().map_err(|e| io_error(&what("syncing"), &e))?;
        }
        let sealed = sealed_path(&self.path);
        std::fs::rename(&self.path, &sealed).map_err(|e| io_error(&what("sealing"), &e))?;
        let fresh = create_empty(&self.path).and_then(|file| {
            sync_folder(&self.path)?;
            Ok(file)
        });
        let file = match fresh {
            Ok(file) => file,
            Err(e) => {
                // Back as it was: the log is still one file, whole.
                let _ = std::fs::rename(&sealed, &self.path);
                return Err(e);
            }
        };
        self.sealed = Some(self.end);
        self.file = file;
        self.end = MAGIC.len() as u64;
        self.dirty = false;
        self.synced.fetch_max(self.written, Ordering::AcqRel);
        self.sync_failed.store(false, Ordering::Release);
        Ok(())
    }

    /// Deletes the sealed log, once what it holds is durable in the files.
    pub fn drop_sealed(&mut self) -> Result<(), StoreError> {
        if self.sealed.is_none() {
            return Ok(());
        }
        let sealed = sealed_path(&self.path);
        match std::fs::remove_file(&sealed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&format!("removing {}", sealed.display()), &e)),
        }
        sync_folder(&self.path)?;
        self.sealed = None;
        Ok(())
    }

    /// Reads back every whole record of the log, the sealed one's first.
    pub fn read_all(&mut self) -> Result<Vec<Item>, StoreError> {
        let mut items = match self.sealed {
            Some(end) => {
                let sealed = sealed_path(&self.path);
                let raw = std::fs::read(&sealed)
                    .map_err(|e| io_error(&format!("reading {}", sealed.display()), &e))?;
                let end = (end as usize).min(raw.len());
                decode_all(&raw[..end], &sealed)?.0
            }
            None => Vec::new(),
        };
        let what = format!("reading {}", self.path.display());
        let mut raw = Vec::new();
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.read_to_end(&mut raw))
            .map_err(|e| io_error(&what, &e))?;
        let end = (self.end as usize).min(raw.len());
        items.extend(decode_all(&raw[..end], &self.path)?.0);
        Ok(items)
    }
}

/// Where the sealed log of the log at `path` is: `<path>.sealed`.
pub fn sealed_path(path: &Path) -> PathBuf {
    let mut sealed = path.as_os_str().to_owned();
    sealed.push(".sealed");
    PathBuf::from(sealed)
}

/// Reads a sealed log: synced whole before it was sealed, so anything that does not
/// check out in it — a torn tail included — is damage, refused like damage before a
/// log's tail. Returns its records and its end.
fn read_sealed(raw: &[u8], path: &Path) -> Result<(Vec<Item>, u64), StoreError> {
    check_magic(raw, path)?;
    let (records, end) = decode_all(raw, path)?;
    if end < raw.len() {
        return Err(StoreError::Corrupt(format!(
            "{}: the record at byte {end} is damaged (the sealed log is {} bytes and was \
             synced whole): acknowledged writes may be in it, so the node does not start; \
             the file is left as it is. Run `dhrt repair --data-dir DIR` to salvage what \
             checks out",
            path.display(),
            raw.len()
        )));
    }
    Ok((records, end as u64))
}

/// A new log file holding only the magic bytes, synced.
fn create_empty(path: &Path) -> Result<File, StoreError> {
    let what = format!("creating {}", path.display());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_error(&what, &e))?;
    file.write_all(MAGIC).and_then(|()| file.sync_data()).map_err(|e| io_error(&what, &e))?;
    Ok(file)
}

/// Syncs the folder holding `path`, so a rename or a new file in it is durable.
fn sync_folder(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&format!("syncing {}", dir.display()), &e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Refuses a file that does not start with the log's magic bytes.
fn check_magic(raw: &[u8], path: &Path) -> Result<(), StoreError> {
    if raw.len() < MAGIC.len() || &raw[..MAGIC.len()] != MAGIC {
        return Err(StoreError::Corrupt(format!(
            "{} is not a dhrt write-ahead log (it does not start with {:?})",
            path.display(),
            String::from_utf8_lossy(MAGIC)
        )));
    }
    Ok(())
}

/// The body of the record at `at` when it is whole and its checksum holds.
fn checked_body(raw: &[u8], at: usize) -> Option<&[u8]> {
    let header = raw.get(at..at.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut sum = [0; 8];
    sum.copy_from_slice(&header[4..]);
    let body = raw.get(at + HEADER..(at + HEADER).checked_add(len)?)?;
    (len > 0 && xxh3_64(body) == u64::from_le_bytes(sum)).then_some(body)
}

/// The first offset at or after `from` where a whole record with a good checksum
/// starts, if any.
fn next_good_record(raw: &[u8], from: usize) -> Option<usize> {
    (from..raw.len().saturating_sub(HEADER)).find(|&at| checked_body(raw, at).is_some())
}

/// The whole records of a log file's bytes (magic included) and where they end.
fn decode_all(raw: &[u8], path: &Path) -> Result<(Vec<Item>, usize), StoreError> {
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while let Some(body) = checked_body(raw, at) {
        let record = decode_body(body).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{}: the record at byte {at} has a good checksum but cannot be read",
                path.display()
            ))
        })?;
        records.push(record);
        at += HEADER + body.len();
    }
    Ok((records, at))
}

/// What [`salvage`] found in a damaged log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// Every record that checks out, in log order.
    pub items: Vec<Item>,
    /// The stretches skipped: (byte offset, length) of each.
    pub dropped: Vec<(u64, u64)>,
}

/// Reads every record of a log's bytes that checks out, skipping damaged stretches
/// (each resumes at the next offset where a good record starts): `dhrt repair`'s
/// reading of a log that [`Wal::open`] refused.
pub fn salvage(raw: &[u8], path: &Path) -> Result<Salvaged, StoreError> {
    check_magic(raw, path)?;
    let mut out = Salvaged { items: Vec::new(), dropped: Vec::new() };
    let mut at = MAGIC.len();
    while at < raw.len() {
        match checked_body(raw, at).and_then(|body| Some((decode_body(body)?, body.len()))) {
            Some((item, len)) => {
                out.items.push(item);
                at += HEADER + len;
            }
            None => {
                let next = next_good_record(raw, at + 1).unwrap_or(raw.len());
                out.dropped.push((at as u64, (next - at) as u64));
                at = next;
            }
        }
    }
    Ok(out)
}

fn decode_body(body: &[u8]) -> Option<Item> {
    let (&kind, rest) = body.split_first()?;
    let (&clen, rest) = rest.split_first()?;
    let (collection, rest) = rest.split_at_checked(usize::from(clen))?;
    let collection = std::str::from_utf8(collection).ok()?.to_string();
    match kind {
        MERGE => {}
        DROP if rest.is_empty() => return Some(Item::Drop(collection)),
        _ => return None,
    }
    let (pos, rest) = rest.split_at_checked(8)?;
    let (klen, rest) = rest.split_at_checked(4)?;
    let klen = u32::from_le_bytes(klen.try_into().ok()?) as usize;
    let (key, entry) = rest.split_at_checked(klen)?;
    Some(Item::Merge(Logged {
        collection,
        pos: u64::from_le_bytes(pos.try_into().ok()?),
        key: Bytes::copy_from_slice(key),
        entry: codec::decode_entry(entry).ok()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhrt_core::{clock::Timestamp, entry::NodeId};

    fn logged(i: u64) -> Logged {
        Logged {
            collection: format!("c{}", i % 3),
            pos: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            key: Bytes::from(format!("key-{i}")),
            entry: if i.is_multiple_of(5) {
                Entry::tombstone(Timestamp(i), NodeId(7))
            } else {
                Entry::value(format!("value {i}"), Timestamp(i), NodeId(7)).with_expiry(Some(i))
            },
        }
    }

    fn encode(records: &[Logged]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            encode_merge(&mut out, &r.collection, r.pos, &r.key, &r.entry);
        }
        out
    }

    fn items(records: &[Logged]) -> Vec<Item> {
        records.iter().cloned().map(Item::Merge).collect()
    }

    #[test]
    fn a_sealed_log_is_read_back_before_the_fresh_one_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        let all: Vec<Logged> = (0..30).map(logged).collect();
        wal.write(&encode(&all[..20])).unwrap(); // not synced yet: sealing syncs it
        wal.seal().unwrap();
        assert!(wal.seal().is_err(), "one sealed log at a time");
        assert_eq!(wal.len(), 0);
        wal.append(&encode(&all[20..])).unwrap();
        assert_eq!(wal.read_all().unwrap(), items(&all));
        drop(wal);
        let (mut wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, items(&all), "older records first");
        wal.drop_sealed().unwrap();
        assert!(!sealed_path(&path).exists());
        assert_eq!(wal.read_all().unwrap(), items(&all[20..]));
        // A reset drops a sealed log too.
        wal.seal().unwrap();
        wal.reset().unwrap();
        assert!(!sealed_path(&path).exists());
        assert!(Wal::open(&path).unwrap().1.is_empty());
    }

    #[test]
    fn a_crash_between_sealing_and_the_fresh_log_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        let all: Vec<Logged> = (0..10).map(logged).collect();
        wal.append(&encode(&all)).unwrap();
        drop(wal);
        std::fs::rename(&path, sealed_path(&path)).unwrap(); // renamed, no fresh file yet
        let (wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, items(&all));
        assert_eq!(wal.len(), 0);
    }

    #[test]
    fn a_damaged_sealed_log_refuses_the_start_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&encode(&(0..10).map(logged).collect::<Vec<_>>())).unwrap();
        wal.seal().unwrap();
        drop(wal);
        let sealed = sealed_path(&path);
        let mut raw = std::fs::read(&sealed).unwrap();
        let last = raw.len() - 3;
        raw[last] ^= 0xff; // even its last record: a sealed log was synced whole
        std::fs::write(&sealed, &raw).unwrap();
        let err = Wal::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(ref m) if m.contains("sealed")), "{err}");
        assert_eq!(std::fs::read(&sealed).unwrap(), raw, "left as it was for dhrt repair");
    }

    #[test]
    fn appended_records_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let (mut wal, old) = Wal::open(&path).unwrap();
        assert!(old.is_empty() && wal.len() == 0);
        let all: Vec<Logged> = (0..100).map(logged).collect();
        wal.append(&encode(&all[..40])).unwrap();
        wal.append(&encode(&all[40..])).unwrap();
        assert_eq!(wal.read_all().unwrap(), items(&all));
        drop(wal);
        let (mut wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, items(&all));
        wal.reset().unwrap();
        assert_eq!(wal.len(), 0);
        assert!(Wal::open(&path).unwrap().1.is_empty());
    }

    #[test]
    fn a_torn_tail_is_dropped_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..10).map(logged).collect();
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&encode(&all[..5])).unwrap();
        drop(wal);
        // A crash in the middle of an append: part of the next batch reached the file.
        let tail = encode(&all[5..]);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&tail[..tail.len() - 3]).unwrap();
        drop(file);
        let (mut wal, back) = Wal::open(&path).unwrap();
        let whole = back.len();
        assert!((5..10).contains(&whole), "the cut record is dropped, not read");
        assert_eq!(back, items(&all[..whole]));
        // The next append goes where the whole records end.
        wal.append(&encode(&all[9..])).unwrap();
        let mut want = items(&all[..whole]);
        want.push(Item::Merge(all[9].clone()));
        assert_eq!(wal.read_all().unwrap(), want);
        assert_eq!(Wal::open(&path).unwrap().1, want);
    }

    #[test]
    fn damage_before_the_tail_refuses_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..200).map(logged).collect();
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&encode(&all)).unwrap();
        drop(wal);
        let mut raw = std::fs::read(&path).unwrap();
        let middle = raw.len() / 2;
        raw[middle] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        let err = Wal::open(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt(_)), "{text}");
        assert!(text.contains("x.wal") && text.contains("dhrt repair"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), raw, "the evidence is kept");
        // The offset named is that of the record the flip hit.
        let at: usize = text
            .split("record at byte ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(at <= middle && middle < at + 200, "{at} vs {middle}");
        // Salvage keeps every record but the damaged one, and says what it skipped.
        let saved = salvage(&raw, &path).unwrap();
        assert_eq!(saved.items.len(), 199);
        assert_eq!(saved.dropped.len(), 1);
        assert_eq!(saved.dropped[0].0, at as u64);
        let lost: Vec<Item> =
            items(&all).into_iter().filter(|i| !saved.items.contains(i)).collect();
        assert_eq!(lost.len(), 1);
    }

    #[test]
    fn a_failed_append_leaves_nothing_behind_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..20).map(logged).collect();
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&encode(&all[..2])).unwrap();
        // What a failed append leaves: bytes past the end, good records among them.
        let end = wal.end;
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&encode(&all[2..20])).unwrap();
        drop(file);
        wal.dirty = true;
        wal.append(&encode(&all[2..3])).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), wal.end);
        assert!(wal.end > end);
        assert_eq!(Wal::open(&path).unwrap().1, items(&all[..3]));
    }

    #[test]
    fn drops_void_earlier_merges_of_their_collection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        let a = logged(1); // c1
        let b = logged(2); // c2
        let mut batch = encode(&[a.clone(), b.clone()]);
        encode_drop(&mut batch, "c1");
        let mut again = a.clone();
        again.key = Bytes::from_static(b"after");
        batch.extend(encode(std::slice::from_ref(&again)));
        wal.append(&batch).unwrap();
        let back = Wal::open(&path).unwrap().1;
        assert_eq!(back[2], Item::Drop("c1".into()));
        assert_eq!(live_merges(back), [b, again]);
    }

    #[test]
    fn a_sync_job_covers_what_was_written_before_it_was_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        assert!(!wal.unsynced());
        wal.write(&encode(&[logged(1)])).unwrap();
        assert!(wal.unsynced());
        let job = wal.sync_job();
        wal.write(&encode(&[logged(2)])).unwrap();
        std::thread::spawn(job).join().unwrap().unwrap();
        assert!(wal.unsynced(), "the second write came after the job was made");
        wal.sync_job()().unwrap();
        assert!(!wal.unsynced() && !wal.sync_failed());
        assert_eq!(Wal::open(&path).unwrap().1, items(&[logged(1), logged(2)]));
    }

    #[test]
    fn another_file_is_refused_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        std::fs::write(&path, b"something else entirely").unwrap();
        let err = Wal::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)) && err.to_string().contains("DHRTWAL1"));
        assert_eq!(std::fs::read(&path).unwrap(), b"something else entirely");
    }
}
