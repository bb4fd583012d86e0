//! Removing a dead member for good, on the simulator: the other owners of its ranges
//! hand them to the nodes that inherit them before it is announced `Left`, writes made
//! meanwhile reach the inheritors, a member that is not dead cannot be removed, and one
//! that comes back stops its removal.

use bytes::Bytes;
use dhrt_core::{
    entry::NodeId,
    membership::Status,
    node::NodeConfig,
    proto::client::{Consistency, ErrorCode, Op, Reply},
    sim::{check_seeds, memory_cluster, NetConfig, NodeProcess, Sim},
    store::MemStore,
};

type Cluster = Sim<NodeProcess<MemStore>>;

const C: &str = "users";

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

fn get(key: &str, consistency: Consistency) -> Op {
    Op::Get { collection: C.into(), key: Bytes::copy_from_slice(key.as_bytes()), consistency }
}

fn remove(id: u64, force: bool) -> Op {
    Op::RemoveMember { id: NodeId(id), force }
}

fn status(sim: &Cluster, of: u64, seen_by: u64) -> Option<Status> {
    sim.process(NodeId(seen_by))?.node.membership().member(NodeId(of)).map(|m| m.status)
}

/// Runs until every node in `by` sees `of` with `want`, for at most `ms`.
fn wait_status(sim: &mut Cluster, of: u64, by: &[u64], want: Status, ms: u64) -> bool {
    let start = sim.now();
    while sim.now() - start < ms {
        if by.iter().all(|b| status(sim, of, *b) == Some(want)) {
            return true;
        }
        sim.run_for(100);
    }
    false
}

/// Anti-entropy rounds far apart, so that only the removal's own hand-off moves data.
fn slow_sync(c: &mut NodeConfig) {
    c.sync_interval_ms = 3_600_000;
    c.replicas = 3;
}

/// Keys whose owners include `member` on `node`'s current table.
fn owned_by(sim: &Cluster, node: u64, member: u64, keys: &[String]) -> Vec<String> {
    let n = &sim.process(NodeId(node)).unwrap().node;
    keys.iter()
        .filter(|k| {
            let pos = n.replica().position(C, k.as_bytes());
            n.table().preference_list(pos, 3).contains(&NodeId(member))
        })
        .cloned()
        .collect()
}

/// How many of `survivors` hold `key` in their stores.
fn copies(sim: &Cluster, survivors: &[u64], key: &str) -> usize {
    survivors
        .iter()
        .filter(|s| {
            let n = &sim.process(NodeId(**s)).unwrap().node;
            n.replica().get(C, key.as_bytes()).unwrap().is_some()
        })
        .count()
}

#[test]
fn removing_a_dead_member_hands_its_ranges_to_their_next_owners_first() {
    check_seeds("removing_a_dead_member", 1, 4, |seed| {
        let mut sim = memory_cluster(5, NetConfig::lan(), seed, slow_sync);
        let dead = 3u64;
        let survivors = [1u64, 2, 4, 5];
        let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        for k in &keys {
            if !matches!(call(&mut sim, 1, set(k, "v1")), Some(Reply::Written { .. })) {
                return Err(format!("{k} was not written"));
            }
        }
        let affected = owned_by(&sim, 1, dead, &keys);
        sim.crash(NodeId(dead)).ok_or("node 3 not running")?;
        if !wait_status(&mut sim, dead, &survivors, Status::Dead, 30_000) {
            return Err("node 3 was not declared dead".into());
        }
        // Written while it is dead: on two of the key's three owners at least.
        for k in &affected {
            if !matches!(call(&mut sim, 2, set(k, "v2")), Some(Reply::Written { .. })) {
                return Err(format!("{k} was not written while node 3 was dead"));
            }
        }
        match call(&mut sim, 4, remove(dead, false)) {
            Some(Reply::Ok) => {}
            other => return Err(format!("remove answered {other:?}")),
        }
        // Written during the removal: the inheritors are pending replicas.
        let during: Vec<String> = (0..50).map(|i| format!("during{i}")).collect();
        for k in &during {
            if !matches!(call(&mut sim, 5, set(k, "v3")), Some(Reply::Written { .. })) {
                return Err(format!("{k} was not written during the removal"));
            }
        }
        if !wait_status(&mut sim, dead, &survivors, Status::Left, 60_000) {
            let p = sim.process(NodeId(4)).unwrap().node.removal();
            return Err(format!("node 3 was not removed in 60 s: {p:?}"));
        }
        if sim.process(NodeId(4)).unwrap().node.removal().is_some() {
            return Err("node 4 still runs the removal".into());
        }
        // Every key is on all three of its owners now, with no anti-entropy round.
        for k in affected.iter().chain(&during) {
            let held = copies(&sim, &survivors, k);
            let want = if k.starts_with("during") { 2 } else { 3 };
            if held < want {
                return Err(format!("{k} is on {held} nodes after the removal"));
            }
        }
        for (k, v) in affected.iter().map(|k| (k, "v2")).chain(during.iter().map(|k| (k, "v3"))) {
            let got = call(&mut sim, 1, get(k, Consistency::All));
            if !matches!(&got, Some(Reply::Value { value: Some(got), .. }) if got == v) {
                return Err(format!("{k} read back as {got:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn only_a_dead_member_can_be_removed() {
    let mut sim = memory_cluster(4, NetConfig::lan(), 7, slow_sync);
    let code = |reply: Option<Reply>| match reply {
        Some(Reply::Error { code, .. }) => Some(code),
        _ => None,
    };
    assert_eq!(code(call(&mut sim, 1, remove(2, false))), Some(ErrorCode::InvalidInput));
    assert_eq!(code(call(&mut sim, 1, remove(1, false))), Some(ErrorCode::InvalidInput));
    assert_eq!(code(call(&mut sim, 1, remove(99, false))), Some(ErrorCode::NotFound));
    for id in 1..=4 {
        assert_eq!(status(&sim, 2, id), Some(Status::Alive), "nothing changed for node {id}");
        let leaving = sim.process(NodeId(id)).unwrap().node.membership().member(NodeId(2));
        assert!(!leaving.unwrap().leaving(), "node {id} sees node 2 leaving");
    }
}

#[test]
fn a_member_that_comes_back_stops_its_removal() {
    let mut sim = memory_cluster(4, NetConfig::lan(), 11, |c| {
        slow_sync(c);
        // Long enough for the member to come back before the owners are asked.
        c.ring_delay_ms = 20_000;
    });
    let survivors = [1u64, 2, 4];
    let disk = sim.crash(NodeId(3)).expect("node 3 runs");
    assert!(wait_status(&mut sim, 3, &survivors, Status::Dead, 30_000), "node 3 declared dead");
    assert_eq!(call(&mut sim, 1, remove(3, false)), Some(Reply::Ok));
    assert!(sim.process(NodeId(1)).unwrap().node.removal().is_some());
    sim.restart(NodeId(3), disk.restarted(true).expect("restart"));
    assert!(wait_status(&mut sim, 3, &[1, 2, 3, 4], Status::Alive, 60_000), "node 3 serves again");
    sim.run_for(3_000);
    assert!(sim.process(NodeId(1)).unwrap().node.removal().is_none(), "the removal stopped");
    for id in 1..=4 {
        let m = sim.process(NodeId(id)).unwrap().node.membership().member(NodeId(3)).cloned();
        assert!(m.is_some_and(|m| m.owns() && !m.leaving()), "node {id} sees node 3 own");
    }
}
