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
//! `<data-dir>/collections.wal`: the 8 bytes `DHRTWAL2`, then records, then zeros
//! (below). Each record is
//!
//! ```text
//! u32 LE body length | u64 LE xxh3-64 of the body | body
//! body: u8 kind, then
//!       kind 1 (merge): u8 collection length | collection | u64 LE position |
//!                       u32 LE key length | key | entry (codec::encode_entry)
//!       kind 2 (drop):  u8 collection length | collection — the collection was
//!                       dropped; earlier merges into it are void
//!       kind 3 (mark):  u64 LE start — the file offset at which this append began
//! ```
//!
//! Every append ([`Wal::write`]) is one write of its records followed by one *mark*.
//! Marks are not records the store sees ([`Item`]); they tell a reader where each
//! append ends and began (below).
//!
//! ## The zero-filled tail
//!
//! A store acknowledges a write only after the `fdatasync` that follows its append, so
//! that sync's latency bounds a node's throughput at one request in flight. It took
//! 142–186 µs after a 4 KiB append that *grew* the file (the new size goes through the
//! file system's journal) against 98–105 µs when the append overwrote a region already
//! zero-filled and synced. So the file is kept zero-filled past its last record: an
//! append that would pass the zeroed region first writes [`ZERO_AHEAD`] bytes of zeros
//! past what it needs, and the `fdatasync` after the append covers both — the file's
//! size changes once per 4 MiB, not once per append. A failed zero-fill gives its room
//! back and the append grows the file as it would have without it. The zeros are not
//! records: reading stops at them, and [`Wal::len`] does not count them.
//!
//! ## Torn appends and damage
//!
//! Appends only ever go at the end, and an append that fails is cut off again before
//! the next one ([`Wal::write`]), so a crash can damage only the *last* append: its
//! records were never acknowledged. Overwriting zero-filled room, a crash can keep any
//! of an append's pages without the others — a later one (with its mark) without an
//! earlier one, which then reads back as the zeros it held. Reading therefore stops at
//! the first record that is cut short or fails its checksum, at offset X, and looks at
//! what follows:
//!
//! - **only zeros** to the end of the file: the clean end, the zero-filled tail (the
//!   records of an append whose later pages never reached the disk may stand before
//!   it: they are read, as any record before X). Nothing is cut.
//! - **nothing that checks out** (no whole record with a good checksum starts at any
//!   later byte): a torn tail. It is cut off (the file truncated at X), with a warning
//!   naming the file and the offset, and the node starts.
//! - **good records after it**: acceptable only as the torn *last* append. Read from
//!   the first good record after X on (past further damaged stretches the same way), the
//!   records must end with a mark, and with no other mark among them: that mark closes
//!   the append the damage lies in. Its `start` must be where the last append before X
//!   ended — just past the last mark before X (or the magic bytes), or where a record
//!   after that mark begins (the records of an append a crash tore earlier, kept by the
//!   start that found them), or X itself — so the damage is inside it. No good record
//!   may follow that mark. And each damaged stretch (from its first bad byte to the
//!   next good record) must hold a 512-byte block, aligned in the file, that is all
//!   zeros: a sector that never reached the disk reads back as the zeros the region
//!   held, while bit rot changes bits of what was written and does not make aligned
//!   zero sectors. Then the append is torn: the file is truncated at X with a warning
//!   (none of that append was acknowledged; its records before X are read, which is
//!   harmless since replaying is), and the node starts.
//! - anything else is **damage in the middle of the log** (a flipped bit, a bad
//!   sector): acknowledged writes may sit behind it, so the start is refused with
//!   [`StoreError::Corrupt`] naming the file and the byte offset, and the file is left
//!   exactly as it was for `dhrt repair` ([`salvage`]).
//!
//! A record whose checksum holds but whose body does not decode is corruption too.
//!
//! What remains: bit rot inside the log's last append — acknowledged, synced whole —
//! whose damaged stretch happens to hold an aligned 512-byte block of zeros, with that
//! append's mark intact, is cut off as a torn append, losing the writes from the
//! damaged record to the end of that append (as rot in a log's very last record always
//! was: it reads as a torn tail). The other way round, some torn appends are refused
//! (the node does not start until `dhrt repair`): one that lost a page and its mark
//! while a page between them reached the disk; and one whose damaged stretch holds no
//! aligned zero block because the bytes that did not reach the disk were zeros anyway
//! (long runs of zeros in values).
//!
//! ## Version 1
//!
//! Logs written before the zero-filled tail start with `DHRTWAL1`: no marks, no zeros
//! after the last record, and so a stricter reading — after a bad record, a good one
//! anywhere later is damage, and zeros are a torn tail (cut off). Such a file is read and appended to
//! the old way until the next [`Wal::reset`] or [`Wal::seal`], which start a
//! `DHRTWAL2` file. Versions before this one refuse a `DHRTWAL2` log as not a log,
//! leaving it untouched.
//!
//! ## The sealed log
//!
//! A checkpoint written step by step ([`super::redb`]'s `drain`) first *seals* the log
//! ([`Wal::seal`]): its zero-filled tail is cut off, `collections.wal` is synced and
//! renamed `collections.wal.sealed`, and appends go to a fresh `collections.wal`; once
//! the checkpoint is committed the sealed file is deleted. Opening reads the sealed log
//! first, then the current one. A sealed log was synced whole and ends at its last
//! record, so anything in it that does not check out — even its last record, or zeros —
//! is refused as damage.
use super::{codec, io_error};
use bytes::Bytes;
use dhrt_core::{entry::Entry, hash::Position, store::StoreError};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};
use xxhash_rust::xxh3::xxh3_64;

/// The first bytes of a log file.
const MAGIC: &[u8; 8] = b"DHRTWAL2";
/// The first bytes of a log file of version 1 (no marks, no zero-filled tail).
const MAGIC_V1: &[u8; 8] = b"DHRTWAL1";
/// Bytes of the magic, in either version.
const MAGIC_LEN: u64 = MAGIC.len() as u64;
/// Bytes before a record's body: its length and checksum.
const HEADER: usize = 4 + 8;
/// The kind byte of a merge record.
const MERGE: u8 = 1;
/// The kind byte of a drop record.
const DROP: u8 = 2;
/// The kind byte of a mark: the end of an append, naming where it began.
const MARK: u8 = 3;
/// Bytes of a mark record.
const MARK_BYTES: u64 = (HEADER + 1 + 8) as u64;
/// How far past what an append needs the log is zero-filled, when it must grow.
pub const ZERO_AHEAD: u64 = 4 << 20;
/// The block whose being all zeros, in a damaged stretch, tells a sector that never
/// reached the disk from bit rot.
const SECTOR: usize = 512;

/// Which format a log file is in (its magic bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// `DHRTWAL1`: no marks, no zero-filled tail.
    V1,
    /// `DHRTWAL2`: each append ends with a mark; zeros follow the last record.
    V2,
}

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
    /// The file's format: appends follow it.
    version: Version,
    /// Where the next record goes: the end of the last whole record.
    end: u64,
    /// How far the file reaches: every byte from `end` to here is zero (unless
    /// `dirty`). Past it, an append first zero-fills (version 2).
    zeroed_to: u64,
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

/// The merges of a batch [`encode_merge`] wrote (not read back from a file: the bytes
/// are not checked against their sums), each as its collection, position, key and
/// encoded entry, borrowed from `records`. Bytes that are not such a record end it with `Err`.
pub fn encoded_merges(records: &[u8]) -> EncodedMerges<'_> {
    EncodedMerges { rest: records }
}

/// The iterator of [`encoded_merges`].
#[derive(Debug)]
pub struct EncodedMerges<'a> {
    rest: &'a [u8],
}

/// One merge of [`encoded_merges`]: collection, position, key, encoded entry.
pub type EncodedMerge<'a> = (&'a [u8], Position, &'a [u8], &'a [u8]);

impl<'a> Iterator for EncodedMerges<'a> {
    type Item = Result<EncodedMerge<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let merge = split_merge(self.rest);
        match merge {
            Some((merge, rest)) => {
                self.rest = rest;
                Some(Ok(merge))
            }
            None => {
                let at = self.rest.len();
                self.rest = &[];
                Some(Err(StoreError::Corrupt(format!(
                    "a batch of log records has {at} bytes that are not a merge"
                ))))
            }
        }
    }
}

/// The merge record `raw` begins with, and what follows it.
fn split_merge(raw: &[u8]) -> Option<(EncodedMerge<'_>, &[u8])> {
    let (len, rest) = raw.split_first_chunk::<4>()?;
    let (_sum, rest) = rest.split_first_chunk::<8>()?;
    let (body, rest) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
    let (&MERGE, body) = body.split_first()? else { return None };
    Some((merge_body(body)?, rest))
}

/// A merge record's body after its kind byte: collection, position, key, entry.
fn merge_body(body: &[u8]) -> Option<EncodedMerge<'_>> {
    let (&clen, body) = body.split_first()?;
    let (collection, body) = body.split_at_checked(usize::from(clen))?;
    let (pos, body) = body.split_first_chunk::<8>()?;
    let (klen, body) = body.split_first_chunk::<4>()?;
    let (key, entry) = body.split_at_checked(u32::from_le_bytes(*klen) as usize)?;
    Some((collection, u64::from_le_bytes(*pos), key, entry))
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

/// Appends a mark to `out`: the end of an append that began at file offset `start`.
fn encode_mark(out: &mut Vec<u8>, start: u64) {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(MARK);
    out.extend_from_slice(&start.to_le_bytes());
    seal(out, at);
}

/// A whole log file holding `items` (one append): what `dhrt repair` writes in place of
/// a damaged log.
pub fn encode_file(items: &[Item]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for item in items {
        match item {
            Item::Merge(m) => encode_merge(&mut out, &m.collection, m.pos, &m.key, &m.entry),
            Item::Drop(c) => encode_drop(&mut out, c),
        }
    }
    encode_mark(&mut out, MAGIC_LEN);
    out
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
            version: Version::V2,
            end: MAGIC_LEN,
            zeroed_to: MAGIC_LEN,
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
        wal.version = version(&raw, path)?;
        let read = decode(&raw, wal.version, path)?;
        let x = read.end;
        let damaged = |next: usize| {
            StoreError::Corrupt(format!(
                "{}: the record at byte {x} is damaged but a good record follows at byte \
                 {next} (the log is {} bytes): acknowledged writes may be behind the \
                 damage, so the node does not start; the file is left as it is. Run \
                 `dhrt repair --data-dir DIR` to salvage what checks out",
                path.display(),
                raw.len()
            ))
        };
        let cut = torn_tail(&raw, wal.version, &read).map_err(damaged)?;
        if let Some(why) = cut {
            tracing::warn!(file = %path.display(), offset = x, bytes = raw.len() - x, "{why}");
            // Cut the torn tail off, so that nothing of it can ever be read as a record.
            wal.file
                .set_len(x as u64)
                .and_then(|()| wal.file.sync_data())
                .map_err(|e| io_error(&what("truncating the torn tail of"), &e))?;
            raw.truncate(x);
        }
        wal.end = x as u64;
        wal.zeroed_to = raw.len() as u64;
        Ok((wal, read.items))
    }

    /// Bytes of whole records in the log (0 when empty), marks included; not the zeros
    /// after them.
    pub fn len(&self) -> u64 {
        self.end - MAGIC_LEN
    }

    /// What [`Wal::len`] will be once `batch` more bytes of records are written (with
    /// the mark that ends their append).
    pub fn len_after(&self, batch: u64) -> u64 {
        let mark = if batch > 0 && self.version == Version::V2 { MARK_BYTES } else { 0 };
        self.len() + batch + mark
    }

    /// Bytes the log file takes past its magic: its records and the zero-filled room
    /// after them (what the disk gives the log, as [`Wal::len`] is what it holds).
    pub fn disk_bytes(&self) -> u64 {
        self.end.max(self.zeroed_to) - MAGIC_LEN
    }

    /// Appends encoded records (from [`encode_merge`]) and waits until they are on disk.
    #[cfg(test)]
    pub fn append(&mut self, records: &[u8]) -> Result<(), StoreError> {
        self.write(records)?;
        self.sync_job()()
    }

    /// Appends encoded records, and the mark that ends an append, without waiting for
    /// the disk ([`Wal::sync_job`] does); zero-fills ahead first when the append would
    /// pass the zeroed room (see the module docs). A failed write leaves the log's end
    /// where it was, so the next one overwrites whatever part of this one reached the
    /// file.
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
            self.zeroed_to = self.end;
        }
        let mut mark = Vec::new();
        if self.version == Version::V2 {
            encode_mark(&mut mark, self.end);
        }
        let end = self.end + (records.len() + mark.len()) as u64;
        if self.version == Version::V2 && end > self.zeroed_to {
            self.zero_fill(end + ZERO_AHEAD);
        }
        let written = self
            .file
            .seek(SeekFrom::Start(self.end))
            .and_then(|_| write_both(&mut self.file, records, &mark));
        if let Err(e) = written {
            self.dirty = true;
            return Err(io_error(&what, &e));
        }
        self.end = end;
        self.zeroed_to = self.zeroed_to.max(end);
        self.written += 1;
        Ok(())
    }

    /// Writes zeros from the zeroed room's end to `to`. Only an optimisation: when it
    /// fails (a full disk) the room it took is given back, and the append grows the
    /// file itself.
    fn zero_fill(&mut self, to: u64) {
        // Zeros from a static block: a fresh buffer of megabytes would cost page faults
        // that zero its pages first (a twentieth of the disk thread's time, by perf).
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let from = self.zeroed_to;
        let filled = self.file.seek(SeekFrom::Start(from)).and_then(|_| {
            let mut left = to - from;
            while left > 0 {
                let n = left.min(ZEROS.len() as u64) as usize;
                self.file.write_all(&ZEROS[..n])?;
                left -= n as u64;
            }
            Ok(())
        });
        match filled {
            Ok(()) => self.zeroed_to = to,
            Err(e) => {
                tracing::warn!(
                    file = %self.path.display(),
                    error = %e,
                    "cannot zero-fill the write-ahead log ahead: appending without"
                );
                let _ = self.file.set_len(from);
            }
        }
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

    /// Empties the log (after a checkpoint made everything in it durable elsewhere); it
    /// starts again in the current format.
    pub fn reset(&mut self) -> Result<(), StoreError> {
        let what = format!("emptying {}", self.path.display());
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(MAGIC))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error(&what, &e))?;
        self.version = Version::V2;
        self.end = MAGIC_LEN;
        self.zeroed_to = MAGIC_LEN;
        self.dirty = false;
        self.synced.fetch_max(self.written, Ordering::AcqRel);
        self.sync_failed.store(false, Ordering::Release);
        self.drop_sealed()
    }

    /// Seals the log: its zero-filled tail is cut off and everything written so far is
    /// synced, the file becomes the *sealed* log ([`sealed_path`]) and appends go to a
    /// fresh one. A checkpoint that writes what the sealed log holds into the files then
    /// deletes it ([`Wal::drop_sealed`]); until then a start replays both, the sealed
    /// one first. Refused while a sealed log exists. Each step is a rename or a new file
    /// followed by a sync of the folder, so a crash anywhere leaves the records in one
    /// of the two files, each read back whole.
    pub fn seal(&mut self) -> Result<(), StoreError> {
        if self.sealed.is_some() {
            return Err(StoreError::Io(format!("{} is sealed already", self.path.display())));
        }
        let what = |doing: &str| format!("{doing} {}", self.path.display());
        if self.dirty || self.zeroed_to > self.end {
            // What a failed append left past the end must not be sealed with the rest,
            // nor zeros: a sealed log is read strictly, to its last byte. The new length
            // is synced before the rename, so a crash cannot seal the old one.
            self.file
                .set_len(self.end)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| io_error(&what("truncating"), &e))?;
            self.dirty = false;
            self.zeroed_to = self.end;
        } else if self.unsynced() {
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
        self.version = Version::V2;
        self.end = MAGIC_LEN;
        self.zeroed_to = MAGIC_LEN;
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
                decode(&raw[..end], version(&raw, &sealed)?, &sealed)?.items
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
        items.extend(decode(&raw[..end], self.version, &self.path)?.items);
        Ok(items)
    }
}

/// Where the sealed log of the log at `path` is: `<path>.sealed`.
pub fn sealed_path(path: &Path) -> PathBuf {
    let mut sealed = path.as_os_str().to_owned();
    sealed.push(".sealed");
    PathBuf::from(sealed)
}

/// Reads a sealed log (either version): synced whole and cut at its last record before
/// it was sealed, so anything that does not check out in it — a torn tail or zeros
/// included — is damage, refused like damage before a log's tail. Returns its records
/// and its end.
fn read_sealed(raw: &[u8], path: &Path) -> Result<(Vec<Item>, u64), StoreError> {
    let read = decode(raw, version(raw, path)?, path)?;
    let end = read.end;
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
    Ok((read.items, end as u64))
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

/// Writes `first` then `second` where the file stands: one system call when the kernel
/// takes both at once (it does for a regular file, short of an error), the rest after.
fn write_both(file: &mut File, first: &[u8], second: &[u8]) -> std::io::Result<()> {
    let done = loop {
        match file.write_vectored(&[IoSlice::new(first), IoSlice::new(second)]) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            done => break done?,
        }
    };
    let of_first = done.min(first.len());
    file.write_all(&first[of_first..])?;
    file.write_all(&second[done - of_first..])
}

/// The version of a log file's bytes, by its magic; refuses a file that does not start
/// with either.
fn version(raw: &[u8], path: &Path) -> Result<Version, StoreError> {
    match raw.get(..MAGIC.len()) {
        Some(m) if m == MAGIC => Ok(Version::V2),
        Some(m) if m == MAGIC_V1 => Ok(Version::V1),
        _ => Err(StoreError::Corrupt(format!(
            "{} is not a dhrt write-ahead log (it starts with neither {:?} nor {:?})",
            path.display(),
            String::from_utf8_lossy(MAGIC),
            String::from_utf8_lossy(MAGIC_V1)
        ))),
    }
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

/// The whole records at the start of a log file's bytes.
struct Decoded {
    /// The records, marks left out.
    items: Vec<Item>,
    /// Where they end: the first byte that does not start a whole record with a good
    /// checksum.
    end: usize,
    /// Where the last append may have begun (version 2): just past the last mark (or
    /// the magic), where each record after that mark begins, and `end`.
    starts: Vec<usize>,
}

/// Reads the whole records of a log file's bytes (magic included) up to the first that
/// is cut short or fails its checksum. A record whose checksum holds but that cannot
/// be read (a mark, in version 1) is [`StoreError::Corrupt`].
fn decode(raw: &[u8], version: Version, path: &Path) -> Result<Decoded, StoreError> {
    let mut read = Decoded { items: Vec::new(), end: MAGIC.len(), starts: vec![MAGIC.len()] };
    while let Some(body) = checked_body(raw, read.end) {
        let at = read.end;
        read.end += HEADER + body.len();
        match decode_record(body) {
            Some(Record::Item(item)) => {
                read.items.push(item);
                read.starts.push(read.end);
            }
            Some(Record::Mark(_)) if version == Version::V2 => read.starts = vec![read.end],
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "{}: the record at byte {at} has a good checksum but cannot be read",
                    path.display()
                )))
            }
        }
    }
    Ok(read)
}

/// What follows a log's whole records (see the module docs): `Ok(None)` when nothing
/// or only the zero-filled tail, `Ok(Some(why))` when a torn append, to be cut off, and
/// `Err(next)` when damage, a good record following at byte `next`.
fn torn_tail(raw: &[u8], version: Version, read: &Decoded) -> Result<Option<&'static str>, usize> {
    let x = read.end;
    if x == raw.len() || (version == Version::V2 && raw[x..].iter().all(|&b| b == 0)) {
        return Ok(None);
    }
    let Some(next) = next_good_record(raw, x + 1) else {
        return Ok(Some(
            "the write-ahead log ends in a torn append (a crash during a write that was never \
             acknowledged): cutting it off",
        ));
    };
    if version == Version::V1 || !torn_last_append(raw, x, &read.starts) {
        return Err(next);
    }
    Ok(Some(
        "the write-ahead log ends in a torn append (a crash during a write that was never \
         acknowledged: later sectors of it reached the disk, an earlier one did not): \
         cutting it off",
    ))
}

/// Whether the bytes of a version 2 log past its first bad record, at `x`, are the torn
/// last append (see the module docs): every damaged stretch holds an aligned zero
/// sector, the good records after `x` end with the only mark among them, that mark's
/// append began at one of `starts`, and no good record follows it.
fn torn_last_append(raw: &[u8], x: usize, starts: &[usize]) -> bool {
    let mut bad = x;
    loop {
        let Some(mut at) = next_good_record(raw, bad + 1) else { return false };
        if !has_zero_sector(&raw[..at], bad) {
            return false;
        }
        while let Some(body) = checked_body(raw, at) {
            at += HEADER + body.len();
            match decode_record(body) {
                Some(Record::Mark(start)) => {
                    let began_inside = usize::try_from(start).is_ok_and(|s| starts.contains(&s));
                    return began_inside && next_good_record(raw, at).is_none();
                }
                Some(Record::Item(_)) => {}
                None => return false,
            }
        }
        bad = at;
    }
}

/// Whether `raw` holds, at or after `from`, a [`SECTOR`]-sized block aligned in the
/// file that is all zeros.
fn has_zero_sector(raw: &[u8], from: usize) -> bool {
    let first = from.div_ceil(SECTOR) * SECTOR;
    raw.get(first..)
        .is_some_and(|rest| rest.chunks_exact(SECTOR).any(|block| block.iter().all(|&b| b == 0)))
}

/// What [`salvage`] found in a damaged log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// Every record that checks out, in log order.
    pub items: Vec<Item>,
    /// The stretches skipped: (byte offset, length) of each.
    pub dropped: Vec<(u64, u64)>,
}

/// Reads every record of a log's bytes (either version) that checks out, skipping
/// damaged stretches (each resumes at the next offset where a good record starts):
/// `dhrt repair`'s reading of a log that [`Wal::open`] refused. Marks are skipped; the
/// zeros after the last record are the log's tail, not damage.
pub fn salvage(raw: &[u8], path: &Path) -> Result<Salvaged, StoreError> {
    version(raw, path)?;
    let mut out = Salvaged { items: Vec::new(), dropped: Vec::new() };
    let mut at = MAGIC.len();
    while at < raw.len() {
        match checked_body(raw, at).and_then(|body| Some((decode_record(body)?, body.len()))) {
            Some((record, len)) => {
                if let Record::Item(item) = record {
                    out.items.push(item);
                }
                at += HEADER + len;
            }
            None if raw[at..].iter().all(|&b| b == 0) => break,
            None => {
                // Up to the next good record, or to the zeros that end the file.
                let last = raw.iter().rposition(|&b| b != 0).unwrap_or(at);
                let next = next_good_record(raw, at + 1).unwrap_or(last + 1);
                out.dropped.push((at as u64, (next - at) as u64));
                at = next;
            }
        }
    }
    Ok(out)
}

/// A record's body, read.
enum Record {
    /// What the store wrote.
    Item(Item),
    /// The end of an append that began at this file offset.
    Mark(u64),
}

fn decode_record(body: &[u8]) -> Option<Record> {
    match body.split_first()? {
        (&MARK, start) => Some(Record::Mark(u64::from_le_bytes(start.try_into().ok()?))),
        _ => decode_body(body).map(Record::Item),
    }
}

fn decode_body(body: &[u8]) -> Option<Item> {
    let (&kind, rest) = body.split_first()?;
    if kind == DROP {
        let (&clen, rest) = rest.split_first()?;
        let (collection, rest) = rest.split_at_checked(usize::from(clen))?;
        let collection = std::str::from_utf8(collection).ok()?.to_string();
        return rest.is_empty().then_some(Item::Drop(collection));
    }
    if kind != MERGE {
        return None;
    }
    let (collection, pos, key, entry) = merge_body(rest)?;
    Some(Item::Merge(Logged {
        collection: std::str::from_utf8(collection).ok()?.to_string(),
        pos,
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

    /// A fresh log at `path` with one append (synced) per batch; where each ended.
    fn appended(path: &Path, batches: &[&[Logged]]) -> Vec<usize> {
        let (mut wal, _) = Wal::open(path).unwrap();
        batches
            .iter()
            .map(|batch| {
                wal.append(&encode(batch)).unwrap();
                wal.end as usize
            })
            .collect()
    }

    /// The byte offset a [`StoreError::Corrupt`] names as damaged.
    fn damaged_at(err: &StoreError) -> usize {
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        let text = err.to_string();
        text.split("record at byte ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
    }

    /// The first offset at or after `at` where a 512-byte sector begins.
    fn sector_from(at: usize) -> usize {
        at.div_ceil(SECTOR) * SECTOR
    }

    /// Opening `raw` (written at `path`) is refused as damage, and leaves it as it was.
    fn refused(path: &Path, raw: &[u8]) -> StoreError {
        std::fs::write(path, raw).unwrap();
        let err = Wal::open(path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert!(std::fs::read(path).unwrap() == raw, "the file is left as it was");
        err
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
    fn sealing_cuts_the_zero_filled_tail_and_the_sealed_log_is_read_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..30).map(logged).collect();
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&encode(&all[..10])).unwrap();
        wal.append(&encode(&all[10..20])).unwrap();
        let end = wal.end;
        assert!(std::fs::metadata(&path).unwrap().len() > end, "zero-filled ahead");
        wal.seal().unwrap();
        let sealed = sealed_path(&path);
        let raw = std::fs::read(&sealed).unwrap();
        assert_eq!(raw.len() as u64, end, "the sealed log ends at its last record");
        assert_eq!(end, MAGIC_LEN + encode(&all[..20]).len() as u64 + 2 * MARK_BYTES);
        assert_eq!(read_sealed(&raw, &sealed).unwrap(), (items(&all[..20]), end), "no marks");
        wal.append(&encode(&all[20..])).unwrap();
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().1, items(&all));
        // Zeros after a sealed log's last record are damage: it was cut there and synced.
        let mut zeros = raw.clone();
        zeros.extend_from_slice(&[0; 4096]);
        std::fs::write(&sealed, &zeros).unwrap();
        let err = Wal::open(&path).unwrap_err();
        assert!(err.to_string().contains("sealed"), "{err}");
        assert_eq!(damaged_at(&err), raw.len());
        assert_eq!(std::fs::read(&sealed).unwrap(), zeros, "left as it was");
    }

    #[test]
    fn a_crash_between_sealing_and_the_fresh_log_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        let all: Vec<Logged> = (0..10).map(logged).collect();
        wal.append(&encode(&all)).unwrap();
        wal.seal().unwrap();
        drop(wal);
        std::fs::remove_file(&path).unwrap(); // renamed, no fresh file yet
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
        let last = raw.len() - MARK_BYTES as usize - 3;
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
    fn the_log_is_zero_filled_ahead_and_its_zeros_are_a_clean_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..40).map(logged).collect();
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let (mut wal, _) = Wal::open(&path).unwrap();
        assert_eq!(file_len(), MAGIC_LEN);
        let batch = encode(&all[..10]);
        let want = wal.len_after(batch.len() as u64);
        wal.append(&batch).unwrap();
        assert_eq!(wal.len(), want, "records and their mark");
        assert_eq!(wal.len(), (batch.len() as u64) + MARK_BYTES, "no zeros");
        let filled = file_len();
        assert_eq!(filled, wal.end + ZERO_AHEAD, "zero-filled a chunk past the append");
        assert_eq!(wal.disk_bytes(), filled - MAGIC_LEN);
        for i in 10..20 {
            wal.append(&encode(&all[i..i + 1])).unwrap();
            assert_eq!(file_len(), filled, "appends within the zeroed room keep its length");
        }
        let end = wal.end;
        drop(wal);
        // The zeros read as the end of the log: nothing cut, appends go on after it.
        let (mut wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, items(&all[..20]));
        assert_eq!((wal.end, file_len()), (end, filled));
        wal.append(&encode(&all[20..30])).unwrap();
        assert_eq!(file_len(), filled);
        // An append past the zeroed room zero-fills a chunk past it again.
        let big = Entry::value(vec![7u8; ZERO_AHEAD as usize], Timestamp(1), NodeId(7));
        let mut huge = Vec::new();
        encode_merge(&mut huge, "big", 1, b"big", &big);
        wal.append(&huge).unwrap();
        assert_eq!(file_len(), wal.end + ZERO_AHEAD);
        wal.append(&encode(&all[30..])).unwrap();
        drop(wal);
        let (_, back) = Wal::open(&path).unwrap();
        assert_eq!(back.len(), 41);
        assert_eq!(back[..30], items(&all[..30]));
        assert_eq!(back[31..], items(&all[30..]));
    }

    #[test]
    fn a_torn_tail_is_dropped_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..10).map(logged).collect();
        let end = appended(&path, &[&all[..5]])[0];
        // A crash in the middle of an append: part of the next batch reached the file,
        // over the zeros, and nothing good after it.
        let mut raw = std::fs::read(&path).unwrap();
        let tail = encode(&all[5..]);
        raw[end..end + tail.len() - 3].copy_from_slice(&tail[..tail.len() - 3]);
        std::fs::write(&path, &raw).unwrap();
        let (mut wal, back) = Wal::open(&path).unwrap();
        let whole = back.len();
        assert!((5..10).contains(&whole), "the cut record is dropped, not read");
        assert_eq!(back, items(&all[..whole]));
        let cut = end + encode(&all[5..whole]).len();
        assert_eq!(wal.end as usize, cut);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, cut, "truncated there");
        // The next append goes where the whole records end.
        wal.append(&encode(&all[9..])).unwrap();
        let mut want = items(&all[..whole]);
        want.push(Item::Merge(all[9].clone()));
        assert_eq!(wal.read_all().unwrap(), want);
        assert_eq!(Wal::open(&path).unwrap().1, want);
    }

    #[test]
    fn a_torn_last_append_missing_a_sector_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..150).map(logged).collect();
        let ends = appended(&path, &[&all[..20], &all[20..120]]);
        // The last append's later sectors (its mark among them) reached the disk, one
        // in its middle did not: it reads back as the zeros it held.
        let mut raw = std::fs::read(&path).unwrap();
        let hole = sector_from(ends[0] + 1000);
        assert!(hole + 2 * SECTOR < ends[1]);
        raw[hole..hole + SECTOR].fill(0);
        std::fs::write(&path, &raw).unwrap();
        let (mut wal, back) = Wal::open(&path).unwrap();
        let kept = back.len();
        assert!((20..120).contains(&kept), "{kept}");
        assert_eq!(back, items(&all[..kept]), "the append's records before the hole stay");
        let cut = wal.end as usize;
        assert!(ends[0] < cut && cut <= hole, "cut at the damaged record");
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, cut, "truncated there");
        // The next append and start are clean.
        wal.append(&encode(&all[120..])).unwrap();
        drop(wal);
        let (wal, back) = Wal::open(&path).unwrap();
        let mut want = items(&all[..kept]);
        want.extend(items(&all[120..]));
        assert_eq!(back, want);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), wal.end + ZERO_AHEAD);
    }

    #[test]
    fn a_torn_last_append_missing_several_sectors_is_cut_but_not_without_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..300).map(logged).collect();
        let ends = appended(&path, &[&all[..20], &all[20..]]);
        let mut raw = std::fs::read(&path).unwrap();
        let first = sector_from(ends[0] + 600);
        let second = sector_from(first + 3000);
        assert!(second + 2 * SECTOR < ends[1]);
        raw[first..first + SECTOR].fill(0);
        raw[second..second + SECTOR].fill(0);
        // Without its mark (a later page lost too), the append cannot be told from
        // damage: refused.
        let mut unmarked = raw.clone();
        unmarked[ends[1] - MARK_BYTES as usize..ends[1]].fill(0);
        let err = refused(&path, &unmarked);
        assert!(damaged_at(&err) <= first);
        std::fs::write(&path, &raw).unwrap();
        let (wal, back) = Wal::open(&path).unwrap();
        assert!(wal.end as usize <= first);
        assert_eq!(back, items(&all[..back.len()]));
        assert!(back.len() >= 20);
    }

    #[test]
    fn a_flipped_byte_in_the_last_append_is_damage_not_a_torn_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..120).map(logged).collect();
        let ends = appended(&path, &[&all[..20], &all[20..]]);
        let mut raw = std::fs::read(&path).unwrap();
        let at = sector_from(ends[0] + 1000) + 100;
        raw[at] ^= 0x10;
        let err = refused(&path, &raw);
        let text = err.to_string();
        assert!(text.contains("x.wal") && text.contains("dhrt repair"), "{text}");
        let named = damaged_at(&err);
        assert!(ends[0] < named && named <= at, "{named} vs {at}");
    }

    #[test]
    fn a_hole_followed_by_a_later_complete_append_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..150).map(logged).collect();
        let ends = appended(&path, &[&all[..20], &all[20..120], &all[120..]]);
        let mut raw = std::fs::read(&path).unwrap();
        let hole = sector_from(ends[0] + 1000);
        assert!(hole + 2 * SECTOR < ends[1]);
        raw[hole..hole + SECTOR].fill(0);
        refused(&path, &raw);
    }

    #[test]
    fn a_hole_in_an_earlier_append_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..150).map(logged).collect();
        let ends = appended(&path, &[&all[..20], &all[20..120], &all[120..]]);
        // Zeros from a sector inside the middle append through its mark: the records
        // after them are the last append's, whose mark says it began after the damage.
        let mut raw = std::fs::read(&path).unwrap();
        let hole = sector_from(ends[0] + 1000);
        assert!(hole + 2 * SECTOR < ends[1]);
        raw[hole..ends[1]].fill(0);
        let err = refused(&path, &raw);
        assert!(damaged_at(&err) <= hole);
    }

    #[test]
    fn damage_before_the_tail_refuses_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..200).map(logged).collect();
        let batches: Vec<&[Logged]> = all.chunks(50).collect();
        let ends = appended(&path, &batches);
        let mut raw = std::fs::read(&path).unwrap();
        let middle = ends[3] / 2;
        raw[middle] ^= 1;
        let err = refused(&path, &raw);
        let text = err.to_string();
        assert!(text.contains("x.wal") && text.contains("dhrt repair"), "{text}");
        // The offset named is that of the record the flip hit.
        let at = damaged_at(&err);
        assert!(at <= middle && middle < at + 200, "{at} vs {middle}");
        // Salvage keeps every record but the damaged one, and says what it skipped: not
        // the marks, nor the zeros after the last record.
        let saved = salvage(&raw, &path).unwrap();
        assert_eq!(saved.items.len(), 199);
        assert_eq!(saved.dropped.len(), 1);
        assert_eq!(saved.dropped[0].0, at as u64);
        let lost: Vec<Item> =
            items(&all).into_iter().filter(|i| !saved.items.contains(i)).collect();
        assert_eq!(lost.len(), 1);
    }

    #[test]
    fn salvage_skips_marks_and_the_zero_filled_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..60).map(logged).collect();
        let ends = appended(&path, &[&all[..20], &all[20..40], &all[40..]]);
        let mut raw = std::fs::read(&path).unwrap();
        let whole = Salvaged { items: items(&all), dropped: Vec::new() };
        assert_eq!(salvage(&raw, &path).unwrap(), whole);
        // Garbage among the zeros: only the garbage is a damaged stretch.
        let at = ends[2] + 10_000;
        raw[at..at + 5].copy_from_slice(b"noise");
        let saved = salvage(&raw, &path).unwrap();
        assert_eq!(saved.items, items(&all));
        assert_eq!(saved.dropped, [(ends[2] as u64, (at + 5 - ends[2]) as u64)]);
        // What repair writes back: one append, read back whole.
        let file = encode_file(&saved.items);
        assert_eq!(salvage(&file, &path).unwrap(), whole);
        std::fs::write(&path, &file).unwrap();
        let (wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, items(&all));
        assert_eq!(wal.end as usize, file.len());
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
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(end)).unwrap();
        file.write_all(&encode(&all[2..20])).unwrap();
        drop(file);
        wal.dirty = true;
        wal.append(&encode(&all[2..3])).unwrap();
        assert!(wal.end > end);
        let raw = std::fs::read(&path).unwrap();
        assert!(raw[wal.end as usize..].iter().all(|&b| b == 0), "only zeros after it");
        assert_eq!(Wal::open(&path).unwrap().1, items(&all[..3]));
    }

    #[test]
    fn a_version_1_log_is_read_and_appended_to_the_old_way_until_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let all: Vec<Logged> = (0..40).map(logged).collect();
        let mut old = MAGIC_V1.to_vec();
        old.extend(encode(&all[..10]));
        std::fs::write(&path, &old).unwrap();
        let (mut wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, items(&all[..10]));
        // Appended as before: no mark, no zeros.
        let batch = encode(&all[10..20]);
        assert_eq!(wal.len_after(batch.len() as u64), wal.len() + batch.len() as u64);
        wal.append(&batch).unwrap();
        old.extend(&batch);
        assert_eq!(std::fs::read(&path).unwrap(), old);
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().1, items(&all[..20]));
        // A torn tail is cut; damage before the tail is refused, even a zeroed sector.
        let mut torn = old.clone();
        torn.extend(&encode(&all[20..21])[..30]);
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(Wal::open(&path).unwrap().1, items(&all[..20]));
        assert_eq!(std::fs::read(&path).unwrap(), old);
        let mut holed = old.clone();
        let hole = sector_from(100);
        assert!(hole + SECTOR + 100 < holed.len());
        holed[hole..hole + SECTOR].fill(0);
        let err = refused(&path, &holed);
        assert!(damaged_at(&err) <= hole);
        // Zeros after the records are not a clean end in version 1: cut as a torn tail.
        let mut zeros = old.clone();
        zeros.extend_from_slice(&[0; 1000]);
        std::fs::write(&path, &zeros).unwrap();
        let (mut wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, items(&all[..20]));
        assert_eq!(std::fs::read(&path).unwrap(), old);
        // Sealing keeps the sealed log in version 1; the fresh one is version 2.
        wal.seal().unwrap();
        assert_eq!(std::fs::read(sealed_path(&path)).unwrap(), old);
        wal.append(&encode(&all[20..30])).unwrap();
        drop(wal);
        let (mut wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, items(&all[..30]));
        assert_eq!(&std::fs::read(&path).unwrap()[..8], MAGIC);
        // After a reset the log is version 2: zero-filled, with marks.
        wal.reset().unwrap();
        wal.append(&encode(&all[30..])).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..8], MAGIC);
        assert_eq!(raw.len() as u64, wal.end + ZERO_AHEAD);
        assert_eq!(wal.len(), encode(&all[30..]).len() as u64 + MARK_BYTES);
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().1, items(&all[30..]));
    }

    #[test]
    fn encoded_merges_read_back_what_encode_merge_wrote_and_refuse_anything_else() {
        let records: Vec<Logged> = (0..20).map(logged).collect();
        let raw = encode(&records);
        let read: Vec<Logged> = encoded_merges(&raw)
            .map(|m| {
                let (collection, pos, key, entry) = m.unwrap();
                Logged {
                    collection: String::from_utf8(collection.to_vec()).unwrap(),
                    pos,
                    key: Bytes::copy_from_slice(key),
                    entry: codec::decode_entry(entry).unwrap(),
                }
            })
            .collect();
        assert_eq!(read, records);
        // Cut short, or a record of another kind: an error, then nothing more.
        for bad in [&raw[..raw.len() - 3], &encode_file(&[Item::Drop("c".into())])[MAGIC.len()..]] {
            let results: Vec<_> = encoded_merges(bad).collect();
            assert!(results.last().unwrap().is_err(), "{} bytes", bad.len());
            assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        }
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
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt(_)), "{text}");
        assert!(text.contains("DHRTWAL2") && text.contains("DHRTWAL1"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), b"something else entirely");
    }
}
