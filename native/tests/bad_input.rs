//! Bad input over the client WebSocket: malformed frames, another protocol version,
//! text frames, oversized frames, values and keys, invalid collection names, a peer
//! handshake of another version. Each gets a typed error, the connection and the node
//! keep serving, and nothing acknowledged is lost.

mod common;

use common::NodeProc;
use dhrt_core::{
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, ClientResponse, Message,
    },
    wire,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(addr: &str) -> Socket {
    tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws")).await.expect("connect").0
}

async fn answer(ws: &mut Socket) -> ClientResponse {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("connection open")
            .expect("no ws error");
        if let Ws::Binary(b) = msg {
            match wire::decode(&b).expect("the node sends valid frames") {
                Message::Response(r) => return r,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

async fn send(ws: &mut Socket, id: u64, op: Op) {
    let frame = wire::encode(&Message::Request(ClientRequest { id, op, seen: None })).unwrap();
    ws.send(Ws::Binary(frame.into())).await.unwrap();
}

fn code(r: &ClientResponse) -> Option<ErrorCode> {
    match &r.result {
        Reply::Error { code, .. } => Some(*code),
        _ => None,
    }
}

fn set(collection: &str, key: Vec<u8>, value: Vec<u8>) -> Op {
    Op::Set {
        collection: collection.into(),
        key: key.into(),
        value: value.into(),
        consistency: Consistency::One,
        ttl_ms: None,
    }
}

#[tokio::test]
async fn bad_frames_get_typed_errors_and_the_node_keeps_serving() {
    let node = NodeProc::start(None, &["--max-value", "1024"]);
    let mut ws = open(&node.addr).await;
    send(&mut ws, 1, set("users", b"alice".to_vec(), b"v1".to_vec())).await;
    let r = answer(&mut ws).await;
    assert!(matches!(r.result, Reply::Written { .. }), "{r:?}");

    // Garbage after a valid version byte.
    ws.send(Ws::Binary(vec![wire::VERSION, 0xc1, 0xff, 0x00].into())).await.unwrap();
    let r = answer(&mut ws).await;
    assert_eq!((r.id, code(&r)), (0, Some(ErrorCode::InvalidInput)), "{r:?}");

    // Another protocol version.
    ws.send(Ws::Binary(vec![9, 0x90].into())).await.unwrap();
    let r = answer(&mut ws).await;
    assert_eq!(code(&r), Some(ErrorCode::Unsupported), "{r:?}");

    // An empty frame and a text frame.
    ws.send(Ws::Binary(Vec::new().into())).await.unwrap();
    assert_eq!(code(&answer(&mut ws).await), Some(ErrorCode::InvalidInput));
    ws.send(Ws::Text("{\"get\": \"alice\"}".into())).await.unwrap();
    assert_eq!(code(&answer(&mut ws).await), Some(ErrorCode::InvalidInput));

    // A frame claiming a huge array in a few bytes.
    ws.send(Ws::Binary(vec![wire::VERSION, 0xdd, 0xff, 0xff, 0xff, 0xff].into())).await.unwrap();
    assert_eq!(code(&answer(&mut ws).await), Some(ErrorCode::InvalidInput));

    // A message over the frame limit closes its connection (the WebSocket layer's limit
    // is the frame limit: it is refused from its header, never read); others go on.
    let mut other = open(&node.addr).await;
    let big = vec![0u8; wire::DEFAULT_MAX_FRAME + 10];
    let _ = other.send(Ws::Binary(big.into())).await;
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), other.next()).await;
    assert!(
        matches!(end.expect("closed in time"), None | Some(Err(_)) | Some(Ok(Ws::Close(_)))),
        "the oversized message's connection is closed"
    );

    // A value over --max-value, an oversized key, bad collection names.
    send(&mut ws, 2, set("users", b"bob".to_vec(), vec![7u8; 2048])).await;
    let r = answer(&mut ws).await;
    assert_eq!((r.id, code(&r)), (2, Some(ErrorCode::TooLarge)), "{r:?}");
    send(&mut ws, 3, set("users", vec![b'k'; 70 * 1024], b"v".to_vec())).await;
    let r = answer(&mut ws).await;
    assert_eq!((r.id, code(&r)), (3, Some(ErrorCode::InvalidInput)), "{r:?}");
    for (id, bad) in [(4, "../etc"), (5, "a/b"), (6, ""), (7, "naïve")] {
        send(&mut ws, id, set(bad, b"k".to_vec(), b"v".to_vec())).await;
        let r = answer(&mut ws).await;
        assert_eq!((r.id, code(&r)), (id, Some(ErrorCode::InvalidInput)), "{bad:?}: {r:?}");
    }
    // Unwatching what was never watched.
    send(&mut ws, 8, Op::Unwatch { watch: 12345 }).await;
    assert_eq!(code(&answer(&mut ws).await), Some(ErrorCode::NotFound));

    // Same connection, still serving, nothing lost, nothing half-written.
    send(
        &mut ws,
        9,
        Op::Get {
            collection: "users".into(),
            key: b"alice"[..].into(),
            consistency: Consistency::One,
        },
    )
    .await;
    let r = answer(&mut ws).await;
    assert!(matches!(&r.result, Reply::Value { value: Some(v), .. } if v == "v1"), "{r:?}");
    send(
        &mut ws,
        10,
        Op::Get {
            collection: "users".into(),
            key: b"bob"[..].into(),
            consistency: Consistency::One,
        },
    )
    .await;
    assert!(matches!(answer(&mut ws).await.result, Reply::Value { value: None, .. }));
    send(&mut ws, 11, Op::Stats).await;
    match answer(&mut ws).await.result {
        Reply::Stats(s) => assert_eq!((s.keys, s.collections), (1, 1)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_frame_beyond_the_websocket_bound_closes_only_that_connection() {
    let node = NodeProc::start(None, &[]);
    let mut ws = open(&node.addr).await;
    let huge = vec![0u8; wire::DEFAULT_MAX_FRAME * 2 + 1024];
    let _ = ws.send(Ws::Binary(huge.into())).await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Ws::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));
    let mut other = open(&node.addr).await;
    send(&mut other, 1, Op::Stats).await;
    assert!(matches!(answer(&mut other).await.result, Reply::Stats(_)));
}

#[tokio::test]
async fn a_peer_of_another_protocol_version_is_refused_before_the_upgrade() {
    let node = NodeProc::start(None, &[]);
    let url = format!("ws://{}/v1/peer?node=7&version={}", node.addr, wire::VERSION + 1);
    let err = tokio_tungstenite::connect_async(url).await.expect_err("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 400),
        other => panic!("{other:?}"),
    }
    let mut ws = open(&node.addr).await;
    send(&mut ws, 1, Op::Ring).await;
    assert!(matches!(answer(&mut ws).await.result, Reply::Ring { .. }));
}

/// A client may send its first frames right behind the upgrade request, without waiting
/// for the `101`: the node reads them with the request head, and they must still reach
/// the node thread the socket is handed to (and be answered, in order).
#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = NodeProc::start(None, &[]);
    let mut tcp = tokio::net::TcpStream::connect(&node.addr).await.expect("connect");
    let mut out = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        node.addr
    )
    .into_bytes();
    for (id, op) in [
        (1, set("early", b"k".to_vec(), b"v".to_vec())),
        (
            2,
            Op::Get {
                collection: "early".into(),
                key: b"k".to_vec().into(),
                consistency: Consistency::One,
            },
        ),
    ] {
        let frame = wire::encode(&Message::Request(ClientRequest { id, op, seen: None })).unwrap();
        out.extend(masked_binary(&frame));
    }
    tcp.write_all(&out).await.unwrap();
    let wait = std::time::Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = tokio::time::timeout(wait, tcp.read(&mut buf)).await.expect("in time").unwrap();
        assert!(n > 0, "the node closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
    let mut rest = got.split_off(head_end);
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match server_frame(&rest) {
            Some((payload, used)) => {
                match wire::decode(&payload).expect("a valid frame") {
                    Message::Response(r) => answers.push(r),
                    other => panic!("unexpected {other:?}"),
                }
                rest.drain(..used);
            }
            None => {
                let n =
                    tokio::time::timeout(wait, tcp.read(&mut buf)).await.expect("in time").unwrap();
                assert!(n > 0, "the node closed before answering");
                rest.extend_from_slice(&buf[..n]);
            }
        }
    }
    answers.sort_by_key(|r| r.id);
    assert!(matches!(answers[0].result, Reply::Written { .. }), "{:?}", answers[0]);
    match &answers[1].result {
        Reply::Value { value: Some(v), .. } => assert_eq!(&v[..], b"v"),
        other => panic!("the early get: {other:?}"),
    }
}

/// `payload` as a client's (masked) binary WebSocket frame.
fn masked_binary(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x82];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The first whole (unmasked) frame the server sent in `buf`: its payload and length.
fn server_frame(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (len, start) = match *buf.get(1)? {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => panic!("a small answer in a 64-bit frame"),
        n => (n as usize, 2),
    };
    assert_eq!(buf[0], 0x82, "a final binary frame");
    let end = start + len;
    (buf.len() >= end).then(|| (buf[start..end].to_vec(), end))
}
