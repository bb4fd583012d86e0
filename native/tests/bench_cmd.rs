//! `dhrt bench` against real processes: a `dhrt serve --memory` node, and a small fake
//! Redis (RESP) server in this process. Behaviour only — no timed assertions.

mod common;

use common::{bin, NodeProc};
use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    process::Command,
};

/// Runs `dhrt bench ARGS --json` and returns its one JSON line.
fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin()).arg("bench").args(args).arg("--json").output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dhrt bench {args:?} failed:\n{stdout}\n{stderr}");
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"))
}

#[test]
fn bench_drives_a_dhrt_node() {
    let node = NodeProc::start(None, &[]);
    let set = bench(&[
        "--node",
        &node.addr,
        "--requests",
        "2000",
        "--connections",
        "4",
        "--pipeline",
        "4",
    ]);
    assert_eq!(set["target"], "dhrt");
    assert_eq!(set["workload"], "set");
    assert!(set["ops_per_sec"].as_f64().unwrap() > 0.0, "{set}");
    assert_eq!(set["errors"], 0, "{set}");
    assert_eq!(set["requests"], 2000, "{set}");
    assert!(set["p50_us"].as_u64().unwrap() <= set["p99_us"].as_u64().unwrap());
    assert!(set["p99_us"].as_u64().unwrap() <= set["p999_us"].as_u64().unwrap());
    // The node's CPU, read from /v1/stats before and after, per request.
    assert!(set["server_cpu_us"].as_f64().is_some_and(|us| us > 0.0), "{set}");

    // Preloaded, every GET hits.
    let get = bench(&[
        "--node",
        &node.addr,
        "--requests",
        "1000",
        "--connections",
        "3",
        "--pipeline",
        "2",
        "--workload",
        "get",
        "--keyspace",
        "500",
        "--preload",
        "--collection",
        "preloaded",
    ]);
    assert_eq!(get["errors"], 0, "{get}");
    assert_eq!(get["misses"], 0, "{get}");
    assert_eq!(get["requests"], 1000, "{get}");
    assert!(get["preload_seconds"].as_f64().is_some(), "{get}");
}

#[test]
fn bench_presents_its_token_and_reports_a_refused_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.token");
    let token = "bench-token-0123456789abcdef0123456789";
    std::fs::write(&file, token).unwrap();
    let node = NodeProc::start(None, &["--admin-token-file", file.to_str().unwrap()]);
    let common =
        ["--node", &node.addr, "--requests", "500", "--connections", "2", "--pipeline", "8"];
    let set = bench(&[&common[..], &["--token", token]].concat());
    assert_eq!((set["errors"].as_u64(), set["requests"].as_u64()), (Some(0), Some(500)), "{set}");
    // A well-formed token the node never issued: the bench stops with the node's
    // refusal, not with 500 errors.
    let unknown = format!("dhrt_0123456789abcdef_{}", "A".repeat(43));
    let out = Command::new(bin())
        .arg("bench")
        .args(common)
        .args(["--token", &unknown, "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the token presented is unknown"), "{stderr}");
}

#[test]
fn bench_reports_a_node_that_is_not_there() {
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = Command::new(bin())
        .args(["bench", "--node", &free, "--requests", "10", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connection failed"), "{stderr}");
}

/// A fake Redis on 127.0.0.1: `+OK` to SET, a 100-byte bulk string to GET of a key it
/// was sent, nil otherwise. One thread per connection.
fn fake_redis() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let known = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    // Every INFO says one more second of CPU was used (half system, half user).
    let infos = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    std::thread::spawn(move || {
        for socket in listener.incoming().map_while(Result::ok) {
            let known = known.clone();
            let infos = infos.clone();
            std::thread::spawn(move || {
                let mut out = socket.try_clone().unwrap();
                let mut lines = BufReader::new(socket);
                let mut line = String::new();
                let mut read = |line: &mut String| {
                    line.clear();
                    matches!(lines.read_line(line), Ok(n) if n > 0)
                };
                while read(&mut line) {
                    let argc: usize = line.trim_start_matches('*').trim().parse().unwrap();
                    let mut words = Vec::new();
                    for _ in 0..argc {
                        assert!(read(&mut line)); // $len
                        assert!(read(&mut line));
                        words.push(line.trim_end().to_string());
                    }
                    let reply: Vec<u8> = match words[0].as_str() {
                        "SET" => {
                            known.lock().unwrap().insert(words[1].clone());
                            b"+OK\r\n".to_vec()
                        }
                        "GET" if known.lock().unwrap().contains(&words[1]) => {
                            format!("$100\r\n{}\r\n", "v".repeat(100)).into_bytes()
                        }
                        "GET" => b"$-1\r\n".to_vec(),
                        "INFO" => {
                            let n = infos.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let half = n as f64 / 2.0;
                            let text = format!(
                                "# CPU\r\nused_cpu_sys:{half:.6}\r\nused_cpu_user:{half:.6}\r\n"
                            );
                            format!("${}\r\n{text}\r\n", text.len()).into_bytes()
                        }
                        _ => b"-ERR unknown command\r\n".to_vec(),
                    };
                    if out.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn bench_drives_a_redis_server() {
    let redis = fake_redis();
    let set = bench(&[
        "--target",
        "redis",
        "--redis",
        &redis,
        "--requests",
        "2000",
        "--connections",
        "4",
        "--pipeline",
        "16",
    ]);
    assert_eq!(set["target"], "redis");
    assert_eq!(set["errors"], 0, "{set}");
    assert_eq!(set["requests"], 2000, "{set}");
    // INFO cpu before and after: one second of CPU over 2000 requests.
    assert_eq!(set["server_cpu_us"].as_f64(), Some(500.0), "{set}");
    assert!(set["ops_per_sec"].as_f64().unwrap() > 0.0, "{set}");

    let get = bench(&[
        "--target",
        "redis",
        "--redis",
        &redis,
        "--requests",
        "500",
        "--connections",
        "2",
        "--workload",
        "get",
        "--keyspace",
        "300",
        "--preload",
    ]);
    assert_eq!((get["errors"].as_u64(), get["misses"].as_u64()), (Some(0), Some(0)), "{get}");
    // Without a preload, GETs of a fresh keyspace miss, and are counted.
    let miss = bench(&[
        "--target",
        "redis",
        "--redis",
        &redis,
        "--requests",
        "50",
        "--connections",
        "1",
        "--workload",
        "get",
        "--key-size",
        "20",
    ]);
    assert_eq!(miss["misses"], 50, "{miss}");
    assert_eq!(miss["errors"], 0, "{miss}");
}
