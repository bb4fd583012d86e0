//! The bytes `RedbStore` writes: record keys, entries and collection counts.
//!
//! A record's table key is its ring position as 8 big-endian bytes followed by the key
//! bytes. redb compares `&[u8]` keys lexicographically, and the position has a fixed
//! width, so table order is exactly the `(position, key)` order the [`Store`] trait
//! asks for, and a run of positions `[lo, hi]` is the key range
//! `[lo as 8 bytes, (hi + 1) as 8 bytes)`.
//!
//! An entry is encoded compactly, with a format version first so a later layout can be
//! told apart from this one:
//!
//! ```text
//! byte 0        format version (1)
//! byte 1        flags: bit 0 = has a value (else a tombstone), bit 1 = has an expiry
//! bytes 2..10   timestamp, u64 big-endian
//! bytes 10..18  origin node id, u64 big-endian
//! [8 bytes      expiry in wall milliseconds, u64 big-endian, when bit 1 is set]
//! rest          the value bytes (nothing for a tombstone)
//! ```
//!
//! Collection counts are `version (1), entries, tombstones, bytes` (u64 big-endian).
//! Every decoder checks lengths, versions and flags and returns
//! [`StoreError::Corrupt`] for anything else; none of them panics.
//!
//! [`Store`]: dhrt_core::store::Store

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    hash::Position,
    store::{CollectionStats, StoreError},
};

/// The entry format version this code writes and reads.
pub const ENTRY_FORMAT: u8 = 1;
/// The collection-counts format version this code writes and reads.
pub const STATS_FORMAT: u8 = 1;

const HAS_VALUE: u8 = 0b01;
const HAS_EXPIRY: u8 = 0b10;
const HEADER: usize = 2 + 8 + 8;
const STATS_LEN: usize = 1 + 3 * 8;

/// The table key of `key` at `pos`: 8 big-endian position bytes, then the key.
pub fn record_key(pos: Position, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&pos.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Splits a table key into position and key bytes; a key shorter than 9 bytes (a
/// position and at least one key byte) is corrupt.
pub fn split_record_key(raw: &[u8]) -> Result<(Position, &[u8]), StoreError> {
    match raw.split_first_chunk::<8>() {
        Some((pos, key)) if !key.is_empty() => Ok((Position::from_be_bytes(*pos), key)),
        _ => Err(StoreError::Corrupt(format!(
            "a record key of {} bytes is shorter than a position and one key byte",
            raw.len()
        ))),
    }
}

/// Appends the encoding of `entry` to `out`.
pub fn encode_entry_into(entry: &Entry, out: &mut Vec<u8>) {
    let mut flags = 0;
    if entry.value.is_some() {
        flags |= HAS_VALUE;
    }
    if entry.expires.is_some() {
        flags |= HAS_EXPIRY;
    }
    out.push(ENTRY_FORMAT);
    out.push(flags);
    out.extend_from_slice(&entry.ts.0.to_be_bytes());
    out.extend_from_slice(&entry.origin.0.to_be_bytes());
    if let Some(expires) = entry.expires {
        out.extend_from_slice(&expires.to_be_bytes());
    }
    if let Some(value) = &entry.value {
        out.extend_from_slice(value);
    }
}

/// The encoding of `entry`.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let len = HEADER + 8 + entry.value.as_ref().map_or(0, Bytes::len);
    let mut out = Vec::with_capacity(len);
    encode_entry_into(entry, &mut out);
    out
}

/// An entry read from its encoding without copying its value, which it borrows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// The entry's version and expiry, as [`Entry`] holds them.
    pub ts: Timestamp,
    /// The node that took the write.
    pub origin: NodeId,
    /// When it expires, in wall milliseconds.
    pub expires: Option<u64>,
    /// The value's bytes; `None` for a tombstone.
    pub value: Option<&'a [u8]>,
}

impl EntryView<'_> {
    /// The entry, its value copied.
    pub fn to_entry(self) -> Entry {
        self.reusing(None)
    }

    /// The entry, its value written into `old`'s buffer when that buffer is not
    /// shared and has the room, without twice as much (no allocation, and no large
    /// buffer kept for a small value), else copied into a new one.
    pub fn reusing(self, old: Option<Bytes>) -> Entry {
        let value = self.value.map(|v| match old.map(Bytes::try_into_mut) {
            Some(Ok(mut buf)) if (v.len()..=2 * v.len() + 64).contains(&buf.capacity()) => {
                buf.clear();
                buf.extend_from_slice(v);
                buf.freeze()
            }
            _ => Bytes::copy_from_slice(v),
        });
        Entry { value, ts: self.ts, origin: self.origin, expires: self.expires }
    }
}

/// Decodes an entry written by [`encode_entry`].
pub fn decode_entry(raw: &[u8]) -> Result<Entry, StoreError> {
    view_entry(raw).map(EntryView::to_entry)
}

/// Reads an entry written by [`encode_entry`], borrowing its value from `raw`.
pub fn view_entry(raw: &[u8]) -> Result<EntryView<'_>, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("entry of {} bytes: {why}", raw.len()));
    let Some((&[version, flags], rest)) = raw.split_first_chunk::<2>() else {
        return Err(corrupt("too short for a header"));
    };
    if version != ENTRY_FORMAT {
        return Err(corrupt(&format!(
            "format version {version} is not {ENTRY_FORMAT} (written by another dhrt version?)"
        )));
    }
    if flags & !(HAS_VALUE | HAS_EXPIRY) != 0 {
        return Err(corrupt(&format!("unknown flags {flags:#04x}")));
    }
    let (ts, rest) = take_u64(rest).ok_or_else(|| corrupt("too short for a timestamp"))?;
    let (origin, rest) = take_u64(rest).ok_or_else(|| corrupt("too short for an origin"))?;
    let (expires, rest) = if flags & HAS_EXPIRY != 0 {
        let (e, rest) = take_u64(rest).ok_or_else(|| corrupt("too short for an expiry"))?;
        (Some(e), rest)
    } else {
        (None, rest)
    };
    let value = if flags & HAS_VALUE != 0 {
        Some(rest)
    } else if rest.is_empty() {
        None
    } else {
        return Err(corrupt("a tombstone followed by value bytes"));
    };
    Ok(EntryView { ts: Timestamp(ts), origin: NodeId(origin), expires, value })
}

/// The encoding of a collection's counts.
pub fn encode_stats(stats: &CollectionStats) -> [u8; STATS_LEN] {
    let mut out = [0; STATS_LEN];
    out[0] = STATS_FORMAT;
    for (i, n) in [stats.entries, stats.tombstones, stats.bytes].into_iter().enumerate() {
        out[1 + 8 * i..9 + 8 * i].copy_from_slice(&n.to_be_bytes());
    }
    out
}

/// Decodes counts written by [`encode_stats`].
pub fn decode_stats(raw: &[u8]) -> Result<CollectionStats, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("collection counts: {why}"));
    let Some((&[version], rest)) = raw.split_first_chunk::<1>() else {
        return Err(corrupt("empty"));
    };
    if version != STATS_FORMAT {
        return Err(corrupt(&format!("format version {version} is not {STATS_FORMAT}")));
    }
    let (entries, rest) = take_u64(rest).ok_or_else(|| corrupt("too short"))?;
    let (tombstones, rest) = take_u64(rest).ok_or_else(|| corrupt("too short"))?;
    let (bytes, rest) = take_u64(rest).ok_or_else(|| corrupt("too short"))?;
    if !rest.is_empty() || tombstones > entries {
        return Err(corrupt("inconsistent"));
    }
    Ok(CollectionStats { entries, tombstones, bytes })
}

fn take_u64(raw: &[u8]) -> Option<(u64, &[u8])> {
    raw.split_first_chunk::<8>().map(|(n, rest)| (u64::from_be_bytes(*n), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Entry> {
        vec![
            Entry::value("hello", Timestamp(5), NodeId(7)),
            Entry::value("", Timestamp(u64::MAX), NodeId(u64::MAX)),
            Entry::tombstone(Timestamp(1), NodeId(0)),
            Entry::value(vec![0u8, 255, 1], Timestamp(9), NodeId(2)).with_expiry(Some(1234)),
            Entry::tombstone(Timestamp(9), NodeId(2)).with_expiry(Some(0)),
        ]
    }

    #[test]
    fn an_entry_decoded_over_an_older_value_reuses_its_buffer_only_when_it_fits() {
        let raw = encode_entry(&Entry::value("x".repeat(100), Timestamp(2), NodeId(1)));
        let view = view_entry(&raw).unwrap();
        assert_eq!(view.to_entry(), decode_entry(&raw).unwrap());
        let old = Bytes::from(vec![b'o'; 100]);
        let at = old.as_ptr();
        let entry = view.reusing(Some(old));
        assert_eq!(entry, view.to_entry());
        assert_eq!(entry.value.as_ref().unwrap().as_ptr(), at, "written over the old buffer");
        // Shared, too small, or much too large: a fresh copy, the old one untouched.
        let shared = Bytes::from(vec![b'o'; 100]);
        let other = shared.clone();
        for old in [shared, Bytes::from(vec![b'o'; 10]), Bytes::from(vec![b'o'; 4096])] {
            let at = old.as_ptr();
            let entry = view.reusing(Some(old));
            assert_eq!(entry, view.to_entry());
            assert_ne!(entry.value.as_ref().unwrap().as_ptr(), at);
        }
        assert_eq!(other, vec![b'o'; 100]);
        // A tombstone keeps no buffer.
        let raw = encode_entry(&Entry::tombstone(Timestamp(3), NodeId(1)));
        let entry = view_entry(&raw).unwrap().reusing(Some(Bytes::from(vec![1; 100])));
        assert_eq!(entry, Entry::tombstone(Timestamp(3), NodeId(1)));
    }

    #[test]
    fn entries_round_trip() {
        for e in samples() {
            assert_eq!(decode_entry(&encode_entry(&e)).unwrap(), e);
        }
    }

    #[test]
    fn every_truncation_and_bad_header_is_corrupt_not_a_panic() {
        for e in samples() {
            let raw = encode_entry(&e);
            let min = raw.len() - e.value.as_ref().map_or(0, Bytes::len);
            for cut in 0..min {
                assert!(
                    matches!(decode_entry(&raw[..cut]), Err(StoreError::Corrupt(_))),
                    "{e:?} cut {cut}"
                );
            }
            let mut bad = raw.clone();
            bad[0] = 2;
            assert!(matches!(decode_entry(&bad), Err(StoreError::Corrupt(_))));
            let mut bad = raw.clone();
            bad[1] |= 0x80;
            assert!(matches!(decode_entry(&bad), Err(StoreError::Corrupt(_))));
        }
        let mut tomb = encode_entry(&Entry::tombstone(Timestamp(1), NodeId(1)));
        tomb.push(0);
        assert!(matches!(decode_entry(&tomb), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn record_keys_sort_by_position_then_key() {
        let mut keys = [
            record_key(1, b"b"),
            record_key(u64::MAX, b"a"),
            record_key(1, b"a"),
            record_key(256, b"a"),
            record_key(1, b"ab"),
            record_key(0, b"zz"),
        ];
        keys.sort();
        let split: Vec<_> = keys.iter().map(|k| split_record_key(k).unwrap()).collect();
        let want: Vec<(u64, &[u8])> =
            vec![(0, b"zz"), (1, b"a"), (1, b"ab"), (1, b"b"), (256, b"a"), (u64::MAX, b"a")];
        assert_eq!(split, want);
        assert!(split_record_key(&[0; 8]).is_err());
        assert!(split_record_key(b"abc").is_err());
    }

    #[test]
    fn stats_round_trip_and_reject_garbage() {
        let s = CollectionStats { entries: 10, tombstones: 3, bytes: 999 };
        assert_eq!(decode_stats(&encode_stats(&s)).unwrap(), s);
        let raw = encode_stats(&s);
        for cut in 0..raw.len() {
            assert!(decode_stats(&raw[..cut]).is_err());
        }
        let bad = encode_stats(&CollectionStats { entries: 1, tombstones: 2, bytes: 0 });
        assert!(decode_stats(&bad).is_err());
    }
}
