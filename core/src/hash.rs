//! Ring positions and ring-interval arithmetic.
//!
//! Every key has a position on a ring of 2^64 points. Two placements exist:
//!
//! - [`Placement::Hashed`] (the default): the position is xxh3-64 of the key, seeded
//!   with xxh3-64 of the collection name, so keys spread evenly and the same key in two
//!   collections lands in two unrelated places.
//! - [`Placement::Ordered`]: the position is the key's first 8 bytes read big-endian
//!   (shorter keys are padded with zero bytes on the right), so ring order is key order
//!   and a range scan walks the ring. Keys sharing their first 8 bytes share a position;
//!   stores order them by key bytes within it. Migration keeps such rings balanced.
//!
//! A node at position `p` whose predecessor is at `q` owns the half-open interval
//! `(q, p]` — Chord's successor rule. [`Interval`] is that shape: open at `start`,
//! closed at `end`, wrapping through zero, and `start == end` meaning the whole ring
//! (a lone node owns everything). There is no empty interval; code that needs "nothing"
//! uses `Option<Interval>`.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// A point on the ring: the 2^64 positions wrap from `u64::MAX` back to `0`.
pub type Position = u64;

/// How a collection maps keys to ring positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Position = xxh3-64(key) seeded by xxh3-64(collection): even spread, no key order.
    #[default]
    Hashed,
    /// Position = the key's first 8 bytes, big-endian, zero-padded: ring order is key order.
    Ordered,
}

/// Collections whose name starts with this prefix are [`Placement::Ordered`]; every
/// other collection is [`Placement::Hashed`].
///
/// The placement is part of the name so that every node, client and light peer derives
/// it alone, with no catalogue to agree on: `ordered.events` keeps its keys in key
/// order across the ring, `events` spreads them by hash.
pub const ORDERED_PREFIX: &str = "ordered.";

impl Placement {
    /// The placement of `collection`, read from its name (see [`ORDERED_PREFIX`]).
    pub fn of(collection: &str) -> Placement {
        if collection.starts_with(ORDERED_PREFIX) {
            Placement::Ordered
        } else {
            Placement::Hashed
        }
    }

    /// The placement's name: `hashed` or `ordered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Hashed => "hashed",
            Placement::Ordered => "ordered",
        }
    }

    /// The ring position of `key` in `collection` under this placement.
    pub fn position(self, collection: &str, key: &[u8]) -> Position {
        match self {
            Placement::Hashed => hashed_position(collection, key),
            Placement::Ordered => ordered_position(key),
        }
    }
}

/// The position of `key` in a hashed collection: xxh3-64 of the key bytes with the
/// seed xxh3-64(collection name bytes).
pub fn hashed_position(collection: &str, key: &[u8]) -> Position {
    xxh3_64_with_seed(key, xxh3_64(collection.as_bytes()))
}

/// The position of `key` in an ordered collection: its first 8 bytes big-endian,
/// padded with zero bytes on the right when the key is shorter.
pub fn ordered_position(key: &[u8]) -> Position {
    let mut buf = [0u8; 8];
    let n = key.len().min(8);
    buf[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(buf)
}

/// Clockwise distance from `from` to `to` on the ring (0 when equal).
pub fn distance(from: Position, to: Position) -> u64 {
    to.wrapping_sub(from)
}

/// Whether `x` lies strictly between `a` and `b` going clockwise: Chord's `x ∈ (a, b)`.
/// When `a == b` this is every position except `a`.
pub fn between_open(a: Position, x: Position, b: Position) -> bool {
    if a == b {
        x != a
    } else {
        x != a && distance(a, x) < distance(a, b)
    }
}

/// A wrapping, half-open ring interval `(start, end]`; `start == end` is the whole ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Interval {
    /// Exclusive start: the predecessor's position.
    pub start: Position,
    /// Inclusive end: the owner's position.
    pub end: Position,
}

/// An inclusive, non-wrapping run of positions `[lo, hi]`: a piece of an [`Interval`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    /// First position, inclusive.
    pub lo: Position,
    /// Last position, inclusive.
    pub hi: Position,
}

impl Segment {
    /// Whether `x` lies in `[lo, hi]`.
    pub fn contains(&self, x: Position) -> bool {
        self.lo <= x && x <= self.hi
    }
}

impl Interval {
    /// The interval `(start, end]`; equal bounds give the whole ring.
    pub const fn new(start: Position, end: Position) -> Self {
        Interval { start, end }
    }

    /// The whole ring, starting just after `0`.
    pub const fn full() -> Self {
        Interval { start: 0, end: 0 }
    }

    /// Whether this interval covers every position.
    pub fn is_full(&self) -> bool {
        self.start == self.end
    }

    /// Number of positions covered, `1 ..= 2^64`.
    pub fn len(&self) -> u128 {
        if self.is_full() {
            1u128 << 64
        } else {
            u128::from(distance(self.start, self.end))
        }
    }

    /// Intervals are never empty; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `x` lies in `(start, end]`.
    pub fn contains(&self, x: Position) -> bool {
        if self.is_full() {
            return true;
        }
        // x is in (s, e] iff 0 < dist(s, x) <= dist(s, e).
        let dx = distance(self.start, x);
        dx != 0 && dx <= distance(self.start, self.end)
    }

    /// Whether every position of `other` lies in `self`.
    pub fn contains_interval(&self, other: &Interval) -> bool {
        if self.is_full() {
            return true;
        }
        if other.is_full() {
            return false;
        }
        // `other` is a clockwise walk from other.start+1 to other.end; it stays inside
        // iff it starts inside and does not run past self.end.
        let first = other.start.wrapping_add(1);
        self.contains(first) && distance(first, other.end) <= distance(first, self.end)
    }

    /// Whether every position of the inclusive segment `[lo, hi]` lies in `self`.
    pub fn contains_segment(&self, seg: Segment) -> bool {
        if self.is_full() {
            return true;
        }
        // [lo, hi] as an interval is (lo-1, hi]; the whole ring cannot be a proper subset.
        if seg.lo == 0 && seg.hi == u64::MAX {
            return false;
        }
        self.contains_interval(&Interval::new(seg.lo.wrapping_sub(1), seg.hi))
    }

    /// Whether the inclusive segment `[lo, hi]` shares at least one position with `self`.
    pub fn overlaps_segment(&self, seg: Segment) -> bool {
        self.segments().into_iter().flatten().any(|s| s.lo <= seg.hi && seg.lo <= s.hi)
    }

    /// The segments a paged walk of the interval still covers after a cursor at
    /// `after` (from the start when `None`), in walk order, each with whether the cursor
    /// lies in it — there the walk resumes just after the cursor, elsewhere at the
    /// segment's start. Empty when the cursor is outside the interval.
    pub fn walk_after(&self, after: Option<Position>) -> Vec<(Segment, bool)> {
        let segments = self.segments().into_iter().flatten();
        let Some(pos) = after else {
            return segments.map(|s| (s, false)).collect();
        };
        segments.skip_while(|s| !s.contains(pos)).map(|s| (s, s.contains(pos))).collect()
    }

    /// The interval as at most two non-wrapping inclusive segments, in ring order from
    /// `start + 1`: iterate the first, then the second, to walk the interval clockwise.
    pub fn segments(&self) -> [Option<Segment>; 2] {
        let first = self.start.wrapping_add(1);
        if self.start < self.end {
            // (s, e] with s < e: one run [s+1, e].
            [Some(Segment { lo: first, hi: self.end }), None]
        } else if self.start == u64::MAX {
            // (MAX, e]: starts at 0, no wrap needed.
            [Some(Segment { lo: 0, hi: self.end }), None]
        } else {
            // Wraps (or is the full ring): [s+1, MAX] then [0, e].
            [Some(Segment { lo: first, hi: u64::MAX }), Some(Segment { lo: 0, hi: self.end })]
        }
    }

    /// The clockwise offset of `x` from the first position of the interval, used to
    /// order positions in ring order from `start + 1`.
    pub fn offset(&self, x: Position) -> u64 {
        distance(self.start.wrapping_add(1), x)
    }

    /// Splits the interval at `mid` into `(start, mid]` and `(mid, end]`; `None` when
    /// `mid` is not strictly inside (so that both halves are non-empty and proper).
    pub fn split_at(&self, mid: Position) -> Option<(Interval, Interval)> {
        if mid == self.end || !self.contains(mid) {
            return None;
        }
        Some((Interval::new(self.start, mid), Interval::new(mid, self.end)))
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({:#018x}, {:#018x}]", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paged_walk_resumes_in_the_cursor_segment() {
        let wrapping = Interval::new(100, 10); // [101, MAX] then [0, 10]
        let hi = Segment { lo: 101, hi: u64::MAX };
        let lo = Segment { lo: 0, hi: 10 };
        assert_eq!(wrapping.walk_after(None), [(hi, false), (lo, false)]);
        assert_eq!(wrapping.walk_after(Some(500)), [(hi, true), (lo, false)]);
        assert_eq!(wrapping.walk_after(Some(3)), [(lo, true)]);
        assert!(wrapping.walk_after(Some(50)).is_empty(), "outside: nothing left");
    }
    use proptest::prelude::*;

    const EDGES: [u64; 9] = [
        0,
        1,
        2,
        u64::MAX / 2 - 1,
        u64::MAX / 2,
        u64::MAX / 2 + 1,
        u64::MAX - 2,
        u64::MAX - 1,
        u64::MAX,
    ];

    /// The definition, in u128 arithmetic: x ∈ (s, e] iff 0 < (x - s) mod 2^64 <= len.
    fn model_contains(s: u64, e: u64, x: u64) -> bool {
        let m = 1u128 << 64;
        let len = if s == e { m } else { (u128::from(e) + m - u128::from(s)) % m };
        let dx = (u128::from(x) + m - u128::from(s)) % m;
        let dx = if dx == 0 { m } else { dx };
        dx <= len
    }

    fn segment_contains(i: &Interval, x: u64) -> bool {
        i.segments().into_iter().flatten().any(|s| s.contains(x))
    }

    #[test]
    fn contains_matches_model_on_every_edge_combination() {
        for &s in &EDGES {
            for &e in &EDGES {
                let i = Interval::new(s, e);
                for &x in &EDGES {
                    assert_eq!(i.contains(x), model_contains(s, e, x), "({s}, {e}] ∋ {x}");
                    assert_eq!(segment_contains(&i, x), i.contains(x), "segments ({s}, {e}] ∋ {x}");
                }
            }
        }
    }

    #[test]
    fn segments_are_ordered_disjoint_and_sized() {
        for &s in &EDGES {
            for &e in &EDGES {
                let i = Interval::new(s, e);
                let segs: Vec<Segment> = i.segments().into_iter().flatten().collect();
                let total: u128 = segs.iter().map(|g| u128::from(g.hi - g.lo) + 1).sum();
                assert_eq!(total, i.len(), "({s}, {e}]");
                assert!(segs.iter().all(|g| g.lo <= g.hi));
                assert_eq!(segs[0].lo, s.wrapping_add(1), "walk starts after start");
                assert_eq!(segs.last().unwrap().hi, e, "walk ends at end");
                if segs.len() == 2 {
                    assert!(segs[1].hi < segs[0].lo, "the second segment is after the wrap");
                }
            }
        }
    }

    #[test]
    fn full_ring_and_lengths() {
        assert!(Interval::full().is_full());
        assert_eq!(Interval::new(7, 7).len(), 1u128 << 64);
        assert_eq!(Interval::new(u64::MAX, 0).len(), 1);
        assert!(Interval::new(u64::MAX, 0).contains(0));
        assert!(!Interval::new(u64::MAX, 0).contains(u64::MAX));
        assert_eq!(Interval::new(0, u64::MAX).len(), u128::from(u64::MAX));
        assert!(!Interval::new(0, u64::MAX).contains(0));
        assert_eq!(Interval::new(10, 5).len(), (1u128 << 64) - 5);
    }

    #[test]
    fn between_open_edges() {
        assert!(between_open(1, 2, 3));
        assert!(!between_open(1, 3, 3));
        assert!(!between_open(1, 1, 3));
        assert!(between_open(u64::MAX, 0, 1));
        assert!(between_open(5, 0, 5) && !between_open(5, 5, 5));
        for &a in &EDGES {
            for &b in &EDGES {
                for &x in &EDGES {
                    let open = between_open(a, x, b);
                    let half = Interval::new(a, b).contains(x) && x != b;
                    assert_eq!(open, half, "({a}, {b}) ∋ {x}");
                }
            }
        }
    }

    #[test]
    fn split_and_containment_edges() {
        let i = Interval::new(u64::MAX - 1, 1);
        let (a, b) = i.split_at(u64::MAX).unwrap();
        assert_eq!((a, b), (Interval::new(u64::MAX - 1, u64::MAX), Interval::new(u64::MAX, 1)));
        assert!(i.split_at(1).is_none());
        assert!(i.split_at(5).is_none());
        assert!(i.contains_interval(&a) && i.contains_interval(&b));
        assert!(!a.contains_interval(&i));
        assert!(Interval::full().contains_interval(&i));
        assert!(!i.contains_interval(&Interval::full()));
        let f = Interval::new(3, 3);
        let (x, y) = f.split_at(100).unwrap();
        assert_eq!(x.len() + y.len(), 1u128 << 64);
        assert!(i.contains_segment(Segment { lo: u64::MAX, hi: u64::MAX }));
        assert!(i.contains_segment(Segment { lo: 0, hi: 1 }));
        assert!(!i.contains_segment(Segment { lo: 0, hi: 2 }));
        assert!(!i.contains_segment(Segment { lo: 0, hi: u64::MAX }));
        assert!(Interval::full().contains_segment(Segment { lo: 0, hi: u64::MAX }));
        assert!(i.overlaps_segment(Segment { lo: 1, hi: 9 }));
        assert!(!i.overlaps_segment(Segment { lo: 2, hi: 9 }));
    }

    #[test]
    fn placements() {
        assert_eq!(ordered_position(b""), 0);
        assert_eq!(ordered_position(b"a"), 0x6100_0000_0000_0000);
        assert_eq!(ordered_position(b"abcdefghij"), u64::from_be_bytes(*b"abcdefgh"));
        assert!(ordered_position(b"apple") < ordered_position(b"banana"));
        assert_ne!(hashed_position("a", b"k"), hashed_position("b", b"k"));
        assert_eq!(Placement::Hashed.position("c", b"k"), hashed_position("c", b"k"));
        assert_eq!(Placement::default(), Placement::Hashed);
    }

    proptest! {
        #[test]
        fn contains_agrees_with_model(s: u64, e: u64, x: u64) {
            let i = Interval::new(s, e);
            prop_assert_eq!(i.contains(x), model_contains(s, e, x));
            prop_assert_eq!(segment_contains(&i, x), i.contains(x));
        }

        #[test]
        fn split_partitions(s: u64, e: u64, m: u64) {
            let i = Interval::new(s, e);
            if let Some((a, b)) = i.split_at(m) {
                prop_assert_eq!(a.len() + b.len(), i.len());
                for x in [s, e, m, m.wrapping_add(1), s.wrapping_add(1)] {
                    prop_assert_eq!(i.contains(x), a.contains(x) || b.contains(x));
                    prop_assert!(!(a.contains(x) && b.contains(x)));
                }
            }
        }

        #[test]
        fn contains_segment_agrees_with_points(
            s in prop_oneof![any::<u64>(), 0u64..40, (u64::MAX - 40)..=u64::MAX],
            e in prop_oneof![any::<u64>(), 0u64..40, (u64::MAX - 40)..=u64::MAX],
            lo in prop_oneof![any::<u64>(), 0u64..40, (u64::MAX - 40)..=u64::MAX],
            w in 0u64..48,
        ) {
            let i = Interval::new(s, e);
            let hi = lo.saturating_add(w);
            let seg = Segment { lo, hi };
            let all = (lo..=hi).all(|x| i.contains(x));
            prop_assert_eq!(i.contains_segment(seg), all);
            let any = (lo..=hi).any(|x| i.contains(x));
            prop_assert_eq!(i.overlaps_segment(seg), any);
        }

        #[test]
        fn ordered_positions_preserve_prefix_order(a: Vec<u8>, b: Vec<u8>) {
            let (pa, pb) = (ordered_position(&a), ordered_position(&b));
            if a <= b { prop_assert!(pa <= pb) } else { prop_assert!(pa >= pb) }
        }
    }
}
