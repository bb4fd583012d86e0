//! `MemStore`: the in-memory [`Store`], used by `--memory` nodes, the browser replica,
//! the simulator and tests.
//!
//! Dense, because a `--memory` node's keys all live here: each record is one allocation
//! ([`Rec`]: its version, expiry, key and value side by side), and each collection's
//! index maps a ring position to its record — 24 bytes a slot, in a hash table on the
//! positions' top bits that is also in position order ([`index`]), so a lookup usually
//! reads one slot before the record. A map keyed by `(position, key)` holding whole
//! entries took 104-byte slots and separate key and value buffers (375 bytes a key at
//! 1M keys, docs/benchmarks.md), and its search was a tenth of a write's time.
//!
//! Positions are hashes in hashed collections (two keys share one almost never), but
//! in an `ordered.*` collection a position is the key's first 8 bytes, which many keys
//! share (`user:000001`, `user:000002`...). A position several keys share is *crowded*:
//! its index slot is empty and its records sit in a map by key of their own
//! ([`Records::crowded`]), so order is still (position, key) and no operation
//! degrades with the number of keys sharing a prefix.
//!
//! Values of [`SHARED_FROM`] bytes or more are not copied into their record: the record
//! holds a number, and the value stays the `Bytes` it arrived as, in the collection's
//! [`Blobs`]. A read of it shares that buffer instead of copying it — three hundred
//! reads of a 1 MiB value queued for a slow client hold one megabyte, not three
//! hundred, until the output limit stops them ([`crate::node`]'s callers bound what is
//! queued, not what a batch of reads makes).

use super::{
    validate_collection, CollectionStats, Merged, Record, Store, StoreError, Superseded, Warm,
};
use crate::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    hash::{Interval, Position},
    Millis,
};
use bytes::Bytes;
use index::Index;
use std::collections::BTreeMap;

mod index;

/// Values at least this long are kept as shared buffers beside the records ([`Blobs`]).
pub const SHARED_FROM: usize = 1024;
use std::ops::Bound;

/// One record in one allocation: `ts` (8 bytes), `origin` (8), flags (1), key length
/// (4), the expiry (8, when it has one), the key, then the value (a tombstone has
/// none) — or, for a value of [`SHARED_FROM`] bytes or more, the number of its buffer in
/// the collection's [`Blobs`] (8). Little-endian.
#[derive(Debug, Clone)]
struct Rec(Box<[u8]>);

const HEADER: usize = 8 + 8 + 1 + 4;
/// Flag: the record holds a value (else it is a tombstone).
const LIVE: u8 = 1;
/// Flag: the record carries an expiry.
const EXPIRES: u8 = 2;
/// Flag: the value is a shared buffer in [`Blobs`]; the record holds its number.
const SHARED: u8 = 4;

/// The large values of a collection, by number, shared with the reads that return them.
#[derive(Debug, Default, Clone)]
struct Blobs {
    next: u64,
    values: BTreeMap<u64, Bytes>,
}

impl Blobs {
    /// Keeps `value`; returns its number.
    fn put(&mut self, value: Bytes) -> u64 {
        self.next += 1;
        self.values.insert(self.next, value);
        self.next
    }

    fn get(&self, id: u64) -> &[u8] {
        self.values.get(&id).map_or(&[], |b| &b[..])
    }

    fn share(&self, id: u64) -> Bytes {
        self.values.get(&id).cloned().unwrap_or_default()
    }

    /// Forgets the value `rec` holds, if it is shared.
    fn release(&mut self, rec: &Rec) {
        if let Some(id) = rec.blob() {
            self.values.remove(&id);
        }
    }

    /// The number to store `entry`'s value under, when it is large enough to share.
    fn admit(&mut self, entry: &Entry) -> Option<u64> {
        match &entry.value {
            Some(v) if v.len() >= SHARED_FROM => Some(self.put(v.clone())),
            _ => None,
        }
    }
}

impl Rec {
    /// The index's mark for a crowded position (its records are in
    /// [`Records::crowded`]): empty, as no record is, and without an allocation.
    fn crowded() -> Rec {
        Rec(Box::new([]))
    }

    fn is_crowded(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes a record of `key` and `entry` takes (`blob`: its value is shared).
    fn len_for(key: &[u8], entry: &Entry, blob: Option<u64>) -> usize {
        let value = match (&entry.value, blob) {
            (_, Some(_)) => 8,
            (Some(v), None) => v.len(),
            (None, None) => 0,
        };
        HEADER + if entry.expires.is_some() { 8 } else { 0 } + key.len() + value
    }

    fn new(key: &[u8], entry: &Entry, blob: Option<u64>) -> Rec {
        let mut buf = vec![0; Self::len_for(key, entry, blob)].into_boxed_slice();
        Self::fill(&mut buf, key, entry, blob);
        Rec(buf)
    }

    /// Becomes `key`'s `entry`: in place when it is the same length (a value
    /// overwritten by one as long, as most are), else in a new allocation.
    fn set(&mut self, key: &[u8], entry: &Entry, blob: Option<u64>) {
        if self.0.len() == Self::len_for(key, entry, blob) {
            Self::fill(&mut self.0, key, entry, blob);
        } else {
            *self = Rec::new(key, entry, blob);
        }
    }

    fn fill(buf: &mut [u8], key: &[u8], entry: &Entry, blob: Option<u64>) {
        buf[..8].copy_from_slice(&entry.ts.0.to_le_bytes());
        buf[8..16].copy_from_slice(&entry.origin.0.to_le_bytes());
        let mut flags = 0;
        if entry.value.is_some() {
            flags |= LIVE;
        }
        if entry.expires.is_some() {
            flags |= EXPIRES;
        }
        if blob.is_some() {
            flags |= SHARED;
        }
        buf[16] = flags;
        buf[17..21].copy_from_slice(&(key.len() as u32).to_le_bytes());
        let mut at = HEADER;
        if let Some(e) = entry.expires {
            buf[at..at + 8].copy_from_slice(&e.to_le_bytes());
            at += 8;
        }
        buf[at..at + key.len()].copy_from_slice(key);
        at += key.len();
        match (blob, &entry.value) {
            (Some(id), _) => buf[at..].copy_from_slice(&id.to_le_bytes()),
            (None, Some(v)) => buf[at..].copy_from_slice(v),
            (None, None) => {}
        }
    }

    fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&self.0[at..at + 8]);
        u64::from_le_bytes(b)
    }

    fn ts(&self) -> Timestamp {
        Timestamp(self.u64_at(0))
    }

    fn origin(&self) -> NodeId {
        NodeId(self.u64_at(8))
    }

    fn flags(&self) -> u8 {
        self.0[16]
    }

    fn expires(&self) -> Option<Millis> {
        (self.flags() & EXPIRES != 0).then(|| self.u64_at(HEADER))
    }

    /// Where the key starts.
    fn key_at(&self) -> usize {
        HEADER + if self.flags() & EXPIRES != 0 { 8 } else { 0 }
    }

    fn key_len(&self) -> usize {
        let mut b = [0; 4];
        b.copy_from_slice(&self.0[17..21]);
        u32::from_le_bytes(b) as usize
    }

    fn key(&self) -> &[u8] {
        let at = self.key_at();
        &self.0[at..at + self.key_len()]
    }

    /// The value's place in the record: its bytes, or a shared buffer's number.
    fn stored(&self) -> &[u8] {
        &self.0[self.key_at() + self.key_len()..]
    }

    /// The number of the shared buffer holding the value, if it is one.
    fn blob(&self) -> Option<u64> {
        (self.flags() & SHARED != 0).then(|| self.u64_at(self.key_at() + self.key_len()))
    }

    fn value<'a>(&'a self, blobs: &'a Blobs) -> Option<&'a [u8]> {
        if self.flags() & LIVE == 0 {
            return None;
        }
        Some(match self.blob() {
            Some(id) => blobs.get(id),
            None => self.stored(),
        })
    }

    /// The stored entry: its value copied out, or shared when it is a shared buffer.
    fn entry(&self, blobs: &Blobs) -> Entry {
        let value = match self.blob() {
            Some(id) => Some(blobs.share(id)),
            None => self.value(blobs).map(Bytes::copy_from_slice),
        };
        Entry { value, ts: self.ts(), origin: self.origin(), expires: self.expires() }
    }

    /// Whether `entry` wins over this record (as [`Entry::supersedes`]).
    fn superseded_by(&self, entry: &Entry, blobs: &Blobs) -> bool {
        let value = self.value(blobs);
        let mine = (self.ts(), self.origin(), value.is_none(), value, self.expires());
        let theirs =
            (entry.ts, entry.origin, entry.is_tombstone(), entry.value.as_deref(), entry.expires);
        theirs > mine
    }

    /// What replacing this record leaves of it.
    fn superseded(&self, blobs: &Blobs) -> Superseded {
        let value = self.value(blobs);
        Superseded {
            ts: self.ts(),
            origin: self.origin(),
            tombstone: value.is_none(),
            expires: self.expires(),
            size: value.map_or(0, <[u8]>::len) + ENTRY_META,
        }
    }

    /// The record's bytes as the collection's counts take them (key plus
    /// [`Entry::size`]).
    fn counted(&self, blobs: &Blobs) -> usize {
        self.key_len() + self.value(blobs).map_or(0, <[u8]>::len) + ENTRY_META
    }
}

/// [`Entry::size`] of an entry without a value.
const ENTRY_META: usize = 8 + 8 + 9;

#[derive(Debug, Default, Clone)]
struct Collection {
    records: Records,
    blobs: Blobs,
    stats: CollectionStats,
}

impl Collection {
    /// Accounts for `rec` leaving, and lets go of its shared value.
    fn forget(&mut self, rec: &Rec) {
        let counted = rec.counted(&self.blobs);
        self.stats.account_size(counted, rec.value(&self.blobs).is_none(), false);
        self.blobs.release(rec);
    }
}

/// A collection's records in (position, key) order.
#[derive(Debug, Default, Clone)]
struct Records {
    /// Each position's record; [`Rec::crowded`] for a crowded position (see the module
    /// docs).
    index: Index<Rec>,
    /// The records of crowded positions (two or more each), by key.
    crowded: BTreeMap<Position, BTreeMap<Box<[u8]>, Rec>>,
}

impl Records {
    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn find(&self, pos: Position, key: &[u8]) -> Option<&Rec> {
        match self.index.get(pos)? {
            rec if rec.is_crowded() => self.crowded.get(&pos)?.get(key),
            rec => (rec.key() == key).then_some(rec),
        }
    }

    fn find_mut(&mut self, pos: Position, key: &[u8]) -> Option<&mut Rec> {
        match self.index.get_mut(pos)? {
            rec if rec.is_crowded() => self.crowded.get_mut(&pos)?.get_mut(key),
            rec => (rec.key() == key).then_some(rec),
        }
    }

    /// Adds a record for a key not stored yet.
    fn insert(&mut self, pos: Position, rec: Rec) {
        match self.index.get_mut(pos) {
            None => {
                self.index.insert(pos, rec);
            }
            Some(slot) if slot.is_crowded() => {
                self.crowded.entry(pos).or_default().insert(rec.key().into(), rec);
            }
            Some(slot) => {
                let alone = std::mem::replace(slot, Rec::crowded());
                let crowd = self.crowded.entry(pos).or_default();
                crowd.insert(alone.key().into(), alone);
                crowd.insert(rec.key().into(), rec);
            }
        }
    }

    fn remove(&mut self, pos: Position, key: &[u8]) -> Option<Rec> {
        match self.index.get(pos)? {
            rec if rec.is_crowded() => {
                let crowd = self.crowded.get_mut(&pos)?;
                let rec = crowd.remove(key)?;
                if crowd.len() == 1 {
                    // One left: back in the index, the position is no longer crowded.
                    let last = self.crowded.remove(&pos).and_then(|c| c.into_values().next());
                    if let Some(last) = last {
                        self.index.insert(pos, last);
                    }
                }
                Some(rec)
            }
            rec if rec.key() == key => self.index.remove(pos),
            _ => None,
        }
    }

    /// Records in (position, key) order from `from` (a position and, within it, keys
    /// after the one given) up to position `to` inclusive, until `visit` says stop.
    fn walk<'a>(
        &'a self,
        from: (Position, Option<&[u8]>),
        to: Position,
        mut visit: impl FnMut(Position, &'a Rec) -> bool,
    ) {
        let (lo, after) = from;
        if lo > to {
            return;
        }
        for (pos, slot) in self.index.range(lo, to) {
            let more = if slot.is_crowded() {
                let Some(crowd) = self.crowded.get(&pos) else { continue };
                let lower = match after {
                    Some(k) if pos == lo => Bound::Excluded(k),
                    _ => Bound::Unbounded,
                };
                crowd.range::<[u8], _>((lower, Bound::Unbounded)).all(|(_, rec)| visit(pos, rec))
            } else {
                let skip = pos == lo && after.is_some_and(|k| slot.key() <= k);
                skip || visit(pos, slot)
            };
            if !more {
                return;
            }
        }
    }
}

/// An in-memory store: dense ordered indexes, exact counts, nothing persisted.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    collections: BTreeMap<String, Collection>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn merge_one(
        &mut self,
        collection: &str,
        pos: Position,
        key: &[u8],
        entry: &Entry,
    ) -> Result<Merged, StoreError> {
        super::validate_key(key)?;
        // Look the collection up before naming it (and check a name only when it is
        // new): allocating the name on every write showed up in the write path's profile.
        if !self.collections.contains_key(collection) {
            validate_collection(collection)?;
            self.collections.insert(collection.to_string(), Collection::default());
        }
        let Some(c) = self.collections.get_mut(collection) else {
            return Ok(Merged::Kept);
        };
        let counted = key.len() + entry.size();
        match c.records.find_mut(pos, key) {
            None => {
                let blob = c.blobs.admit(entry);
                c.records.insert(pos, Rec::new(key, entry, blob));
                c.stats.account_size(counted, entry.is_tombstone(), true);
                Ok(Merged::Inserted)
            }
            Some(old) if old.superseded_by(entry, &c.blobs) => {
                let was = old.superseded(&c.blobs);
                let old_counted = old.counted(&c.blobs);
                c.blobs.release(old);
                let blob = c.blobs.admit(entry);
                old.set(key, entry, blob);
                c.stats.account_size(old_counted, was.tombstone, false);
                c.stats.account_size(counted, entry.is_tombstone(), true);
                Ok(Merged::Replaced(was))
            }
            Some(_) => Ok(Merged::Kept),
        }
    }
}

impl Store for MemStore {
    fn durable_on_write(&self) -> bool {
        true
    }

    fn collections(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .collections
            .iter()
            .filter(|(_, c)| !c.records.is_empty())
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn get(
        &self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Entry>, StoreError> {
        let Some(c) = self.collections.get(collection) else {
            return Ok(None);
        };
        Ok(c.records.find(pos, key).map(|rec| rec.entry(&c.blobs)))
    }

    fn warm(&self, collection: &str, pos: Position, part: Warm) -> u64 {
        let Some(rec) = self.collections.get(collection).and_then(|c| c.records.index.get(pos))
        else {
            return 0;
        };
        match part {
            // The slot holds the record's length beside its address.
            Warm::Index => rec.0.len() as u64,
            // Every cache line of a small record (a merge reads its header and key and
            // writes it whole).
            Warm::Record => {
                rec.0.iter().step_by(64).chain(rec.0.last()).fold(0, |sum, b| sum + u64::from(*b))
            }
        }
    }

    fn merge(
        &mut self,
        collection: &str,
        pos: Position,
        key: &Bytes,
        entry: Entry,
    ) -> Result<Merged, StoreError> {
        self.merge_one(collection, pos, key, &entry)
    }

    fn merge_batch(
        &mut self,
        collection: &str,
        records: &[Record],
    ) -> Result<Vec<Merged>, StoreError> {
        records.iter().map(|r| self.merge_one(collection, r.pos, &r.key, &r.entry)).collect()
    }

    fn remove(
        &mut self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Entry>, StoreError> {
        let Some(c) = self.collections.get_mut(collection) else {
            return Ok(None);
        };
        let Some(rec) = c.records.remove(pos, key) else { return Ok(None) };
        let entry = rec.entry(&c.blobs);
        c.forget(&rec);
        Ok(Some(entry))
    }

    fn range(
        &self,
        collection: &str,
        interval: Interval,
        after: Option<(Position, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let Some(c) = self.collections.get(collection) else {
            return Ok(out);
        };
        for (seg, resume) in interval.walk_after(after.map(|(p, _)| p)) {
            let from = match after {
                Some((p, k)) if resume => (p, Some(k)),
                _ => (seg.lo, None),
            };
            c.records.walk(from, seg.hi, |pos, rec| {
                if out.len() >= limit {
                    return false;
                }
                let key = Bytes::copy_from_slice(rec.key());
                out.push(Record { pos, key, entry: rec.entry(&c.blobs) });
                true
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn delete_range(&mut self, collection: &str, interval: Interval) -> Result<u64, StoreError> {
        let Some(c) = self.collections.get_mut(collection) else {
            return Ok(0);
        };
        let mut doomed: Vec<(Position, Box<[u8]>)> = Vec::new();
        for seg in interval.segments().into_iter().flatten() {
            c.records.walk((seg.lo, None), seg.hi, |pos, rec| {
                doomed.push((pos, rec.key().into()));
                true
            });
        }
        for (pos, key) in &doomed {
            if let Some(rec) = c.records.remove(*pos, key) {
                c.forget(&rec);
            }
        }
        Ok(doomed.len() as u64)
    }

    fn drop_collection(&mut self, collection: &str) -> Result<bool, StoreError> {
        Ok(self.collections.remove(collection).is_some_and(|c| !c.records.is_empty()))
    }

    fn stats(&self, collection: &str) -> Result<CollectionStats, StoreError> {
        Ok(self.collections.get(collection).map(|c| c.stats).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    crate::store_conformance_tests!(MemStore::new());

    fn blobs(s: &MemStore) -> usize {
        s.collections.get("c").map_or(0, |c| c.blobs.values.len())
    }

    #[test]
    fn warming_reads_any_slot_and_changes_nothing() {
        let mut s = MemStore::new();
        let v = |n: u64| Entry::value(vec![n as u8; 300], Timestamp(n), NodeId(1));
        s.merge("c", 5, &Bytes::from_static(b"alone"), v(1)).unwrap();
        // Two keys at one position: the index holds the crowded mark, which is empty.
        s.merge("c", 9, &Bytes::from_static(b"a"), v(2)).unwrap();
        s.merge("c", 9, &Bytes::from_static(b"b"), v(3)).unwrap();
        let before = (s.range("c", Interval::full(), None, 10).unwrap(), s.stats("c").unwrap());
        // The record's bytes, one from each cache line and the last.
        for part in [Warm::Index, Warm::Record] {
            assert!(s.warm("c", 5, part) > 0);
            assert_eq!(s.warm("c", 9, part), 0);
            assert_eq!(s.warm("c", 7, part), 0);
            assert_eq!(s.warm("nope", 5, part), 0);
        }
        assert_eq!(
            before,
            (s.range("c", Interval::full(), None, 10).unwrap(), s.stats("c").unwrap())
        );
    }

    #[test]
    fn large_values_are_shared_with_reads_and_let_go_with_their_records() {
        let mut s = MemStore::new();
        let big = Bytes::from(vec![9u8; SHARED_FROM]);
        let key = Bytes::from_static(b"k");
        s.merge("c", 5, &key, Entry::value(big.clone(), Timestamp(1), NodeId(1))).unwrap();
        let (a, b) = (s.get("c", 5, b"k").unwrap().unwrap(), s.get("c", 5, b"k").unwrap().unwrap());
        let (a, b) = (a.value.unwrap(), b.value.unwrap());
        assert_eq!(a, big);
        assert_eq!(a.as_ptr(), b.as_ptr(), "two reads share one buffer");
        assert_eq!(a.as_ptr(), big.as_ptr(), "the very buffer written");
        assert_eq!(blobs(&s), 1);
        // Replaced by a small value: the buffer goes; by a large one again: one buffer.
        s.merge("c", 5, &key, Entry::value(&b"small"[..], Timestamp(2), NodeId(1))).unwrap();
        assert_eq!(blobs(&s), 0);
        s.merge("c", 5, &key, Entry::value(big.clone(), Timestamp(3), NodeId(1))).unwrap();
        s.merge("c", 5, &key, Entry::value(big.clone(), Timestamp(4), NodeId(1))).unwrap();
        assert_eq!(blobs(&s), 1);
        let stats = s.stats("c").unwrap();
        assert_eq!(stats.bytes, (1 + SHARED_FROM + ENTRY_META) as u64);
        // Removed, and dropped with a range: nothing kept.
        assert_eq!(s.remove("c", 5, b"k").unwrap().unwrap().value.unwrap(), big);
        assert_eq!(blobs(&s), 0);
        s.merge("c", 6, &key, Entry::value(big.clone(), Timestamp(5), NodeId(1))).unwrap();
        assert_eq!(s.delete_range("c", Interval::full()).unwrap(), 1);
        assert_eq!((blobs(&s), s.stats("c").unwrap()), (0, CollectionStats::default()));
    }
}
