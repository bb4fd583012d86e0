//! The incremental Merkle tree over ring positions, one per collection.
//!
//! The ring is cut into a fixed 4-ary prefix tree: the node at `level` L with `prefix`
//! p covers every position whose top 2·L bits equal p; the root (level 0) covers the
//! ring, level 32 single positions. Each node summarises its entries as
//! [`Summary`] — a count and a digest, the XOR of the [`entry_digest`]s under it. XOR
//! makes every change local: inserting, replacing or removing an entry XORs the old and
//! new digests into the nodes on its path, never a rescan — the deepest at once, the
//! upper ones when next read ([`MerkleTree`]).
//!
//! Only levels `0 ..= depth` are stored (default depth 8: 65,536 buckets). A level is
//! kept as a flat array indexed by prefix once it is dense enough to pay for one (always
//! for the top levels, which are small), and as an ordered map of its non-empty nodes
//! before that, so a small collection costs little and a large one updates its path by
//! array indexing — this is on the write path of every replica (docs/benchmarks.md).
//! Below the stored depth the sync
//! protocol computes *virtual* digests on demand from the store's entries (see
//! [`crate::sync`]), so a differing bucket is narrowed down without listing it.
//!
//! An entry digest covers the key and the entry's version and expiry, not its value: a
//! write is identified by `(ts, origin)`, which a clock never issues twice, so two
//! replicas holding the same version hold the same value.

use crate::{
    entry::Entry,
    hash::{Interval, Position, Segment},
};
use serde::{Deserialize, Serialize};
use std::{cell::RefCell, collections::BTreeMap};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Children per node.
pub const FANOUT: usize = 4;
/// Position bits consumed per level.
pub const BITS_PER_LEVEL: u32 = 2;
/// The deepest level: a node there covers one position.
pub const MAX_LEVEL: u8 = 32;
/// Stored depth used when none is configured: 4^8 = 65,536 buckets.
pub const DEFAULT_DEPTH: u8 = 8;

/// The digest of one stored entry for `key`: xxh3-64 of the key followed by the
/// timestamp, origin, tombstone flag and expiry (little-endian, fixed width).
pub fn entry_digest(key: &[u8], entry: &Entry) -> u64 {
    version_digest(key, entry.ts, entry.origin, entry.is_tombstone(), entry.expires)
}

/// [`entry_digest`] by parts: the digest of an entry with this timestamp, origin,
/// tombstone flag and expiry (its value is not part of it).
pub fn version_digest(
    key: &[u8],
    ts: crate::clock::Timestamp,
    origin: crate::entry::NodeId,
    tombstone: bool,
    expires: Option<crate::Millis>,
) -> u64 {
    const META: usize = 8 + 8 + 1 + 8;
    let fill = |buf: &mut [u8]| {
        let (k, meta) = buf.split_at_mut(key.len());
        k.copy_from_slice(key);
        meta[..8].copy_from_slice(&ts.0.to_le_bytes());
        meta[8..16].copy_from_slice(&origin.0.to_le_bytes());
        meta[16] = u8::from(tombstone);
        meta[17..].copy_from_slice(&expires.unwrap_or(u64::MAX).to_le_bytes());
    };
    let len = key.len() + META;
    // Hot path: every write hashes its key; keep short keys off the heap.
    let mut small = [0u8; 256];
    if len <= small.len() {
        fill(&mut small[..len]);
        xxh3_64(&small[..len])
    } else {
        let mut buf = vec![0u8; len];
        fill(&mut buf);
        xxh3_64(&buf)
    }
}

/// An entry digest re-keyed by a per-session salt and cut to 32 bits, for the virtual
/// levels below the stored depth: a collision there lasts one session, not forever.
pub fn salted_digest(digest: u64, salt: u64) -> u64 {
    xxh3_64_with_seed(&digest.to_le_bytes(), salt) & 0xFFFF_FFFF
}

/// A node's count of entries and XOR of their digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub struct Summary {
    /// XOR of the entry digests below the node (0 when empty).
    pub digest: u64,
    /// Number of entries below the node.
    pub count: u64,
}

impl Summary {
    /// Whether no entry lies below.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds one entry digest.
    pub fn add(&mut self, digest: u64) {
        self.digest ^= digest;
        self.count += 1;
    }

    /// Combines two disjoint summaries.
    pub fn combine(self, other: Summary) -> Summary {
        Summary { digest: self.digest ^ other.digest, count: self.count + other.count }
    }
}

/// A node of the 4-ary prefix tree over positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeRef {
    /// Depth from the root (0) to single positions (32).
    pub level: u8,
    /// The top `2 * level` bits shared by the node's positions.
    pub prefix: u64,
}

impl NodeRef {
    /// The root, covering the whole ring.
    pub const ROOT: NodeRef = NodeRef { level: 0, prefix: 0 };

    /// The node at `level` containing `pos` (levels above [`MAX_LEVEL`] are clamped).
    pub fn containing(pos: Position, level: u8) -> NodeRef {
        let level = level.min(MAX_LEVEL);
        let shift = 64 - BITS_PER_LEVEL * u32::from(level);
        NodeRef { level, prefix: pos.checked_shr(shift).unwrap_or(0) }
    }

    /// Whether the node is well formed (level ≤ 32, prefix within 2·level bits).
    pub fn is_valid(&self) -> bool {
        self.level <= MAX_LEVEL
            && (self.level == MAX_LEVEL
                || self.prefix >> (BITS_PER_LEVEL * u32::from(self.level)) == 0)
    }

    /// The inclusive run of positions the node covers.
    pub fn segment(&self) -> Segment {
        let shift = 64 - BITS_PER_LEVEL * u32::from(self.level.min(MAX_LEVEL));
        let lo = self.prefix.checked_shl(shift).unwrap_or(0);
        let span = u64::MAX.checked_shr(64 - shift).unwrap_or(0);
        let span = if shift == 0 { 0 } else { span };
        Segment { lo, hi: lo | span }
    }

    /// The `i`-th child (`i < 4`); `None` at the deepest level.
    pub fn child(&self, i: usize) -> Option<NodeRef> {
        (self.level < MAX_LEVEL && i < FANOUT)
            .then(|| NodeRef { level: self.level + 1, prefix: (self.prefix << 2) | i as u64 })
    }

    /// Which child of this node holds `pos` (which must lie in the node); 0 at the
    /// deepest level, which has no children.
    pub fn child_index(&self, pos: Position) -> usize {
        if self.level >= MAX_LEVEL {
            return 0;
        }
        let shift = 64 - BITS_PER_LEVEL * (u32::from(self.level) + 1);
        ((pos >> shift) & 3) as usize
    }
}

/// Levels with at most this many nodes are always flat arrays (4^5 nodes, 16 KiB).
const ALWAYS_DENSE_NODES: usize = 1 << 10;
/// A sparse level turns into a flat array once one node in this many is non-empty.
const DENSE_AT_ONE_IN: usize = 8;

/// One stored level of the tree.
#[derive(Debug, Clone)]
enum Level {
    /// The non-empty nodes only, by prefix.
    Sparse(BTreeMap<u64, Summary>),
    /// Every node, indexed by prefix, with the number of non-empty ones.
    Dense { nodes: Vec<Summary>, occupied: usize },
}

impl Level {
    fn new(level: u8) -> Level {
        let size = 1usize << (BITS_PER_LEVEL * u32::from(level));
        if size <= ALWAYS_DENSE_NODES {
            Level::Dense { nodes: vec![Summary::default(); size], occupied: 0 }
        } else {
            Level::Sparse(BTreeMap::new())
        }
    }

    fn get(&self, prefix: u64) -> Summary {
        match self {
            Level::Sparse(map) => map.get(&prefix).copied().unwrap_or_default(),
            Level::Dense { nodes, .. } => {
                usize::try_from(prefix).ok().and_then(|i| nodes.get(i)).copied().unwrap_or_default()
            }
        }
    }

    fn occupied(&self) -> usize {
        match self {
            Level::Sparse(map) => map.len(),
            Level::Dense { occupied, .. } => *occupied,
        }
    }

    /// XORs `delta` into the node's digest and adds `count_delta` to its count.
    fn apply(&mut self, level: u8, prefix: u64, delta: u64, count_delta: i64) {
        match self {
            Level::Sparse(map) => {
                let slot = map.entry(prefix).or_default();
                slot.digest ^= delta;
                slot.count = slot.count.wrapping_add_signed(count_delta);
                if slot.count == 0 {
                    map.remove(&prefix);
                }
                let size = 1usize << (BITS_PER_LEVEL * u32::from(level));
                if map.len() >= size / DENSE_AT_ONE_IN {
                    let mut nodes = vec![Summary::default(); size];
                    for (p, s) in std::mem::take(map) {
                        nodes[p as usize] = s;
                    }
                    let occupied = nodes.iter().filter(|s| !s.is_empty()).count();
                    *self = Level::Dense { nodes, occupied };
                }
            }
            Level::Dense { nodes, occupied } => {
                // A prefix always fits its level (NodeRef::containing), so this never
                // misses; it is a lookup, not an index, to keep panics out of the core.
                let Some(slot) = nodes.get_mut(prefix as usize) else { return };
                let was_empty = slot.is_empty();
                slot.digest ^= delta;
                slot.count = slot.count.wrapping_add_signed(count_delta);
                match (was_empty, slot.is_empty()) {
                    (true, false) => *occupied += 1,
                    (false, true) => *occupied -= 1,
                    _ => {}
                }
            }
        }
    }

    /// Sets the node's summary.
    fn set(&mut self, level: u8, prefix: u64, summary: Summary) {
        let now = self.get(prefix);
        if now != summary {
            let count_delta = summary.count.wrapping_sub(now.count) as i64;
            self.apply(level, prefix, now.digest ^ summary.digest, count_delta);
        }
    }

    /// The non-empty nodes, by prefix.
    fn iter(&self) -> Box<dyn Iterator<Item = (u64, Summary)> + '_> {
        match self {
            Level::Sparse(map) => Box::new(map.iter().map(|(p, s)| (*p, *s))),
            Level::Dense { nodes, .. } => Box::new(
                nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !s.is_empty())
                    .map(|(p, s)| (p as u64, *s)),
            ),
        }
    }
}

/// The stored Merkle tree of one collection: levels `0 ..= depth`.
///
/// A change updates the deep levels at once ([`MerkleTree::update`]) and only marks
/// the node of level `min(depth - 1, `[`LAZY_TO`]`)` above it: the levels from there up
/// to the root are brought up to date when one of them is read (by anti-entropy, once
/// a round), from the marked nodes' children, each node once however many writes fell
/// under it. Every replica's every write paid for all `depth + 1` levels before — the
/// deepest two a cache miss each at 100,000 keys, a twelfth of a `--memory` write's
/// time (docs/benchmarks.md).
///
/// Two trees are equal when they have the same depth and the same non-empty nodes,
/// however their levels are laid out.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    depth: u8,
    /// The deepest level brought up to date when read: `min(depth - 1, LAZY_TO)`.
    lazy_to: u8,
    /// Levels `lazy_to + 1 ..= depth`, updated on every change.
    eager: Vec<Level>,
    /// Levels `0 ..= lazy_to` and what changed under them.
    lazy: RefCell<Lazy>,
}

/// The deepest level a tree keeps lazily: its marks take one bit a node (4^9 bits,
/// 32 KiB, at most); deeper trees update the levels below it on every change.
pub const LAZY_TO: u8 = 9;

/// The levels of a tree brought up to date when read.
#[derive(Debug, Clone)]
struct Lazy {
    /// Levels `0 ..= lazy_to`.
    levels: Vec<Level>,
    /// One bit per node of level `lazy_to`: set when something under it changed since
    /// the levels were last brought up to date.
    marks: Vec<u64>,
    /// Whether any mark is set.
    stale: bool,
}

impl PartialEq for MerkleTree {
    fn eq(&self, other: &Self) -> bool {
        self.depth == other.depth
            && self.with_levels(|mine| {
                other.with_levels(|theirs| {
                    mine.iter().zip(theirs).all(|(a, b)| a.iter().eq(b.iter()))
                })
            })
    }
}

impl Eq for MerkleTree {}

impl Default for MerkleTree {
    fn default() -> Self {
        MerkleTree::new(DEFAULT_DEPTH)
    }
}

impl MerkleTree {
    /// An empty tree storing levels `0 ..= depth` (depth clamped to 1 ..= 16).
    pub fn new(depth: u8) -> Self {
        let depth = depth.clamp(1, 16);
        let lazy_to = (depth - 1).min(LAZY_TO);
        let nodes = 1usize << (BITS_PER_LEVEL * u32::from(lazy_to));
        MerkleTree {
            depth,
            lazy_to,
            eager: (lazy_to + 1..=depth).map(Level::new).collect(),
            lazy: RefCell::new(Lazy {
                levels: (0..=lazy_to).map(Level::new).collect(),
                marks: vec![0; nodes.div_ceil(64)],
                stale: false,
            }),
        }
    }

    /// The deepest stored level.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// Count and digest of everything in the tree.
    pub fn root(&self) -> Summary {
        self.summary(NodeRef::ROOT).unwrap_or_default()
    }

    /// The stored summary of `node`; `None` when the node is below the stored depth.
    pub fn summary(&self, node: NodeRef) -> Option<Summary> {
        if node.level > self.lazy_to {
            let level = self.eager.get(usize::from(node.level - self.lazy_to - 1))?;
            return Some(level.get(node.prefix));
        }
        self.settle();
        let lazy = self.lazy.borrow();
        Some(lazy.levels.get(usize::from(node.level))?.get(node.prefix))
    }

    /// Reads the deepest stored node holding `pos`, which a change at `pos` updates
    /// (see [`crate::store::Store::warm`]).
    pub fn warm(&self, pos: Position) -> u64 {
        self.eager.last().map_or(0, |l| l.get(NodeRef::containing(pos, self.depth).prefix).count)
    }

    /// Records that the entry digest at `pos` changed from `old` to `new` (`None` = no
    /// entry): O(depth - lazy_to), and a mark.
    pub fn update(&mut self, pos: Position, old: Option<u64>, new: Option<u64>) {
        let delta = old.unwrap_or(0) ^ new.unwrap_or(0);
        let count_delta: i64 = i64::from(new.is_some()) - i64::from(old.is_some());
        if delta == 0 && count_delta == 0 {
            return;
        }
        for (level, nodes) in (self.lazy_to + 1..).zip(self.eager.iter_mut()) {
            let prefix = NodeRef::containing(pos, level).prefix;
            nodes.apply(level, prefix, delta, count_delta);
        }
        let lazy = self.lazy.get_mut();
        let marked = NodeRef::containing(pos, self.lazy_to).prefix;
        if let Some(word) = usize::try_from(marked / 64).ok().and_then(|w| lazy.marks.get_mut(w)) {
            *word |= 1 << (marked % 64);
            lazy.stale = true;
        }
    }

    /// Brings the lazy levels up to date: each marked node of level `lazy_to` from its
    /// children, then each of their parents, up to the root.
    fn settle(&self) {
        let mut lazy = self.lazy.borrow_mut();
        if !lazy.stale {
            return;
        }
        let Lazy { levels, marks, stale } = &mut *lazy;
        *stale = false;
        let mut changed = Vec::new();
        for (w, word) in (0u64..).zip(marks.iter_mut()) {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                changed.push(w * 64 + u64::from(bits.trailing_zeros()));
                bits &= bits - 1;
            }
        }
        for level in (0..levels.len()).rev() {
            let (above, below) = levels.split_at_mut(level + 1);
            let Some(children) = below.first().or_else(|| self.eager.first()) else { return };
            let Some(nodes) = above.last_mut() else { return };
            for &prefix in &changed {
                let sum = (0..FANOUT as u64).fold(Summary::default(), |acc, i| {
                    let child = children.get(prefix * FANOUT as u64 + i);
                    Summary {
                        digest: acc.digest ^ child.digest,
                        count: acc.count.wrapping_add(child.count),
                    }
                });
                nodes.set(level as u8, prefix, sum);
            }
            // Their parents, in order, once each.
            for prefix in &mut changed {
                *prefix >>= BITS_PER_LEVEL;
            }
            changed.dedup();
        }
    }

    /// Runs `f` on every stored level, `0 ..= depth`, brought up to date.
    fn with_levels<R>(&self, f: impl FnOnce(&[&Level]) -> R) -> R {
        self.settle();
        let lazy = self.lazy.borrow();
        let all: Vec<&Level> = lazy.levels.iter().chain(&self.eager).collect();
        f(&all)
    }

    /// Adds an entry digest at `pos`.
    pub fn insert(&mut self, pos: Position, digest: u64) {
        self.update(pos, None, Some(digest));
    }

    /// Removes an entry digest at `pos`.
    pub fn remove(&mut self, pos: Position, digest: u64) {
        self.update(pos, Some(digest), None);
    }

    /// Number of non-empty nodes over the stored levels.
    pub fn stored_nodes(&self) -> usize {
        self.with_levels(|levels| levels.iter().map(|l| l.occupied()).sum())
    }

    /// The non-empty nodes of stored level `level`, by prefix (none below the depth).
    pub fn level_nodes(&self, level: u8) -> impl Iterator<Item = (NodeRef, Summary)> {
        let nodes: Vec<(NodeRef, Summary)> = self.with_levels(|levels| {
            levels
                .get(usize::from(level))
                .into_iter()
                .flat_map(|l| l.iter().map(|(prefix, s)| (NodeRef { level, prefix }, s)))
                .collect()
        });
        nodes.into_iter()
    }

    /// Whether the stored node `node` lies entirely inside `interval`.
    pub fn node_inside(node: NodeRef, interval: &Interval) -> bool {
        interval.contains_segment(node.segment())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::Timestamp, entry::NodeId};
    use proptest::prelude::*;

    fn e(ts: u64) -> Entry {
        Entry::value("v", Timestamp(ts), NodeId(1))
    }

    #[test]
    fn node_geometry() {
        assert_eq!(NodeRef::ROOT.segment(), Segment { lo: 0, hi: u64::MAX });
        let c = NodeRef::ROOT.child(3).unwrap();
        assert_eq!(c.segment(), Segment { lo: 3 << 62, hi: u64::MAX });
        let leaf = NodeRef::containing(12345, MAX_LEVEL);
        assert_eq!(leaf.segment(), Segment { lo: 12345, hi: 12345 });
        assert_eq!(leaf.child(0), None);
        assert_eq!(leaf.child_index(12345), 0);
        assert_eq!(NodeRef::containing(u64::MAX, 1), NodeRef { level: 1, prefix: 3 });
        for pos in [0, 1, u64::MAX, 0x1234_5678_9abc_def0] {
            for level in 0..MAX_LEVEL {
                let n = NodeRef::containing(pos, level);
                assert!(n.is_valid() && n.segment().contains(pos));
                let i = n.child_index(pos);
                assert_eq!(n.child(i).unwrap(), NodeRef::containing(pos, level + 1));
            }
        }
        assert!(!NodeRef { level: 1, prefix: 4 }.is_valid());
        assert!(!NodeRef { level: 33, prefix: 0 }.is_valid());
    }

    #[test]
    fn digest_covers_version_not_value() {
        let a = Entry::value("a", Timestamp(1), NodeId(1));
        let b = Entry::value("b", Timestamp(1), NodeId(1));
        assert_eq!(entry_digest(b"k", &a), entry_digest(b"k", &b));
        assert_ne!(entry_digest(b"k", &a), entry_digest(b"k", &e(2)));
        assert_ne!(entry_digest(b"k", &a), entry_digest(b"j", &a));
        let t = Entry::tombstone(Timestamp(1), NodeId(1));
        assert_ne!(entry_digest(b"k", &a), entry_digest(b"k", &t));
        assert_ne!(salted_digest(7, 1), salted_digest(7, 2));
        assert!(salted_digest(7, 1) <= u64::from(u32::MAX));
    }

    #[test]
    fn digest_is_xxh3_of_key_and_version_for_short_and_long_keys() {
        let entry = Entry::tombstone(Timestamp(7), NodeId(9)).with_expiry(Some(11));
        for len in [1usize, 231, 232, 5000] {
            let key = vec![b'k'; len];
            let mut manual = key.clone();
            manual.extend_from_slice(&7u64.to_le_bytes());
            manual.extend_from_slice(&9u64.to_le_bytes());
            manual.push(1);
            manual.extend_from_slice(&11u64.to_le_bytes());
            assert_eq!(entry_digest(&key, &entry), xxh3_64(&manual), "key of {len} bytes");
        }
    }

    #[test]
    fn insert_then_remove_returns_to_empty() {
        let mut t = MerkleTree::new(4);
        t.insert(10, 111);
        t.insert(u64::MAX, 222);
        assert_eq!(t.root(), Summary { digest: 111 ^ 222, count: 2 });
        t.update(10, Some(111), Some(333));
        assert_eq!(t.root(), Summary { digest: 333 ^ 222, count: 2 });
        t.remove(10, 333);
        t.remove(u64::MAX, 222);
        assert_eq!(t.root(), Summary::default());
        assert_eq!(t.stored_nodes(), 0);
    }

    #[test]
    fn sparse_levels_turn_dense_and_keep_their_summaries() {
        // Depth 8: levels 6..=8 start sparse and turn into arrays as they fill.
        let mut t = MerkleTree::new(8);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut entries = Vec::new();
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            entries.push((x, i + 1));
            t.insert(x, i + 1);
        }
        assert!(t.with_levels(|l| l.iter().all(|l| matches!(l, Level::Dense { .. }))));
        // A tree that saw only the last few entries keeps its deep levels sparse, yet
        // equals the big tree once the big one is trimmed to the same entries.
        let mut small = MerkleTree::new(8);
        for &(p, d) in &entries[19_990..] {
            small.insert(p, d);
        }
        assert!(small.with_levels(|l| matches!(l[8], Level::Sparse(_))));
        for &(p, d) in &entries[..19_990] {
            t.remove(p, d);
        }
        assert_eq!(t, small);
        assert_eq!(t.stored_nodes(), small.stored_nodes());
        for level in 0..=8u8 {
            for (node, s) in t.level_nodes(level) {
                assert_eq!(small.summary(node), Some(s));
                let want = entries[19_990..]
                    .iter()
                    .filter(|(p, _)| node.segment().contains(*p))
                    .fold(Summary::default(), |mut acc, (_, d)| {
                        acc.add(*d);
                        acc
                    });
                assert_eq!(s, want);
            }
        }
        for &(p, d) in &entries[19_990..] {
            t.remove(p, d);
        }
        assert_eq!(t.root(), Summary::default());
        assert_eq!(t.stored_nodes(), 0);
    }

    proptest! {
        /// Reads between changes (which bring the upper levels up to date) see every
        /// change before them, at any depth: lazy up to the root, and with levels below
        /// the lazy ones kept at once.
        #[test]
        fn reads_between_changes_see_every_change(
            depth in 1u8..=12,
            ops in prop::collection::vec((any::<u64>(), 0u8..4, 1u64..5, any::<bool>()), 1..120),
        ) {
            let mut t = MerkleTree::new(depth);
            let mut contents: BTreeMap<u64, u64> = BTreeMap::new();
            for (pos, op, d, read) in ops {
                let pos = pos % 16 * (u64::MAX / 15);
                let old = contents.get(&pos).copied();
                let new = (op != 0).then_some(d);
                match new {
                    Some(d) => contents.insert(pos, d),
                    None => contents.remove(&pos),
                };
                t.update(pos, old, new);
                if read {
                    let node = NodeRef::containing(pos, d as u8 % (depth + 1));
                    let want = contents.iter()
                        .filter(|(p, _)| node.segment().contains(**p))
                        .fold(Summary::default(), |mut acc, (_, d)| { acc.add(*d); acc });
                    prop_assert_eq!(t.summary(node), Some(want));
                    prop_assert_eq!(t.root().count, contents.len() as u64);
                }
            }
            let mut fresh = MerkleTree::new(depth);
            for (p, d) in &contents {
                fresh.insert(*p, *d);
            }
            prop_assert_eq!(&t, &fresh);
            prop_assert_eq!(t.stored_nodes(), fresh.stored_nodes());
        }

        /// Incremental updates give the same tree as building from the final contents,
        /// in any order.
        #[test]
        fn incremental_equals_rebuild(ops in prop::collection::vec((any::<u64>(), 0u8..4, 1u64..5), 1..200)) {
            let mut t = MerkleTree::new(5);
            let mut contents: BTreeMap<u64, u64> = BTreeMap::new();
            for (pos, op, d) in ops {
                let pos = pos % 64 * (u64::MAX / 63);
                let old = contents.get(&pos).copied();
                if op == 0 {
                    contents.remove(&pos);
                    t.update(pos, old, None);
                } else {
                    contents.insert(pos, d);
                    t.update(pos, old, Some(d));
                }
            }
            let mut fresh = MerkleTree::new(5);
            for (p, d) in contents.iter().rev() {
                fresh.insert(*p, *d);
            }
            prop_assert_eq!(&t, &fresh);
            for level in 0..=5u8 {
                for (node, s) in fresh.level_nodes(level) {
                    let want = contents.iter()
                        .filter(|(p, _)| node.segment().contains(**p))
                        .fold(Summary::default(), |mut acc, (_, d)| { acc.add(*d); acc });
                    prop_assert_eq!(s, want);
                }
            }
        }
    }
}
