//! The Chord paper's experiments (Stoica et al., IEEE/ACM ToN 2003, §V), on the
//! simulator, in Chord-only routing mode (no full membership).
//!
//! Each function runs one experiment for one parameter setting and returns its figures;
//! the tests run them at sizes CI can afford, and `cargo run --release -p dhrt-core
//! --features sim --example chord_paper` prints the full tables (see
//! `docs/simulation.md`).

use super::{
    chord::{ChordConfig, ChordNode, ChordOutput, ChordProcess},
    net::NetConfig,
    world::Sim,
};
use crate::{
    entry::NodeId,
    hash::Position,
    ring::{tokens_for, RingTable, Vnode},
    rng::Rng,
    Millis,
};

/// Call timeout on the wide-area network model (delays of 1 ms + an exponential with a
/// 50 ms mean): a round trip exceeds it with probability about 10^-8, so timeouts count
/// failed nodes, not slow answers.
pub const WAN_RPC_TIMEOUT_MS: Millis = 1000;

/// Mean and percentiles of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Distribution {
    /// Number of values.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// 1st percentile.
    pub p1: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Distribution {
    /// Summarises `values` (in any order).
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Distribution::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let at = |q: f64| values[((q * (n - 1) as f64).round() as usize).min(n - 1)];
        Distribution {
            count: n,
            mean: values.iter().sum::<f64>() / n as f64,
            p1: at(0.01),
            p99: at(0.99),
            max: values[n - 1],
        }
    }
}

/// What a batch of lookups measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LookupStats {
    /// Lookups completed.
    pub lookups: usize,
    /// Lookups that ended without an owner or with the wrong one.
    pub failed: usize,
    /// Path length: remote nodes that answered, per lookup.
    pub path: Distribution,
    /// Timeouts per lookup.
    pub timeouts: Distribution,
}

impl LookupStats {
    fn from(results: &[(bool, u32, u32)]) -> Self {
        LookupStats {
            lookups: results.len(),
            failed: results.iter().filter(|r| !r.0).count(),
            path: Distribution::of(results.iter().map(|r| f64::from(r.1)).collect()),
            timeouts: Distribution::of(results.iter().map(|r| f64::from(r.2)).collect()),
        }
    }

    /// Failed lookups per 10,000.
    pub fn failed_per_10k(&self) -> f64 {
        if self.lookups == 0 {
            0.0
        } else {
            self.failed as f64 * 10_000.0 / self.lookups as f64
        }
    }
}

/// The true owner of `target` among the sorted live vnodes.
fn true_owner(live: &[Vnode], target: Position) -> Option<Vnode> {
    let i = live.partition_point(|v| v.pos < target);
    live.get(i).or(live.first()).copied()
}

/// `n` vnodes at random positions, one per node, sorted by position.
fn random_ring(n: usize, rng: &mut Rng) -> Vec<Vnode> {
    let mut ring: Vec<Vnode> =
        (0..n).map(|i| Vnode { pos: rng.next_u64(), node: NodeId(i as u64 + 1) }).collect();
    ring.sort();
    ring.dedup_by_key(|v| v.pos);
    ring
}

/// A simulation of a stable Chord ring of `n` nodes (routing state filled in from the
/// whole ring, as the paper's static experiments start).
pub fn stable_ring(
    n: usize,
    config: ChordConfig,
    net: NetConfig,
    seed: u64,
) -> (Sim<ChordProcess>, Vec<Vnode>) {
    let mut sim = Sim::new(seed, net);
    let ring = random_ring(n, sim.rng());
    for (i, v) in ring.iter().enumerate() {
        let node = ChordNode::stabilized(*v, &ring, config, seed ^ (i as u64 + 1));
        sim.add(v.node, ChordProcess::new(node));
    }
    (sim, ring)
}

/// Runs `count` lookups from random running origins to random targets, `batch` at a
/// time, and checks each result against the live ring.
fn run_lookups(
    sim: &mut Sim<ChordProcess>,
    live: &[Vnode],
    count: usize,
    batch: usize,
) -> Vec<(bool, u32, u32)> {
    let mut results = Vec::with_capacity(count);
    let running: Vec<NodeId> = live.iter().map(|v| v.node).collect();
    while results.len() < count {
        let this_batch = batch.min(count - results.len());
        for _ in 0..this_batch {
            let Some(i) = sim.rng().index(running.len()) else { return results };
            let target = sim.rng().next_u64();
            sim.act(running[i], |p, now| p.node.lookup(now, target));
        }
        while !sim.is_idle() {
            sim.run_for(10_000);
        }
        for (_, _, ev) in sim.take_events() {
            if let ChordOutput::Lookup(r) = ev {
                let ok = r.owner.is_some() && r.owner == true_owner(live, r.target);
                results.push((ok, r.hops, r.timeouts));
            }
        }
    }
    results
}

/// Path length in a stable ring of `n` nodes over `lookups` random lookups.
pub fn path_length(n: usize, lookups: usize, seed: u64) -> LookupStats {
    let config = ChordConfig {
        successors: ChordConfig::successors_for(n),
        stabilize_ms: None,
        ..ChordConfig::default()
    };
    let (mut sim, ring) = stable_ring(n, config, NetConfig::lan(), seed);
    LookupStats::from(&run_lookups(&mut sim, &ring, lookups, 2000))
}

/// A fraction `fraction` of a stable ring of `n` nodes (successor lists of `r`) fails at
/// once; with no stabilization afterwards, `lookups` random lookups run from the live
/// nodes. A lookup succeeds when it finds the live successor of its target.
pub fn simultaneous_failures(
    n: usize,
    r: usize,
    fraction: f64,
    lookups: usize,
    seed: u64,
) -> LookupStats {
    let config = ChordConfig {
        successors: r,
        stabilize_ms: None,
        rpc_timeout_ms: WAN_RPC_TIMEOUT_MS,
        ..ChordConfig::default()
    };
    let (mut sim, ring) = stable_ring(n, config, NetConfig::wan(), seed);
    let mut order = ring.clone();
    sim.rng().shuffle(&mut order);
    let failures = (fraction * n as f64).round() as usize;
    for v in &order[..failures.min(order.len())] {
        sim.crash(v.node);
    }
    let live: Vec<Vnode> = ring.iter().copied().filter(|v| sim.is_running(v.node)).collect();
    LookupStats::from(&run_lookups(&mut sim, &live, lookups, 500))
}

/// Parameters of the churn experiment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChurnConfig {
    /// Nodes at the start (the ring stays about this size).
    pub nodes: usize,
    /// Joins per second, and as many failures per second (Poisson processes).
    pub rate_per_s: f64,
    /// Simulated duration of the measured part, in seconds.
    pub duration_s: u64,
    /// Lookups per second across the system.
    pub lookups_per_s: f64,
    /// Stabilization period range, ms (the paper: uniform in 15–45 s).
    pub stabilize_ms: (Millis, Millis),
}

/// What the churn experiment measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ChurnStats {
    /// The lookups.
    pub lookups: LookupStats,
    /// Nodes that joined.
    pub joins: usize,
    /// Nodes that failed.
    pub failures: usize,
}

/// Chord under churn: a ring of about `nodes` nodes where nodes join and fail at
/// `rate_per_s` each while lookups run; a lookup fails if it ends without an owner or
/// with one that is not the live successor of its target when it ends.
pub fn churn(c: ChurnConfig, seed: u64) -> ChurnStats {
    let config = ChordConfig {
        successors: ChordConfig::successors_for(c.nodes),
        stabilize_ms: Some(c.stabilize_ms),
        rpc_timeout_ms: WAN_RPC_TIMEOUT_MS,
        ..ChordConfig::default()
    };
    let (mut sim, ring) = stable_ring(c.nodes, config, NetConfig::wan(), seed);
    let mut live: Vec<Vnode> = ring;
    let mut next_id = live.len() as u64 + 1;
    let mut joining: Vec<Vnode> = Vec::new();
    let mut stats = ChurnStats::default();
    let mut results = Vec::new();
    let end = c.duration_s * 1000;
    let (mut t_join, mut t_fail, mut t_lookup) = (0.0f64, 0.0f64, 0.0f64);
    let mean_gap = |rate: f64| if rate > 0.0 { 1000.0 / rate } else { f64::INFINITY };
    t_join += sim.rng().exponential(mean_gap(c.rate_per_s));
    t_fail += sim.rng().exponential(mean_gap(c.rate_per_s));
    t_lookup += sim.rng().exponential(mean_gap(c.lookups_per_s));
    loop {
        let next = t_join.min(t_fail).min(t_lookup);
        if next >= end as f64 {
            break;
        }
        sim.run_until(next as Millis);
        for v in collect(&mut sim, &live, &mut joining, &mut results) {
            let at = live.partition_point(|x| x.pos < v.pos);
            live.insert(at, v);
        }
        if next == t_join {
            t_join += sim.rng().exponential(mean_gap(c.rate_per_s));
            if let Some(i) = sim.rng().index(live.len()) {
                let known = live[i];
                let v = Vnode { pos: sim.rng().next_u64(), node: NodeId(next_id) };
                next_id += 1;
                let node = ChordNode::new(v, config, seed ^ next_id);
                sim.add(v.node, ChordProcess::new(node));
                sim.act(v.node, |p, now| p.node.join(now, known));
                joining.push(v);
                stats.joins += 1;
            }
        } else if next == t_fail {
            t_fail += sim.rng().exponential(mean_gap(c.rate_per_s));
            if live.len() > 2 {
                if let Some(i) = sim.rng().index(live.len()) {
                    let v = live.remove(i);
                    sim.crash(v.node);
                    stats.failures += 1;
                }
            }
        } else {
            t_lookup += sim.rng().exponential(mean_gap(c.lookups_per_s));
            if let Some(i) = sim.rng().index(live.len()) {
                let origin = live[i].node;
                let target = sim.rng().next_u64();
                sim.act(origin, |p, now| p.node.lookup(now, target));
            }
        }
    }
    sim.run_for(60_000);
    collect(&mut sim, &live, &mut joining, &mut results);
    stats.lookups = LookupStats::from(&results);
    stats
}

/// Gathers finished lookups (checked against the live ring now) and completed joins.
fn collect(
    sim: &mut Sim<ChordProcess>,
    live: &[Vnode],
    joining: &mut Vec<Vnode>,
    results: &mut Vec<(bool, u32, u32)>,
) -> Vec<Vnode> {
    let mut joined = Vec::new();
    for (_, node, ev) in sim.take_events() {
        match ev {
            ChordOutput::Lookup(r) => {
                let ok = r.owner.is_some() && r.owner == true_owner(live, r.target);
                results.push((ok, r.hops, r.timeouts));
            }
            ChordOutput::Joined => {
                if let Some(i) = joining.iter().position(|v| v.node == node) {
                    joined.push(joining.remove(i));
                }
            }
            _ => {}
        }
    }
    joined
}

/// `nodes` members with random ids and their deterministic tokens, and their table.
fn random_cluster(
    nodes: usize,
    vnodes: usize,
    rng: &mut Rng,
) -> (Vec<(NodeId, Vec<Position>)>, RingTable) {
    let members: Vec<(NodeId, Vec<Position>)> = (0..nodes)
        .map(|_| {
            let id = NodeId(rng.next_u64());
            (id, tokens_for(id, vnodes))
        })
        .collect();
    let table = RingTable::new(members.iter().map(|(id, t)| (*id, t.as_slice())));
    (members, table)
}

/// Keys per physical node when `keys` random keys are placed on `nodes` nodes with
/// `vnodes` tokens each (dhrt's deterministic tokens).
pub fn load_balance(nodes: usize, keys: usize, vnodes: usize, seed: u64) -> Distribution {
    let mut rng = Rng::new(seed);
    let (members, table) = random_cluster(nodes, vnodes, &mut rng);
    let index: std::collections::BTreeMap<NodeId, usize> =
        members.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
    let mut counts = vec![0f64; nodes];
    for _ in 0..keys {
        if let Some(owner) = table.owner(rng.next_u64()) {
            if let Some(&i) = index.get(&owner) {
                counts[i] += 1.0;
            }
        }
    }
    Distribution::of(counts)
}

/// The busiest node's share of the ring over its fair share (1/n), averaged over
/// `trials` random clusters of `nodes` nodes with `vnodes` tokens each.
pub fn ownership_spread(nodes: usize, vnodes: usize, trials: usize, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut total = 0.0;
    for _ in 0..trials {
        let (members, table) = random_cluster(nodes, vnodes, &mut rng);
        let busiest =
            members.iter().map(|(id, _)| table.ownership_share(*id)).fold(0.0f64, f64::max);
        total += busiest * nodes as f64;
    }
    total / trials.max(1) as f64
}
