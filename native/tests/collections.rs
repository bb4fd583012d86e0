//! Collections and their settings against real node processes: `dhrt collection
//! create|alter|show|list|drop` and `/v1/collections`; settings written through one node
//! of a cluster apply on another; a quota refuses new keys with `quota_exceeded` (507);
//! only an admin token may change settings, and a scoped token lists only what it covers.

mod common;

use bytes::Bytes;
use common::{http::http, run_bounded, wait_until, NodeProc};
use dhrt::client::{conn::Conn, Client, ConnectOptions};
use dhrt_core::{
    catalogue::CollectionSettings,
    proto::client::{Consistency, Op, Reply},
};
use serde_json::{json, Value};
use std::{process::Command, time::Duration};

const WAIT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

/// Runs `dhrt ARGS --node ADDR`; (exit code, stdout, stderr).
fn cli(addr: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).args(["--node", addr]).env_remove("DHRT_TOKEN");
    let ran = run_bounded(cmd, b"", WAIT);
    (ran.code.unwrap_or(-1), String::from_utf8_lossy(&ran.stdout).into_owned(), ran.stderr)
}

#[test]
fn the_cli_creates_alters_shows_lists_and_drops_a_collection() {
    let node = NodeProc::start(None, &[]);
    let addr = format!("127.0.0.1:{}", node.port());
    let (code, out, err) = cli(
        &addr,
        &["collection", "create", "sessions", "--ttl", "3600", "-c", "one", "--max-keys", "2"],
    );
    assert_eq!(code, 0, "{err}");
    for line in ["defined:     yes", "consistency: one", "ttl:         3600 s", "max keys:    2"] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    let (code, _, err) = cli(&addr, &["collection", "create", "sessions"]);
    assert_ne!(code, 0);
    assert!(err.contains("has settings already"), "{err}");
    for key in ["a", "b"] {
        assert_eq!(cli(&addr, &["set", "sessions", key, "v"]).0, 0);
    }
    let (code, _, err) = cli(&addr, &["set", "sessions", "c", "v"]);
    assert_ne!(code, 0, "a third key past the quota");
    assert!(err.contains("quota is 2"), "{err}");
    let (code, out, err) =
        cli(&addr, &["collection", "alter", "sessions", "--max-keys", "default"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("max keys:    default"), "{out}");
    assert_eq!(cli(&addr, &["set", "sessions", "c", "v"]).0, 0, "the quota is gone");
    let (code, out, _) = cli(&addr, &["collection", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("sessions\thashed") && out.contains("keys=3"), "{out}");
    let (code, _, err) = cli(&addr, &["collection", "alter", "sessions"]);
    assert_ne!(code, 0);
    assert!(err.contains("nothing to change"), "{err}");
    let (code, _, err) = cli(&addr, &["collection", "drop", "sessions"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("3 keys deleted"), "{err}");
    let (_, out, _) = cli(&addr, &["collection", "show", "sessions"]);
    assert!(out.contains("defined:     no"), "the settings went with the drop: {out}");
    let (code, _, err) = cli(&addr, &["collection", "show", "nothing-here"]);
    assert_ne!(code, 0);
    assert!(err.contains("there is no collection"), "{err}");
}

#[test]
fn the_http_routes_give_change_and_describe_settings() {
    let node = NodeProc::start(None, &["--label", "role=db"]);
    let addr = format!("127.0.0.1:{}", node.port());
    runtime().block_on(async {
        let body = r#"{"consistency": "all", "ttl_ms": 60000, "max_bytes": 1000}"#;
        let created = http(&addr, "PUT", "/v1/collections/logs", None, body).await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(created.body["settings"]["consistency"], json!("all"));
        assert_eq!(created.body["settings"]["max_bytes"], json!(1000));
        let again = http(&addr, "PUT", "/v1/collections/logs", None, "{}").await;
        assert_eq!((again.status, again.body["error"]["code"].clone()), (409, json!("conflict")));
        for bad in [
            r#"{"compression": 2}"#,
            r#"{"replicas": 0}"#,
            r#"{"replicas": "two"}"#,
            r#"{"select": "disk=ssd"}"#,
            r#"{"select": {"a b": "c"}}"#,
            r#"{"zone_label": ""}"#,
        ] {
            let refused = http(&addr, "PATCH", "/v1/collections/logs", None, bad).await;
            assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
        }
        // A selector no node satisfies is refused: the collection would live nowhere.
        let body = r#"{"select": {"disk": "ssd"}}"#;
        let nowhere = http(&addr, "PATCH", "/v1/collections/logs", None, body).await;
        assert_eq!(nowhere.status, 400, "{}", nowhere.body);
        let message = nowhere.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("no node carries disk=ssd"), "{message}");
        // A layout change is answered at once; the move runs after it.
        let body = r#"{"replicas": 1, "select": {"role": "db"}, "zone_label": "zone"}"#;
        let placed = http(&addr, "PATCH", "/v1/collections/logs", None, body).await;
        assert_eq!(placed.status, 200, "{}", placed.body);
        assert_eq!(placed.body["settings"]["select"], json!({"role": "db"}));
        assert_eq!(placed.body["settings"]["zone_label"], json!("zone"));
        let mut shown = placed.body;
        for _ in 0..300 {
            if shown["layout"]["moving"].is_null() && shown["replicas"] == json!(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            shown = http(&addr, "GET", "/v1/collections/logs", None, "").await.body;
        }
        assert_eq!(shown["layout"]["current"]["replicas"], json!(1), "the move ended: {shown}");
        assert_eq!(shown["layout"]["current"]["zone_label"], json!("zone"));
        let back = r#"{"replicas": null, "select": null, "zone_label": null}"#;
        let reset = http(&addr, "PATCH", "/v1/collections/logs", None, back).await;
        assert_eq!(reset.status, 200, "{}", reset.body);
        assert_eq!(reset.body["settings"]["select"], json!({}));
        let mut shown = reset.body;
        for _ in 0..300 {
            if shown["layout"]["moving"].is_null()
                && shown["layout"]["current"]["replicas"].is_null()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            shown = http(&addr, "GET", "/v1/collections/logs", None, "").await.body;
        }
        assert_eq!(shown["replicas"], json!(3), "back on the cluster's layout: {shown}");
        let zero = http(&addr, "PATCH", "/v1/collections/logs", None, r#"{"max_keys": 0}"#).await;
        assert_eq!(zero.status, 400, "{}", zero.body);
        let reserved = http(&addr, "PUT", "/v1/collections/_dhrt.tokens", None, "{}").await;
        assert_eq!(reserved.status, 403, "{}", reserved.body);
        // A value past the byte quota is refused, with the quota's own code.
        let big = "x".repeat(2000);
        let put = http(&addr, "PUT", "/v1/collections/logs/keys/k", None, &big).await;
        assert_eq!(put.status, 507, "{}", put.body);
        assert_eq!(put.body["error"]["code"], json!("quota_exceeded"));
        let ok = http(&addr, "PUT", "/v1/collections/logs/keys/k", None, "small").await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        let patched =
            http(&addr, "PATCH", "/v1/collections/logs", None, r#"{"ttl_ms": null}"#).await;
        assert_eq!(patched.status, 200, "{}", patched.body);
        assert_eq!(patched.body["settings"]["ttl_ms"], Value::Null);
        assert_eq!(patched.body["settings"]["consistency"], json!("all"), "left as it was");
        let shown = http(&addr, "GET", "/v1/collections/logs", None, "").await;
        assert_eq!(shown.body["keys"], json!(1));
        let listed = http(&addr, "GET", "/v1/collections", None, "").await;
        let names: Vec<&str> = listed.body["collections"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(names, ["logs"]);
        let gone = http(&addr, "DELETE", "/v1/collections/logs", None, "").await;
        assert_eq!(gone.status, 200, "{}", gone.body);
        let shown = http(&addr, "GET", "/v1/collections/logs", None, "").await;
        assert_eq!(shown.body["defined"], json!(false));
    });
}

#[test]
fn settings_made_through_one_node_apply_on_another() {
    let _serial = common::serial();
    let a = NodeProc::start(None, &["--replicas", "3"]);
    let a_addr = format!("127.0.0.1:{}", a.port());
    let b = NodeProc::start(None, &["--replicas", "3", "--join", &a_addr]);
    let b_addr = format!("127.0.0.1:{}", b.port());
    runtime().block_on(async {
        let client_a = Client::connect(&a_addr).await.expect("connect to a");
        let two = wait_until(Duration::from_secs(30), || {
            std::thread::sleep(Duration::from_millis(200));
            [&a_addr, &b_addr]
                .iter()
                .all(|addr| cli(addr, &["ring"]).1.matches("alive").count() >= 2)
        });
        assert!(two, "the two nodes form a ring");
        let settings = CollectionSettings { ttl_ms: Some(30_000), ..Default::default() };
        client_a.collection_create("cache", settings).await.expect("created through a");
        let client_b = Client::connect(&b_addr).await.expect("connect to b");
        let ts = client_b
            .set(
                "cache",
                Bytes::from_static(b"k"),
                Bytes::from_static(b"v"),
                Consistency::All,
                None,
            )
            .await
            .expect("written through b");
        let conn = Conn::open(&a_addr, WAIT, &ConnectOptions::default()).await.expect("a conn");
        let get = Op::Get {
            collection: "cache".into(),
            key: Bytes::from_static(b"k"),
            consistency: Consistency::All,
        };
        match conn.call(get, WAIT).await.expect("an answer") {
            Reply::Value { expires, .. } => {
                assert_eq!(expires, Some(ts.physical_ms() + 30_000), "b applied the TTL")
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn only_admins_change_settings_and_a_scoped_token_lists_what_it_covers() {
    let admin = common::admin_token();
    let file = admin.path.to_str().expect("a UTF-8 path");
    let node = NodeProc::start(None, &["--admin-token-file", file]);
    let addr = format!("127.0.0.1:{}", node.port());
    let root = Some(admin.token.as_str());
    runtime().block_on(async {
        for name in ["logs.web", "users"] {
            let made = http(&addr, "PUT", &format!("/v1/collections/{name}"), root, "{}").await;
            assert_eq!(made.status, 201, "{}", made.body);
        }
        let body = r#"{"role": "write", "collections": ["logs.*"]}"#;
        let token = http(&addr, "POST", "/v1/tokens", root, body).await;
        let writer = token.body["token"].as_str().expect("a token").to_string();
        let writer = Some(writer.as_str());
        let put = http(&addr, "PUT", "/v1/collections/logs.db", writer, "{}").await;
        assert_eq!(put.status, 403, "{}", put.body);
        let patch =
            http(&addr, "PATCH", "/v1/collections/logs.web", writer, r#"{"ttl_ms": 5}"#).await;
        assert_eq!(patch.status, 403, "{}", patch.body);
        let none = http(&addr, "GET", "/v1/collections", None, "").await;
        assert_eq!(none.status, 401, "{}", none.body);
        let listed = http(&addr, "GET", "/v1/collections", writer, "").await;
        let names: Vec<&str> = listed.body["collections"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(names, ["logs.web"], "only what the token covers");
        let hidden = http(&addr, "GET", "/v1/collections/users", writer, "").await;
        assert_eq!(hidden.status, 403, "{}", hidden.body);
        let all = http(&addr, "GET", "/v1/collections", root, "").await;
        assert_eq!(all.body["collections"].as_array().map(Vec::len), Some(2));
    });
}

/// The HTTP stats of `addr`: entries `collection` holds there (tombstones included).
fn entries_on(addr: &str, collection: &str) -> u64 {
    let stats = runtime().block_on(http(addr, "GET", "/v1/stats", None, "")).body;
    (stats["collections"].as_array().into_iter().flatten())
        .find(|c| c["name"] == collection)
        .and_then(|c| c["entries"].as_u64())
        .unwrap_or(0)
}

#[test]
fn an_alter_moves_a_collection_onto_the_nodes_it_selects_while_it_serves() {
    let _serial = common::serial();
    let a = NodeProc::start(None, &["--label", "disk=ssd"]);
    let a_addr = format!("127.0.0.1:{}", a.port());
    let b = NodeProc::start(None, &["--label", "disk=ssd", "--join", &a_addr]);
    let b_addr = format!("127.0.0.1:{}", b.port());
    let c = NodeProc::start(None, &["--label", "disk=hdd", "--join", &a_addr]);
    let c_addr = format!("127.0.0.1:{}", c.port());
    let three = wait_until(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(200));
        [&a_addr, &b_addr, &c_addr]
            .iter()
            .all(|addr| cli(addr, &["ring"]).1.matches("alive").count() >= 3)
    });
    assert!(three, "the three nodes form a ring");
    // Written with three replicas: every node holds every key.
    for k in 0..30 {
        let (code, _, err) = cli(&a_addr, &["set", "hot", &format!("k{k}"), &format!("v{k}")]);
        assert_eq!(code, 0, "{err}");
    }
    assert!(wait_until(WAIT, || entries_on(&c_addr, "hot") == 30), "node c holds every key");
    let (code, out, err) =
        cli(&b_addr, &["collection", "alter", "hot", "--replicas", "2", "--select", "disk=ssd"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replicas:    3"), "the layout in use until the move: {out}");
    // It serves throughout: every key reads back at quorum through the hdd node, and
    // new keys are written, while the move runs.
    let mut k = 30;
    let moved = wait_until(Duration::from_secs(60), || {
        for r in [0, k / 2, k - 1] {
            let (code, out, err) = cli(&c_addr, &["get", "hot", &format!("k{r}")]);
            assert!(
                code == 0 && out.contains(&format!("v{r}")),
                "k{r} during the move: {out}{err}"
            );
        }
        let (code, _, err) = cli(&a_addr, &["set", "hot", &format!("k{k}"), &format!("v{k}")]);
        if code == 0 {
            k += 1;
        } else {
            // A write may be refused while an owner under either layout cannot answer.
            assert!(err.contains("unavailable") || err.contains("timed out"), "{err}");
        }
        let (_, out, _) = cli(&a_addr, &["collection", "show", "hot"]);
        out.contains("moving:      no") && out.contains("replicas:    2")
    });
    let (_, out, _) = cli(&a_addr, &["collection", "show", "hot"]);
    assert!(moved, "the move completes: {out}");
    assert!(out.contains("select:      disk=ssd"), "{out}");
    // Cleaning drops the hdd node's copies once the ssd nodes hold them.
    let cleaned = wait_until(Duration::from_secs(90), || entries_on(&c_addr, "hot") == 0);
    assert!(cleaned, "node c still holds {} entries of hot", entries_on(&c_addr, "hot"));
    for r in 0..k {
        let (code, out, err) = cli(&c_addr, &["get", "hot", &format!("k{r}"), "-c", "all"]);
        assert!(code == 0 && out.contains(&format!("v{r}")), "k{r} after the move: {out}{err}");
    }
    assert_eq!(entries_on(&a_addr, "hot") + entries_on(&b_addr, "hot"), 2 * k as u64);
}
