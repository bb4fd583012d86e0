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
