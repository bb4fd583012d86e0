//! Peers authenticate (docs/security.md): real node processes with and without the
//! cluster secret, and a rogue peer speaking raw frames. Each test is an attack that
//! worked before the peer handshake existed.

mod common;

use common::{serial, wait_until, NodeProc};
use dhrt::{
    client::Client,
    server::peer_auth::{self, Handshake},
    server::security::Secret,
};
use dhrt_core::{
    membership::{Member, MembershipMessage},
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, Message,
    },
    wire, NodeId,
};
use futures_util::SinkExt;
use std::{path::PathBuf, time::Duration};
use tokio_tungstenite::tungstenite::Message as Ws;

use common::peer::{next_binary, Socket};

/// A cluster secret in a file of `dir`.
fn secret_file(dir: &tempfile::TempDir, name: &str, byte: u8) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{}\n", String::from_utf8(vec![byte; 32]).unwrap())).unwrap();
    path
}

/// The members `addr` lists, by address.
async fn members(addr: &str) -> Vec<String> {
    let client = Client::connect(addr).await.expect("connect");
    let mut addrs: Vec<String> =
        client.ring().await.expect("ring").into_iter().map(|m| m.addr).collect();
    addrs.sort();
    addrs
}

fn members_blocking(addr: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(members(addr))
}

fn start(secret: Option<&PathBuf>, join: Option<&str>) -> NodeProc {
    let mut args: Vec<String> = Vec::new();
    if let Some(s) = secret {
        args.push("--cluster-secret-file".into());
        args.push(s.display().to_string());
    }
    if let Some(j) = join {
        args.push("--join".into());
        args.push(j.into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    NodeProc::start(None, &args)
}

fn metric(addr: &str, name: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let text = rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake::<
            _,
            http_body_util::Empty<bytes::Bytes>,
        >(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("/metrics")
            .header("host", addr)
            .body(http_body_util::Empty::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        use http_body_util::BodyExt;
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    });
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

#[test]
fn nodes_with_the_same_secret_form_a_cluster_and_replicate() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(&dir, "cluster.secret", b'a');
    let n1 = start(Some(&s), None);
    let n2 = start(Some(&s), Some(&n1.addr));
    assert!(
        wait_until(Duration::from_secs(20), || members_blocking(&n1.addr).len() == 2
            && members_blocking(&n2.addr).len() == 2),
        "the two nodes never saw each other:\n{}\n{}",
        n1.log(),
        n2.log()
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let a = Client::connect(&n1.addr).await.unwrap();
        let b = Client::connect(&n2.addr).await.unwrap();
        // Both nodes must acknowledge (N = 2 on a 2-node cluster): replica traffic flows.
        let mut written = false;
        for _ in 0..50 {
            if a.set("users", "alice", "admin", Consistency::All, None).await.is_ok() {
                written = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(written, "a write at consistency all never succeeded");
        let got = b.get("users", "alice", Consistency::All).await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"admin"[..]));
    });
    assert_eq!(metric(&n1.addr, "dhrt_peer_handshakes_refused_total"), 0);
}

#[test]
fn a_node_without_the_secret_or_with_another_cannot_join() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let good = secret_file(&dir, "good.secret", b'g');
    let bad = secret_file(&dir, "bad.secret", b'b');
    let n1 = start(Some(&good), None);
    let without = start(None, Some(&n1.addr));
    let wrong = start(Some(&bad), Some(&n1.addr));
    // Both keep trying (join retries); the member refuses every link.
    assert!(
        wait_until(Duration::from_secs(20), || {
            metric(&n1.addr, "dhrt_peer_handshakes_refused_total") >= 2
                && metric(&without.addr, "dhrt_peer_handshakes_refused_total") >= 1
                && metric(&wrong.addr, "dhrt_peer_handshakes_refused_total") >= 1
        }),
        "the handshakes were not refused:\n{}",
        n1.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(members_blocking(&n1.addr), vec![n1.addr.clone()], "no stranger is a member");
    assert_eq!(members_blocking(&without.addr), vec![without.addr.clone()]);
    assert_eq!(members_blocking(&wrong.addr), vec![wrong.addr.clone()]);
    assert!(wrong.log().contains("cluster secret"), "the refused node says why:\n{}", wrong.log());
}

/// A forged Join: the attack of a rogue peer with 1,024 tokens.
fn forged_join(id: u64) -> Vec<u8> {
    let tokens = (0..1024u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let member = Member::new(NodeId(id), "127.0.0.1:9", tokens);
    wire::encode(&Message::Gossip(MembershipMessage::Join { member, clock: None })).unwrap()
}

async fn open(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url).await.expect("upgrade").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_from_a_peer_that_skips_the_handshake_reach_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(&dir, "cluster.secret", b's');
    let n1 = tokio::task::spawn_blocking(move || start(Some(&s), None)).await.unwrap();
    let url = format!("ws://{}/v1/peer?version={}", n1.addr, wire::VERSION);
    // Ignores the challenge and sends a Join, as the pre-handshake attack did.
    let mut ws = open(&url).await;
    let challenge = peer_auth::decode(&next_binary(&mut ws).await.expect("a challenge"));
    assert!(matches!(challenge, Ok(Handshake::Challenge { .. })), "{challenge:?}");
    let _ = ws.send(Ws::Binary(forged_join(666).into())).await;
    // The node refuses and closes the link.
    let refused = next_binary(&mut ws).await.map(|b| peer_auth::decode(&b));
    assert!(matches!(refused, Some(Ok(Handshake::Refused { .. }))), "{refused:?}");
    // A hello with a made-up proof: refused too.
    let mut ws = open(&url).await;
    let _ = next_binary(&mut ws).await.expect("a challenge");
    let hello = Handshake::Hello { node: NodeId(666), nonce: vec![7; 32], proof: vec![0; 32] };
    ws.send(Ws::Binary(peer_auth::encode(&hello).into())).await.unwrap();
    let refused = next_binary(&mut ws).await.map(|b| peer_auth::decode(&b));
    assert!(matches!(refused, Some(Ok(Handshake::Refused { .. }))), "{refused:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        members(&n1.addr).await,
        vec![n1.addr.clone()],
        "the forged member was not admitted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_cannot_send_peer_messages() {
    let n1 = tokio::task::spawn_blocking(|| start(None, None)).await.unwrap();
    let mut ws = open(&format!("ws://{}/v1/ws", n1.addr)).await;
    ws.send(Ws::Binary(forged_join(777).into())).await.unwrap();
    let frame = next_binary(&mut ws).await.expect("an answer");
    let Ok(Message::Response(resp)) = wire::decode(&frame) else { panic!("not a response") };
    match resp.result {
        Reply::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::InvalidInput);
            assert!(message.contains("only send requests"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(members(&n1.addr).await, vec![n1.addr.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_link_cannot_send_client_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = secret_file(&dir, "cluster.secret", b'p');
    let s = path.clone();
    let n1 = tokio::task::spawn_blocking(move || start(Some(&s), None)).await.unwrap();
    // A member (it holds the secret) sends a client request over its peer link.
    let secret = Secret::from_file(&path).unwrap();
    let mut ws = common::peer::join_as_member(&n1.addr, 4242, &secret).await;
    let set = Op::Set {
        collection: "users".into(),
        key: "mallory".into(),
        value: "admin".into(),
        consistency: Consistency::One,
        ttl_ms: None,
    };
    let frame =
        wire::encode(&Message::Request(ClientRequest { id: 1, op: set, seen: None })).unwrap();
    ws.send(Ws::Binary(frame.into())).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = Client::connect(&n1.addr).await.unwrap();
    assert_eq!(client.get("users", "mallory", Consistency::One).await.unwrap(), None);
    let bad = tokio::task::spawn_blocking(move || metric(&n1.addr, "dhrt_bad_frames_total"));
    assert!(bad.await.unwrap() >= 1, "the request was refused as a bad frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_breaks_the_framing_loses_its_link_and_nothing_else() {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let path = secret_file(&dir, "cluster.secret", b'f');
    let s = path.clone();
    let n1 = tokio::task::spawn_blocking(move || start(Some(&s), None)).await.unwrap();
    let secret = Secret::from_file(&path).unwrap();
    let mut ws = common::peer::join_as_member(&n1.addr, 4343, &secret).await;
    // A text frame: not understood, counted as a bad frame; the link stays.
    ws.send(Ws::Text("hello".into())).await.unwrap();
    // A frame whose header claims a terabyte: refused from its header alone, the link
    // closed with "message too big" before a byte of it is read.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    ws.get_mut().write_all(&header).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Ws::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the link is closed within 10 s");
    assert_eq!(closed, Some(1009), "closed as too big");
    // The node serves on: a client writes and reads back, and the member links again.
    let client = Client::connect(&n1.addr).await.unwrap();
    client.set("users", "alice", "1", Consistency::One, None).await.unwrap();
    let read = client.get("users", "alice", Consistency::One).await.unwrap();
    assert_eq!(read.as_deref(), Some(&b"1"[..]));
    let _again = common::peer::join_as_member(&n1.addr, 4343, &secret).await;
    let addr = n1.addr.clone();
    let bad = tokio::task::spawn_blocking(move || metric(&addr, "dhrt_bad_frames_total"));
    assert!(bad.await.unwrap() >= 1, "the text frame was counted");
}
