//! The hybrid logical clock (HLC) that stamps every write.
//!
//! A [`Timestamp`] packs 48 bits of wall-clock milliseconds and a 16-bit logical
//! counter into one `u64`, so timestamps compare as integers, travel as 8 bytes and read
//! as wall time to a person. The algorithm is Kulkarni et al.'s HLC ("Logical Physical
//! Clocks", OPODIS 2014):
//!
//! - a local event or send takes `l' = max(l, pt)`, bumping the counter when `l` did
//!   not move;
//! - a receive takes `l' = max(l, m.l, pt)` with the counter chosen so the result
//!   exceeds both the local and the remote timestamp.
//!
//! The guarantees (checked by the property tests below): timestamps a clock issues
//! strictly increase; if event e happened before f then `ts(e) < ts(f)`; and the
//! logical part never runs ahead of the largest physical time seen by more than the
//! clock skew. To keep a badly set peer from dragging every clock forward, a remote
//! timestamp more than `max_offset_ms` (default 500 ms) ahead of our wall clock is
//! refused with [`ClockError::RemoteAhead`] and not adopted.
//!
//! Counter overflow (65,536 events within one millisecond) carries into the
//! millisecond field: the clock runs a millisecond ahead rather than repeating a
//! timestamp. Wall times beyond 2^48 ms (year 10889) saturate.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// Bits of the logical counter in a [`Timestamp`].
pub const COUNTER_BITS: u32 = 16;
/// Largest representable wall-clock milliseconds (48 bits).
pub const MAX_PHYSICAL_MS: Millis = (1 << 48) - 1;
/// Default largest lead of a remote timestamp over our wall clock before it is refused.
pub const DEFAULT_MAX_OFFSET_MS: Millis = 500;

const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// A hybrid logical timestamp: 48-bit milliseconds, 16-bit counter, ordered as a `u64`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The zero timestamp, older than every real one.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The largest timestamp.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// Builds a timestamp from milliseconds (saturated to 48 bits) and a counter.
    pub fn from_parts(physical_ms: Millis, counter: u16) -> Self {
        Timestamp((physical_ms.min(MAX_PHYSICAL_MS) << COUNTER_BITS) | u64::from(counter))
    }

    /// The wall-clock milliseconds part.
    pub fn physical_ms(self) -> Millis {
        self.0 >> COUNTER_BITS
    }

    /// The logical counter part.
    pub fn counter(self) -> u16 {
        // The mask keeps exactly 16 bits, so the conversion cannot fail.
        (self.0 & COUNTER_MASK) as u16
    }

    /// The next timestamp after this one (saturating at [`Timestamp::MAX`]); a counter
    /// overflow carries into the milliseconds.
    pub fn successor(self) -> Self {
        Timestamp(self.0.saturating_add(1))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.physical_ms(), self.counter())
    }
}

/// Why a remote timestamp was not adopted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// The remote clock is further ahead of ours than the allowed offset.
    #[error(
        "remote timestamp {remote_ms} ms is {ahead_ms} ms ahead of the local clock \
         ({local_ms} ms), more than the allowed {max_offset_ms} ms; check NTP on both hosts"
    )]
    RemoteAhead {
        /// The remote timestamp's milliseconds.
        remote_ms: Millis,
        /// Our wall clock when the timestamp arrived.
        local_ms: Millis,
        /// How far ahead it was.
        ahead_ms: Millis,
        /// The configured limit.
        max_offset_ms: Millis,
    },
}

/// A hybrid logical clock. The host supplies wall time on every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hlc {
    last: Timestamp,
    max_offset_ms: Millis,
}

impl Default for Hlc {
    fn default() -> Self {
        Hlc::new(DEFAULT_MAX_OFFSET_MS)
    }
}

impl Hlc {
    /// A clock that refuses remote timestamps more than `max_offset_ms` ahead.
    pub fn new(max_offset_ms: Millis) -> Self {
        Hlc { last: Timestamp::ZERO, max_offset_ms }
    }

    /// A clock resumed after a restart: it never issues a timestamp at or below `last`.
    pub fn resume(last: Timestamp, max_offset_ms: Millis) -> Self {
        Hlc { last, max_offset_ms }
    }

    /// The largest timestamp issued or adopted so far.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// The configured maximum offset.
    pub fn max_offset_ms(&self) -> Millis {
        self.max_offset_ms
    }

    /// A timestamp for a local event or a send at wall time `wall_ms`.
    pub fn now(&mut self, wall_ms: Millis) -> Timestamp {
        let wall = Timestamp::from_parts(wall_ms, 0);
        self.last = if wall > self.last { wall } else { self.last.successor() };
        self.last
    }

    /// Adopts a timestamp received from a peer at wall time `wall_ms` and returns the
    /// timestamp of the receive event, larger than both `remote` and every timestamp
    /// issued before. A remote more than the max offset ahead of `wall_ms` is refused and
    /// leaves the clock unchanged.
    pub fn update(&mut self, remote: Timestamp, wall_ms: Millis) -> Result<Timestamp, ClockError> {
        let wall_ms = wall_ms.min(MAX_PHYSICAL_MS);
        let remote_ms = remote.physical_ms();
        if remote_ms > wall_ms.saturating_add(self.max_offset_ms) {
            return Err(ClockError::RemoteAhead {
                remote_ms,
                local_ms: wall_ms,
                ahead_ms: remote_ms - wall_ms,
                max_offset_ms: self.max_offset_ms,
            });
        }
        let wall = Timestamp::from_parts(wall_ms, 0);
        let high = self.last.max(remote);
        self.last = if wall > high { wall } else { high.successor() };
        Ok(self.last)
    }

    /// Checks a remote timestamp against the max offset without adopting it.
    pub fn check(&self, remote: Timestamp, wall_ms: Millis) -> Result<(), ClockError> {
        let mut probe = self.clone();
        probe.update(remote, wall_ms).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parts_round_trip() {
        let t = Timestamp::from_parts(1_700_000_000_123, 42);
        assert_eq!((t.physical_ms(), t.counter()), (1_700_000_000_123, 42));
        assert_eq!(Timestamp::from_parts(u64::MAX, 0).physical_ms(), MAX_PHYSICAL_MS);
        assert_eq!(t.to_string(), "1700000000123.42");
    }

    #[test]
    fn counter_bumps_when_wall_stalls_and_resets_when_it_moves() {
        let mut c = Hlc::default();
        let a = c.now(1000);
        let b = c.now(1000);
        let d = c.now(999); // wall clock stepped back: still increasing
        let e = c.now(1001);
        assert_eq!((a.physical_ms(), a.counter()), (1000, 0));
        assert_eq!((b.physical_ms(), b.counter()), (1000, 1));
        assert_eq!((d.physical_ms(), d.counter()), (1000, 2));
        assert_eq!((e.physical_ms(), e.counter()), (1001, 0));
    }

    #[test]
    fn counter_overflow_carries_into_milliseconds() {
        let mut c = Hlc::resume(Timestamp::from_parts(5000, u16::MAX), 500);
        let t = c.now(5000);
        assert_eq!((t.physical_ms(), t.counter()), (5001, 0));
        let u = c.update(Timestamp::from_parts(5001, u16::MAX), 5000).unwrap();
        assert_eq!((u.physical_ms(), u.counter()), (5002, 0));
    }

    #[test]
    fn remote_too_far_ahead_is_refused_and_not_adopted() {
        let mut c = Hlc::new(500);
        let before = c.now(10_000);
        let err = c.update(Timestamp::from_parts(10_501, 0), 10_000).unwrap_err();
        assert_eq!(
            err,
            ClockError::RemoteAhead {
                remote_ms: 10_501,
                local_ms: 10_000,
                ahead_ms: 501,
                max_offset_ms: 500
            }
        );
        assert_eq!(c.last(), before);
        assert!(err.to_string().contains("NTP"));
        let ok = c.update(Timestamp::from_parts(10_500, 7), 10_000).unwrap();
        assert_eq!((ok.physical_ms(), ok.counter()), (10_500, 8));
        assert!(c.check(Timestamp::from_parts(99_999, 0), 10_000).is_err());
    }

    #[test]
    fn saturates_at_the_end_of_time() {
        let mut c = Hlc::resume(Timestamp::MAX, 500);
        assert_eq!(c.now(u64::MAX), Timestamp::MAX);
        assert_eq!(c.update(Timestamp::MAX, u64::MAX).unwrap(), Timestamp::MAX);
    }

    /// One step of a simulated system of HLC processes.
    #[derive(Debug, Clone)]
    enum Step {
        /// Process `p` has a local event (or sends; the message is queued).
        Send { p: usize },
        /// Process `p` receives the oldest message queued for delivery, if any.
        Recv { p: usize, pick: usize },
        /// True time advances.
        Tick { ms: u64 },
    }

    fn steps(n: usize) -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                (0..n).prop_map(|p| Step::Send { p }),
                (0..n, 0usize..64).prop_map(|(p, pick)| Step::Recv { p, pick }),
                (0u64..30).prop_map(|ms| Step::Tick { ms }),
            ],
            1..400,
        )
    }

    proptest! {
        /// Monotonic per process; happened-before ⇒ larger timestamp; l − pt ≤ ε.
        #[test]
        fn hlc_guarantees_under_bounded_skew(
            skews in prop::collection::vec(0u64..=40, 4),
            steps in steps(4),
        ) {
            // Every wall clock reads true time minus a skew in [0, ε]; ε = 40 ms.
            let eps = 40;
            let mut clocks: Vec<Hlc> = (0..4).map(|_| Hlc::new(eps)).collect();
            let mut last = [Timestamp::ZERO; 4];
            let mut in_flight: Vec<Timestamp> = Vec::new();
            let mut true_ms = 1_000_000u64;
            for step in steps {
                match step {
                    Step::Tick { ms } => true_ms += ms,
                    Step::Send { p } => {
                        let pt = true_ms - skews[p];
                        let t = clocks[p].now(pt);
                        prop_assert!(t > last[p], "monotonic");
                        prop_assert!(t.physical_ms() <= true_ms, "l − pt ≤ ε: {} vs {}", t, pt);
                        last[p] = t;
                        in_flight.push(t);
                    }
                    Step::Recv { p, pick } => {
                        if in_flight.is_empty() { continue; }
                        let m = in_flight.remove(pick % in_flight.len());
                        let pt = true_ms - skews[p];
                        let t = clocks[p].update(m, pt).expect("skew is within the max offset");
                        prop_assert!(t > m, "receive after send");
                        prop_assert!(t > last[p], "monotonic");
                        prop_assert!(t.physical_ms() <= true_ms, "l − pt ≤ ε");
                        last[p] = t;
                    }
                }
            }
        }

        #[test]
        fn update_never_goes_backwards(start: u64, remote: u64, wall in 0u64..(1 << 48)) {
            let mut c = Hlc::resume(Timestamp(start), 500);
            match c.update(Timestamp(remote), wall) {
                Ok(t) => {
                    prop_assert!(t >= Timestamp(start) && t >= Timestamp(remote));
                    prop_assert!(t > Timestamp(start) || start == u64::MAX);
                }
                Err(_) => prop_assert_eq!(c.last(), Timestamp(start)),
            }
        }
    }
}
