//! Watches on the simulator: every change reaches a watch once, in timestamp order per
//! key, through any node, with a prefix, with message loss and duplication, across a
//! crash; unwatch and disconnects stop it; a subscriber that reconnects catches up
//! through a pull-only sync; and a client's sync can never write into a node.

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    hash::Interval,
    node::{ClientId, NodeConfig},
    proto::{
        client::{Consistency, ErrorCode, Op, Reply, RingMember},
        ClientRequest, ClientResponse, SyncBody, SyncItem, SyncMessage,
    },
    replica::Replica,
    ring::RingTable,
    sim::{check_seeds, memory_cluster, NetConfig, NodeOutput, NodeProcess, Sim},
    store::{MemStore, Record},
    sync::{SyncConfig, SyncSession},
};
use std::collections::{BTreeMap, BTreeSet};

const C: &str = "users";
/// The client id writers use on every node.
const WRITER: ClientId = 7;

/// A simulated cluster and the answers its nodes gave clients.
struct World {
    sim: Sim<NodeProcess<MemStore>>,
    inbox: Vec<(NodeId, ClientId, ClientResponse)>,
}

/// One event a watch delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    key: Bytes,
    entry: Entry,
}

impl World {
    fn new(nodes: usize, net: NetConfig, seed: u64) -> Self {
        Self::with_config(nodes, net, seed, |_| {})
    }

    fn with_config(nodes: usize, net: NetConfig, seed: u64, f: impl Fn(&mut NodeConfig)) -> Self {
        World { sim: memory_cluster(nodes, net, seed, f), inbox: Vec::new() }
    }

    fn run(&mut self, ms: u64) {
        self.sim.run_for(ms);
        for (_, node, e) in self.sim.take_events() {
            if let NodeOutput::Reply { client, resp } = e {
                self.inbox.push((node, client, resp));
            }
        }
    }

    fn send(&mut self, node: u64, client: ClientId, op: Op) -> u64 {
        let id = self.sim.rng().next_u64() >> 1;
        self.sim.act(NodeId(node), |p, now| {
            p.request(now, client, ClientRequest { id, op, seen: None })
        });
        id
    }

    /// The first answer to request `id` of `client`, removed from the inbox.
    fn take_answer(&mut self, client: ClientId, id: u64) -> Option<Reply> {
        let at = self.inbox.iter().position(|(_, c, r)| *c == client && r.id == id)?;
        Some(self.inbox.remove(at).2.result)
    }

    /// Sends `op` and runs until it is answered (10 simulated seconds at most).
    fn call(&mut self, node: u64, client: ClientId, op: Op) -> Option<Reply> {
        let id = self.send(node, client, op);
        for _ in 0..1000 {
            if let Some(r) = self.take_answer(client, id) {
                return Some(r);
            }
            self.run(10);
        }
        None
    }

    fn watch(&mut self, node: u64, client: ClientId, prefix: Option<&str>) -> u64 {
        let op =
            Op::Watch { collection: C.into(), prefix: prefix.map(|p| Bytes::from(p.to_string())) };
        let id = self.send(node, client, op);
        for _ in 0..1000 {
            if let Some(r) = self.take_answer(client, id) {
                assert_eq!(r, Reply::Ok, "a watch is answered Ok first");
                return id;
            }
            self.run(10);
        }
        panic!("the watch was not answered");
    }

    /// Events delivered so far to watch `watch` of `client`, removed from the inbox.
    fn events(&mut self, client: ClientId, watch: u64) -> Vec<Event> {
        let mut out = Vec::new();
        let mut rest = Vec::new();
        for (node, c, resp) in std::mem::take(&mut self.inbox) {
            match resp.result {
                Reply::Event { collection, key, value, ts, origin, expires }
                    if c == client && resp.id == watch =>
                {
                    assert_eq!(collection, C);
                    out.push(Event { key, entry: Entry { value, ts, origin, expires } });
                }
                result => rest.push((node, c, ClientResponse { id: resp.id, result, ts: None })),
            }
        }
        self.inbox = rest;
        out
    }

    /// Writes (or deletes, with `None`) through `node`; the timestamp when acknowledged.
    fn write(&mut self, node: u64, key: &str, value: Option<&str>) -> Option<Timestamp> {
        let key = Bytes::from(key.to_string());
        let op = match value {
            Some(v) => Op::Set {
                collection: C.into(),
                key,
                value: Bytes::from(v.to_string()),
                consistency: Consistency::Quorum,
                ttl_ms: None,
            },
            None => Op::Del { collection: C.into(), key, consistency: Consistency::Quorum },
        };
        match self.call(node, WRITER, op) {
            Some(Reply::Written { ts }) => Some(ts),
            _ => None,
        }
    }

    /// Every node's entries of the collection, merged: what the cluster holds.
    fn cluster_data(&self, collection: &str) -> BTreeMap<Bytes, Entry> {
        let mut out: BTreeMap<Bytes, Entry> = BTreeMap::new();
        for (_, p) in self.sim.processes() {
            let records =
                p.node.replica().range(collection, Interval::full(), None, usize::MAX).unwrap();
            for r in records {
                let merged = match out.remove(&r.key) {
                    Some(e) => e.merge(r.entry),
                    None => r.entry,
                };
                out.insert(r.key, merged);
            }
        }
        out
    }
}

/// Per key, the versions emitted must strictly increase (timestamp order, no repeats).
fn check_order(events: &[Event]) -> Result<(), String> {
    let mut last: BTreeMap<&Bytes, Entry> = BTreeMap::new();
    for e in events {
        if let Some(prev) = last.get(&e.key) {
            if e.entry.version() <= prev.version() {
                return Err(format!(
                    "key {:?}: event {:?} after {:?} (not in timestamp order, or repeated)",
                    e.key,
                    e.entry.version(),
                    prev.version()
                ));
            }
        }
        last.insert(&e.key, e.entry.clone());
    }
    Ok(())
}

fn key(i: u64) -> String {
    format!("user:{i:03}")
}

#[test]
fn a_watch_sees_every_write_and_delete_made_through_other_nodes_once() {
    check_seeds(
        "a_watch_sees_every_write_and_delete_made_through_other_nodes_once",
        1,
        3,
        |seed| {
            let mut w = World::new(5, NetConfig::lan(), seed);
            let watch = w.watch(1, 100, None);
            let mut written: Vec<(String, Timestamp, bool)> = Vec::new();
            for i in 0..40u64 {
                let k = key(i % 12);
                let node = 2 + i % 4;
                let delete = i % 5 == 4;
                let value = format!("v{i}");
                let ts = w
                    .write(node, &k, (!delete).then_some(value.as_str()))
                    .ok_or_else(|| format!("write {i} through node {node} failed"))?;
                written.push((k, ts, delete));
                w.run(100); // every replica reports before the key is written again
            }
            w.run(1_000);
            let events = w.events(100, watch);
            check_order(&events)?;
            let got: Vec<(String, Timestamp, bool)> = events
                .iter()
                .map(|e| {
                    (
                        String::from_utf8_lossy(&e.key).into_owned(),
                        e.entry.ts,
                        e.entry.value.is_none(),
                    )
                })
                .collect();
            let mut want = written.clone();
            want.sort();
            let mut sorted = got.clone();
            sorted.sort();
            if sorted != want {
                return Err(format!(
                    "{} writes, {} events:\nwant {want:?}\ngot  {sorted:?}",
                    written.len(),
                    got.len()
                ));
            }
            // The values are the ones written.
            for e in &events {
                if let Some(v) = &e.entry.value {
                    if !v.starts_with(b"v") {
                        return Err(format!("unexpected value {v:?}"));
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn a_prefix_watch_sees_only_its_keys_of_its_collection() {
    let mut w = World::new(5, NetConfig::lan(), 3);
    let watch = w.watch(2, 100, Some("user:"));
    for (node, k) in [(1, "user:1"), (3, "admin:1"), (4, "user:2"), (5, "use"), (1, "user:")] {
        assert!(w.write(node, k, Some("x")).is_some(), "write {k}");
    }
    let other = Op::Set {
        collection: "other".into(),
        key: Bytes::from("user:9"),
        value: Bytes::from("x"),
        consistency: Consistency::All,
        ttl_ms: None,
    };
    assert!(matches!(w.call(3, WRITER, other), Some(Reply::Written { .. })));
    w.run(1_000);
    let keys: BTreeSet<Bytes> = w.events(100, watch).into_iter().map(|e| e.key).collect();
    let want: BTreeSet<Bytes> =
        ["user:1", "user:2", "user:"].into_iter().map(Bytes::from).collect();
    assert_eq!(keys, want);
}

#[test]
fn bad_watch_requests_get_typed_errors() {
    let mut w = World::new(3, NetConfig::lan(), 4);
    let bad = Op::Watch { collection: "no/slash".into(), prefix: None };
    assert!(matches!(
        w.call(1, 100, bad),
        Some(Reply::Error { code: ErrorCode::InvalidInput, .. })
    ));
    let big = Op::Watch { collection: C.into(), prefix: Some(Bytes::from(vec![b'x'; 70_000])) };
    assert!(matches!(
        w.call(1, 100, big),
        Some(Reply::Error { code: ErrorCode::InvalidInput, .. })
    ));
    assert!(matches!(
        w.call(1, 100, Op::Unwatch { watch: 12345 }),
        Some(Reply::Error { code: ErrorCode::NotFound, .. })
    ));
    for (_, p) in w.sim.processes() {
        assert_eq!(p.node.watches().watch_count(), 0);
    }
}

/// The changes applied anywhere, per key: the version each node's store holds.
fn applied_versions(w: &World) -> BTreeMap<Bytes, BTreeSet<(Timestamp, bool)>> {
    let mut out: BTreeMap<Bytes, BTreeSet<(Timestamp, bool)>> = BTreeMap::new();
    for (_, p) in w.sim.processes() {
        for r in p.node.replica().range(C, Interval::full(), None, usize::MAX).unwrap() {
            out.entry(r.key).or_default().insert((r.entry.ts, r.entry.value.is_none()));
        }
    }
    out
}

#[test]
fn with_loss_and_duplication_every_change_is_delivered_exactly_once() {
    check_seeds(
        "with_loss_and_duplication_every_change_is_delivered_exactly_once",
        10,
        3,
        |seed| {
            let net = NetConfig::lan().with_loss(0.05).with_duplicates(0.10);
            let mut w = World::new(5, net, seed);
            let watch = w.watch(1, 100, None);
            let mut acked = 0;
            for i in 0..60u64 {
                acked += usize::from(w.write(2 + i % 4, &key(i), Some("v")).is_some());
            }
            w.run(10_000);
            let mut events = w.events(100, watch);
            let first = applied_versions(&w);
            for i in 0..20u64 {
                acked += usize::from(w.write(1 + i % 5, &key(i), None).is_some());
            }
            w.run(10_000);
            events.extend(w.events(100, watch));
            check_order(&events)?;
            // Every change that reached any replica, phase by phase: the writes, then the
            // deletes.
            let mut want: BTreeSet<(Bytes, Timestamp, bool)> = BTreeSet::new();
            for (k, versions) in first.iter().chain(applied_versions(&w).iter()) {
                for (ts, del) in versions {
                    want.insert((k.clone(), *ts, *del));
                }
            }
            let got: Vec<(Bytes, Timestamp, bool)> = events
                .iter()
                .map(|e| (e.key.clone(), e.entry.ts, e.entry.value.is_none()))
                .collect();
            let unique: BTreeSet<_> = got.iter().cloned().collect();
            let stats: Vec<_> = w.sim.processes().map(|(_, p)| p.node.watches().stats()).collect();
            let resent: u64 = stats.iter().map(|s| s.batches_resent).sum();
            let discarded: u64 = stats.iter().map(|s| s.batches_discarded).sum();
            let net = w.sim.stats();
            println!(
            "seed {seed}: {} changes applied, {} events, {} unique, {acked} writes acknowledged; \
             network lost {} and duplicated {} of {} messages; batches re-sent {resent}, \
             discarded {discarded}; suppressed duplicate reports {}",
            want.len(),
            got.len(),
            unique.len(),
            net.lost,
            net.duplicated,
            net.sent,
            stats[0].suppressed
        );
            if unique.len() != got.len() {
                return Err(format!("{} events but {} distinct changes", got.len(), unique.len()));
            }
            if unique != want {
                let missing: Vec<_> = want.difference(&unique).collect();
                let extra: Vec<_> = unique.difference(&want).collect();
                return Err(format!("missing {missing:?}, unexpected {extra:?}"));
            }
            if net.lost == 0 || net.duplicated == 0 {
                return Err("the network neither lost nor duplicated anything".into());
            }
            Ok(())
        },
    );
}

#[test]
fn unwatch_and_a_closed_connection_stop_events() {
    let mut w = World::new(5, NetConfig::lan(), 6);
    let a = w.watch(1, 100, None);
    let b = w.watch(3, 101, None);
    assert!(w.write(2, "k1", Some("x")).is_some());
    w.run(500);
    assert_eq!(w.events(100, a).len(), 1);
    assert_eq!(w.events(101, b).len(), 1);
    assert_eq!(w.call(1, 100, Op::Unwatch { watch: a }), Some(Reply::Ok));
    assert!(matches!(
        w.call(1, 100, Op::Unwatch { watch: a }),
        Some(Reply::Error { code: ErrorCode::NotFound, .. })
    ));
    w.sim.act(NodeId(3), |p, now| p.node.client_gone(now, 101));
    assert!(w.write(4, "k2", Some("y")).is_some());
    assert!(w.write(5, "k1", None).is_some());
    w.run(2_000);
    assert!(w.events(100, a).is_empty(), "no events after unwatch");
    assert!(w.events(101, b).is_empty(), "no events after the connection closed");
    for (id, p) in w.sim.processes() {
        let ws = p.node.watches();
        assert_eq!((ws.watch_count(), ws.feed_count()), (0, 0), "node {id} holds nothing");
        assert!(!p.node.replica().change_feed(), "node {id} stopped recording changes");
    }
}

/// A client's local copy of the collection, kept by events and refreshed by sync.
struct LocalCopy {
    replica: Replica<MemStore>,
    client: ClientId,
}

impl LocalCopy {
    fn apply(&mut self, events: Vec<Event>) {
        for e in events {
            self.replica.merge(C, e.key, e.entry).unwrap();
        }
    }

    /// Syncs every interval between ring tokens with one of its replicas; returns the
    /// entries the sync brought. Events arriving meanwhile are applied too.
    fn sync_all(&mut self, w: &mut World, watch: u64) -> u64 {
        let Some(Reply::Ring { members }) = w.call(1, self.client, Op::Ring) else {
            panic!("no ring")
        };
        let table =
            RingTable::new(members.iter().map(|m: &RingMember| (m.id, m.tokens.as_slice())));
        let vnodes = table.vnodes().to_vec();
        let mut received = 0;
        for (i, v) in vnodes.iter().enumerate() {
            let prev = vnodes[(i + vnodes.len() - 1) % vnodes.len()].pos;
            let range = Interval::new(prev, v.pos);
            let replica = table.preference_list(v.pos, 3)[0];
            let session = i as u64 + 1;
            let (mut s, mut msg) = SyncSession::initiate(
                session,
                &self.replica,
                C,
                range,
                session * 31,
                SyncConfig::pull_only(),
            )
            .unwrap();
            loop {
                let reply = w.call(replica.0, self.client, Op::Sync { msg });
                let events = w.events(self.client, watch);
                self.apply(events);
                match reply {
                    Some(Reply::Sync { msg: m }) => match s.handle(&mut self.replica, m).unwrap() {
                        Some(next) => msg = next,
                        None => break,
                    },
                    Some(Reply::Ok) => break,
                    other => panic!("sync of {range} with {}: {other:?}", replica.0),
                }
            }
            assert!(s.is_done(), "session over {range} finished");
            received += s.stats().entries_applied;
        }
        received
    }

    fn data(&self) -> BTreeMap<Bytes, Entry> {
        self.replica
            .range(C, Interval::full(), None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|r: Record| (r.key, r.entry))
            .collect()
    }
}

#[test]
fn a_subscriber_that_reconnects_catches_up_through_sync_and_misses_nothing() {
    check_seeds(
        "a_subscriber_that_reconnects_catches_up_through_sync_and_misses_nothing",
        20,
        2,
        |seed| {
            let mut w = World::new(5, NetConfig::lan(), seed);
            let mut local =
                LocalCopy { replica: Replica::new(MemStore::new()).unwrap(), client: 100 };
            let watch = w.watch(1, 100, None);
            for i in 0..30u64 {
                w.write(1 + i % 5, &key(i), Some(&format!("a{i}"))).ok_or("write failed")?;
            }
            w.run(1_000);
            let events = w.events(100, watch);
            local.apply(events);
            if local.data() != w.cluster_data(C) {
                return Err("events alone keep the local copy equal to the cluster".into());
            }
            // The connection drops; the cluster moves on.
            w.sim.act(NodeId(1), |p, now| p.node.client_gone(now, 100));
            let mut missed = BTreeSet::new();
            for i in 20..45u64 {
                let k = key(i);
                let value = (i % 4 != 0).then(|| format!("b{i}"));
                w.write(1 + i % 5, &k, value.as_deref()).ok_or("write failed")?;
                missed.insert(k);
            }
            w.run(1_000);
            if !w.events(100, watch).is_empty() {
                return Err("events after the disconnect".into());
            }
            // Reconnect (to another node): watch first, then sync every interval.
            let watch = w.watch(2, 100, None);
            let concurrent = w.write(3, "during", Some("sync")).ok_or("write failed")?;
            let received = local.sync_all(&mut w, watch);
            w.run(1_000);
            let events = w.events(100, watch);
            local.apply(events);
            let (mine, theirs) = (local.data(), w.cluster_data(C));
            if mine != theirs {
                let diff: Vec<_> = theirs.iter().filter(|(k, e)| mine.get(*k) != Some(e)).collect();
                return Err(format!("the local copy differs from the cluster: {diff:?}"));
            }
            if mine.get(&Bytes::from("during")).map(|e| e.ts) != Some(concurrent) {
                return Err("the write made during the sync arrived".into());
            }
            println!(
                "seed {seed}: {} changes missed while away, {received} entries pulled by sync",
                missed.len()
            );
            // Sync ships only what differs: the missed changes (and perhaps the concurrent one).
            if received < missed.len() as u64 || received > missed.len() as u64 + 1 {
                return Err(format!("sync pulled {received} entries for {} missed", missed.len()));
            }
            Ok(())
        },
    );
}

/// Everything `node` stores in the collection.
fn stored(w: &World, node: u64) -> Vec<Record> {
    let replica = w.sim.process(NodeId(node)).unwrap().node.replica();
    replica.range(C, Interval::full(), None, usize::MAX).unwrap()
}

#[test]
fn a_client_sync_never_writes_into_the_node() {
    let mut w = World::new(5, NetConfig::lan(), 8);
    for i in 0..30u64 {
        assert!(w.write(1 + i % 5, &key(i), Some("real")).is_some());
    }
    w.run(1_000);
    let node = 2u64;
    let before = stored(&w, node);
    assert!(!before.is_empty());
    // A client whose copy holds newer entries for every key the node has, and more.
    let mut evil = Replica::new(MemStore::new()).unwrap();
    for r in &before {
        let newer = Entry::value("injected", Timestamp(r.entry.ts.0 + 1_000_000), NodeId(666));
        evil.merge(C, r.key.clone(), newer).unwrap();
        evil.merge(
            C,
            Bytes::from(format!("{:?}-new", r.key)),
            Entry::value("x", r.entry.ts, NodeId(666)),
        )
        .unwrap();
    }
    // Intervals the node replicates: from the ring, the tokens whose preference list
    // holds it.
    let Some(Reply::Ring { members }) = w.call(1, 100, Op::Ring) else { panic!("no ring") };
    let table = RingTable::new(members.iter().map(|m| (m.id, m.tokens.as_slice())));
    let vnodes = table.vnodes().to_vec();
    let mut refused = 0;
    let mut served = 0;
    for (i, v) in vnodes.iter().enumerate() {
        let range = Interval::new(vnodes[(i + vnodes.len() - 1) % vnodes.len()].pos, v.pos);
        if !table.preference_list(v.pos, 3).contains(&NodeId(node)) {
            continue;
        }
        // A client that pushes (the default config) is refused when it ships entries.
        let (mut s, mut msg) =
            SyncSession::initiate(i as u64, &evil, C, range, 5, SyncConfig::default()).unwrap();
        loop {
            match w.call(node, 100, Op::Sync { msg }) {
                Some(Reply::Sync { msg: m }) => match s.handle(&mut evil, m) {
                    Ok(Some(next)) => msg = next,
                    _ => break,
                },
                Some(Reply::Error { code: ErrorCode::InvalidInput, message, .. }) => {
                    assert!(message.contains("does not accept entries"), "{message}");
                    refused += 1;
                    break;
                }
                Some(Reply::Ok) => {
                    served += 1;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(refused > 0, "the node refused pushed entries ({served} sessions had nothing to push)");
    // Forged entries in a step are refused too: a session over the interval holding a
    // key the node stores.
    let pos = evil.position(C, &before[0].key);
    let at = vnodes.iter().position(|v| v.pos >= pos).unwrap_or(0);
    let range = Interval::new(vnodes[(at + vnodes.len() - 1) % vnodes.len()].pos, vnodes[at].pos);
    assert!(range.contains(pos));
    let (_, begin) =
        SyncSession::initiate(900, &evil, C, range, 5, SyncConfig::pull_only()).unwrap();
    let first = w.call(node, 100, Op::Sync { msg: begin });
    assert!(
        matches!(&first, Some(Reply::Sync { msg }) if matches!(msg.body, SyncBody::Step { .. })),
        "{first:?}"
    );
    let forged = SyncMessage {
        session: 900,
        body: SyncBody::Step {
            items: vec![SyncItem::Entries {
                entries: vec![(
                    before[0].key.clone(),
                    Entry::value("evil", Timestamp(u64::MAX >> 1), NodeId(666)),
                )],
            }],
        },
    };
    let answer = w.call(node, 100, Op::Sync { msg: forged });
    match answer {
        Some(Reply::Error { code: ErrorCode::InvalidInput, message, .. }) => {
            assert!(message.contains("does not accept entries"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The whole ring is more than a node of five replicates: refused with a clear error.
    let (_, begin) =
        SyncSession::initiate(901, &evil, C, Interval::full(), 5, SyncConfig::pull_only()).unwrap();
    match w.call(node, 100, Op::Sync { msg: begin }) {
        Some(Reply::Error { code: ErrorCode::InvalidInput, message, .. }) => {
            assert!(message.contains("does not replicate"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A step of a session that does not exist.
    let stray = SyncMessage { session: 555, body: SyncBody::Step { items: vec![] } };
    assert!(matches!(
        w.call(node, 100, Op::Sync { msg: stray }),
        Some(Reply::Error { code: ErrorCode::NotFound, .. })
    ));
    w.run(1_000);
    let after = stored(&w, node);
    assert_eq!(after, before, "the node's store is unchanged");
    assert_eq!(w.sim.process(NodeId(node)).unwrap().node.watches().client_syncs(), 0);
}

#[test]
fn a_watch_keeps_delivering_after_a_node_crashes() {
    check_seeds("a_watch_keeps_delivering_after_a_node_crashes", 30, 2, |seed| {
        let mut w = World::new(5, NetConfig::lan(), seed);
        let watch = w.watch(1, 100, None);
        let mut acked = Vec::new();
        for i in 0..10u64 {
            acked.push((key(i), w.write(2, &key(i), Some("before")).ok_or("write failed")?));
        }
        w.run(500);
        w.sim.crash(NodeId(3));
        for i in 10..30u64 {
            if let Some(ts) = w.write(2 + (i % 2) * 2, &key(i), Some("after")) {
                acked.push((key(i), ts));
            }
            w.run(50);
        }
        // Long enough for the others to declare node 3 dead; the watch goes on.
        w.run(30_000);
        for i in 30..40u64 {
            acked.push((key(i), w.write(5, &key(i), Some("later")).ok_or("write failed")?));
        }
        w.run(1_000);
        let events = w.events(100, watch);
        check_order(&events)?;
        let got: BTreeSet<(String, Timestamp)> = events
            .iter()
            .map(|e| (String::from_utf8_lossy(&e.key).into_owned(), e.entry.ts))
            .collect();
        if got.len() != events.len() {
            return Err("a change was delivered twice".into());
        }
        for (k, ts) in &acked {
            if !got.contains(&(k.clone(), *ts)) {
                return Err(format!("acknowledged write of {k} at {ts} was not delivered"));
            }
        }
        if acked.len() < 35 {
            return Err(format!("only {} of 40 writes were acknowledged", acked.len()));
        }
        Ok(())
    });
}

/// The error that ends watch `watch` of `client`, if one arrived.
fn ending(w: &mut World, client: ClientId, watch: u64) -> Option<(ErrorCode, String)> {
    w.events(client, watch);
    match w.take_answer(client, watch) {
        Some(Reply::Error { code, message, .. }) => Some((code, message)),
        Some(other) => panic!("unexpected answer {other:?}"),
        None => None,
    }
}

#[test]
fn a_watcher_too_far_behind_is_told_its_watch_ended() {
    // Sources keep at most 1 KiB unacknowledged per subscription.
    let mut w = World::with_config(5, NetConfig::lan(), 12, |c| c.watch.buffer_max_bytes = 1024);
    let watch = w.watch(1, 100, None);
    assert!(w.write(2, "k", Some("x")).is_some());
    w.run(500);
    assert_eq!(w.events(100, watch).len(), 1);
    // Cut the watcher off briefly (not long enough to be declared dead) while the others
    // take 4 KiB of writes.
    let others = [NodeId(2), NodeId(3), NodeId(4), NodeId(5)];
    w.sim.partition(&[&[NodeId(1)], &others]);
    for i in 0..20u64 {
        assert!(w.write(2 + i % 4, &key(i), Some(&"v".repeat(200))).is_some());
    }
    w.sim.heal();
    w.run(10_000);
    let (code, message) = ending(&mut w, 100, watch).expect("the watch ended");
    assert_eq!(code, ErrorCode::Unavailable);
    assert!(message.contains("sync"), "{message}");
    let node1 = &w.sim.process(NodeId(1)).unwrap().node;
    assert_eq!(node1.watches().stats().lagged, 1);
    assert_eq!(node1.membership().me().status, dhrt_core::membership::Status::Alive);
    for (id, p) in w.sim.processes() {
        let ws = p.node.watches();
        assert_eq!((ws.watch_count(), ws.feed_count()), (0, 0), "node {id} holds nothing");
    }
    // Unwatching an ended watch finds nothing.
    assert!(matches!(
        w.call(1, 100, Op::Unwatch { watch }),
        Some(Reply::Error { code: ErrorCode::NotFound, .. })
    ));
}

#[test]
fn a_watcher_the_cluster_declared_dead_is_told_its_watch_ended() {
    let mut w = World::new(5, NetConfig::lan(), 13);
    let watch = w.watch(1, 100, None);
    let others = [NodeId(2), NodeId(3), NodeId(4), NodeId(5)];
    w.sim.partition(&[&[NodeId(1)], &others]);
    w.run(40_000); // the others declare node 1 dead and stop its subscriptions
    for i in 0..5u64 {
        assert!(w.write(2, &key(i), Some("while away")).is_some());
    }
    assert_eq!(ending(&mut w, 100, watch), None, "nothing is known to be lost yet");
    w.sim.heal();
    w.run(40_000);
    let (code, _) = ending(&mut w, 100, watch).expect("the watch ended");
    assert_eq!(code, ErrorCode::Unavailable);
}

#[test]
fn a_host_can_end_the_watches_of_a_client_that_reads_too_slowly() {
    let mut w = World::new(3, NetConfig::lan(), 21);
    let a = w.watch(1, 100, None);
    let b = w.watch(1, 100, Some("k"));
    let other = w.watch(1, 101, None);
    assert!(w.write(2, "k1", Some("x")).is_some());
    w.run(500);
    assert_eq!(w.events(100, a).len(), 1);
    // The host sees client 100's connection fall behind and ends its watches.
    let reason = "the watch ended: this connection lagged; read faster, sync and watch again";
    let mut ended = 0;
    w.sim.act(NodeId(1), |p, _| ended = p.node.end_client_watches(100, reason));
    assert_eq!(ended, 2);
    w.run(100);
    for watch in [a, b] {
        let (code, message) = ending(&mut w, 100, watch).expect("each watch ended with an error");
        assert_eq!(code, ErrorCode::Unavailable);
        assert_eq!(message, reason);
    }
    assert!(w.write(3, "k2", Some("y")).is_some());
    w.run(1_000);
    assert!(w.events(100, a).is_empty() && w.events(100, b).is_empty(), "no events after");
    assert_eq!(w.events(101, other).len(), 2, "another client's watch goes on");
    assert_eq!(w.sim.process(NodeId(1)).unwrap().node.watches().stats().lagged, 2);
    let mut again = 0;
    w.sim.act(NodeId(1), |p, _| again = p.node.end_client_watches(100, reason));
    assert_eq!(again, 0, "nothing left to end");
}
