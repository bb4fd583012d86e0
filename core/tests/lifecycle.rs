//! The node's lifecycle on the simulator: hand-off before serving (joins, restarts with
//! and without disk), cleaning after the ring changes, tombstone collection after the
//! grace period, and the rejoin-empty rule that keeps deleted keys deleted.

use bytes::Bytes;
use dhrt_core::{
    entry::NodeId,
    membership::{MembershipEvent, Status},
    node::{Node, NodeConfig, NodeEvent},
    proto::client::{Consistency, Op, Reply},
    sim::{
        check_seeds, memory_cluster, safety::Workload, sim_addr, NetConfig, NodeOutput,
        NodeProcess, Sim,
    },
    store::{MemStore, Store},
};

type Cluster = Sim<NodeProcess<MemStore>>;

const C: &str = "users";

/// Sends `op` to `node` and runs until it answers (or 10 simulated seconds pass).
fn call(sim: &mut Cluster, node: u64, op: Op) -> Option<Reply> {
    dhrt_core::sim::call(sim, NodeId(node), op)
}

fn set(key: &str, value: &str) -> Op {
    Op::Set {
        collection: C.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        consistency: Consistency::Quorum,
        ttl_ms: None,
    }
}

fn del(key: &str) -> Op {
    Op::Del {
        collection: C.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        consistency: Consistency::Quorum,
    }
}

fn get(key: &str, consistency: Consistency) -> Op {
    Op::Get { collection: C.into(), key: Bytes::copy_from_slice(key.as_bytes()), consistency }
}

fn status(sim: &Cluster, of: u64, seen_by: u64) -> Option<Status> {
    sim.process(NodeId(seen_by))?.node.membership().member(NodeId(of)).map(|m| m.status)
}

fn entries(sim: &Cluster, node: u64) -> u64 {
    sim.process(NodeId(node)).map_or(0, |p| p.node.replica().store().stats(C).unwrap().entries)
}

/// Whether every key `node` replicates under its current table is in its store.
fn holds_its_ranges(sim: &Cluster, node: u64, keys: &[String]) -> Result<(), String> {
    let n = &sim.process(NodeId(node)).ok_or("not running")?.node;
    for k in keys {
        let pos = n.replica().position(C, k.as_bytes());
        let replicas = n.table().preference_list(pos, n.config().replicas);
        if replicas.contains(&NodeId(node)) && n.replica().get(C, k.as_bytes()).unwrap().is_none() {
            return Err(format!("node {node} serves {k} without holding it"));
        }
    }
    Ok(())
}

fn fast(c: &mut NodeConfig) {
    c.sync_interval_ms = 2_000;
    c.gc_interval_ms = 1_000;
}

#[test]
fn a_lone_node_serves_at_once() {
    let mut sim = memory_cluster(1, NetConfig::lan(), 1, |_| {});
    assert_eq!(status(&sim, 1, 1), Some(Status::Alive));
    assert!(matches!(call(&mut sim, 1, set("a", "1")), Some(Reply::Written { .. })));
    let state = &sim.process(NodeId(1)).unwrap().state;
    assert!(state.last_full_sync_ms.is_some(), "its first round counts as a full sync");
}

#[test]
fn a_joining_node_streams_its_ranges_before_it_serves_and_old_owners_clean_up() {
    check_seeds("a_joining_node_streams_its_ranges_before_it_serves", 1, 3, |seed| {
        let mut sim = memory_cluster(3, NetConfig::lan(), seed, fast);
        let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            let reply = call(&mut sim, 1 + i as u64 % 3, set(k, "v"));
            if !matches!(reply, Some(Reply::Written { .. })) {
                return Err(format!("write {k}: {reply:?}"));
            }
        }
        assert_eq!((entries(&sim, 1), entries(&sim, 2), entries(&sim, 3)), (300, 300, 300));
        sim.take_events();
        for new in [4u64, 5] {
            let mut config = NodeConfig::new(NodeId(new), sim_addr(NodeId(new)));
            config.seed = seed ^ new;
            fast(&mut config);
            let node = Node::new(config, MemStore::new()).map_err(|e| e.to_string())?;
            sim.add(NodeId(new), NodeProcess::new(node).joining(sim_addr(NodeId(1))));
            // Step until the newcomer serves; at that moment it must hold its ranges.
            let mut serving = false;
            for _ in 0..600 {
                sim.run_for(50);
                if status(&sim, new, new) == Some(Status::Alive) {
                    holds_its_ranges(&sim, new, &keys)?;
                    serving = true;
                    break;
                }
            }
            if !serving {
                return Err(format!("node {new} never started serving"));
            }
        }
        let events = sim.take_events();
        let handoff = |id: u64| {
            events.iter().filter_map(move |(_, n, e)| match e {
                NodeOutput::Event(NodeEvent::Handoff(p)) if *n == NodeId(id) => Some(*p),
                _ => None,
            })
        };
        for id in [4, 5] {
            let last = handoff(id).last().ok_or(format!("node {id} reported no progress"))?;
            if last.done != last.total || last.total == 0 || last.entries == 0 {
                return Err(format!("node {id}'s hand-off ended at {last:?}"));
            }
        }
        // Cleaning: a few rounds later every key lives on exactly its 3 replicas.
        sim.run_for(20_000);
        let total: u64 = (1..=5).map(|i| entries(&sim, i)).sum();
        if total != 300 * 3 {
            let per: Vec<u64> = (1..=5).map(|i| entries(&sim, i)).collect();
            return Err(format!("{total} entries stored after cleaning, not 900: {per:?}"));
        }
        let cleaned: u64 = events
            .iter()
            .chain(sim.take_events().iter())
            .filter_map(|(_, _, e)| match e {
                NodeOutput::Event(NodeEvent::Cleaned { entries, .. }) => Some(*entries),
                _ => None,
            })
            .sum();
        if cleaned == 0 {
            return Err("no node reported cleaning".into());
        }
        for i in 1..=5 {
            holds_its_ranges(&sim, i, &keys)?;
        }
        for (i, k) in keys.iter().enumerate().step_by(7) {
            match call(&mut sim, 1 + i as u64 % 5, get(k, Consistency::All)) {
                Some(Reply::Value { value: Some(_), .. }) => {}
                other => return Err(format!("{k} after the joins: {other:?}")),
            }
        }
        Ok(())
    });
}

#[test]
fn a_node_restarted_without_its_disk_does_not_serve_before_it_caught_up() {
    check_seeds("a_node_restarted_without_its_disk", 1, 3, |seed| {
        let mut sim = memory_cluster(3, NetConfig::lan(), seed, fast);
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        for k in &keys {
            if !matches!(call(&mut sim, 1, set(k, "v")), Some(Reply::Written { .. })) {
                return Err(format!("write {k}"));
            }
        }
        // Node 2 loses its disk and comes straight back, before anyone suspects it.
        let old = sim.crash(NodeId(2)).ok_or("running")?;
        let fresh = old.restarted(false).map_err(|e| e.to_string())?;
        sim.restart(NodeId(2), fresh);
        sim.run_for(50);
        if status(&sim, 2, 2) != Some(Status::Syncing) {
            return Err(format!("restarted node 2 is {:?}, not syncing", status(&sim, 2, 2)));
        }
        // Reads through node 2 while it hands off still see every acknowledged write.
        for k in &keys {
            match call(&mut sim, 2, get(k, Consistency::Quorum)) {
                Some(Reply::Value { value: Some(_), .. }) => {}
                other => return Err(format!("{k} during node 2's hand-off: {other:?}")),
            }
        }
        sim.run_for(20_000);
        if status(&sim, 2, 1) != Some(Status::Alive) || entries(&sim, 2) != 100 {
            return Err(format!(
                "node 2 is {:?} with {} keys",
                status(&sim, 2, 1),
                entries(&sim, 2)
            ));
        }
        Ok(())
    });
}

#[test]
fn tombstones_are_purged_after_the_grace_period_and_deleted_keys_stay_deleted() {
    check_seeds("tombstones_are_purged_after_the_grace_period", 1, 3, |seed| {
        let grace = 30_000;
        let mut sim = memory_cluster(3, NetConfig::lan(), seed, |c| {
            fast(c);
            c.tombstone_grace_ms = grace;
        });
        for i in 0..60 {
            if !matches!(call(&mut sim, 1, set(&format!("k{i}"), "v")), Some(Reply::Written { .. }))
            {
                return Err(format!("write k{i}"));
            }
        }
        sim.run_for(5_000);
        // Node 3 goes down with its disk, holding every value; the deletes miss it.
        let disk = sim.crash(NodeId(3)).ok_or("running")?;
        for i in 0..30 {
            if !matches!(
                call(&mut sim, 1 + i % 2, del(&format!("k{i}"))),
                Some(Reply::Written { .. })
            ) {
                return Err(format!("delete k{i}"));
            }
        }
        let tombstones = |sim: &Cluster, n: u64| {
            sim.process(NodeId(n)).unwrap().node.replica().store().stats(C).unwrap().tombstones
        };
        if (tombstones(&sim, 1), tombstones(&sim, 2)) != (30, 30) {
            return Err("both live replicas keep the tombstones".into());
        }
        sim.run_for(grace + 20_000);
        let purged: u64 =
            [1, 2].iter().map(|&n| sim.process(NodeId(n)).unwrap().node.gc().purged()).sum();
        if (tombstones(&sim, 1), tombstones(&sim, 2), purged) != (0, 0, 60) {
            return Err(format!(
                "after the grace: {} and {} tombstones, {purged} purged",
                tombstones(&sim, 1),
                tombstones(&sim, 2)
            ));
        }
        // Node 3 returns with its old values, long after the grace: it rejoins empty.
        sim.take_events();
        sim.restart(NodeId(3), disk.restarted(true).map_err(|e| e.to_string())?);
        sim.run_for(30_000);
        let wiped = sim.take_events().into_iter().any(|(_, n, e)| {
            n == NodeId(3) && matches!(e, NodeOutput::Event(NodeEvent::Wiped { .. }))
        });
        if !wiped {
            return Err("node 3 did not drop its stale data".into());
        }
        if status(&sim, 3, 1) != Some(Status::Alive) {
            return Err(format!("node 3 is {:?}", status(&sim, 3, 1)));
        }
        for i in 0..60 {
            let k = format!("k{i}");
            let want = if i < 30 { None } else { Some(Bytes::from("v")) };
            for via in 1..=3 {
                match call(&mut sim, via, get(&k, Consistency::All)) {
                    Some(Reply::Value { value, .. }) if value == want => {}
                    other => return Err(format!("{k} via node {via}: {other:?}, want {want:?}")),
                }
            }
            let held = sim.process(NodeId(3)).unwrap().node.replica().get(C, k.as_bytes());
            if i < 30 && held.unwrap().is_some() {
                return Err(format!("deleted {k} is back on node 3"));
            }
        }
        Ok(())
    });
}

#[test]
fn a_short_absence_keeps_the_disk_and_catches_up() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 5, fast);
    for i in 0..20 {
        call(&mut sim, 1, set(&format!("k{i}"), "v"));
    }
    sim.run_for(5_000);
    let disk = sim.crash(NodeId(3)).unwrap();
    for i in 0..10 {
        call(&mut sim, 1, del(&format!("k{i}")));
    }
    sim.run_for(10_000);
    sim.take_events();
    sim.restart(NodeId(3), disk.restarted(true).unwrap());
    sim.run_for(20_000);
    let events = sim.take_events();
    assert!(!events.iter().any(
        |(_, n, e)| *n == NodeId(3) && matches!(e, NodeOutput::Event(NodeEvent::Wiped { .. }))
    ));
    assert!(events.iter().any(|(_, n, e)| *n == NodeId(3)
        && matches!(
            e,
            NodeOutput::Event(NodeEvent::Membership(MembershipEvent::StatusChanged {
                to: Status::Alive,
                ..
            }))
        )));
    let node3 = &sim.process(NodeId(3)).unwrap().node;
    for i in 0..20 {
        let e = node3.replica().get(C, format!("k{i}").as_bytes()).unwrap().unwrap();
        assert_eq!(e.is_tombstone(), i < 10, "k{i} on node 3");
    }
}

#[test]
fn a_leaving_node_hands_its_ranges_to_the_next_owners_before_it_announces() {
    check_seeds("a_leaving_node_hands_its_ranges", 1, 4, |seed| {
        // Rounds far apart, so only the leave's own hand-off can move data in time.
        let mut sim = memory_cluster(5, NetConfig::lan(), seed, |c| {
            c.sync_interval_ms = 3_600_000;
            c.replicas = 3;
        });
        let leaver = 3u64;
        // Written at `one` through the leaver: some keys may exist only on it.
        let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        for k in &keys {
            let op = Op::Set {
                collection: C.into(),
                key: Bytes::copy_from_slice(k.as_bytes()),
                value: Bytes::from_static(b"v"),
                consistency: Consistency::One,
                ttl_ms: None,
            };
            if !matches!(call(&mut sim, leaver, op), Some(Reply::Written { .. })) {
                return Err(format!("{k} was not written"));
            }
        }
        sim.act(NodeId(leaver), |p, now| p.node.leave(now));
        let start = sim.now();
        while !sim.process(NodeId(leaver)).unwrap().node.left() {
            if sim.now() - start > 60_000 {
                return Err("no leave in 60 s".into());
            }
            sim.run_for(50);
        }
        let n = &sim.process(NodeId(leaver)).unwrap().node;
        if !n.handed_off() {
            return Err("a hand-off session failed".into());
        }
        let progress = n.leave_progress().ok_or("no leave progress")?;
        if progress.total == 0 || progress.done != progress.total {
            return Err(format!("progress {progress:?}"));
        }
        sim.remove(NodeId(leaver));
        sim.run_for(3_000);
        for id in [1u64, 2, 4, 5] {
            if status(&sim, leaver, id) != Some(Status::Left) {
                return Err(format!("node {id} does not see the leaver as left"));
            }
            holds_its_ranges(&sim, id, &keys)?;
        }
        for k in &keys {
            let got = call(&mut sim, 1, get(k, Consistency::All));
            if !matches!(&got, Some(Reply::Value { value: Some(v), .. }) if v == "v") {
                return Err(format!("{k} read back as {got:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn a_node_told_to_join_after_serving_alone_hands_off_before_serving_again() {
    check_seeds("late_join", 1, 3, |seed| {
        let mut sim = memory_cluster(3, NetConfig::lan(), seed, fast);
        let keys: Vec<String> = (0..150).map(|i| format!("user:{i}")).collect();
        for k in &keys {
            if !matches!(call(&mut sim, 1, set(k, "v")), Some(Reply::Written { .. })) {
                return Err(format!("{k} was not written"));
            }
        }
        // A fourth node starts alone, serves (its first round finds nobody), and only
        // then is told to join — what a host does when the join arrives after the first
        // timer fired.
        let id = NodeId(4);
        let config = NodeConfig::new(id, sim_addr(id));
        let node = Node::new(config, MemStore::new()).map_err(|e| e.to_string())?;
        sim.add(id, NodeProcess::new(node));
        sim.run_for(500);
        if status(&sim, 4, 4) != Some(Status::Alive) {
            return Err("a lone node should serve at once".into());
        }
        sim.act(id, |p, now| p.node.join(now, sim_addr(NodeId(1))));
        let start = sim.now();
        loop {
            sim.run_for(100);
            let all_alive = (1..=4).all(|i| status(&sim, 4, i) == Some(Status::Alive));
            if all_alive {
                break;
            }
            if sim.now() - start > 60_000 {
                return Err("the late joiner never became alive everywhere".into());
            }
        }
        holds_its_ranges(&sim, 4, &keys)?;
        if entries(&sim, 4) == 0 {
            return Err("the late joiner holds nothing".into());
        }
        Ok(())
    });
}

#[test]
fn a_node_restarted_while_another_is_down_serves_without_waiting_for_it() {
    check_seeds("a_node_restarted_while_another_is_down", 1, 8, |seed| {
        let mut sim = memory_cluster(3, NetConfig::lan(), seed, fast);
        let timeout = sim.process(NodeId(2)).ok_or("running")?.node.config().sync_timeout_ms;
        let mut w = Workload::new(40, 0.2);
        w.run(&mut sim, 4_000, 50);
        w.drain(&mut sim);
        // Node 3 dies for good; node 2 restarts on its disk at once, before anyone
        // suspects node 3, so node 2 first learns node 3 as a serving owner.
        sim.crash(NodeId(3)).ok_or("node 3 not running")?;
        let disk = sim.crash(NodeId(2)).ok_or("node 2 not running")?;
        sim.restart(NodeId(2), disk.restarted(true).map_err(|e| e.to_string())?);
        let restarted_at = sim.now();
        // Writes go on through node 1 while node 2 hands off.
        while status(&sim, 2, 2) != Some(Status::Alive) {
            if sim.now() - restarted_at > timeout {
                return Err(format!(
                    "node 2 still {:?} {} ms after its restart",
                    status(&sim, 2, 2),
                    sim.now() - restarted_at
                ));
            }
            w.run(&mut sim, 100, 50);
        }
        let waited = sim.now() - restarted_at;
        if waited > timeout / 2 {
            return Err(format!("node 2 served only {waited} ms after its restart"));
        }
        w.run(&mut sim, 4_000, 50);
        w.drain(&mut sim);
        sim.run_for(10_000);
        let report = w.verify(&mut sim, false)?;
        if report.sets_acked == 0 || report.keys_checked == 0 {
            return Err(format!("nothing was verified: {report:?}"));
        }
        Ok(())
    });
}
