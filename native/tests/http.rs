//! The HTTP API against real in-process nodes (port 0), driven by a plain HTTP/1.1
//! client: every route, its statuses, bodies and error bodies.

use bytes::Bytes;
use dhrt::server::{bind, driver::Ephemeral, node_config, random_u64, start, ServeOptions, Server};
use dhrt_core::{
    clock::Timestamp, node::Node, proto::client::Consistency, store::MemStore, NodeId,
};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

/// Largest value the test nodes accept.
const MAX_VALUE: usize = 4096;

/// An answer: status, headers, body.
struct Resp {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// Asserts the status and the JSON error body; answers the message.
    fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{:?}", String::from_utf8_lossy(&self.body));
        let body = self.json();
        let error = &body["error"];
        assert_eq!(error["code"], code, "{body}");
        assert!(error.get("acked").is_some(), "acked is always present: {body}");
        let message = error["message"].as_str().expect("a message").to_string();
        assert!(!message.is_empty());
        message
    }
}

/// One node under test and the address it serves.
struct TestNode {
    server: Server,
    addr: SocketAddr,
}

fn options(replicas: usize) -> ServeOptions {
    ServeOptions { port: 0, replicas, max_value_bytes: MAX_VALUE, ..ServeOptions::default() }
}

impl TestNode {
    async fn start(opts: ServeOptions, join: Vec<String>) -> TestNode {
        let bound = bind(&opts).await.expect("bind port 0");
        let mut config = node_config(&opts, NodeId(random_u64()), &bound.advertise);
        config.request_timeout_ms = 1000;
        let node = Node::new(config, MemStore::new()).expect("a node");
        let server = start(bound, node, Ephemeral, &opts, join).expect("start");
        let addr = server.local_addr;
        let node = TestNode { server, addr };
        node.wait_healthy().await;
        node
    }

    async fn single() -> TestNode {
        TestNode::start(options(1), Vec::new()).await
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.get("/v1/health").await.status != 200 {
            assert!(Instant::now() < deadline, "the node never became healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn send(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Resp {
        let stream = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .body(Full::new(body.into()))
            .expect("a request");
        let resp = sender.send_request(req).await.expect("an answer");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("the body").to_bytes();
        Resp { status, headers, body }
    }

    async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, Bytes::new()).await
    }

    /// `PUT path` with body `x` and `x-dhrt-seen: seen`.
    async fn send_seen(&self, path: &str, seen: dhrt_core::clock::Timestamp) -> Resp {
        let stream = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method("PUT")
            .uri(path)
            .header("host", self.addr.to_string())
            .header("x-dhrt-seen", seen.0.to_string())
            .body(Full::new(Bytes::from_static(b"x")))
            .expect("a request");
        let resp = sender.send_request(req).await.expect("an answer");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("the body").to_bytes();
        Resp { status, headers, body }
    }

    async fn post(&self, path: &str, body: impl Into<Bytes>) -> Resp {
        self.send("POST", path, body).await
    }

    async fn put(&self, path: &str, body: impl Into<Bytes>) -> Resp {
        self.send("PUT", path, body).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, Bytes::new()).await
    }

    async fn ok_json(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Value {
        let r = self.send(method, path, body).await;
        assert_eq!(r.status, 200, "{method} {path}: {:?}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    async fn stop(mut self) {
        self.server.stop().await;
    }
}

/// Percent-encodes every byte (a key as it goes in a path).
fn pct(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn keys_of(items: &Value) -> BTreeSet<String> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|i| i["key"].as_str().expect("a text key").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dhrt_db_routes_set_get_list_and_delete() {
    let n = TestNode::single().await;
    assert_eq!(
        n.ok_json("POST", "/hello/world", "").await,
        json!({"key": "hello", "value": "world"})
    );
    assert_eq!(n.ok_json("GET", "/hello", "").await, json!({"key": "hello", "value": "world"}));
    // Percent-decoding: a space and a slash inside a key or value.
    assert_eq!(
        n.ok_json("POST", "/a%20key/a%2Fvalue", "").await,
        json!({"key": "a key", "value": "a/value"})
    );
    assert_eq!(n.ok_json("GET", "/default/a%20key", "").await["value"], "a/value");

    n.ok_json("POST", "/users/alice/admin", "").await;
    // A request body, when present, is the value.
    assert_eq!(
        n.ok_json("POST", "/users/bob/ignored", "the builder").await,
        json!({"key": "bob", "value": "the builder"})
    );
    assert_eq!(
        n.ok_json("GET", "/users/bob", "").await,
        json!({"key": "bob", "value": "the builder"})
    );
    let list = n.ok_json("GET", "/users", "").await;
    assert_eq!(keys_of(&list), BTreeSet::from(["alice".into(), "bob".into()]));
    assert!(list.as_array().unwrap().contains(&json!({"key": "alice", "value": "admin"})));

    assert_eq!(n.ok_json("DELETE", "/users/alice", "").await, json!({"key": "alice"}));
    let msg = n.get("/users/alice").await.error(404, "not_found");
    assert!(msg.contains("alice") && msg.contains("users"), "{msg}");
    // Deleting by collection and key is idempotent.
    assert_eq!(n.ok_json("DELETE", "/users/alice", "").await, json!({"key": "alice"}));

    let stats = n.ok_json("GET", "/", "").await;
    assert!(stats["node"].is_string(), "{stats}");
    assert_eq!(stats["status"], "alive");
    assert!(stats["keys"].as_u64().unwrap() >= 3, "{stats}");
    let names: Vec<&str> = stats["collections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"users") && names.contains(&"default"), "{stats}");
    assert!(stats["requests"]["set"].as_u64().unwrap() >= 3, "{stats}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_a_default_key_first_then_a_collection() {
    let n = TestNode::single().await;
    n.ok_json("POST", "/users/alice/admin", "").await;
    assert_eq!(keys_of(&n.ok_json("GET", "/users", "").await), BTreeSet::from(["alice".into()]));

    // A key "users" in the default collection now shadows the collection...
    n.ok_json("POST", "/users/shadow", "").await;
    assert_eq!(n.ok_json("GET", "/users", "").await, json!({"key": "users", "value": "shadow"}));
    // ...and DELETE /users removes what GET /users shows: the key.
    assert_eq!(n.ok_json("DELETE", "/users", "").await, json!({"key": "users"}));
    assert_eq!(n.get("/default/users").await.status, 404);
    assert_eq!(n.ok_json("GET", "/users/alice", "").await["value"], "admin");

    // Now the name is the collection again: DELETE drops it.
    assert_eq!(keys_of(&n.ok_json("GET", "/users", "").await), BTreeSet::from(["alice".into()]));
    assert_eq!(
        n.ok_json("DELETE", "/users", "").await,
        json!({"collection": "users", "deleted": 1})
    );
    assert_eq!(n.get("/users/alice").await.status, 404);

    // Neither a key nor a collection: 404 for both.
    let msg = n.get("/users").await.error(404, "not_found");
    assert!(msg.contains("no key \"users\"") && msg.contains("no collection"), "{msg}");
    n.delete("/users").await.error(404, "not_found");
    // Not even a valid collection name: still only a missing key.
    n.get("/no%20such").await.error(404, "not_found");

    // A cursor always means the collection.
    for i in 0..5 {
        n.ok_json("POST", &format!("/pages/k{i}/v{i}"), "").await;
    }
    let first = n.get("/pages?limit=2").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json().as_array().unwrap().len(), 2);
    let mut seen = keys_of(&first.json());
    let mut cursor = first.header("x-dhrt-cursor");
    while let Some(c) = cursor {
        let page = n.get(&format!("/pages?limit=2&cursor={c}")).await;
        assert_eq!(page.status, 200);
        seen.extend(keys_of(&page.json()));
        cursor = page.header("x-dhrt-cursor");
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_keys_and_values_round_trip_through_v1() {
    let n = TestNode::single().await;
    let key: &[u8] = b"bin/\x00\xff key";
    let value: Vec<u8> = (0..=255u8).collect();
    let path = format!("/v1/collections/files/keys/{}", pct(key));
    let put = n.put(&path, value.clone()).await;
    assert_eq!(put.status, 200);
    let ts = put.json()["ts"].as_str().expect("ts as a decimal string").to_string();
    assert!(ts.parse::<u64>().is_ok());
    assert_eq!(put.header("x-dhrt-ts").as_deref(), Some(ts.as_str()));

    let got = n.get(&path).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.as_ref(), value.as_slice());
    assert_eq!(got.header("content-type").as_deref(), Some("application/octet-stream"));
    assert_eq!(got.header("x-dhrt-ts").as_deref(), Some(ts.as_str()));

    // JSON routes mark what is not text.
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let page = n.ok_json("GET", "/v1/collections/files/keys", "").await;
    assert_eq!(
        page,
        json!({"items": [{"key": b64(key), "key_encoding": "base64", "value": b64(&value), "encoding": "base64"}], "cursor": null})
    );
    let legacy = n.ok_json("GET", &format!("/files/{}", pct(key)), "").await;
    assert_eq!(legacy["encoding"], "base64");
    assert_eq!(legacy["value"], b64(&value));

    // Text stays text unless base64 is asked for.
    n.put("/v1/collections/files/keys/plain", "text").await;
    let page = n.ok_json("GET", "/v1/collections/files/keys?prefix=plain", "").await;
    assert_eq!(page["items"], json!([{"key": "plain", "value": "text"}]));
    let page =
        n.ok_json("GET", "/v1/collections/files/keys?prefix=plain&encoding=base64", "").await;
    assert_eq!(
        page["items"],
        json!([{"key": "cGxhaW4=", "key_encoding": "base64", "value": "dGV4dA==", "encoding": "base64"}])
    );

    // Empty values are values; deletes answer a timestamp.
    assert_eq!(n.put("/v1/collections/files/keys/empty", "").await.status, 200);
    let empty = n.get("/v1/collections/files/keys/empty").await;
    assert_eq!((empty.status, empty.body.len()), (200, 0));
    let del = n.delete(&path).await;
    assert_eq!(del.status, 200);
    assert!(del.json()["ts"].as_str().unwrap().parse::<u64>().unwrap() > ts.parse().unwrap());
    n.get(&path).await.error(404, "not_found");
    assert_eq!(n.delete(&path).await.status, 200, "deletes are idempotent");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_scan_pages_follow_the_cursor_and_prefix() {
    let n = TestNode::single().await;
    let items: Vec<Value> =
        (0..25).map(|i| json!({"key": format!("k{i:02}"), "value": format!("v{i}")})).collect();
    let set = n
        .ok_json("POST", "/v1/collections/ordered.scan/batch", json!({"set": items}).to_string())
        .await;
    assert_eq!(set["written"], 25);
    n.put("/v1/collections/ordered.scan/keys/other", "x").await;

    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let path = match &cursor {
            None => "/v1/collections/ordered.scan/keys?limit=10".to_string(),
            Some(c) => format!("/v1/collections/ordered.scan/keys?limit=10&cursor={c}"),
        };
        let page = n.ok_json("GET", &path, "").await;
        let page_items = page["items"].as_array().unwrap();
        assert!(page_items.len() <= 10);
        keys.extend(page_items.iter().map(|i| i["key"].as_str().unwrap().to_string()));
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut want: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    want.push("other".into());
    assert_eq!(keys, want, "an ordered collection scans in key order, each key once");

    let page = n.ok_json("GET", "/v1/collections/ordered.scan/keys?prefix=k1", "").await;
    let keys: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, (10..20).map(|i| format!("k{i}")).collect::<Vec<_>>());
    n.get("/v1/collections/ordered.scan/keys?cursor=!!").await.error(400, "invalid_input");
    n.get("/v1/collections/ordered.scan/keys?cursor=AAAA").await.error(400, "invalid_input");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_get_and_set_many() {
    let n = TestNode::single().await;
    let path = "/v1/collections/batch/batch";
    let body = json!({"set": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]});
    let set = n.ok_json("POST", path, body.to_string()).await;
    assert_eq!(set["written"], 2);
    assert!(set["ts"].as_str().unwrap().parse::<u64>().is_ok());
    let got = n.ok_json("POST", path, json!({"get": ["a", "zz", "b"]}).to_string()).await;
    assert_eq!(
        got,
        json!({"items": [{"key": "a", "value": "1"}, {"key": "zz", "value": null}, {"key": "b", "value": "2"}]})
    );

    // Base64 both ways.
    let body = json!({"encoding": "base64", "set": [{"key": "/w==", "value": "AAE="}]});
    n.ok_json("POST", path, body.to_string()).await;
    let got =
        n.ok_json("POST", path, json!({"encoding": "base64", "get": ["/w=="]}).to_string()).await;
    assert_eq!(
        got["items"],
        json!([{"key": "/w==", "key_encoding": "base64", "value": "AAE=", "encoding": "base64"}])
    );
    let raw = n.get(&format!("/v1/collections/batch/keys/{}", pct(b"\xff"))).await;
    assert_eq!(raw.body.as_ref(), b"\x00\x01");

    for (body, status, code) in [
        (json!({"get": ["a"], "set": []}).to_string(), 400, "invalid_input"),
        (json!({}).to_string(), 400, "invalid_input"),
        (json!({"get": []}).to_string(), 400, "invalid_input"),
        (json!({"get": ["a"], "extra": 1}).to_string(), 400, "invalid_input"),
        ("{not json".to_string(), 400, "invalid_input"),
        (json!({"encoding": "hex", "get": ["a"]}).to_string(), 400, "invalid_input"),
        (json!({"encoding": "base64", "get": ["***"]}).to_string(), 400, "invalid_input"),
        (json!({"get": ["k".repeat(70_000)]}).to_string(), 400, "invalid_input"),
        (json!({"get": vec!["k"; 1001]}).to_string(), 413, "too_large"),
        (
            json!({"set": [{"key": "big", "value": "x".repeat(MAX_VALUE + 1)}]}).to_string(),
            413,
            "too_large",
        ),
    ] {
        n.post(path, body).await.error(status, code);
    }
    let msg = n
        .post(&format!("{path}?ttl=5"), json!({"get": ["a"]}).to_string())
        .await
        .error(400, "invalid_input");
    assert!(msg.contains("ttl"), "{msg}");
    let msg = n
        .post(path, json!({"get": ["k".repeat(70_000)]}).to_string())
        .await
        .error(400, "invalid_input");
    assert!(msg.contains("65536"), "the key limit is named: {msg}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_with_a_ttl_expire() {
    let n = TestNode::single().await;
    let path = "/v1/collections/cache/keys/session";
    assert_eq!(n.put(&format!("{path}?ttl_ms=300"), "token").await.status, 200);
    assert_eq!(n.ok_json("POST", "/cache/legacy/v?ttl=1", "").await["value"], "v");
    n.put("/v1/collections/cache/keys/forever", "stays").await;
    assert_eq!(n.get(path).await.status, 200, "alive before its TTL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (a, b) = (n.get(path).await.status, n.get("/cache/legacy").await.status);
        if a == 404 && b == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the values never expired ({a}, {b})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n.get("/v1/collections/cache/keys/forever").await.status, 200);
    let page = n.ok_json("GET", "/v1/collections/cache/keys", "").await;
    assert_eq!(
        page["items"],
        json!([{"key": "forever", "value": "stays"}]),
        "expired keys are not listed"
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_with_a_json_error() {
    let n = TestNode::single().await;
    let key = "/v1/collections/c/keys/k";
    let msg = n.get(&format!("{key}?consistency=most")).await.error(400, "invalid_input");
    assert!(msg.contains("most") && msg.contains("quorum"), "{msg}");
    n.get("/c/k?consistency=2.0").await.error(400, "invalid_input");
    n.post("/k/v?consistency=", "").await.error(400, "invalid_input");
    // A number the replicas cannot meet is refused by the node, also as 400.
    n.put(&format!("{key}?consistency=0"), "v").await.error(400, "invalid_input");
    n.put(&format!("{key}?consistency=9"), "v").await.error(400, "invalid_input");
    // Numbers and names parse.
    for ok in ["one", "QUORUM", "all", "default", "1"] {
        assert_eq!(n.put(&format!("{key}?consistency={ok}"), "v").await.status, 200, "{ok}");
    }

    for ttl in ["abc", "-1", "0", "1.5", "99999999999999999999"] {
        let msg = n.put(&format!("{key}?ttl={ttl}"), "v").await.error(400, "invalid_input");
        assert!(msg.contains("ttl"), "{msg}");
    }
    n.put(&format!("{key}?ttl=1&ttl_ms=5"), "v").await.error(400, "invalid_input");
    n.put(&format!("{key}?ttl_ms=x"), "v").await.error(400, "invalid_input");
    let msg = n.get(&format!("{key}?ttl=5")).await.error(400, "invalid_input");
    assert!(msg.contains("consistency"), "names what the route takes: {msg}");
    n.get(&format!("{key}?colour=red")).await.error(400, "invalid_input");
    n.get(&format!("{key}?consistency=one&consistency=all")).await.error(400, "invalid_input");

    let msg = n.put("/v1/collections/no%20spaces/keys/k", "v").await.error(400, "invalid_input");
    assert!(msg.contains("invalid collection name"), "{msg}");
    n.get(&format!("/v1/collections/{}/keys/k", "c".repeat(65))).await.error(400, "invalid_input");
    n.post("/bad%2Fname/k/v", "").await.error(400, "invalid_input");
    n.get("/v1/collections/../keys/k").await.error(400, "invalid_input");

    // Unknown routes and methods answer JSON too.
    n.get("/a/b/c/d").await.error(404, "not_found");
    n.send("PATCH", "/hello", Bytes::new()).await.error(405, "unsupported");
    n.put("/v1/stats", "x").await.error(405, "unsupported");
    n.get("/v1/health?verbose=1").await.error(400, "invalid_input");
    // The WebSocket endpoints answer a plain request with JSON as well.
    let msg = n.get("/v1/ws").await.error(400, "invalid_input");
    assert!(msg.contains("WebSocket"), "{msg}");
    n.get("/v1/peer").await.error(400, "invalid_input");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_values_are_413() {
    let n = TestNode::single().await;
    let at_limit = vec![b'x'; MAX_VALUE];
    let over = vec![b'x'; MAX_VALUE + 1];
    assert_eq!(n.put("/v1/collections/big/keys/ok", at_limit.clone()).await.status, 200);
    assert_eq!(n.get("/v1/collections/big/keys/ok").await.body.len(), MAX_VALUE);
    let msg = n.put("/v1/collections/big/keys/no", over.clone()).await.error(413, "too_large");
    assert!(msg.contains(&MAX_VALUE.to_string()), "{msg}");
    n.post("/big/no/x", over.clone()).await.error(413, "too_large");
    n.post(&format!("/big/no/{}", "x".repeat(MAX_VALUE + 1)), "").await.error(413, "too_large");
    n.put("/v1/collections/big/keys/no", vec![0u8; 10 * MAX_VALUE]).await.error(413, "too_large");
    assert_eq!(n.get("/v1/collections/big/keys/no").await.status, 404, "nothing was written");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_collection_deletes_every_key() {
    let n = TestNode::single().await;
    for batch in 0..3 {
        let items: Vec<Value> =
            (0..100).map(|i| json!({"key": format!("k{batch}-{i}"), "value": "v"})).collect();
        n.ok_json("POST", "/v1/collections/doomed/batch", json!({"set": items}).to_string()).await;
    }
    n.put("/v1/collections/kept/keys/k0-1", "stays").await;
    let dropped = n.ok_json("DELETE", "/v1/collections/doomed", "").await;
    assert_eq!(dropped, json!({"collection": "doomed", "deleted": 300}));
    let page = n.ok_json("GET", "/v1/collections/doomed/keys?limit=1000", "").await;
    assert_eq!(page, json!({"items": [], "cursor": null}));
    n.get("/v1/collections/doomed/keys/k0-1").await.error(404, "not_found");
    n.get("/doomed").await.error(404, "not_found");
    assert_eq!(n.get("/v1/collections/kept/keys/k0-1").await.body.as_ref(), b"stays");
    // Dropping again (or a collection never written) deletes nothing and succeeds.
    let again = n.ok_json("DELETE", "/v1/collections/doomed", "").await;
    assert_eq!(again["deleted"], 0);
    // The store keeps tombstones, so the keys cannot come back from a stale replica.
    let stats = n.ok_json("GET", "/v1/stats", "").await;
    let doomed = stats["collections"].as_array().unwrap().iter().find(|c| c["name"] == "doomed");
    assert_eq!(doomed.map(|c| c["tombstones"].clone()), Some(json!(300)), "{stats}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_ring_health_metrics_and_openapi() {
    let n = TestNode::single().await;
    let stats = n.ok_json("GET", "/v1/stats", "").await;
    assert_eq!(stats["addr"], n.addr.to_string());
    let ring = n.ok_json("GET", "/v1/ring", "").await;
    let members = ring["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["id"], stats["node"]);
    assert_eq!(members[0]["status"], "alive");
    assert!(members[0]["tokens"].as_array().unwrap().iter().all(|t| t
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok()));
    // Removing members: only a dead one, by the id /v1/ring gives; the answer says why not.
    let me = members[0]["id"].as_str().unwrap().to_string();
    for (path, status, says) in [
        (format!("/v1/ring/{me}"), 400, "running node leaves gracefully"),
        ("/v1/ring/123".to_string(), 404, "no member"),
        ("/v1/ring/zz".to_string(), 400, "not a node id"),
        (format!("/v1/ring/{me}?force=maybe"), 400, "not a flag"),
    ] {
        let r = n.delete(&path).await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, status, "DELETE {path}: {body}");
        assert!(body.contains(says), "DELETE {path}: {body}");
    }
    let health = n.ok_json("GET", "/v1/health", "").await;
    assert_eq!(health["status"], "alive");
    assert_eq!(health["node"], stats["node"]);

    let metrics = n.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(String::from_utf8_lossy(&metrics.body).contains("dhrt_requests_total{op=\"get\"}"));

    let openapi = n.get("/openapi.json").await;
    assert_eq!(openapi.header("content-type").as_deref(), Some("application/json"));
    let doc = openapi.json();
    for (method, path) in dhrt::server::http::served() {
        let m = method.as_str().to_ascii_lowercase();
        assert!(doc["paths"][path][&m].is_object(), "{method} {path} missing from /openapi.json");
    }
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_not_reached_is_503_with_the_replicas_that_answered() {
    let a = TestNode::start(options(2), Vec::new()).await;
    let b = TestNode::start(options(2), vec![a.addr.to_string()]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ring = a.ok_json("GET", "/v1/ring", "").await;
        let alive =
            ring["members"].as_array().unwrap().iter().filter(|m| m["status"] == "alive").count();
        if alive == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the two nodes never formed a ring: {ring}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = "/v1/collections/c/keys/k";
    assert_eq!(a.put(&format!("{path}?consistency=all"), "v").await.status, 200);
    b.stop().await;
    let r = a.put(&format!("{path}?consistency=all"), "w").await;
    r.error(503, "quorum_not_reached");
    assert_eq!(r.json()["error"]["acked"], json!([1, 2]), "one of two replicas answered");
    // A level the remaining replica can meet still works.
    assert_eq!(a.put(&format!("{path}?consistency=one"), "w").await.status, 200);
    a.stop().await;
}

/// Every answer carries the node's clock (`x-dhrt-clock`); a request's `x-dhrt-seen` is
/// adopted before the write is stamped (so the write is stamped above it), and one that
/// is malformed or too far ahead is refused 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_the_clock_and_requests_may_say_what_their_client_saw() {
    let n = TestNode::single().await;
    let put = n.put("/v1/collections/c/keys/k", "v").await;
    assert_eq!(put.status, 200);
    let clock: u64 = put.header("x-dhrt-clock").expect("x-dhrt-clock").parse().unwrap();
    let ts: u64 = put.header("x-dhrt-ts").unwrap().parse().unwrap();
    assert!(clock >= ts, "{clock} >= {ts}");
    let get = n.get("/v1/collections/c/keys/k").await;
    assert!(get.header("x-dhrt-clock").is_some_and(|c| c.parse::<u64>().unwrap() >= ts));

    let send = |seen: String| {
        let addr = n.addr;
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let req = hyper::Request::builder()
                .method("PUT")
                .uri("/v1/collections/c/keys/k2")
                .header("host", addr.to_string())
                .header("x-dhrt-seen", seen)
                .body(Full::new(Bytes::from_static(b"w")))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let ts = resp
                .headers()
                .get("x-dhrt-ts")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, ts, String::from_utf8_lossy(&body).into_owned())
        }
    };
    // 200 ms ahead of the node's clock: within the max offset, adopted.
    let ahead = clock + (200 << 16);
    let (status, ts, body) = send(ahead.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert!(ts.unwrap() > ahead, "stamped above what the client saw");
    let (status, _, body) = send((clock + (60_000 << 16)).to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_input") && body.contains("NTP"), "{body}");
    let (status, _, body) = send("soon".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("x-dhrt-seen"), "{body}");
    n.stop().await;
}

/// The Rust client keeps the newest timestamp the node's answers carried and passes it
/// with every request: a write it makes after seeing a timestamp ahead of the node's
/// clock (as another node's could be) is stamped above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_passes_the_newest_timestamp_it_has_seen() {
    let n = TestNode::single().await;
    let c = dhrt::client::Client::connect(&n.addr.to_string()).await.unwrap();
    let ts = c.set("c", "k", "v", Consistency::One, None).await.unwrap();
    let seen = c.seen().expect("answers carry the clock");
    assert!(seen >= ts);
    // Another node's answer, 300 ms ahead of this node's clock, reaches the client
    // through HTTP; the client is told of it the way any answer would tell it.
    let ahead = Timestamp(seen.0 + (300 << 16));
    let put = n.send_seen("/v1/collections/c/keys/other", ahead).await;
    assert_eq!(put.status, 200);
    let clock = Timestamp(put.header("x-dhrt-clock").unwrap().parse().unwrap());
    assert!(clock > ahead);
    // The node's clock now is past `ahead`; the client's next write is stamped above
    // what it saw either way.
    let next = c.set("c", "k", "w", Consistency::One, None).await.unwrap();
    assert!(next > seen && c.seen().unwrap() >= next);
    n.stop().await;
}
