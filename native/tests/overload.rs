//! Overload and abuse against a real node process: clients that never read (answers,
//! or the pongs of their pings), a watch that never reads, messages over the frame limit, a connection flood with unfinished
//! HTTP headers, a write flood. Each one is bounded: the node's resident memory
//! (VmRSS from /proc) grows by less than a loose bound, the abuser is cut off with a
//! logged reason and a counter in /metrics, and the node keeps serving a well-behaved
//! client. The RSS growth of each abuse is printed (`cargo test -- --nocapture`).

mod common;

use bytes::Bytes;
use common::{metric, wait_until, NodeProc};
use dhrt_core::{
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, ClientResponse, Message,
    },
    wire,
};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as Ws;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Growth of the node's RSS an abuse may cause; today's unbounded queues grew 300+ MiB.
const RSS_BOUND_MIB: u64 = 150;
const WAIT: Duration = Duration::from_secs(30);

/// One abuse at a time: each measures one node's memory, and two cores cannot run two
/// floods at once without starving each other's nodes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn open(addr: &str) -> Socket {
    tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws")).await.expect("connect").0
}

async fn send(ws: &mut Socket, id: u64, op: Op) {
    try_send(ws, id, op).await.unwrap();
}

/// Sends a request; `Err` once the node has closed the connection.
async fn try_send(
    ws: &mut Socket,
    id: u64,
    op: Op,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let frame = wire::encode(&Message::Request(ClientRequest { id, op, seen: None })).unwrap();
    ws.send(Ws::Binary(frame.into())).await
}

/// The next response, or None when the connection ended.
async fn next(ws: &mut Socket) -> Option<ClientResponse> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next()).await.expect("an answer in time")?;
        match msg.ok()? {
            Ws::Binary(b) => match wire::decode(&b).expect("valid frames") {
                Message::Response(r) => return Some(r),
                other => panic!("unexpected {other:?}"),
            },
            Ws::Close(_) => return None,
            _ => {}
        }
    }
}

async fn call(ws: &mut Socket, id: u64, op: Op) -> Reply {
    send(ws, id, op).await;
    loop {
        let r = next(ws).await.expect("connection open");
        if r.id == id {
            return r.result;
        }
    }
}

fn get(key: &str) -> Op {
    Op::Get {
        collection: "c".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        consistency: Consistency::One,
    }
}

fn set(key: &str, value: Vec<u8>) -> Op {
    Op::Set {
        collection: "c".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: value.into(),
        consistency: Consistency::One,
        ttl_ms: None,
    }
}

/// A well-behaved client still gets its answer.
async fn still_serves(addr: &str) {
    let mut ws = open(addr).await;
    assert!(matches!(call(&mut ws, 1, set("ok", b"yes".to_vec())).await, Reply::Written { .. }));
    let r = call(&mut ws, 2, get("ok")).await;
    assert!(matches!(&r, Reply::Value { value: Some(v), .. } if v == "yes"), "{r:?}");
}

/// Prints and checks the RSS growth since `before` (KiB).
fn check_rss(node: &NodeProc, before: u64, what: &str) {
    let after = node.rss_kib();
    let grown = after.saturating_sub(before) / 1024;
    println!("{what}: RSS {} MiB -> {} MiB (+{grown} MiB)", before / 1024, after / 1024);
    assert!(grown < RSS_BOUND_MIB, "{what}: RSS grew {grown} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_disconnected() {
    let _serial = SERIAL.lock().await;
    let node = NodeProc::start(None, &[]);
    let mut ws = open(&node.addr).await;
    assert!(matches!(call(&mut ws, 1, set("big", vec![7; 1 << 20])).await, Reply::Written { .. }));
    let before = node.rss_kib();
    // 300 GETs of a 1 MiB value, never read: 300 MiB of answers if nothing bounded them.
    // The node may cut the connection off before the last ones are sent (the send then
    // fails with a reset): it has seen enough.
    for id in 0..300 {
        if try_send(&mut ws, 100 + id, get("big")).await.is_err() {
            break;
        }
    }
    let log = || node.log().contains("slow client disconnected");
    assert!(wait_until(WAIT, log), "the node disconnects the reader:\n{}", node.log());
    assert_eq!(metric(&node.addr, "dhrt_slow_clients_disconnected_total").await, 1);
    check_rss(&node, before, "300 unread GETs of 1 MiB");
    // What the client finally reads ends with the close, not with 300 answers.
    let mut answers = 0;
    while next(&mut ws).await.is_some() {
        answers += 1;
    }
    assert!(answers < 300, "{answers} answers: the rest were never queued");
    still_serves(&node.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_never_reads_ends_with_a_lag_error() {
    let _serial = SERIAL.lock().await;
    let node = NodeProc::start(None, &["--watch-lag-mb", "2"]);
    let mut watcher = open(&node.addr).await;
    let watch = 77;
    let open_watch = Op::Watch { collection: "c".into(), prefix: None };
    assert_eq!(call(&mut watcher, watch, open_watch).await, Reply::Ok);
    let before = node.rss_kib();
    // 60 MiB of changes while the watcher reads nothing (to the same 200 keys, so the
    // data stays small: what grows is only what waits for the watcher).
    let mut writer = open(&node.addr).await;
    for batch in 0..300u64 {
        let items =
            (0..200).map(|i| (Bytes::from(format!("k{i}")), Bytes::from(vec![batch as u8; 1024])));
        let op = Op::SetMany {
            collection: "c".into(),
            items: items.collect(),
            consistency: Consistency::One,
            ttl_ms: None,
        };
        assert!(matches!(call(&mut writer, batch + 1, op).await, Reply::Written { .. }));
    }
    let log = || node.log().contains("watches ended: the client lagged");
    assert!(wait_until(WAIT, log), "the watch is ended:\n{}", node.log());
    check_rss(&node, before, "a watch never read while 60 MiB were written");
    assert_eq!(metric(&node.addr, "dhrt_watches_lagged_total").await, 1);
    // Reading at last: the events queued, then the error that ended the watch.
    let mut events = 0;
    let ended = loop {
        let r = next(&mut watcher).await.expect("the connection stays open");
        match r.result {
            Reply::Event { .. } => events += 1,
            Reply::Error { code, message, .. } => {
                assert_eq!(r.id, watch);
                break (code, message);
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(ended.0, ErrorCode::Unavailable);
    assert!(ended.1.contains("lagged"), "{}", ended.1);
    assert!(events < 60_000, "{events} events before the end");
    // The connection still works; no more events arrive for the ended watch.
    assert!(matches!(call(&mut watcher, 5, get("k0")).await, Reply::Value { value: Some(_), .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_frame_limit_are_refused_before_they_are_read() {
    let _serial = SERIAL.lock().await;
    let node = NodeProc::start(None, &[]);
    let before = node.rss_kib();
    // 10 connections each sending a 39 MiB message (the frame limit is 20 MiB).
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let addr = node.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = open(&addr).await;
            let big = vec![wire::VERSION; 39 << 20];
            let _ = tokio::time::timeout(WAIT, ws.send(Ws::Binary(big.into()))).await;
            // The node closes the connection without an answer.
            match tokio::time::timeout(WAIT, ws.next()).await.expect("closed in time") {
                None | Some(Err(_)) | Some(Ok(Ws::Close(_))) => {}
                Some(Ok(other)) => panic!("unexpected {other:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    check_rss(&node, before, "10 messages of 39 MiB");
    still_serves(&node.addr).await;
}

/// Whether the node closed `tcp` (end of stream or reset), waiting at most `wait`.
async fn closed_by_node(tcp: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_capped_and_unfinished_headers_time_out() {
    let _serial = SERIAL.lock().await;
    let node = NodeProc::start(None, &["--max-connections", "200", "--header-timeout", "2"]);
    let before = node.rss_kib();
    // 400 connections: half send an unfinished request head, half send nothing.
    let mut conns = Vec::new();
    for i in 0..400 {
        let mut tcp = tokio::net::TcpStream::connect(&node.addr).await.expect("connect");
        if i % 2 == 0 {
            let _ = tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
        }
        conns.push(tcp);
    }
    // Every one is closed by the node: over the cap at once, the rest at the timeout.
    for (i, tcp) in conns.iter_mut().enumerate() {
        assert!(closed_by_node(tcp, WAIT).await, "connection {i} is still open");
    }
    let refused = metric(&node.addr, "dhrt_connections_refused_total").await;
    println!("connections refused at the cap: {refused}");
    assert!(refused >= 100, "about 200 of 400 over a cap of 200: {refused}");
    assert!(node.log().contains("connection refused: the node is at its connection cap"));
    check_rss(&node, before, "400 connections, half with unfinished headers");
    drop(conns);
    // The slots are back: a client connects and is served.
    still_serves(&node.addr).await;
    assert!(metric(&node.addr, "dhrt_connections").await <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_stays_responsive_to_a_client_while_a_write_flood_runs() {
    let _serial = SERIAL.lock().await;
    let node = NodeProc::start(None, &["--inbox-mb", "1"]);
    let before = node.rss_kib();
    // 8 connections writing 64 KiB values as fast as the node takes them (they read
    // their answers, so nothing but the node's pace holds them back: the inbox for a
    // connection served off the node thread, the node thread's turns between
    // connections for one at its desk). The same keys over and over: the data stays
    // small.
    let mut flood = Vec::new();
    for f in 0..8u64 {
        let addr = node.addr.clone();
        flood.push(tokio::spawn(async move {
            let (mut tx, mut rx) = open(&addr).await.split();
            let reader = tokio::spawn(async move {
                let mut n = 0u64;
                while let Some(Ok(_)) = rx.next().await {
                    n += 1;
                }
                n
            });
            for i in 0..1500u64 {
                let op = set(&format!("f{f}-{}", i % 16), vec![3; 64 << 10]);
                let frame =
                    wire::encode(&Message::Request(ClientRequest { id: i, op, seen: None }))
                        .unwrap();
                if tx.send(Ws::Binary(frame.into())).await.is_err() {
                    break;
                }
            }
            let _ = tx.close().await;
            reader.abort();
        }));
    }
    // Meanwhile a well-behaved client keeps getting answers.
    let mut ws = open(&node.addr).await;
    for i in 0..20u64 {
        let r = call(&mut ws, i + 1, set(&format!("mine{i}"), b"v".to_vec())).await;
        assert!(matches!(r, Reply::Written { .. }), "{r:?}");
    }
    check_rss(&node, before, "8 connections writing 750 MiB");
    // A node alone keeps no hints; the counters are there all the same.
    assert_eq!(metric(&node.addr, "dhrt_hints_dropped_total").await, 0);
    assert_eq!(metric(&node.addr, "dhrt_hints_bytes").await, 0);
    for f in flood {
        f.await.unwrap();
    }
    still_serves(&node.addr).await;
}

/// Opens a raw WebSocket to the node's client endpoint (the handshake by hand, so the
/// test can send half a message) and returns the stream after the 101.
async fn raw_websocket(addr: &str) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte)).await.expect("101 in time");
        assert_eq!(
            n.unwrap(),
            1,
            "the node closed the upgrade: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stuck_half_way_through_large_messages_hold_a_bounded_budget() {
    let _serial = SERIAL.lock().await;
    // One lane: one message of the largest size (20 MiB) read at a time beyond each
    // connection's 256 KiB allowance.
    let node = NodeProc::start(None, &["--read-mb", "20", "--read-timeout", "1"]);
    let before = node.rss_kib();
    // 16 connections each announce a 16 MiB message, send 15 MiB of it and never the
    // rest: before the budget the node held all 240 MiB.
    const LEN: u64 = 16 << 20;
    let mut writers = Vec::new();
    for _ in 0..16 {
        let mut tcp = raw_websocket(&node.addr).await;
        writers.push(tokio::spawn(async move {
            let mut header = vec![0x82, 0x80 | 127];
            header.extend_from_slice(&LEN.to_be_bytes());
            header.extend_from_slice(&[0, 0, 0, 0]); // a zero mask: the payload as is
            tcp.write_all(&header).await.unwrap();
            let part = vec![wire::VERSION; 15 << 20];
            // The node stops reading once this connection waits for a lane: the write
            // stalls, which is the point; the task ends with the test.
            let _ = tcp.write_all(&part).await;
            std::future::pending::<()>().await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = metric(&node.addr, "dhrt_read_bytes").await;
    println!("bytes of the read budget held by unfinished messages: {held}");
    assert!(held <= 20 << 20, "{held} bytes held, over the 20 MiB budget");
    // Small requests never wait for a lane: the node answers a client at once.
    still_serves(&node.addr).await;
    check_rss(&node, before, "16 connections stuck half way through 16 MiB messages");
    let grown = node.rss_kib().saturating_sub(before) >> 10;
    assert!(grown < 100, "RSS grew {grown} MiB: more than one lane and the allowances");
    // None of them finishes its message within --read-timeout: each is closed in turn
    // once it has held the lane that long, and the lane ends free.
    let mut freed = false;
    for _ in 0..60 {
        if metric(&node.addr, "dhrt_read_bytes").await == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(freed, "a lane is still held by a message that never finished");
    for w in writers {
        w.abort();
    }
}

/// A client that stops reading for a while (its socket buffers fill: answers written
/// through io_uring then come back short or `EAGAIN`, and the node writes the rest as
/// the socket drains) and then reads everything gets every answer, whole and in order,
/// and the connection goes on serving — with answers sent through the node thread's
/// io_uring (`--client-io auto`, where the kernel allows it) and through epoll alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_pauses_gets_every_answer_in_order_whichever_client_io() {
    let _serial = SERIAL.lock().await;
    for io in ["auto", "epoll"] {
        let node = NodeProc::start(None, &["--client-io", io]);
        let uring = node.log().contains("client sockets on the node thread: io_uring");
        if io == "auto" && !uring {
            println!("io_uring is not available here: the auto case runs on epoll");
        }
        assert_eq!(uring, io == "auto" && !node.log().contains("io_uring is not available"));
        let mut ws = open(&node.addr).await;
        let value: Vec<u8> = (0..256 << 10).map(|i| (i % 251) as u8).collect();
        assert!(matches!(call(&mut ws, 1, set("v", value.clone())).await, Reply::Written { .. }));
        // 64 answers of 256 KiB (16 MiB, under the 64 MiB output limit), unread for a
        // second: far more than the socket buffers hold.
        for id in 0..64 {
            send(&mut ws, 100 + id, get("v")).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        for id in 0..64 {
            let r = next(&mut ws).await.expect("the connection stays open");
            assert_eq!(r.id, 100 + id, "{io}: answers in the order asked");
            match r.result {
                Reply::Value { value: Some(got), .. } => {
                    assert!(got[..] == value[..], "{io}: whole")
                }
                other => panic!("{io}: {other:?}"),
            }
        }
        assert!(matches!(call(&mut ws, 2, set("w", b"x".to_vec())).await, Reply::Written { .. }));
        still_serves(&node.addr).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_pings_and_never_reads_the_pongs_is_no_longer_read() {
    let _serial = SERIAL.lock().await;
    let node = NodeProc::start(None, &[]);
    let mut tcp = raw_websocket(&node.addr).await;
    let before = node.rss_kib();
    // Pings of 125 bytes, masked as a client's frames must be: each one owes a pong, and
    // this client never reads one. 1 MiB of them a write.
    let mut ping = vec![0x89, 0x80 | 125, 1, 2, 3, 4];
    ping.extend((0..125u8).map(|i| i ^ [1, 2, 3, 4][usize::from(i) % 4]));
    let chunk: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 8000).collect();
    let mut sent = 0usize;
    let stalled = loop {
        match tokio::time::timeout(Duration::from_secs(3), tcp.write_all(&chunk)).await {
            Err(_) => break true,
            Ok(Err(_)) => break false,
            Ok(Ok(())) => sent += chunk.len(),
        }
        if sent >= 256 << 20 {
            break false;
        }
    };
    println!("pings sent before the node stopped reading: {} MiB", sent >> 20);
    assert!(stalled, "the node kept reading pings ({} MiB) whose pongs nobody read", sent >> 20);
    check_rss(&node, before, "pings whose pongs are never read");
    still_serves(&node.addr).await;
}
