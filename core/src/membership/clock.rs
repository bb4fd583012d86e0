//! The clocks a membership message carries: the sender's hybrid timestamp, so every
//! peer message (probes and gossip too, not only data) advances the receiver's hybrid
//! clock, and the wall times a probe round trip needs to estimate a peer's clock
//! offset.
//!
//! The membership state machine neither sets nor reads these: the node stamps each
//! message as it leaves ([`crate::node`]) and reads the stamp before handing the message
//! to membership, so membership stays about who is up, and clocks stay in the node.
//!
//! Offset estimation (Cristian's algorithm, as NTP does per sample): a ping carries the
//! prober's wall time `sent`; the ack echoes it (`echo_ms`) and adds the responder's
//! wall time `remote`; the prober receives it at `received`. Then the responder's clock
//! reads `offset ≈ remote − (sent + received) / 2` ahead of the prober's, within
//! `± (received − sent) / 2` (the round trip bounds when `remote` was read). See
//! `crate::node::skew` for what a node does with the estimates.

use crate::{clock::Timestamp, Millis};
use serde::{Deserialize, Serialize};

/// The sender's clocks when it sent a membership message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClockStamp {
    /// The sender's hybrid logical clock (a send event). The receiver adopts it, unless
    /// it is further ahead of the receiver's wall clock than the max offset (then it is
    /// ignored and counted).
    pub hlc: Timestamp,
    /// The sender's wall clock, in milliseconds.
    pub wall_ms: Millis,
    /// On an ack answering a ping directly: the ping's `wall_ms`, echoed so the prober
    /// can time the round trip. `None` on every other message.
    pub echo_ms: Option<Millis>,
}

/// One estimate of a peer's clock offset from a probe round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetSample {
    /// How far the peer's wall clock reads ahead of ours (negative: behind).
    pub offset_ms: i64,
    /// The round trip: the estimate is within `± rtt_ms / 2`.
    pub rtt_ms: Millis,
}

impl OffsetSample {
    /// The estimate from a ping sent at our `sent_ms`, answered with the peer's
    /// `remote_ms`, received at our `received_ms`. `None` when the times cannot come from
    /// one round trip (received before sent, or a round trip over `max_rtt_ms`).
    pub fn from_round_trip(
        sent_ms: Millis,
        remote_ms: Millis,
        received_ms: Millis,
        max_rtt_ms: Millis,
    ) -> Option<OffsetSample> {
        let rtt_ms = received_ms.checked_sub(sent_ms)?;
        if rtt_ms > max_rtt_ms {
            return None;
        }
        // Twice the midpoint, to stay in integers: offset = remote − (sent + received)/2.
        let mid2 = i128::from(sent_ms) + i128::from(received_ms);
        let offset2 = 2 * i128::from(remote_ms) - mid2;
        let offset_ms = i64::try_from(offset2 / 2).ok()?;
        Some(OffsetSample { offset_ms, rtt_ms })
    }

    /// The uncertainty: half the round trip.
    pub fn uncertainty_ms(&self) -> Millis {
        self.rtt_ms / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_the_remote_time_minus_the_midpoint() {
        // The peer reads 2 s ahead; 40 ms round trip.
        let s = OffsetSample::from_round_trip(10_000, 12_020, 10_040, 5_000).unwrap();
        assert_eq!(s, OffsetSample { offset_ms: 2_000, rtt_ms: 40 });
        assert_eq!(s.uncertainty_ms(), 20);
        // Behind.
        let s = OffsetSample::from_round_trip(10_000, 9_720, 10_040, 5_000).unwrap();
        assert_eq!(s.offset_ms, -300);
        // Impossible or too slow round trips give nothing.
        assert_eq!(OffsetSample::from_round_trip(10_000, 1, 9_999, 5_000), None);
        assert_eq!(OffsetSample::from_round_trip(0, 1, 6_000, 5_000), None);
        // Extremes do not overflow.
        let s = OffsetSample::from_round_trip(u64::MAX - 1, 0, u64::MAX, 5_000);
        assert!(s.is_none_or(|s| s.offset_ms < 0));
    }
}
