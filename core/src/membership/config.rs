//! Membership tuning knobs, and the few formulas that scale with cluster size.
//!
//! The defaults are SWIM's and memberlist's LAN profile: a probe a second, 300 ms for a
//! direct ack, 3 helpers for indirect probes, suspicion for `5 × interval × log10(n)`,
//! each update piggybacked about `4 × log10(n + 1)` times, full state exchanged every
//! 10 s. All scaling is computed with integer arithmetic so every host (native, wasm32,
//! the simulator) derives the same timeouts from the same member count.

use super::member::{Member, MAX_INCARNATION};
use crate::Millis;

/// Configuration of the membership protocol. Zero intervals are raised to 1 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// Length of a protocol period: one member is probed per period.
    pub probe_interval_ms: Millis,
    /// How long to wait for a direct ack before asking helpers to probe indirectly.
    pub probe_timeout_ms: Millis,
    /// How many helpers are asked to probe a member that missed its direct ack.
    pub indirect_probes: usize,
    /// Suspicion lasts `suspicion_mult × probe_interval × max(1, log10(n))`.
    pub suspicion_mult: u64,
    /// A fixed suspicion timeout, overriding the formula above.
    pub suspicion_timeout_ms: Option<Millis>,
    /// At most this many updates ride on one message.
    pub max_piggyback: usize,
    /// Each update is sent `retransmit_mult × ceil(log10(n + 1))` times, then dropped.
    pub retransmit_mult: u32,
    /// Period of the full-state (push-pull) exchange with one random member.
    pub push_pull_interval_ms: Millis,
    /// While updates are queued, every this often they are also sent to
    /// `gossip_fanout` random members, besides riding on probes (memberlist's gossip).
    pub gossip_interval_ms: Millis,
    /// How many random members each gossip round reaches.
    pub gossip_fanout: usize,
    /// How often a join is retried until the node has heard from some member.
    pub join_retry_ms: Millis,
    /// How many members a leaving node tells directly.
    pub leave_fanout: usize,
    /// Largest token list accepted in a member record from the network (256 by
    /// default, also the most tokens a node holds).
    pub max_tokens: usize,
    /// Largest address (bytes) accepted in a member record from the network.
    pub max_addr_len: usize,
    /// Largest number of members a node keeps (and of records it reads per message);
    /// records of further members are refused.
    pub max_members: usize,
    /// Most members one message may introduce (records of members this node did not
    /// know). A full state this node asked for — the seed's answer to its `Join`, the
    /// answer to its own push-pull — is exempt: it is how a newcomer learns the cluster.
    pub max_new_members: usize,
    /// Largest step above the highest incarnation this node has seen for a member that
    /// it accepts in a claim about that member from a third party. A member's own
    /// records are accepted up to [`MAX_INCARNATION`].
    pub max_incarnation_step: u64,
    /// Largest number of indirect probes a node relays at once for others.
    pub max_relays: usize,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            probe_interval_ms: 1000,
            probe_timeout_ms: 300,
            indirect_probes: 3,
            suspicion_mult: 5,
            suspicion_timeout_ms: None,
            max_piggyback: 8,
            retransmit_mult: 4,
            push_pull_interval_ms: 10_000,
            gossip_interval_ms: 200,
            gossip_fanout: 3,
            join_retry_ms: 2_000,
            leave_fanout: 3,
            max_tokens: 256,
            max_addr_len: 255,
            max_members: 4096,
            max_new_members: 8,
            max_incarnation_step: 1 << 20,
            max_relays: 1024,
        }
    }
}

impl MembershipConfig {
    /// The configuration with intervals raised to at least 1 ms and the probe timeout
    /// kept inside the probe interval.
    pub fn normalized(mut self) -> Self {
        self.probe_interval_ms = self.probe_interval_ms.max(1);
        self.probe_timeout_ms = self.probe_timeout_ms.min(self.probe_interval_ms - 1);
        self.push_pull_interval_ms = self.push_pull_interval_ms.max(1);
        self.gossip_interval_ms = self.gossip_interval_ms.max(1);
        self.join_retry_ms = self.join_retry_ms.max(1);
        self.max_piggyback = self.max_piggyback.max(1);
        self.max_members = self.max_members.max(1);
        self.max_new_members = self.max_new_members.max(1);
        self.max_incarnation_step = self.max_incarnation_step.max(1);
        self
    }

    /// How long a member stays `Suspect` before it is declared `Dead`, for a cluster of
    /// `n` members: `suspicion_mult × probe_interval × max(1, log10(n))`, unless fixed.
    pub fn suspicion_timeout(&self, n: usize) -> Millis {
        if let Some(fixed) = self.suspicion_timeout_ms {
            return fixed;
        }
        let scale_milli = log10_milli(n as u64).max(1000);
        let base = self.suspicion_mult.saturating_mul(self.probe_interval_ms);
        let scaled = u128::from(base) * u128::from(scale_milli) / 1000;
        Millis::try_from(scaled).unwrap_or(Millis::MAX)
    }

    /// How many times one update is piggybacked in a cluster of `n` members:
    /// `retransmit_mult × max(1, ceil(log10(n + 1)))`.
    pub fn retransmit_limit(&self, n: usize) -> u32 {
        self.retransmit_mult.saturating_mul(ceil_log10(n as u64 + 1).max(1))
    }

    /// Whether a record from the network is within bounds: address, token lists and
    /// labels not oversized (labels spelled as `--label` takes them), incarnation at most [`MAX_INCARNATION`] (a member's own record; claims
    /// by others are bounded further, see `Membership`).
    pub fn admits(&self, member: &Member) -> bool {
        member.addr.len() <= self.max_addr_len
            && member.tokens.len() <= self.max_tokens
            && member.next_tokens.as_ref().is_none_or(|t| t.len() <= self.max_tokens)
            && super::member::labels_admitted(&member.labels)
            && member.incarnation <= MAX_INCARNATION
    }
}

/// `round(1000 × log10(n))` for `n ≥ 1` (0 for `n ≤ 1`), by integer arithmetic only.
/// Counts above 2^32 are treated as 2^32.
pub fn log10_milli(n: u64) -> u64 {
    // log10(n) = log2(n) × log10(2); log2 in Q16 fixed point.
    let q = u128::from(log2_q16(n));
    // log10(2) ≈ 0.301029995664; scale by 1000 and by 2^16.
    let num = q * 301_029_995_664;
    let den = 65_536u128 * 1_000_000_000;
    ((num + den / 2) / den) as u64
}

/// `log2(n)` in Q16 fixed point (16 fractional bits), by repeated squaring.
fn log2_q16(n: u64) -> u64 {
    let n = n.clamp(1, u64::from(u32::MAX));
    let int = 63 - n.leading_zeros();
    // Mantissa in [1, 2) as Q62: fits in u128 when squared.
    let mut m = u128::from(n) << (62 - int);
    let mut frac = 0u64;
    for _ in 0..16 {
        m = (m * m) >> 62;
        frac <<= 1;
        if m >= 1u128 << 63 {
            m >>= 1;
            frac |= 1;
        }
    }
    (u64::from(int) << 16) | frac
}

/// `ceil(log10(x))`: the number of decimal digits needed so that `10^k ≥ x`.
fn ceil_log10(x: u64) -> u32 {
    let mut k = 0;
    let mut p: u64 = 1;
    while p < x {
        k += 1;
        match p.checked_mul(10) {
            Some(next) => p = next,
            None => break,
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log10_matches_floating_point() {
        for n in (1..5000u64).chain([10_000, 65_536, 1 << 31, u64::from(u32::MAX)]) {
            let want = (1000.0 * (n as f64).log10()).round() as i64;
            let got = log10_milli(n) as i64;
            assert!((got - want).abs() <= 1, "n={n}: {got} vs {want}");
        }
        assert_eq!(log10_milli(0), 0);
        assert_eq!(log10_milli(1), 0);
        assert_eq!(log10_milli(10), 1000);
        assert_eq!(log10_milli(100), 2000);
        assert_eq!(log10_milli(1000), 3000);
    }

    #[test]
    fn suspicion_timeout_scales_with_log10_of_the_cluster() {
        let c = MembershipConfig::default();
        assert_eq!(c.suspicion_timeout(1), 5_000);
        assert_eq!(c.suspicion_timeout(5), 5_000);
        assert_eq!(c.suspicion_timeout(10), 5_000);
        assert_eq!(c.suspicion_timeout(100), 10_000);
        assert_eq!(c.suspicion_timeout(1000), 15_000);
        let fixed = MembershipConfig { suspicion_timeout_ms: Some(42), ..c };
        assert_eq!(fixed.suspicion_timeout(1000), 42);
        let huge = MembershipConfig { probe_interval_ms: u64::MAX, ..Default::default() };
        assert_eq!(huge.suspicion_timeout(1000), u64::MAX);
    }

    #[test]
    fn retransmit_limit_is_mult_times_ceil_log10() {
        let c = MembershipConfig::default();
        assert_eq!(c.retransmit_limit(0), 4);
        assert_eq!(c.retransmit_limit(9), 4);
        assert_eq!(c.retransmit_limit(10), 8);
        assert_eq!(c.retransmit_limit(100), 12);
        assert_eq!(ceil_log10(u64::MAX), 20);
    }

    #[test]
    fn normalization_keeps_timers_sane() {
        let c = MembershipConfig {
            probe_interval_ms: 0,
            probe_timeout_ms: 500,
            push_pull_interval_ms: 0,
            join_retry_ms: 0,
            max_piggyback: 0,
            ..Default::default()
        }
        .normalized();
        assert_eq!((c.probe_interval_ms, c.probe_timeout_ms), (1, 0));
        assert_eq!((c.push_pull_interval_ms, c.join_retry_ms, c.max_piggyback), (1, 1, 1));
    }
}
