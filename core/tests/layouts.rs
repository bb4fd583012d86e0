//! Collections with their own layout on the simulator: replicas only on the nodes a
//! selector accepts, as many as asked; a move between layouts that needs the level of
//! both layouts for every write while it runs, waits for every member and completes
//! after a partition heals. (The strict-quorum checker across moves is in
//! `register.rs`.)

use bytes::Bytes;
use dhrt_core::{
    catalogue::CATALOGUE_COLLECTION,
    catalogue::{
        layout_key, CollectionSettings, LabelSnapshot, Layout, LayoutState, Move, MovePhase,
    },
    entry::NodeId,
    proto::client::{Consistency, Op, Reply},
    sim::{call, memory_cluster, NetConfig, NodeProcess, Sim},
    store::MemStore,
};

type Cluster = Sim<NodeProcess<MemStore>>;

/// Five nodes; `disk=ssd` on nodes 1, 2 and 4.
fn cluster(seed: u64) -> Cluster {
    dhrt_core::sim::ssd_cluster(5, seed).unwrap()
}

/// Every member's labels, as a move records them.
fn labels_of(sim: &Cluster) -> LabelSnapshot {
    let node = &sim.process(NodeId(1)).expect("node 1").node;
    node.membership().members().map(|m| (m.id, m.labels.clone())).collect()
}

fn put(sim: &mut Cluster, node: u64, collection: &str, key: &[u8], value: Bytes) -> Option<Reply> {
    let op = Op::Set {
        collection: collection.into(),
        key: Bytes::copy_from_slice(key),
        value,
        consistency: Consistency::Quorum,
        ttl_ms: None,
    };
    call(sim, NodeId(node), op)
}

/// Runs until every node uses `layout` for `collection` with no move under way.
fn until_moved(sim: &mut Cluster, collection: &str, layout: &Layout, ms: u64) {
    let end = sim.now() + ms;
    while sim.now() < end {
        let done = sim.processes().all(|(_, p)| {
            let s = p.node.catalogue().layout(collection).cloned().unwrap_or_default();
            s.moving.is_none() && s.current == *layout
        });
        if done {
            return;
        }
        sim.run_for(200);
    }
    let states: Vec<String> = sim
        .processes()
        .map(|(id, p)| format!("{id}: {:?}", p.node.catalogue().layout(collection)))
        .collect();
    panic!("{collection} did not move to {layout:?} in {ms} ms: {}", states.join("; "));
}

#[test]
fn a_selected_collection_lives_only_on_the_nodes_it_selects_as_many_as_asked() {
    let mut sim = cluster(11);
    let settings = CollectionSettings {
        replicas: Some(2),
        select: [("disk".to_string(), "ssd".to_string())].into(),
        ..CollectionSettings::default()
    };
    let written = put(&mut sim, 3, CATALOGUE_COLLECTION, b"fast", Bytes::from(settings.encode()));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    until_moved(&mut sim, "fast", &settings.layout(), 60_000);
    for k in 0..60u32 {
        let through = 1 + u64::from(k % 5);
        let r = put(&mut sim, through, "fast", &k.to_be_bytes(), Bytes::from_static(b"v"));
        assert!(matches!(r, Some(Reply::Written { .. })), "key {k}: {r:?}");
    }
    sim.run_for(10_000);
    for k in 0..60u32 {
        let holders: Vec<NodeId> = sim
            .processes()
            .filter(|(_, p)| p.node.replica().get("fast", &k.to_be_bytes()).unwrap().is_some())
            .map(|(id, _)| id)
            .collect();
        assert_eq!(holders.len(), 2, "key {k} is on {holders:?}");
        for h in &holders {
            assert!(matches!(h.0, 1 | 2 | 4), "key {k} is on node {h}, which has no ssd");
        }
    }
    // Every coordinator counts the collection's own N.
    for (_, p) in sim.processes() {
        assert_eq!(p.node.replicas_for("fast"), 2);
        assert_eq!(p.node.replicas_for("other"), 3);
    }
}

#[test]
fn a_write_during_a_move_needs_the_level_of_both_layouts_and_the_move_waits_for_every_member() {
    let mut sim = cluster(5);
    // One replica on an ssd node (1, 2 or 4); node 4 is cut off from the others.
    let to = Layout {
        replicas: Some(1),
        select: [("disk".into(), "ssd".into())].into(),
        zone_label: None,
    };
    sim.partition(&[&[NodeId(1), NodeId(2), NodeId(3), NodeId(5)], &[NodeId(4)]]);
    sim.run_for(3_000);
    let state = LayoutState {
        moving: Some(Move {
            to: to.clone(),
            at: sim.now(),
            phase: MovePhase::Announced,
            labels: labels_of(&sim),
        }),
        ..LayoutState::default()
    };
    let key = layout_key("users");
    let written =
        put(&mut sim, 1, CATALOGUE_COLLECTION, key.as_bytes(), Bytes::from(state.encode()));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    sim.run_for(3_000);
    // A key whose one owner under the next layout is node 4: two of its three current
    // owners are reachable, enough for the current layout's quorum alone.
    let node1 = &sim.process(NodeId(1)).unwrap().node;
    let key = (0..1_000u32)
        .map(|k| k.to_be_bytes())
        .find(|k| {
            let p = node1.placement_for("users").key(node1.replica().position("users", k));
            p.next.iter().any(|g| g.nodes == [NodeId(4)])
        })
        .expect("some key moves to node 4");
    let r = put(&mut sim, 1, "users", &key, Bytes::from_static(b"v"));
    assert!(
        !matches!(r, Some(Reply::Written { .. })),
        "a write was acknowledged without its owner under the next layout: {r:?}"
    );
    // The move waits for node 4: it stays announced while node 4 is cut off.
    sim.run_for(10_000);
    for (id, p) in sim.processes() {
        let phase = p.node.catalogue().layout("users").and_then(|s| s.moving.clone());
        assert!(
            id == NodeId(4) || phase.as_ref().is_some_and(|m| m.phase == MovePhase::Announced),
            "node {id} sees {phase:?} while node 4 is cut off"
        );
    }
    sim.heal();
    until_moved(&mut sim, "users", &to, 60_000);
    let r = put(&mut sim, 1, "users", &key, Bytes::from_static(b"w"));
    assert!(matches!(r, Some(Reply::Written { .. })), "{r:?}");
    let stored = sim.process(NodeId(4)).unwrap().node.replica().get("users", &key).unwrap();
    assert_eq!(stored.and_then(|e| e.value), Some(Bytes::from_static(b"w")));
}

/// Six nodes in three zones (two each), `disk=ssd` on 1, 2 and 4.
fn zoned(seed: u64) -> Cluster {
    let mut sim = memory_cluster(6, NetConfig::lan(), seed, |c| {
        c.sync_interval_ms = 2_000;
        let zone = ["a", "b", "c"][(c.id.0 as usize - 1) / 2];
        c.labels.insert("zone".into(), zone.into());
        let disk = if matches!(c.id.0, 1 | 2 | 4) { "ssd" } else { "hdd" };
        c.labels.insert("disk".into(), disk.into());
    });
    dhrt_core::sim::safety::settle(&mut sim, 60_000).unwrap();
    sim
}

/// Which nodes hold `key` of `collection`.
fn holders(sim: &Cluster, collection: &str, key: &[u8]) -> Vec<NodeId> {
    sim.processes()
        .filter(|(_, p)| p.node.replica().get(collection, key).unwrap().is_some())
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn a_zoned_collection_keeps_each_keys_replicas_in_distinct_zones() {
    let mut sim = zoned(3);
    let settings = CollectionSettings {
        replicas: Some(3),
        zone_label: Some("zone".into()),
        ..CollectionSettings::default()
    };
    let written = put(&mut sim, 2, CATALOGUE_COLLECTION, b"orders", Bytes::from(settings.encode()));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    until_moved(&mut sim, "orders", &settings.layout(), 60_000);
    let zone = |id: NodeId| (id.0 - 1) / 2;
    let mut plain_same_zone = 0;
    for k in 0..100u32 {
        let r = put(
            &mut sim,
            1 + u64::from(k % 6),
            "orders",
            &k.to_be_bytes(),
            Bytes::from_static(b"v"),
        );
        assert!(matches!(r, Some(Reply::Written { .. })), "key {k}: {r:?}");
        // Without zones, the plain preference lists put two replicas in one zone often.
        let node = &sim.process(NodeId(1)).unwrap().node;
        let pos = node.replica().position("plain", &k.to_be_bytes());
        let owners = node.placement_for("plain").key(pos).owners;
        let mut zones: Vec<u64> = owners.iter().map(|o| zone(*o)).collect();
        zones.dedup();
        plain_same_zone += usize::from(zones.len() < 3 || zones[0] == zones[2]);
    }
    assert!(plain_same_zone > 10, "the unzoned lists would share zones: {plain_same_zone}");
    sim.run_for(10_000);
    for k in 0..100u32 {
        let held = holders(&sim, "orders", &k.to_be_bytes());
        assert_eq!(held.len(), 3, "key {k} is on {held:?}");
        let mut zones: Vec<u64> = held.iter().map(|h| zone(*h)).collect();
        zones.sort_unstable();
        zones.dedup();
        assert_eq!(zones.len(), 3, "key {k} is on {held:?}, not in three zones");
    }
}

#[test]
fn a_node_restarted_with_other_labels_moves_the_collections_that_select_by_them() {
    let mut sim = zoned(9);
    let settings = CollectionSettings {
        replicas: Some(2),
        select: [("disk".to_string(), "ssd".to_string())].into(),
        ..CollectionSettings::default()
    };
    let written = put(&mut sim, 1, CATALOGUE_COLLECTION, b"fast", Bytes::from(settings.encode()));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    until_moved(&mut sim, "fast", &settings.layout(), 60_000);
    for k in 0..60u32 {
        let r = put(&mut sim, 3, "fast", &k.to_be_bytes(), Bytes::from_static(b"v"));
        assert!(matches!(r, Some(Reply::Written { .. })), "key {k}: {r:?}");
    }
    // Node 4 is rebuilt with a hard disk, node 6 with an ssd: the collection follows.
    for (id, disk) in [(NodeId(4), "hdd"), (NodeId(6), "ssd")] {
        let down = sim.crash(id).expect("running");
        let back = down
            .restarted_with(true, |c| {
                c.labels.insert("disk".into(), disk.into());
            })
            .unwrap();
        sim.restart(id, back);
        sim.run_for(5_000);
    }
    let end = sim.now() + 120_000;
    let moved = |sim: &Cluster| {
        sim.processes().all(|(_, p)| {
            let s = p.node.catalogue().layout("fast").cloned().unwrap_or_default();
            s.moving.is_none()
                && s.labels.get(&NodeId(6)).and_then(|l| l.get("disk")).map(String::as_str)
                    == Some("ssd")
                && s.labels.get(&NodeId(4)).and_then(|l| l.get("disk")).map(String::as_str)
                    == Some("hdd")
        })
    };
    while !moved(&sim) {
        assert!(sim.now() < end, "the collection did not follow the new labels");
        sim.run_for(500);
    }
    sim.run_for(10_000);
    for k in 0..60u32 {
        let held = holders(&sim, "fast", &k.to_be_bytes());
        assert_eq!(held.len(), 2, "key {k} is on {held:?}");
        for h in &held {
            assert!(matches!(h.0, 1 | 2 | 6), "key {k} is on node {h}, which has no ssd now");
        }
        let get = Op::Get {
            collection: "fast".into(),
            key: Bytes::copy_from_slice(&k.to_be_bytes()),
            consistency: Consistency::All,
        };
        let r = call(&mut sim, NodeId(5), get);
        assert!(
            matches!(&r, Some(Reply::Value { value: Some(v), .. }) if v == "v"),
            "key {k}: {r:?}"
        );
    }
}
