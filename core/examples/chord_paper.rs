//! Prints the Chord paper's tables (Stoica et al., IEEE/ACM ToN 2003, §V) as measured on
//! dhrt's simulator, in Chord-only routing mode.
//!
//! `cargo run --release -p dhrt-core --features sim --example chord_paper [SEED] [TABLE...]`
//! where TABLE is any of `path`, `failures`, `churn`, `balance` (default: all).

use dhrt_core::sim::cluster::{membership_convergence, one_hop_lookups};
use dhrt_core::sim::experiments::{
    churn, load_balance, ownership_spread, path_length, simultaneous_failures, ChurnConfig,
};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    let wants = |t: &str| {
        args.iter().skip(1).all(|a| a.parse::<u64>().is_ok()) || args.iter().any(|a| a == t)
    };
    println!("seed {seed} (replay: cargo run --release -p dhrt-core --features sim --example chord_paper {seed})\n");
    if wants("path") {
        println!("Path length in a stable ring, 100·N lookups (10^5 at N = 10^4); hops = remote nodes that answered, owner included");
        println!(
            "{:>6} {:>9} {:>8} {:>6} {:>6} {:>12} {:>8}",
            "N", "lookups", "mean", "p1", "p99", "½·log2N + 1", "time"
        );
        for n in (6..=12).map(|k| 1usize << k).chain([10_000]) {
            let k = (n as f64).log2();
            let t = Instant::now();
            // 100·N lookups as in the paper, but 10^5 at N = 10^4 to keep the run short.
            let s = path_length(n, (100 * n).min(100_000), seed);
            println!(
                "{n:>6} {:>9} {:>8.3} {:>6} {:>6} {:>12.2} {:>7.1?}",
                s.lookups,
                s.path.mean,
                s.path.p1,
                s.path.p99,
                0.5 * k + 1.0,
                t.elapsed()
            );
            assert_eq!(s.failed, 0);
        }
        println!();
    }
    if wants("failures") {
        println!("Simultaneous failures: N = 1000, r = 20, no stabilization, 10,000 lookups");
        println!(
            "{:>8} {:>22} {:>22} {:>8}",
            "failed", "path mean (p1, p99)", "timeouts mean (p1, p99)", "wrong"
        );
        for p in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5] {
            let s = simultaneous_failures(1000, 20, p, 10_000, seed);
            println!(
                "{p:>8.1} {:>10.2} ({:>3}, {:>3})      {:>10.2} ({:>3}, {:>3})      {:>8}",
                s.path.mean,
                s.path.p1,
                s.path.p99,
                s.timeouts.mean,
                s.timeouts.p1,
                s.timeouts.p99,
                s.failed
            );
        }
        println!();
    }
    if wants("churn") {
        println!("Churn: ~1000 nodes, joins and failures at R per second each, stabilize every 15–45 s, 5 lookups/s, 1 hour");
        println!(
            "{:>6} {:>10} {:>9} {:>16} {:>16} {:>10} {:>7}",
            "R/s", "per stab.", "lookups", "path mean", "timeouts mean", "failed/10k", "joins"
        );
        for r in [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40] {
            let c = ChurnConfig {
                nodes: 1000,
                rate_per_s: r,
                duration_s: 3600,
                lookups_per_s: 5.0,
                stabilize_ms: (15_000, 45_000),
            };
            let s = churn(c, seed);
            println!(
                "{r:>6.2} {:>10.1} {:>9} {:>16.2} {:>16.2} {:>10.1} {:>7}",
                r * 30.0,
                s.lookups.lookups,
                s.lookups.path.mean,
                s.lookups.timeouts.mean,
                s.lookups.failed_per_10k(),
                s.joins
            );
        }
        println!();
    }
    if wants("balance") {
        println!("Load balance: 10^4 nodes, 10^6 keys, r tokens per node (keys per node / mean)");
        println!("{:>4} {:>8} {:>8} {:>8} {:>8}", "r", "mean", "p1", "p99", "max");
        for r in [1, 2, 5, 10, 16, 20, 32] {
            let d = load_balance(10_000, 1_000_000, r, seed);
            println!(
                "{r:>4} {:>8.1} {:>8.2} {:>8.2} {:>8.2}",
                d.mean,
                d.p1 / d.mean,
                d.p99 / d.mean,
                d.max / d.mean
            );
        }
        println!();
        println!("Small clusters: busiest node's share of the ring / its fair share (mean over 200 seeds)");
        print!("{:>6}", "nodes");
        let counts = [1usize, 4, 8, 16, 32, 64, 128];
        for r in counts {
            print!(" {:>7}", format!("r={r}"));
        }
        println!();
        for n in [3usize, 5, 10, 30, 100] {
            print!("{n:>6}");
            for r in counts {
                print!(" {:>7.2}", ownership_spread(n, r, 200, seed));
            }
            println!();
        }
    }
    if wants("membership") {
        println!();
        println!("Full membership: convergence after one join and one crash (gossip rounds of 200 ms; probe periods of 1 s), and one-hop lookups");
        println!(
            "{:>6} {:>7} {:>12} {:>13} {:>11} {:>9} {:>9} {:>6}",
            "nodes",
            "log2 N",
            "join rounds",
            "death rounds",
            "detect (s)",
            "lookups",
            "max hops",
            "wrong"
        );
        for n in [10usize, 30, 100, 300, 1000] {
            let t = Instant::now();
            let c = membership_convergence(n, seed);
            let h = one_hop_lookups(n, 10_000, seed);
            // Convergence is reported in probe periods (1 s); gossip rounds are 200 ms.
            match (c, h) {
                (Some(c), Some(h)) => println!(
                    "{n:>6} {:>7.1} {:>12.1} {:>13.1} {:>11.1} {:>9} {:>9} {:>6}   ({:.1?})",
                    (n as f64).log2(),
                    c.join_rounds * 5.0,
                    c.spread_rounds * 5.0,
                    c.detect_rounds,
                    h.lookups,
                    h.path.max,
                    h.failed,
                    t.elapsed()
                ),
                _ => println!("{n:>6} did not converge within 10 simulated minutes"),
            }
        }
    }
}
