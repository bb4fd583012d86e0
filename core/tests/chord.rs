//! Chord on the simulator: building a ring by joins, leaving, and the paper's
//! experiments at sizes CI can afford (the full tables: `docs/simulation.md`).

use dhrt_core::{
    entry::NodeId,
    ring::Vnode,
    sim::{
        check_seeds,
        chord::{ChordConfig, ChordNode},
        experiments::{load_balance, path_length, simultaneous_failures, stable_ring},
        ChordProcess, NetConfig, Sim,
    },
};

fn fast_config(n: usize) -> ChordConfig {
    ChordConfig {
        successors: ChordConfig::successors_for(n),
        stabilize_ms: Some((500, 1500)),
        rpc_timeout_ms: 300,
        ..ChordConfig::default()
    }
}

/// Checks every running node's successor and predecessor against the sorted ring.
fn ring_is_correct(sim: &Sim<ChordProcess>) -> Result<(), String> {
    let mut ring: Vec<Vnode> = sim.processes().map(|(_, p)| p.node.me()).collect();
    ring.sort();
    let n = ring.len();
    for (i, v) in ring.iter().enumerate() {
        let node = &sim.process(v.node).unwrap().node;
        let (succ, pred) = (ring[(i + 1) % n], ring[(i + n - 1) % n]);
        if node.successor() != succ {
            return Err(format!("{v:?}: successor {:?}, want {succ:?}", node.successor()));
        }
        if node.predecessor() != Some(pred) {
            return Err(format!("{v:?}: predecessor {:?}, want {pred:?}", node.predecessor()));
        }
    }
    Ok(())
}

#[test]
fn nodes_joining_one_by_one_form_a_correct_ring() {
    check_seeds("nodes_joining_one_by_one_form_a_correct_ring", 1, 5, |seed| {
        let n = 40;
        let config = fast_config(n);
        let mut sim: Sim<ChordProcess> = Sim::new(seed, NetConfig::lan());
        let first = Vnode { pos: sim.rng().next_u64(), node: NodeId(1) };
        sim.add(first.node, ChordProcess::new(ChordNode::new(first, config, seed)));
        for i in 2..=n as u64 {
            let v = Vnode { pos: sim.rng().next_u64(), node: NodeId(i) };
            let running = sim.running();
            let known = running[sim.rng().index(running.len()).unwrap()];
            let known = sim.process(known).unwrap().node.me();
            sim.add(v.node, ChordProcess::new(ChordNode::new(v, config, seed + i)));
            sim.act(v.node, |p, now| p.node.join(now, known));
            sim.run_for(300);
        }
        // Stabilization converges in O(N) rounds in the worst case; a few hundred
        // simulated seconds is ample for 40 nodes.
        sim.run_for(200_000);
        ring_is_correct(&sim)?;
        // Lookups from anywhere find the true owner.
        let mut ring: Vec<Vnode> = sim.processes().map(|(_, p)| p.node.me()).collect();
        ring.sort();
        for _ in 0..200 {
            let origin = ring[sim.rng().index(ring.len()).unwrap()].node;
            let target = sim.rng().next_u64();
            sim.act(origin, |p, now| p.node.lookup(now, target));
        }
        sim.run_for(5_000);
        let mut done = 0;
        for (_, _, ev) in sim.take_events() {
            if let dhrt_core::sim::chord::ChordOutput::Lookup(r) = ev {
                let j = ring.partition_point(|v| v.pos < r.target);
                let want = ring.get(j).or(ring.first()).copied();
                if r.owner != want {
                    return Err(format!(
                        "lookup of {} found {:?}, want {want:?}",
                        r.target, r.owner
                    ));
                }
                done += 1;
            }
        }
        if done != 200 {
            return Err(format!("{done} of 200 lookups finished"));
        }
        Ok(())
    });
}

#[test]
fn a_graceful_leave_is_patched_at_once_and_a_crash_by_stabilization() {
    check_seeds(
        "a_graceful_leave_is_patched_at_once_and_a_crash_by_stabilization",
        10,
        5,
        |seed| {
            let config = fast_config(30);
            let (mut sim, ring) = stable_ring(30, config, NetConfig::lan(), seed);
            let leaver = ring[7];
            sim.act(leaver.node, |p, _| p.node.leave());
            sim.run_for(50);
            sim.remove(leaver.node);
            let before = &sim.process(ring[6].node).unwrap().node;
            if before.successor() != ring[8] {
                return Err(format!(
                    "predecessor of the leaver points to {:?}",
                    before.successor()
                ));
            }
            if sim.process(ring[8].node).unwrap().node.predecessor() != Some(ring[6]) {
                return Err("successor of the leaver did not adopt its predecessor".into());
            }
            sim.crash(ring[20].node);
            sim.remove(ring[20].node);
            sim.run_for(30_000);
            ring_is_correct(&sim)
        },
    );
}

#[test]
fn path_length_is_half_log2_n_plus_the_owner() {
    // Hops count the remote nodes that answered, the owner included and the origin not:
    // the paper's ½·log2 N fingers, plus one.
    for k in [6u32, 8, 10] {
        let n = 1usize << k;
        let s = path_length(n, 10 * n, u64::from(k));
        let expected = 0.5 * f64::from(k) + 1.0;
        assert_eq!(s.failed, 0, "N = {n}");
        assert!(
            (s.path.mean - expected).abs() < 0.35,
            "N = {n}: mean {} vs {expected}",
            s.path.mean
        );
        assert!(s.path.p99 <= f64::from(k) + 2.0, "N = {n}: p99 {}", s.path.p99);
    }
}

#[test]
fn lookups_survive_simultaneous_failures_without_stabilization() {
    let mut last_timeouts = -1.0;
    for p in [0.1, 0.3, 0.5] {
        let s = simultaneous_failures(1000, 20, p, 1000, 7);
        assert_eq!(s.failed, 0, "every lookup reaches the live successor at p = {p}");
        assert!(s.timeouts.mean > last_timeouts, "timeouts grow with the failed fraction");
        last_timeouts = s.timeouts.mean;
    }
}

#[test]
fn virtual_nodes_balance_the_load_as_in_the_paper() {
    let one = load_balance(10_000, 1_000_000, 1, 3);
    let twenty = load_balance(10_000, 1_000_000, 20, 3);
    assert!((one.p99 / one.mean - 4.7).abs() < 0.5, "r = 1: p99/mean {}", one.p99 / one.mean);
    assert_eq!(one.p1, 0.0, "with one token some nodes hold nothing");
    assert!(twenty.p99 / twenty.mean <= 1.8, "r = 20: p99/mean {}", twenty.p99 / twenty.mean);
    assert!(twenty.p1 / twenty.mean >= 0.4, "r = 20: p1/mean {}", twenty.p1 / twenty.mean);
}
