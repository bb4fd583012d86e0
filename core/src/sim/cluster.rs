//! [`RingProcess`]: a ring member with gossiped membership and Chord routing, as one
//! simulated host — and the experiments that need both: how fast membership converges,
//! and one-hop routing from the gossiped token table.

use super::{
    chord::{ChordConfig, ChordEnvelope, ChordNode, ChordOutput},
    experiments::{Distribution, LookupStats},
    net::NetConfig,
    world::{Effect, Process, Sim},
};
use crate::{
    entry::NodeId,
    membership::{
        Member, Membership, MembershipConfig, MembershipEvent, MembershipMessage, MembershipOutput,
        Status,
    },
    ring::{tokens_for, RingTable, Vnode},
    Millis,
};
use std::collections::VecDeque;

/// A message between ring members.
#[derive(Debug, Clone, PartialEq)]
pub enum RingMsg {
    /// Membership gossip and failure detection.
    Gossip(MembershipMessage),
    /// Chord routing.
    Chord(ChordEnvelope),
}

/// Something a ring member reports.
#[derive(Debug, Clone, PartialEq)]
pub enum RingEvent {
    /// A membership change.
    Membership(MembershipEvent),
    /// A Chord result.
    Chord(ChordOutput),
}

/// The simulated address of node `id`.
pub fn sim_addr(id: NodeId) -> String {
    format!("sim-{}", id.0)
}

fn parse_addr(addr: &str) -> Option<NodeId> {
    addr.strip_prefix("sim-")?.parse().ok().map(NodeId)
}

/// A ring member: [`Membership`] plus a [`ChordNode`] that routes from the gossiped
/// token table when `full_routing` is on (one hop), by fingers otherwise.
#[derive(Debug)]
pub struct RingProcess {
    /// The membership state machine.
    pub membership: Membership,
    /// The routing state machine.
    pub chord: ChordNode,
    full_routing: bool,
    table_view: u64,
    out: VecDeque<Effect<RingMsg, RingEvent>>,
}

impl RingProcess {
    /// A member with `vnodes` tokens that routes by the gossiped table when
    /// `full_routing` is on.
    pub fn new(id: NodeId, vnodes: usize, full_routing: bool, seed: u64) -> Self {
        let tokens = tokens_for(id, vnodes.max(1));
        let me = Vnode { pos: tokens[0], node: id };
        let member = Member::new(id, sim_addr(id), tokens);
        let config = ChordConfig { stabilize_ms: None, ..ChordConfig::default() };
        RingProcess {
            membership: Membership::new(member, MembershipConfig::default(), seed),
            chord: ChordNode::new(me, config, seed ^ 0x5eed),
            full_routing,
            table_view: 0,
            out: VecDeque::new(),
        }
    }

    /// The token table of the members this node sees serving.
    pub fn table(&self) -> RingTable {
        RingTable::new(self.membership.alive().map(|m| (m.id, m.tokens.as_slice())))
    }

    fn refresh(&mut self) {
        while let Some(o) = self.membership.poll_output() {
            match o {
                MembershipOutput::Send { to, msg, .. } => {
                    self.out.push_back(Effect::Send { to, msg: RingMsg::Gossip(msg) })
                }
                MembershipOutput::SendAddr { addr, msg } => {
                    if let Some(to) = parse_addr(&addr) {
                        self.out.push_back(Effect::Send { to, msg: RingMsg::Gossip(msg) });
                    }
                }
                MembershipOutput::Event(e) => {
                    self.out.push_back(Effect::Event(RingEvent::Membership(e)))
                }
            }
        }
        let view = self.membership.view_digest();
        if self.full_routing && view != self.table_view {
            self.table_view = view;
            let table = self.table();
            self.chord.set_table(Some(table));
        }
        while let Some(o) = self.chord.poll_output() {
            match o {
                ChordOutput::Send { to, msg } => {
                    let msg = RingMsg::Chord(ChordEnvelope { from: self.chord.me(), msg });
                    self.out.push_back(Effect::Send { to: to.node, msg });
                }
                other => self.out.push_back(Effect::Event(RingEvent::Chord(other))),
            }
        }
    }
}

impl Process for RingProcess {
    type Msg = RingMsg;
    type Event = RingEvent;

    fn start(&mut self, now: Millis) {
        self.chord.start(now);
        self.refresh();
    }

    fn handle(&mut self, now: Millis, from: NodeId, msg: RingMsg) {
        match msg {
            RingMsg::Gossip(m) => self.membership.handle(now, from, m),
            RingMsg::Chord(e) => self.chord.handle(now, e.from, e.msg),
        }
        self.refresh();
    }

    fn tick(&mut self, now: Millis) {
        self.membership.tick(now);
        self.chord.tick(now);
        self.refresh();
    }

    fn poll(&mut self) -> Option<Effect<RingMsg, RingEvent>> {
        // Calls made directly on the state machines (a lookup, a join) queue their output
        // there; collect it before answering.
        if self.out.is_empty() {
            self.refresh();
        }
        self.out.pop_front()
    }

    fn next_deadline(&self) -> Option<Millis> {
        match (self.membership.next_deadline(), self.chord.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Whether every running member sees exactly the running members, all `Alive`, and the
/// same view.
pub fn converged(sim: &Sim<RingProcess>) -> bool {
    let running = sim.running();
    let mut digest = None;
    for (_, p) in sim.processes() {
        let alive: Vec<NodeId> = p.membership.alive().map(|m| m.id).collect();
        if alive != running {
            return false;
        }
        let d = p.membership.view_digest();
        if *digest.get_or_insert(d) != d {
            return false;
        }
    }
    true
}

/// Runs until `done(sim)` holds, checking every `step` ms, for at most `limit` ms;
/// returns the time it took, or `None`.
fn run_until_true(
    sim: &mut Sim<RingProcess>,
    step: Millis,
    limit: Millis,
    done: impl Fn(&Sim<RingProcess>) -> bool,
) -> Option<Millis> {
    let start = sim.now();
    while sim.now() - start <= limit {
        if done(sim) {
            return Some(sim.now() - start);
        }
        sim.run_for(step);
    }
    None
}

/// A cluster of `n` members that joined one by one through member 1 and converged.
pub fn converged_cluster(
    n: usize,
    full_routing: bool,
    net: NetConfig,
    seed: u64,
) -> Sim<RingProcess> {
    let mut sim = Sim::new(seed, net);
    for i in 1..=n as u64 {
        let id = NodeId(i);
        sim.add(id, RingProcess::new(id, crate::ring::DEFAULT_VNODES, full_routing, seed ^ i));
        if i > 1 {
            sim.act(id, |p, now| p.membership.join(now, sim_addr(NodeId(1))));
        }
        sim.run_for(20);
    }
    run_until_true(&mut sim, 100, 600_000, converged);
    sim
}

/// How membership converged after one join and after one crash.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ConvergenceReport {
    /// Cluster size before the join.
    pub nodes: usize,
    /// Protocol periods until every member saw the newcomer and all views agreed.
    pub join_rounds: f64,
    /// Protocol periods from the crash until the first member declared it dead.
    pub detect_rounds: f64,
    /// Protocol periods from the first declaration until every member agreed.
    pub spread_rounds: f64,
}

/// Measures membership convergence in a cluster of `n` members (see
/// [`ConvergenceReport`]). `None` when a phase did not converge within 10 minutes.
pub fn membership_convergence(n: usize, seed: u64) -> Option<ConvergenceReport> {
    let mut sim = converged_cluster(n, false, NetConfig::lan(), seed);
    if !converged(&sim) {
        return None;
    }
    let period = MembershipConfig::default().probe_interval_ms as f64;
    let newcomer = NodeId(n as u64 + 1);
    sim.add(newcomer, RingProcess::new(newcomer, crate::ring::DEFAULT_VNODES, false, seed ^ 77));
    let running = sim.running();
    let via = running[sim.rng().index(running.len() - 1)?];
    sim.act(newcomer, |p, now| p.membership.join(now, sim_addr(via)));
    let join = run_until_true(&mut sim, 50, 600_000, converged)?;
    sim.take_events();
    let running = sim.running();
    let victim = running[sim.rng().index(running.len())?];
    let crashed_at = sim.now();
    sim.crash(victim);
    let mut first_dead: Option<Millis> = None;
    let all_dead = run_until_true(&mut sim, 50, 600_000, |s| {
        s.processes()
            .all(|(_, p)| p.membership.member(victim).is_some_and(|m| m.status == Status::Dead))
    })?;
    for (t, _, e) in sim.take_events() {
        if let RingEvent::Membership(MembershipEvent::StatusChanged {
            id, to: Status::Dead, ..
        }) = e
        {
            if id == victim {
                first_dead = Some(first_dead.map_or(t, |f| f.min(t)));
            }
        }
    }
    let first = first_dead? - crashed_at;
    Some(ConvergenceReport {
        nodes: n,
        join_rounds: join as f64 / period,
        detect_rounds: first as f64 / period,
        spread_rounds: (all_dead - first) as f64 / period,
    })
}

/// Lookups in a converged cluster of `n` members with full-membership routing: returns
/// the lookup figures (every lookup should take at most one hop).
pub fn one_hop_lookups(n: usize, lookups: usize, seed: u64) -> Option<LookupStats> {
    let mut sim = converged_cluster(n, true, NetConfig::lan(), seed);
    if !converged(&sim) {
        return None;
    }
    let truth = sim.processes().next()?.1.table();
    let running = sim.running();
    let mut results = Vec::with_capacity(lookups);
    let mut issued = 0;
    while issued < lookups {
        for _ in 0..500.min(lookups - issued) {
            let origin = running[sim.rng().index(running.len())?];
            let target = sim.rng().next_u64();
            sim.act(origin, |p, now| p.chord.lookup(now, target));
            issued += 1;
        }
        sim.run_for(2_000);
        for (_, _, e) in sim.take_events() {
            if let RingEvent::Chord(ChordOutput::Lookup(r)) = e {
                let ok = r.owner.map(|o| o.node) == truth.owner(r.target);
                results.push((ok, r.hops, r.timeouts));
            }
        }
    }
    let hops: Vec<f64> = results.iter().map(|r| f64::from(r.1)).collect();
    Some(LookupStats {
        lookups: results.len(),
        failed: results.iter().filter(|r| !r.0).count(),
        path: Distribution::of(hops),
        timeouts: Distribution::of(results.iter().map(|r| f64::from(r.2)).collect()),
    })
}
