//! Gossiped membership driving routing, on the simulator: one-hop lookups from the
//! token table, and how many protocol periods membership takes to converge.

use dhrt_core::sim::cluster::{membership_convergence, one_hop_lookups};

#[test]
fn full_membership_routes_every_lookup_in_one_hop() {
    for n in [5usize, 50] {
        let s = one_hop_lookups(n, 2_000, n as u64).expect("the cluster converges");
        assert_eq!(s.lookups, 2_000);
        assert_eq!(s.failed, 0, "every lookup finds the owner the cluster's table names");
        assert!(s.path.max <= 1.0, "N = {n}: at most one hop (none when the origin owns it)");
        assert_eq!(s.timeouts.max, 0.0);
    }
}

#[test]
fn membership_converges_in_logarithmically_many_periods() {
    for (n, seed) in [(10usize, 1u64), (40, 2)] {
        let c = membership_convergence(n, seed).expect("converges");
        let log_n = (n as f64).log2();
        assert!(c.join_rounds <= 3.0 * log_n, "N = {n}: join took {} periods", c.join_rounds);
        assert!(
            c.spread_rounds <= 3.0 * log_n,
            "N = {n}: death spread in {} periods",
            c.spread_rounds
        );
        // Detection: a probe round plus the suspicion timeout (5 periods × log10 N, ≥ 5).
        assert!(
            c.detect_rounds <= 2.0 + 5.0 * log_n.max(1.0),
            "N = {n}: detected after {}",
            c.detect_rounds
        );
    }
}
