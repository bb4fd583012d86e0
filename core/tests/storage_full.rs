//! A write refused for lack of storage reaches the client as `storage_full` (HTTP 507),
//! whether the refusing replica is the coordinator's own store or a remote one, and
//! whatever was acknowledged before stays readable.

use bytes::Bytes;
use dhrt_core::{
    entry::NodeId,
    proto::client::{Consistency, ErrorCode, Op, Reply},
    sim::{call, durability::durable_cluster, CommitModel, NetConfig},
};

fn set(key: &str, value: &str, consistency: Consistency) -> Op {
    Op::Set {
        collection: "c".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        consistency,
        ttl_ms: None,
    }
}

fn get(key: &str) -> Op {
    Op::Get {
        collection: "c".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        consistency: Consistency::Quorum,
    }
}

/// The error code and message of a failed reply.
fn refusal(reply: Option<Reply>) -> (ErrorCode, String) {
    match reply {
        Some(Reply::Error { code, message, .. }) => (code, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn writes_to_full_replicas_are_refused_as_storage_full_and_reads_still_work() {
    let seed = 14;
    let (mut sim, _) = durable_cluster(3, seed, NetConfig::default(), CommitModel::disk()).unwrap();
    let handles: Vec<_> = (1..=3).map(|i| sim.process(NodeId(i)).unwrap().faults()).collect();
    let handle = |i: u64| handles[i as usize - 1].clone();
    let written = call(&mut sim, NodeId(1), set("before", "v", Consistency::All));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");

    // Every replica full, the coordinator's own store included.
    for i in 1..=3 {
        handle(i).arm(|f| f.full = true);
    }
    let (code, message) = refusal(call(&mut sim, NodeId(1), set("k", "v", Consistency::One)));
    assert_eq!(code, ErrorCode::StorageFull, "{message}");
    assert_eq!(code.http_status(), 507);
    assert!(message.contains("storage is full"), "{message}");

    // The coordinator's store has room; the two remote replicas refuse as full, so a
    // quorum write is refused for lack of storage (classified from their text).
    handle(1).arm(|f| f.full = false);
    let (code, message) = refusal(call(&mut sim, NodeId(1), set("k", "v", Consistency::Quorum)));
    assert_eq!(code, ErrorCode::StorageFull, "{message}");

    // One full replica of three does not stop a quorum write.
    handle(2).arm(|f| f.full = false);
    let written = call(&mut sim, NodeId(1), set("k2", "v", Consistency::Quorum));
    assert!(matches!(written, Some(Reply::Written { .. })), "{written:?}");

    // A replica failing for another reason is not "full": with one full replica and one
    // failing its writes, a quorum write is `quorum_not_reached`.
    handle(2).arm(|f| f.write_errors = true);
    let (code, message) = refusal(call(&mut sim, NodeId(1), set("k3", "v", Consistency::Quorum)));
    assert_eq!(code, ErrorCode::QuorumNotReached, "{message}");

    // What was acknowledged before stays readable from every coordinator.
    for i in 1..=3 {
        let got = call(&mut sim, NodeId(i), get("before"));
        assert!(
            matches!(&got, Some(Reply::Value { value: Some(v), .. }) if v == "v"),
            "node {i}: {got:?}"
        );
    }
}
