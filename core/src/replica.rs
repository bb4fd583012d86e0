//! A replica: a [`Store`] and the Merkle trees of its collections, kept in step.
//!
//! Every write to a replica goes through here, so the tree of a collection always
//! describes exactly what the store holds: a merge that changes the store XORs the old
//! and new entry digests into the tree (O(depth)); a removal XORs the old one out.
//! The replica also knows each collection's [`Placement`], so callers name keys and the
//! replica works out positions.
//!
//! Because every merge passes through here, the replica is also where changes are seen:
//! with the change feed on ([`Replica::set_change_feed`]) it records each entry a merge
//! actually applied (inserted or replaced) — whether it came from a client write, a
//! replica write, read repair, a hint or a sync session — and hands them out with
//! [`Replica::take_changes`]. Watches ([`crate::node::watch`]) are built on it. Removals
//! (tombstone GC, cleaning, [`Replica::delete_range`]) are housekeeping, not changes,
//! and are not recorded.

use crate::{
    catalogue::is_catalogue,
    entry::{Entry, Version},
    hash::{Interval, Placement, Position},
    merkle::{entry_digest, MerkleTree, NodeRef, DEFAULT_DEPTH, FANOUT},
    store::{Merged, Record, Store, StoreError, Warm},
};
use bytes::Bytes;
use std::collections::BTreeMap;

/// Records read per page when a replica walks a collection.
const PAGE: usize = 1024;

/// An entry a merge applied: what [`Replica::take_changes`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The collection changed.
    pub collection: String,
    /// The key changed.
    pub key: Bytes,
    /// The entry now stored for the key.
    pub entry: Entry,
}

/// A store plus one Merkle tree per collection.
#[derive(Debug, Clone)]
pub struct Replica<S: Store> {
    store: S,
    trees: BTreeMap<String, MerkleTree>,
    placements: BTreeMap<String, Placement>,
    depth: u8,
    /// Changes applied since the last [`Replica::take_changes`]; `None` while the change
    /// feed is off.
    changes: Option<Vec<Change>>,
    /// Mutating calls made on the store, ever (see [`Replica::writes`]).
    writes: u64,
    /// The catalogue's collection changed since [`Replica::take_catalogue_changed`].
    catalogue_changed: bool,
}

impl<S: Store> Replica<S> {
    /// Wraps `store`, building the tree of every collection it already holds.
    pub fn new(store: S) -> Result<Self, StoreError> {
        Self::with_depth(store, DEFAULT_DEPTH)
    }

    /// As [`Replica::new`], storing Merkle levels `0 ..= depth`.
    pub fn with_depth(store: S, depth: u8) -> Result<Self, StoreError> {
        let mut replica = Replica {
            store,
            trees: BTreeMap::new(),
            placements: BTreeMap::new(),
            depth,
            changes: None,
            writes: 0,
            catalogue_changed: false,
        };
        for name in replica.store.collections()? {
            replica.rebuild_tree(&name)?;
        }
        Ok(replica)
    }

    /// Recomputes a collection's tree from the store, page by page.
    pub fn rebuild_tree(&mut self, collection: &str) -> Result<(), StoreError> {
        let mut tree = MerkleTree::new(self.depth);
        for_each_record(&self.store, collection, Interval::full(), |r| {
            tree.insert(r.pos, entry_digest(&r.key, &r.entry));
        })?;
        self.trees.insert(collection.to_string(), tree);
        Ok(())
    }

    /// Rebuilds every tree from the store, and forgets trees of collections it no longer
    /// holds: after the store dropped writes it had gathered (a failed flush), the trees
    /// describe exactly what it holds again.
    pub fn rebuild_all(&mut self) -> Result<(), StoreError> {
        let names = self.store.collections()?;
        self.trees.retain(|name, _| names.contains(name));
        for name in &names {
            self.rebuild_tree(name)?;
        }
        Ok(())
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The host is done with the store (see [`Store::close`]).
    pub fn close_store(&mut self) {
        self.store.close();
    }

    /// Commits the store's gathered writes (see [`Store::flush`]).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.store.flush()
    }

    /// Begins committing the store's gathered writes (see [`Store::flush_begin`]).
    pub fn flush_begin(&mut self) -> Result<Option<crate::store::SyncJob>, StoreError> {
        self.store.flush_begin()
    }

    /// How many mutating calls were made on the store through this replica: when it did
    /// not move since the last commit began, there is nothing new to commit.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// After a failed commit: lets the store drop what the commit did not make durable
    /// (see [`Store::discard_uncommitted`]), then rebuilds every tree from what it holds.
    pub fn discard_uncommitted(&mut self) -> Result<(), StoreError> {
        self.store.discard_uncommitted()?;
        self.catalogue_changed = true;
        self.rebuild_all()
    }

    /// Consumes the replica, returning its store.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The stored Merkle depth of new trees.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// Overrides how `collection` places keys (tests and tools; nodes use the name rule
    /// of [`Placement::of`]). Change it only while the collection is empty: existing
    /// records keep the positions they were stored at.
    pub fn set_placement(&mut self, collection: &str, placement: Placement) {
        self.placements.insert(collection.to_string(), placement);
    }

    /// How `collection` places keys: [`Placement::of`] its name unless overridden.
    pub fn placement(&self, collection: &str) -> Placement {
        self.placements.get(collection).copied().unwrap_or_else(|| Placement::of(collection))
    }

    /// The ring position of `key` in `collection`.
    pub fn position(&self, collection: &str, key: &[u8]) -> Position {
        self.placement(collection).position(collection, key)
    }

    /// Reads what a get or merge of `key` reads first — its index slot in the store
    /// and, for a merge (`write`), its Merkle node — returning its position and
    /// something of what it read ([`Store::warm`]).
    pub fn warm_index(&self, collection: &str, key: &[u8], write: bool) -> (Position, u64) {
        let pos = self.position(collection, key);
        let tree = match self.trees.get(collection) {
            Some(t) if write => t.warm(pos),
            _ => 0,
        };
        (pos, self.store.warm(collection, pos, Warm::Index).wrapping_add(tree))
    }

    /// Reads the stored record at `pos` ([`Store::warm`]), after
    /// [`Replica::warm_index`].
    pub fn warm_record(&self, collection: &str, pos: Position) -> u64 {
        self.store.warm(collection, pos, Warm::Record)
    }

    /// The Merkle tree of `collection`, if it has ever held data here.
    pub fn tree(&self, collection: &str) -> Option<&MerkleTree> {
        self.trees.get(collection)
    }

    /// The stored entry for `key`, tombstones included.
    pub fn get(&self, collection: &str, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.store.get(collection, self.position(collection, key), key)
    }

    /// The version of the stored entry for `key`, tombstones included ([`Store::version`]).
    pub fn version(&self, collection: &str, key: &[u8]) -> Result<Option<Version>, StoreError> {
        self.store.version(collection, self.position(collection, key), key)
    }

    /// Turns the change feed on or off. While on, every entry a merge applies is
    /// recorded until [`Replica::take_changes`] takes it; turning it off drops what was
    /// recorded.
    pub fn set_change_feed(&mut self, on: bool) {
        match (on, self.changes.is_some()) {
            (true, false) => self.changes = Some(Vec::new()),
            (false, true) => self.changes = None,
            _ => {}
        }
    }

    /// Whether the change feed is on.
    pub fn change_feed(&self) -> bool {
        self.changes.is_some()
    }

    /// The changes applied since the last call, in the order they were applied (empty
    /// while the change feed is off).
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.changes.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Merges `entry` for `key`, updating the tree when the store changed.
    pub fn merge(
        &mut self,
        collection: &str,
        key: Bytes,
        entry: Entry,
    ) -> Result<Merged, StoreError> {
        let pos = self.position(collection, &key);
        let new_digest = entry_digest(&key, &entry);
        let copy = self.changes.is_some().then(|| entry.clone());
        self.writes += 1;
        let merged = self.store.merge(collection, pos, &key, entry)?;
        self.track(collection, pos, &key, &merged, new_digest);
        if let (Some(entry), true) = (copy, merged.changed()) {
            self.record(collection, key, entry);
        }
        Ok(merged)
    }

    /// Merges many entries of one collection in one store batch.
    pub fn merge_batch(
        &mut self,
        collection: &str,
        entries: Vec<(Bytes, Entry)>,
    ) -> Result<Vec<Merged>, StoreError> {
        let records: Vec<Record> = entries
            .into_iter()
            .map(|(key, entry)| Record { pos: self.position(collection, &key), key, entry })
            .collect();
        self.writes += 1;
        let outcomes = self.store.merge_batch(collection, &records)?;
        for (r, m) in records.iter().zip(&outcomes) {
            self.track(collection, r.pos, &r.key, m, entry_digest(&r.key, &r.entry));
        }
        if self.changes.is_some() {
            for (r, m) in records.into_iter().zip(&outcomes) {
                if m.changed() {
                    self.record(collection, r.key, r.entry);
                }
            }
        }
        Ok(outcomes)
    }

    /// Notes a change of `collection`: whether it is the catalogue's.
    fn note(&mut self, collection: &str) {
        if is_catalogue(collection) {
            self.catalogue_changed = true;
        }
    }

    /// Whether the catalogue's collection
    /// ([`crate::catalogue::CATALOGUE_COLLECTION`]) changed since the last call: merged,
    /// removed from, dropped or rolled back.
    pub fn take_catalogue_changed(&mut self) -> bool {
        std::mem::take(&mut self.catalogue_changed)
    }

    fn record(&mut self, collection: &str, key: Bytes, entry: Entry) {
        if let Some(changes) = self.changes.as_mut() {
            changes.push(Change { collection: collection.to_string(), key, entry });
        }
    }

    fn track(&mut self, collection: &str, pos: Position, key: &[u8], merged: &Merged, new: u64) {
        let old = match merged {
            Merged::Kept => return,
            Merged::Inserted => None,
            Merged::Replaced(old) => Some(old.digest(key)),
        };
        self.note(collection);
        // Looked up before naming the collection: a name allocated for every write
        // showed in the write path's profile.
        match self.trees.get_mut(collection) {
            Some(tree) => tree.update(pos, old, Some(new)),
            None => self.tree_mut(collection).update(pos, old, Some(new)),
        }
    }

    fn tree_mut(&mut self, collection: &str) -> &mut MerkleTree {
        let depth = self.depth;
        self.trees.entry(collection.to_string()).or_insert_with(|| MerkleTree::new(depth))
    }

    /// Removes `key` outright (no tombstone); returns what was stored.
    pub fn remove(&mut self, collection: &str, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        let pos = self.position(collection, key);
        self.writes += 1;
        self.note(collection);
        let old = self.store.remove(collection, pos, key)?;
        if let Some(e) = &old {
            self.tree_mut(collection).remove(pos, entry_digest(key, e));
        }
        Ok(old)
    }

    /// Removes every record in `interval`; returns how many.
    pub fn delete_range(
        &mut self,
        collection: &str,
        interval: Interval,
    ) -> Result<u64, StoreError> {
        self.note(collection);
        // Walk the range first so the tree learns each removed digest.
        let mut removed = Vec::new();
        for_each_record(&self.store, collection, interval, |r| {
            removed.push((r.pos, entry_digest(&r.key, &r.entry)));
        })?;
        let tree = self.tree_mut(collection);
        for (pos, digest) in removed {
            tree.remove(pos, digest);
        }
        self.writes += 1;
        self.store.delete_range(collection, interval)
    }

    /// Drops a whole collection and its tree.
    pub fn drop_collection(&mut self, collection: &str) -> Result<bool, StoreError> {
        self.note(collection);
        self.trees.remove(collection);
        self.writes += 1;
        self.store.drop_collection(collection)
    }

    /// How many records of `collection` (tombstones included) lie in `interval`. Read
    /// from the Merkle tree's per-node counts wherever a stored node lies wholly inside
    /// the interval; only the (at most four) stored-depth buckets cut by the interval's
    /// ends are counted from the store, so the cost is O(depth) plus those buckets.
    pub fn count(&self, collection: &str, interval: Interval) -> Result<u64, StoreError> {
        let Some(tree) = self.trees.get(collection) else { return Ok(0) };
        self.count_under(tree, collection, NodeRef::ROOT, &interval)
    }

    fn count_under(
        &self,
        tree: &MerkleTree,
        collection: &str,
        node: NodeRef,
        interval: &Interval,
    ) -> Result<u64, StoreError> {
        let seg = node.segment();
        let stored = tree.summary(node).unwrap_or_default();
        if stored.count == 0 || !interval.overlaps_segment(seg) {
            return Ok(0);
        }
        if interval.contains_segment(seg) {
            return Ok(stored.count);
        }
        if node.level < tree.depth() {
            let mut total = 0;
            for child in (0..FANOUT).filter_map(|i| node.child(i)) {
                total += self.count_under(tree, collection, child, interval)?;
            }
            return Ok(total);
        }
        // A bucket cut by an end of the interval: count its part from the store.
        let mut total = 0;
        for part in interval.segments().into_iter().flatten() {
            let (lo, hi) = (part.lo.max(seg.lo), part.hi.min(seg.hi));
            if lo <= hi {
                let piece = Interval::new(lo.wrapping_sub(1), hi);
                for_each_record(&self.store, collection, piece, |_| total += 1)?;
            }
        }
        Ok(total)
    }

    /// Up to `limit` records of `interval` after `after` (see [`Store::range`]).
    pub fn range(
        &self,
        collection: &str,
        interval: Interval,
        after: Option<(Position, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.store.range(collection, interval, after, limit)
    }
}

/// Calls `f` on every record of `interval`, reading the store a page at a time.
fn for_each_record<S: Store>(
    store: &S,
    collection: &str,
    interval: Interval,
    mut f: impl FnMut(&Record),
) -> Result<(), StoreError> {
    let mut cursor: Option<(Position, Bytes)> = None;
    loop {
        let page = store.range(
            collection,
            interval,
            cursor.as_ref().map(|(p, k)| (*p, k.as_ref())),
            PAGE,
        )?;
        page.iter().for_each(&mut f);
        match page.last() {
            Some(last) if page.len() == PAGE => cursor = Some((last.pos, last.key.clone())),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::Timestamp, entry::NodeId, store::MemStore};

    fn v(ts: u64) -> Entry {
        Entry::value("v", Timestamp(ts), NodeId(1))
    }

    #[test]
    fn tree_follows_every_write_and_matches_a_rebuild() {
        let mut r = Replica::with_depth(MemStore::new(), 3).unwrap();
        for i in 0..200u64 {
            r.merge("c", Bytes::from(format!("k{}", i % 70)), v(i)).unwrap();
        }
        r.merge("c", Bytes::from("k1"), v(0)).unwrap(); // older: kept, tree unchanged
        r.remove("c", b"k2").unwrap();
        r.delete_range("c", Interval::new(0, u64::MAX / 2)).unwrap();
        let incremental = r.tree("c").unwrap().clone();
        assert_eq!(incremental.root().count, r.store().stats("c").unwrap().entries);
        let rebuilt = Replica::with_depth(r.into_store(), 3).unwrap();
        assert_eq!(rebuilt.tree("c").unwrap(), &incremental);
    }

    #[test]
    fn the_change_feed_records_what_merges_applied_and_nothing_else() {
        let mut r = Replica::with_depth(MemStore::new(), 3).unwrap();
        r.merge("c", Bytes::from("early"), v(1)).unwrap();
        assert!(r.take_changes().is_empty(), "off by default");
        r.set_change_feed(true);
        r.merge("c", Bytes::from("a"), v(5)).unwrap(); // inserted
        r.merge("c", Bytes::from("a"), v(3)).unwrap(); // older: kept
        r.merge("c", Bytes::from("a"), v(5)).unwrap(); // same: kept
        let t = Entry::tombstone(Timestamp(9), NodeId(2));
        let batch = vec![(Bytes::from("a"), t.clone()), (Bytes::from("early"), v(0))];
        r.merge_batch("d", vec![(Bytes::from("x"), v(1))]).unwrap();
        r.merge_batch("c", batch).unwrap(); // a replaced; early kept
        r.remove("c", b"a").unwrap();
        r.delete_range("d", Interval::full()).unwrap();
        let changes = r.take_changes();
        let got: Vec<_> =
            changes.iter().map(|c| (c.collection.as_str(), &c.key[..], c.entry.clone())).collect();
        assert_eq!(got, vec![("c", &b"a"[..], v(5)), ("d", &b"x"[..], v(1)), ("c", &b"a"[..], t)]);
        assert!(r.take_changes().is_empty(), "taken");
        r.merge("c", Bytes::from("b"), v(1)).unwrap();
        r.set_change_feed(false);
        assert!(r.take_changes().is_empty(), "turning it off drops what was recorded");
    }

    #[test]
    fn count_agrees_with_a_scan_for_any_interval() {
        let mut r = Replica::with_depth(MemStore::new(), 3).unwrap();
        r.set_placement("o", Placement::Ordered);
        for i in 0..500u64 {
            r.merge("c", Bytes::from(format!("k{i}")), v(i)).unwrap();
            // Ordered keys crowd into one bucket: the store counts them.
            r.merge("o", Bytes::from(format!("user:{i:04}")), v(i)).unwrap();
        }
        let scan = |r: &Replica<MemStore>, c: &str, i: Interval| {
            let mut n = 0;
            for_each_record(r.store(), c, i, |_| n += 1).unwrap();
            n
        };
        let user = crate::hash::ordered_position(b"user:0250");
        let bounds = [0, 1, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX, user, user - 1];
        for &a in &bounds {
            for &b in &bounds {
                let i = Interval::new(a, b);
                for c in ["c", "o"] {
                    assert_eq!(r.count(c, i).unwrap(), scan(&r, c, i), "{c} {i}");
                }
            }
        }
        assert_eq!(r.count("c", Interval::full()).unwrap(), 500);
        assert_eq!(r.count("missing", Interval::full()).unwrap(), 0);
    }

    #[test]
    fn ordered_collections_place_by_key_prefix() {
        let mut r = Replica::new(MemStore::new()).unwrap();
        r.set_placement("o", Placement::Ordered);
        r.merge("o", Bytes::from("b"), v(1)).unwrap();
        r.merge("o", Bytes::from("a"), v(1)).unwrap();
        let keys: Vec<_> = r
            .range("o", Interval::new(u64::MAX, u64::MAX), None, 10)
            .unwrap()
            .into_iter()
            .map(|x| x.key)
            .collect();
        assert_eq!(keys, vec![Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(r.get("o", b"a").unwrap(), Some(v(1)));
    }

    #[test]
    fn the_name_says_whether_a_collection_is_ordered() {
        let r = Replica::new(MemStore::new()).unwrap();
        assert_eq!(r.placement("ordered.events"), Placement::Ordered);
        assert_eq!(r.placement("events"), Placement::Hashed);
        assert_eq!(r.placement("events.ordered"), Placement::Hashed);
        assert_eq!(r.position("ordered.events", b"ab"), u64::from_be_bytes(*b"ab\0\0\0\0\0\0"));
    }
}
