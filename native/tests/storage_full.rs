//! A node that has no room answers writes with `507 storage_full` over HTTP, while
//! reads, deletes and drops keep working; a node at its cap on collections answers the
//! same for a new collection. No root needed: an impossible `--min-free-mb` reserve
//! (more than any disk holds) makes every disk "full".

mod common;

use common::{wait_until, NodeProc};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// More MiB than any disk has: 1 PiB.
const IMPOSSIBLE_RESERVE_MB: &str = "1073741824";

/// `method path` with `body` on the node's HTTP port: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// Starts a persisted node on `data` and waits until it serves.
fn serving(data: &Path, args: &[&str]) -> NodeProc {
    let node = NodeProc::start(Some(data), args);
    let up = wait_until(Duration::from_secs(30), || {
        http(&node.addr, "GET", "/v1/health", "").1.contains(r#""status":"alive""#)
    });
    assert!(up, "the node never served:\n{}", node.log());
    node
}

const KEY: &str = "/v1/collections/users/keys/ada";

#[test]
fn a_node_without_room_answers_507_storage_full_and_still_reads_and_deletes() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let node = serving(&data, &["--min-free-mb", "0"]);
        assert_eq!(http(&node.addr, "PUT", KEY, "lovelace").0, 200);
        assert_eq!(http(&node.addr, "PUT", "/v1/collections/users/keys/alan", "turing").0, 200);
    }
    let node = serving(&data, &["--min-free-mb", IMPOSSIBLE_RESERVE_MB]);

    let (status, body) = http(&node.addr, "PUT", KEY, "byron");
    assert_eq!(status, 507, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "storage_full", "{body}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("storage is full") && message.contains("free space"), "{message}");
    // A new collection is refused the same way.
    let (status, body) = http(&node.addr, "PUT", "/v1/collections/fresh/keys/a", "x");
    assert_eq!(status, 507, "{body}");

    // Reads still answer, with the acknowledged value.
    assert_eq!(http(&node.addr, "GET", KEY, ""), (200, "lovelace".to_string()));
    // A delete writes a tombstone, admitted down to a small floor: it frees space.
    assert_eq!(http(&node.addr, "DELETE", KEY, "").0, 200);
    assert_eq!(http(&node.addr, "GET", KEY, "").0, 404);
    // So does dropping a collection.
    assert_eq!(http(&node.addr, "DELETE", "/v1/collections/users", "").0, 200);
    assert_eq!(http(&node.addr, "GET", "/v1/collections/users/keys/alan", "").0, 404);
}

#[test]
fn a_node_at_its_cap_on_collections_answers_507_for_a_new_one() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let node = serving(&dir.path().join("data"), &["--min-free-mb", "0", "--max-collections", "1"]);
    assert_eq!(http(&node.addr, "PUT", "/v1/collections/one/keys/a", "x").0, 200);
    let (status, body) = http(&node.addr, "PUT", "/v1/collections/two/keys/a", "x");
    assert_eq!(status, 507, "{body}");
    assert!(
        body.contains(r#""code":"storage_full""#) && body.contains("max-collections"),
        "{body}"
    );
    // The existing collection still takes writes.
    assert_eq!(http(&node.addr, "PUT", "/v1/collections/one/keys/b", "y").0, 200);
}
