//! `MemStore`: the in-memory [`Store`], used by `--memory` nodes, the browser replica,
//! the simulator and tests.
//!
//! Dense, because a `--memory` node's keys all live here (162 bytes a key at 1M keys of
//! 16 + 100 bytes, RSS growth, against Redis's 200). Each record is its version,
//! expiry, key and value side by side ([`record`]: 128 bytes for that key), packed at
//! its exact length into 64 KiB pages of its collection's [`Arena`] and addressed by
//! an 8-byte [`Loc`] (page, offset). Each collection's index maps a ring position to
//! that handle — 16 bytes a slot, in a hash table on the positions that is also in
//! position order and about 90% full ([`index`]), so a lookup usually reads one slot
//! before the record.
//!
//! Why pages rather than an allocation per record: the allocator rounded a 137-byte
//! record up to 160 and its slot held a 16-byte fat pointer (230 bytes a key). The
//! price is that a record replaced by one of another length, or removed, leaves dead
//! bytes in its page; a page that empties is freed, and the rest is taken back by
//! sweeps that move a few records per write or removal, never a pause proportional to
//! the keys ([`arena`] says how, and what bounds the dead bytes). Earlier, a map keyed
//! by `(position, key)` holding whole entries took 104-byte slots and separate key and
//! value buffers (375 bytes a key), and its search was a tenth of a write's time.
//!
//! Positions are hashes in hashed collections (two keys share one almost never), but
//! in an `ordered.*` collection a position is the key's first 8 bytes, which many keys
//! share (`user:000001`, `user:000002`...). A position several keys share is *crowded*:
//! its index slot is [`Loc::NONE`] and its records sit outside the arena, one
//! allocation each, in a map by key of their own ([`Records::crowded`]), so order is
//! still (position, key) and no operation degrades with the number of keys sharing a
//! prefix.
//!
//! Values of [`SHARED_FROM`] bytes or more are not copied into their record: the record
//! holds a number, and the value stays the `Bytes` it arrived as, in the collection's
//! [`Blobs`]. A read of it shares that buffer instead of copying it — three hundred
//! reads of a 1 MiB value queued for a slow client hold one megabyte, not three
//! hundred, until the output limit stops them ([`crate::node`]'s callers bound what is
//! queued, not what a batch of reads makes).

use super::{validate_collection, CollectionStats, Merged, Record, Store, StoreError, Warm};
use crate::{
    entry::{Entry, Version},
    hash::{Interval, Position},
};
use arena::{Arena, Loc};
use bytes::Bytes;
use index::Index;
#[cfg(test)]
use record::ENTRY_META;
use record::{Boxed, Draft, Rec};
use std::collections::BTreeMap;

mod arena;
mod index;
mod record;

/// Values at least this long are kept as shared buffers beside the records ([`Blobs`]).
pub const SHARED_FROM: usize = 1024;
use std::ops::Bound;

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

    /// Forgets shared value `id`, if there is one.
    fn release(&mut self, id: Option<u64>) {
        if let Some(id) = id {
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

impl record::Shared for Blobs {
    fn get(&self, id: u64) -> &[u8] {
        self.values.get(&id).map_or(&[], |b| &b[..])
    }

    fn share(&self, id: u64) -> Bytes {
        self.values.get(&id).cloned().unwrap_or_default()
    }
}

#[derive(Debug, Default, Clone)]
struct Collection {
    records: Records,
    blobs: Blobs,
    stats: CollectionStats,
    /// Positions whose record was marked since the changes were last taken (while the
    /// store tracks changes; a position may be listed twice).
    changed: Vec<Position>,
}

impl Collection {
    /// The bytes of the record at `loc` in the arena.
    fn arena_record(&self, loc: Loc) -> &[u8] {
        self.records.arena.get(loc).bytes()
    }
}

/// Accounts for `rec` leaving `stats`, and lets go of its shared value.
fn forget(stats: &mut CollectionStats, blobs: &mut Blobs, rec: Rec<'_>) {
    let counted = rec.counted(blobs);
    stats.account_size(counted, rec.value(blobs).is_none(), false);
    blobs.release(rec.blob());
}

/// Index entries a sweep visits per write or removal ([`arena`]): a step copies at most
/// this many records.
const SWEEP_STEP: usize = 64;

/// A collection's records in (position, key) order.
#[derive(Debug, Default, Clone)]
struct Records {
    /// Each position's record in [`Records::arena`]; [`Loc::NONE`] for a crowded
    /// position (see the module docs).
    index: Index<Loc>,
    /// The records the index points to.
    arena: Arena,
    /// The records of crowded positions (two or more each), by key.
    crowded: BTreeMap<Position, BTreeMap<Box<[u8]>, Boxed>>,
}

impl Records {
    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn find(&self, pos: Position, key: &[u8]) -> Option<Rec<'_>> {
        match *self.index.get(pos)? {
            loc if loc.is_none() => {
                self.crowded.get(&pos)?.get(key).map(|rec| rec.view(&self.arena.origins))
            }
            loc => Some(self.arena.get(loc)).filter(|rec| rec.key() == key),
        }
    }

    /// The record of `key` and `entry` to store (`marked`: as changed).
    fn draft<'a>(
        &mut self,
        key: &'a [u8],
        entry: &'a Entry,
        blob: Option<u64>,
        marked: bool,
    ) -> Draft<'a> {
        let mut rec = Draft::new(key, entry, blob, &mut self.arena.origins);
        rec.marked = marked;
        rec
    }

    /// Adds `rec`, the record of a key not stored yet.
    fn insert(&mut self, pos: Position, key: &[u8], rec: Draft<'_>) {
        match self.index.get_mut(pos) {
            None => {
                let loc = self.arena.put(rec);
                self.index.insert(pos, loc);
            }
            Some(slot) if slot.is_none() => {
                self.crowded.entry(pos).or_default().insert(key.into(), Boxed::new(rec));
            }
            Some(slot) => {
                // The position becomes crowded: its record moves out of the arena (as
                // it is: crowded records share the arena's origins).
                let loc = std::mem::replace(slot, Loc::NONE);
                let alone = self.arena.get(loc);
                let (alone_key, alone) = (alone.key().into(), Boxed(alone.bytes().into()));
                self.arena.remove(loc);
                let crowd = self.crowded.entry(pos).or_default();
                crowd.insert(alone_key, alone);
                crowd.insert(key.into(), Boxed::new(rec));
            }
        }
    }

    /// Makes `rec` the stored record of `key`.
    fn replace(&mut self, pos: Position, key: &[u8], rec: Draft<'_>) {
        match self.index.get_mut(pos) {
            Some(slot) if slot.is_none() => {
                if let Some(old) = self.crowded.get_mut(&pos).and_then(|c| c.get_mut(key)) {
                    old.set(rec);
                }
            }
            Some(slot) => self.arena.set(slot, rec),
            None => {}
        }
    }

    /// Removes `key`'s record, showing it to `last` before it goes.
    fn remove<T>(
        &mut self,
        pos: Position,
        key: &[u8],
        last: impl FnOnce(Rec<'_>) -> T,
    ) -> Option<T> {
        let loc = *self.index.get(pos)?;
        if loc.is_none() {
            let crowd = self.crowded.get_mut(&pos)?;
            let rec = crowd.remove(key)?;
            if crowd.len() == 1 {
                // One left: back in the index, the position is no longer crowded.
                let alone = self.crowded.remove(&pos).and_then(|c| c.into_values().next());
                if let Some(alone) = alone {
                    let loc = self.arena.put_bytes(&alone.0);
                    self.index.insert(pos, loc);
                }
            }
            return Some(last(rec.view(&self.arena.origins)));
        }
        let rec = self.arena.get(loc);
        if rec.key() != key {
            return None;
        }
        let shown = last(rec);
        self.index.remove(pos);
        self.arena.remove(loc);
        Some(shown)
    }

    /// A step of the arena's sweep, if one is due ([`arena`]).
    fn compact_step(&mut self) {
        let Some(from) = self.arena.sweep_from() else { return };
        let arena = &mut self.arena;
        let next = self.index.visit_mut(from, SWEEP_STEP, |_, loc| {
            if !loc.is_none() {
                arena.relocate(loc);
            }
        });
        self.arena.sweep_to(next);
    }

    /// Records in (position, key) order from `from` (a position and, within it, keys
    /// after the one given) up to position `to` inclusive, until `visit` says stop.
    fn walk<'a>(
        &'a self,
        from: (Position, Option<&[u8]>),
        to: Position,
        mut visit: impl FnMut(Position, Rec<'a>) -> bool,
    ) {
        let (lo, after) = from;
        if lo > to {
            return;
        }
        for (pos, &loc) in self.index.range(lo, to) {
            let more = if loc.is_none() {
                let Some(crowd) = self.crowded.get(&pos) else { continue };
                let lower = match after {
                    Some(k) if pos == lo => Bound::Excluded(k),
                    _ => Bound::Unbounded,
                };
                crowd
                    .range::<[u8], _>((lower, Bound::Unbounded))
                    .all(|(_, rec)| visit(pos, rec.view(&self.arena.origins)))
            } else {
                let rec = self.arena.get(loc);
                let skip = pos == lo && after.is_some_and(|k| rec.key() <= k);
                skip || visit(pos, rec)
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
    /// Changed records are marked, for [`MemStore::take_changed`].
    track: bool,
    /// Records marked since the changes were last taken, and their keys' and entries'
    /// bytes.
    marked: (u64, u64),
}

/// Lists `pos` as changed (its record newly marked) and counts the record's `bytes`.
fn note_change(changed: &mut Vec<Position>, marked: &mut (u64, u64), pos: Position, bytes: usize) {
    changed.push(pos);
    marked.0 += 1;
    marked.1 += bytes as u64;
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, records a merge changes are marked, and their positions listed,
    /// until [`MemStore::take_changed`] takes them: what a store writing behind
    /// needs to know of its next checkpoint, at the cost of no lookup (the mark is a
    /// bit of the record the merge writes anyway).
    pub fn track_changes(&mut self) {
        self.track = true;
    }

    /// Records marked since the changes were last taken, and their bytes (keys and
    /// entries).
    pub fn marked(&self) -> (u64, u64) {
        self.marked
    }

    /// The records at every position a merge changed since the last call, by
    /// collection, each in (position, key) order — every key of such a position, so
    /// a crowded one needs no list of keys — their marks cleared.
    pub fn take_changed(&mut self) -> Vec<(String, Vec<Record>)> {
        let mut out = Vec::new();
        for (name, c) in &mut self.collections {
            if c.changed.is_empty() {
                continue;
            }
            let mut positions = std::mem::take(&mut c.changed);
            positions.sort_unstable();
            positions.dedup();
            let mut records = Vec::with_capacity(positions.len());
            for pos in positions {
                let Some(&loc) = c.records.index.get(pos) else { continue };
                if loc.is_none() {
                    let origins = &c.records.arena.origins;
                    for (key, rec) in c.records.crowded.get_mut(&pos).into_iter().flatten() {
                        let entry = rec.view(origins).entry(&c.blobs);
                        record::unmark(&mut rec.0);
                        records.push(Record { pos, key: Bytes::copy_from_slice(key), entry });
                    }
                } else {
                    let rec = c.records.arena.get(loc);
                    let record = Record {
                        pos,
                        key: Bytes::copy_from_slice(rec.key()),
                        entry: rec.entry(&c.blobs),
                    };
                    c.records.arena.unmark(loc);
                    records.push(record);
                }
            }
            out.push((name.clone(), records));
        }
        self.marked = (0, 0);
        out
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
        let track = self.track;
        let merged = match c.records.find(pos, key) {
            None => {
                let blob = c.blobs.admit(entry);
                let rec = c.records.draft(key, entry, blob, track);
                c.records.insert(pos, key, rec);
                c.stats.account_size(counted, entry.is_tombstone(), true);
                if track {
                    note_change(&mut c.changed, &mut self.marked, pos, counted);
                }
                Merged::Inserted
            }
            Some(old) if old.superseded_by(entry, &c.blobs) => {
                let was = old.superseded(&c.blobs);
                let old_counted = old.counted(&c.blobs);
                if track && !old.marked() {
                    note_change(&mut c.changed, &mut self.marked, pos, counted);
                }
                c.blobs.release(old.blob());
                let blob = c.blobs.admit(entry);
                let rec = c.records.draft(key, entry, blob, track);
                c.records.replace(pos, key, rec);
                c.stats.account_size(old_counted, was.tombstone, false);
                c.stats.account_size(counted, entry.is_tombstone(), true);
                Merged::Replaced(was)
            }
            Some(_) => return Ok(Merged::Kept),
        };
        c.records.compact_step();
        Ok(merged)
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

    fn version(
        &self,
        collection: &str,
        pos: Position,
        key: &[u8],
    ) -> Result<Option<Version>, StoreError> {
        let Some(c) = self.collections.get(collection) else {
            return Ok(None);
        };
        Ok(c.records.find(pos, key).map(|rec| rec.version()))
    }

    fn warm(&self, collection: &str, pos: Position, part: Warm) -> u64 {
        let Some(c) = self.collections.get(collection) else { return 0 };
        let Some(&loc) = c.records.index.get(pos) else { return 0 };
        if loc.is_none() {
            return 0;
        }
        match part {
            // The slot holds the record's page and offset.
            Warm::Index => loc.bits(),
            // Every cache line of a small record (a merge reads its header and key and
            // writes it whole).
            Warm::Record => {
                let rec = c.arena_record(loc);
                rec.iter().step_by(64).chain(rec.last()).fold(0, |sum, b| sum + u64::from(*b))
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
        let (stats, blobs) = (&mut c.stats, &mut c.blobs);
        let entry = c.records.remove(pos, key, |rec| {
            let entry = rec.entry(blobs);
            forget(stats, blobs, rec);
            entry
        });
        c.records.compact_step();
        Ok(entry)
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
            let (stats, blobs) = (&mut c.stats, &mut c.blobs);
            c.records.remove(*pos, key, |rec| forget(stats, blobs, rec));
            c.records.compact_step();
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
    use crate::{clock::Timestamp, entry::NodeId};
    use proptest::prelude::Strategy;
    use proptest::prelude::{any, Just};
    use proptest::prop_oneof;
    crate::store_conformance_tests!(MemStore::new());

    fn blobs(s: &MemStore) -> usize {
        s.collections.get("c").map_or(0, |c| c.blobs.values.len())
    }

    #[test]
    fn tracked_changes_are_the_records_at_positions_merged_since_last_taken() {
        let mut s = MemStore::new();
        let v = |n: u64| Entry::value(vec![n as u8; 20], Timestamp(n), NodeId(1));
        let k = |k: &'static str| Bytes::from_static(k.as_bytes());
        s.merge("c", 1, &k("before"), v(1)).unwrap(); // before tracking: never listed
        s.track_changes();
        assert!(s.take_changed().is_empty());
        s.merge("c", 5, &k("alone"), v(1)).unwrap();
        s.merge("c", 5, &k("alone"), v(2)).unwrap(); // marked once
        assert_eq!(s.merge("c", 5, &k("alone"), v(1)).unwrap(), Merged::Kept);
        s.merge("c", 9, &k("a"), v(3)).unwrap();
        s.merge("c", 9, &k("b"), v(4)).unwrap(); // crowded: both keys of the position
        s.merge("d", 2, &k("x"), Entry::value(vec![7; 5000], Timestamp(5), NodeId(1))).unwrap();
        assert_eq!(s.marked().0, 4);
        let taken = s.take_changed();
        type Seen<'a> = (&'a str, Vec<(Position, &'a [u8], Timestamp)>);
        let keys: Vec<Seen<'_>> = taken
            .iter()
            .map(|(c, rs)| {
                (c.as_str(), rs.iter().map(|r| (r.pos, &r.key[..], r.entry.ts)).collect())
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                (
                    "c",
                    vec![
                        (5, &b"alone"[..], Timestamp(2)),
                        (9, b"a", Timestamp(3)),
                        (9, b"b", Timestamp(4))
                    ]
                ),
                ("d", vec![(2, &b"x"[..], Timestamp(5))]),
            ]
        );
        assert_eq!(taken[1].1[0].entry.value.as_deref(), Some(&[7u8; 5000][..]));
        assert_eq!(s.marked(), (0, 0));
        assert!(s.take_changed().is_empty(), "the marks were cleared");
        // Merged again: marked again; a key removed is not read back.
        s.merge("c", 9, &k("b"), v(6)).unwrap();
        s.merge("c", 5, &k("alone"), v(7)).unwrap();
        s.remove("c", 5, b"alone").unwrap();
        let taken = s.take_changed();
        assert_eq!(taken.len(), 1);
        let keys: Vec<_> = taken[0].1.iter().map(|r| (r.pos, r.key.clone(), r.entry.ts)).collect();
        assert_eq!(keys, vec![(9, k("a"), Timestamp(3)), (9, k("b"), Timestamp(6))]);
        // The marks are not part of what is read.
        assert_eq!(s.get("c", 9, b"b").unwrap(), Some(v(6)));
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

    /// Checks the collection's arena and index against each other: every slot's record
    /// is at its key, the counts add up, and dead bytes stay bounded (a quarter of the
    /// live ones starts a sweep; what dies while it runs and the tail's come on top).
    fn check_arena(s: &MemStore) {
        let Some(c) = s.collections.get("c") else { return };
        let arena = &c.records.arena;
        arena.check();
        let live: usize = c
            .records
            .index
            .range(0, u64::MAX)
            .filter(|(_, loc)| !loc.is_none())
            .map(|(_, loc)| arena.get(*loc).bytes().len())
            .sum();
        assert_eq!(live, arena.live());
        let bound = arena.live() / 2 + 4 * arena::PAGE;
        assert!(
            arena.dead() <= bound,
            "{} dead bytes for {} live: {arena:?}",
            arena.dead(),
            arena.live()
        );
    }

    /// A key of the model tests: `n`, at a position its own except for the first few,
    /// which share position 7 (a crowded position).
    fn model_key(n: u16) -> (Position, Bytes) {
        let pos = if n < 6 { 7 } else { u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15) };
        (pos, Bytes::from(format!("key-{n}")))
    }

    #[test]
    fn sweeps_keep_every_record_readable_and_in_order_and_give_memory_back() {
        let mut s = MemStore::new();
        let mut model: BTreeMap<(Position, Bytes), Entry> = BTreeMap::new();
        let mut ts = 0;
        // Rounds of writes of changing lengths (each a new record, the old one dead) to
        // a few keys at a time, and removals of others, so that pages die in part.
        for round in 0..40u64 {
            for n in 0..600u16 {
                let (pos, key) = model_key(n);
                let dice = (u64::from(n) * 31 + round * 17) % 7;
                if round > 0 && dice == 0 {
                    let gone = s.remove("c", pos, &key).unwrap();
                    assert_eq!(gone, model.remove(&(pos, key)));
                } else if round == 0 || dice == 1 {
                    ts += 1;
                    let len = ((u64::from(n) * 7 + round * 13) % 300) as usize;
                    let entry = Entry::value(vec![n as u8; len], Timestamp(ts), NodeId(1));
                    s.merge("c", pos, &key, entry.clone()).unwrap();
                    model.insert((pos, key), entry);
                }
                check_arena(&s);
            }
        }
        let arena = &s.collections["c"].records.arena;
        assert!(arena.sweeps() > 5, "{} sweeps", arena.sweeps());
        // Every live record readable with its exact entry, and `range` in order.
        for ((pos, key), entry) in &model {
            assert_eq!(s.get("c", *pos, key).unwrap().as_ref(), Some(entry));
        }
        let all = s.range("c", Interval::full(), None, usize::MAX).unwrap();
        let want: Vec<(Position, Bytes, Entry)> =
            model.iter().map(|((p, k), e)| (*p, k.clone(), e.clone())).collect();
        let got: Vec<(Position, Bytes, Entry)> =
            all.into_iter().map(|r| (r.pos, r.key, r.entry)).collect();
        assert_eq!(got, want);
        // Everything removed: every page goes but the tail's.
        for (pos, key) in model.keys() {
            s.remove("c", *pos, key).unwrap();
        }
        let arena = &s.collections["c"].records.arena;
        assert_eq!((arena.live(), arena.dead()), (0, 0));
        assert!(arena.pages() <= 1);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Put(u16, usize, Option<u64>),
        Tombstone(u16),
        Remove(u16),
        DeleteRange(u64, u64),
        Range(u16, usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        let key = 0u16..120;
        // Lengths across the arena's own-page threshold and the shared-value one.
        let len = prop_oneof![8 => 0usize..300, 1 => 300usize..1100, 1 => Just(SHARED_FROM)];
        prop_oneof![
            8 => (key.clone(), len, proptest::option::of(0u64..100))
                .prop_map(|(k, l, e)| Step::Put(k, l, e)),
            1 => key.clone().prop_map(Step::Tombstone),
            4 => key.clone().prop_map(Step::Remove),
            1 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Step::DeleteRange(a, b)),
            1 => (key, 1usize..50).prop_map(|(k, n)| Step::Range(k, n)),
        ]
    }

    proptest::proptest! {
        /// Writes that change records' lengths, tombstones and removals, against a
        /// `BTreeMap`: the store agrees with it after every step, in every range, and
        /// its dead bytes stay bounded.
        #[test]
        fn resizes_and_removals_agree_with_a_model(
            steps in proptest::collection::vec(step(), 1..600)
        ) {
            let mut s = MemStore::new();
            let mut model: BTreeMap<(Position, Bytes), Entry> = BTreeMap::new();
            for (ts, step) in (1..).zip(steps) {
                match step {
                    Step::Put(n, len, expires) => {
                        let (pos, key) = model_key(n);
                        let entry = Entry::value(vec![ts as u8; len], Timestamp(ts), NodeId(ts % 300 * 11))
                            .with_expiry(expires);
                        s.merge("c", pos, &key, entry.clone()).unwrap();
                        model.insert((pos, key), entry);
                    }
                    Step::Tombstone(n) => {
                        let (pos, key) = model_key(n);
                        let entry = Entry::tombstone(Timestamp(ts), NodeId(2));
                        s.merge("c", pos, &key, entry.clone()).unwrap();
                        model.insert((pos, key), entry);
                    }
                    Step::Remove(n) => {
                        let (pos, key) = model_key(n);
                        let gone = s.remove("c", pos, &key).unwrap();
                        proptest::prop_assert_eq!(gone, model.remove(&(pos, key)));
                    }
                    Step::DeleteRange(a, b) => {
                        let interval = Interval::new(a, b);
                        let doomed: Vec<(Position, Bytes)> =
                            model.keys().filter(|(p, _)| interval.contains(*p)).cloned().collect();
                        let n = s.delete_range("c", interval).unwrap();
                        proptest::prop_assert_eq!(n, doomed.len() as u64);
                        for k in doomed {
                            model.remove(&k);
                        }
                    }
                    Step::Range(n, limit) => {
                        let (pos, key) = model_key(n);
                        let got = s
                            .range("c", Interval::full(), Some((pos, &key)), limit)
                            .unwrap();
                        let want: Vec<Record> = model
                            .range((Bound::Excluded((pos, key)), Bound::Unbounded))
                            .take(limit)
                            .map(|((p, k), e)| Record { pos: *p, key: k.clone(), entry: e.clone() })
                            .collect();
                        proptest::prop_assert_eq!(got, want);
                    }
                }
                check_arena(&s);
            }
            for ((pos, key), entry) in &model {
                proptest::prop_assert_eq!(s.get("c", *pos, key).unwrap(), Some(entry.clone()));
            }
            let all = s.range("c", Interval::full(), None, usize::MAX).unwrap();
            proptest::prop_assert_eq!(all.len(), model.len());
        }
    }
}
