//! Clocks on the simulator: an acknowledged write is never undone by a write stamped by
//! a coordinator whose clock is behind (see `dhrt_core::node::coordinator::restamp`).

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::NodeId,
    node::{
        coordinator::restamp::MAX_RESTAMPS,
        skew::{Skew, SkewDirection},
        NodeEvent, Output,
    },
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, Message, ReplicaMessage,
    },
    sim::{check_seeds, memory_cluster, NetConfig, NodeOutput, NodeProcess, Sim},
    store::MemStore,
};

type Cluster = Sim<NodeProcess<MemStore>>;

fn call(sim: &mut Cluster, node: u64, op: Op) -> Option<Reply> {
    dhrt_core::sim::call(sim, NodeId(node), op)
}

fn key(k: &str) -> Bytes {
    Bytes::copy_from_slice(k.as_bytes())
}

fn set(k: &str, value: &str, consistency: Consistency) -> Op {
    let value = Bytes::copy_from_slice(value.as_bytes());
    Op::Set { collection: "users".into(), key: key(k), value, consistency, ttl_ms: None }
}

fn del(k: &str) -> Op {
    Op::Del { collection: "users".into(), key: key(k), consistency: Consistency::Quorum }
}

fn get_all(sim: &mut Cluster, node: u64, k: &str) -> Result<Option<String>, String> {
    let op = Op::Get { collection: "users".into(), key: key(k), consistency: Consistency::All };
    match call(sim, node, op) {
        Some(Reply::Value { value, .. }) => {
            Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
        }
        other => Err(format!("read of {k} at all: {other:?}")),
    }
}

/// What happened to the second writes and deletes of a run.
#[derive(Debug, Default)]
struct Outcome {
    /// Writes and deletes through the slow node answered `Written`.
    acked: usize,
    /// Of those, undone by the older first write (must stay 0).
    lost: Vec<String>,
    /// Answered with an error instead (allowed: never a 200 for a write that lost).
    refused: usize,
}

/// Five nodes; node 5's clock runs `behind_ms` behind. For 12 keys: write v1 through
/// node 1 at quorum, then v2 through node 5 at quorum, then read at `all`; then delete
/// through node 5 and read at `all` again.
fn second_writes_through_a_slow_node(seed: u64, behind_ms: i64) -> Outcome {
    let mut sim = memory_cluster(5, NetConfig::lan(), seed, |_| {});
    sim.run_for(5_000);
    sim.set_skew(NodeId(5), -behind_ms);
    let mut out = Outcome::default();
    for i in 0..12 {
        let k = format!("key-{i}");
        let first = call(&mut sim, 1, set(&k, "v1", Consistency::Quorum));
        assert!(matches!(first, Some(Reply::Written { .. })), "seed {seed}: {first:?}");
        match call(&mut sim, 5, set(&k, "v2", Consistency::Quorum)) {
            Some(Reply::Written { .. }) => {
                out.acked += 1;
                let read = get_all(&mut sim, 2, &k).unwrap();
                if read.as_deref() != Some("v2") {
                    out.lost.push(format!("{k}: v2 acknowledged, read {read:?}"));
                }
            }
            Some(Reply::Error { .. }) => out.refused += 1,
            other => panic!("seed {seed}: {other:?}"),
        }
        match call(&mut sim, 5, del(&k)) {
            Some(Reply::Written { .. }) => {
                out.acked += 1;
                let read = get_all(&mut sim, 3, &k).unwrap();
                if read.is_some() {
                    out.lost.push(format!("{k}: delete acknowledged, read {read:?}"));
                }
            }
            Some(Reply::Error { .. }) => out.refused += 1,
            other => panic!("seed {seed}: {other:?}"),
        }
    }
    out
}

#[test]
fn a_write_through_a_coordinator_behind_within_the_max_offset_wins() {
    let mut acked = 0;
    check_seeds("a_write_through_a_coordinator_behind_within_the_max_offset_wins", 1, 4, |s| {
        let out = second_writes_through_a_slow_node(s, 300);
        if !out.lost.is_empty() {
            return Err(format!("acknowledged writes undone: {:?}", out.lost));
        }
        // Within the max offset the slow node adopts the newer stamp and wins.
        if out.refused > 0 {
            return Err(format!("{} writes refused within the max offset", out.refused));
        }
        acked += out.acked;
        Ok(())
    });
    assert!(acked > 0 || std::env::var("DHRT_SIM_SEED").is_ok());
}

#[test]
fn a_coordinator_two_seconds_behind_never_acknowledges_a_write_that_lost() {
    check_seeds(
        "a_coordinator_two_seconds_behind_never_acknowledges_a_write_that_lost",
        1,
        4,
        |s| {
            let out = second_writes_through_a_slow_node(s, 2_000);
            if !out.lost.is_empty() {
                return Err(format!("acknowledged writes undone: {:?}", out.lost));
            }
            Ok(())
        },
    );
}

/// A replica that always claims a newer version makes the coordinator re-stamp
/// [`MAX_RESTAMPS`] times, each time above the claim under a fresh request number, then
/// answer `conflict`; an acknowledgement of an old stamp never counts.
#[test]
fn the_coordinator_restamps_a_bounded_number_of_times_then_answers_conflict() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 5, |_| {});
    sim.run_for(2_000);
    // Node 1's messages go nowhere: the test plays the replicas.
    sim.partition(&[&[NodeId(1)], &[NodeId(2), NodeId(3)]]);
    let outputs = |p: &mut NodeProcess<MemStore>| {
        let mut writes = Vec::new();
        let mut replies = Vec::new();
        while let Some(out) = p.node.poll_output() {
            match out {
                Output::Send {
                    to,
                    msg: Message::Replica(ReplicaMessage::Write { req, records, .. }),
                    ..
                } => writes.push((to, req, records[0].1.ts)),
                Output::Reply { resp, .. } => replies.push(resp.result),
                _ => {}
            }
        }
        (writes, replies)
    };
    let (mut writes, replies) = sim
        .act(NodeId(1), |p, now| {
            let op = set("k", "v", Consistency::All);
            p.request(now, 7, ClientRequest { id: 1, op, seen: None });
            outputs(p)
        })
        .unwrap();
    assert!(replies.is_empty() && !writes.is_empty(), "{writes:?} {replies:?}");
    let mut stamps = vec![writes[0].2];
    let mut reqs = vec![writes[0].1];
    for attempt in 0..=MAX_RESTAMPS {
        let (to, req, ts) = writes[0];
        let (next, replies) = sim
            .act(NodeId(1), |p, now| {
                // A plain acknowledgement from the other replica first: it must not
                // count once the write is re-stamped.
                if let Some((other, ..)) = writes.iter().find(|(o, ..)| *o != to) {
                    let ack = ReplicaMessage::WriteAck { req, error: None, newer: None };
                    p.node.handle_peer(now, *other, Message::Replica(ack));
                }
                let newer = Some(Timestamp::from_parts(ts.physical_ms() + 50, 0));
                let ack = ReplicaMessage::WriteAck { req, error: None, newer };
                p.node.handle_peer(now, to, Message::Replica(ack));
                outputs(p)
            })
            .unwrap();
        if attempt < MAX_RESTAMPS {
            assert!(replies.is_empty(), "attempt {attempt}: {replies:?}");
            assert!(!next.is_empty(), "attempt {attempt}: re-sent");
            let (_, new_req, new_ts) = next[0];
            assert!(new_ts.physical_ms() >= ts.physical_ms() + 50, "stamped above the claim");
            assert!(!reqs.contains(&new_req), "a fresh request number");
            assert!(next.iter().all(|(_, r, t)| *r == new_req && *t == new_ts));
            stamps.push(new_ts);
            reqs.push(new_req);
            writes = next;
        } else {
            assert!(next.is_empty(), "no more attempts: {next:?}");
            match &replies[..] {
                [Reply::Error { code: ErrorCode::Conflict, message, .. }] => {
                    assert!(message.contains("newer"), "{message}")
                }
                other => panic!("expected conflict, got {other:?}"),
            }
        }
    }
    assert_eq!(stamps.len() as u32, MAX_RESTAMPS + 1);
    assert!(stamps.windows(2).all(|w| w[0] < w[1]));
}

/// A replica answers `newer` for a write that loses to a different stored write, and a
/// plain acknowledgement for a retransmit of what it holds.
#[test]
fn a_replica_says_when_it_holds_a_newer_write() {
    let mut sim = memory_cluster(2, NetConfig::lan(), 3, |c| c.replicas = 2);
    sim.run_for(2_000);
    let written = call(&mut sim, 1, set("k", "new", Consistency::All));
    let Some(Reply::Written { ts }) = written else { panic!("{written:?}") };
    let held = sim.process(NodeId(2)).unwrap().node.replica().get("users", b"k").unwrap().unwrap();
    sim.partition(&[&[NodeId(1)], &[NodeId(2)]]);
    let answer = |sim: &mut Cluster, entry: dhrt_core::entry::Entry| {
        sim.act(NodeId(2), |p, now| {
            let records = vec![(key("k"), entry)];
            let msg = ReplicaMessage::Write { req: 99, collection: "users".into(), records };
            p.node.handle_peer(now, NodeId(1), Message::Replica(msg));
            let mut acks = Vec::new();
            while let Some(out) = p.node.poll_output() {
                if let Output::Send {
                    msg: Message::Replica(m @ ReplicaMessage::WriteAck { .. }),
                    ..
                } = out
                {
                    acks.push(m);
                }
            }
            acks
        })
        .unwrap()
    };
    let older = dhrt_core::entry::Entry::value("old", Timestamp(ts.0 - 10), NodeId(1));
    assert_eq!(
        answer(&mut sim, older),
        vec![ReplicaMessage::WriteAck { req: 99, error: None, newer: Some(ts) }]
    );
    let tombstone = dhrt_core::entry::Entry::tombstone(Timestamp(ts.0 - 10), NodeId(1));
    assert_eq!(
        answer(&mut sim, tombstone),
        vec![ReplicaMessage::WriteAck { req: 99, error: None, newer: Some(ts) }]
    );
    assert_eq!(
        answer(&mut sim, held),
        vec![ReplicaMessage::WriteAck { req: 99, error: None, newer: None }],
        "a retransmit is a plain acknowledgement"
    );
}

/// Node 5's clock is `skew_ms` off: within a few probe rounds it says so (event, stats),
/// refuses to coordinate writes with a reason, and the others do not blame themselves;
/// once its clock is back it recovers by itself.
fn a_skewed_node_notices_and_recovers(seed: u64, skew_ms: i64) -> Result<(), String> {
    let mut sim = memory_cluster(5, NetConfig::lan(), seed, |_| {});
    sim.run_for(5_000);
    sim.take_events();
    sim.set_skew(NodeId(5), skew_ms);
    sim.run_for(20_000);
    let skewed: Vec<(NodeId, Skew)> = sim
        .take_events()
        .into_iter()
        .filter_map(|(_, id, e)| match e {
            NodeOutput::Event(NodeEvent::ClockSkewed(s)) => Some((id, s)),
            _ => None,
        })
        .collect();
    let want = if skew_ms < 0 { SkewDirection::Behind } else { SkewDirection::Ahead };
    match &skewed[..] {
        [(NodeId(5), s)] if s.direction == want && s.offset_ms.abs_diff(skew_ms) < 100 => {}
        other => return Err(format!("expected node 5 alone to notice, got {other:?}")),
    }
    let stats = sim.process(NodeId(5)).unwrap().node.stats();
    let why = stats.clock.skewed.clone().ok_or("stats say nothing")?;
    if !why.contains("NTP") || stats.clock.offset_ms.is_none_or(|o| o.abs_diff(skew_ms) > 100) {
        return Err(format!("stats: {:?}", stats.clock));
    }
    match call(&mut sim, 5, set("k", "v", Consistency::Quorum)) {
        Some(Reply::Error { code: ErrorCode::Unavailable, message, .. })
            if message.contains("NTP") && message.contains("500 ms") => {}
        other => return Err(format!("a write through the skewed node: {other:?}")),
    }
    for id in 1..=4 {
        if sim.process(NodeId(id)).unwrap().node.clocks().skew().is_some() {
            return Err(format!("node {id} blames itself"));
        }
    }
    match call(&mut sim, 1, set("k", "v", Consistency::Quorum)) {
        Some(Reply::Written { .. }) => {}
        other => return Err(format!("a write through a healthy node: {other:?}")),
    }
    sim.set_skew(NodeId(5), 0);
    sim.run_for(20_000);
    let recovered = sim.take_events().into_iter().any(|(_, id, e)| {
        id == NodeId(5) && matches!(e, NodeOutput::Event(NodeEvent::ClockRecovered { .. }))
    });
    if !recovered || sim.process(NodeId(5)).unwrap().node.stats().clock.skewed.is_some() {
        return Err("node 5 did not recover".into());
    }
    match call(&mut sim, 5, set("k", "w", Consistency::Quorum)) {
        Some(Reply::Written { .. }) => Ok(()),
        other => Err(format!("a write through the recovered node: {other:?}")),
    }
}

#[test]
fn a_node_whose_clock_is_behind_notices_stops_coordinating_writes_and_recovers() {
    check_seeds("a_node_whose_clock_is_behind_notices", 1, 3, |s| {
        a_skewed_node_notices_and_recovers(s, -2_000)
    });
}

#[test]
fn a_node_whose_clock_is_ahead_notices_stops_coordinating_writes_and_recovers() {
    check_seeds("a_node_whose_clock_is_ahead_notices", 1, 3, |s| {
        a_skewed_node_notices_and_recovers(s, 2_000)
    });
}

/// Probes and gossip carry hybrid timestamps: a node that coordinated nothing and
/// replicated nothing still has its clock advanced by its peers' (within the max offset),
/// and ignores, and counts, stamps from a peer too far ahead.
#[test]
fn membership_messages_advance_hybrid_clocks() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 11, |_| {});
    sim.run_for(3_000);
    sim.set_skew(NodeId(1), 300);
    sim.run_for(5_000);
    let now = sim.now();
    let behind = sim.process(NodeId(2)).unwrap().node.clock_last();
    // Node 2's own clock is at `now` at most: anything later came from node 1's stamps
    // (how much later depends on when node 1 last sent).
    assert!(behind.physical_ms() > now, "node 2 adopted node 1's clock: {behind} at {now}");
    assert_eq!(sim.process(NodeId(2)).unwrap().node.stats().clock.ahead_ignored, 0);
    sim.set_skew(NodeId(1), 5_000);
    sim.run_for(5_000);
    let stats = sim.process(NodeId(2)).unwrap().node.stats();
    assert!(stats.clock.ahead_ignored > 0, "{:?}", stats.clock);
    let last = sim.process(NodeId(2)).unwrap().node.clock_last();
    assert!(last.physical_ms() < sim.now() + 1_000, "never adopted: {last}");
}

/// Sends `op` to `node` as client 7 with `seen`, and runs until the whole answer
/// (its `ts` included) arrives.
fn call_seen(
    sim: &mut Cluster,
    node: u64,
    op: Op,
    seen: Option<Timestamp>,
) -> dhrt_core::proto::ClientResponse {
    let id = sim.rng().next_u64();
    sim.act(NodeId(node), |p, now| p.request(now, 7, ClientRequest { id, op, seen }));
    for _ in 0..100 {
        sim.run_for(100);
        for (_, _, e) in sim.take_events() {
            if let NodeOutput::Reply { resp, .. } = e {
                if resp.id == id {
                    return resp;
                }
            }
        }
    }
    panic!("no answer")
}

/// Every answer carries the node's clock; a client passing the newest it saw has its
/// next write stamped above it through a node whose clock is behind (within the max
/// offset, so nothing else would notice), and a `seen` too far ahead is refused.
#[test]
fn a_client_passing_what_it_saw_is_stamped_above_it_through_any_node() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 17, |_| {});
    sim.run_for(3_000);
    sim.set_skew(NodeId(3), -400);
    let first = call_seen(&mut sim, 1, set("k", "v1", Consistency::Quorum), None);
    let Reply::Written { ts: written } = first.result else { panic!("{first:?}") };
    let clock = first.ts.expect("answers carry the clock");
    assert!(clock >= written);
    let read = call_seen(
        &mut sim,
        2,
        Op::Get { collection: "users".into(), key: key("k"), consistency: Consistency::One },
        Some(clock),
    );
    assert!(read.ts.is_some_and(|t| t >= clock), "{read:?}");
    let second = call_seen(&mut sim, 3, set("other", "v", Consistency::One), read.ts);
    match second.result {
        Reply::Written { ts } => assert!(ts > clock, "{ts} above {clock}"),
        other => panic!("{other:?}"),
    }
    let future = Timestamp::from_parts(sim.now() + 10_000, 0);
    let refused = call_seen(&mut sim, 2, set("k", "v", Consistency::One), Some(future));
    match refused.result {
        Reply::Error { code: ErrorCode::InvalidInput, message, .. } => {
            assert!(message.contains("NTP"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
