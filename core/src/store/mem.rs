//! `MemStore`: the in-memory [`Store`], used by `--memory` nodes, the browser replica,
//! the simulator and tests. A `BTreeMap` per collection keyed by `(position, key)`.

use super::{validate_collection, CollectionStats, Merged, Record, Store, StoreError};
use crate::{entry::Entry, hash::Interval, hash::Position};
use bytes::Bytes;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

/// A record's place in a collection, the map's key: its position, then its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Slot(Position, Bytes);

/// A place looked up by borrowed parts: lookups build a `(Position, &[u8])` instead of a
/// [`Slot`], which would copy (or share-count) the key on every read and write.
trait Place {
    fn place(&self) -> (Position, &[u8]);
}

impl Place for Slot {
    fn place(&self) -> (Position, &[u8]) {
        (self.0, &self.1)
    }
}

impl Place for (Position, &[u8]) {
    fn place(&self) -> (Position, &[u8]) {
        *self
    }
}

impl<'a> Borrow<dyn Place + 'a> for Slot {
    fn borrow(&self) -> &(dyn Place + 'a) {
        self
    }
}

// Ordered exactly as `Slot` is (position, then key bytes), as `Borrow` requires.
impl PartialEq for dyn Place + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.place() == other.place()
    }
}

impl Eq for dyn Place + '_ {}

impl PartialOrd for dyn Place + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn Place + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.place().cmp(&other.place())
    }
}

#[derive(Debug, Default, Clone)]
struct Collection {
    records: BTreeMap<Slot, Entry>,
    stats: CollectionStats,
}

/// An in-memory store: ordered maps, exact counts, nothing persisted.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    collections: BTreeMap<String, Collection>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
        Ok(c.records.get(&(pos, key) as &dyn Place).cloned())
    }

    fn merge(
        &mut self,
        collection: &str,
        pos: Position,
        key: &Bytes,
        entry: Entry,
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
        match c.records.get_mut(&(pos, &key[..]) as &dyn Place) {
            None => {
                c.stats.account(key, &entry, true);
                c.records.insert(Slot(pos, key.clone()), entry);
                Ok(Merged::Inserted)
            }
            Some(old) if entry.supersedes(old) => {
                c.stats.account(key, old, false);
                c.stats.account(key, &entry, true);
                Ok(Merged::Replaced(std::mem::replace(old, entry)))
            }
            Some(_) => Ok(Merged::Kept),
        }
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
        let old = c.records.remove(&(pos, key) as &dyn Place);
        if let Some(e) = &old {
            c.stats.account(key, e, false);
        }
        Ok(old)
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
            let lower = match after {
                Some((p, k)) if resume => Bound::Excluded(Slot(p, Bytes::copy_from_slice(k))),
                _ => Bound::Included(Slot(seg.lo, Bytes::new())),
            };
            let upper = match seg.hi.checked_add(1) {
                Some(next) => Bound::Excluded(Slot(next, Bytes::new())),
                None => Bound::Unbounded,
            };
            for (Slot(pos, key), entry) in c.records.range((lower, upper)) {
                if out.len() >= limit {
                    return Ok(out);
                }
                out.push(Record { pos: *pos, key: key.clone(), entry: entry.clone() });
            }
        }
        Ok(out)
    }

    fn delete_range(&mut self, collection: &str, interval: Interval) -> Result<u64, StoreError> {
        let Some(c) = self.collections.get_mut(collection) else {
            return Ok(0);
        };
        let mut doomed: Vec<Slot> = Vec::new();
        for seg in interval.segments().into_iter().flatten() {
            let lower = Bound::Included(Slot(seg.lo, Bytes::new()));
            let upper = match seg.hi.checked_add(1) {
                Some(next) => Bound::Excluded(Slot(next, Bytes::new())),
                None => Bound::Unbounded,
            };
            doomed.extend(c.records.range((lower, upper)).map(|(k, _)| k.clone()));
        }
        for k in &doomed {
            if let Some(e) = c.records.remove(k) {
                c.stats.account(&k.1, &e, false);
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
    use super::MemStore;
    crate::store_conformance_tests!(MemStore::new());
}
