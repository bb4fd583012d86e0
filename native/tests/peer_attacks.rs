//! Peers are checked anyway (docs/security.md): a member holds the cluster secret, so it
//! passes the peer handshake, but it may be buggy, skewed or compromised. Each test is
//! one attack by such a member on real `dhrt serve` processes — a node whose clock runs
//! an hour ahead (libfaketime), or this test completing the handshake with the secret
//! and sending raw frames — and checks the cluster shrugs it off. Every one of them
//! worked before the node checked what members send.

mod common;

use common::{run_bounded, serial, wait_until, NodeProc};
use dhrt::{
    client::{conn::Conn, ConnectOptions},
    server::security::Secret,
};
use dhrt_core::{
    membership::{Member, MembershipMessage, Status, MAX_INCARNATION},
    proto::{
        client::{Consistency, NodeStats, Op, Reply, RingMember},
        Message,
    },
    wire, NodeId,
};
use futures_util::SinkExt;
use std::{
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};
use tokio_tungstenite::tungstenite::Message as Ws;

use common::peer::Socket;

/// libfaketime, from Debian's `faketime` package (scripts/setup.sh installs it).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Most members one gossip message may introduce (docs/security.md).
const MAX_NEW_MEMBERS: usize = 8;

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// A cluster secret in a file of `dir`.
fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("cluster.secret");
    std::fs::write(&path, "peer-attacks-test-cluster-secret\n").unwrap();
    path
}

/// `dhrt serve --cluster-secret-file SECRET --replicas 2 [--join JOIN]`, in memory or on
/// `data_dir`, on `port` (0: any).
fn node_cmd(
    secret: &Path,
    join: Option<&str>,
    data_dir: Option<&Path>,
    port: u16,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.arg("serve").arg("--port").arg(port.to_string());
    match data_dir {
        Some(d) => cmd.arg("--data-dir").arg(d),
        None => cmd.arg("--memory"),
    };
    cmd.arg("--cluster-secret-file").arg(secret).args(["--replicas", "2"]);
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    cmd.env_remove("DHRT_CONFIG")
        .env_remove("DHRT_CLUSTER_SECRET_FILE")
        .env_remove("DHRT_ADMIN_TOKEN_FILE");
    cmd
}

fn start(secret: &Path, join: Option<&str>, data_dir: Option<&Path>, port: u16) -> NodeProc {
    let mut node = NodeProc::launch(node_cmd(secret, join, data_dir, port));
    node.data_dir = data_dir.map(Path::to_path_buf);
    node
}

/// The members `addr` knows, as it sees them; why not when it does not answer.
fn try_ring(addr: &str) -> Result<Vec<RingMember>, String> {
    block_on(async {
        let conn = Conn::open(addr, Duration::from_secs(5), &ConnectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        match conn.call(Op::Ring, Duration::from_secs(5)).await {
            Ok(Reply::Ring { members }) => Ok(members),
            other => Err(format!("{other:?}")),
        }
    })
}

/// The members `addr` knows, as it sees them.
fn ring(addr: &str) -> Vec<RingMember> {
    try_ring(addr).unwrap_or_else(|e| panic!("the ring of {addr}: {e}"))
}

/// The status of `id` in `addr`'s view, if it knows it.
fn status_of(addr: &str, id: NodeId) -> Option<String> {
    ring(addr).into_iter().find(|m| m.id == id).map(|m| m.status)
}

fn stats(addr: &str) -> NodeStats {
    block_on(async {
        match open_client(addr).await.call(Op::Stats, Duration::from_secs(5)).await {
            Ok(Reply::Stats(s)) => *s,
            other => panic!("stats of {addr}: {other:?}"),
        }
    })
}

/// A client connection to exactly the node at `addr` (a `Client` routes by key).
async fn open_client(addr: &str) -> Conn {
    Conn::open(addr, Duration::from_secs(5), &ConnectOptions::default()).await.expect("connect")
}

/// Waits until `nodes` all see each other `alive`.
fn wait_for_cluster(nodes: &[&NodeProc]) {
    let formed = wait_until(Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            let members = ring(&n.addr);
            members.len() == nodes.len() && members.iter().all(|m| m.status == "alive")
        })
    });
    let logs: Vec<String> = nodes.iter().map(|n| n.log()).collect();
    assert!(formed, "the cluster never formed:\n{}", logs.join("\n----\n"));
}

fn set(key: &str, value: &str, consistency: Consistency) -> Op {
    Op::Set {
        collection: "users".into(),
        key: key.to_string().into(),
        value: value.to_string().into(),
        consistency,
        ttl_ms: None,
    }
}

/// Writes through the node at `addr`, retrying for up to 15 s while the cluster settles.
fn write_through(addr: &str, key: &str, value: &str, consistency: Consistency) {
    block_on(async {
        let conn = open_client(addr).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let reply = conn.call(set(key, value, consistency), Duration::from_secs(5)).await;
            match reply {
                Ok(Reply::Written { .. }) => return,
                other if Instant::now() > deadline => panic!("write through {addr}: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

/// Reads `key` at consistency `one` through the node at `addr`: its own replica
/// answers first.
fn read_one(addr: &str, key: &str) -> Option<String> {
    block_on(async {
        let get = Op::Get {
            collection: "users".into(),
            key: key.to_string().into(),
            consistency: Consistency::One,
        };
        match open_client(addr).await.call(get, Duration::from_secs(5)).await {
            Ok(Reply::Value { value, .. }) => {
                value.map(|v| String::from_utf8_lossy(&v).into_owned())
            }
            other => panic!("read through {addr}: {other:?}"),
        }
    })
}

/// Milliseconds since the Unix epoch, by this process's (true) clock.
fn wall_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as u64)
}

/// A member of the cluster speaking raw frames: this test, with the cluster secret.
struct Rogue {
    ws: Socket,
}

impl Rogue {
    /// Opens a peer link to `addr` as node `id` and completes the handshake with the
    /// secret in `secret`.
    async fn connect(addr: &str, id: u64, secret: &Path) -> Rogue {
        let secret = Secret::from_file(secret).unwrap();
        Rogue { ws: common::peer::join_as_member(addr, id, &secret).await }
    }

    async fn send(&mut self, msg: MembershipMessage) {
        let frame = wire::encode(&Message::Gossip(msg)).unwrap();
        self.ws.send(Ws::Binary(frame.into())).await.expect("send a frame");
    }
}

/// An address nothing listens on: a port just released.
fn closed_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The record a rogue member gives for itself: alive, at an address nothing listens on.
fn rogue_record(id: u64) -> Member {
    Member::new(NodeId(id), closed_addr(), vec![id.wrapping_mul(0x9e37_79b9_7f4a_7c15)])
}

fn record_of(m: &RingMember, status: Status, incarnation: u64) -> Member {
    Member {
        id: m.id,
        addr: m.addr.clone(),
        tokens: m.tokens.clone(),
        status,
        incarnation,
        joining: m.joining,
        next_tokens: None,
        labels: m.labels.clone(),
    }
}

/// Attack 1. A member whose clock runs an hour ahead stamps a write an hour in the
/// future; anti-entropy carries it to the other replica, where it would beat every
/// later client write, for good. The other replica refuses it, as it refuses such a
/// replica write.
#[test]
fn an_entry_from_a_skewed_clock_does_not_spread_by_anti_entropy() {
    assert!(
        Path::new(FAKETIME_LIB).exists(),
        "{FAKETIME_LIB} is missing: run bash scripts/setup.sh (Debian package faketime)"
    );
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let n1 = start(&secret, None, None, 0);
    let mut skewed = node_cmd(&secret, Some(&n1.addr), None, 0);
    skewed.env("LD_PRELOAD", FAKETIME_LIB).env("FAKETIME", "+1h");
    let n2 = NodeProc::launch(skewed);
    wait_for_cluster(&[&n1, &n2]);
    // Both nodes hold the collection, so n1's anti-entropy rounds sync it.
    write_through(&n1.addr, "other", "v", Consistency::All);
    // Through the skewed node, at `one`: it stores the entry itself (n1 refuses the
    // replica write: its stamp is an hour ahead of n1's clock).
    write_through(&n2.addr, "k", "from-the-future", Consistency::One);
    let before = stats(&n1.addr).sync;
    let written_at = wall_ms();
    // n1's next anti-entropy round with n2 (every 5-15 s) either completes every
    // session (the entry crossed) or fails one (the entry was refused).
    let synced = wait_until(Duration::from_secs(40), || {
        let s = stats(&n1.addr).sync;
        let full = s.last_full_sync_ms.is_some_and(|t| t > written_at);
        (full && s.completed > before.completed) || s.failed > before.failed
    });
    assert!(synced, "no anti-entropy round ran on n1 after the write:\n{}", n1.log());
    // A later client write, through the sane node, at `one`: n2 holds the entry stamped
    // an hour ahead and does not acknowledge (an entry from a broken clock counts as a
    // refusal, see `core/src/node/coordinator/restamp.rs`), so two nodes cannot make a
    // quorum for this key until n2's clock is fixed.
    write_through(&n1.addr, "k", "later", Consistency::One);
    assert_eq!(
        read_one(&n1.addr, "k").as_deref(),
        Some("later"),
        "the entry stamped an hour ahead reached n1 by sync and beat the later write"
    );
}

/// Attack 2. One frame from a member declares a live node dead at the largest
/// incarnation (and at `u64::MAX`): no refutation could beat it, so the node would be
/// out of the cluster for good. The claim is refused; the node stays (or is again)
/// alive everywhere, and so after a restart on its data.
#[test]
fn one_frame_cannot_evict_a_node_for_good() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let n2_dir = dir.path().join("n2");
    let n1 = start(&secret, None, None, 0);
    let mut n2 = start(&secret, Some(&n1.addr), Some(&n2_dir), 0);
    wait_for_cluster(&[&n1, &n2]);
    let victim = ring(&n1.addr).into_iter().find(|m| m.addr == n2.addr).expect("n2 in n1's ring");
    let n2_id = victim.id;
    // The rogue's own record says it left: proof that n1 took the frame, without a
    // member that never answers (a restarting node's hand-off waits for every owner).
    let rogue = rogue_record(4242).with(Status::Left, 0);
    block_on(async {
        let mut link = Rogue::connect(&n1.addr, 4242, &secret).await;
        let members = vec![
            rogue.clone(),
            record_of(&victim, Status::Dead, u64::MAX),
            record_of(&victim, Status::Dead, MAX_INCARNATION),
        ];
        link.send(MembershipMessage::PushPull {
            members,
            reply: false,
            clock: None,
            partial: false,
        })
        .await;
    });
    // The frame was handled: the rogue's own record is in n1's view.
    assert!(
        wait_until(Duration::from_secs(5), || status_of(&n1.addr, rogue.id).is_some()),
        "n1 never took the push-pull:\n{}",
        n1.log()
    );
    let alive_everywhere = |n2: &NodeProc| {
        [&n1.addr, &n2.addr].iter().all(|a| status_of(a, n2_id).as_deref() == Some("alive"))
    };
    assert!(
        wait_until(Duration::from_secs(20), || alive_everywhere(&n2)),
        "n2 is not alive again: n1 sees {:?}, n2 sees {:?}",
        status_of(&n1.addr, n2_id),
        status_of(&n2.addr, n2_id)
    );
    // Restarted on its data (same id, same address), it comes back too.
    let port = n2.port();
    n2.kill9();
    let n2 = start(&secret, Some(&n1.addr), Some(&n2_dir), port);
    assert!(
        wait_until(Duration::from_secs(30), || alive_everywhere(&n2)),
        "after a restart n2 is not alive again: n1 sees {:?}, n2 sees {:?}\n{}\n----\n{}",
        status_of(&n1.addr, n2_id),
        status_of(&n2.addr, n2_id),
        n1.log(),
        n2.log()
    );
}

/// Attack 3. One gossip frame introduces 2,000 fake alive members, and a join brings a
/// member holding 1,024 ring tokens: the member table would grow without bound and
/// fake replicas would own most of the ring, so quorum writes would fail. The node
/// takes a few new members per message and no node with more tokens than a node may
/// hold; the few fakes taken (records at incarnation 0 that never served) own no range,
/// and once they failed their probes they are not alive either: quorum writes go on.
#[test]
fn a_flood_of_fake_members_is_bounded_and_quorum_writes_go_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let n1 = start(&secret, None, None, 0);
    let n2 = start(&secret, Some(&n1.addr), None, 0);
    wait_for_cluster(&[&n1, &n2]);
    let nowhere = closed_addr();
    let fakes: Vec<Member> = (10_000..12_000u64)
        .map(|i| Member::new(NodeId(i), nowhere.clone(), vec![i.wrapping_mul(0x9e37_79b9)]))
        .collect();
    let greedy = 4343;
    block_on(async {
        let mut link = Rogue::connect(&n1.addr, 4242, &secret).await;
        link.send(MembershipMessage::Gossip {
            sender: rogue_record(4242),
            updates: fakes,
            clock: None,
        })
        .await;
        let tokens = (0..1024u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let member = Member::new(NodeId(greedy), closed_addr(), tokens);
        let mut link = Rogue::connect(&n1.addr, greedy, &secret).await;
        link.send(MembershipMessage::Join { member, clock: None }).await;
    });
    // The frames were handled: the rogue's own record is in n1's view.
    let rogue_known = || try_ring(&n1.addr).is_ok_and(|m| m.iter().any(|m| m.id == NodeId(4242)));
    assert!(wait_until(Duration::from_secs(10), rogue_known), "n1 never took the gossip");
    std::thread::sleep(Duration::from_millis(500));
    let members = try_ring(&n1.addr).unwrap_or_else(|e| panic!("n1 stopped answering: {e}"));
    assert!(
        members.len() <= 2 + MAX_NEW_MEMBERS,
        "one frame grew n1's member table to {} members",
        members.len()
    );
    assert!(
        members.iter().all(|m| m.id != NodeId(greedy)),
        "a member with 1,024 ring tokens was let in"
    );
    // The few fakes taken fail their probes and leave the ring.
    let real = [n1.addr.clone(), n2.addr.clone()];
    assert!(
        wait_until(Duration::from_secs(30), || {
            ring(&n1.addr).iter().all(|m| m.status != "alive" || real.contains(&m.addr))
        }),
        "fake members are still alive in n1's view after 30 s: {:?}",
        ring(&n1.addr).iter().filter(|m| m.status == "alive" && !real.contains(&m.addr)).count()
    );
    block_on(async {
        let conn = open_client(&n1.addr).await;
        for i in 0..20 {
            let reply =
                conn.call(set(&format!("k{i}"), "v", Consistency::Quorum), Duration::from_secs(3));
            let reply = reply.await;
            assert!(matches!(reply, Ok(Reply::Written { .. })), "quorum write {i}: {reply:?}");
        }
    });
}

/// Attack 4. A `PingReq` asks a node to probe a target it never heard of, at an address
/// the sender picks: the node would connect wherever it is told (a port scanner, or a
/// relay toward hosts behind it). It probes only members it knows, at their own
/// address.
#[test]
fn a_ping_request_toward_an_unknown_target_connects_nowhere() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let n1 = start(&secret, None, None, 0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let bait = listener.local_addr().unwrap().to_string();
    let rogue = rogue_record(4242);
    block_on(async {
        let mut link = Rogue::connect(&n1.addr, 4242, &secret).await;
        for seq in 0..3 {
            let msg = MembershipMessage::PingReq {
                seq,
                target: NodeId(9_000 + seq),
                target_addr: bait.clone(),
                sender: rogue.clone(),
                updates: Vec::new(),
                clock: None,
            };
            link.send(msg).await;
        }
    });
    // The frames were handled: the sender's record is in n1's view.
    assert!(
        wait_until(Duration::from_secs(5), || status_of(&n1.addr, rogue.id).is_some()),
        "n1 never took the ping requests:\n{}",
        n1.log()
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok((_, from)) = listener.accept() {
            panic!("n1 connected to the address a ping request named, from {from}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Attack 5 (prevented at start): a node listening on a non-loopback address without a
/// cluster secret and client tokens lets anyone who reaches it in. It refuses to start,
/// naming both flags, before it binds anything.
#[test]
fn a_non_loopback_start_without_security_is_refused() {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["serve", "--host", "0.0.0.0", "--advertise", "127.0.0.1:1", "--memory"])
        .args(["--port", "0"])
        .env_remove("DHRT_CONFIG")
        .env_remove("DHRT_CLUSTER_SECRET_FILE")
        .env_remove("DHRT_ADMIN_TOKEN_FILE");
    let ran = run_bounded(cmd, b"", Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.code.is_some_and(|c| c != 0), "it started: {:?}\n{stdout}", ran.code);
    assert!(!stdout.contains("listening on"), "it listened: {stdout}");
    for flag in ["--cluster-secret-file", "--admin-token-file"] {
        assert!(ran.stderr.contains(flag), "the error does not name {flag}:\n{}", ran.stderr);
    }
}
