//! Digest reads on the simulator: a read asks only as many replicas as its level needs,
//! one for the data and the others for the version they hold; a newer version is
//! fetched before the read answers; a replica that fails or stays silent is replaced.

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    node::Output,
    proto::{
        client::{Consistency, Op, Reply},
        ClientRequest, ClientResponse, Message, ReplicaMessage,
    },
    sim::{memory_cluster, NetConfig, NodeOutput, NodeProcess, Sim},
    store::MemStore,
};

type Cluster = Sim<NodeProcess<MemStore>>;

fn call(sim: &mut Cluster, node: u64, op: Op) -> Option<Reply> {
    dhrt_core::sim::call(sim, NodeId(node), op)
}

fn set(key: &str, value: &str) -> Op {
    Op::Set {
        collection: "users".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        consistency: Consistency::All,
        ttl_ms: None,
    }
}

fn get(key: &str, consistency: Consistency) -> Op {
    Op::Get { collection: "users".into(), key: Bytes::copy_from_slice(key.as_bytes()), consistency }
}

fn value_of(reply: Option<Reply>) -> Option<String> {
    match reply {
        Some(Reply::Value { value, .. }) => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        other => panic!("expected a value, got {other:?}"),
    }
}

/// The replica messages node `node` sends when it starts coordinating `op` (taken from
/// its outputs before they reach the network: the request is left unanswered).
fn reads_sent(sim: &mut Cluster, node: u64, op: Op) -> Vec<(NodeId, ReplicaMessage)> {
    sim.act(NodeId(node), |p, now| {
        p.node.handle_client(now, 99, ClientRequest { id: 1, op, seen: None });
        let mut sent = Vec::new();
        while let Some(out) = p.node.poll_output() {
            if let Output::Send { to, msg: Message::Replica(m), .. } = out {
                sent.push((to, m));
            }
        }
        sent
    })
    .expect("the node runs")
}

#[test]
fn a_read_asks_only_as_many_replicas_as_its_level_needs_and_only_one_for_the_data() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 21, |_| {});
    assert!(matches!(call(&mut sim, 1, set("k", "v")), Some(Reply::Written { .. })));
    sim.run_for(500);
    // Quorum of 3: this node reads its own copy; one other replica is asked for its
    // version, nobody else for anything.
    let sent = reads_sent(&mut sim, 1, get("k", Consistency::Quorum));
    let versions = sent.iter().filter(|(_, m)| matches!(m, ReplicaMessage::ReadVersions { .. }));
    let data = sent.iter().filter(|(_, m)| matches!(m, ReplicaMessage::Read { .. }));
    assert_eq!((versions.count(), data.count()), (1, 0), "{sent:?}");
    // One: this node's copy answers; nothing is sent.
    let sent = reads_sent(&mut sim, 2, get("k", Consistency::One));
    assert!(sent.is_empty(), "{sent:?}");
    // All: both others asked for versions only.
    let sent = reads_sent(&mut sim, 3, get("k", Consistency::All));
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|(_, m)| matches!(m, ReplicaMessage::ReadVersions { .. })));
    // And every level still reads the value.
    let mut sim = memory_cluster(3, NetConfig::lan(), 21, |_| {});
    assert!(matches!(call(&mut sim, 1, set("k", "v")), Some(Reply::Written { .. })));
    for (node, level) in [(1, Consistency::One), (2, Consistency::Quorum), (3, Consistency::All)] {
        assert_eq!(value_of(call(&mut sim, node, get("k", level))).as_deref(), Some("v"));
    }
}

#[test]
fn a_newer_version_on_another_replica_is_fetched_and_answered_and_the_reader_repaired() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 22, |_| {});
    assert!(matches!(call(&mut sim, 1, set("k", "old")), Some(Reply::Written { .. })));
    sim.run_for(500);
    // A newer write that reached nodes 2 and 3 only (placed there as a repair from a
    // member, so no hint or sync carries it to node 1 first).
    let now = sim.now();
    let fresh = Entry::value(Bytes::from("fresh"), Timestamp::from_parts(now + 1, 0), NodeId(2));
    for (id, from) in [(2, 3), (3, 2)] {
        let repair = ReplicaMessage::Repair {
            collection: "users".into(),
            records: vec![(Bytes::from("k"), fresh.clone())],
        };
        let msg = Message::Replica(repair);
        sim.act(NodeId(id), |p, now| p.node.handle_peer(now, NodeId(from), msg));
    }
    let held = |sim: &Cluster, id: u64| {
        let e = sim.process(NodeId(id)).unwrap().node.replica().get("users", b"k").unwrap();
        e.and_then(|e| e.value)
    };
    assert_eq!(held(&sim, 1), Some(Bytes::from("old")));
    assert_eq!(held(&sim, 2), Some(Bytes::from("fresh")));
    // Node 1 reads its own (older) copy and one other replica's version: that version is
    // newer, so the read waits for its data and answers it.
    assert_eq!(
        value_of(call(&mut sim, 1, get("k", Consistency::Quorum))).as_deref(),
        Some("fresh")
    );
    sim.run_for(500);
    assert_eq!(held(&sim, 1), Some(Bytes::from("fresh")), "node 1 was repaired by the read");
}

#[test]
fn a_silent_replica_is_replaced_after_the_speculation_delay_not_the_timeout() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 23, |c| c.request_timeout_ms = 5_000);
    for i in 0..12 {
        let key = format!("k{i}");
        assert!(matches!(call(&mut sim, 1, set(&key, "v")), Some(Reply::Written { .. })));
    }
    sim.run_for(500);
    // Node 3 stops answering; nobody has noticed yet. Whichever replica each read picks,
    // it answers well before its timeout.
    sim.crash(NodeId(3));
    let mut waited = Vec::new();
    for i in 0..12 {
        let started = sim.now();
        let got = value_of(call(&mut sim, 1, get(&format!("k{i}"), Consistency::Quorum)));
        assert_eq!(got.as_deref(), Some("v"), "k{i}");
        waited.push(sim.now() - started);
    }
    // `call` runs the world 100 ms at a time: a timeout would show as 5,000 ms or more.
    assert!(waited.iter().all(|w| *w <= 200), "{waited:?}");
}

#[test]
fn a_replica_whose_read_fails_makes_the_coordinator_ask_the_others_at_once() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 24, |_| {});
    assert!(matches!(call(&mut sim, 1, set("k", "v")), Some(Reply::Written { .. })));
    sim.run_for(500);
    // The version read node 1 sends is answered "failed" by its replica: node 1 then
    // asks the replica it had not asked, for the data.
    let (asked, req) = match reads_sent(&mut sim, 1, get("k", Consistency::Quorum)).as_slice() {
        [(to, ReplicaMessage::ReadVersions { req, .. })] => (*to, *req),
        other => panic!("expected one version read, got {other:?}"),
    };
    let failed = ReplicaMessage::ReadFailed { req, error: "storage failure: EIO".into() };
    let sent = sim
        .act(NodeId(1), |p, now| {
            p.node.handle_peer(now, asked, Message::Replica(failed));
            let mut sent = Vec::new();
            while let Some(out) = p.node.poll_output() {
                if let Output::Send { to, msg: Message::Replica(m), .. } = out {
                    sent.push((to, m));
                }
            }
            sent
        })
        .unwrap();
    match sent.as_slice() {
        [(to, ReplicaMessage::Read { req: r, .. })] => {
            assert_ne!(*to, asked);
            assert_ne!(*to, NodeId(1));
            assert_eq!(*r, req);
        }
        other => panic!("expected a data read of the third replica, got {other:?}"),
    }
}

#[test]
fn version_reads_never_answered_are_asked_again_for_the_data() {
    // A node of an earlier version drops a version read it does not know: an `all` read
    // (every replica asked already) still answers, after the speculation delay.
    let mut sim = memory_cluster(3, NetConfig::lan(), 25, |c| c.request_timeout_ms = 5_000);
    assert!(matches!(call(&mut sim, 1, set("k", "v")), Some(Reply::Written { .. })));
    sim.run_for(500);
    let sent = reads_sent(&mut sim, 1, get("k", Consistency::All));
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|(_, m)| matches!(m, ReplicaMessage::ReadVersions { .. })));
    sim.take_events();
    sim.run_for(300);
    let answer = sim.take_events().into_iter().find_map(|(_, _, e)| match e {
        NodeOutput::Reply { resp: ClientResponse { id: 1, result, .. }, .. } => Some(result),
        _ => None,
    });
    assert_eq!(value_of(answer).as_deref(), Some("v"));
}
