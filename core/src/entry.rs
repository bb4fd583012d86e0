//! Entries: a value or a tombstone, with the version that decides which write wins.
//!
//! An [`Entry`] is what a replica stores for a key: the value (or `None`, a tombstone
//! left by a delete), the hybrid-logical-clock timestamp of the write, the node that
//! coordinated it, and an optional expiry in wall-clock milliseconds (TTL).
//!
//! ## Merge laws
//!
//! [`Entry::merge`] keeps the larger of two entries under one total order: by
//! timestamp, then origin node id, then tombstone over value, then value bytes, then
//! expiry. Taking the maximum of a total order is commutative, associative and
//! idempotent, so replicas that see the same writes in any order, any number of times,
//! end with the same entry (the property tests below check all three laws). In practice
//! `(ts, origin)` is unique per write, because a node's clock never issues a timestamp
//! twice; the later keys only make the order total.
//!
//! ## Expiry
//!
//! An entry whose `expires` is at or before `now` reads as a tombstone:
//! [`Entry::materialize`] turns it into one with the same timestamp and origin. Every
//! replica makes the same tombstone from the same entry, and because tombstones win ties
//! the expired form beats the live form in a merge, so replicas that expired an entry at
//! different moments still agree. A later write (larger timestamp) beats both.
//!
//! ## Entries from other nodes
//!
//! An entry stamped elsewhere is merged only after [`EntryLimits::check`]: the one check
//! every entry that reaches a store from a peer passes (replica writes, read repair,
//! hints, and every sync session), and exactly the checks of a client write: a valid
//! collection name and key, a value within the size limit, a timestamp no further ahead
//! of the local wall clock than the clock's max offset, and an expiry that does not
//! precede the write. A timestamp far in the future would otherwise beat every later
//! write, on every replica, for good.

use crate::{
    clock::{ClockError, Timestamp},
    store::{validate_collection, validate_key, StoreError},
    Millis,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The id of a node (or light peer) that coordinated a write; tie-breaks equal timestamps.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = String;

    /// Parses what [`NodeId`]'s `Display` prints: 1 to 16 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match u64::from_str_radix(s, 16) {
            Ok(id) if valid => Ok(NodeId(id)),
            _ => Err(format!("{s:?} is not a node id (16 hex digits, as `dhrt ring` prints)")),
        }
    }
}

/// A stored value or tombstone with its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The value, or `None` for a tombstone left by a delete or an expiry.
    pub value: Option<Bytes>,
    /// When the write happened, by the coordinator's hybrid logical clock.
    pub ts: Timestamp,
    /// The node that coordinated the write.
    pub origin: NodeId,
    /// Wall-clock milliseconds at which the value expires (TTL), if any.
    pub expires: Option<Millis>,
}

/// The part of an entry that identifies a write: enough to decide which of two entries
/// for the same key wins without shipping values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Version {
    /// The write's timestamp.
    pub ts: Timestamp,
    /// The coordinating node.
    pub origin: NodeId,
    /// Whether the entry is a tombstone (tombstones win ties).
    pub tombstone: bool,
}

impl Entry {
    /// A live value written at `ts` by `origin`, without expiry.
    pub fn value(value: impl Into<Bytes>, ts: Timestamp, origin: NodeId) -> Self {
        Entry { value: Some(value.into()), ts, origin, expires: None }
    }

    /// A tombstone for a delete at `ts` by `origin`.
    pub fn tombstone(ts: Timestamp, origin: NodeId) -> Self {
        Entry { value: None, ts, origin, expires: None }
    }

    /// The same entry, expiring at wall-clock `expires` milliseconds.
    pub fn with_expiry(mut self, expires: Option<Millis>) -> Self {
        self.expires = expires;
        self
    }

    /// Whether this entry is a tombstone (ignoring expiry; see [`Entry::is_live`]).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Whether the entry has a value that has not expired at `now`.
    pub fn is_live(&self, now: Millis) -> bool {
        self.value.is_some() && !self.is_expired(now)
    }

    /// Whether the entry carries an expiry at or before `now`.
    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    /// The entry as it reads at `now`: an expired value becomes a tombstone with the same
    /// timestamp, origin and expiry; anything else is returned unchanged.
    pub fn materialize(self, now: Millis) -> Self {
        if self.value.is_some() && self.is_expired(now) {
            Entry { value: None, ..self }
        } else {
            self
        }
    }

    /// The version of this entry.
    pub fn version(&self) -> Version {
        Version { ts: self.ts, origin: self.origin, tombstone: self.is_tombstone() }
    }

    /// Wall-clock milliseconds from which a tombstone counts as deleted, for garbage
    /// collection grace periods: the later of the write time and the expiry.
    pub fn deleted_at_ms(&self) -> Millis {
        let written = self.ts.physical_ms();
        self.expires.map_or(written, |e| e.max(written))
    }

    /// Approximate bytes this entry occupies: the value plus its fixed metadata.
    pub fn size(&self) -> usize {
        const META: usize = 8 + 8 + 9;
        self.value.as_ref().map_or(0, Bytes::len) + META
    }

    fn rank(&self) -> (Timestamp, NodeId, bool, Option<&[u8]>, Option<Millis>) {
        (self.ts, self.origin, self.is_tombstone(), self.value.as_deref(), self.expires)
    }

    /// Whether `self` wins over `other` in a merge (strictly).
    pub fn supersedes(&self, other: &Entry) -> bool {
        self.rank() > other.rank()
    }

    /// Last-writer-wins merge: the larger entry under the total order described in the
    /// module docs. Commutative, associative and idempotent.
    pub fn merge(self, other: Entry) -> Entry {
        if other.supersedes(&self) {
            other
        } else {
            self
        }
    }
}

/// The bounds an entry stamped by another node must meet before it is merged (see the
/// module docs, "Entries from other nodes"). Built by the node for the current wall time
/// ([`crate::node::Node::entry_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLimits {
    /// Largest value accepted, in bytes (the node's `max_value_bytes`).
    pub max_value_bytes: usize,
    /// The local wall clock, in milliseconds, when the entry arrived.
    pub now_ms: Millis,
    /// How far ahead of `now_ms` a timestamp may be (the clock's max offset).
    pub max_offset_ms: Millis,
}

/// Why an entry from another node was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The collection name or the key is invalid.
    #[error(transparent)]
    Name(#[from] StoreError),
    /// The value is larger than this node accepts.
    #[error("value of {len} bytes is over the {max} byte limit")]
    TooLarge {
        /// The value's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The timestamp is further ahead of the local clock than the max offset.
    #[error(transparent)]
    Clock(#[from] ClockError),
    /// The entry expires before it was written: no client write makes that.
    #[error("entry written at {written_ms} ms expires earlier, at {expires_ms} ms")]
    Expiry {
        /// The write's wall time.
        written_ms: Millis,
        /// The expiry.
        expires_ms: Millis,
    },
}

impl EntryLimits {
    /// Checks the collection name once; then [`EntryLimits::check`] each entry.
    pub fn check_collection(&self, collection: &str) -> Result<(), EntryError> {
        Ok(validate_collection(collection)?)
    }

    /// Checks one entry for `key` (the collection is checked by
    /// [`EntryLimits::check_collection`]): key, value size, timestamp, expiry.
    pub fn check(&self, key: &[u8], entry: &Entry) -> Result<(), EntryError> {
        validate_key(key)?;
        if let Some(v) = entry.value.as_ref().filter(|v| v.len() > self.max_value_bytes) {
            return Err(EntryError::TooLarge { len: v.len(), max: self.max_value_bytes });
        }
        self.check_ts(entry.ts)?;
        let ts_ms = entry.ts.physical_ms();
        if let Some(expires_ms) = entry.expires.filter(|&e| e < ts_ms) {
            return Err(EntryError::Expiry { written_ms: ts_ms, expires_ms });
        }
        Ok(())
    }

    /// Checks a timestamp from another node: not further ahead of this node's wall
    /// clock than the clock's max offset.
    pub fn check_ts(&self, ts: Timestamp) -> Result<(), EntryError> {
        let ts_ms = ts.physical_ms();
        let now_ms = self.now_ms.min(crate::clock::MAX_PHYSICAL_MS);
        if ts_ms > now_ms.saturating_add(self.max_offset_ms) {
            return Err(EntryError::Clock(ClockError::RemoteAhead {
                remote_ms: ts_ms,
                local_ms: now_ms,
                ahead_ms: ts_ms - now_ms,
                max_offset_ms: self.max_offset_ms,
            }));
        }
        Ok(())
    }

    /// Checks a whole batch of one collection; the first refusal, if any.
    pub fn check_all<'a>(
        &self,
        collection: &str,
        entries: impl IntoIterator<Item = (&'a [u8], &'a Entry)>,
    ) -> Result<(), EntryError> {
        self.check_collection(collection)?;
        entries.into_iter().try_for_each(|(k, e)| self.check(k, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn node_ids_parse_as_they_print() {
        for id in [0, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(NodeId(id).to_string().parse::<NodeId>(), Ok(NodeId(id)));
        }
        assert_eq!("ff".parse::<NodeId>(), Ok(NodeId(255)));
        for bad in ["", "+1", "xyz", "00000000000000001", " 1"] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_refuse_what_a_client_write_could_not_make() {
        let l = EntryLimits { max_value_bytes: 4, now_ms: 10_000, max_offset_ms: 500 };
        let ok = Entry::value("abcd", Timestamp::from_parts(10_500, 9), NodeId(1));
        assert_eq!(l.check(b"k", &ok), Ok(()));
        assert!(l.check(b"k", &ok.clone().with_expiry(Some(10_500))).is_ok());
        let ahead = Entry::tombstone(Timestamp(u64::MAX - 5), NodeId(1));
        assert!(matches!(l.check(b"k", &ahead), Err(EntryError::Clock(_))));
        let ahead = Entry::tombstone(Timestamp::from_parts(10_501, 0), NodeId(1));
        assert!(matches!(l.check(b"k", &ahead), Err(EntryError::Clock(_))));
        let big = Entry::value("abcde", Timestamp::from_parts(1, 0), NodeId(1));
        assert_eq!(l.check(b"k", &big), Err(EntryError::TooLarge { len: 5, max: 4 }));
        assert!(matches!(l.check(b"", &ok), Err(EntryError::Name(_))));
        let early = ok.clone().with_expiry(Some(10_499));
        assert!(matches!(l.check(b"k", &early), Err(EntryError::Expiry { .. })));
        assert!(l.check_collection("../x").is_err());
        assert!(l.check_all("c", [(&b"k"[..], &ok)]).is_ok());
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            prop::option::of(prop::collection::vec(any::<u8>(), 0..4)),
            0u64..4,
            0u64..3,
            prop::option::of(0u64..4),
        )
            .prop_map(|(v, ts, origin, expires)| Entry {
                value: v.map(Bytes::from),
                ts: Timestamp(ts),
                origin: NodeId(origin),
                expires,
            })
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in entry(), b in entry()) {
            prop_assert_eq!(a.clone().merge(b.clone()), b.merge(a));
        }

        #[test]
        fn merge_is_associative(a in entry(), b in entry(), c in entry()) {
            prop_assert_eq!(
                a.clone().merge(b.clone()).merge(c.clone()),
                a.merge(b.merge(c))
            );
        }

        #[test]
        fn merge_is_idempotent(a in entry(), b in entry()) {
            prop_assert_eq!(a.clone().merge(a.clone()), a.clone());
            let ab = a.clone().merge(b.clone());
            prop_assert_eq!(ab.clone().merge(b), ab);
        }

        #[test]
        fn merge_returns_an_input(a in entry(), b in entry()) {
            let m = a.clone().merge(b.clone());
            prop_assert!(m == a || m == b);
        }

        #[test]
        fn expiry_is_deterministic_and_wins_over_the_live_form(a in entry(), now in 0u64..6) {
            let x = a.clone().materialize(now);
            prop_assert_eq!(x.clone(), a.clone().materialize(now));
            prop_assert_eq!(x.clone().materialize(now), x.clone(), "materialize is idempotent");
            prop_assert_eq!(a.clone().merge(x.clone()), x.clone());
            if a.value.is_some() && a.expires.is_some_and(|e| e <= now) {
                prop_assert!(x.is_tombstone());
                prop_assert_eq!(x.ts, a.ts);
                prop_assert!(!x.is_live(now));
            } else {
                prop_assert_eq!(x, a);
            }
        }
    }

    #[test]
    fn later_timestamp_wins_then_origin_then_tombstone() {
        let old = Entry::value("a", Timestamp(10), NodeId(9));
        let new = Entry::value("b", Timestamp(11), NodeId(1));
        assert_eq!(old.clone().merge(new.clone()), new);
        let tie_lo = Entry::value("x", Timestamp(11), NodeId(0));
        assert_eq!(tie_lo.merge(new.clone()), new);
        let del = Entry::tombstone(Timestamp(11), NodeId(1));
        assert_eq!(new.clone().merge(del.clone()), del);
        let later_write = Entry::value("c", Timestamp(12), NodeId(0));
        assert_eq!(del.merge(later_write.clone()), later_write);
    }

    #[test]
    fn ttl_turns_into_tombstone_at_expiry() {
        let e =
            Entry::value("v", Timestamp::from_parts(1000, 0), NodeId(1)).with_expiry(Some(1500));
        assert!(e.is_live(1499));
        assert!(!e.is_live(1500));
        let t = e.clone().materialize(1500);
        assert!(t.is_tombstone());
        assert_eq!(t.deleted_at_ms(), 1500);
        assert_eq!(e.clone().materialize(1499), e);
        // A write made before the expiry, with a later timestamp, beats the expired form.
        let w = Entry::value("w", Timestamp::from_parts(1200, 0), NodeId(0));
        assert_eq!(t.merge(w.clone()), w);
    }
}
