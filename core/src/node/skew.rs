//! The node's clocks and its peers': hybrid clocks advance on every membership message,
//! and each peer's wall-clock offset is estimated from probe round trips, so a node whose
//! clock is off from the cluster's notices it and stops coordinating writes.
//!
//! **Every message advances the clock.** The node stamps each membership message it
//! sends with its hybrid timestamp and wall time ([`ClockStamp`]) and adopts the stamp
//! of each one it receives (`Hlc::update`), so timestamps flow with gossip and probes,
//! not only with data. A stamp further ahead of the local wall clock than the max offset
//! is ignored for the clock (never adopted) and counted ([`ClockWatch::ahead_ignored`]).
//!
//! **Offsets.** A ping carries the prober's wall time; the direct ack echoes it and adds
//! the responder's; the prober keeps, per peer, the latest estimate
//! ([`OffsetSample`]: offset ± half the round trip).
//!
//! **Verdict.** With estimates from at least [`MIN_PEERS`] live peers, fresher than
//! [`FRESH_MS`], the node is *skewed* when more than half of them read, beyond their
//! uncertainty, more than the max offset ahead of it (it is behind) — or more than the
//! max offset behind it (it is ahead). A majority, not a mean: one bad peer does not
//! condemn the healthy nodes that see it. Its own offset is reported as minus the median
//! of its peers'. While skewed, the node refuses to coordinate writes (a typed
//! `unavailable` error naming the offset, the bound and "check NTP"); it reads, serves
//! as a replica and keeps probing, and recovers by itself once the estimates agree
//! again. With a single peer (a two-node cluster) nobody can tell which clock is wrong:
//! the offset is reported, no verdict is made.

use crate::{
    clock::Hlc,
    entry::NodeId,
    membership::{clock::OffsetSample, ClockStamp, MembershipMessage},
    Millis,
};
use std::collections::BTreeMap;

/// Estimates from fewer live peers make no verdict.
pub const MIN_PEERS: usize = 2;
/// Estimates older than this are not used.
pub const FRESH_MS: Millis = 30_000;
/// Round trips longer than this give no estimate.
pub const MAX_RTT_MS: Millis = 5_000;
/// Most peers tracked (pings to echo, estimates): more are dropped.
const MAX_PEERS: usize = 4_096;

/// Which way this node's clock is off from its peers'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkewDirection {
    /// This node's clock reads earlier than its peers'.
    Behind,
    /// This node's clock reads later than its peers'.
    Ahead,
}

/// Why a node considers its own clock off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skew {
    /// This node's estimated offset from its peers (negative: behind), in ms.
    pub offset_ms: i64,
    /// The bound it exceeds (the clock's max offset).
    pub max_offset_ms: Millis,
    /// Which way.
    pub direction: SkewDirection,
    /// Peers whose estimates agreed, of those with fresh estimates.
    pub agreeing: usize,
    /// Peers with fresh estimates.
    pub peers: usize,
}

impl std::fmt::Display for Skew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let way = match self.direction {
            SkewDirection::Behind => "behind",
            SkewDirection::Ahead => "ahead of",
        };
        write!(
            f,
            "this node's clock is about {} ms {way} its peers' ({} of {} peers agree), more \
             than the max offset of {} ms; check NTP on this host",
            self.offset_ms.unsigned_abs(),
            self.agreeing,
            self.peers,
            self.max_offset_ms
        )
    }
}

/// Clock bookkeeping of a node (see the module docs).
#[derive(Debug, Default)]
pub struct ClockWatch {
    /// The wall time of the ping last received from each peer, to echo in the ack.
    pings: BTreeMap<NodeId, Millis>,
    /// The latest offset estimate of each peer, and when it was made.
    samples: BTreeMap<NodeId, (OffsetSample, Millis)>,
    /// Stamps ignored for being too far ahead.
    ahead_ignored: u64,
    /// The current verdict.
    skew: Option<Skew>,
    /// The bound of the last assessment.
    max_offset_ms: Millis,
}

impl ClockWatch {
    /// Stamps `msg`, about to leave for `to` (`None`: an address only) at wall time `now`.
    pub fn stamp(
        &mut self,
        clock: &mut Hlc,
        now: Millis,
        to: Option<NodeId>,
        msg: &mut MembershipMessage,
    ) {
        let echo_ms = match (msg as &MembershipMessage, to) {
            (MembershipMessage::Ack { on_behalf: None, .. }, Some(to)) => self.pings.remove(&to),
            _ => None,
        };
        msg.set_clock(ClockStamp { hlc: clock.now(now), wall_ms: now, echo_ms });
    }

    /// Reads the stamp of `msg`, received from `from` at wall time `now`: adopts its
    /// timestamp, remembers a ping's wall time, estimates the offset from an ack. Returns
    /// whether a new estimate was made.
    pub fn receive(
        &mut self,
        clock: &mut Hlc,
        now: Millis,
        from: NodeId,
        msg: &MembershipMessage,
    ) -> bool {
        let Some(stamp) = msg.clock() else { return false };
        if clock.update(stamp.hlc, now).is_err() {
            self.ahead_ignored += 1;
        }
        match msg {
            MembershipMessage::Ping { .. } => {
                if self.pings.len() < MAX_PEERS || self.pings.contains_key(&from) {
                    self.pings.insert(from, stamp.wall_ms);
                }
                false
            }
            MembershipMessage::Ack { on_behalf: None, .. } => {
                let Some(sent) = stamp.echo_ms else { return false };
                let Some(sample) =
                    OffsetSample::from_round_trip(sent, stamp.wall_ms, now, MAX_RTT_MS)
                else {
                    return false;
                };
                if self.samples.len() < MAX_PEERS || self.samples.contains_key(&from) {
                    self.samples.insert(from, (sample, now));
                }
                true
            }
            _ => false,
        }
    }

    /// Recomputes the verdict from the fresh estimates of the peers `live` says are up.
    /// Returns the new verdict when it changed (`Some(None)`: the clock is back).
    pub fn assess(
        &mut self,
        now: Millis,
        max_offset_ms: Millis,
        live: impl Fn(NodeId) -> bool,
    ) -> Option<Option<Skew>> {
        self.samples.retain(|_, (_, at)| at.saturating_add(FRESH_MS) >= now);
        let fresh: Vec<OffsetSample> =
            self.samples.iter().filter(|(id, _)| live(**id)).map(|(_, (s, _))| *s).collect();
        self.max_offset_ms = max_offset_ms;
        let verdict = judge(&fresh, max_offset_ms);
        let changed = match (&self.skew, &verdict) {
            (None, None) => false,
            (Some(a), Some(b)) => a.direction != b.direction,
            _ => true,
        };
        self.skew = verdict;
        changed.then_some(verdict)
    }

    /// The current verdict: `Some` while this node's clock is off from its peers'.
    pub fn skew(&self) -> Option<Skew> {
        self.skew
    }

    /// This node's estimated offset from its peers (minus the median of their
    /// estimates), when any peer has a fresh estimate.
    pub fn offset_ms(&self) -> Option<i64> {
        let fresh: Vec<OffsetSample> = self.samples.values().map(|(s, _)| *s).collect();
        own_offset(&fresh)
    }

    /// Stamps ignored because they were too far ahead of the local clock.
    pub fn ahead_ignored(&self) -> u64 {
        self.ahead_ignored
    }

    /// Forgets a peer that left the view.
    pub fn forget(&mut self, peer: NodeId) {
        self.pings.remove(&peer);
        self.samples.remove(&peer);
    }
}

/// What [`crate::proto::client::NodeStats`] says of the clocks.
pub fn clock_stats(watch: &ClockWatch) -> crate::proto::client::ClockStats {
    crate::proto::client::ClockStats {
        offset_ms: watch.offset_ms(),
        skewed: watch.skew().map(|s| s.to_string()),
        ahead_ignored: watch.ahead_ignored(),
        max_offset_ms: watch.max_offset_ms,
    }
}

/// Minus the median of the peers' offsets: how far this node reads from them.
fn own_offset(samples: &[OffsetSample]) -> Option<i64> {
    let mut offsets: Vec<i64> = samples.iter().map(|s| s.offset_ms).collect();
    if offsets.is_empty() {
        return None;
    }
    offsets.sort_unstable();
    let n = offsets.len();
    let median = if n % 2 == 1 {
        offsets[n / 2]
    } else {
        // The midpoint of the two middle values, without overflow.
        let (a, b) = (offsets[n / 2 - 1], offsets[n / 2]);
        a / 2 + b / 2 + (a % 2 + b % 2) / 2
    };
    Some(median.saturating_neg())
}

/// The verdict from fresh estimates (see the module docs).
pub fn judge(samples: &[OffsetSample], max_offset_ms: Millis) -> Option<Skew> {
    let peers = samples.len();
    if peers < MIN_PEERS {
        return None;
    }
    let bound = i64::try_from(max_offset_ms).unwrap_or(i64::MAX);
    let margin = |s: &OffsetSample| i64::try_from(s.uncertainty_ms()).unwrap_or(i64::MAX);
    // Peers reading more than the bound ahead of us, beyond doubt: we are behind.
    let behind = samples.iter().filter(|s| s.offset_ms.saturating_sub(margin(s)) > bound).count();
    let ahead = samples.iter().filter(|s| s.offset_ms.saturating_add(margin(s)) < -bound).count();
    let (direction, agreeing) = if 2 * behind > peers {
        (SkewDirection::Behind, behind)
    } else if 2 * ahead > peers {
        (SkewDirection::Ahead, ahead)
    } else {
        return None;
    };
    let offset_ms = own_offset(samples)?;
    Some(Skew { offset_ms, max_offset_ms, direction, agreeing, peers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(offset_ms: i64, rtt_ms: Millis) -> OffsetSample {
        OffsetSample { offset_ms, rtt_ms }
    }

    #[test]
    fn a_majority_of_peers_decides_and_uncertainty_is_given_the_benefit_of_the_doubt() {
        // Every peer 2 s ahead of us: we are 2 s behind.
        let v = judge(&[s(2_000, 10), s(2_010, 10), s(1_990, 10)], 500).unwrap();
        assert_eq!(
            (v.direction, v.offset_ms, v.agreeing, v.peers),
            (SkewDirection::Behind, -2_000, 3, 3)
        );
        assert!(v.to_string().contains("NTP") && v.to_string().contains("500 ms"), "{v}");
        // Every peer behind us: we are ahead.
        let v = judge(&[s(-900, 10), s(-800, 10)], 500).unwrap();
        assert_eq!((v.direction, v.offset_ms), (SkewDirection::Ahead, 850));
        // A healthy node seeing one bad peer among two is not condemned.
        assert_eq!(judge(&[s(0, 10), s(-2_000, 10)], 500), None);
        assert_eq!(judge(&[s(0, 10), s(3, 10), s(-2_000, 10)], 500), None);
        // Within the bound, or not beyond doubt (600 ± 200 may be 400): no verdict.
        assert_eq!(judge(&[s(400, 10), s(450, 10), s(499, 10)], 500), None);
        assert_eq!(judge(&[s(600, 400), s(600, 400)], 500), None);
        // One peer alone cannot tell which clock is wrong.
        assert_eq!(judge(&[s(5_000, 10)], 500), None);
    }

    #[test]
    fn estimates_come_from_echoed_pings_and_expire() {
        let me = NodeId(1);
        let peer = NodeId(2);
        let mut watch = ClockWatch::default();
        let mut clock = Hlc::new(500);
        let mut peer_watch = ClockWatch::default();
        let mut peer_clock = Hlc::new(500);
        let member = crate::membership::Member::new(me, "a", vec![1]);
        // We ping at 10 000; the peer, 2 s behind, answers at its 8 010; we hear at 10 020.
        let mut ping = MembershipMessage::Ping {
            seq: 1,
            sender: member.clone(),
            updates: vec![],
            clock: None,
        };
        watch.stamp(&mut clock, 10_000, Some(peer), &mut ping);
        assert!(!peer_watch.receive(&mut peer_clock, 8_010, me, &ping));
        assert_eq!(peer_watch.ahead_ignored(), 1, "our stamp is 2 s ahead of the peer");
        let mut ack = MembershipMessage::Ack {
            seq: 1,
            on_behalf: None,
            sender: member,
            updates: vec![],
            clock: None,
        };
        peer_watch.stamp(&mut peer_clock, 8_010, Some(me), &mut ack);
        assert_eq!(ack.clock().unwrap().echo_ms, Some(10_000));
        assert!(watch.receive(&mut clock, 10_020, peer, &ack));
        assert_eq!(watch.offset_ms(), Some(2_000), "we read 2 s ahead of our one peer");
        assert_eq!(watch.assess(10_020, 500, |_| true), None, "one peer: no verdict");
        // Estimates expire.
        watch.assess(10_020 + FRESH_MS + 1, 500, |_| true);
        assert_eq!(watch.offset_ms(), None);
    }
}
