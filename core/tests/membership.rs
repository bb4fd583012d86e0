//! Membership in a small in-memory network: joins converge, crashes are detected,
//! suspicions are refuted, dead nodes come back only through a re-sync, leaves and
//! partitions heal, runs replay from their seed, and no input panics.
//!
//! The harness ([`Net`]) holds a vector of state machines and one message queue. Every
//! message takes a fixed latency of 1–20 ms drawn from a seeded RNG; time jumps to the
//! next delivery or deadline. A node can be *down* (crashed: no ticks, no messages),
//! *cut* (running, but everything to and from it is dropped), split into partition
//! groups, or lose a single link.

use dhrt_core::{
    membership::{
        Member, Membership, MembershipConfig, MembershipEvent, MembershipMessage, MembershipOutput,
        Status, TokensError, MAX_INCARNATION,
    },
    ring::{RingTable, Vnode},
    rng::Rng,
    Millis, NodeId,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const SEC: Millis = 1000;

/// The seeds the scenario tests run: `0..5`, or `0..$MEMBERSHIP_SEEDS` for a longer
/// search. A failure names its seed.
fn seeds() -> std::ops::Range<u64> {
    let n = std::env::var("MEMBERSHIP_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    0..n
}

fn id(i: usize) -> NodeId {
    NodeId(1000 + i as u64)
}

fn addr(i: usize) -> String {
    format!("node-{i}")
}

fn index_of(addr: &str) -> Option<usize> {
    addr.strip_prefix("node-")?.parse().ok()
}

fn member(i: usize) -> Member {
    Member::new(id(i), addr(i), vec![(i as u64) << 40, (i as u64) << 40 | 1])
}

/// One delivered-or-dropped message, for traces.
type Trace = Vec<(Millis, NodeId, String)>;

struct Net {
    nodes: Vec<Membership>,
    now: Millis,
    rng: Rng,
    /// (deliver at, sequence) → (sender id, receiver index, message).
    queue: BTreeMap<(Millis, u64), (NodeId, usize, MembershipMessage)>,
    seq: u64,
    down: BTreeSet<usize>,
    cut: BTreeSet<usize>,
    groups: Option<Vec<u8>>,
    cut_links: BTreeSet<(usize, usize)>,
    /// Probability that any one message is lost.
    loss: f64,
    /// Every event, in order: (time, node, event).
    events: Vec<(Millis, NodeId, MembershipEvent)>,
    /// Every message sent: (time, sender, kind), for determinism checks.
    sends: Trace,
    /// Messages delivered to each node.
    delivered: BTreeMap<usize, u64>,
    /// When set, a node that must re-sync calls `resynced` this long after.
    auto_resync: Option<Millis>,
    resyncs_due: BTreeSet<(Millis, usize)>,
}

impl Net {
    fn new(n: usize, seed: u64) -> Self {
        Net::with_config(n, seed, MembershipConfig::default())
    }

    fn with_config(n: usize, seed: u64, config: MembershipConfig) -> Self {
        let nodes = (0..n)
            .map(|i| Membership::new(member(i), config.clone(), seed ^ (i as u64) << 32))
            .collect();
        Net {
            nodes,
            now: 0,
            rng: Rng::new(seed),
            queue: BTreeMap::new(),
            seq: 0,
            down: BTreeSet::new(),
            cut: BTreeSet::new(),
            groups: None,
            cut_links: BTreeSet::new(),
            loss: 0.0,
            events: Vec::new(),
            sends: Vec::new(),
            delivered: BTreeMap::new(),
            auto_resync: None,
            resyncs_due: BTreeSet::new(),
        }
    }

    fn blocked(&self, a: usize, b: usize) -> bool {
        self.down.contains(&a)
            || self.down.contains(&b)
            || self.cut.contains(&a)
            || self.cut.contains(&b)
            || self.cut_links.contains(&(a.min(b), a.max(b)))
            || self.groups.as_ref().is_some_and(|g| g[a] != g[b])
    }

    /// Moves node `i`'s outputs into the queue and the event log.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].poll_output() {
            let (to_addr, msg) = match out {
                MembershipOutput::Event(e) => {
                    if e == MembershipEvent::MustResync {
                        if let Some(delay) = self.auto_resync {
                            self.resyncs_due.insert((self.now + delay, i));
                        }
                    }
                    self.events.push((self.now, id(i), e));
                    continue;
                }
                MembershipOutput::Send { addr, msg, .. } => (addr, msg),
                MembershipOutput::SendAddr { addr, msg } => (addr, msg),
            };
            self.sends.push((self.now, id(i), msg.kind().to_string()));
            let latency = self.rng.range(1, 20);
            if self.loss > 0.0 && self.rng.chance(self.loss) {
                continue;
            }
            let Some(to) = index_of(&to_addr).filter(|&t| t < self.nodes.len()) else { continue };
            if self.blocked(i, to) {
                continue;
            }
            self.seq += 1;
            self.queue.insert((self.now + latency, self.seq), (id(i), to, msg));
        }
    }

    fn next_event_time(&self) -> Option<Millis> {
        let deliveries = self.queue.keys().next().map(|&(t, _)| t);
        let resyncs = self.resyncs_due.iter().next().map(|&(t, _)| t);
        let deadlines = (0..self.nodes.len())
            .filter(|i| !self.down.contains(i))
            .filter_map(|i| self.nodes[i].next_deadline())
            .min();
        [deliveries, resyncs, deadlines].into_iter().flatten().min()
    }

    /// Advances to the next delivery or deadline, if it is at or before `until`.
    fn step(&mut self, until: Millis) -> bool {
        let Some(t) = self.next_event_time().filter(|&t| t <= until) else {
            self.now = self.now.max(until);
            return false;
        };
        self.now = self.now.max(t);
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (from, to, msg) = entry.remove();
            let from_index = (from.0 - 1000) as usize;
            if self.blocked(from_index, to) {
                continue;
            }
            *self.delivered.entry(to).or_default() += 1;
            self.nodes[to].handle(self.now, from, msg);
            self.drain(to);
        }
        while let Some(&(t, i)) = self.resyncs_due.iter().next() {
            if t > self.now {
                break;
            }
            self.resyncs_due.remove(&(t, i));
            self.nodes[i].resynced(self.now);
            self.drain(i);
        }
        for i in 0..self.nodes.len() {
            if !self.down.contains(&i)
                && self.nodes[i].next_deadline().is_some_and(|d| d <= self.now)
            {
                self.nodes[i].tick(self.now);
                self.drain(i);
            }
        }
        true
    }

    fn run_for(&mut self, ms: Millis) {
        let until = self.now + ms;
        while self.step(until) {}
    }

    /// Runs until `done` holds (checked after every step) or `limit` ms pass; returns
    /// the elapsed time when it held.
    fn run_until(&mut self, limit: Millis, done: impl Fn(&Net) -> bool) -> Option<Millis> {
        let start = self.now;
        let until = start + limit;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if !self.step(until) {
                return done(self).then(|| self.now - start);
            }
        }
    }

    fn join_all_through(&mut self, seed: usize) {
        for i in 0..self.nodes.len() {
            if i != seed {
                self.nodes[i].join(self.now, addr(seed));
                self.drain(i);
            }
        }
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| !self.down.contains(i))
    }

    /// Every running node has the same view and sees the given members all `Alive`.
    fn converged_alive(&self, members: &[usize]) -> bool {
        let digests: BTreeSet<u64> = self.running().map(|i| self.nodes[i].view_digest()).collect();
        digests.len() == 1
            && self.running().all(|i| {
                members.iter().all(|&j| {
                    self.nodes[i].member(id(j)).is_some_and(|m| m.status == Status::Alive)
                })
            })
    }

    /// Whether every running node but `except` sees `of` with `status`.
    fn all_see(&self, of: usize, except: &[usize], status: Status) -> bool {
        self.running()
            .filter(|i| !except.contains(i))
            .all(|i| self.nodes[i].member(id(of)).is_some_and(|m| m.status == status))
    }

    /// Status changes seen by `observer` about `subject`, in order.
    fn transitions(&self, observer: usize, subject: usize) -> Vec<(Millis, Status)> {
        self.events
            .iter()
            .filter_map(|(t, who, e)| match e {
                MembershipEvent::StatusChanged { id: s, to, .. }
                    if *who == id(observer) && *s == id(subject) =>
                {
                    Some((*t, *to))
                }
                _ => None,
            })
            .collect()
    }

    /// Only a member raises its own incarnation: no running node believes a running
    /// member's incarnation is higher than the member's own.
    fn assert_incarnations_bounded(&self) {
        for i in self.running() {
            for j in self.running() {
                let seen = self.nodes[i].member(id(j)).map_or(0, |m| m.incarnation);
                assert!(seen <= self.nodes[j].incarnation(), "node {i} sees {j} at {seen}");
            }
        }
    }

    /// Prints every view and every status change, to debug a failing seed.
    fn dump(&self) {
        for (i, node) in self.nodes.iter().enumerate() {
            let view: Vec<String> = node
                .members()
                .map(|m| format!("{}:{}{}", m.id.0 - 1000, m.status, m.incarnation))
                .collect();
            eprintln!("node {i} at {}: {}", self.now, view.join(" "));
        }
        for (t, who, e) in &self.events {
            if !matches!(e, MembershipEvent::MemberJoined { .. }) {
                eprintln!("{t} {}: {e:?}", who.0 - 1000);
            }
        }
    }

    fn must_resyncs(&self) -> BTreeSet<NodeId> {
        self.events
            .iter()
            .filter(|(_, _, e)| *e == MembershipEvent::MustResync)
            .map(|(_, who, _)| *who)
            .collect()
    }
}

/// A cluster of `n` nodes that joined through node 0 and converged.
fn converged(n: usize, seed: u64) -> Net {
    let mut net = Net::new(n, seed);
    net.join_all_through(0);
    let all: Vec<usize> = (0..n).collect();
    let took = net.run_until(60 * SEC, |net| net.converged_alive(&all));
    assert!(took.is_some(), "seed {seed}: {n} nodes did not converge within 60 s");
    net
}

#[test]
fn ten_nodes_joining_through_one_seed_converge() {
    for seed in seeds() {
        let mut net = Net::new(10, seed);
        net.join_all_through(0);
        let all: Vec<usize> = (0..10).collect();
        let took = net.run_until(30 * SEC, |net| net.converged_alive(&all));
        let took = took.unwrap_or_else(|| panic!("seed {seed}: no convergence within 30 s"));
        eprintln!("seed {seed}: 10 nodes converged in {took} ms");
        for node in &net.nodes {
            assert_eq!(node.size(), 10);
            assert_eq!(node.alive().count(), 10);
            assert_eq!(node.incarnation(), 0, "nobody had to refute anything");
        }
        assert!(net.must_resyncs().is_empty());
        // A quiet cluster stays converged.
        net.run_for(30 * SEC);
        assert!(net.converged_alive(&all), "seed {seed}");
    }
}

#[test]
fn a_crashed_node_is_suspected_then_declared_dead_by_everyone() {
    for seed in seeds() {
        let mut net = converged(10, seed);
        let crashed = 5;
        let at = net.now;
        net.down.insert(crashed);
        let timeout = net.nodes[0].suspicion_timeout();
        assert_eq!(timeout, 5 * SEC);
        let bound = 12 * SEC + timeout;
        let others: Vec<usize> = (0..10).filter(|&i| i != crashed).collect();
        let took = net.run_until(bound, |net| net.all_see(crashed, &[], Status::Dead));
        let took = took.unwrap_or_else(|| panic!("seed {seed}: not dead everywhere in {bound} ms"));
        eprintln!("seed {seed}: crash declared dead everywhere after {took} ms");
        for &i in &others {
            let seen: Vec<Status> = net.transitions(i, crashed).iter().map(|&(_, s)| s).collect();
            assert_eq!(seen, vec![Status::Suspect, Status::Dead], "seed {seed}, node {i}");
            let suspected_at = net.transitions(i, crashed)[0].0;
            assert!(suspected_at - at <= 10 * SEC, "seed {seed}: suspected late");
            assert_eq!(net.nodes[i].alive().count(), 9);
        }
        // Nobody else was hurt, and nobody probes the dead node any more.
        assert!(net.must_resyncs().is_empty());
        for &i in &others {
            for &j in &others {
                assert_eq!(net.nodes[i].member(id(j)).unwrap().status, Status::Alive);
            }
        }
    }
}

#[test]
fn a_suspected_node_that_is_alive_refutes_and_stays_alive() {
    for seed in seeds() {
        let mut net = converged(10, seed);
        let victim = 3;
        net.cut.insert(victim);
        // Keep it cut off until someone suspects it, and a second longer.
        let noticed = net.run_until(10 * SEC, |net| {
            (0..10).any(|i| net.nodes[i].member(id(victim)).unwrap().status == Status::Suspect)
        });
        assert!(noticed.is_some(), "seed {seed}: the outage went unnoticed");
        net.run_for(SEC);
        net.cut.remove(&victim);
        let all: Vec<usize> = (0..10).collect();
        let took = net.run_until(30 * SEC, |net| net.converged_alive(&all));
        if took.is_none() {
            net.dump();
        }
        assert!(took.is_some(), "seed {seed}: did not reconverge");
        for i in 0..10 {
            let seen = net.transitions(i, victim);
            assert!(seen.iter().all(|&(_, s)| s != Status::Dead), "seed {seed}: {seen:?}");
        }
        assert!(net.nodes[victim].incarnation() > 0, "the victim refuted");
        assert!(net.must_resyncs().is_empty(), "seed {seed}: a refutation is not a re-sync");
        net.assert_incarnations_bounded();
    }
}

#[test]
fn a_dead_node_that_comes_back_is_readmitted_only_after_it_resyncs() {
    for seed in seeds() {
        let mut net = converged(10, seed);
        let ghost = 4;
        let others: Vec<usize> = (0..10).filter(|&i| i != ghost).collect();
        net.cut.insert(ghost);
        let dead = net.run_until(30 * SEC, |net| net.all_see(ghost, &[ghost], Status::Dead));
        assert!(dead.is_some(), "seed {seed}: never declared dead");
        net.run_for(10 * SEC);
        // While cut off, the ghost suspected everyone but declared nobody dead.
        for &j in &others {
            let verdicts = net.transitions(ghost, j);
            assert!(verdicts.iter().all(|&(_, s)| s != Status::Dead), "seed {seed}: {verdicts:?}");
        }
        net.cut.remove(&ghost);
        let syncing = net.run_until(30 * SEC, |net| net.all_see(ghost, &[], Status::Syncing));
        assert!(syncing.is_some(), "seed {seed}: not syncing everywhere");
        assert_eq!(net.must_resyncs(), BTreeSet::from([id(ghost)]), "seed {seed}");
        // It stays out of service until the node layer says the re-sync is done.
        net.run_for(20 * SEC);
        assert!(net.all_see(ghost, &[], Status::Syncing));
        for &i in &others {
            assert!(net.nodes[i].alive().all(|m| m.id != id(ghost)));
        }
        assert!(net.nodes[ghost].resynced(net.now));
        net.drain(ghost);
        let all: Vec<usize> = (0..10).collect();
        let alive = net.run_until(30 * SEC, |net| net.converged_alive(&all));
        assert!(alive.is_some(), "seed {seed}: not readmitted");
        assert_eq!(net.must_resyncs(), BTreeSet::from([id(ghost)]), "nobody else re-synced");
        net.assert_incarnations_bounded();
        // Readmission went Dead → Syncing → Alive everywhere.
        for &i in &others {
            let seen: Vec<Status> = net.transitions(i, ghost).iter().map(|&(_, s)| s).collect();
            let tail = &seen[seen.len() - 2..];
            assert_eq!(tail, [Status::Syncing, Status::Alive], "seed {seed}, node {i}: {seen:?}");
            assert!(seen.contains(&Status::Dead));
        }
    }
}

#[test]
fn a_node_restarted_with_fresh_state_jumps_above_its_old_incarnation() {
    let mut net = converged(6, 11);
    let phoenix = 2;
    // Raise its incarnation first: a suspicion it refutes.
    net.cut.insert(phoenix);
    net.run_for(3 * SEC);
    net.cut.remove(&phoenix);
    net.run_for(10 * SEC);
    let old = net.nodes[phoenix].incarnation();
    net.down.insert(phoenix);
    let dead = net.run_until(30 * SEC, |net| net.all_see(phoenix, &[], Status::Dead));
    assert!(dead.is_some());
    // Restart from scratch: incarnation 0, same id and address.
    net.nodes[phoenix] = Membership::new(member(phoenix), MembershipConfig::default(), 99);
    net.down.remove(&phoenix);
    net.nodes[phoenix].join(net.now, addr(0));
    net.drain(phoenix);
    net.auto_resync = Some(200);
    let all: Vec<usize> = (0..6).collect();
    assert!(net.run_until(30 * SEC, |net| net.converged_alive(&all)).is_some());
    assert!(net.nodes[phoenix].incarnation() > old, "{} ≤ {old}", net.nodes[phoenix].incarnation());
    assert!(net.must_resyncs().contains(&id(phoenix)));
}

#[test]
fn a_graceful_leave_is_seen_as_left_by_all_and_probing_stops() {
    let mut net = converged(10, 3);
    let leaver = 2;
    net.nodes[leaver].leave(net.now);
    net.drain(leaver);
    assert_eq!(net.nodes[leaver].me().status, Status::Left);
    assert_eq!(net.nodes[leaver].incarnation(), 1);
    assert_eq!(net.nodes[leaver].next_deadline(), None, "a left node has no timers");
    let gone = net.run_until(5 * SEC, |net| net.all_see(leaver, &[leaver], Status::Left));
    assert!(gone.is_some(), "Left did not reach everyone");
    net.run_for(5 * SEC);
    let before = net.delivered.get(&leaver).copied().unwrap_or(0);
    net.run_for(60 * SEC);
    assert_eq!(net.delivered.get(&leaver).copied().unwrap_or(0), before, "still probed");
    for i in (0..10).filter(|&i| i != leaver) {
        assert_eq!(net.nodes[i].alive().count(), 9);
        assert_eq!(net.transitions(i, leaver).last().map(|&(_, s)| s), Some(Status::Left));
    }
    assert!(net.must_resyncs().is_empty());
}

#[test]
fn a_four_four_partition_heals_and_views_reconverge() {
    for seed in seeds() {
        let mut net = converged(8, seed);
        net.auto_resync = Some(500);
        net.groups = Some(vec![0, 0, 0, 0, 1, 1, 1, 1]);
        net.run_for(30 * SEC);
        // Each side has declared the other dead.
        for i in 0..8 {
            for j in 0..8 {
                let want = if (i < 4) == (j < 4) { Status::Alive } else { Status::Dead };
                assert_eq!(net.nodes[i].member(id(j)).unwrap().status, want, "seed {seed}");
            }
        }
        net.groups = None;
        let all: Vec<usize> = (0..8).collect();
        let took = net.run_until(60 * SEC, |net| net.converged_alive(&all));
        let took = took.unwrap_or_else(|| panic!("seed {seed}: no reconvergence in 60 s"));
        net.assert_incarnations_bounded();
        eprintln!(
            "seed {seed}: 4|4 partition reconverged {took} ms after healing; {} nodes re-synced",
            net.must_resyncs().len()
        );
    }
}

#[test]
fn a_single_broken_link_is_routed_around_by_indirect_probes() {
    let mut net = converged(8, 5);
    net.cut_links.insert((0, 1));
    let mark = net.events.len();
    net.run_for(60 * SEC);
    let suspicions = net.events[mark..]
        .iter()
        .filter(|(_, _, e)| matches!(e, MembershipEvent::StatusChanged { to: Status::Suspect, .. }))
        .count();
    assert_eq!(suspicions, 0, "indirect probes should have succeeded");
    let all: Vec<usize> = (0..8).collect();
    assert!(net.converged_alive(&all));
}

#[test]
fn lossy_links_cause_no_false_deaths() {
    for seed in seeds() {
        let mut net = converged(10, seed);
        net.loss = 0.05;
        net.run_for(600 * SEC);
        let dead = net
            .events
            .iter()
            .any(|(_, _, e)| matches!(e, MembershipEvent::StatusChanged { to: Status::Dead, .. }));
        let suspicions = net
            .events
            .iter()
            .filter(|(_, _, e)| {
                matches!(e, MembershipEvent::StatusChanged { to: Status::Suspect, .. })
            })
            .count();
        eprintln!("seed {seed}: 10 min at 5% loss: {suspicions} suspicions, no deaths: {}", !dead);
        if dead {
            net.dump();
        }
        assert!(!dead, "seed {seed}: a false death");
        net.loss = 0.0;
        let all: Vec<usize> = (0..10).collect();
        assert!(net.run_until(30 * SEC, |net| net.converged_alive(&all)).is_some());
        net.assert_incarnations_bounded();
    }
}

/// Every event and every send of one scenario: join, crash, leave.
fn trace(seed: u64) -> (Vec<(Millis, NodeId, MembershipEvent)>, Trace, u64) {
    let mut net = Net::new(8, seed);
    net.join_all_through(0);
    net.run_for(20 * SEC);
    net.down.insert(6);
    net.run_for(20 * SEC);
    net.nodes[3].leave(net.now);
    net.drain(3);
    net.run_for(10 * SEC);
    let digest = net.nodes[0].view_digest();
    (net.events, net.sends, digest)
}

#[test]
fn same_seed_same_run() {
    let a = trace(7);
    let b = trace(7);
    assert_eq!(a.0, b.0, "event traces differ");
    assert_eq!(a.1, b.1, "send traces differ");
    assert_eq!(a.2, b.2);
    let c = trace(8);
    assert_ne!(a.1, c.1, "another seed should give another run");
}

#[test]
fn join_of_one_node_into_a_hundred_spreads_in_logarithmic_rounds() {
    // One run by default (it is the slowest test); all of `seeds()` when asked for.
    let runs = if std::env::var_os("MEMBERSHIP_SEEDS").is_some() { usize::MAX } else { 1 };
    let n = 100;
    for seed in seeds().take(runs) {
        let mut net = Net::new(n + 1, seed);
        net.down.insert(n); // the newcomer waits
        for i in 1..n {
            net.nodes[i].join(net.now, addr(0));
            net.drain(i);
            net.run_for(50);
        }
        let all: Vec<usize> = (0..n).collect();
        assert!(net.run_until(120 * SEC, |net| net.converged_alive(&all)).is_some());
        net.run_for(20 * SEC); // let the broadcast queues drain
        net.down.remove(&n);
        net.nodes[n].join(net.now, addr(0));
        net.drain(n);
        let took = net
            .run_until(60 * SEC, |net| (0..n).all(|i| net.nodes[i].member(id(n)).is_some()))
            .expect("the newcomer never reached everyone");
        let rounds = took.div_ceil(SEC);
        eprintln!(
            "seed {seed}: join of 1 node into {n}: reached everyone in {took} ms = {rounds} \
             gossip rounds"
        );
        assert!(rounds <= 20, "seed {seed}: {rounds} rounds");
    }
}

// ---- Claims about oneself, driven by hand ----

fn ping(seq: u64, sender: Member, updates: Vec<Member>) -> MembershipMessage {
    MembershipMessage::Ping { seq, sender, updates, clock: None }
}

fn drain_all(m: &mut Membership) -> Vec<MembershipOutput> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

#[test]
fn claims_about_me_are_answered_never_applied() {
    let mut me = Membership::new(member(0), MembershipConfig::default(), 1);
    let other = member(1);
    // Suspect → refute, status kept.
    me.handle(10, id(1), ping(1, other.clone(), vec![member(0).with(Status::Suspect, 0)]));
    assert_eq!((me.me().status, me.incarnation()), (Status::Alive, 1));
    let out = drain_all(&mut me);
    let ack = out.iter().find_map(|o| match o {
        MembershipOutput::Send { to, msg: MembershipMessage::Ack { seq, sender, .. }, .. } => {
            Some((*to, *seq, sender.clone()))
        }
        _ => None,
    });
    assert_eq!(ack, Some((id(1), 1, member(0).with(Status::Alive, 1))));
    // A stale claim is ignored.
    me.handle(20, id(1), ping(2, other.clone(), vec![member(0).with(Status::Dead, 0)]));
    assert_eq!((me.me().status, me.incarnation()), (Status::Alive, 1));
    assert!(!drain_all(&mut me).iter().any(|o| matches!(o, MembershipOutput::Event(_))));
    // Dead → Syncing above it, MustResync, and a push-pull to the informer.
    me.handle(30, id(1), ping(3, other.clone(), vec![member(0).with(Status::Dead, 4)]));
    assert_eq!((me.me().status, me.incarnation()), (Status::Syncing, 5));
    let out = drain_all(&mut me);
    assert!(out.contains(&MembershipOutput::Event(MembershipEvent::MustResync)));
    assert!(out.iter().any(|o| matches!(
        o,
        MembershipOutput::Send { to, msg: MembershipMessage::PushPull { reply: true, .. }, .. }
            if *to == id(1)
    )));
    // Dead again while syncing: a new incarnation, but no second MustResync.
    me.handle(40, id(1), ping(4, other.clone(), vec![member(0).with(Status::Dead, 5)]));
    assert_eq!((me.me().status, me.incarnation()), (Status::Syncing, 6));
    assert!(!drain_all(&mut me).contains(&MembershipOutput::Event(MembershipEvent::MustResync)));
    // The node layer finishes: Alive above it.
    assert!(me.resynced(50));
    assert_eq!((me.me().status, me.incarnation()), (Status::Alive, 7));
    assert!(!me.resynced(60), "only a syncing node resyncs");
    // Left while running: also a re-sync.
    me.handle(70, id(1), ping(5, other.clone(), vec![member(0).with(Status::Left, 7)]));
    assert_eq!((me.me().status, me.incarnation()), (Status::Syncing, 8));
    // Another node readmitted us as Syncing at our Alive incarnation: re-sync too.
    me.resynced(80);
    drain_all(&mut me);
    me.handle(90, id(1), ping(6, other.clone(), vec![member(0).with(Status::Syncing, 9)]));
    assert_eq!((me.me().status, me.incarnation()), (Status::Syncing, 10));
    assert!(drain_all(&mut me).contains(&MembershipOutput::Event(MembershipEvent::MustResync)));
    // After leaving, claims are answered with Left above them.
    me.leave(100);
    me.handle(110, id(1), ping(7, other, vec![member(0).with(Status::Alive, 40)]));
    assert_eq!((me.me().status, me.incarnation()), (Status::Left, 41));
    assert_eq!(me.stats().resyncs, 3);
}

#[test]
fn a_sender_that_does_not_know_it_is_suspected_is_told_at_once() {
    let mut me = Membership::new(member(0), MembershipConfig::default(), 1);
    let suspect = member(1).with(Status::Suspect, 2);
    me.handle(10, id(2), ping(1, member(2), vec![suspect]));
    drain_all(&mut me);
    // Node 1 pings us still believing it is Alive(0): the ack carries the suspicion.
    me.handle(20, id(1), ping(9, member(1), vec![]));
    let out = drain_all(&mut me);
    let told = out.iter().any(|o| match o {
        MembershipOutput::Send { to, msg: MembershipMessage::Ack { updates, .. }, .. } => {
            *to == id(1) && updates.first() == Some(&member(1).with(Status::Suspect, 2))
        }
        _ => false,
    });
    assert!(told, "{out:?}");
    // Its own Alive(3) then clears the suspicion directly.
    me.handle(30, id(1), ping(10, member(1).with(Status::Alive, 3), vec![]));
    assert_eq!(me.member(id(1)).unwrap().status, Status::Alive);
}

#[test]
fn oversized_and_foreign_records_are_dropped_and_counted() {
    let mut me = Membership::new(member(0), MembershipConfig::default(), 1);
    let mut long_addr = member(5);
    long_addr.addr = "x".repeat(256);
    let mut many_tokens = member(6);
    many_tokens.tokens = vec![0; 1025];
    let huge_incarnation = member(7).with(Status::Alive, MAX_INCARNATION + 1);
    let updates = vec![long_addr, many_tokens, huge_incarnation, member(8)];
    me.handle(10, id(1), ping(1, member(1), updates));
    assert_eq!(me.stats().rejected_records, 3);
    assert_eq!(me.size(), 3, "me, the sender, and node 8");
    // A sender record that is not the sender's is not trusted.
    me.handle(20, id(2), ping(2, member(3), vec![]));
    assert!(me.member(id(3)).is_none());
    assert_eq!(me.stats().rejected_records, 4);
    // Messages claiming to come from this node, joins for someone else.
    me.handle(30, id(0), ping(3, member(0), vec![]));
    me.handle(40, id(4), MembershipMessage::Join { member: member(5), clock: None });
    assert_eq!(me.stats().rejected_messages, 2);
    // An ack for no probe.
    me.handle(
        50,
        id(1),
        MembershipMessage::Ack {
            seq: 12345,
            on_behalf: None,
            sender: member(1),
            updates: vec![],
            clock: None,
        },
    );
    assert_eq!(me.stats().unknown_acks, 1);
}

#[test]
fn a_lone_node_is_quiet_and_a_join_is_retried() {
    let mut me = Membership::new(member(0), MembershipConfig::default(), 1);
    assert_eq!(me.next_deadline(), None);
    me.tick(5_000);
    assert!(me.poll_output().is_none());
    me.join(10_000, addr(9));
    assert!(matches!(
        me.poll_output(),
        Some(MembershipOutput::SendAddr { addr, msg: MembershipMessage::Join { .. } })
            if addr == "node-9"
    ));
    assert_eq!(me.next_deadline(), Some(12_000));
    me.tick(12_000);
    assert!(matches!(me.poll_output(), Some(MembershipOutput::SendAddr { .. })));
    // The seed answers: joined, no more retries, probing starts.
    me.handle(
        12_010,
        id(9),
        MembershipMessage::PushPull {
            members: vec![member(9), member(3)],
            reply: false,
            partial: false,
            clock: None,
        },
    );
    assert_eq!(me.size(), 3);
    let events: Vec<_> = drain_all(&mut me);
    assert_eq!(
        events,
        vec![
            MembershipOutput::Event(MembershipEvent::MemberJoined { id: id(9) }),
            MembershipOutput::Event(MembershipEvent::MemberJoined { id: id(3) }),
        ]
    );
    let next = me.next_deadline().unwrap();
    assert!(next < 12_010 + 10_000);
}

#[test]
fn a_fresh_node_told_to_join_says_its_view_is_partial_and_partial_views_do_not_count() {
    let fresh = |i| Member { joining: true, ..member(i).with(Status::Syncing, 0) };
    let push_pull = |i: usize, partial| MembershipMessage::PushPull {
        members: vec![fresh(i), member(3).with(Status::Alive, 4)],
        reply: true,
        partial,
        clock: None,
    };
    // A node restarted without its data, told to join, that heard nobody yet.
    let mut wiped = Membership::new(fresh(0), MembershipConfig::default(), 1);
    wiped.join(0, addr(9));
    drain_all(&mut wiped);
    assert!(wiped.view_partial());
    // A newcomer's push-pull: merged, but it does not make the view complete; the
    // answer says the view is partial.
    wiped.handle(10, id(1), push_pull(1, true));
    assert_eq!(wiped.size(), 3);
    assert!(!wiped.heard_full_state() && wiped.view_partial());
    let answers = drain_all(&mut wiped);
    assert!(answers.iter().any(|o| matches!(
        o,
        MembershipOutput::Send { msg: MembershipMessage::PushPull { partial: true, .. }, .. }
    )));
    // Until then it asks for full states every join retry, not every push-pull period.
    let next = wiped.next_deadline().unwrap();
    assert!(next <= 10 + MembershipConfig::default().join_retry_ms, "{next}");
    // A member's complete view counts.
    wiped.handle(20, id(3), push_pull(3, false));
    assert!(wiped.heard_full_state() && !wiped.view_partial());
    // A node that kept its data, or started the cluster, never says its view is partial.
    let mut kept =
        Membership::new(member(5).with(Status::Syncing, 3), MembershipConfig::default(), 1);
    kept.join(0, addr(9));
    assert!(!kept.view_partial());
    let first = Membership::new(fresh(6), MembershipConfig::default(), 1);
    assert!(!first.view_partial());
}

#[test]
fn a_node_can_start_syncing_for_its_join_hand_off() {
    let mut me =
        Membership::new(member(0).with(Status::Syncing, 0), MembershipConfig::default(), 1);
    assert_eq!(me.me().status, Status::Syncing);
    assert_eq!(me.alive().count(), 0);
    assert!(me.resynced(1));
    assert_eq!((me.me().status, me.incarnation()), (Status::Alive, 1));
    // Anything but Syncing starts Alive.
    let me = Membership::new(member(0).with(Status::Dead, 3), MembershipConfig::default(), 1);
    assert_eq!((me.me().status, me.incarnation()), (Status::Alive, 3));
}

#[test]
fn moved_tokens_are_adopted_everywhere_and_change_every_token_table() {
    for seed in seeds() {
        let mut net = converged(6, seed);
        let table = |m: &Membership| {
            RingTable::new(m.alive().map(|x| (x.id, x.tokens.as_slice())).collect::<Vec<_>>())
        };
        let digest = net.nodes[1].view_digest();
        let before = table(&net.nodes[1]);
        let old = net.nodes[0].me().tokens.clone();
        // Node 0 moves its second token halfway to node 1's first.
        let moved = vec![old[0], 1 << 39];
        let at = net.now;
        assert_eq!(net.nodes[0].set_tokens(at, moved.clone()), Ok(true));
        assert_eq!(net.nodes[0].incarnation(), 1, "a move is a new incarnation");
        net.drain(0);
        let took = net.run_until(30 * SEC, |net| {
            net.nodes.iter().all(|n| n.member(id(0)).is_some_and(|m| m.tokens == moved))
        });
        assert!(took.is_some(), "seed {seed}: the move did not spread within 30 s");
        for (i, n) in net.nodes.iter().enumerate() {
            let t = table(n);
            assert_ne!(t, before, "seed {seed}: node {i}'s table did not change");
            let has = |pos| t.vnodes().contains(&Vnode { pos, node: id(0) });
            assert!(!has(old[1]) && has(1 << 39), "seed {seed}: node {i}'s table");
            assert_eq!(n.member(id(0)).map(|m| m.status), Some(Status::Alive));
        }
        assert_ne!(net.nodes[1].view_digest(), digest);
        assert!(net.must_resyncs().is_empty(), "seed {seed}: a move is not a death");
        net.assert_incarnations_bounded();
    }
}

#[test]
fn token_lists_are_checked_before_they_are_announced() {
    let mut me = Membership::new(member(0), MembershipConfig::default(), 1);
    assert_eq!(me.set_tokens(0, vec![]), Err(TokensError::Count { count: 0, max: 256 }));
    assert_eq!(me.set_tokens(0, vec![5, 3]), Err(TokensError::Unsorted));
    assert_eq!(me.set_tokens(0, vec![3, 3]), Err(TokensError::Unsorted));
    let many: Vec<u64> = (0..257).collect();
    assert!(matches!(me.set_tokens(0, many), Err(TokensError::Count { count: 257, .. })));
    assert_eq!(me.incarnation(), 0, "nothing announced");
    let same = me.me().tokens.clone();
    assert_eq!(me.set_tokens(0, same), Ok(false), "unchanged");
    assert_eq!(me.set_tokens(0, vec![1, 2, 3]), Ok(true));
    assert_eq!((me.me().tokens.clone(), me.incarnation()), (vec![1, 2, 3], 1));
    me.leave(1);
    assert_eq!(me.set_tokens(2, vec![4]), Ok(false), "a node that left stays put");
}

// ---- No input panics ----

fn any_status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Alive),
        Just(Status::Suspect),
        Just(Status::Dead),
        Just(Status::Left),
        Just(Status::Syncing),
    ]
}

fn any_member() -> impl Strategy<Value = Member> {
    (
        0u64..6,
        prop_oneof![Just(0usize), Just(10), Just(300)],
        prop_oneof![Just(0usize), Just(3), Just(1100)],
        any_status(),
        prop_oneof![0u64..4, Just(MAX_INCARNATION), Just(u64::MAX)],
    )
        .prop_map(|(i, addr_len, tokens, status, incarnation)| Member {
            id: id(i as usize),
            addr: "a".repeat(addr_len),
            tokens: vec![7; tokens],
            status,
            incarnation,
            joining: i % 2 == 1,
            next_tokens: (i % 3 == 2).then(|| vec![9; tokens % 300]),
            // Every fourth record carries labels, some of them over the bounds.
            labels: match i % 4 {
                0 => [("zone".to_string(), "a".repeat(addr_len.min(70)))].into_iter().collect(),
                _ => Default::default(),
            },
        })
}

fn any_message() -> impl Strategy<Value = MembershipMessage> {
    let updates = || prop::collection::vec(any_member(), 0..12);
    prop_oneof![
        (any::<u64>(), any_member(), updates()).prop_map(|(seq, sender, updates)| {
            MembershipMessage::Ping { seq, sender, updates, clock: None }
        }),
        (0u64..4, prop::option::of(0usize..6), any_member(), updates()).prop_map(
            |(seq, on_behalf, sender, updates)| MembershipMessage::Ack {
                seq,
                on_behalf: on_behalf.map(id),
                sender,
                updates,
                clock: None
            }
        ),
        (any::<u64>(), 0usize..6, "[a-z]{0,300}", any_member(), updates()).prop_map(
            |(seq, target, target_addr, sender, updates)| MembershipMessage::PingReq {
                seq,
                target: id(target),
                target_addr,
                sender,
                updates,
                clock: None
            }
        ),
        (updates(), any::<bool>(), any::<bool>()).prop_map(|(members, reply, partial)| {
            MembershipMessage::PushPull { members, reply, partial, clock: None }
        }),
        any_member().prop_map(|member| MembershipMessage::Join { member, clock: None }),
        (any_member(), updates()).prop_map(|(sender, updates)| MembershipMessage::Gossip {
            sender,
            updates,
            clock: None
        }),
    ]
}

fn any_config() -> impl Strategy<Value = MembershipConfig> {
    let ms = || prop_oneof![Just(0u64), 1u64..2000, Just(u64::MAX)];
    let count = || prop_oneof![Just(0usize), 1usize..10, Just(usize::MAX)];
    (
        (ms(), ms(), ms(), ms()),
        (count(), count(), count()),
        (
            prop_oneof![Just(0u64), 1u64..10, Just(u64::MAX)],
            prop_oneof![Just(0u32), Just(u32::MAX)],
        ),
        prop::option::of(ms()),
    )
        .prop_map(
            |(
                (probe, timeout, push_pull, retry),
                (indirect, piggy, fanout),
                (mult, rmult),
                fixed,
            )| {
                MembershipConfig {
                    probe_interval_ms: probe,
                    probe_timeout_ms: timeout,
                    push_pull_interval_ms: push_pull,
                    join_retry_ms: retry,
                    indirect_probes: indirect,
                    max_piggyback: piggy,
                    leave_fanout: fanout,
                    suspicion_mult: mult,
                    retransmit_mult: rmult,
                    suspicion_timeout_ms: fixed,
                    ..Default::default()
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Extreme configurations (zero and maximal intervals, counts and multipliers) run a
    /// small cluster through joins, a crash and a leave without panicking.
    #[test]
    fn any_config_runs(config in any_config(), seed: u64) {
        let mut net = Net::with_config(4, seed, config);
        net.join_all_through(0);
        net.run_for(SEC);
        net.down.insert(3);
        net.run_for(SEC);
        net.nodes[1].leave(net.now);
        net.drain(1);
        net.run_for(SEC);
        prop_assert!(net.nodes.iter().all(|n| n.size() <= 4));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary, malformed and oversized messages interleaved with ticks never panic,
    /// never make this node's own record Suspect or Dead, and keep it in bounds.
    #[test]
    fn no_input_panics(
        inputs in prop::collection::vec((0usize..6, any_message(), 0u64..700), 1..60),
        tiny in any::<bool>(),
    ) {
        let config = if tiny {
            MembershipConfig {
                max_members: 3,
                max_piggyback: 1,
                max_relays: 1,
                ..Default::default()
            }
        } else {
            MembershipConfig::default()
        };
        let mut me = Membership::new(member(0), config, 5);
        let mut now = 0;
        for (from, msg, dt) in inputs {
            now += dt;
            me.handle(now, id(from), msg);
            me.tick(now);
            while let Some(out) = me.poll_output() {
                if let MembershipOutput::Send { addr, .. } = out {
                    prop_assert!(addr.len() <= 255);
                }
            }
            prop_assert!(matches!(
                me.me().status,
                Status::Alive | Status::Syncing | Status::Left
            ));
            prop_assert!(me.incarnation() <= MAX_INCARNATION);
            prop_assert!(me.members().all(|m| m.tokens.len() <= 256 && m.addr.len() <= 255));
            prop_assert!(me.size() <= me.config().max_members.max(1) + 1);
            if let Some(d) = me.next_deadline() {
                prop_assert!(d >= now, "deadline {d} before now {now}");
            }
        }
    }
}
