//! The Rust client as the light peer's host, end to end with real `dhrt serve`
//! processes: a request whose node hangs goes to the next replica, a watch moves to
//! another node when its node dies, and a local copy of a collection catches up by
//! Merkle sync and stays current.

mod common;

use common::{wait_until, NodeProc};
use dhrt::client::{Client, ConnectOptions};
use dhrt_core::{light::StreamStatus, proto::client::Consistency};
use std::{process::Command, time::Duration};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Starts `n` in-memory nodes joined through the first, and waits until each sees all.
fn cluster(n: usize) -> Vec<NodeProc> {
    let first = NodeProc::start(None, &[]);
    let seed = first.addr.clone();
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(NodeProc::start(None, &["--join", seed.as_str()]));
    }
    let rt = runtime();
    for node in &nodes {
        let ok = wait_until(Duration::from_secs(30), || {
            rt.block_on(async {
                let Ok(c) = Client::connect(&node.addr).await else { return false };
                c.stats(None).await.is_ok_and(|s| s.members.alive as usize == n)
            })
        });
        assert!(ok, "{} did not see {n} alive members:\n{}", node.addr, node.log());
    }
    nodes
}

fn signal(node: &NodeProc, signal: &str) {
    let pid = node.pid().expect("running").to_string();
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid).status().unwrap();
    assert!(status.success(), "kill -{signal}");
}

#[test]
fn a_request_whose_node_hangs_is_answered_by_the_next_replica() {
    let _serial = common::serial();
    let nodes = cluster(3);
    let rt = runtime();
    rt.block_on(async {
        let options = ConnectOptions {
            attempt_timeout: Some(Duration::from_millis(300)),
            ..ConnectOptions::default()
        };
        let c = Client::connect_with_options(&[&nodes[0].addr], Duration::from_secs(5), options)
            .await
            .unwrap();
        for i in 0..60 {
            c.set("hang", format!("k{i}"), format!("v{i}"), Consistency::All, None).await.unwrap();
        }
        // A node that stops answering without closing its connections: the client
        // cannot tell it from a slow one except by waiting. Every key still answers,
        // those it owns from the next replica, well within the client's timeout.
        signal(&nodes[1], "STOP");
        for i in 0..60 {
            let got = c.get("hang", format!("k{i}"), Consistency::One).await;
            assert_eq!(
                got.as_ref().map(|v| v.as_deref()),
                Ok(Some(format!("v{i}").as_bytes())),
                "k{i} with a node stopped"
            );
        }
        for i in 0..60 {
            let set = c.set("hang", format!("n{i}"), "w", Consistency::Quorum, None).await;
            assert!(set.is_ok(), "n{i}: {set:?}");
        }
        signal(&nodes[1], "CONT");
    });
}

#[test]
fn a_watch_moves_to_another_node_when_its_node_dies() {
    let _serial = common::serial();
    let mut nodes = cluster(3);
    let rt = runtime();
    rt.block_on(async {
        // Through the first node only: it answered the ring, so the watch goes there.
        let c = Client::connect_with(&[&nodes[0].addr], Duration::from_secs(5)).await.unwrap();
        let mut watch = c.watch("feed", None).await.unwrap();
        let writer = Client::connect(&nodes[2].addr).await.unwrap();
        writer.set("feed", "before", "1", Consistency::All, None).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
        let e = e.expect("the change before the kill").unwrap().unwrap();
        assert_eq!((&e.key[..], e.value.as_deref()), (&b"before"[..], Some(&b"1"[..])));

        nodes[0].kill9();
        // Writes go on until one arrives through the watch's new node.
        let mut i = 0u32;
        let got = loop {
            writer.set("feed", format!("after-{i}"), "2", Consistency::Quorum, None).await.unwrap();
            i += 1;
            match tokio::time::timeout(Duration::from_millis(300), watch.next()).await {
                Ok(event) => break event,
                Err(_) if i < 100 => continue,
                Err(_) => panic!("no change arrived in 100 writes after the watch's node died"),
            }
        };
        let got = got.expect("the watch goes on").expect("not ended");
        assert!(got.key.starts_with(b"after-"), "{got:?}");
        assert!(watch.interruptions() >= 1, "the watch never lost its node");
    });
}

#[test]
fn a_replica_catches_up_by_sync_and_stays_current() {
    let _serial = common::serial();
    let nodes = cluster(3);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&nodes[0].addr).await.unwrap();
        for i in 0..200 {
            c.set("users", format!("u{i:03}"), format!("v{i}"), Consistency::All, None)
                .await
                .unwrap();
        }
        let copy = c.replica("users");
        copy.synced(Duration::from_secs(20)).await.expect("caught up");
        assert!(matches!(copy.status(), StreamStatus::Synced { .. }), "{:?}", copy.status());
        for i in 0..200 {
            assert_eq!(
                copy.get(format!("u{i:03}").as_bytes()).as_deref(),
                Some(format!("v{i}").as_bytes())
            );
        }
        // Every live pair, page by page.
        let mut seen = 0;
        let mut cursor = None;
        loop {
            let page = copy.scan(cursor.as_deref(), 64).unwrap();
            seen += page.items.len();
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, 200);

        // Changes after the catch-up arrive through the copy's watch.
        c.set("users", "u-new", "fresh", Consistency::Quorum, None).await.unwrap();
        c.del("users", "u000", Consistency::Quorum).await.unwrap();
        let current = wait_until(Duration::from_secs(10), || {
            copy.get(b"u-new").as_deref() == Some(&b"fresh"[..]) && copy.get(b"u000").is_none()
        });
        assert!(current, "the copy did not follow the writes after its catch-up");
        assert_eq!(
            copy.scan(Some(b"bad"), 10).unwrap_err().code(),
            Some(dhrt_core::proto::client::ErrorCode::InvalidInput)
        );
    });
}
