//! Persistence with real processes: every acknowledged write survives `kill -9`, a
//! restarted node keeps its identity and data, rejoins through the peers it knew, and
//! catches up on what it missed.

mod common;

use common::{wait_until, NodeProc};
use dhrt::client::Client;
use dhrt_core::proto::client::Consistency;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn stats_of(addr: &str) -> Option<dhrt_core::proto::client::NodeStats> {
    Client::connect(addr).await.ok()?.stats(None).await.ok()
}

#[test]
fn acknowledged_writes_survive_kill_9_of_a_single_node() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(Some(dir.path()), &[]);
    let port = node.port();
    let rt = runtime();
    let id_before = rt.block_on(stats_of(&node.addr)).unwrap().node;
    // Many writers at once, so writes share group commits.
    let acked: Vec<String> = rt.block_on(async {
        let c = Client::connect(&node.addr).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..8 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..100 {
                    let key = format!("w{w}-{i}");
                    if c.set("logs", &key, &key, Consistency::One, None).await.is_ok() {
                        acked.push(key);
                    }
                }
                acked
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert_eq!(acked.len(), 800);
    node.kill9();
    let node = NodeProc::start_on(Some(dir.path()), port, &[]);
    rt.block_on(async {
        let c = Client::connect(&node.addr).await.unwrap();
        assert_eq!(c.stats(None).await.unwrap().node, id_before, "the node kept its id");
        for key in &acked {
            let got = c.get("logs", key, Consistency::One).await.unwrap();
            assert_eq!(got.as_deref(), Some(key.as_bytes()), "{key} lost in kill -9");
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9_in_the_middle_of_stepped_checkpoints() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint every 200 writes: the log is sealed, the files written in steps and
    // committed on a thread of their own, over and over while the writers go on.
    let mut node = NodeProc::start(Some(dir.path()), &["--checkpoint-writes", "200"]);
    let port = node.port();
    let addr = node.addr.clone();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            runtime().block_on(async {
                let c = Client::connect(&addr).await.unwrap();
                let mut tasks = Vec::new();
                for w in 0..8 {
                    let (c, acked) = (c.clone(), acked.clone());
                    tasks.push(tokio::spawn(async move {
                        for i in 0..2_000 {
                            let key = format!("w{w}-{i}");
                            let value = format!("{key}-value");
                            match c.set("logs", &key, &value, Consistency::One, None).await {
                                Ok(_) => acked.lock().unwrap().push(key),
                                Err(_) => return, // the node is gone
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })
    };
    // Killed while writes and checkpoints are under way.
    assert!(
        wait_until(Duration::from_secs(60), || acked.lock().unwrap().len() >= 3_000),
        "3,000 writes acknowledged in time"
    );
    node.kill9();
    writers.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let node = NodeProc::start_on(Some(dir.path()), port, &["--checkpoint-writes", "200"]);
    rt_check(&node.addr, &acked);
}

/// Every key of `acked` reads back with its value from the node at `addr`.
fn rt_check(addr: &str, acked: &[String]) {
    runtime().block_on(async {
        let c = Client::connect(addr).await.unwrap();
        for key in acked {
            let got = c.get("logs", key, Consistency::One).await.unwrap();
            let want = format!("{key}-value");
            assert_eq!(got.as_deref(), Some(want.as_bytes()), "{key} lost in kill -9");
        }
    });
}

#[test]
fn a_restarted_node_keeps_its_data_rejoins_and_catches_up() {
    let _serial = common::serial();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = NodeProc::start(Some(dirs[0].path()), &[]);
    let seed = first.addr.clone();
    let mut nodes = vec![first];
    for d in &dirs[1..] {
        nodes.push(NodeProc::start(Some(d.path()), &["--join", &seed]));
    }
    let rt = runtime();
    let all_alive = |nodes: &[NodeProc]| {
        nodes.iter().all(|n| {
            rt.block_on(stats_of(&n.addr))
                .is_some_and(|s| s.members.alive == 3 && s.status == "alive")
        })
    };
    assert!(wait_until(Duration::from_secs(30), || all_alive(&nodes)), "no 3-node cluster");
    rt.block_on(async {
        let c = Client::connect(&nodes[0].addr).await.unwrap();
        for i in 0..200 {
            c.set("users", format!("before-{i}"), "1", Consistency::All, None).await.unwrap();
        }
    });
    let port = nodes[2].port();
    nodes[2].kill9();
    rt.block_on(async {
        let c = Client::connect_with(&[&nodes[0].addr], Duration::from_secs(5)).await.unwrap();
        for i in 0..200 {
            c.set("users", format!("during-{i}"), "2", Consistency::Quorum, None).await.unwrap();
        }
    });
    // Restarted without --join: it rejoins through the peers saved in node.redb.
    nodes[2] = NodeProc::start_on(Some(dirs[2].path()), port, &[]);
    assert!(
        wait_until(Duration::from_secs(60), || all_alive(&nodes)),
        "the restarted node did not rejoin:\n{}",
        nodes[2].log()
    );
    // With N = 3 on 3 nodes every node replicates every key: the restarted node holds
    // the 200 keys it had and the 200 written while it was down.
    let caught_up = wait_until(Duration::from_secs(30), || {
        rt.block_on(stats_of(&nodes[2].addr)).is_some_and(|s| s.keys == 400)
    });
    let keys = rt.block_on(stats_of(&nodes[2].addr)).map(|s| s.keys);
    assert!(caught_up, "the restarted node holds {keys:?} keys, not 400:\n{}", nodes[2].log());
    assert!(nodes[2].log().contains("rejoining through the members known before the restart"));
}

#[test]
fn a_full_disk_refuses_writes_with_a_clear_error_and_keeps_serving() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    // A reserve no disk can satisfy: every write finds the disk "full".
    let node = NodeProc::start(Some(dir.path()), &["--min-free-mb", "1000000000"]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&node.addr).await.unwrap();
        let err = c.set("users", "alice", "v", Consistency::One, None).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("full"), "{text}");
        assert!(err.code().is_some(), "a typed server error: {err:?}");
        assert_eq!(c.get("users", "alice", Consistency::One).await.unwrap(), None);
        let stats = c.stats(None).await.unwrap();
        assert_eq!((stats.keys, stats.status.as_str()), (0, "alive"));
    });
}
