//! [`Index`]: a collection's map from ring position to record, in position order.
//!
//! Positions in a hashed collection are uniform 64-bit hashes, so scaled to a table's
//! size they make a hash table that is also sorted: slot `i` of a table of `homes`
//! slots is the *home* of the positions `p` with `p * homes / 2^64 = i`, entries sit
//! at or after their home in position order, and runs are contiguous (linear probing that keeps the order: an
//! insertion shifts the rest of its run one slot right, a removal shifts it back). A
//! lookup reads the home slot and usually nothing more — one cache miss, where a
//! B-tree of 100,000 positions takes three or four (its levels, then the leaf's values
//! in a line of their own: half of a `--memory` write's store time,
//! docs/benchmarks.md). A walk in order reads the slots in order.
//!
//! No entry may sit more than [`MAX_RUN`] slots after its home, so no lookup scans
//! more. Positions are not secret (xxh3 of the key, unkeyed), so a client could pick
//! keys whose positions share their top bits; and in an `ordered.*` collection
//! positions are key prefixes, not hashes at all. When an insertion would break the
//! bound, the table doubles if that spreads it out, and otherwise the index becomes a
//! `BTreeMap` for good: O(log n) whatever the positions, as before the table existed.
//! Memory stays within a constant of the entries: the table grows by an eighth at 15/16
//! full or when a run would break the bound (1.12M slots of 16 bytes for 1M uniform
//! positions, 18 bytes a key; doubling at 3/4 full left tables half empty, 50 bytes a
//! key), never below 1/8 full, and shrinks below 1/16. Runs are sorted, so a lookup
//! stops at the first greater position, hit or miss, even in a nearly full table.
//!
//! Growing a table copies it, on the thread that owns the data: a table of 1.5M
//! entries took 64 ms to double. So an index of more than [`SPLIT_AT`] entries is cut
//! into 256 segments by the positions' top 8 bits, each a table (or tree) of its own
//! that grows alone — a 256th of the copy (0.3 ms at most while 3M entries went in).

use std::collections::BTreeMap;

/// Most slots an entry may sit after its home slot (and so most slots a lookup reads).
pub const MAX_RUN: usize = 64;
/// The smallest table (home slots), allocated on the first insertion.
const MIN_HOMES: usize = 16;
/// A table grows when an insertion would fill more than this share of its home
/// slots (in sixteenths)...
const FULL_SIXTEENTHS: usize = 15;
/// ...to this many times as many (in eighths), and a split index's segments start
/// out this much larger than what they hold.
const GROW_EIGHTHS: usize = 9;

/// A large index is cut into `2^SEGMENT_BITS` segments by the positions' top bits, each
/// a table (or tree) of its own: growing one copies a 256th of the index, not all of it
/// (a whole table of 1.5M entries took 64 ms to double, on the node thread).
pub const SEGMENT_BITS: u32 = 8;
/// Entries at which a one-table index is cut into segments (a small one stays whole: 256
/// segments cost 10 KiB before they hold anything).
#[cfg(not(test))]
const SPLIT_AT: usize = 8192;
/// Small in tests, so that the model tests' few hundred steps cross it.
#[cfg(test)]
const SPLIT_AT: usize = 64;

/// Positions to values, in position order (see the module docs).
#[derive(Debug, Clone)]
pub struct Index<V> {
    /// None while empty, one until [`SPLIT_AT`] entries, then `2^SEGMENT_BITS` by the
    /// positions' top bits.
    segments: Vec<Segment<V>>,
    len: usize,
}

impl<V> Default for Index<V> {
    fn default() -> Self {
        Index { segments: Vec::new(), len: 0 }
    }
}

/// One segment: a table while its positions spread, a tree for good once they do not.
#[derive(Debug, Clone)]
enum Segment<V> {
    Table(Table<V>),
    Tree(BTreeMap<u64, V>),
}

impl<V> Segment<V> {
    /// An empty table whose positions share their top `shift` bits.
    fn empty(shift: u32) -> Self {
        Segment::Table(Table::empty(shift))
    }
}

/// The sorted hash table: `homes` home slots and [`MAX_RUN`] more for runs that
/// start near the end.
#[derive(Debug, Clone)]
struct Table<V> {
    /// Top bits every position of the table shares (its segment's), skipped for homes.
    shift: u32,
    /// Home slots: any number (a home is the position scaled to it, which keeps the
    /// order), so a table grows by a quarter rather than doubling.
    homes: usize,
    slots: Vec<Option<(u64, V)>>,
    len: usize,
}

/// Why an insertion could not keep the table's bound.
struct Overflow;

impl<V> Table<V> {
    fn empty(shift: u32) -> Self {
        Table { shift, homes: 0, slots: Vec::new(), len: 0 }
    }

    fn with_homes(shift: u32, homes: usize) -> Self {
        let mut slots = Vec::new();
        slots.resize_with(homes + MAX_RUN, || None);
        Table { shift, homes, slots, len: 0 }
    }

    /// The home slot of `pos`: the position, less the `shift` top bits its segment's
    /// positions share, scaled to the number of homes (a multiply, which keeps the
    /// order).
    fn home(&self, pos: u64) -> usize {
        ((u128::from(pos << self.shift) * self.homes as u128) >> 64) as usize
    }

    /// The slot holding `pos`, or where it would go: the first slot from its home that
    /// is empty or holds a greater position.
    fn seek(&self, pos: u64) -> (usize, bool) {
        let mut i = self.home(pos);
        while let Some(Some((p, _))) = self.slots.get(i) {
            if *p >= pos {
                return (i, *p == pos);
            }
            i += 1;
        }
        (i, false)
    }

    fn get(&self, pos: u64) -> Option<&V> {
        match self.seek(pos) {
            (i, true) => self.slots[i].as_ref().map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_mut(&mut self, pos: u64) -> Option<&mut V> {
        match self.seek(pos) {
            (i, true) => self.slots[i].as_mut().map(|(_, v)| v),
            _ => None,
        }
    }

    /// Inserts `pos` (not present) at slot `at` from [`Table::seek`], shifting the rest
    /// of its run right; `Overflow` (and nothing changed) when an entry would end up
    /// more than [`MAX_RUN`] slots after its home, or past the end.
    fn insert_at(&mut self, at: usize, pos: u64, value: V) -> Result<(), (Overflow, V)> {
        if self.slots.is_empty() || at - self.home(pos) > MAX_RUN {
            return Err((Overflow, value));
        }
        // The run after `at` moves one slot right: each entry's distance from home grows.
        let mut end = at;
        loop {
            match self.slots.get(end) {
                None => return Err((Overflow, value)),
                Some(None) => break,
                Some(Some((p, _))) => {
                    if end + 1 - self.home(*p) > MAX_RUN {
                        return Err((Overflow, value));
                    }
                    end += 1;
                }
            }
        }
        self.slots[at..=end].rotate_right(1);
        self.slots[at] = Some((pos, value));
        self.len += 1;
        Ok(())
    }

    fn remove(&mut self, pos: u64) -> Option<V> {
        let (at, true) = self.seek(pos) else { return None };
        let (_, value) = self.slots[at].take()?;
        // Entries after it that are not at home move back one slot (a run stays
        // contiguous from each entry's home).
        let mut hole = at;
        while let Some(Some((p, _))) = self.slots.get(hole + 1) {
            if self.home(*p) > hole {
                break;
            }
            self.slots.swap(hole, hole + 1);
            hole += 1;
        }
        self.len -= 1;
        Some(value)
    }

    /// The entries in position order.
    fn drain_sorted(&mut self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.len = 0;
        self.slots.iter_mut().filter_map(Option::take)
    }

    /// A table of `homes` home slots holding `entries` (in position order), or
    /// `Overflow` when they would not keep the bound in it.
    fn rebuild(shift: u32, homes: usize, entries: Vec<(u64, V)>) -> Result<Self, Vec<(u64, V)>> {
        let mut table = Table::with_homes(shift, homes);
        let mut next = 0;
        for (pos, _) in &entries {
            let at = next.max(table.home(*pos));
            if at - table.home(*pos) > MAX_RUN || at >= table.slots.len() {
                return Err(entries);
            }
            next = at + 1;
        }
        let mut next = 0;
        for (pos, value) in entries {
            let at = next.max(table.home(pos));
            table.slots[at] = Some((pos, value));
            next = at + 1;
            table.len += 1;
        }
        Ok(table)
    }
}

impl<V> Index<V> {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many positions it holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether a segment has given up its table for a `BTreeMap` (see the module docs).
    #[cfg(test)]
    pub fn is_tree(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Tree(_)))
    }

    /// The segment holding `pos`.
    fn segment(&self, pos: u64) -> usize {
        if self.segments.len() > 1 {
            (pos >> (64 - SEGMENT_BITS)) as usize
        } else {
            0
        }
    }

    /// The value at `pos`.
    pub fn get(&self, pos: u64) -> Option<&V> {
        self.segments.get(self.segment(pos))?.get(pos)
    }

    /// The value at `pos`, to change.
    pub fn get_mut(&mut self, pos: u64) -> Option<&mut V> {
        let at = self.segment(pos);
        self.segments.get_mut(at)?.get_mut(pos)
    }

    /// Sets the value at `pos`, returning the one it replaced.
    pub fn insert(&mut self, pos: u64, value: V) -> Option<V> {
        if self.segments.is_empty() {
            self.segments.push(Segment::empty(0));
        }
        let at = self.segment(pos);
        let old = self.segments.get_mut(at)?.insert(pos, value);
        if old.is_none() {
            self.len += 1;
            if self.len >= SPLIT_AT && self.segments.len() == 1 {
                self.split();
            }
        }
        old
    }

    /// Cuts a one-table index into segments (a tree stays whole: its positions do not
    /// spread).
    fn split(&mut self) {
        let Some(Segment::Table(whole)) = self.segments.first_mut() else { return };
        let mut parts: Vec<Vec<(u64, V)>> = Vec::new();
        parts.resize_with(1 << SEGMENT_BITS, Vec::new);
        for (pos, value) in whole.drain_sorted() {
            parts[(pos >> (64 - SEGMENT_BITS)) as usize].push((pos, value));
        }
        self.segments = parts
            .into_iter()
            .map(|entries| {
                // Sized for what it holds and a quarter more, or a tree if even that
                // cannot hold them within the bound.
                let homes = (entries.len() * GROW_EIGHTHS / 8).max(MIN_HOMES);
                match Table::rebuild(SEGMENT_BITS, homes, entries) {
                    Ok(table) => Segment::Table(table),
                    Err(entries) => Segment::Tree(entries.into_iter().collect()),
                }
            })
            .collect();
    }

    /// Removes the value at `pos`.
    pub fn remove(&mut self, pos: u64) -> Option<V> {
        let at = self.segment(pos);
        let old = self.segments.get_mut(at)?.remove(pos);
        if old.is_some() {
            self.len -= 1;
            if self.len == 0 {
                self.segments = Vec::new();
            }
        }
        old
    }

    /// Calls `visit` on up to `limit` entries from position `from` on, in position order,
    /// with their values to change; returns the position to go on from, or None when
    /// it reached the end.
    pub fn visit_mut(
        &mut self,
        from: u64,
        limit: usize,
        mut visit: impl FnMut(u64, &mut V),
    ) -> Option<u64> {
        let split = self.segments.len() > 1;
        let mut from = from;
        let mut left = limit;
        let first = self.segment(from);
        for i in first..self.segments.len() {
            if split && i > first {
                from = (i as u64) << (64 - SEGMENT_BITS);
            }
            let last = self.segments[i].visit_mut(from, &mut left, &mut visit);
            if left == 0 {
                return last?.checked_add(1);
            }
        }
        None
    }

    /// The entries with positions in `lo..=hi`, in position order.
    pub fn range(&self, lo: u64, hi: u64) -> impl Iterator<Item = (u64, &V)> + '_ {
        let (first, last) = (self.segment(lo), self.segment(hi));
        let segments = if lo <= hi { self.segments.get(first..=last) } else { None };
        let split = self.segments.len() > 1;
        (first..).zip(segments.into_iter().flatten()).flat_map(move |(i, s)| {
            // From the start of each later segment (its home slots skip the top bits).
            let start = if split && i > first { (i as u64) << (64 - SEGMENT_BITS) } else { lo };
            s.range(start, hi)
        })
    }
}

impl<V> Segment<V> {
    /// The value at `pos`.
    fn get(&self, pos: u64) -> Option<&V> {
        match self {
            Segment::Table(t) => t.get(pos),
            Segment::Tree(m) => m.get(&pos),
        }
    }

    /// The value at `pos`, to change.
    fn get_mut(&mut self, pos: u64) -> Option<&mut V> {
        match self {
            Segment::Table(t) => t.get_mut(pos),
            Segment::Tree(m) => m.get_mut(&pos),
        }
    }

    /// Sets the value at `pos`, returning the one it replaced.
    fn insert(&mut self, pos: u64, value: V) -> Option<V> {
        let t = match self {
            Segment::Tree(m) => return m.insert(pos, value),
            Segment::Table(t) => t,
        };
        let at = match t.seek(pos) {
            (at, true) => {
                return t.slots[at].as_mut().map(|(_, v)| std::mem::replace(v, value));
            }
            (at, false) => at,
        };
        // Full enough to grow: grow first (the insertion then finds room).
        let full = t.slots.is_empty() || (t.len + 1) * 16 > t.homes * FULL_SIXTEENTHS;
        let value = if full {
            value
        } else {
            match t.insert_at(at, pos, value) {
                Ok(()) => return None,
                Err((Overflow, value)) => value,
            }
        };
        self.restructure();
        self.insert(pos, value)
    }

    /// After an insertion could not keep the bound: a table a quarter larger when the
    /// entries are spread enough to use it, else a tree.
    fn restructure(&mut self) {
        let Segment::Table(t) = self else { return };
        let homes = if t.slots.is_empty() {
            MIN_HOMES
        } else {
            (t.homes * GROW_EIGHTHS / 8).max(t.homes + 1)
        };
        // Never below 1/8 full once grown: a table sparser than that is not what the
        // positions need, and its memory would be out of proportion to the entries.
        if t.len * 8 >= t.homes || t.slots.is_empty() {
            let entries: Vec<(u64, V)> = t.drain_sorted().collect();
            match Table::rebuild(t.shift, homes, entries) {
                Ok(table) => *t = table,
                Err(entries) => *self = Segment::Tree(entries.into_iter().collect()),
            }
        } else {
            let entries: BTreeMap<u64, V> = t.drain_sorted().collect();
            *self = Segment::Tree(entries);
        }
    }

    /// Removes the value at `pos`.
    fn remove(&mut self, pos: u64) -> Option<V> {
        match self {
            Segment::Tree(m) => m.remove(&pos),
            Segment::Table(t) => {
                let value = t.remove(pos)?;
                if t.homes > MIN_HOMES && t.len * 16 < t.homes {
                    // A sparse table halves (its entries fit: half as many homes, each
                    // run at most as long as before plus what merges into it).
                    let entries: Vec<(u64, V)> = t.drain_sorted().collect();
                    match Table::rebuild(t.shift, (t.homes / 2).max(MIN_HOMES), entries) {
                        Ok(table) => *t = table,
                        Err(entries) => *self = Segment::Tree(entries.into_iter().collect()),
                    }
                }
                Some(value)
            }
        }
    }

    /// [`Index::visit_mut`] in one segment: visits up to `*left` entries from `from`
    /// (counting them off), and returns the last position visited.
    fn visit_mut(
        &mut self,
        from: u64,
        left: &mut usize,
        visit: &mut impl FnMut(u64, &mut V),
    ) -> Option<u64> {
        let mut last = None;
        let mut each = |p: u64, v: &mut V| {
            if *left == 0 {
                return false;
            }
            visit(p, v);
            *left -= 1;
            last = Some(p);
            true
        };
        match self {
            Segment::Table(t) => {
                let start = t.home(from).min(t.slots.len());
                for (p, v) in t.slots[start..].iter_mut().flatten() {
                    if *p >= from && !each(*p, v) {
                        break;
                    }
                }
            }
            Segment::Tree(m) => {
                for (p, v) in m.range_mut(from..) {
                    if !each(*p, v) {
                        break;
                    }
                }
            }
        }
        last
    }

    /// The entries with positions in `lo..=hi`, in position order.
    fn range(&self, lo: u64, hi: u64) -> impl Iterator<Item = (u64, &V)> + '_ {
        let (table, tree) = match self {
            Segment::Table(t) => (Some(t), None),
            Segment::Tree(m) => (None, Some(m)),
        };
        let from = table.map_or(0, |t| t.home(lo));
        let in_table = table
            .into_iter()
            .flat_map(move |t| t.slots[from.min(t.slots.len())..].iter())
            .filter_map(|s| s.as_ref().map(|(p, v)| (*p, v)))
            .skip_while(move |(p, _)| *p < lo)
            .take_while(move |(p, _)| *p <= hi);
        let in_tree = tree.into_iter().flat_map(move |m| {
            let r = if lo <= hi { Some(m.range(lo..=hi)) } else { None };
            r.into_iter().flatten().map(|(p, v)| (*p, v))
        });
        in_table.chain(in_tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks the table's invariants: sorted, each entry within the bound of its home,
    /// no gap between an entry and its home.
    fn check<V>(index: &Index<V>) {
        assert_eq!(index.len, index.range(0, u64::MAX).count());
        for segment in &index.segments {
            if let Segment::Table(t) = segment {
                check_table(t);
            }
        }
    }

    fn check_table<V>(t: &Table<V>) {
        let mut last = None;
        for (i, slot) in t.slots.iter().enumerate() {
            let Some((p, _)) = slot else { continue };
            assert!(last < Some(*p), "sorted at slot {i}");
            last = Some(*p);
            let home = t.home(*p);
            assert!(home <= i && i - home <= MAX_RUN, "slot {i}, home {home}");
            assert!(t.slots[home..i].iter().all(Option::is_some), "gap before slot {i}");
        }
        assert_eq!(t.len, t.slots.iter().filter(|s| s.is_some()).count());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u64),
        Remove(u64),
        Range(u64, u64),
        Visit(u64, usize),
    }

    fn steps(positions: impl Strategy<Value = u64> + Clone) -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                4 => positions.clone().prop_map(Step::Insert),
                2 => positions.clone().prop_map(Step::Remove),
                1 => (positions.clone(), positions.clone()).prop_map(|(a, b)| Step::Range(a, b)),
                1 => (positions, 1usize..40).prop_map(|(a, n)| Step::Visit(a, n)),
            ],
            0..400,
        )
    }

    /// Runs `steps` against the index and a `BTreeMap`, which must agree throughout.
    fn agree(steps: Vec<Step>) -> Index<u64> {
        let mut index = Index::default();
        let mut model = BTreeMap::new();
        for (n, step) in steps.into_iter().enumerate() {
            let n = n as u64;
            match step {
                Step::Insert(p) => assert_eq!(index.insert(p, n), model.insert(p, n)),
                Step::Remove(p) => assert_eq!(index.remove(p), model.remove(&p)),
                Step::Range(a, b) => {
                    let got: Vec<(u64, u64)> = index.range(a, b).map(|(p, v)| (p, *v)).collect();
                    let want: Vec<(u64, u64)> = if a <= b {
                        model.range(a..=b).map(|(p, v)| (*p, *v)).collect()
                    } else {
                        Vec::new()
                    };
                    assert_eq!(got, want, "range {a}..={b}");
                }
                Step::Visit(from, limit) => {
                    // Visits in order, changes what it visits, and says where to go on.
                    let mut got = Vec::new();
                    let next = index.visit_mut(from, limit, |p, v| {
                        got.push(p);
                        *v += 1;
                    });
                    let want: Vec<u64> = model.range(from..).take(limit).map(|(p, _)| *p).collect();
                    assert_eq!(got, want, "visit {limit} from {from}");
                    let more = model.range(from..).nth(limit).is_some();
                    match next {
                        Some(next) => {
                            assert_eq!(got.len(), limit);
                            assert_eq!(next, got[limit - 1] + 1);
                        }
                        None => assert!(!more),
                    }
                    for p in want {
                        *model.get_mut(&p).unwrap() += 1;
                    }
                }
            }
            // Every step while small, every 16th once cut into 256 segments.
            if index.segments.len() <= 1 || n.is_multiple_of(16) {
                check(&index);
            }
            assert_eq!(index.len(), model.len());
        }
        check(&index);
        for (p, v) in &model {
            assert_eq!(index.get(*p), Some(v));
        }
        let all: Vec<(u64, u64)> = index.range(0, u64::MAX).map(|(p, v)| (p, *v)).collect();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        index
    }

    proptest! {
        #[test]
        fn uniform_positions_agree_with_a_btreemap(steps in steps(any::<u64>())) {
            let index = agree(steps);
            prop_assert!(!index.is_tree());
        }

        #[test]
        fn few_distinct_positions_agree_with_a_btreemap(steps in steps(0u64..64)) {
            agree(steps);
        }

        #[test]
        fn positions_sharing_their_top_bits_agree_with_a_btreemap(
            steps in steps((0u64..1 << 20).prop_map(|p| p | 0xabcd << 48))
        ) {
            agree(steps);
        }

        #[test]
        fn prefix_like_positions_agree_with_a_btreemap(
            steps in steps((b'a'..=b'z', b'a'..=b'z', any::<u16>())
                .prop_map(|(a, b, c)| u64::from_be_bytes([a, b, (c >> 8) as u8, c as u8, 0, 0, 0, 0])))
        ) {
            agree(steps);
        }
    }

    #[test]
    fn a_million_uniform_positions_stay_a_table_and_shrink_when_removed() {
        let mut index = Index::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut positions = Vec::new();
        for n in 0..1_000_000u64 {
            // xorshift: uniform enough, and reproducible.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            positions.push(x);
            index.insert(x, n);
        }
        assert!(!index.is_tree());
        assert_eq!(index.len(), 1_000_000);
        check(&index);
        let slots = |index: &Index<u64>| {
            let tables = index.segments.iter().filter_map(|s| match s {
                Segment::Table(t) => Some(t.slots.len()),
                Segment::Tree(_) => None,
            });
            tables.sum::<usize>()
        };
        // Grown by an eighth at 15/16 full: 1.12M slots when last measured.
        assert!(slots(&index) <= 1_200_000, "{} slots", slots(&index));
        for p in &positions[..999_000] {
            assert!(index.remove(*p).is_some());
        }
        check(&index);
        // Each segment's table shrinks to at most 16 slots an entry (and its 64 of slack).
        assert!(slots(&index) <= 256 * 64 + 32 * 1_000, "{} slots for 1,000", slots(&index));
        for p in &positions[999_000..] {
            assert!(index.get(*p).is_some());
        }
    }

    #[test]
    fn positions_chosen_to_collide_turn_the_table_into_a_tree() {
        // 10,000 positions sharing their top 40 bits, as keys picked by an attacker
        // would: no table spreads them, so the index becomes a tree, still exact.
        let mut index = Index::default();
        for n in 0..10_000u64 {
            index.insert(0x00de_adbe_ef00 << 24 | n, n);
        }
        assert!(index.is_tree());
        assert_eq!(index.len(), 10_000);
        assert_eq!(index.get(0x00de_adbe_ef00 << 24 | 77), Some(&77));
        assert_eq!(index.range(0, u64::MAX).count(), 10_000);
    }
}
