//! Peers are checked anyway: a member may be buggy, skewed or compromised. Each test
//! replays one attack — a hostile peer injecting messages through `Node::handle_peer`,
//! on the simulator with a fixed seed — and checks the node refuses it and keeps
//! serving.

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    hash::{Interval, Placement},
    membership::{
        Member, Membership, MembershipConfig, MembershipMessage, MembershipOutput, Status,
        MAX_INCARNATION,
    },
    merkle::Summary,
    node::{Node, NodeConfig, Output},
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        watch::Subscription,
        Message, ReplicaMessage, SyncBody, SyncItem, SyncMessage, WatchMessage,
    },
    sim::{memory_cluster, sim_addr, NetConfig, NodeProcess, Sim},
    store::MemStore,
};

type Cluster = Sim<NodeProcess<MemStore>>;

/// Sends `op` to `node` and runs until it answers (or 10 simulated seconds pass).
fn call(sim: &mut Cluster, node: u64, op: Op) -> Option<Reply> {
    dhrt_core::sim::call(sim, NodeId(node), op)
}

fn set(key: &str, value: &str) -> Op {
    Op::Set {
        collection: "users".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        consistency: Consistency::Quorum,
        ttl_ms: None,
    }
}

fn get(key: &str) -> Op {
    Op::Get {
        collection: "users".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        consistency: Consistency::Quorum,
    }
}

fn value_of(reply: Option<Reply>) -> Option<String> {
    match reply {
        Some(Reply::Value { value, .. }) => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        other => panic!("expected a value, got {other:?}"),
    }
}

/// Delivers `msg` to `to` as if `from` had sent it.
fn inject(sim: &mut Cluster, from: u64, to: u64, msg: Message) {
    sim.act(NodeId(to), |p, now| p.node.handle_peer(now, NodeId(from), msg));
}

fn member_of(sim: &Cluster, on: u64, about: u64) -> Option<Member> {
    sim.process(NodeId(on))?.node.membership().member(NodeId(about)).cloned()
}

/// The first message of a sync session of "users" over `range`, whose root says `root`.
fn begin_sync(range: Interval, root: Summary) -> SyncBody {
    SyncBody::Begin {
        collection: "users".into(),
        placement: Placement::of("users"),
        range,
        depth: 4,
        salt: 1,
        root,
    }
}

/// A sync session pushing `entries` of "users" over the whole ring, as node `from`.
fn push_by_sync(sim: &mut Cluster, from: u64, to: u64, entries: Vec<(Bytes, Entry)>) {
    let session = 0xbad;
    let begin =
        begin_sync(Interval::full(), Summary { digest: 0x1234, count: entries.len() as u64 });
    inject(sim, from, to, Message::Sync(SyncMessage { session, body: begin }));
    let step = SyncBody::Step { items: vec![SyncItem::Entries { entries }] };
    inject(sim, from, to, Message::Sync(SyncMessage { session, body: step }));
}

#[test]
fn a_synced_entry_from_the_far_future_is_refused_and_later_writes_win() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 71, |_| {});
    let doomed = Entry::value("forever", Timestamp(u64::MAX - 5), NodeId(3));
    // Node 3 is a member gone bad: it pushes the entry by sync to both other replicas.
    for to in [1, 2] {
        push_by_sync(&mut sim, 3, to, vec![(Bytes::from("k"), doomed.clone())]);
    }
    sim.run_for(1_000);
    for on in [1, 2] {
        let held = sim.process(NodeId(on)).unwrap().node.replica().get("users", b"k").unwrap();
        assert_eq!(held, None, "node {on} merged an entry stamped at the end of time");
        let refused = sim.process(NodeId(on)).unwrap().node.peer_stats().refused_entries;
        assert!(refused >= 1, "node {on} did not count the refusal");
    }
    let written = call(&mut sim, 1, set("k", "later"));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    assert_eq!(value_of(call(&mut sim, 2, get("k"))).as_deref(), Some("later"));
    // A good entry in a later session is still taken: the node kept serving.
    let now = sim.now();
    let fine = Entry::value("fine", Timestamp::from_parts(now, 0), NodeId(3));
    push_by_sync(&mut sim, 3, 1, vec![(Bytes::from("other"), fine.clone())]);
    let held = sim.process(NodeId(1)).unwrap().node.replica().get("users", b"other").unwrap();
    assert_eq!(held, Some(fine));
}

#[test]
fn replica_writes_and_read_replies_from_the_future_are_refused() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 72, |_| {});
    let doomed = Entry::value("forever", Timestamp(u64::MAX - 5), NodeId(3));
    let records = vec![(Bytes::from("k"), doomed.clone())];
    let write = ReplicaMessage::Write { req: 1, collection: "users".into(), records };
    inject(&mut sim, 3, 1, Message::Replica(write));
    let repair = ReplicaMessage::Repair {
        collection: "users".into(),
        records: vec![(Bytes::from("k"), doomed)],
    };
    inject(&mut sim, 3, 2, Message::Replica(repair));
    sim.run_for(500);
    for on in [1, 2] {
        let held = sim.process(NodeId(on)).unwrap().node.replica().get("users", b"k").unwrap();
        assert_eq!(held, None, "node {on}");
    }
    let written = call(&mut sim, 1, set("k", "later"));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
    assert_eq!(value_of(call(&mut sim, 3, get("k"))).as_deref(), Some("later"));
}

#[test]
fn a_death_claimed_at_the_largest_incarnation_does_not_evict_a_node() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 73, |_| {});
    let victim = member_of(&sim, 1, 2).unwrap();
    // Node 3, gone bad, declares node 2 dead at the largest incarnation, to everyone.
    for to in [1, 2] {
        let members = vec![victim.with(Status::Dead, MAX_INCARNATION)];
        let msg =
            MembershipMessage::PushPull { members, reply: false, clock: None, partial: false };
        inject(&mut sim, 3, to, Message::Gossip(msg));
    }
    sim.run_for(30_000);
    for on in [1, 3] {
        let seen = member_of(&sim, on, 2).unwrap();
        assert_eq!(seen.status, Status::Alive, "node {on} sees {seen:?}");
        assert!(seen.incarnation < 1_000, "node {on} sees {seen:?}");
    }
    // A claim within the bound is accepted, refuted, and the node comes back; so it does
    // after a restart on its data.
    let seen = member_of(&sim, 1, 2).unwrap();
    let step = MembershipConfig::default().max_incarnation_step;
    let claim = seen.with(Status::Dead, seen.incarnation + step);
    let msg = MembershipMessage::PushPull {
        members: vec![claim],
        reply: false,
        clock: None,
        partial: false,
    };
    inject(&mut sim, 3, 1, Message::Gossip(msg));
    assert_eq!(member_of(&sim, 1, 2).unwrap().status, Status::Dead);
    sim.run_for(30_000);
    for on in [1, 3] {
        assert_eq!(member_of(&sim, on, 2).unwrap().status, Status::Alive, "node {on}");
    }
    let crashed = sim.crash(NodeId(2)).unwrap();
    sim.run_for(20_000);
    sim.restart(NodeId(2), crashed.restarted(true).unwrap());
    sim.run_for(60_000);
    for on in [1, 2, 3] {
        let seen = member_of(&sim, on, 2).unwrap();
        assert_eq!(seen.status, Status::Alive, "node {on} after the restart: {seen:?}");
        assert!(seen.incarnation <= 3 * step, "node {on}: {seen:?}");
    }
    let written = call(&mut sim, 2, set("back", "yes"));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");
}

#[test]
fn a_flood_of_fake_members_is_bounded_and_writes_go_on() {
    let mut sim = memory_cluster(3, NetConfig::lan(), 74, |_| {});
    let sender = member_of(&sim, 1, 3).unwrap();
    let fakes: Vec<Member> = (1000..3000u64)
        .map(|i| Member::new(NodeId(i), format!("10.9.{}.{}:7453", i / 256, i % 256), vec![i]))
        .collect();
    let msg = MembershipMessage::Gossip { sender, updates: fakes, clock: None };
    inject(&mut sim, 3, 1, Message::Gossip(msg));
    let max_new = MembershipConfig::default().max_new_members;
    let size = sim.process(NodeId(1)).unwrap().node.membership().size();
    assert!(size <= 3 + max_new, "one message introduced {} members", size - 3);
    // A join with more tokens than a node may hold is refused.
    let greedy = Member::new(NodeId(99), "10.0.0.99:7453", (0..1024).collect());
    inject(
        &mut sim,
        99,
        2,
        Message::Gossip(MembershipMessage::Join { member: greedy, clock: None }),
    );
    assert!(member_of(&sim, 2, 99).is_none(), "a join with 1024 tokens was accepted");
    let mut ok = 0;
    for i in 0..10 {
        if matches!(
            call(&mut sim, 1 + i % 3, set(&format!("k{i}"), "v")),
            Some(Reply::Written { .. })
        ) {
            ok += 1;
        }
    }
    assert!(ok >= 8, "only {ok} of 10 quorum writes succeeded");
}

#[test]
fn the_member_table_is_bounded_in_total() {
    let config = MembershipConfig { max_members: 50, ..MembershipConfig::default() };
    let mut me = Membership::new(Member::new(NodeId(1), "a:1", vec![1]), config, 1);
    for round in 0..100u64 {
        let from = NodeId(10_000 + round);
        let sender = Member::new(from, format!("s:{round}"), vec![round]);
        let updates = (0..8u64)
            .map(|i| Member::new(NodeId(round * 8 + i + 2), format!("f:{round}:{i}"), vec![i]))
            .collect();
        me.handle(round, from, MembershipMessage::Gossip { sender, updates, clock: None });
    }
    assert!(me.size() <= 50, "{} members", me.size());
}

#[test]
fn a_ping_request_goes_only_to_known_members_at_their_own_address() {
    let mut me = Membership::new(Member::new(NodeId(1), "a:1", vec![1]), Default::default(), 1);
    let requester = Member::new(NodeId(2), "b:2", vec![2]);
    let known = Member::new(NodeId(3), "c:3", vec![3]);
    me.handle(
        0,
        NodeId(2),
        MembershipMessage::Gossip { sender: requester.clone(), updates: vec![known], clock: None },
    );
    while me.poll_output().is_some() {}
    let ping_req = |seq, target, target_addr: &str| MembershipMessage::PingReq {
        seq,
        target: NodeId(target),
        target_addr: target_addr.into(),
        sender: requester.clone(),
        updates: vec![],
        clock: None,
    };
    for port in 1..50 {
        me.handle(10, NodeId(2), ping_req(port, 1000 + port, &format!("127.0.0.1:{port}")));
    }
    me.handle(10, NodeId(2), ping_req(99, 3, "127.0.0.1:22"));
    let mut sends = Vec::new();
    while let Some(out) = me.poll_output() {
        if let MembershipOutput::Send { to, addr, msg: MembershipMessage::Ping { .. } } = out {
            sends.push((to, addr));
        }
    }
    assert_eq!(sends, vec![(NodeId(3), "c:3".to_string())]);
}

/// A node alone, and the outputs it sends to `to` while handling `msg` from `from`.
fn answers_to(node: &mut Node<MemStore>, from: u64, msg: Message) -> Vec<Message> {
    node.handle_peer(5_000, NodeId(from), msg);
    let mut out = Vec::new();
    while let Some(o) = node.poll_output() {
        if let Output::Send { to, msg, .. } = o {
            if to == NodeId(from) {
                out.push(msg);
            }
        }
    }
    out
}

#[test]
fn only_current_members_may_read_write_sync_or_watch() {
    let mut node =
        Node::new(NodeConfig::new(NodeId(1), sim_addr(NodeId(1))), MemStore::new()).unwrap();
    node.tick(0);
    let entry = Entry::value("v", Timestamp::from_parts(4_000, 0), NodeId(9));
    let write = |req| {
        Message::Replica(ReplicaMessage::Write {
            req,
            collection: "users".into(),
            records: vec![(Bytes::from("k"), entry.clone())],
        })
    };
    let requests = vec![
        write(1),
        Message::Replica(ReplicaMessage::Read {
            req: 2,
            collection: "users".into(),
            keys: vec![Bytes::from("k")],
        }),
        Message::Replica(ReplicaMessage::ListCollections { req: 3 }),
        Message::Replica(ReplicaMessage::RangeRead {
            req: 4,
            collection: "users".into(),
            interval: Interval::full(),
            after: None,
            limit: 100,
        }),
        Message::Watch(WatchMessage::Subscribe {
            subs: vec![Subscription {
                sub: 1,
                collection: "users".into(),
                prefix: None,
                resume: None,
            }],
        }),
        Message::Sync(SyncMessage {
            session: 5,
            body: begin_sync(Interval::full(), Summary { digest: 1, count: 1 }),
        }),
    ];
    // A stranger (node 9, never a member) gets nothing and writes nothing.
    for msg in requests.clone() {
        let answers = answers_to(&mut node, 9, msg.clone());
        assert!(answers.is_empty(), "a stranger was answered {answers:?} to {msg:?}");
    }
    assert_eq!(node.replica().get("users", b"k").unwrap(), None);
    assert!(node.peer_stats().refused_requests >= 6);
    // Once node 9 is a member, the same requests are served.
    let nine = Member::new(NodeId(9), sim_addr(NodeId(9)), vec![9]).with(Status::Syncing, 0);
    let intro = MembershipMessage::Gossip { sender: nine.clone(), updates: vec![], clock: None };
    answers_to(&mut node, 9, Message::Gossip(intro));
    let acked = answers_to(&mut node, 9, write(10));
    assert!(
        matches!(
            acked.as_slice(),
            [Message::Replica(ReplicaMessage::WriteAck { error: None, .. })]
        ),
        "{acked:?}"
    );
    assert_eq!(node.replica().get("users", b"k").unwrap(), Some(entry.clone()));
    let listed =
        answers_to(&mut node, 9, Message::Replica(ReplicaMessage::ListCollections { req: 11 }));
    assert!(matches!(listed.as_slice(), [Message::Replica(ReplicaMessage::CollectionList { .. })]));
    let watched = answers_to(&mut node, 9, requests[4].clone());
    assert!(matches!(watched.as_slice(), [Message::Watch(WatchMessage::Changes { .. })]));
    // Declared dead, it is refused again.
    let dead = MembershipMessage::Gossip {
        sender: Member::new(NodeId(1), sim_addr(NodeId(1)), vec![]),
        updates: vec![nine.with(Status::Dead, 1)],
        clock: None,
    };
    node.handle_peer(6_000, NodeId(2), Message::Gossip(dead));
    assert_eq!(node.membership().member(NodeId(9)).map(|m| m.status), Some(Status::Dead));
    let listed =
        answers_to(&mut node, 9, Message::Replica(ReplicaMessage::ListCollections { req: 12 }));
    assert!(listed.is_empty(), "{listed:?}");
}

#[test]
fn a_member_may_not_push_a_range_neither_it_nor_this_node_replicates() {
    let mut sim = memory_cluster(5, NetConfig::lan(), 75, |_| {});
    let node = &sim.process(NodeId(1)).unwrap().node;
    let table = node.table().clone();
    // A token range that neither node 1 nor node 5 replicates.
    let vnodes = table.vnodes();
    let (lo, hi) = (0..vnodes.len())
        .map(|i| (vnodes[(i + vnodes.len() - 1) % vnodes.len()].pos, vnodes[i].pos))
        .find(|&(_, t)| {
            let prefs = table.preference_list(t, 3);
            !prefs.contains(&NodeId(1)) && !prefs.contains(&NodeId(5))
        })
        .expect("with 5 nodes and 3 replicas, some range skips two given nodes");
    let session = 77;
    let begin = begin_sync(Interval::new(lo, hi), Summary { digest: 1, count: 1 });
    let before = sim.process(NodeId(1)).unwrap().node.peer_stats().refused_sessions;
    inject(&mut sim, 5, 1, Message::Sync(SyncMessage { session, body: begin }));
    let after = sim.process(NodeId(1)).unwrap().node.peer_stats().refused_sessions;
    assert_eq!(after, before + 1, "node 1 accepted a push of a range nobody hands it");
}

#[test]
fn a_member_opening_sync_sessions_without_end_is_held_to_a_bound_and_writes_go_on() {
    use dhrt_core::node::sessions::MAX_ACCEPTED_PER_PEER;
    let mut sim = memory_cluster(3, NetConfig::lan(), 76, |_| {});
    sim.run_for(2_000);
    let open = |sim: &Cluster| sim.process(NodeId(1)).unwrap().node.sessions().running();
    let before = open(&sim);
    let refused_before = sim.process(NodeId(1)).unwrap().node.peer_stats().refused_sessions;
    // Node 2, which replicates every range with node 1, begins sessions and never steps
    // them: each waits for its next message until the sync timeout.
    let mut aborted = 0;
    for session in 0..(MAX_ACCEPTED_PER_PEER as u64 + 40) {
        let begin = begin_sync(Interval::full(), Summary { digest: 0xfeed + session, count: 1 });
        let msg = Message::Sync(SyncMessage { session: 0x5e55_0000 + session, body: begin });
        let answers = sim.act(NodeId(1), |p, now| {
            p.node.handle_peer(now, NodeId(2), msg);
            let mut out = Vec::new();
            while let Some(o) = p.node.poll_output() {
                if let Output::Send { to: NodeId(2), msg, .. } = o {
                    out.push(msg);
                }
            }
            out
        });
        for answer in answers.unwrap_or_default() {
            if let Message::Sync(SyncMessage { body: SyncBody::Abort { reason }, .. }) = answer {
                assert!(reason.contains("too many sync sessions"), "{reason}");
                aborted += 1;
            }
        }
    }
    let node = &sim.process(NodeId(1)).unwrap().node;
    assert_eq!(aborted, 40, "every Begin past the bound is aborted");
    assert_eq!(node.peer_stats().refused_sessions, refused_before + 40);
    assert!(
        open(&sim) <= before + MAX_ACCEPTED_PER_PEER,
        "node 1 holds {} sessions (was {before})",
        open(&sim)
    );
    // The node still serves.
    assert!(matches!(call(&mut sim, 1, set("k", "v")), Some(Reply::Written { .. })));
    assert_eq!(value_of(call(&mut sim, 3, get("k"))), Some("v".into()));
}

#[test]
fn a_read_reply_from_the_future_is_neither_returned_nor_repaired_into_the_store() {
    use dhrt_core::proto::{ClientRequest, ClientResponse};
    let mut config = NodeConfig::new(NodeId(1), sim_addr(NodeId(1)));
    config.replicas = 2;
    let mut node = Node::new(config, MemStore::new()).unwrap();
    node.tick(0);
    assert!(node.membership().is_alive(NodeId(1)), "a lone node serves at once");
    // Node 2 is a serving member (past incarnation 0: it announced `Alive` once); it will
    // answer the read with an entry from the future.
    let two =
        Member::new(NodeId(2), sim_addr(NodeId(2)), vec![1 << 40, 1 << 62]).with(Status::Alive, 1);
    node.handle_peer(
        10,
        NodeId(2),
        Message::Gossip(MembershipMessage::Gossip { sender: two, updates: vec![], clock: None }),
    );
    while node.poll_output().is_some() {}
    // The question node 1 sends node 2 for read `id`: (its number, whether for data).
    let asked = |node: &mut Node<MemStore>| {
        let mut asked = None;
        while let Some(o) = node.poll_output() {
            if let Output::Send { to, msg: Message::Replica(m), .. } = o {
                assert_eq!(to, NodeId(2));
                asked = match m {
                    ReplicaMessage::Read { req, .. } => Some((req, true)),
                    ReplicaMessage::ReadVersions { req, .. } => Some((req, false)),
                    _ => asked,
                };
            }
        }
        asked.expect("node 1 asked node 2")
    };
    let answers = |node: &mut Node<MemStore>, id: u64| {
        let mut answered = None;
        while let Some(o) = node.poll_output() {
            if let Output::Reply { resp: ClientResponse { id: i, result, .. }, .. } = o {
                if i == id {
                    answered = Some(result);
                }
            }
        }
        answered
    };
    let timed_out = |answer: Option<Reply>| match answer {
        Some(Reply::Error { code, acked, .. }) => {
            assert_eq!(code, ErrorCode::QuorumNotReached);
            assert_eq!(acked, Some((1, 2)));
        }
        other => panic!("expected quorum_not_reached, got {other:?}"),
    };
    // Node 1 reads its own copy and asks node 2 for its version (a digest read); node 2
    // answers with a version from the future.
    node.handle_client(20, 7, ClientRequest { id: 1, op: get("k"), seen: None });
    let (req, data) = asked(&mut node);
    assert!(!data, "node 2 is asked only for its version");
    let future = Timestamp(u64::MAX - 5);
    let doomed = Entry::value("forever", future, NodeId(2));
    let reply = ReplicaMessage::VersionsReply {
        req,
        versions: vec![Some(doomed.version())],
        changing: false,
    };
    node.handle_peer(30, NodeId(2), Message::Replica(reply));
    // The refused version is no answer at all — not an absent key, which could hide a
    // write node 2 really holds: the read waits, and times out without its quorum.
    assert_eq!(answers(&mut node, 1), None, "answered on a refused version");
    node.tick(5_000);
    timed_out(answers(&mut node, 1));
    assert_eq!(node.peer_stats().refused_entries, 1);
    // Node 2 answers a sound version newer than node 1's copy: node 1 asks for its data,
    // which comes from the future.
    node.handle_client(6_000, 7, ClientRequest { id: 2, op: get("k"), seen: None });
    let (req, _) = asked(&mut node);
    let sound = Entry::value("now", Timestamp::from_parts(6_000, 0), NodeId(2));
    let reply = ReplicaMessage::VersionsReply {
        req,
        versions: vec![Some(sound.version())],
        changing: false,
    };
    node.handle_peer(6_010, NodeId(2), Message::Replica(reply));
    assert_eq!(asked(&mut node), (req, true), "node 2 is asked for the data it said is newer");
    let reply = ReplicaMessage::ReadReply { req, entries: vec![Some(doomed)], changing: false };
    node.handle_peer(6_020, NodeId(2), Message::Replica(reply));
    assert_eq!(answers(&mut node, 2), None, "answered on a refused entry");
    node.tick(11_000);
    timed_out(answers(&mut node, 2));
    assert_eq!(node.replica().get("users", b"k").unwrap(), None, "repaired into the store");
    assert_eq!(node.peer_stats().refused_entries, 2);
}

#[test]
fn a_node_saves_its_incarnation_and_restarts_from_it() {
    use dhrt_core::node::NodeState;
    let config = NodeConfig::new(NodeId(1), sim_addr(NodeId(1)));
    let state = NodeState { incarnation: Some(42), ..NodeState::default() };
    let mut node = Node::with_state(config, MemStore::new(), state).unwrap();
    assert_eq!(node.membership().incarnation(), 42);
    // A suspicion of it, within the bound, is refuted above the claim, and the new
    // incarnation is handed to the host to save.
    let me = node.membership().me().clone();
    let sender = Member::new(NodeId(2), sim_addr(NodeId(2)), vec![7]);
    let claim = me.with(Status::Suspect, 500);
    node.handle_peer(
        10,
        NodeId(2),
        Message::Gossip(MembershipMessage::Gossip { sender, updates: vec![claim], clock: None }),
    );
    assert_eq!(node.membership().incarnation(), 501);
    let mut saved = None;
    while let Some(o) = node.poll_output() {
        if let Output::Persist(s) = o {
            saved = s.incarnation;
        }
    }
    assert_eq!(saved, Some(501));
    // A claim about it at the largest incarnation is refused: it could not be refuted.
    let me = node.membership().me().clone();
    let sender = Member::new(NodeId(2), sim_addr(NodeId(2)), vec![7]);
    node.handle_peer(
        20,
        NodeId(2),
        Message::Gossip(MembershipMessage::Gossip {
            sender,
            updates: vec![me.with(Status::Dead, MAX_INCARNATION)],
            clock: None,
        }),
    );
    assert_eq!(node.membership().incarnation(), 501);
    assert_ne!(node.membership().me().status, Status::Dead);
}
