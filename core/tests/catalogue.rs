//! The catalogue on the simulator: settings written through one node reach every
//! member (one that was down included), concurrent changes settle on one value
//! everywhere, and every coordinator applies a collection's default consistency, time
//! to live and quota.

use bytes::Bytes;
use dhrt_core::{
    catalogue::{CollectionSettings, CATALOGUE_COLLECTION},
    entry::NodeId,
    node::{Node, NodeConfig},
    proto::client::{Consistency, ErrorCode, Op, Reply},
    sim::{check_seeds, cluster::sim_addr, memory_cluster, NetConfig, NodeProcess, Sim},
    store::MemStore,
};

type Cluster = Sim<NodeProcess<MemStore>>;

/// Writes `settings` for `collection` through `node`, as the server does for `dhrt
/// collection create`.
fn put_settings(sim: &mut Cluster, node: u64, collection: &str, s: &CollectionSettings) -> bool {
    let op = Op::Set {
        collection: CATALOGUE_COLLECTION.into(),
        key: Bytes::copy_from_slice(collection.as_bytes()),
        value: Bytes::from(s.encode()),
        consistency: Consistency::Quorum,
        ttl_ms: None,
    };
    matches!(dhrt_core::sim::call(sim, NodeId(node), op), Some(Reply::Written { .. }))
}

/// What each running node's catalogue says of `collection`.
fn views(sim: &Cluster, collection: &str) -> Vec<(NodeId, Option<CollectionSettings>)> {
    sim.processes()
        .filter(|(id, _)| sim.is_running(*id))
        .map(|(id, p)| (id, p.node.catalogue().get(collection).cloned()))
        .collect()
}

/// Runs until every running node's catalogue says `want` of `collection`, at most
/// `ms`; the simulated time it took.
fn until_agreed(
    sim: &mut Cluster,
    collection: &str,
    want: &CollectionSettings,
    ms: u64,
) -> Result<u64, String> {
    let start = sim.now();
    while sim.now() - start < ms {
        if views(sim, collection).iter().all(|(_, s)| s.as_ref() == Some(want)) {
            return Ok(sim.now() - start);
        }
        sim.run_for(200);
    }
    Err(format!("after {ms} ms the nodes say {:?}", views(sim, collection)))
}

fn settings(ttl_s: u64) -> CollectionSettings {
    CollectionSettings {
        consistency: Some(Consistency::One),
        ttl_ms: Some(ttl_s * 1000),
        ..Default::default()
    }
}

#[test]
fn settings_written_through_one_node_reach_every_member_even_one_that_was_down() {
    check_seeds("settings_reach_every_member", 1, 3, |seed| {
        // No hints: what a member missed comes back by anti-entropy alone.
        let mut sim = memory_cluster(5, NetConfig::lan(), seed, |c| {
            c.sync_interval_ms = 2_000;
            c.hints.max_per_node = 0;
        });
        let down = sim.crash(NodeId(5)).ok_or("node 5 runs")?;
        let s = settings(60);
        if !put_settings(&mut sim, 1, "users", &s) {
            return Err("the settings were not written".into());
        }
        // Quorum of five: three had it at once; anti-entropy brings the fourth.
        until_agreed(&mut sim, "users", &s, 30_000)?;
        sim.restart(NodeId(5), down.restarted(true).map_err(|e| e.to_string())?);
        until_agreed(&mut sim, "users", &s, 60_000)?;
        // A node that joins later has them once it serves.
        let mut config = NodeConfig::new(NodeId(6), sim_addr(NodeId(6)));
        config.seed = seed ^ 6;
        config.sync_interval_ms = 2_000;
        let node = Node::new(config, MemStore::new()).map_err(|e| e.to_string())?;
        sim.add(NodeId(6), NodeProcess::new(node).joining(sim_addr(NodeId(1))));
        until_agreed(&mut sim, "users", &s, 60_000)?;
        // Every coordinator now runs the collection's requests at its default level.
        for (id, p) in sim.processes() {
            let level = p.node.consistency_for("users", Consistency::Default);
            if level != Consistency::One {
                return Err(format!("node {id} runs default requests at {level}"));
            }
        }
        Ok(())
    });
}

#[test]
fn concurrent_changes_on_both_sides_of_a_partition_settle_on_the_later() {
    check_seeds("concurrent_settings_settle", 1, 3, |seed| {
        let mut sim = memory_cluster(5, NetConfig::lan(), seed, |c| c.sync_interval_ms = 2_000);
        let (left, right) = ([NodeId(1), NodeId(2), NodeId(3)], [NodeId(4), NodeId(5)]);
        sim.partition(&[&left, &right]);
        sim.run_for(5_000);
        if !put_settings(&mut sim, 1, "users", &settings(10)) {
            return Err("the majority side did not write".into());
        }
        sim.run_for(50);
        // The minority side cannot reach a quorum of five; at `one` it still writes.
        let later = settings(20);
        let op = Op::Set {
            collection: CATALOGUE_COLLECTION.into(),
            key: Bytes::from_static(b"users"),
            value: Bytes::from(later.encode()),
            consistency: Consistency::One,
            ttl_ms: None,
        };
        let reply = dhrt_core::sim::call(&mut sim, NodeId(4), op);
        if !matches!(reply, Some(Reply::Written { .. })) {
            return Err(format!("the minority side's write: {reply:?}"));
        }
        sim.heal();
        until_agreed(&mut sim, "users", &later, 60_000)?;
        Ok(())
    });
}

#[test]
fn every_coordinator_applies_the_default_time_to_live() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 7, |c| c.sync_interval_ms = 2_000);
    let s = settings(60);
    assert!(put_settings(&mut sim, 2, "sessions", &s));
    until_agreed(&mut sim, "sessions", &s, 30_000).unwrap();
    for node in 1..=3u64 {
        let key = Bytes::from(format!("k{node}"));
        let set = Op::Set {
            collection: "sessions".into(),
            key: key.clone(),
            value: Bytes::from_static(b"v"),
            consistency: Consistency::Default,
            ttl_ms: None,
        };
        let written = dhrt_core::sim::call(&mut sim, NodeId(node), set);
        let Some(Reply::Written { ts }) = written else { panic!("{written:?}") };
        let get = Op::Get { collection: "sessions".into(), key, consistency: Consistency::All };
        match dhrt_core::sim::call(&mut sim, NodeId(1 + node % 3), get) {
            Some(Reply::Value { expires: Some(at), .. }) => {
                assert_eq!(at, ts.physical_ms() + 60_000, "the default TTL from node {node}")
            }
            other => panic!("a write through node {node} has no expiry: {other:?}"),
        }
    }
    // A write that gives its own TTL keeps it; a delete leaves a tombstone without one.
    let own = Op::Set {
        collection: "sessions".into(),
        key: Bytes::from_static(b"own"),
        value: Bytes::from_static(b"v"),
        consistency: Consistency::All,
        ttl_ms: Some(5_000),
    };
    let Some(Reply::Written { ts }) = dhrt_core::sim::call(&mut sim, NodeId(3), own) else {
        panic!("own TTL write")
    };
    let get = Op::Get {
        collection: "sessions".into(),
        key: Bytes::from_static(b"own"),
        consistency: Consistency::All,
    };
    match dhrt_core::sim::call(&mut sim, NodeId(2), get) {
        Some(Reply::Value { expires: Some(at), .. }) => assert_eq!(at, ts.physical_ms() + 5_000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_quota_refuses_new_keys_but_never_overwrites_within_it_or_deletes() {
    let mut sim = memory_cluster(1, NetConfig::lan(), 3, |_| {});
    let quota = CollectionSettings { max_keys: Some(3), ..Default::default() };
    assert!(put_settings(&mut sim, 1, "small", &quota));
    let set = |key: &str| Op::Set {
        collection: "small".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from_static(b"value"),
        consistency: Consistency::Default,
        ttl_ms: None,
    };
    for key in ["a", "b", "c"] {
        let r = dhrt_core::sim::call(&mut sim, NodeId(1), set(key));
        assert!(matches!(r, Some(Reply::Written { .. })), "{key}: {r:?}");
    }
    match dhrt_core::sim::call(&mut sim, NodeId(1), set("d")) {
        Some(Reply::Error { code: ErrorCode::QuotaExceeded, message, .. }) => {
            assert!(message.contains("quota is 3"), "{message}")
        }
        other => panic!("a fourth key was not refused: {other:?}"),
    }
    let again = dhrt_core::sim::call(&mut sim, NodeId(1), set("a"));
    assert!(matches!(again, Some(Reply::Written { .. })), "an overwrite: {again:?}");
    let del = Op::Del {
        collection: "small".into(),
        key: Bytes::from_static(b"b"),
        consistency: Consistency::Default,
    };
    let deleted = dhrt_core::sim::call(&mut sim, NodeId(1), del);
    assert!(matches!(deleted, Some(Reply::Written { .. })), "a delete: {deleted:?}");
    let room = dhrt_core::sim::call(&mut sim, NodeId(1), set("d"));
    assert!(matches!(room, Some(Reply::Written { .. })), "after a delete: {room:?}");
    // Other collections are not limited.
    let other = Op::Set {
        collection: "big".into(),
        key: Bytes::from_static(b"z"),
        value: Bytes::from_static(b"v"),
        consistency: Consistency::Default,
        ttl_ms: None,
    };
    assert!(matches!(
        dhrt_core::sim::call(&mut sim, NodeId(1), other),
        Some(Reply::Written { .. })
    ));
}
