//! A `Node` over the redb store wrapped in the fault-injecting store: a commit that
//! fails (EIO from the fsync) or a disk that is full (ENOSPC) answers the write it
//! concerns with an error, and every write acknowledged before stays readable — in the
//! running node and after a reopen of the data dir.

use bytes::Bytes;
use dhrt::store::{RedbOptions, RedbStore};
use dhrt_core::{
    entry::NodeId,
    membership::Status,
    node::{Node, NodeConfig, Output},
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, ClientResponse,
    },
    store::{
        faulty::{FaultHandle, FaultyStore},
        Store,
    },
};

type Faulty = FaultyStore<RedbStore>;

/// A node alone, serving, over a fault-injecting redb store in `dir`.
fn lone_node(dir: &std::path::Path) -> (Node<Faulty>, FaultHandle) {
    let store = FaultyStore::new(RedbStore::open(dir, RedbOptions::default()).unwrap()).unwrap();
    let handle = store.handle();
    let mut node = Node::new(NodeConfig::new(NodeId(1), "127.0.0.1:1"), store).unwrap();
    settle(&mut node, 0);
    (node, handle)
}

/// Runs the node's timers for five seconds from `from`, committing as it goes.
fn settle(node: &mut Node<Faulty>, from: u64) {
    for now in (from..from + 5_000).step_by(100) {
        node.tick(now);
        node.flush(now).unwrap();
        while node.poll_output().is_some() {}
    }
    assert_eq!(node.membership().me().status, Status::Alive);
}

fn set(key: &str) -> Op {
    Op::Set {
        collection: "c".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(format!("value of {key}").as_bytes()),
        consistency: Consistency::One,
        ttl_ms: None,
    }
}

fn get(key: &str) -> Op {
    Op::Get {
        collection: "c".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        consistency: Consistency::One,
    }
}

/// Sends `op`, runs one commit through the store (its job on this thread), and returns
/// the answer.
fn call(node: &mut Node<Faulty>, now: u64, id: u64, op: Op) -> Reply {
    node.handle_client(now, 1, ClientRequest { id, op, seen: None });
    // A commit that cannot begin is answered by the node itself.
    if let Ok(commit) = node.flush_begin(now) {
        let result = commit.job.map_or(Ok(()), |job| job.wait());
        node.committed(now, commit.epoch, result);
    }
    let mut answer = None;
    while let Some(o) = node.poll_output() {
        if let Output::Reply { resp: ClientResponse { id: rid, result, .. }, .. } = o {
            if rid == id {
                answer = Some(result);
            }
        }
    }
    answer.unwrap_or_else(|| panic!("no answer to request {id}"))
}

fn assert_readable(node: &mut Node<Faulty>, now: u64, keys: &[String]) {
    for (i, k) in keys.iter().enumerate() {
        let got = call(node, now, 10_000 + i as u64, get(k));
        let want = format!("value of {k}");
        assert!(
            matches!(&got, Reply::Value { value: Some(v), .. } if v == want.as_bytes()),
            "{k}: {got:?}"
        );
    }
}

#[test]
fn a_failed_commit_or_a_full_disk_answers_an_error_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, handle) = lone_node(dir.path());
    let mut now = 6_000;
    let mut acked = Vec::new();
    for i in 0..20 {
        let key = format!("k{i}");
        assert!(matches!(call(&mut node, now, i, set(&key)), Reply::Written { .. }));
        acked.push(key);
    }

    // The fsync fails: the write is answered "not committed", nothing acknowledged is
    // lost, and the node serves again by itself.
    handle.arm(|f| f.failing_syncs = 1);
    match call(&mut node, now, 100, set("lost")) {
        Reply::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::Unavailable, "{message}");
            assert!(message.contains("not committed"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(node.commits().failed, 1);
    let pos = node.replica().position("c", b"lost");
    assert_eq!(node.replica().store().get("c", pos, b"lost").unwrap(), None);
    settle(&mut node, now);
    now += 5_000;
    assert_readable(&mut node, now, &acked);

    // A torn commit: the same.
    handle.arm(|f| f.torn_syncs = 1);
    assert!(matches!(call(&mut node, now, 101, set("torn")), Reply::Error { .. }));
    settle(&mut node, now);
    now += 5_000;
    assert_readable(&mut node, now, &acked);

    // ENOSPC: the write is refused as storage_full; reads go on.
    handle.arm(|f| f.full = true);
    match call(&mut node, now, 102, set("full")) {
        Reply::Error { code, .. } => assert_eq!(code, ErrorCode::StorageFull),
        other => panic!("expected storage_full, got {other:?}"),
    }
    assert_readable(&mut node, now, &acked);
    handle.arm(|f| f.full = false);
    assert!(matches!(call(&mut node, now, 103, set("after")), Reply::Written { .. }));
    acked.push("after".into());

    // What was acknowledged is on disk: a store reopened from the data dir has it all.
    drop(node);
    let (mut node, _) = lone_node(dir.path());
    assert_readable(&mut node, 20_000, &acked);
    for gone in ["lost", "full"] {
        let got = call(&mut node, 20_000, 200, get(gone));
        assert!(matches!(got, Reply::Value { value: None, .. }), "{gone}: {got:?}");
    }
}
