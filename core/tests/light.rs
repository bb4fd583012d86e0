//! The light peer against a simulated cluster: every frame it sends goes through the
//! wire format to a simulated node, every answer comes back as a frame, and a crashed
//! node looks to it like a connection that closed.
//!
//! For tokens the harness plays the server's part (a node never sees [`Op::Auth`]): it
//! tracks each connection, answers `Auth`, and refuses requests of a connection without
//! an accepted token as the server does.

use bytes::Bytes;
use dhrt_core::{
    auth::BearerToken,
    catalogue::{CollectionSettings, Layout, CATALOGUE_COLLECTION},
    entry::{Entry, NodeId},
    hash::Interval,
    light::{LightConfig, LightOutput, LightPeer, StreamStatus},
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, ClientResponse, Message,
    },
    replica::Change,
    sim::{call, memory_cluster, sim_addr, NetConfig, NodeOutput, NodeProcess, Sim},
    store::{MemStore, Record},
    wire, Millis,
};
use std::collections::BTreeMap;

type Cluster = Sim<NodeProcess<MemStore>>;

/// The client id the light peer has on every node.
const CLIENT: u64 = 500;
const C: &str = "users";

struct Harness {
    sim: Cluster,
    peer: LightPeer,
    replies: BTreeMap<u64, Reply>,
    changes: Vec<(u64, Change)>,
    statuses: Vec<(u64, StreamStatus)>,
    /// `(addr, op)` of every request sent.
    sent: Vec<(String, Op)>,
    ring_changes: usize,
    unreachable: Vec<String>,
    /// `(code, message)` of every [`LightOutput::Refused`].
    refused: Vec<(ErrorCode, String)>,
    /// With tokens required: each token the harness's "server" accepts, and whether it
    /// may write.
    tokens: Option<BTreeMap<String, bool>>,
    /// Open connections by address: whether their token was accepted (and may write).
    conns: BTreeMap<String, Option<bool>>,
    /// `(addr, op)` of the first request of every connection.
    first_ops: Vec<(String, Op)>,
}

/// What the server answers a request of a connection without an accepted token.
const NO_TOKEN: &str = "this node requires a token";
/// What it answers a token it does not know.
const UNKNOWN_TOKEN: &str = "the token presented is unknown or revoked";

fn node_of(addr: &str) -> Option<NodeId> {
    addr.strip_prefix("sim-")?.parse().ok().map(NodeId)
}

impl Harness {
    fn new(nodes: usize, seed: u64) -> Harness {
        let mut h = Harness::unstarted(nodes, seed, None, None);
        h.start();
        h
    }

    /// A cluster whose nodes require tokens (`tokens`: each accepted token and whether
    /// it may write), and a peer presenting `token`, started and with the ring read.
    fn with_tokens(seed: u64, tokens: &[(&str, bool)], token: &str) -> Harness {
        let tokens = tokens.iter().map(|(t, w)| (t.to_string(), *w)).collect();
        let mut h = Harness::unstarted(3, seed, Some(tokens), Some(token));
        h.start();
        h
    }

    /// The harness before the peer reads the ring.
    fn unstarted(
        nodes: usize,
        seed: u64,
        tokens: Option<BTreeMap<String, bool>>,
        token: Option<&str>,
    ) -> Harness {
        let sim = memory_cluster(nodes, NetConfig::lan(), seed, |_| {});
        Harness::over(sim, seed, tokens, token)
    }

    /// The harness over `sim` before the peer reads the ring.
    fn over(
        sim: Cluster,
        seed: u64,
        tokens: Option<BTreeMap<String, bool>>,
        token: Option<&str>,
    ) -> Harness {
        let token = token.map(|t| BearerToken(t.to_string()));
        let config = LightConfig { seed, token, ..LightConfig::default() };
        let peer = LightPeer::new(vec![sim_addr(NodeId(1))], config);
        Harness {
            sim,
            peer,
            replies: BTreeMap::new(),
            changes: Vec::new(),
            statuses: Vec::new(),
            sent: Vec::new(),
            ring_changes: 0,
            unreachable: Vec::new(),
            refused: Vec::new(),
            tokens,
            conns: BTreeMap::new(),
            first_ops: Vec::new(),
        }
    }

    fn start(&mut self) {
        let now = self.now();
        self.peer.start(now);
        self.run_until(|h| h.ring_changes > 0, 5_000);
        assert!(!self.peer.ring().is_empty(), "the peer read the ring");
    }

    /// The connection to `addr` closed: the peer hears of it.
    fn close_conn(&mut self, addr: &str) {
        self.conns.remove(addr);
        let now = self.now();
        self.peer.disconnected(now, addr);
    }

    /// The server's part: opens the connection on its first frame, answers `Auth`, and
    /// refuses what the connection's token does not allow. `None` passes `req` on to
    /// the node.
    fn serve(&mut self, addr: &str, req: &ClientRequest) -> Option<Reply> {
        let conn = match self.conns.get(addr) {
            Some(conn) => *conn,
            None => {
                self.first_ops.push((addr.to_string(), req.op.clone()));
                self.conns.insert(addr.to_string(), None);
                None
            }
        };
        let tokens = self.tokens.as_ref()?;
        let refuse =
            |code, message: &str| Reply::Error { code, message: message.to_string(), acked: None };
        if let Op::Auth { token } = &req.op {
            let may_write = tokens.get(&token.0).copied();
            self.conns.insert(addr.to_string(), may_write);
            return Some(match may_write {
                Some(_) => Reply::Ok,
                None => refuse(ErrorCode::Unauthorized, UNKNOWN_TOKEN),
            });
        }
        match conn {
            None => Some(refuse(ErrorCode::Unauthorized, NO_TOKEN)),
            Some(false) if req.op.is_write() => {
                Some(refuse(ErrorCode::Forbidden, "a read token cannot write"))
            }
            Some(_) => None,
        }
    }

    fn now(&self) -> Millis {
        self.sim.now()
    }

    /// Moves the peer's outputs to the nodes and the nodes' answers back, 10 ms at a time.
    fn step(&mut self) {
        while let Some(out) = self.peer.poll_output() {
            match out {
                LightOutput::Send { addr, frame } => {
                    let Ok(Message::Request(req)) = wire::decode(&frame) else {
                        panic!("the peer sends requests")
                    };
                    self.sent.push((addr.clone(), req.op.clone()));
                    let node = node_of(&addr).expect("a sim address");
                    if !self.sim.is_running(node) {
                        self.close_conn(&addr);
                    } else if let Some(result) = self.serve(&addr, &req) {
                        let resp = ClientResponse { id: req.id, result, ts: None };
                        let frame = wire::encode(&Message::Response(resp)).unwrap();
                        let now = self.now();
                        self.peer.handle_frame(now, &addr, &frame);
                    } else {
                        self.sim.act(node, |p, now| p.request(now, CLIENT, req));
                    }
                }
                LightOutput::Reply { handle, reply } | LightOutput::NoAnswer { handle, reply } => {
                    self.replies.insert(handle, reply);
                }
                LightOutput::Change { handle, change } => self.changes.push((handle, change)),
                LightOutput::Status { handle, status } => self.statuses.push((handle, status)),
                LightOutput::RingChanged => self.ring_changes += 1,
                LightOutput::Unreachable { message } => self.unreachable.push(message),
                LightOutput::Refused { code, message } => self.refused.push((code, message)),
            }
        }
        self.sim.run_for(10);
        let now = self.now();
        for (_, node, event) in self.sim.take_events() {
            if let NodeOutput::Reply { client: CLIENT, resp } = event {
                let frame = wire::encode(&Message::Response(resp)).unwrap();
                self.peer.handle_frame(now, &sim_addr(node), &frame);
            }
        }
        if self.peer.next_deadline().is_some_and(|d| d <= now) {
            self.peer.tick(now);
            let next = self.peer.next_deadline();
            assert!(next.is_none_or(|d| d > now), "a tick leaves no deadline due ({next:?})");
        }
    }

    fn run(&mut self, ms: Millis) {
        let until = self.now() + ms;
        while self.now() < until {
            self.step();
        }
    }

    fn run_until(&mut self, done: impl Fn(&Harness) -> bool, max_ms: Millis) -> bool {
        let until = self.now() + max_ms;
        while self.now() < until {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }

    fn call(&mut self, op: Op) -> Reply {
        let now = self.now();
        let handle = self.peer.call(now, op);
        assert!(self.run_until(|h| h.replies.contains_key(&handle), 20_000), "no answer");
        self.replies.remove(&handle).unwrap()
    }

    fn crash(&mut self, node: NodeId) {
        self.sim.crash(node);
        self.close_conn(&sim_addr(node));
    }

    fn cluster_data(&self) -> BTreeMap<Bytes, Entry> {
        self.cluster_data_of(C)
    }

    /// Every node's entries of `collection`, the newest of each key.
    fn cluster_data_of(&self, collection: &str) -> BTreeMap<Bytes, Entry> {
        let mut all: BTreeMap<Bytes, Entry> = BTreeMap::new();
        for (_, p) in self.sim.processes() {
            let replica = p.node.replica();
            let records =
                replica.range(collection, Interval::full(), None, usize::MAX).unwrap_or_default();
            for r in records {
                let keep = all.get(&r.key).is_none_or(|e| r.entry.supersedes(e));
                if keep {
                    all.insert(r.key, r.entry);
                }
            }
        }
        all
    }

    fn copy_data(&self, handle: u64) -> BTreeMap<Bytes, Entry> {
        let copy = self.peer.copy(handle).expect("the copy is open");
        copy.replica()
            .range(copy.collection(), Interval::full(), None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|r: Record| (r.key, r.entry))
            .collect()
    }

    /// The node the last watch request went to.
    fn watch_node(&self) -> NodeId {
        let last = self.sent.iter().rev().find(|(_, op)| matches!(op, Op::Watch { .. }));
        last.and_then(|(addr, _)| node_of(addr)).expect("a watch was sent")
    }

    fn status_seen(&self, handle: u64, want: impl Fn(&StreamStatus) -> bool) -> bool {
        self.statuses.iter().any(|(h, s)| *h == handle && want(s))
    }
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

fn get(key: &str) -> Op {
    Op::Get {
        collection: C.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        consistency: Consistency::Quorum,
    }
}

fn value(reply: Reply) -> Option<String> {
    match reply {
        Reply::Value { value, .. } => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn single_key_requests_go_to_the_owner_and_others_to_any_node() {
    let mut h = Harness::new(5, 1);
    assert_eq!(h.peer.config().replicas, 3, "learned from Stats");
    for i in 0..20 {
        let key = format!("k{i}");
        assert!(matches!(h.call(set(&key, "v")), Reply::Written { .. }));
        let (addr, _) = h.sent.last().unwrap().clone();
        assert_eq!(addr, h.peer.ring().route(C, key.as_bytes())[0], "{key} went to its owner");
    }
    assert_eq!(value(h.call(get("k3"))).as_deref(), Some("v"));
    assert!(matches!(h.call(Op::Stats), Reply::Stats(_)));
}

#[test]
fn reads_survive_the_death_of_the_owner_through_another_replica() {
    let mut h = Harness::new(3, 2);
    for i in 0..10 {
        assert!(matches!(h.call(set(&format!("k{i}"), &format!("v{i}"))), Reply::Written { .. }));
    }
    let owner = node_of(&h.peer.ring().route(C, b"k4")[0]).unwrap();
    h.crash(owner);
    let sent_before = h.sent.len();
    assert_eq!(value(h.call(get("k4"))).as_deref(), Some("v4"));
    let tried: Vec<&String> = h.sent[sent_before..].iter().map(|(a, _)| a).collect();
    assert!(tried.iter().all(|a| **a != sim_addr(owner)), "the dead owner is skipped: {tried:?}");
    // Once the failure detector has spoken, the ring says so too.
    h.run(15_000);
    let dead = h.peer.members().iter().find(|m| m.id == owner).unwrap();
    assert_ne!(dead.status, "alive", "the refreshed ring knows");
    assert_eq!(value(h.call(get("k7"))).as_deref(), Some("v7"));
}

#[test]
fn a_request_to_a_node_that_is_gone_fails_with_a_sentence() {
    let mut h = Harness::new(3, 3);
    h.crash(NodeId(2));
    let now = h.now();
    let handle = h.peer.call_at(now, &sim_addr(NodeId(2)), Op::Stats);
    assert!(h.run_until(|h| h.replies.contains_key(&handle), 10_000));
    match h.replies.remove(&handle).unwrap() {
        Reply::Error { code: ErrorCode::Unavailable, message, .. } => {
            assert!(message.contains("sim-2"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let mut lone = LightPeer::new(vec!["nowhere:1".into()], LightConfig::default());
    lone.start(0);
    let mut sent = Vec::new();
    while let Some(out) = lone.poll_output() {
        if let LightOutput::Send { addr, .. } = out {
            sent.push(addr);
        }
    }
    lone.disconnected(1, "nowhere:1");
    let outs: Vec<LightOutput> = std::iter::from_fn(|| lone.poll_output()).collect();
    assert!(
        outs.iter().any(
            |o| matches!(o, LightOutput::Unreachable { message } if message.contains("nowhere:1"))
        ),
        "{outs:?}"
    );
}

#[test]
fn a_watch_moves_to_another_node_when_its_node_dies() {
    let mut h = Harness::new(3, 4);
    let now = h.now();
    let w = h.peer.watch(now, C, None);
    assert!(h.run_until(|h| h.status_seen(w, |s| *s == StreamStatus::Live), 5_000));
    h.call(set("a", "1"));
    assert!(h.run_until(|h| h.changes.iter().any(|(hd, c)| *hd == w && c.key == "a"), 5_000));
    let placed = h.watch_node();
    h.statuses.clear();
    h.crash(placed);
    let interrupted =
        |h: &Harness| h.status_seen(w, |s| matches!(s, StreamStatus::Interrupted { .. }));
    assert!(h.run_until(interrupted, 100));
    assert!(h.run_until(|h| h.status_seen(w, |s| *s == StreamStatus::Live), 5_000));
    h.changes.clear();
    h.call(set("b", "2"));
    assert!(h.run_until(|h| h.changes.iter().any(|(hd, c)| *hd == w && c.key == "b"), 5_000));
    assert!(h.peer.unsubscribe(h.now(), w));
    assert!(!h.peer.unsubscribe(h.now(), w));
}

#[test]
fn a_local_copy_catches_up_by_sync_and_stays_current_across_a_node_death() {
    let mut h = Harness::new(5, 5);
    for i in 0..60 {
        h.call(set(&format!("k{i}"), &format!("v{i}")));
    }
    h.call(Op::Del { collection: C.into(), key: Bytes::from("k7"), consistency: Consistency::All });
    let now = h.now();
    let copy = h.peer.open_copy(now, C, true);
    let synced = |h: &Harness| h.status_seen(copy, |s| matches!(s, StreamStatus::Synced { .. }));
    assert!(h.run_until(synced, 20_000), "{:?}", h.statuses);
    assert_eq!(h.copy_data(copy), h.cluster_data(), "the copy equals the cluster");
    let c = h.peer.copy(copy).unwrap();
    assert_eq!(c.len(), 59);
    assert_eq!(c.get(h.now(), b"k3").as_deref(), Some(&b"v3"[..]));
    assert_eq!(c.get(h.now(), b"k7"), None, "deleted");
    let page = c.scan(h.now(), None, 25);
    assert!(page.items.len() <= 25 && page.cursor.is_some());
    let mut seen = page.items.len();
    let mut cursor = page.cursor;
    while let Some((pos, key)) = cursor {
        let next = c.scan(h.now(), Some((pos, &key)), 25);
        seen += next.items.len();
        cursor = next.cursor;
    }
    assert_eq!(seen, 59, "pages cover every live entry once");
    assert!(h.changes.iter().filter(|(hd, _)| *hd == copy).count() >= 60, "notified");

    // Live: a write shows up through the watch.
    h.call(set("fresh", "1"));
    assert!(h.run_until(|h| h.peer.copy(copy).unwrap().get(h.now(), b"fresh").is_some(), 5_000));

    // Its node dies; writes made while the watch moves are caught up by sync.
    let placed = h.watch_node();
    h.statuses.clear();
    h.sim.crash(placed);
    for i in 0..10 {
        h.call(set(&format!("during{i}"), "x"));
    }
    let now = h.now();
    h.peer.disconnected(now, &sim_addr(placed));
    assert!(h.run_until(synced, 30_000), "{:?}", h.statuses);
    let copy_data = h.copy_data(copy);
    for i in 0..10 {
        assert!(copy_data.contains_key(format!("during{i}").as_bytes()), "during{i} caught up");
    }
    assert_eq!(copy_data, h.cluster_data());
    assert!(h.peer.copy(copy).unwrap().stats().rounds >= 2);
}

/// A harness connection's first request, for every connection it opened.
fn assert_auth_first(h: &Harness, token: &str) {
    assert!(!h.first_ops.is_empty());
    for (addr, op) in &h.first_ops {
        match op {
            Op::Auth { token: t } => assert_eq!(t.0, token, "{addr}"),
            other => panic!("the first request to {addr} was {other:?}, not Auth"),
        }
    }
}

#[test]
fn with_a_token_every_connection_presents_it_first() {
    let mut h = Harness::with_tokens(6, &[("admin-token", true)], "admin-token");
    for i in 0..20 {
        assert!(matches!(h.call(set(&format!("k{i}"), "v")), Reply::Written { .. }));
    }
    assert_eq!(value(h.call(get("k3"))).as_deref(), Some("v"));
    assert_eq!(h.conns.len(), 3, "a connection to each node");
    let auths = h.sent.iter().filter(|(_, op)| matches!(op, Op::Auth { .. })).count();
    assert_eq!(auths, 3, "once per connection, not per request");
    // A connection that closes is opened again, and presents the token again.
    let addr = sim_addr(NodeId(2));
    h.close_conn(&addr);
    let now = h.now();
    let handle = h.peer.call_at(now, &addr, Op::Stats);
    assert!(h.run_until(|h| h.replies.contains_key(&handle), 5_000));
    assert!(matches!(h.replies[&handle], Reply::Stats(_)), "{:?}", h.replies[&handle]);
    assert_eq!(h.first_ops.len(), 4, "four connections: {:?}", h.first_ops);
    assert_auth_first(&h, "admin-token");
    // Watches present it too (on connections already open, or new ones).
    let w = h.peer.watch(h.now(), C, None);
    assert!(h.run_until(|h| h.status_seen(w, |s| *s == StreamStatus::Live), 5_000));
    assert_auth_first(&h, "admin-token");
}

#[test]
fn without_a_token_a_node_requiring_one_refuses_the_start() {
    let tokens = BTreeMap::from([("admin-token".to_string(), true)]);
    let mut h = Harness::unstarted(3, 7, Some(tokens), None);
    let now = h.now();
    h.peer.start(now);
    assert!(h.run_until(|h| !h.refused.is_empty(), 5_000), "start ends");
    assert_eq!(h.refused[0].0, ErrorCode::Unauthorized);
    assert!(h.refused[0].1.contains(NO_TOKEN), "{:?}", h.refused);
    assert!(h.unreachable.is_empty() && h.ring_changes == 0);
    assert!(!h.sent.iter().any(|(_, op)| matches!(op, Op::Auth { .. })), "no token, no Auth");
    let handle = h.peer.call(h.now(), get("k"));
    assert!(h.run_until(|h| h.replies.contains_key(&handle), 5_000));
    assert!(matches!(h.replies[&handle], Reply::Error { code: ErrorCode::Unauthorized, .. }));
}

#[test]
fn a_wrong_token_is_refused_with_the_nodes_reason_and_not_tried_elsewhere() {
    let tokens = BTreeMap::from([("admin-token".to_string(), true)]);
    let mut h = Harness::unstarted(3, 8, Some(tokens), Some("wrong-token"));
    let now = h.now();
    h.peer.start(now);
    assert!(h.run_until(|h| !h.refused.is_empty(), 5_000), "start ends");
    let (code, message) = &h.refused[0];
    assert_eq!(*code, ErrorCode::Unauthorized);
    // The node answered the ring request "no token" (its Auth was refused); the peer
    // tells why the token was refused instead.
    assert_eq!(message, UNKNOWN_TOKEN);
    assert_auth_first(&h, "wrong-token");
    let asked: Vec<&String> =
        h.sent.iter().filter(|(_, op)| matches!(op, Op::Ring)).map(|(a, _)| a).collect();
    assert_eq!(asked.len(), 1, "every node checks the same tokens: {asked:?}");
}

#[test]
fn a_read_token_reads_and_watches_but_its_writes_are_forbidden() {
    let tokens = [("admin-token", true), ("read-token", false)];
    let mut h = Harness::with_tokens(9, &tokens, "read-token");
    match h.call(set("k", "other")) {
        Reply::Error { code: ErrorCode::Forbidden, message, .. } => {
            assert!(message.contains("cannot write"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let sets = h.sent.iter().filter(|(_, op)| matches!(op, Op::Set { .. })).count();
    assert_eq!(sets, 1, "a forbidden write is not tried on another replica");
    assert_eq!(value(h.call(get("k"))), None, "read, and not written");
    let w = h.peer.watch(h.now(), C, None);
    assert!(h.run_until(|h| h.status_seen(w, |s| *s == StreamStatus::Live), 5_000));
    assert_auth_first(&h, "read-token");
}

/// The light peer keeps the newest timestamp answers carried and passes it with every
/// request ([`ClientRequest::seen`]), so its next write is stamped above what it saw.
#[test]
fn the_light_peer_passes_the_newest_timestamp_it_has_seen() {
    let mut peer = LightPeer::new(vec!["a:1".into()], LightConfig::default());
    let sent = |peer: &mut LightPeer| -> Vec<ClientRequest> {
        let mut out = Vec::new();
        while let Some(o) = peer.poll_output() {
            if let LightOutput::Send { frame, .. } = o {
                if let Ok(Message::Request(req)) = wire::decode(&frame) {
                    out.push(req);
                }
            }
        }
        out
    };
    peer.call(0, Op::Stats);
    let first = sent(&mut peer);
    assert!(!first.is_empty() && first.iter().all(|r| r.seen.is_none()), "{first:?}");
    let seen = dhrt_core::clock::Timestamp::from_parts(123_456, 7);
    for req in &first {
        let resp = ClientResponse { id: req.id, result: Reply::Ok, ts: Some(seen) };
        peer.handle_frame(1, "a:1", &wire::encode(&Message::Response(resp)).unwrap());
    }
    assert_eq!(peer.seen(), Some(seen));
    peer.call(2, Op::Stats);
    let next = sent(&mut peer);
    assert!(!next.is_empty() && next.iter().all(|r| r.seen == Some(seen)), "{next:?}");
}

/// Five settled nodes; `disk=ssd` on nodes 1, 2 and 4.
fn labelled_cluster(seed: u64) -> Cluster {
    dhrt_core::sim::ssd_cluster(5, seed).unwrap()
}

/// The addresses of the nodes with `disk=ssd`.
const SSD: [&str; 3] = ["sim-1", "sim-2", "sim-4"];

/// Settings asking for `replicas` replicas on nodes with `disk=ssd`.
fn on_ssd(replicas: u32) -> CollectionSettings {
    CollectionSettings {
        replicas: Some(replicas),
        select: [("disk".to_string(), "ssd".to_string())].into(),
        ..CollectionSettings::default()
    }
}

/// Writing `settings` for `collection` into the catalogue.
fn define(collection: &str, settings: &CollectionSettings) -> Op {
    Op::Set {
        collection: CATALOGUE_COLLECTION.into(),
        key: Bytes::copy_from_slice(collection.as_bytes()),
        value: Bytes::from(settings.encode()),
        consistency: Consistency::Quorum,
        ttl_ms: None,
    }
}

/// Whether every node uses `layout` for `collection`, with no move under way.
fn moved(sim: &Cluster, collection: &str, layout: &Layout) -> bool {
    sim.processes().all(|(_, p)| {
        let s = p.node.catalogue().layout(collection).cloned().unwrap_or_default();
        s.moving.is_none() && s.current == *layout
    })
}

fn set_in(collection: &str, key: &str) -> Op {
    Op::Set {
        collection: collection.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(key.as_bytes()),
        consistency: Consistency::Quorum,
        ttl_ms: None,
    }
}

/// A local copy of a collection with its own layout (fewer replicas, on selected nodes
/// only) syncs each piece of the ring with nodes that replicate it under that layout —
/// the only ones that serve it — whether the peer knew the layout when it started or
/// learns it when the copy opens.
#[test]
fn a_local_copy_of_a_collection_with_its_own_layout_syncs_with_the_nodes_holding_it() {
    let mut sim = labelled_cluster(12);
    let fast = on_ssd(2);
    let written = call(&mut sim, NodeId(3), define("fast", &fast));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    let end = sim.now() + 60_000;
    while !moved(&sim, "fast", &fast.layout()) {
        assert!(sim.now() < end, "fast did not move to its layout");
        sim.run_for(200);
    }
    let mut h = Harness::over(sim, 12, None, None);
    h.start();
    let known = h.peer.layouts().get("fast").map(|(l, labels)| (l.clone(), labels.len()));
    assert_eq!(known, Some((fast.layout(), 5)), "learned from Stats, with every member's labels");
    for i in 0..60 {
        assert!(matches!(h.call(set_in("fast", &format!("k{i}"))), Reply::Written { .. }));
    }
    let sent_before = h.sent.len();
    let copy = h.peer.open_copy(h.now(), "fast", false);
    let synced = |copy: u64| {
        move |h: &Harness| h.status_seen(copy, |s| matches!(s, StreamStatus::Synced { .. }))
    };
    assert!(h.run_until(synced(copy), 20_000), "{:?}", h.statuses);
    assert_eq!(h.copy_data(copy), h.cluster_data_of("fast"), "the copy equals the cluster");
    assert_eq!(h.peer.copy(copy).unwrap().len(), 60);
    assert_eq!(h.peer.copy(copy).unwrap().stats().sessions_failed, 0, "no node refused");
    let syncs: Vec<&String> = h.sent[sent_before..]
        .iter()
        .filter(|(_, op)| matches!(op, Op::Sync { .. }))
        .map(|(addr, _)| addr)
        .collect();
    assert!(!syncs.is_empty() && syncs.iter().all(|a| SSD.contains(&a.as_str())), "{syncs:?}");

    // A layout set after the peer started: the copy's opening asks for it (or the first
    // round's refusals do), and the copy catches up.
    let one = on_ssd(1);
    assert!(matches!(h.call(define("one", &one)), Reply::Written { .. }));
    assert!(h.run_until(|h| moved(&h.sim, "one", &one.layout()), 60_000), "one moved");
    for i in 0..30 {
        assert!(matches!(h.call(set_in("one", &format!("k{i}"))), Reply::Written { .. }));
    }
    let copy = h.peer.open_copy(h.now(), "one", false);
    assert!(h.run_until(synced(copy), 30_000), "{:?}", h.statuses);
    assert_eq!(h.peer.layouts().get("one").map(|(l, _)| l.clone()), Some(one.layout()));
    assert_eq!(h.copy_data(copy), h.cluster_data_of("one"));
    assert_eq!(h.peer.copy(copy).unwrap().len(), 30);
}
