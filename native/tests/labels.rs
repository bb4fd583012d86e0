//! Node labels against real processes: `--label KEY=VALUE` (and `label = [...]` in a
//! config file) is announced to the cluster, so `dhrt ring` and `/v1/ring` on every
//! member show every member's labels; a malformed label stops the node before it starts,
//! saying why.

mod common;

use common::{run_bounded, wait_until, NodeProc};
use std::{process::Command, time::Duration};

fn ring(addr: &str) -> String {
    let mut cmd = Command::new(common::bin());
    cmd.args(["ring", "--node", addr]).env_remove("DHRT_TOKEN");
    String::from_utf8_lossy(&run_bounded(cmd, b"", Duration::from_secs(10)).stdout).into_owned()
}

/// The body of `GET path` (HTTP/1.0, so the node closes the connection when done).
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("an answer");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

#[test]
fn labels_reach_every_member_and_show_in_the_ring() {
    let _serial = common::serial();
    let a = NodeProc::start(None, &["--label", "zone=eu-1", "--label", "disk=ssd"]);
    let a_addr = format!("127.0.0.1:{}", a.port());
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("dhrt.toml");
    std::fs::write(&config, "label = [\"zone=eu-2\"]\n").expect("write the config");
    let config = config.to_str().expect("a UTF-8 path");
    let b = NodeProc::start(None, &["--config", config, "--join", &a_addr]);
    let b_addr = format!("127.0.0.1:{}", b.port());
    for addr in [&a_addr, &b_addr] {
        let seen = wait_until(Duration::from_secs(30), || {
            let out = ring(addr);
            out.contains("disk=ssd,zone=eu-1") && out.contains("zone=eu-2")
        });
        assert!(seen, "{addr} shows both members' labels:\n{}", ring(addr));
    }
    let body = http_get(&b_addr, "/v1/ring");
    let ring: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let zones: Vec<&str> = ring["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["labels"]["zone"].as_str())
        .collect();
    assert_eq!(zones.len(), 2, "{body}");
    assert!(zones.contains(&"eu-1") && zones.contains(&"eu-2"), "{body}");
}

#[test]
fn a_malformed_label_stops_the_node_before_it_starts() {
    for (bad, why) in [("zone", "key=value"), ("zone=eu 1", "1 to 64 characters")] {
        let mut cmd = Command::new(common::bin());
        cmd.args(["serve", "--memory", "--port", "0", "--label", bad]);
        let ran = run_bounded(cmd, b"", Duration::from_secs(10));
        assert_ne!(ran.code, Some(0), "{bad:?} was accepted");
        assert!(ran.stderr.contains(why), "{bad:?}: {}", ran.stderr);
    }
}
