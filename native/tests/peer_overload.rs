//! A peer that stops reading, against real node processes: node B of a two-node
//! cluster is frozen (SIGSTOP) while clients write 1 MiB values to node A at
//! consistency `one`. Every write is replicated to B, whose socket soon stops taking
//! bytes, so A's outbound queue to B fills. The queue is bounded in bytes
//! (`--peer-queue-mb`): A drops and counts the frames past it, `dhrt_peer_queued_bytes`
//! never exceeds it, A's resident memory (VmRSS from /proc) comes back under a bound
//! once the writes' own timeouts pass, and A keeps acknowledging writes; when B thaws,
//! the queue drains. The RSS is printed (`cargo test -- --nocapture`).

mod common;

use bytes::Bytes;
use common::{metric, wait_until, NodeProc};
use dhrt::client::Client;
use dhrt_core::{
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, Message,
    },
    wire,
};
use futures_util::{SinkExt, StreamExt};
use std::{process::Command, time::Duration};
use tokio_tungstenite::tungstenite::Message as Ws;

const WAIT: Duration = Duration::from_secs(60);
/// The byte budget of one peer link in the test, in MiB.
const QUEUE_MB: u64 = 24;
/// Values written while the peer is frozen: 1 MiB each.
const WRITES: u64 = 400;
/// Growth of A's RSS the abuse may leave behind: the 24 MiB queue and 8 MiB of hints,
/// with room for the allocator (+22 MiB measured). Without a byte bound the queue kept
/// every frame B did not take: +387 MiB, for good.
const RSS_BOUND_MIB: u64 = 100;

fn signal(node: &NodeProc, sig: &str) {
    let pid = node.pid().expect("running").to_string();
    assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
}

fn set(key: String, value: Vec<u8>) -> Op {
    Op::Set {
        collection: "c".into(),
        key: key.into(),
        value: Bytes::from(value),
        consistency: Consistency::One,
        ttl_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_holds_at_most_its_queue_budget() {
    let limits = [
        "--peer-queue-mb",
        "24",
        "--peer-queue-total-mb",
        "48",
        "--hints-mb-per-node",
        "8",
        "--hints-mb",
        "8",
    ];
    // mimalloc keeps freed memory a while (and in huge pages): told to give it back at
    // once, A's RSS follows what it really holds.
    let mut cmd = Command::new(common::bin());
    cmd.args(["serve", "--port", "0", "--memory"]).args(limits).env_remove("DHRT_CONFIG");
    cmd.env("MIMALLOC_PURGE_DELAY", "0")
        .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
        .env("MIMALLOC_ALLOW_LARGE_OS_PAGES", "0");
    let a = NodeProc::launch(cmd);
    let mut b_args = vec!["--join", a.addr.as_str()];
    b_args.extend(limits);
    let b = NodeProc::start(None, &b_args);
    let both_alive = || async {
        let Ok(c) = Client::connect(&a.addr).await else { return false };
        c.stats(None).await.is_ok_and(|s| s.members.alive == 2 && s.status == "alive")
    };
    let mut alive = false;
    for _ in 0..300 {
        if both_alive().await {
            alive = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(alive, "A never saw B alive:\n{}", a.log());

    signal(&b, "-STOP");
    let before = a.rss_kib();
    // Pipelined writes, read back afterwards: A acknowledges each once it holds the
    // value; replicating it to B is best effort.
    let url = format!("ws://{}/v1/ws", a.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        for id in 0..WRITES {
            // A few keys, overwritten: A's own replica stays small.
            let op = set(format!("key-{}", id % 8), vec![id as u8; 1 << 20]);
            let frame =
                wire::encode(&Message::Request(ClientRequest { id, op, seen: None })).unwrap();
            sink.send(Ws::Binary(frame.into())).await.unwrap();
        }
        sink
    });
    // Each write A coordinates holds its value until B's acknowledgement times out, so
    // past the bound on requests in flight (`--pending-mb`, 256 MiB) A refuses more at
    // once, as overloaded: both answers are right, nothing else is.
    let (mut written, mut overloaded) = (0, 0);
    while written + overloaded < WRITES {
        let msg = tokio::time::timeout(WAIT, stream.next()).await.expect("answers in time");
        let Some(Ok(Ws::Binary(frame))) = msg else { panic!("connection ended: {msg:?}") };
        let Message::Response(resp) = wire::decode(&frame).unwrap() else { panic!("a response") };
        match &resp.result {
            Reply::Written { .. } => written += 1,
            Reply::Error { code: ErrorCode::Unavailable, message, .. }
                if message.contains("overloaded") =>
            {
                overloaded += 1
            }
            other => panic!("neither written nor overloaded: {other:?}"),
        }
    }
    assert!(written > QUEUE_MB, "only {written} writes were acknowledged");
    let _sink = writer.await.unwrap();

    let queued = metric(&a.addr, "dhrt_peer_queued_bytes").await;
    let dropped = metric(&a.addr, "dhrt_peer_frames_dropped_total").await;
    let peak = a.rss_kib();
    assert!(queued <= QUEUE_MB << 20, "{queued} bytes queued, over the {QUEUE_MB} MiB budget");
    assert!(dropped > 0, "frames past the budget are dropped and counted");
    // Each write A coordinated keeps its value until B's acknowledgement times out
    // (the request timeout, 2 s); then only the bounded queue and hints hold values.
    let mut settled = peak;
    for _ in 0..600 {
        settled = a.rss_kib();
        if settled.saturating_sub(before) >> 10 < RSS_BOUND_MIB {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mib = |kib: u64| kib >> 10;
    println!(
        "{WRITES} writes of 1 MiB with the peer frozen ({written} acknowledged, {overloaded} \
         refused as overloaded): RSS {} MiB, {} MiB after the writes, \
         back to {} MiB as they time out; {queued} bytes queued for the peer, {dropped} frames dropped",
        mib(before),
        mib(peak),
        mib(settled),
    );
    let grown = mib(settled.saturating_sub(before));
    assert!(grown < RSS_BOUND_MIB, "RSS grew {grown} MiB and stayed");

    // B comes back: its link drains and A's queue empties.
    signal(&b, "-CONT");
    let rt_addr = a.addr.clone();
    let drained = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        wait_until(WAIT, || rt.block_on(metric(&rt_addr, "dhrt_peer_queued_bytes")) == 0)
    });
    assert!(drained.await.unwrap(), "the queue drains once the peer reads:\n{}", a.log());
}
