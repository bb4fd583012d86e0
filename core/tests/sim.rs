//! The simulator itself: determinism, and each fault it can inject.

use dhrt_core::{
    entry::NodeId,
    sim::{check_seeds, Effect, Latency, NetConfig, Process, Sim},
    Millis,
};

/// Pings its peers every 100 ms of its local time; answers pings; reports both.
#[derive(Debug, Clone)]
struct Pinger {
    peers: Vec<NodeId>,
    next_ping: Option<Millis>,
    seq: u64,
    out: Vec<Effect<Msg, Seen>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Msg {
    Ping(u64),
    Pong(u64),
}

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Ping { from: NodeId, local: Millis },
    Pong { from: NodeId },
    Tick { local: Millis },
}

impl Pinger {
    fn new(peers: Vec<NodeId>) -> Self {
        Pinger { peers, next_ping: None, seq: 0, out: Vec::new() }
    }
}

impl Process for Pinger {
    type Msg = Msg;
    type Event = Seen;
    fn start(&mut self, now: Millis) {
        self.next_ping = Some(now + 100);
    }
    fn handle(&mut self, now: Millis, from: NodeId, msg: Msg) {
        match msg {
            Msg::Ping(s) => {
                self.out.push(Effect::Event(Seen::Ping { from, local: now }));
                self.out.push(Effect::Send { to: from, msg: Msg::Pong(s) });
            }
            Msg::Pong(_) => self.out.push(Effect::Event(Seen::Pong { from })),
        }
    }
    fn tick(&mut self, now: Millis) {
        if self.next_ping.is_some_and(|t| t <= now) {
            self.out.push(Effect::Event(Seen::Tick { local: now }));
            for p in self.peers.clone() {
                self.seq += 1;
                self.out.push(Effect::Send { to: p, msg: Msg::Ping(self.seq) });
            }
            self.next_ping = Some(now + 100);
        }
    }
    fn poll(&mut self) -> Option<Effect<Msg, Seen>> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }
    fn next_deadline(&self) -> Option<Millis> {
        self.next_ping
    }
}

fn world(seed: u64, net: NetConfig, n: u64) -> Sim<Pinger> {
    let mut sim = Sim::new(seed, net);
    for i in 1..=n {
        let peers = (1..=n).filter(|j| *j != i).map(NodeId).collect();
        sim.add(NodeId(i), Pinger::new(peers));
    }
    sim
}

fn trace(seed: u64) -> Vec<(Millis, NodeId, Seen)> {
    let net = NetConfig {
        latency: Latency::Exponential { min: 1, mean: 20.0 },
        loss: 0.1,
        duplicate: 0.1,
    };
    let mut sim = world(seed, net, 5);
    sim.run_for(2_000);
    sim.take_events()
}

#[test]
fn the_same_seed_replays_the_same_run() {
    assert_eq!(trace(7), trace(7));
    assert_ne!(trace(7), trace(8));
}

#[test]
fn loss_and_duplication_follow_their_rates() {
    let mut sim = world(1, NetConfig::lan().with_loss(0.5), 4);
    sim.run_for(10_000);
    let s = sim.stats();
    let lost = s.lost as f64 / s.sent as f64;
    assert!((lost - 0.5).abs() < 0.05, "lost {lost}");
    let mut sim = world(1, NetConfig::lan().with_duplicates(1.0), 2);
    sim.run_for(1_050);
    let s = sim.stats();
    assert_eq!(s.duplicated, s.sent, "every message duplicated");
    let pings = sim.take_events().iter().filter(|e| matches!(e.2, Seen::Ping { .. })).count();
    assert_eq!(pings as u64, 2 * 10 * 2, "10 rounds × 2 nodes, each ping delivered twice");
}

#[test]
fn partitions_cut_and_heal_restores() {
    let mut sim = world(2, NetConfig::lan(), 4);
    sim.partition(&[&[NodeId(1), NodeId(2)], &[NodeId(3), NodeId(4)]]);
    sim.run_for(1_000);
    let crossed = sim.take_events().into_iter().any(|(_, to, e)| match e {
        Seen::Ping { from, .. } => (from.0 <= 2) != (to.0 <= 2),
        _ => false,
    });
    assert!(!crossed, "no ping crossed the partition");
    assert!(sim.stats().partitioned > 0);
    sim.heal();
    sim.run_for(1_000);
    let crossed = sim.take_events().into_iter().any(|(_, to, e)| match e {
        Seen::Ping { from, .. } => (from.0 <= 2) != (to.0 <= 2),
        _ => false,
    });
    assert!(crossed, "after the heal pings cross again");
}

#[test]
fn crashed_hosts_receive_nothing_and_restart_with_the_state_given() {
    let mut sim = world(3, NetConfig::lan(), 3);
    sim.run_for(500);
    let state = sim.crash(NodeId(2)).expect("running");
    assert!(!sim.is_running(NodeId(2)));
    sim.take_events();
    sim.run_for(1_000);
    assert!(sim.take_events().iter().all(|(_, at, _)| *at != NodeId(2)));
    assert!(sim.stats().to_dead > 0);
    let seq_before = state.seq;
    sim.restart(NodeId(2), state);
    sim.run_for(1_000);
    assert!(sim.process(NodeId(2)).unwrap().seq > seq_before, "kept its state and went on");
}

#[test]
fn skewed_clocks_and_slow_peers() {
    let mut sim =
        world(4, NetConfig { latency: Latency::Uniform { min: 5, max: 5 }, ..NetConfig::lan() }, 2);
    sim.set_skew(NodeId(1), 10_000);
    sim.set_slow(NodeId(2), 200);
    sim.run_for(1_000);
    let events = sim.take_events();
    // Node 1 sees its local clock 10 s ahead of global time.
    let ticks: Vec<_> = events
        .iter()
        .filter_map(|(t, n, e)| match e {
            Seen::Tick { local } if *n == NodeId(1) => Some((*t, *local)),
            _ => None,
        })
        .collect();
    assert!(ticks.iter().all(|(global, local)| local - global == 10_000), "{ticks:?}");
    // Every message to or from node 2 takes 5 + 200 ms.
    let first_ping_at_2 = events
        .iter()
        .find(|(_, n, e)| *n == NodeId(2) && matches!(e, Seen::Ping { .. }))
        .map(|(t, _, _)| *t)
        .unwrap();
    assert!(first_ping_at_2 >= 205, "slow peer: {first_ping_at_2}");
}

#[test]
fn a_failing_seed_is_reported_with_its_replay_command() {
    let outcome = std::panic::catch_unwind(|| {
        check_seeds("demo", 100, 10, |seed| if seed == 104 { Err("boom".into()) } else { Ok(()) })
    });
    let message = *outcome.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("seed 104") && message.contains("DHRT_SIM_SEED=104"), "{message}");
    assert_eq!(check_seeds("ok", 0, 3, |_| Ok(())), 3);
}
