//! The node's coordinator on the simulator: any node answers, consistency levels,
//! timeouts that count the replicas that answered, read repair, bad input, digest reads.

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    node::{Node, NodeEvent, Output},
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, ClientResponse, Message, ReplicaMessage,
    },
    sim::{check_seeds, memory_cluster, NetConfig, NodeOutput, NodeProcess, Sim},
    store::{MemStore, Store},
};

type Cluster = Sim<NodeProcess<MemStore>>;

/// Sends `op` to `node` and runs until it answers (or 10 simulated seconds pass).
fn call(sim: &mut Cluster, node: u64, op: Op) -> Option<Reply> {
    dhrt_core::sim::call(sim, NodeId(node), op)
}

fn set(key: &str, value: &str, consistency: Consistency) -> Op {
    Op::Set {
        collection: "users".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        consistency,
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

#[test]
fn every_node_answers_reads_of_writes_made_through_any_other() {
    check_seeds("every_node_answers_reads_of_writes_made_through_any_other", 1, 3, |seed| {
        let mut sim = memory_cluster(5, NetConfig::lan(), seed, |_| {});
        for i in 0..20u64 {
            let key = format!("user:{i}");
            let reply = call(&mut sim, 1 + i % 5, set(&key, &format!("v{i}"), Consistency::Quorum));
            if !matches!(reply, Some(Reply::Written { .. })) {
                return Err(format!("write of {key}: {reply:?}"));
            }
            let got = value_of(call(&mut sim, 1 + (i + 2) % 5, get(&key, Consistency::Quorum)));
            if got.as_deref() != Some(format!("v{i}").as_str()) {
                return Err(format!("read of {key} through another node: {got:?}"));
            }
        }
        // Deletes win over the writes before them.
        call(
            &mut sim,
            3,
            Op::Del {
                collection: "users".into(),
                key: Bytes::from("user:4"),
                consistency: Consistency::All,
            },
        );
        if value_of(call(&mut sim, 5, get("user:4", Consistency::Quorum))).is_some() {
            return Err("a deleted key came back".into());
        }
        Ok(())
    });
}

#[test]
fn quorum_survives_one_crash_and_all_reports_how_many_answered() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 11, |_| {});
    sim.crash(NodeId(3));
    let written = call(&mut sim, 1, set("k", "v", Consistency::Quorum));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    assert_eq!(value_of(call(&mut sim, 2, get("k", Consistency::Quorum))).as_deref(), Some("v"));
    match call(&mut sim, 1, set("k", "w", Consistency::All)) {
        Some(Reply::Error { code: ErrorCode::QuorumNotReached, acked: Some((2, 3)), message }) => {
            assert!(message.contains("2 of the 3"), "{message}")
        }
        other => panic!("expected a timeout with 2 of 3, got {other:?}"),
    }
    assert!(matches!(call(&mut sim, 2, get("k", Consistency::One)), Some(Reply::Value { .. })));
}

#[test]
fn reads_repair_replicas_that_missed_a_write() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 5, |_| {});
    sim.partition(&[&[NodeId(1), NodeId(2)], &[NodeId(3)]]);
    let written = call(&mut sim, 1, set("k", "fresh", Consistency::Quorum));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    sim.heal();
    sim.take_events();
    assert_eq!(value_of(call(&mut sim, 3, get("k", Consistency::All))).as_deref(), Some("fresh"));
    sim.run_for(1_000);
    let held = sim.process(NodeId(3)).unwrap().node.replica().get("users", b"k").unwrap();
    assert_eq!(held.and_then(|e| e.value), Some(Bytes::from("fresh")), "node 3 was repaired");
}

#[test]
fn bad_requests_get_typed_errors_and_write_nothing() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 2, |c| c.max_value_bytes = 1024);
    let bad_collection = Op::Set {
        collection: "no/slash".into(),
        key: Bytes::from("k"),
        value: Bytes::from("v"),
        consistency: Consistency::One,
        ttl_ms: None,
    };
    let too_big = set("k", &"x".repeat(2000), Consistency::One);
    let empty_key = set("", "v", Consistency::One);
    let too_many = set("k", "v", Consistency::N(5));
    for (op, code) in [
        (bad_collection, ErrorCode::InvalidInput),
        (too_big, ErrorCode::TooLarge),
        (empty_key, ErrorCode::InvalidInput),
        (too_many, ErrorCode::InvalidInput),
    ] {
        match call(&mut sim, 1, op.clone()) {
            Some(Reply::Error { code: got, message, .. }) => {
                assert_eq!(got, code, "{op:?}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{op:?}: expected an error, got {other:?}"),
        }
    }
    for (_, p) in sim.processes() {
        assert!(p.node.replica().store().collections().unwrap().is_empty(), "nothing written");
    }
}

#[test]
fn a_coordinator_whose_clock_runs_ahead_is_refused() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 9, |_| {});
    sim.set_skew(NodeId(1), 60_000);
    match call(&mut sim, 1, set("k", "future", Consistency::All)) {
        Some(Reply::Error { code: ErrorCode::QuorumNotReached, message, .. }) => {
            assert!(message.contains("ahead"), "{message}")
        }
        other => panic!("expected the replicas to refuse, got {other:?}"),
    }
    for id in [2, 3] {
        let held = sim.process(NodeId(id)).unwrap().node.replica().get("users", b"k").unwrap();
        assert_eq!(held, None, "node {id} refused the future timestamp");
    }
    let repaired = sim
        .take_events()
        .into_iter()
        .any(|(_, _, e)| matches!(e, NodeOutput::Event(NodeEvent::ReadRepaired { .. })));
    assert!(!repaired);
}

#[test]
fn hinted_handoff_delivers_a_missed_write_when_the_replica_returns() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 21, |_| {});
    sim.partition(&[&[NodeId(1), NodeId(2)], &[NodeId(3)]]);
    let written = call(&mut sim, 1, set("hinted", "v", Consistency::Quorum));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    sim.run_for(2_500); // the request's deadline passes: node 3 never acknowledged
    assert_eq!(sim.process(NodeId(1)).unwrap().node.hints().pending(), 1, "a hint for node 3");
    sim.heal();
    sim.run_for(15_000);
    let held = sim.process(NodeId(3)).unwrap().node.replica().get("users", b"hinted").unwrap();
    assert_eq!(held.and_then(|e| e.value), Some(Bytes::from("v")), "the hint reached node 3");
    let coordinator = &sim.process(NodeId(1)).unwrap().node;
    assert_eq!((coordinator.hints().pending(), coordinator.hints().delivered()), (0, 1));
}

#[test]
fn anti_entropy_converges_replicas_and_a_dead_node_resyncs_before_it_serves() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 31, |c| c.sync_interval_ms = 2_000);
    let disk = sim.crash(NodeId(3)).expect("running");
    for i in 0..40 {
        let reply = call(&mut sim, 1 + i % 2, set(&format!("k{i}"), "v", Consistency::Quorum));
        assert!(matches!(reply, Some(Reply::Written { .. })), "{reply:?}");
    }
    // Long enough for the others to declare node 3 dead.
    sim.run_for(30_000);
    let dead = sim.process(NodeId(1)).unwrap().node.membership().member(NodeId(3)).unwrap().status;
    assert_eq!(dead, dhrt_core::membership::Status::Dead);
    sim.take_events();
    sim.restart(NodeId(3), disk);
    sim.run_for(30_000);
    let events = sim.take_events();
    let resync = events.iter().any(|(_, n, e)| {
        *n == NodeId(3)
            && matches!(
                e,
                NodeOutput::Event(NodeEvent::Membership(
                    dhrt_core::membership::MembershipEvent::MustResync
                ))
            )
    });
    assert!(resync, "node 3 learned it was declared dead and re-synced");
    let node3 = &sim.process(NodeId(3)).unwrap().node;
    assert_eq!(node3.membership().me().status, dhrt_core::membership::Status::Alive);
    for i in 0..40 {
        let held = node3.replica().get("users", format!("k{i}").as_bytes()).unwrap();
        assert!(held.is_some(), "k{i} reached node 3 by anti-entropy");
    }
    for id in [1, 2] {
        let seen =
            sim.process(NodeId(id)).unwrap().node.membership().member(NodeId(3)).unwrap().status;
        assert_eq!(seen, dhrt_core::membership::Status::Alive, "node {id} readmitted node 3");
    }
    let roots: Vec<_> =
        sim.processes().map(|(_, p)| p.node.replica().tree("users").map(|t| t.root())).collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "all replicas hold the same data: {roots:?}");
}

#[test]
fn requests_without_a_level_use_their_collections_configured_default() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 41, |c| {
        c.collection_consistency.insert("audit".into(), Consistency::All);
    });
    sim.crash(NodeId(3));
    let write = |collection: &str| Op::Set {
        collection: collection.into(),
        key: Bytes::from("k"),
        value: Bytes::from("v"),
        consistency: Consistency::Default,
        ttl_ms: None,
    };
    // `users` is not configured: quorum, which two of three replicas meet.
    assert!(matches!(call(&mut sim, 1, write("users")), Some(Reply::Written { .. })));
    // `audit` defaults to all: the crashed replica makes it fail, saying so.
    match call(&mut sim, 1, write("audit")) {
        Some(Reply::Error { code: ErrorCode::QuorumNotReached, acked: Some((2, 3)), .. }) => {}
        other => panic!("expected all three replicas to be required, got {other:?}"),
    }
    // A level named in the request wins over the collection's default.
    let explicit = Op::Set {
        collection: "audit".into(),
        key: Bytes::from("k"),
        value: Bytes::from("v2"),
        consistency: Consistency::Quorum,
        ttl_ms: None,
    };
    assert!(matches!(call(&mut sim, 1, explicit), Some(Reply::Written { .. })));
}

#[test]
fn stats_count_data_requests_but_not_monitoring_and_name_the_replication_factor() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 5, |_| {});
    let stats = |sim: &mut Cluster| match call(sim, 1, Op::Stats) {
        Some(Reply::Stats(s)) => s,
        other => panic!("expected stats, got {other:?}"),
    };
    let before = stats(&mut sim);
    assert_eq!(before.replicas, 3);
    call(&mut sim, 1, set("a", "1", Consistency::One));
    call(&mut sim, 1, get("a", Consistency::One));
    call(&mut sim, 1, Op::Ring);
    let after = stats(&mut sim);
    assert_eq!(after.requests - before.requests, 2, "a set and a get; stats and ring are not load");
}

// Digest reads: a read asks only as many replicas as its level needs, one for the data
// and the others for the version they hold; a newer version is fetched before the read
// answers; a replica that fails or stays silent is replaced.

/// The replica messages a node has to send, taken from its outputs before they reach
/// the network (what they ask is left unanswered).
fn replica_messages(node: &mut Node<MemStore>) -> Vec<(NodeId, ReplicaMessage)> {
    let mut sent = Vec::new();
    while let Some(out) = node.poll_output() {
        if let Output::Send { to, msg: Message::Replica(m), .. } = out {
            sent.push((to, m));
        }
    }
    sent
}

/// The replica messages node `node` sends when it starts coordinating `op` (taken from
/// its outputs before they reach the network: the request is left unanswered).
fn reads_sent(sim: &mut Cluster, node: u64, op: Op) -> Vec<(NodeId, ReplicaMessage)> {
    sim.act(NodeId(node), |p, now| {
        p.node.handle_client(now, 99, ClientRequest { id: 1, op, seen: None });
        replica_messages(&mut p.node)
    })
    .expect("the node runs")
}

#[test]
fn a_read_asks_only_as_many_replicas_as_its_level_needs_and_only_one_for_the_data() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 21, |_| {});
    assert!(matches!(
        call(&mut sim, 1, set("k", "v", Consistency::All)),
        Some(Reply::Written { .. })
    ));
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
    assert!(matches!(
        call(&mut sim, 1, set("k", "v", Consistency::All)),
        Some(Reply::Written { .. })
    ));
    for (node, level) in [(1, Consistency::One), (2, Consistency::Quorum), (3, Consistency::All)] {
        assert_eq!(value_of(call(&mut sim, node, get("k", level))).as_deref(), Some("v"));
    }
}

#[test]
fn a_newer_version_on_another_replica_is_fetched_and_answered_and_the_reader_repaired() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 22, |_| {});
    assert!(matches!(
        call(&mut sim, 1, set("k", "old", Consistency::All)),
        Some(Reply::Written { .. })
    ));
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
        assert!(matches!(
            call(&mut sim, 1, set(&key, "v", Consistency::All)),
            Some(Reply::Written { .. })
        ));
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
    assert!(matches!(
        call(&mut sim, 1, set("k", "v", Consistency::All)),
        Some(Reply::Written { .. })
    ));
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
            replica_messages(&mut p.node)
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
    assert!(matches!(
        call(&mut sim, 1, set("k", "v", Consistency::All)),
        Some(Reply::Written { .. })
    ));
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
