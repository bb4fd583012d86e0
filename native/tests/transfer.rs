//! `dhrt export` and `dhrt import` against real node processes: an export imported into
//! a second, empty node gives back every key and value byte for byte (binary keys and
//! values, an empty value, a megabyte value, several scan pages and batches), from a
//! file or stdin, into the same or another collection; a malformed line stops the import
//! at that line (or is skipped with --skip-bad); an empty collection exports nothing.

mod common;

use bytes::Bytes;
use common::{bin, run_bounded, NodeProc, Ran};
use dhrt::client::Client;
use dhrt_core::proto::client::Consistency;
use std::{collections::BTreeMap, process::Command, time::Duration};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

/// `dhrt ARGS --node NODE` with `stdin`, bounded in time.
fn dhrt(node: &NodeProc, args: &[&str], stdin: &[u8]) -> Ran {
    let mut cmd = Command::new(bin());
    cmd.args(args).args(["--node", &node.addr]).env_remove("DHRT_NODE");
    run_bounded(cmd, stdin, Duration::from_secs(120))
}

fn ok(ran: Ran) -> Ran {
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    ran
}

/// Every live entry of `collection` on `node`.
fn contents(node: &NodeProc, collection: &str) -> BTreeMap<Bytes, Bytes> {
    runtime().block_on(async {
        let client = Client::connect(&node.addr).await.unwrap();
        let mut all = BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = client.scan(collection, cursor, None, 1000, Consistency::All).await.unwrap();
            all.extend(page.items);
            cursor = page.cursor;
            if cursor.is_none() {
                return all;
            }
        }
    })
}

fn fill(node: &NodeProc, collection: &str, items: Vec<(Vec<u8>, Vec<u8>)>) {
    runtime().block_on(async {
        let client = Client::connect(&node.addr).await.unwrap();
        for chunk in items.chunks(200) {
            let chunk = chunk
                .iter()
                .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
                .collect();
            client.set_many(collection, chunk, Consistency::All, None).await.unwrap();
        }
    });
}

/// 2,501 text entries (three scan pages) with an empty value; binary keys and values,
/// a 1 MiB value that is not UTF-8.
fn sample(node: &NodeProc) {
    let mut users: Vec<(Vec<u8>, Vec<u8>)> =
        (0..2500).map(|i| (format!("user-{i}").into(), format!("value {i}").into())).collect();
    users.push((b"empty".to_vec(), Vec::new()));
    fill(node, "users", users);
    let every_byte: Vec<u8> = (0..=255).collect();
    let big: Vec<u8> =
        (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fill(
        node,
        "bin",
        vec![
            (b"\xff\x00\x01".to_vec(), b"".to_vec()),
            (b"tab\tnew\nline \"q\"".to_vec(), every_byte.clone()),
            ("ключ 🔑".as_bytes().to_vec(), "значение".as_bytes().to_vec()),
            (every_byte.clone(), b"\r\n".to_vec()),
            (b"big".to_vec(), big),
        ],
    );
}

#[test]
fn export_then_import_into_an_empty_node_gives_back_every_byte() {
    let _serial = common::serial();
    let source = NodeProc::start(None, &[]);
    let target = NodeProc::start(None, &[]);
    sample(&source);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.jsonl");
    let file = file.to_str().unwrap();

    let ran = ok(dhrt(&source, &["export", "users", "bin", "--out", file], b""));
    assert!(ran.stdout.is_empty(), "the lines went to the file");
    assert!(
        ran.stderr.contains("exported 2506 entries") && ran.stderr.contains("from 2 collections"),
        "{}",
        ran.stderr
    );
    assert!(!dir.path().join("backup.jsonl.partial").exists());
    let lines = std::fs::read_to_string(file).unwrap();
    assert_eq!(lines.lines().count(), 2506);
    assert!(lines.contains("{\"collection\":\"users\",\"key\":\"empty\",\"value\":\"\"}\n"));

    let ran = ok(dhrt(&target, &["import", file, "--batch", "300"], b""));
    assert!(ran.stderr.contains("imported 2506 entries"), "{}", ran.stderr);
    for collection in ["users", "bin"] {
        let (want, got) = (contents(&source, collection), contents(&target, collection));
        assert_eq!(want.len(), if collection == "users" { 2501 } else { 5 });
        assert!(want == got, "{collection} differs after the round trip");
    }

    // --all finds both collections; stdout and the file hold the same lines.
    let all = ok(dhrt(&source, &["export", "--all"], b""));
    let sorted = |text: &[u8]| {
        let mut v: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        v.sort();
        v
    };
    assert!(sorted(&all.stdout) == sorted(lines.as_bytes()), "{}", all.stderr);

    // From stdin, into another collection.
    let users = ok(dhrt(&source, &["export", "users", "--out", "-"], b""));
    ok(dhrt(&target, &["import", "users-copy", "-"], &users.stdout));
    assert!(contents(&target, "users-copy") == contents(&source, "users"));
}

#[test]
fn a_malformed_line_stops_the_import_there() {
    let _serial = common::serial();
    let node = NodeProc::start(None, &[]);
    let good = |i: u32| format!("{{\"collection\":\"m\",\"key\":\"k{i}\",\"value\":\"v{i}\"}}\n");
    let mut input: String = (1..=5).map(good).collect();
    input.push_str("{\"collection\":\"m\",\"key\":\"k6\"\n");
    input.push_str(&good(7));

    let ran = dhrt(&node, &["import", "-", "--batch", "2"], input.as_bytes());
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("error: line 6: not a dhrt export line"), "{}", ran.stderr);
    assert!(ran.stderr.contains("imported 5 entries"), "{}", ran.stderr);
    let m = contents(&node, "m");
    let keys: Vec<&[u8]> = m.keys().map(|k| &k[..]).collect();
    assert_eq!(keys, [&b"k1"[..], b"k2", b"k3", b"k4", b"k5"], "nothing after line 6");

    let ran = ok(dhrt(&node, &["import", "skipped", "-", "--skip-bad"], input.as_bytes()));
    assert!(ran.stderr.contains("line 6 skipped: "), "{}", ran.stderr);
    assert!(ran.stderr.contains("imported 6 entries"), "{}", ran.stderr);
    assert!(ran.stderr.contains("1 bad line skipped"), "{}", ran.stderr);
    assert_eq!(contents(&node, "skipped").len(), 6);
}

#[test]
fn an_empty_collection_exports_nothing() {
    let _serial = common::serial();
    let node = NodeProc::start(None, &[]);
    let ran = ok(dhrt(&node, &["export", "nothing"], b""));
    assert!(ran.stdout.is_empty());
    assert!(
        ran.stderr.contains("exported 0 entries (0 bytes of keys and values) from 1 collection"),
        "{}",
        ran.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.jsonl");
    ok(dhrt(&node, &["export", "nothing", "--out", file.to_str().unwrap()], b""));
    assert_eq!(std::fs::read(&file).unwrap(), b"");
    let ran = ok(dhrt(&node, &["import", file.to_str().unwrap()], b""));
    assert!(ran.stderr.contains("imported 0 entries"), "{}", ran.stderr);
}

#[test]
fn a_bad_collection_name_is_refused_before_anything_is_written() {
    let node = NodeProc::start(None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.jsonl");
    let ran = dhrt(&node, &["export", "no/such", "--out", file.to_str().unwrap()], b"");
    assert_eq!(ran.code, Some(1));
    assert!(ran.stderr.contains("invalid collection name"), "{}", ran.stderr);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn export_all_finds_collections_held_by_any_member() {
    let _serial = common::serial();
    // One replica per key: a one-key collection lives on one of the two nodes only.
    let first = NodeProc::start(None, &["--replicas", "1"]);
    let second = NodeProc::start(None, &["--replicas", "1", "--join", &first.addr]);
    let rt = runtime();
    for node in [&first, &second] {
        let alive = common::wait_until(Duration::from_secs(60), || {
            rt.block_on(async {
                let Ok(c) = Client::connect(&node.addr).await else { return false };
                c.stats(None).await.is_ok_and(|s| s.members.alive == 2 && s.status == "alive")
            })
        });
        assert!(alive, "{} does not see two alive members:\n{}", node.addr, node.log());
    }
    for i in 0..30 {
        fill(&first, &format!("c{i:02}"), vec![(b"only".to_vec(), format!("{i}").into_bytes())]);
    }
    let held = |node: &NodeProc| {
        rt.block_on(async {
            let c = Client::connect(&node.addr).await.unwrap();
            c.stats(Some(&node.addr)).await.unwrap().collections
        })
    };
    // (Each node holds all 30 with probability about 2^-29.)
    let (a, b) = (held(&first), held(&second));
    assert!(a < 30 && b < 30, "the collections are spread: {a} and {b}");
    let ran = ok(dhrt(&first, &["export", "--all"], b""));
    assert!(ran.stderr.contains("exported 30 entries"), "{}", ran.stderr);
    assert!(ran.stderr.contains("from 30 collections"), "{}", ran.stderr);
}
